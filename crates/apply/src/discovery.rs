//! Legacy discovery (one request per group version, all in parallel): works on every server tether supports,
//! and one unavailable aggregated API only affects the objects of that group instead of every sync.

use std::collections::{BTreeMap, HashMap};

use futures::{stream, StreamExt};
use tether_plan::Kind;

use crate::error::Error;

/// The kinds a server offers, by (group, version, kind).
#[derive(Debug, Clone, Default)]
pub struct Kinds {
    by_gvk: HashMap<(String, String, String), Kind>,
    /// Namespaced kinds that can be listed, one version per kind (to find what a Namespace still holds).
    listable: BTreeMap<(String, String), Kind>,
    /// Group versions whose discovery failed, with the reason, for error messages.
    pub unavailable: Vec<(String, String)>,
}

impl Kinds {
    /// Asks the server for every group version it serves.
    pub async fn discover(client: &kube::Client) -> Result<Kinds, Error> {
        let api = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Api { what, source }
        };
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
            .buffer_unordered(8)
            .collect()
            .await;
        let mut kinds = Kinds::default();
        for (gv, res) in results {
            let (group, version) = gv.rsplit_once('/').unwrap_or(("", gv.as_str()));
            match res {
                Ok(list) => {
                    for r in list.resources {
                        if r.name.contains('/') {
                            continue; // subresources
                        }
                        let kind = Kind {
                            group: group.to_owned(),
                            version: version.to_owned(),
                            kind: r.kind,
                            plural: r.name,
                            namespaced: r.namespaced,
                        };
                        if kind.namespaced && r.verbs.iter().any(|v| v == "list") {
                            kinds
                                .listable
                                .entry((kind.group.clone(), kind.kind.clone()))
                                .or_insert_with(|| kind.clone());
                        }
                        kinds.insert(kind);
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

    /// Every namespaced kind that can be listed, once each.
    pub fn namespaced_listable(&self) -> impl Iterator<Item = &Kind> {
        self.listable.values()
    }

    /// True when the server itself serves this kind (not only a CRD in the commit).
    pub fn contains(&self, kind: &Kind) -> bool {
        self.by_gvk
            .contains_key(&(kind.group.clone(), kind.version.clone(), kind.kind.clone()))
    }
}
