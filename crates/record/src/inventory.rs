//! The inventory: what the last successful sync applied, kept in a ConfigMap in tether's namespace, so
//! garbage collection knows exactly what it may consider without listing every kind in the cluster.
//!
//! A sync records what it is about to write (`pending`) before its first write, and the final set after
//! collection: a sync that dies in between (killed, timed out, failed mid-apply) leaves its intent behind,
//! and the next sync collects from objects and pending alike. Every write is conditional on the version it
//! read, and entries another run added meanwhile are kept, so two runs of one sync name lose nothing.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeSet;
use tether_core::id::split_api_version;

use tether_core::{Kind, ObjectId, ObjectRef, FIELD_MANAGER};

const KEY: &str = "objects";
const PENDING: &str = "pending";
/// How often a write is retried after another run changed the inventory in between.
const CONFLICT_RETRIES: usize = 5;

/// What the inventory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// What the last successful sync left applied.
    pub objects: Vec<ObjectRef>,
    /// What a sync was about to write and did not finish recording (empty after a complete sync).
    pub pending: Vec<ObjectRef>,
    resource_version: Option<String>,
}

impl Stored {
    /// Objects and pending entries together: everything a sync of this name may have applied.
    pub fn all(&self) -> Vec<ObjectRef> {
        let mut all: Vec<ObjectRef> = self.objects.iter().chain(&self.pending).cloned().collect();
        all.sort();
        all.dedup_by(|a, b| a.id == b.id);
        all
    }
}
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

/// The inventory ConfigMap's name for a sync name.
pub fn inventory_name(sync_name: &str) -> String {
    format!("{sync_name}-inventory")
}

impl Inventory {
    /// The inventory of sync `sync_name`, kept in `namespace`.
    pub fn new(namespace: &str, sync_name: &str) -> Self {
        Inventory {
            namespace: namespace.to_owned(),
            name: inventory_name(sync_name),
            sync_name: sync_name.to_owned(),
        }
    }

    /// The stored inventory; `None` before the first sync that wrote anything.
    pub async fn load(&self, client: &kube::Client) -> Result<Option<Stored>, InventoryError> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        let Some(cm) = api
            .get_opt(&self.name)
            .await
            .map_err(|source| self.api_error("read", source))?
        else {
            return Ok(None);
        };
        let resource_version = cm.metadata.resource_version.clone();
        let mut data = cm.data.unwrap_or_default();
        // Large inventories are stored gzipped in binaryData (see `encode`); read either form.
        for (key, bytes) in cm.binary_data.unwrap_or_default() {
            if let Some(plain) = key.strip_suffix(GZ) {
                let text = gunzip(&bytes.0).map_err(|_| InventoryError::Malformed {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    line: 0,
                })?;
                data.insert(plain.to_owned(), text);
            }
        }
        let malformed = |line| InventoryError::Malformed {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            line,
        };
        let mut read = |key: &str| -> Result<Vec<ObjectRef>, usize> {
            data.remove(key).map_or(Ok(Vec::new()), |text| parse(&text))
        };
        let objects = read(KEY).map_err(malformed)?;
        let pending = read(PENDING).map_err(malformed)?;
        Ok(Some(Stored {
            objects,
            pending,
            resource_version,
        }))
    }

    /// Records that a sync is about to write `intent`, before its first write. Sends nothing when the
    /// inventory already holds all of it (a resync of an unchanged repository writes nothing).
    pub async fn mark_pending<'a>(
        &self,
        client: &kube::Client,
        state: &mut Stored,
        intent: impl Iterator<Item = (&'a ObjectId, &'a Kind)> + Clone,
    ) -> Result<bool, InventoryError> {
        self.update(client, state, |current| {
            let known: BTreeSet<&ObjectId> = current
                .objects
                .iter()
                .chain(&current.pending)
                .map(|r| &r.id)
                .collect();
            let new: Vec<ObjectRef> = intent
                .clone()
                .filter(|(id, _)| !known.contains(id))
                .map(|(id, kind)| ObjectRef {
                    id: id.clone(),
                    kind: kind.clone(),
                })
                .collect();
            if new.is_empty() {
                return None;
            }
            let mut pending = current.pending.clone();
            pending.extend(new);
            Some((current.objects.clone(), pending))
        })
        .await
    }

    /// Stores `refs` as the inventory after a complete sync and clears the pending entries the sync
    /// `accounted` for (what it read at its start and what it marked pending); entries another run added
    /// meanwhile stay pending, to be judged by the next sync. Returns whether a write was sent.
    pub async fn store(
        &self,
        client: &kube::Client,
        state: &mut Stored,
        refs: &[ObjectRef],
        accounted: &BTreeSet<&ObjectId>,
    ) -> Result<bool, InventoryError> {
        // Compared through references and copied only for a write: at 20,000 objects each copy of the
        // inventory is 7 MB.
        let mut objects: Vec<&ObjectRef> = refs.iter().collect();
        objects.sort();
        objects.dedup_by(|a, b| a.id == b.id);
        let ours: BTreeSet<&ObjectId> = objects.iter().map(|r| &r.id).collect();
        self.update(client, state, |current| {
            let mut pending: Vec<&ObjectRef> = current
                .objects
                .iter()
                .chain(&current.pending)
                .filter(|r| !accounted.contains(&r.id) && !ours.contains(&r.id))
                .collect();
            pending.sort();
            pending.dedup_by(|a, b| a.id == b.id);
            let mut now: Vec<&ObjectRef> = current.objects.iter().collect();
            now.sort();
            let same = now == objects && current.pending.iter().eq(pending.iter().copied());
            (!same).then(|| {
                (
                    objects.iter().copied().cloned().collect(),
                    pending.into_iter().cloned().collect(),
                )
            })
        })
        .await
    }

    /// Asks `change` for the new objects and pending entries given `state` (what the caller last read or
    /// wrote; `None` from `change`: no change), and writes them on condition that nobody wrote since;
    /// reads again and retries when somebody did. `state` is then what is stored, so a sync reads the
    /// inventory once, not once per write.
    async fn update(
        &self,
        client: &kube::Client,
        state: &mut Stored,
        mut change: impl FnMut(&Stored) -> Option<(Vec<ObjectRef>, Vec<ObjectRef>)>,
    ) -> Result<bool, InventoryError> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        let mut attempt = 0;
        loop {
            let current = &*state;
            let Some((objects, pending)) = change(current) else {
                return Ok(false);
            };
            let mut metadata = serde_json::json!({
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"tether.dev/inventory": self.sync_name},
            });
            if let Some(rv) = &current.resource_version {
                // A precondition: the write fails with 409 if another run wrote since this read.
                metadata["resourceVersion"] = rv.clone().into();
            }
            let mut body = serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": metadata,
                "data": {},
                "binaryData": {},
            });
            for (key, refs) in [(KEY, &objects), (PENDING, &pending)] {
                let (field, name, value) = encode(key, &render(refs));
                body[field][name] = value.into();
            }
            match api
                .patch(
                    &self.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
            {
                Ok(written) => {
                    *state = Stored {
                        objects,
                        pending,
                        resource_version: written.metadata.resource_version,
                    };
                    return Ok(true);
                }
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    *state = self.load(client).await?.unwrap_or_default();
                }
                Err(source) => return Err(self.api_error("write", source)),
            }
        }
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

/// Suffix of a gzipped entry in `binaryData`.
const GZ: &str = ".gz";
/// Entries larger than this are stored gzipped: a ConfigMap holds at most 1 MiB, which plain text reaches
/// near 27,000 objects; gzipped the same lines take about a tenth.
const COMPRESS_ABOVE: usize = 256 << 10;

/// Where and how an entry is stored: `("data", key, text)` when small, `("binaryData", key.gz, base64 of
/// the gzipped text)` when large.
fn encode(key: &str, text: &str) -> (&'static str, String, String) {
    use base64::Engine as _;
    use std::io::Write as _;
    if text.len() <= COMPRESS_ABOVE {
        return ("data", key.to_owned(), text.to_owned());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into memory cannot fail; if it ever did, the plain form is still correct, only larger.
    match gz.write_all(text.as_bytes()).and_then(|()| gz.finish()) {
        Ok(bytes) => (
            "binaryData",
            format!("{key}{GZ}"),
            base64::engine::general_purpose::STANDARD.encode(bytes),
        ),
        Err(_) => ("data", key.to_owned(), text.to_owned()),
    }
}

fn gunzip(bytes: &[u8]) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut text)?;
    Ok(text)
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
    fn a_large_inventory_is_stored_gzipped_small_enough_for_a_config_map() {
        use base64::Engine as _;
        let refs: Vec<ObjectRef> = (0..50_000)
            .map(|i| {
                let ns = format!("team-{}", i % 50);
                parse(&format!("apps/v1 Deployment deployments {ns} app-{i}\n"))
                    .unwrap()
                    .remove(0)
            })
            .collect();
        let text = render(&refs);
        assert!(text.len() > 1 << 20, "{}", text.len());
        let (field, key, value) = encode(KEY, &text);
        assert_eq!((field, key.as_str()), ("binaryData", "objects.gz"));
        assert!(value.len() < 512 << 10, "{} bytes stored", value.len());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap();
        assert_eq!(parse(&gunzip(&bytes).unwrap()).unwrap(), refs);
        // Small ones stay readable with kubectl.
        assert_eq!(encode(KEY, "x").0, "data");
    }

    #[test]
    fn a_malformed_line_is_reported_by_number() {
        assert_eq!(parse("# h\nv1 ConfigMap configmaps\n"), Err(2));
    }
}
