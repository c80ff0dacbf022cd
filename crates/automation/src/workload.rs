//! Workloads and their containers as Git declares them, with the policies that govern automation.

use serde_json::Value;
use tether_core::policy::{self, names, Ignore};
use tether_core::resource::Annotations;
use tether_core::{workload, ObjectId, Provenance, Resource};
use tether_registry::policy::{PolicyError, TagPolicy};

use crate::policy::policy_for;

/// One container (or init container) of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// `name`.
    pub name: String,
    /// `image` as written in Git.
    pub image: String,
    /// An init container.
    pub init: bool,
}

/// A Deployment, StatefulSet, DaemonSet or CronJob from Git.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Its id (namespace defaulted).
    pub id: ObjectId,
    /// Where it is defined.
    pub source: Provenance,
    /// Containers and init containers, in file order.
    pub containers: Vec<Container>,
    /// The manifest, for reading policies.
    pub object: Value,
    /// `imagePullSecrets` of the pod template.
    pub pull_secrets: Vec<String>,
    /// The pod template's service account (`default` when unset).
    pub service_account: String,
}

impl Workload {
    /// Annotations of the workload (not of its pod template), where Flux v1 keeps policies.
    pub fn annotations(&self) -> Annotations<'_> {
        Annotations::of(&self.object)
    }

    /// `automated: "true"`.
    pub fn automated(&self) -> bool {
        policy::is_true(self.annotations(), names::AUTOMATED)
    }

    /// `locked: "true"`.
    pub fn locked(&self) -> bool {
        policy::is_true(self.annotations(), names::LOCKED)
    }

    /// `ignore: "true"` in Git (`sync_only` does not stop automation).
    pub fn ignored(&self) -> bool {
        Ignore::of(self.annotations()) == Ignore::Always
    }

    /// Automation may change this workload's images.
    pub fn is_automatable(&self) -> bool {
        self.automated() && !self.locked() && !self.ignored()
    }

    /// The tag policy of one container (`glob:*` when none is set).
    pub fn policy(&self, container: &str) -> Result<TagPolicy, PolicyError> {
        policy_for(self.annotations(), container)
    }
}

/// The workloads among rendered resources; namespaced objects without a namespace get `default_namespace`.
pub fn workloads(resources: &[Resource], default_namespace: &str) -> Vec<Workload> {
    collect(resources, default_namespace, Value::clone)
}

/// Like [`workloads`], but each keeps of its manifest only what policies are read from (apiVersion, kind,
/// name, namespace and annotations): what a long-lived list of workloads needs, without holding a copy of
/// every manifest.
pub fn workload_summaries(resources: &[Resource], default_namespace: &str) -> Vec<Workload> {
    collect(resources, default_namespace, |object| {
        let get = |path: &str| object.pointer(path).cloned().unwrap_or(Value::Null);
        serde_json::json!({
            "apiVersion": get("/apiVersion"),
            "kind": get("/kind"),
            "metadata": {
                "name": get("/metadata/name"),
                "namespace": get("/metadata/namespace"),
                "annotations": get("/metadata/annotations"),
            },
        })
    })
}

fn collect(
    resources: &[Resource],
    default_namespace: &str,
    keep: impl Fn(&Value) -> Value,
) -> Vec<Workload> {
    let mut out = Vec::new();
    for r in resources {
        if !workload::is_workload(r.kind()) {
            continue;
        }
        let namespace = r.namespace().unwrap_or(default_namespace);
        // No such object can exist in the cluster (the sync refuses it, naming the fix), and its name would
        // go into commit subjects, notifications and the API's lists as written.
        if tether_core::id::name_problem(r.name()).is_some()
            || tether_core::id::namespace_problem(namespace).is_some()
        {
            continue;
        }
        let Some(spec) = workload::pod_spec(&r.object) else {
            continue;
        };
        let mut containers = Vec::new();
        for (list, init) in [("initContainers", true), ("containers", false)] {
            for c in spec
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(name), Some(image)) = (
                    c.get("name").and_then(Value::as_str),
                    c.get("image").and_then(Value::as_str),
                ) else {
                    continue;
                };
                // A container name is a DNS label, or the server refuses the workload.
                if !tether_core::id::is_dns_label(name) {
                    continue;
                }
                containers.push(Container {
                    name: name.to_owned(),
                    image: image.to_owned(),
                    init,
                });
            }
        }
        let pull_secrets = spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let service_account = spec
            .get("serviceAccountName")
            .or_else(|| spec.get("serviceAccount"))
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned();
        out.push(Workload {
            id: ObjectId::new(r.api_version(), r.kind(), Some(namespace), r.name()),
            source: r.source.clone(),
            containers,
            object: keep(&r.object),
            pull_secrets,
            service_account,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(object: Value) -> Resource {
        Resource {
            object,
            source: Provenance {
                file: "w.yaml".into(),
                line: 1,
            },
        }
    }

    #[test]
    fn reads_containers_init_containers_and_cronjob_templates() {
        let deploy = res(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
            "annotations": {"fluxcd.io/automated": "true", "fluxcd.io/tag.app": "semver:~1.4"}},
            "spec": {"template": {"spec": {"serviceAccountName": "builder", "imagePullSecrets": [{"name": "regcred"}],
                "initContainers": [{"name": "init", "image": "busybox:1"}],
                "containers": [{"name": "app", "image": "r/app:1.4.0"}]}}}}),
        );
        let cron = res(
            json!({"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "job", "namespace": "ops"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "r/c:2"}]}}}}}}),
        );
        let cm = res(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}));
        let ws = workloads(&[deploy, cron, cm], "apps");
        assert_eq!(ws.len(), 2);
        assert_eq!(ws[0].id.to_string(), "apps:deployment/web");
        let names: Vec<_> = ws[0]
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.init))
            .collect();
        assert_eq!(names, [("init", true), ("app", false)]);
        assert_eq!(ws[0].pull_secrets, ["regcred"]);
        assert_eq!(ws[0].service_account, "builder");
        assert!(ws[0].is_automatable());
        assert_eq!(ws[0].policy("app").unwrap().to_string(), "semver:~1.4");
        assert_eq!(ws[1].id.to_string(), "ops:cronjob/job");
        assert_eq!(ws[1].containers[0].image, "r/c:2");
        assert!(!ws[1].is_automatable());
    }

    #[test]
    fn locked_or_ignored_workloads_are_not_automatable() {
        for extra in [
            json!({"fluxcd.io/locked": "true"}),
            json!({"flux.weave.works/ignore": "true"}),
        ] {
            let mut a = json!({"fluxcd.io/automated": "true"});
            a.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let d = res(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "annotations": a},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}),
            );
            assert!(!workloads(&[d], "default")[0].is_automatable());
        }
    }

    #[test]
    fn names_no_cluster_can_hold_are_never_listed() {
        // Such names would reach commit subjects (`tether release`), notifications and the API's lists.
        let deploy = |name: &str, container: &str| {
            res(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": "apps"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": container, "image": "r/app:1"}, {"name": "ok", "image": "r/ok:1"}]}}}}))
        };
        let ws = workloads(
            &[
                deploy("w\n\nCo-authored-by: evil <e@x>", "app"),
                deploy("web", "<https://evil.example|fix>"),
            ],
            "apps",
        );
        assert_eq!(ws.len(), 1);
        assert_eq!(ws[0].id.to_string(), "apps:deployment/web");
        let names: Vec<_> = ws[0].containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ok"]);
    }
}
