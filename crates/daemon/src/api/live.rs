//! What the cluster runs for the workloads Git defines: their live objects (one LIST per kind and namespace,
//! of this sync's objects only), the images they run and where their rollout stands.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;
use tether_api::Rollout;
use tether_automation::Workload;
use tether_core::ObjectId;

/// The live objects of `workloads`, by id; a workload missing from the map is not in the cluster.
pub async fn objects(
    client: &kube::Client,
    sync_name: &str,
    workloads: &[&Workload],
) -> Result<BTreeMap<ObjectId, Value>, kube::Error> {
    // Per kind, the namespaces asked about.
    let mut groups: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for w in workloads {
        let api_version = w
            .object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        groups
            .entry((api_version.to_owned(), w.id.kind.clone()))
            .or_default()
            .insert(w.id.namespace.clone().unwrap_or_default());
    }
    let params = ListParams::default().labels(&format!("{}={sync_name}", tether_plan::SYNC_LABEL));
    let mut out = BTreeMap::new();
    for ((api_version, kind), namespaces) in groups {
        let (group, version) = tether_core::id::split_api_version(&api_version);
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind));
        // One LIST of the kind across namespaces (a status page refreshes this every few seconds); an
        // agent with namespace-scoped rights lists namespace by namespace instead.
        let items = match Api::<DynamicObject>::all_with(client.clone(), &ar)
            .list(&params)
            .await
        {
            Ok(list) => list.items,
            Err(kube::Error::Api(e)) if e.code == 403 => {
                let mut items = Vec::new();
                for ns in &namespaces {
                    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
                    items.extend(api.list(&params).await?.items);
                }
                items
            }
            Err(e) => return Err(e),
        };
        for mut o in items {
            let namespace = o.metadata.namespace.clone().unwrap_or_default();
            if !namespaces.contains(&namespace) {
                continue;
            }
            let Some(name) = o.metadata.name.clone() else {
                continue;
            };
            // Items of a LIST carry no kind of their own; the status and pod spec are read by kind.
            o.types = Some(kube::api::TypeMeta {
                api_version: api_version.clone(),
                kind: kind.clone(),
            });
            let id = ObjectId::new(&api_version, &kind, Some(&namespace), &name);
            out.insert(id, serde_json::to_value(&o).unwrap_or(Value::Null));
        }
    }
    Ok(out)
}

/// The image each container of a live workload runs, by container name.
pub fn images(object: &Value) -> BTreeMap<String, String> {
    let Some(spec) = tether_core::workload::pod_spec(object) else {
        return BTreeMap::new();
    };
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| {
            spec.get(*list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| {
            Some((
                c.get("name")?.as_str()?.to_owned(),
                c.get("image")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Where the rollout of a live workload stands, from its status as its controller wrote it.
pub fn rollout(object: Option<&Value>) -> Rollout {
    let Some(o) = object else {
        return state("missing", 0, 0, 0);
    };
    let int = |path: &[&str]| {
        path.iter()
            .try_fold(o, |v, k| v.get(*k))
            .and_then(Value::as_i64)
    };
    let generation = int(&["metadata", "generation"]).unwrap_or(0);
    let observed = int(&["status", "observedGeneration"]).unwrap_or(0);
    let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
    let (desired, ready, updated, current) = match kind {
        "Deployment" | "StatefulSet" => (
            int(&["spec", "replicas"]).unwrap_or(1),
            int(&["status", "readyReplicas"]).unwrap_or(0),
            int(&["status", "updatedReplicas"]).unwrap_or(0),
            int(&["status", "replicas"]).unwrap_or(0),
        ),
        "DaemonSet" => {
            let desired = int(&["status", "desiredNumberScheduled"]).unwrap_or(0);
            (
                desired,
                int(&["status", "numberReady"]).unwrap_or(0),
                int(&["status", "updatedNumberScheduled"]).unwrap_or(0),
                int(&["status", "currentNumberScheduled"]).unwrap_or(0),
            )
        }
        "CronJob" => {
            let suspended = o
                .pointer("/spec/suspend")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            return state(if suspended { "suspended" } else { "scheduled" }, 0, 0, 0);
        }
        _ => return state("unknown", 0, 0, 0),
    };
    if kind == "Deployment"
        && o.pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    {
        return state("suspended", ready, desired, updated);
    }
    let settled =
        observed >= generation && updated >= desired && ready >= desired && current <= desired;
    state(
        if settled { "ready" } else { "updating" },
        ready,
        desired,
        updated,
    )
}

fn state(status: &str, ready: i64, desired: i64, updated: i64) -> Rollout {
    Rollout {
        status: status.to_owned(),
        ready,
        desired,
        updated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i64, status: Value) -> Value {
        json!({"kind": "Deployment", "metadata": {"generation": 2},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": "web:1"}]}}},
            "status": status})
    }

    #[test]
    fn a_deployment_is_ready_only_when_every_replica_is_new_and_ready() {
        let done = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}),
        );
        assert_eq!(rollout(Some(&done)).to_string(), "ready 2/2");
        let rolling = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 2, "updatedReplicas": 1}),
        );
        assert_eq!(rollout(Some(&rolling)).to_string(), "updating 2/2");
        // The controller has not seen the new template yet: not ready, whatever the counts say.
        let unseen = deployment(
            1,
            json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}),
        );
        assert_eq!(rollout(Some(&unseen)).status, "updating");
        assert_eq!(rollout(None).to_string(), "missing");
        assert_eq!(images(&done).get("web").map(String::as_str), Some("web:1"));
    }

    #[test]
    fn daemonsets_count_scheduled_pods_and_cronjobs_say_whether_they_run() {
        let ds = json!({"kind": "DaemonSet", "metadata": {"generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "numberReady": 1,
                "updatedNumberScheduled": 3, "currentNumberScheduled": 3}});
        assert_eq!(rollout(Some(&ds)).to_string(), "updating 1/3");
        let cj = json!({"kind": "CronJob", "spec": {"suspend": true}});
        assert_eq!(rollout(Some(&cj)).to_string(), "suspended");
    }
}
