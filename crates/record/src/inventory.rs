//! The inventory: what the last successful sync applied, kept in a ConfigMap in tether's namespace, so
//! garbage collection knows exactly what it may consider without listing every kind in the cluster.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use tether_core::id::split_api_version;
use tether_core::{Kind, ObjectId, ObjectRef, FIELD_MANAGER};

const KEY: &str = "objects";
const HEADER: &str = "# tether inventory v1: apiVersion kind plural namespace|- name";

/// Where a sync's inventory lives.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// tether's namespace.
    pub namespace: String,
    /// `<sync-name>-inventory`.
    pub name: String,
    sync_name: String,
}

/// The inventory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The API request failed.
    #[error("cannot {op} the inventory ConfigMap {namespace}/{name}: {source}; tether needs get and patch on ConfigMaps in its namespace")]
    Api {
        /// `read` or `write`.
        op: &'static str,
        /// tether's namespace, where the inventory lives.
        namespace: String,
        /// The ConfigMap, `<sync-name>-inventory`.
        name: String,
        /// What the API server or the client said.
        #[source]
        source: kube::Error,
    },
    /// The stored inventory is not in the expected format.
    #[error("the inventory ConfigMap {namespace}/{name} is malformed at line {line}; delete it to start afresh (garbage collection then only sees objects applied from now on)")]
    Malformed {
        /// tether's namespace, where the inventory lives.
        namespace: String,
        /// The ConfigMap, `<sync-name>-inventory`.
        name: String,
        /// 1-based line.
        line: usize,
    },
}

impl Inventory {
    /// The inventory of sync `sync_name`, kept in `namespace`.
    pub fn new(namespace: &str, sync_name: &str) -> Self {
        Inventory {
            namespace: namespace.to_owned(),
            name: format!("{sync_name}-inventory"),
            sync_name: sync_name.to_owned(),
        }
    }

    /// The stored inventory; `None` before the first successful sync.
    pub async fn load(
        &self,
        client: &kube::Client,
    ) -> Result<Option<Vec<ObjectRef>>, InventoryError> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        let cm = api
            .get_opt(&self.name)
            .await
            .map_err(|source| self.api_error("read", source))?;
        let Some(text) = cm.and_then(|c| c.data).and_then(|mut d| d.remove(KEY)) else {
            return Ok(None);
        };
        parse(&text)
            .map(Some)
            .map_err(|line| InventoryError::Malformed {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                line,
            })
    }

    /// Stores `refs` unless they equal `previous`; returns whether a write was sent.
    pub async fn store(
        &self,
        client: &kube::Client,
        refs: &[ObjectRef],
        previous: Option<&[ObjectRef]>,
    ) -> Result<bool, InventoryError> {
        let mut refs = refs.to_vec();
        refs.sort();
        refs.dedup_by(|a, b| a.id == b.id);
        if let Some(prev) = previous {
            let mut prev = prev.to_vec();
            prev.sort();
            if prev == refs {
                return Ok(false);
            }
        }
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"tether.dev/inventory": self.sync_name},
            },
            "data": {KEY: render(&refs)},
        });
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        api.patch(
            &self.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| self.api_error("write", source))?;
        Ok(true)
    }

    fn api_error(&self, op: &'static str, source: kube::Error) -> InventoryError {
        InventoryError::Api {
            op,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }
}

/// One line per object; compact so that tens of thousands of objects fit in one ConfigMap.
fn render(refs: &[ObjectRef]) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for r in refs {
        let k = &r.kind;
        out.push_str(&format!(
            "{} {} {} {} {}\n",
            k.api_version(),
            k.kind,
            k.plural,
            r.id.namespace.as_deref().unwrap_or("-"),
            r.id.name
        ));
    }
    out
}

/// Parses [`render`]'s output; the error is the 1-based line that is malformed.
fn parse(text: &str) -> Result<Vec<ObjectRef>, usize> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let [api_version, kind, plural, ns, name] = f[..] else {
            return Err(i + 1);
        };
        let (group, version) = split_api_version(api_version);
        let namespace = (ns != "-").then(|| ns.to_owned());
        out.push(ObjectRef {
            id: ObjectId::new(api_version, kind, namespace.as_deref(), name),
            kind: Kind {
                group: group.to_owned(),
                version: version.to_owned(),
                kind: kind.to_owned(),
                plural: plural.to_owned(),
                namespaced: namespace.is_some(),
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_namespaced_and_cluster_scoped_objects() {
        let refs = parse(
            "# header\napps/v1 Deployment deployments demo web\nv1 Namespace namespaces - demo\nexample.com/v1 Widget widgets demo w\n",
        )
        .unwrap();
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[0].id.to_string(), "demo:deployment/web");
        assert_eq!(refs[1].id.to_string(), "<cluster>:namespace/demo");
        assert!(!refs[1].kind.namespaced);
        assert_eq!(refs[2].kind.group, "example.com");
        assert_eq!(parse(&render(&refs)).unwrap(), refs);
    }

    #[test]
    fn a_malformed_line_is_reported_by_number() {
        assert_eq!(parse("# h\nv1 ConfigMap configmaps\n"), Err(2));
    }
}
