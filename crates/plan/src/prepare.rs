//! From rendered resources to the exact bodies tether will apply, and the decision for each object.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::value::{to_raw_value, RawValue};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tether_core::id::split_api_version;
use tether_core::policy::Ignore;
use tether_core::report::Shown;
use tether_core::resource::Annotations;
use tether_core::{ObjectId, Provenance, Resource};

use crate::compare::is_subset;
use crate::kinds::Kind;

/// Label carried by every object tether applies: the sync name (`--sync-name`). Used to find owned objects.
pub const SYNC_LABEL: &str = "tether.dev/sync";
/// Annotation binding an object to the sync that applied it: a hash of sync name and object id, so that a
/// label copied onto a foreign object does not make tether treat it as its own.
pub const OWNER_ANNOTATION: &str = "tether.dev/owner";
/// Annotation holding the hash of the manifest as last applied; a different hash means Git changed.
pub const CHECKSUM_ANNOTATION: &str = "tether.dev/checksum";

/// `--k8s-allow-namespace`: the namespaces tether may touch (all when empty).
#[derive(Debug, Clone, Default)]
pub struct NamespaceFilter(pub BTreeSet<String>);

impl NamespaceFilter {
    /// True when namespaced objects in `ns` may be applied.
    pub fn allows(&self, ns: &str) -> bool {
        self.0.is_empty() || self.0.contains(ns)
    }
}

/// An object ready to apply.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Its id, with the namespace resolved.
    pub id: ObjectId,
    /// How the server serves it.
    pub kind: Kind,
    /// The body to send: the manifest with its namespace set and tether's label and annotations added, as
    /// compact JSON (a parsed body is several times larger; at 20,000 objects that was 110 MB).
    pub body: Box<RawValue>,
    /// Where it came from.
    pub source: Provenance,
    /// Hash of the manifest (see [`CHECKSUM_ANNOTATION`]).
    pub checksum: String,
    /// The ignore policy written in Git (`sync_only` objects are applied but never collected).
    pub ignore: Ignore,
}

impl Desired {
    /// The body, parsed.
    ///
    /// # Errors
    /// Only if the body was not JSON, which [`Preparer`] never makes.
    pub fn body_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.body.get())
    }

    /// Moves the object to namespace `ns`: its id and its body together, or neither.
    ///
    /// # Errors
    /// Only if the body was not JSON, which [`Preparer`] never makes.
    pub fn set_namespace(&mut self, ns: &str) -> Result<(), serde_json::Error> {
        let mut body = self.body_value()?;
        set_namespace(&mut body, Some(ns));
        self.body = to_raw_value(&body)?;
        self.id.namespace = Some(ns.to_owned());
        Ok(())
    }
}

/// Why a rendered object is not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// `ignore: "true"` in Git.
    IgnoredInGit,
    /// Outside `--k8s-allow-namespace`.
    NamespaceNotAllowed,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skipped::IgnoredInGit => "ignore annotation in Git",
            Skipped::NamespaceNotAllowed => "namespace not in --k8s-allow-namespace",
        })
    }
}

/// The outcome of [`prepare`].
#[derive(Debug, Default)]
pub struct Prepared {
    /// Objects to plan, in apply order.
    pub desired: Vec<Desired>,
    /// Objects left out on purpose, with the reason.
    pub skipped: Vec<(ObjectId, Provenance, Skipped)>,
}

/// A problem with one object that prevents the whole commit from being applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// Where the object is defined.
    pub at: Provenance,
    /// The object, when known.
    pub id: Option<ObjectId>,
    /// What is wrong and what to do.
    pub message: String,
    /// What kind of problem it is, for what to advise.
    pub cause: Cause,
}

/// What kind of problem a [`PlanError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The manifest itself is wrong (unknown kind, bad name, duplicate).
    Manifest,
    /// Its apiVersion is one Kubernetes removed (a repository written for an older cluster).
    Removed,
    /// Another sync name manages the live object.
    OtherSync,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{} ({}): {}", id, self.at, Shown(&self.message)),
            None => write!(f, "{}: {}", self.at, Shown(&self.message)),
        }
    }
}

/// Resolves kinds and namespaces, applies the ignore and namespace policies, detects objects defined twice,
/// and builds the bodies to apply. All problems are returned together.
pub fn prepare(
    resources: Vec<Resource>,
    resolve: impl Fn(&str, &str, &str) -> Option<Kind>,
    default_namespace: &str,
    filter: &NamespaceFilter,
    sync_name: &str,
) -> Result<Prepared, Vec<PlanError>> {
    let mut preparer = Preparer::new(default_namespace, filter, sync_name);
    for r in resources {
        if let Some(unknown) = preparer.push(r, &resolve) {
            preparer.unknown_kind(unknown);
        }
    }
    preparer.finish()
}

/// [`prepare`] one object at a time, as a render yields them: each is reduced to its compact body at once,
/// so the parsed manifests of a whole repository are never all held.
#[derive(Debug)]
pub struct Preparer<'a> {
    default_namespace: &'a str,
    filter: &'a NamespaceFilter,
    sync_name: &'a str,
    seen: BTreeMap<ObjectId, Provenance>,
    out: Prepared,
    errors: Vec<PlanError>,
}

impl<'a> Preparer<'a> {
    /// Objects without a namespace go to `default_namespace`; see [`prepare`].
    pub fn new(
        default_namespace: &'a str,
        filter: &'a NamespaceFilter,
        sync_name: &'a str,
    ) -> Self {
        Preparer {
            default_namespace,
            filter,
            sync_name,
            seen: BTreeMap::new(),
            out: Prepared::default(),
            errors: Vec::new(),
        }
    }

    /// Prepares `r`, or gives it back when `resolve` does not know its kind (a CRD later in the commit, or
    /// one installed since the kinds were discovered, may define it).
    pub fn push(
        &mut self,
        r: Resource,
        resolve: impl Fn(&str, &str, &str) -> Option<Kind>,
    ) -> Option<Resource> {
        if !r.object.is_object() {
            self.errors.push(PlanError {
                at: r.source.clone(),
                id: None,
                message: "is not a mapping".into(),
                cause: Cause::Manifest,
            });
            return None;
        }
        let (group, version) = split_api_version(r.api_version());
        let Some(kind) = resolve(group, version, r.kind()) else {
            return Some(r);
        };
        let namespace = kind
            .namespaced
            .then(|| r.namespace().unwrap_or(self.default_namespace).to_owned());
        let bad = tether_core::id::name_problem(r.name())
            .map(|p| ("metadata.name", r.name(), p))
            .or_else(|| {
                namespace.as_deref().and_then(|ns| {
                    tether_core::id::namespace_problem(ns).map(|p| ("metadata.namespace", ns, p))
                })
            });
        let problem = bad
            .map(|(field, value, problem)| {
                format!("{field} '{}' {problem}", tether_core::report::Shown(value))
            })
            .or_else(|| {
                crate::secret::is_secret(&kind)
                    .then(|| crate::secret::problem(&r.object))
                    .flatten()
            });
        if let Some(message) = problem {
            self.errors.push(PlanError {
                at: r.source.clone(),
                id: None,
                message,
                cause: Cause::Manifest,
            });
            return None;
        }
        let id = ObjectId::new(r.api_version(), r.kind(), namespace.as_deref(), r.name());
        if let Some(first) = self.seen.get(&id) {
            self.errors.push(PlanError {
                at: r.source.clone(),
                id: Some(id.clone()),
                message: format!("defined twice: also at {first}; remove one of them"),
                cause: Cause::Manifest,
            });
            return None;
        }
        self.seen.insert(id.clone(), r.source.clone());

        let ignore = Ignore::of(r.annotations());
        if ignore == Ignore::Always {
            self.out.skipped.push((id, r.source, Skipped::IgnoredInGit));
            return None;
        }
        let allowed = match &namespace {
            Some(ns) => self.filter.allows(ns),
            None => !kind.is_namespace() || self.filter.allows(r.name()),
        };
        if !allowed {
            self.out
                .skipped
                .push((id, r.source, Skipped::NamespaceNotAllowed));
            return None;
        }

        let mut body = r.object;
        set_namespace(&mut body, namespace.as_deref());
        let checksum = checksum_of(&body);
        let meta = metadata_mut(&mut body);
        map_mut(meta, "labels").insert(SYNC_LABEL.into(), self.sync_name.into());
        let annotations = map_mut(meta, "annotations");
        annotations.insert(
            OWNER_ANNOTATION.into(),
            owner_mark(self.sync_name, &id).into(),
        );
        annotations.insert(CHECKSUM_ANNOTATION.into(), checksum.clone().into());
        match to_raw_value(&body) {
            Ok(body) => self.out.desired.push(Desired {
                id,
                kind,
                body,
                source: r.source,
                checksum,
                ignore,
            }),
            Err(e) => self.errors.push(PlanError {
                at: r.source,
                id: Some(id),
                message: format!("cannot be encoded as JSON: {e}"),
                cause: Cause::Manifest,
            }),
        }
        None
    }

    /// Reports `r` (given back by [`Preparer::push`]) as a kind neither the cluster nor the commit serves.
    pub fn unknown_kind(&mut self, r: Resource) {
        let removal = tether_core::removed::removal(r.api_version(), r.kind());
        let message = match removal {
            Some(removed) => removed.describe(r.api_version(), r.kind()),
            None => format!(
                "{} {} is not served by the cluster and no CustomResourceDefinition in this commit defines it; \
                 check apiVersion and kind, or install the CRD",
                r.api_version(),
                r.kind()
            ),
        };
        self.errors.push(PlanError {
            at: r.source,
            id: None,
            message,
            cause: if removal.is_some() {
                Cause::Removed
            } else {
                Cause::Manifest
            },
        });
    }

    /// The prepared objects in apply order, or every problem found.
    pub fn finish(self) -> Result<Prepared, Vec<PlanError>> {
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let mut out = self.out;
        out.desired.sort_by(|a, b| {
            (crate::rank(&a.kind.kind), &a.id).cmp(&(crate::rank(&b.kind.kind), &b.id))
        });
        Ok(out)
    }
}

/// The ownership mark of `id` under `sync_name` (see [`OWNER_ANNOTATION`]).
pub fn owner_mark(sync_name: &str, id: &ObjectId) -> String {
    let key = format!("{sync_name}\n{}\n{id}", id.group);
    format!(
        "sha256.{}",
        &hex::encode(Sha256::digest(key.as_bytes()))[..40]
    )
}

/// Hash of a manifest body (keys are ordered, so formatting in Git does not matter).
pub fn checksum_of(body: &Value) -> String {
    let mut text = String::new();
    canonical(body, &mut text);
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// Compact JSON with every object's keys sorted: the same text whatever order the manifest wrote its keys
/// in (and the text checksums were taken of when maps were kept sorted, so existing checksums still match).
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(v) = m.get(k) {
                    canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn set_namespace(body: &mut Value, namespace: Option<&str>) {
    let meta = metadata_mut(body);
    match namespace {
        Some(ns) => {
            meta.insert("namespace".into(), ns.into());
        }
        None => {
            // The API ignores a namespace on cluster-scoped objects; dropping it keeps ids and hashes stable.
            meta.remove("namespace");
        }
    }
}

fn metadata_mut(body: &mut Value) -> &mut Map<String, Value> {
    let Value::Object(obj) = body else {
        unreachable!("render only yields mappings")
    };
    map_mut(obj, "metadata")
}

fn map_mut<'a>(parent: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = parent
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// What to do with one desired object given its live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not live yet.
    Create,
    /// Git changed since the last apply.
    Update,
    /// Same manifest, but the live object differs in a field tether sets: maybe drift, maybe only server
    /// normalisation (`0.5` → `500m`). A server-side dry-run decides, so no write is sent for the latter.
    Verify,
    /// Already as desired: no request at all.
    Unchanged,
    /// The live object carries `ignore: "true"`.
    IgnoredLive,
}

/// One planned object.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What Git wants.
    pub desired: Desired,
    /// What is live, if anything.
    pub live: Option<Value>,
    /// The decision.
    pub action: Action,
}

/// Decides what to do with `desired` given the live object.
pub fn decide(desired: &Desired, live: Option<&Value>) -> Action {
    let Some(live) = live else {
        return Action::Create;
    };
    let live_annotations = Annotations::of(live);
    if Ignore::of(live_annotations) == Ignore::Always {
        return Action::IgnoredLive;
    }
    if live_annotations.get(CHECKSUM_ANNOTATION) != Some(desired.checksum.as_str()) {
        return Action::Update;
    }
    // Parsed here, for the objects whose checksum matched: one compact body at a time.
    let Ok(mut body) = desired.body_value() else {
        return Action::Verify;
    };
    if crate::secret::is_secret(&desired.kind) {
        crate::secret::fold_string_data(&mut body);
    }
    let unchanged = is_subset(&body, live);
    if unchanged {
        Action::Unchanged
    } else {
        Action::Verify
    }
}

#[cfg(test)]
mod tests;
