//! Discovery: which kinds the server serves. Aggregated discovery (`apidiscovery.k8s.io/v2`, GA since 1.30,
//! so every supported server has it) answers in two requests; the legacy path (one request per group
//! version) is the fallback for servers or proxies that do not offer it. Either way, one unavailable
//! aggregated API only affects the objects of that group instead of every sync.

use std::collections::{BTreeMap, HashMap};

use futures::{stream, StreamExt};
use kube::core::discovery::v2::{APIGroupDiscoveryList, ACCEPT_AGGREGATED_DISCOVERY_V2};
use serde_json::Value;
use tether_core::id::split_api_version;
use tether_plan::Kind;

use crate::error::Error;

/// The kinds a server offers, by (group, version, kind).
#[derive(Debug, Clone, Default)]
pub struct Kinds {
    by_gvk: HashMap<(String, String, String), Kind>,
    /// Namespaced kinds that can be listed, one version per kind (to find what a Namespace still holds).
    listable: BTreeMap<(String, String), Kind>,
    /// Cluster-scoped kinds that can be listed, one version per kind.
    cluster_listable: BTreeMap<(String, String), Kind>,
    /// Group versions whose discovery failed, with the reason, for error messages.
    pub unavailable: Vec<(String, String)>,
}

/// One served resource, as either discovery path reports it.
struct Served {
    group: String,
    version: String,
    kind: String,
    plural: String,
    namespaced: bool,
    listable: bool,
}

fn api(what: &str) -> impl FnOnce(kube::Error) -> Error {
    let what = what.to_owned();
    move |source| Error::Api { what, source }
}

impl Kinds {
    /// Asks the server for every group version it serves.
    pub async fn discover(client: &kube::Client) -> Result<Kinds, Error> {
        // A proxy or an old server may refuse the aggregated form outright; the legacy path decides then.
        match Self::discover_aggregated(client).await {
            Ok(Some(kinds)) => return Ok(kinds),
            Ok(None) => tracing::debug!(
                component = "discovery",
                "no aggregated discovery; asking each group version"
            ),
            Err(e) => tracing::debug!(component = "discovery", error = %e,
                "aggregated discovery failed; asking each group version"),
        }
        Self::discover_legacy(client).await
    }

    /// Aggregated discovery of `/api` and `/apis`; `None` when the server answers in the legacy format.
    pub async fn discover_aggregated(client: &kube::Client) -> Result<Option<Kinds>, Error> {
        let mut kinds = Kinds::default();
        for path in ["/api", "/apis"] {
            let req = http::Request::get(path)
                .header(http::header::ACCEPT, ACCEPT_AGGREGATED_DISCOVERY_V2)
                .body(Vec::new())
                .map_err(|e| api(&format!("discovery of {path}"))(kube::Error::HttpError(e)))?;
            let doc: Value = client
                .request(req)
                .await
                .map_err(api(&format!("discovery of {path}")))?;
            // The Accept header ends in plain JSON, so a server without aggregated discovery answers with
            // an APIVersions/APIGroupList; only a discovery list is read as one.
            if doc.get("kind").and_then(Value::as_str) != Some("APIGroupDiscoveryList") {
                return Ok(None);
            }
            let list: APIGroupDiscoveryList = serde_json::from_value(doc)
                .map_err(|e| api(&format!("discovery of {path}"))(kube::Error::SerdeError(e)))?;
            kinds.add_aggregated(list);
        }
        Ok(Some(kinds))
    }

    /// Adds what one aggregated discovery document lists. Versions the aggregator reports as `Stale`
    /// (their API service is down) are unavailable, as a failed legacy request would be.
    fn add_aggregated(&mut self, list: APIGroupDiscoveryList) {
        for g in list.items {
            let group = g.metadata.and_then(|m| m.name).unwrap_or_default();
            for v in g.versions {
                let version = v.version.unwrap_or_default();
                if v.freshness.as_deref() == Some("Stale") {
                    let gv = if group.is_empty() {
                        version.clone()
                    } else {
                        format!("{group}/{version}")
                    };
                    tracing::warn!(component = "discovery", group_version = %gv,
                        "API group unavailable: its discovery is stale");
                    self.unavailable
                        .push((gv, "the aggregated API's discovery is stale".into()));
                    continue;
                }
                for r in v.resources {
                    let (Some(plural), Some(kind)) =
                        (r.resource, r.response_kind.and_then(|k| k.kind))
                    else {
                        continue;
                    };
                    self.add(Served {
                        group: group.clone(),
                        version: version.clone(),
                        kind,
                        plural,
                        namespaced: r.scope.as_deref() == Some("Namespaced"),
                        listable: r.verbs.iter().any(|v| v == "list"),
                    });
                }
            }
        }
    }

    /// Legacy discovery: one request per group version, all in parallel.
    pub async fn discover_legacy(client: &kube::Client) -> Result<Kinds, Error> {
        let core = client
            .list_core_api_versions()
            .await
            .map_err(api("discovery of the core API group"))?;
        let groups = client
            .list_api_groups()
            .await
            .map_err(api("discovery of API groups"))?;
        let mut versions: Vec<String> = core.versions;
        for g in groups.groups {
            versions.extend(g.versions.into_iter().map(|v| v.group_version));
        }
        let results: Vec<_> = stream::iter(versions)
            .map(|gv| async move {
                let res = if gv.contains('/') {
                    client.list_api_group_resources(&gv).await
                } else {
                    client.list_core_api_resources(&gv).await
                };
                (gv, res)
            })
            // In order, so each kind's preferred version (listed first) is the one kept as listable.
            .buffered(8)
            .collect()
            .await;
        let mut kinds = Kinds::default();
        for (gv, res) in results {
            let (group, version) = split_api_version(&gv);
            match res {
                Ok(list) => {
                    for r in list.resources {
                        if r.name.contains('/') {
                            continue; // subresources
                        }
                        kinds.add(Served {
                            group: group.to_owned(),
                            version: version.to_owned(),
                            listable: r.verbs.iter().any(|v| v == "list"),
                            kind: r.kind,
                            plural: r.name,
                            namespaced: r.namespaced,
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(component = "discovery", group_version = %gv, error = %e, "API group unavailable");
                    kinds.unavailable.push((gv, e.to_string()));
                }
            }
        }
        Ok(kinds)
    }

    fn add(&mut self, s: Served) {
        let kind = Kind {
            group: s.group,
            version: s.version,
            kind: s.kind,
            plural: s.plural,
            namespaced: s.namespaced,
        };
        if s.listable {
            // Both paths list a group's versions in order of preference: the first one listed stays.
            let map = if kind.namespaced {
                &mut self.listable
            } else {
                &mut self.cluster_listable
            };
            map.entry((kind.group.clone(), kind.kind.clone()))
                .or_insert_with(|| kind.clone());
        }
        self.insert(kind);
    }

    /// Adds or replaces a kind (used for kinds defined by CRDs in the same commit).
    pub fn insert(&mut self, kind: Kind) {
        self.by_gvk.insert(
            (kind.group.clone(), kind.version.clone(), kind.kind.clone()),
            kind,
        );
    }

    /// Looks a kind up.
    pub fn resolve(&self, group: &str, version: &str, kind: &str) -> Option<Kind> {
        self.by_gvk
            .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
            .cloned()
    }

    /// Every kind served, each version on its own.
    pub fn served(&self) -> impl Iterator<Item = &Kind> {
        self.by_gvk.values()
    }

    /// Every namespaced kind that can be listed, once each.
    pub fn namespaced_listable(&self) -> impl Iterator<Item = &Kind> {
        self.listable.values()
    }

    /// Every cluster-scoped kind that can be listed, once each.
    pub fn cluster_listable(&self) -> impl Iterator<Item = &Kind> {
        self.cluster_listable.values()
    }

    /// True when the server itself serves this kind (not only a CRD in the commit).
    pub fn contains(&self, kind: &Kind) -> bool {
        self.by_gvk
            .contains_key(&(kind.group.clone(), kind.version.clone(), kind.kind.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn aggregated(doc: Value) -> Kinds {
        let mut k = Kinds::default();
        k.add_aggregated(serde_json::from_value(doc).unwrap());
        k
    }

    #[test]
    fn aggregated_discovery_gives_kinds_scopes_and_listable_preferred_versions() {
        let k = aggregated(json!({
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "items": [
                {"metadata": {"name": "autoscaling"}, "versions": [
                    {"version": "v2", "freshness": "Current", "resources": [
                        {"resource": "horizontalpodautoscalers", "scope": "Namespaced",
                         "responseKind": {"group": "", "version": "", "kind": "HorizontalPodAutoscaler"},
                         "verbs": ["create", "get", "list", "patch"],
                         "subresources": [{"subresource": "status", "verbs": ["get"]}]}]},
                    {"version": "v1", "freshness": "Current", "resources": [
                        {"resource": "horizontalpodautoscalers", "scope": "Namespaced",
                         "responseKind": {"group": "", "version": "", "kind": "HorizontalPodAutoscaler"},
                         "verbs": ["list"]}]}]},
                {"metadata": {"name": "rbac.authorization.k8s.io"}, "versions": [
                    {"version": "v1", "resources": [
                        {"resource": "clusterroles", "scope": "Cluster",
                         "responseKind": {"group": "", "version": "", "kind": "ClusterRole"},
                         "verbs": ["list"]}]}]}
            ]
        }));
        let hpa = k
            .resolve("autoscaling", "v2", "HorizontalPodAutoscaler")
            .unwrap();
        assert_eq!(hpa.plural, "horizontalpodautoscalers");
        assert!(hpa.namespaced);
        assert!(k
            .resolve("autoscaling", "v1", "HorizontalPodAutoscaler")
            .is_some());
        assert!(
            !k.resolve("rbac.authorization.k8s.io", "v1", "ClusterRole")
                .unwrap()
                .namespaced
        );
        // One listable version per namespaced kind: the preferred (first) one.
        let listable: Vec<_> = k
            .namespaced_listable()
            .map(|k| (k.kind.as_str(), k.version.as_str()))
            .collect();
        assert_eq!(listable, [("HorizontalPodAutoscaler", "v2")]);
        assert!(k.unavailable.is_empty());
    }

    #[test]
    fn stale_aggregated_versions_are_unavailable_not_served() {
        let k = aggregated(json!({
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "items": [{"metadata": {"name": "metrics.k8s.io"}, "versions": [
                {"version": "v1beta1", "freshness": "Stale", "resources": [
                    {"resource": "pods", "scope": "Namespaced",
                     "responseKind": {"group": "", "version": "", "kind": "PodMetrics"}, "verbs": ["list"]}]}]}]
        }));
        assert!(k
            .resolve("metrics.k8s.io", "v1beta1", "PodMetrics")
            .is_none());
        assert_eq!(k.unavailable.len(), 1);
        assert_eq!(k.unavailable[0].0, "metrics.k8s.io/v1beta1");
    }
}
