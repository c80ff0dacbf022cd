//! A live cache of the objects one sync owns, so a running agent need not LIST them at every sync: one
//! label-selected watch (`tether.dev/sync=<name>`) per kind the sync applies, each object reduced as its event
//! arrives to what the next decision needs — its resourceVersion, checksum annotation, ignore mark, whether it
//! still matches Git, and who wrote it last — never the object itself. The manifests it is compared with are
//! held as compact JSON.
//!
//! A watch that breaks (an API server restart, a network cut) is resumed by kube-runtime from the last
//! resourceVersion, or re-listed when that has expired (410): an `Init…InitDone` series, after which objects
//! it did not list again are gone. Events are not lost in either case; the cache is eventually consistent.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tether_core::policy::Ignore;
use tether_core::{ObjectId, Provenance, FIELD_MANAGER};
use tether_plan::{decide, Action, Desired, Kind, CHECKSUM_ANNOTATION};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::engine::{list_key, to_live, ListKey};

/// Seconds after which the API server ends a watch (kube-runtime then starts the next one from where it
/// left off); the watch client's read timeout must be longer.
pub const WATCH_TIMEOUT_SECS: u32 = 290;

/// The cache; cheap to share (all handles see one state). Dropping the last handle stops its watches.
#[derive(Clone)]
pub struct LiveCache {
    shared: Arc<Shared>,
}

struct Shared {
    client: kube::Client,
    selector: String,
    state: Mutex<State>,
    /// Woken when a watched object drifted from Git (or was deleted) while the last sync stands.
    drift: Notify,
    /// Woken when a watch finished listing.
    ready: Notify,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for w in state.watches.values() {
            w.task.abort();
        }
    }
}

#[derive(Default)]
struct State {
    watches: HashMap<ListKey, Watch>,
    objects: HashMap<ObjectId, Entry>,
    /// What the current (or last) sync wants each object to be.
    expected: HashMap<ObjectId, Expected>,
    /// Objects a dry-run showed to be as Git wants although they are not a literal superset of the manifest
    /// (server normalisation: `0.5` → `500m`), by the shape of the live object then.
    confirmed: HashMap<ObjectId, u64>,
    /// Expected objects whose live state no longer matches (or that are gone), waiting for a repair.
    drifted: BTreeSet<ObjectId>,
    /// The expectations are those of a sync that succeeded: drift may be repaired.
    settled: bool,
    /// Watch events seen, for the benchmark and the debug log.
    events: u64,
    /// The resourceVersion each object was last seen at (a write's answer must not undo a newer event).
    versions: HashMap<ObjectId, String>,
}

/// True when resourceVersion `a` is known to be older than `b`. They are opaque to clients; etcd's are
/// integers, and anything else is never called older.
fn is_older(a: &str, b: &str) -> bool {
    matches!((a.parse::<u64>(), b.parse::<u64>()), (Ok(a), Ok(b)) if a < b)
}

struct Watch {
    ready: bool,
    /// Objects listed since the last `Init`; the ones not listed again are gone.
    listing: Option<HashSet<ObjectId>>,
    /// The last error, until an event arrives again (logged once per streak).
    failing: bool,
    task: tokio::task::JoinHandle<()>,
}

/// One live object, reduced.
#[derive(Debug, Clone)]
struct Entry {
    checksum: Option<Box<str>>,
    ignored: bool,
    /// It matched what was expected of it when its last event arrived.
    in_sync: bool,
    /// A hash of the live object without what changes on every write (status, resourceVersion).
    shape: u64,
    /// The last field manager other than tether, kept only while it does not match Git.
    other_manager: Option<Box<str>>,
}

/// A desired object, compact: the body as JSON text, parsed again only when an event needs it.
#[derive(Debug, Clone)]
struct Expected {
    kind: Arc<Kind>,
    body: Box<serde_json::value::RawValue>,
    source: Provenance,
    checksum: String,
    ignore: Ignore,
}

impl Expected {
    fn of(d: &Desired, kinds: &mut HashMap<Kind, Arc<Kind>>) -> Option<Self> {
        let kind = kinds
            .entry(d.kind.clone())
            .or_insert_with(|| Arc::new(d.kind.clone()))
            .clone();
        Some(Expected {
            kind,
            body: d.body.clone(),
            source: d.source.clone(),
            checksum: d.checksum.clone(),
            ignore: d.ignore,
        })
    }

    fn desired(&self, id: &ObjectId) -> Option<Desired> {
        Some(Desired {
            id: id.clone(),
            kind: (*self.kind).clone(),
            body: self.body.clone(),
            source: self.source.clone(),
            checksum: self.checksum.clone(),
            ignore: self.ignore,
        })
    }
}

/// What the cache knows of a desired object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// Not among the watched objects: absent, or live without this sync's label.
    Absent,
    /// Decided from the cache alone.
    Decided(Action),
    /// Live and labelled, but whether it matches needs its body.
    NeedsBody,
}

impl LiveCache {
    /// A cache for sync `sync_name`; watches start as syncs need them. `client` should read with a
    /// timeout above [`WATCH_TIMEOUT_SECS`] (a watch is quiet for minutes when nothing changes).
    pub fn new(client: kube::Client, sync_name: &str) -> Self {
        LiveCache {
            shared: Arc::new(Shared {
                client,
                selector: format!("{}={sync_name}", tether_plan::SYNC_LABEL),
                state: Mutex::new(State::default()),
                drift: Notify::new(),
                ready: Notify::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets what a full sync is about to apply (call it before the sync reads the cache): later events are
    /// judged against it. Drift is not repaired until [`LiveCache::settle`].
    pub fn expect(&self, desired: &[Desired]) {
        let mut kinds = HashMap::new();
        let expected: HashMap<ObjectId, Expected> = desired
            .iter()
            .filter_map(|d| Some((d.id.clone(), Expected::of(d, &mut kinds)?)))
            .collect();
        let mut s = self.state();
        let State {
            confirmed,
            expected: before,
            ..
        } = &mut *s;
        // A confirmation holds for the manifest it was made against.
        confirmed.retain(|id, _| {
            let checksum = |m: &HashMap<ObjectId, Expected>| m.get(id).map(|e| e.checksum.clone());
            checksum(before).is_some() && checksum(before) == checksum(&expected)
        });
        s.expected = expected;
        s.settled = false;
        s.drifted.clear();
    }

    /// Replaces what is expected of these objects only (a commit's changed objects, applied ahead of the
    /// full sync that follows at once), leaving the rest and the settled state as they are.
    pub fn expect_some(&self, desired: &[Desired]) {
        let mut kinds = HashMap::new();
        let mut s = self.state();
        for d in desired {
            if let Some(e) = Expected::of(d, &mut kinds) {
                s.confirmed.remove(&d.id);
                s.expected.insert(d.id.clone(), e);
            }
        }
    }

    /// The server's answer to a write: the object as it now is, known before its watch event arrives (so
    /// the next decision never sees the state before the write).
    pub(crate) fn written(&self, kind: &Kind, o: DynamicObject) {
        self.state().observe(kind, o);
    }

    /// The sync that set the expectations succeeded: from now on a drift is reported for repair.
    pub fn settle(&self) {
        let mut s = self.state();
        s.settled = true;
        if !s.drifted.is_empty() {
            self.shared.drift.notify_one();
        }
    }

    /// The last sync failed (or was stopped): its expectations are not Git's agreed state, repair nothing.
    pub fn unsettle(&self) {
        self.state().settled = false;
    }

    /// Resolves when an object drifted (or was deleted) after a successful sync.
    pub async fn drifted(&self) {
        self.shared.drift.notified().await
    }

    /// Takes the objects waiting for a repair, as the last successful sync wanted them, each with the last
    /// field manager other than tether that wrote it (who changed it, when the server says).
    pub fn take_drifted(&self) -> Vec<(Desired, Option<String>)> {
        let mut s = self.state();
        if !s.settled {
            return Vec::new();
        }
        let ids = std::mem::take(&mut s.drifted);
        ids.iter()
            .filter_map(|id| {
                let manager = s
                    .objects
                    .get(id)
                    .and_then(|o| o.other_manager.as_deref().map(str::to_owned));
                Some((s.expected.get(id)?.desired(id)?, manager))
            })
            .collect()
    }

    /// Every object the last successful sync applied that the cache does not show as matching Git (a
    /// periodic resync repairs these without rendering or listing anything). `None` while no sync stands
    /// or a watch is not listing.
    pub fn unsynced(&self) -> Option<Vec<Desired>> {
        let s = self.state();
        if !s.settled || s.watches.values().any(|w| !w.ready) {
            return None;
        }
        Some(
            s.expected
                .iter()
                .filter(|(id, e)| {
                    e.ignore != Ignore::Always
                        && s.objects.get(*id).is_none_or(|o| {
                            !o.ignored
                                && (!o.in_sync
                                    || o.checksum.as_deref() != Some(e.checksum.as_str()))
                        })
                })
                .filter_map(|(id, e)| e.desired(id))
                .collect(),
        )
    }

    /// The objects expected from these files (repository-relative paths).
    pub fn ids_from_files(&self, files: &[String]) -> BTreeSet<ObjectId> {
        let files: HashSet<&str> = files.iter().map(String::as_str).collect();
        self.state()
            .expected
            .iter()
            .filter(|(_, e)| files.contains(e.source.file.as_str()))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// True when the expectations are those of a sync that succeeded.
    pub fn is_settled(&self) -> bool {
        self.state().settled
    }

    /// How many objects the last successful sync applied (the cache's view of them).
    pub fn expected_len(&self) -> usize {
        self.state().expected.len()
    }

    /// Watch events seen so far.
    pub fn events(&self) -> u64 {
        self.state().events
    }

    /// Objects held.
    pub fn len(&self) -> usize {
        self.state().objects.len()
    }

    /// True when no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A dry-run showed the live object of this shape to be as Git wants it.
    pub(crate) fn confirm(&self, id: &ObjectId, live: &Value) {
        let shape = shape_of(live);
        let mut s = self.state();
        s.confirmed.insert(id.clone(), shape);
        if let Some(o) = s.objects.get_mut(id) {
            if o.shape == shape {
                o.in_sync = true;
                o.other_manager = None;
                s.drifted.remove(id);
            }
        }
    }

    /// What the cache says of `d`.
    pub(crate) fn lookup(&self, d: &Desired) -> Known {
        let s = self.state();
        match s.objects.get(&d.id) {
            None => Known::Absent,
            Some(o) if o.ignored => Known::Decided(Action::IgnoredLive),
            Some(o) if o.checksum.as_deref() != Some(d.checksum.as_str()) => {
                Known::Decided(Action::Update)
            }
            Some(o) if o.in_sync => Known::Decided(Action::Unchanged),
            Some(_) => Known::NeedsBody,
        }
    }

    /// Starts the watches `groups` need and waits until each has listed, up to `deadline`. False when one
    /// has not (forbidden, unreachable): the caller reads the live objects itself.
    pub(crate) async fn ready(
        &self,
        groups: &[(Kind, Option<String>)],
        deadline: Duration,
    ) -> bool {
        let keys: Vec<ListKey> = groups
            .iter()
            .map(|(k, ns)| list_key(k, ns.as_deref()))
            .collect();
        {
            let mut s = self.state();
            for ((kind, ns), key) in groups.iter().zip(&keys) {
                if s.watches.contains_key(key) {
                    continue;
                }
                let task = tokio::spawn(watch(
                    Arc::downgrade(&self.shared),
                    key.clone(),
                    kind.clone(),
                    ns.clone(),
                ));
                s.watches.insert(
                    key.clone(),
                    Watch {
                        ready: false,
                        listing: None,
                        failing: false,
                        task,
                    },
                );
            }
        }
        // Some(true): all listed; Some(false): one is failing (do not wait for it); None: still listing.
        let all_ready = || {
            let s = self.state();
            let watches: Vec<&Watch> = keys.iter().filter_map(|k| s.watches.get(k)).collect();
            if watches.iter().any(|w| w.failing) {
                Some(false)
            } else if watches.iter().all(|w| w.ready) {
                Some(true)
            } else {
                None
            }
        };
        let wait = async {
            loop {
                let notified = self.shared.ready.notified();
                if let Some(ready) = all_ready() {
                    return ready;
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, wait).await.unwrap_or(false)
    }
}

/// One kind's watch: feeds the shared state until the cache is dropped.
async fn watch(
    shared: std::sync::Weak<Shared>,
    key: ListKey,
    kind: Kind,
    namespace: Option<String>,
) {
    let Some(strong) = shared.upgrade() else {
        return;
    };
    let api = crate::engine::api_for(&strong.client, &kind, namespace.as_deref());
    let config = watcher::Config::default()
        .labels(&strong.selector)
        .timeout(WATCH_TIMEOUT_SECS)
        .page_size(500);
    drop(strong);
    let mut delay = Duration::from_millis(500);
    loop {
        // A stream that failed is not resumed: a new one lists again, so "ready" always means a complete
        // list plus every event since (a resumed watch sends nothing to say it is back, so a quiet kind
        // would otherwise look stale, or be trusted while it is not).
        let stream = watcher::watcher(api.clone(), config.clone());
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let drifted_before = s.drifted.len();
            let mut listed = false;
            let mut failed = false;
            match event {
                Ok(Event::Init) => {
                    if let Some(w) = s.watches.get_mut(&key) {
                        w.listing = Some(HashSet::new());
                    }
                }
                Ok(Event::InitApply(o) | Event::Apply(o)) => {
                    if let Some(id) = s.observe(&kind, o) {
                        if let Some(listing) =
                            s.watches.get_mut(&key).and_then(|w| w.listing.as_mut())
                        {
                            listing.insert(id);
                        }
                    }
                }
                Ok(Event::Delete(o)) => {
                    if let Some(id) = id_of(&kind, &o) {
                        s.forget(&id);
                    }
                }
                Ok(Event::InitDone) => {
                    let listing = s
                        .watches
                        .get_mut(&key)
                        .and_then(|w| w.listing.take())
                        .unwrap_or_default();
                    let gone: Vec<ObjectId> = s
                        .objects
                        .keys()
                        .filter(|id| {
                            list_key_of(id, &kind, namespace.as_deref()) && !listing.contains(*id)
                        })
                        .cloned()
                        .collect();
                    for id in &gone {
                        s.forget(id);
                    }
                    if let Some(w) = s.watches.get_mut(&key) {
                        if w.failing {
                            info!(component = "watch", kind = %kind.plural, "watch listing again");
                        }
                        w.ready = true;
                        w.failing = false;
                    }
                    debug!(component = "watch", kind = %kind.plural, objects = listing.len(), "listed");
                    delay = Duration::from_millis(500);
                    listed = true;
                }
                Err(e) => {
                    if let Some(w) = s.watches.get_mut(&key) {
                        if !w.failing {
                            warn!(component = "watch", kind = %kind.plural, error = %e,
                                "watch failed; listing again with backoff (syncs list by themselves meanwhile)");
                        }
                        w.failing = true;
                        w.ready = false;
                        w.listing = None;
                    }
                    failed = true;
                }
            }
            let drifted = s.settled && s.drifted.len() > drifted_before;
            drop(s);
            if listed || failed {
                shared.ready.notify_waiters();
            }
            if drifted {
                shared.drift.notify_one();
            }
            if failed {
                break;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// True when `id` belongs to the watch of `kind` (in `namespace`, when the watch is namespaced).
fn list_key_of(id: &ObjectId, kind: &Kind, namespace: Option<&str>) -> bool {
    id.group == kind.group
        && id.kind == kind.kind
        && (namespace.is_none() || id.namespace.as_deref() == namespace)
}

fn id_of(kind: &Kind, o: &DynamicObject) -> Option<ObjectId> {
    Some(ObjectId {
        namespace: o.metadata.namespace.clone(),
        group: kind.group.clone(),
        kind: kind.kind.clone(),
        name: o.metadata.name.clone()?,
    })
}

impl State {
    /// Reduces one live object and judges it against what is expected of it.
    fn observe(&mut self, kind: &Kind, o: DynamicObject) -> Option<ObjectId> {
        self.events += 1;
        let id = id_of(kind, &o)?;
        let managers: Vec<(String, Option<String>)> = o
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| Some((m.manager.clone()?, m.time.as_ref().map(|t| t.0.to_string()))))
            .collect();
        if let Some(rv) = &o.metadata.resource_version {
            if self
                .versions
                .get(&id)
                .is_some_and(|seen| is_older(rv, seen))
            {
                // An event that was on its way while a write's answer came in: already superseded.
                return Some(id);
            }
            self.versions.insert(id.clone(), rv.clone());
        }
        let live = to_live(o, kind)?;
        let annotations = live.pointer("/metadata/annotations");
        let checksum = annotations
            .and_then(|a| a.get(CHECKSUM_ANNOTATION))
            .and_then(Value::as_str)
            .map(Box::from);
        let shape = shape_of(&live);
        let expected = self.expected.get(&id);
        let action = expected
            .and_then(|e| e.desired(&id))
            .map(|d| decide(&d, Some(&live)));
        let ignored = action == Some(Action::IgnoredLive)
            || (expected.is_none()
                && Ignore::of(tether_core::resource::Annotations::of(&live)) == Ignore::Always);
        let in_sync = match action {
            Some(Action::Unchanged) => true,
            Some(Action::Verify) => self.confirmed.get(&id) == Some(&shape),
            _ => false,
        };
        let other_manager = (!in_sync)
            .then(|| tether_plan::drift::other_manager(&managers, FIELD_MANAGER))
            .flatten()
            .map(Box::from);
        // Drift is a change to an object of the expected commit. One still carrying an older commit's
        // checksum is the sync's to update (or, after it, the periodic resync's), not a repair's: right after
        // a write its new state may simply not have arrived yet.
        let of_commit = expected.is_some_and(|e| {
            e.ignore != Ignore::Always && checksum.as_deref() == Some(e.checksum.as_str())
        });
        if of_commit && !ignored && !in_sync {
            self.drifted.insert(id.clone());
        } else {
            self.drifted.remove(&id);
        }
        self.objects.insert(
            id.clone(),
            Entry {
                checksum,
                ignored,
                in_sync,
                shape,
                other_manager,
            },
        );
        Some(id)
    }

    /// An object is gone: if Git still wants it, that is drift too.
    fn forget(&mut self, id: &ObjectId) {
        self.events += 1;
        self.objects.remove(id);
        self.versions.remove(id);
        if self
            .expected
            .get(id)
            .is_some_and(|e| e.ignore != Ignore::Always)
        {
            self.drifted.insert(id.clone());
        }
    }
}

/// A hash of what a live object is, without what every write or status update changes.
fn shape_of(live: &Value) -> u64 {
    let stripped = tether_plan::strip_volatile(live.clone());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(&stripped)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind() -> Kind {
        Kind {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            namespaced: true,
        }
    }

    fn desired(name: &str, value: &str, checksum: &str) -> Desired {
        Desired {
            id: ObjectId {
                namespace: Some("a".into()),
                group: String::new(),
                kind: "ConfigMap".into(),
                name: name.into(),
            },
            kind: kind(),
            body: serde_json::value::to_raw_value(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "a",
                    "annotations": {CHECKSUM_ANNOTATION: checksum}},
                "data": {"v": value}}))
            .unwrap(),
            source: Provenance {
                file: format!("{name}.yaml"),
                line: 1,
            },
            checksum: checksum.into(),
            ignore: Ignore::No,
        }
    }

    /// The object as the server would send it: the manifest plus what the server adds.
    fn live(d: &Desired, value: &str, manager: &str) -> DynamicObject {
        let mut body = d.body_value().unwrap();
        body["data"]["v"] = value.into();
        body["metadata"]["resourceVersion"] = "7".into();
        body["metadata"]["managedFields"] = json!([
            {"manager": "tether", "operation": "Apply", "time": "2026-12-01T10:00:00Z"},
            {"manager": manager, "operation": "Update", "time": "2026-12-01T10:00:09Z"}
        ]);
        serde_json::from_value(body).unwrap()
    }

    fn state_expecting(ds: &[Desired]) -> State {
        let mut kinds = HashMap::new();
        State {
            expected: ds
                .iter()
                .map(|d| (d.id.clone(), Expected::of(d, &mut kinds).unwrap()))
                .collect(),
            ..State::default()
        }
    }

    #[test]
    fn an_object_as_git_wants_it_is_in_sync_and_an_edit_or_deletion_is_drift() {
        let web = desired("web", "1", "c1");
        let mut s = state_expecting(std::slice::from_ref(&web));
        s.observe(&kind(), live(&web, "1", "tether"));
        assert!(s.objects[&web.id].in_sync);
        assert!(s.drifted.is_empty());

        s.observe(&kind(), live(&web, "edited", "kubectl-edit"));
        assert!(!s.objects[&web.id].in_sync);
        assert!(s.drifted.contains(&web.id));
        assert_eq!(
            s.objects[&web.id].other_manager.as_deref(),
            Some("kubectl-edit"),
            "the writer tether would be fighting"
        );

        s.observe(&kind(), live(&web, "1", "tether"));
        assert!(s.drifted.is_empty(), "set back: no longer drifted");

        s.forget(&web.id);
        assert!(s.drifted.contains(&web.id), "deleted by hand is drift too");
    }

    #[test]
    fn an_object_of_an_older_commit_is_an_update_not_a_repair() {
        let old = desired("web", "1", "c1");
        let new = desired("web", "2", "c2");
        let mut s = state_expecting(std::slice::from_ref(&new));
        s.observe(&kind(), live(&old, "1", "tether"));
        assert!(
            s.drifted.is_empty(),
            "the sync updates it; a repair would race the sync's own write"
        );
        assert!(!s.objects[&new.id].in_sync);
    }

    #[test]
    fn objects_this_sync_does_not_expect_are_never_drift() {
        let web = desired("web", "1", "c1");
        let mut s = state_expecting(&[]);
        s.observe(&kind(), live(&web, "edited", "kubectl-edit"));
        s.forget(&web.id);
        assert!(s.drifted.is_empty());
    }
}
