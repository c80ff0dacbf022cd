//! One sync of a commit: snapshot, plan, validate, staged apply, rollback on failure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::{stream, StreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::Value;
use tether_core::{ObjectId, ObjectRef, Provenance, Resource, FIELD_MANAGER};
use tether_plan::{
    decide, kinds_from_crds, stages, strip_volatile, waves, Action, Desired, Entry, Kind,
    NamespaceFilter, Preparer, Stages, SYNC_LABEL,
};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::discovery::Kinds;
use crate::error::{Error, ObjectFailure};
use crate::live::{Known, LiveCache};
use tether_plan::PlanError;

/// Settings of a sync that do not change between commits.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Namespace for namespaced objects that name none (`--k8s-default-namespace`).
    pub default_namespace: String,
    /// `--k8s-allow-namespace`.
    pub namespaces: NamespaceFilter,
    /// `--sync-name`: recorded on every object as its owner.
    pub sync_name: String,
    /// How many writes are in flight at once.
    pub concurrency: usize,
    /// Take over objects another sync name applied (otherwise such an object fails the sync).
    pub takeover: bool,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist and was created.
    Created,
    /// Git changed and the object was updated.
    Configured,
    /// Git did not change but the live object had drifted; it was set back.
    DriftCorrected,
    /// Already as desired; no write was sent.
    Unchanged,
    /// Not applied, with the reason.
    Skipped(String),
}

/// The result of a successful sync.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every rendered object and what happened to it, in apply order.
    pub objects: Vec<(ObjectId, Provenance, Outcome)>,
    /// The objects that are now live as this sync's own (applied, unchanged, or ignored on the live object):
    /// the inventory garbage collection works from.
    pub applied: Vec<ObjectRef>,
    /// The uid of each object written, from the server's answer (what events about it refer to).
    pub uids: HashMap<ObjectId, String>,
}

impl Report {
    /// Every object the commit renders, applied or skipped: garbage collection never deletes these.
    pub fn rendered(&self) -> BTreeSet<ObjectId> {
        self.objects.iter().map(|(id, _, _)| id.clone()).collect()
    }
}

impl Report {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.objects.iter().filter(|(_, _, o)| f(o)).count()
    }
    /// Objects created.
    pub fn created(&self) -> usize {
        self.count(|o| *o == Outcome::Created)
    }
    /// Objects updated, drift corrections included.
    pub fn configured(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Configured | Outcome::DriftCorrected))
    }
    /// Objects left alone because they were already as desired.
    pub fn unchanged(&self) -> usize {
        self.count(|o| *o == Outcome::Unchanged)
    }
    /// Objects skipped by policy.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }
}

/// A live object as the sync needs it: the decision made against it, the sync label it carries, and the
/// body only when it may have drifted (compared with a dry-run later). Holding 20,000 whole objects cost
/// 200 MB at N = 20,000.
#[derive(Debug)]
struct Seen {
    action: Action,
    /// The sync label, only when it names another sync than `sync_name`.
    other_sync: Option<String>,
    live: Option<Value>,
}

impl Seen {
    fn of(desired: &Desired, live: Value, sync_name: &str) -> Self {
        let action = decide(desired, Some(&live));
        let other_sync = live
            .pointer("/metadata/labels")
            .and_then(|l| l.get(tether_plan::SYNC_LABEL))
            .and_then(Value::as_str)
            .filter(|l| *l != sync_name)
            .map(str::to_owned);
        Seen {
            action,
            other_sync,
            live: (action == Action::Verify).then_some(live),
        }
    }
}

/// The objects a failed sync wrote that keep their new state: everything created or changed, except the
/// Namespaces and CRDs the rollback removed again (and what those Namespaces held).
fn changed(outcomes: &HashMap<ObjectId, Outcome>, rolled_back: &[&Desired]) -> Vec<ObjectId> {
    let mut ids: Vec<ObjectId> = outcomes
        .iter()
        .filter(|(id, o)| {
            matches!(
                o,
                Outcome::Created | Outcome::Configured | Outcome::DriftCorrected
            ) && !rolled_back.iter().any(|d| {
                &d.id == *id
                    || (d.kind.is_namespace()
                        && id.namespace.as_deref() == Some(d.id.name.as_str()))
            })
        })
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    ids
}

/// A commit resolved against the server and ready to apply ([`Engine::plan`]).
#[derive(Debug)]
pub struct Planned {
    server: Kinds,
    prepared: tether_plan::Prepared,
}

impl Planned {
    /// The objects the commit will apply, in apply order.
    pub fn desired(&self) -> &[Desired] {
        &self.prepared.desired
    }

    /// How many rendered objects the commit leaves out (ignored, or outside the allowed namespaces).
    pub fn skipped(&self) -> usize {
        self.prepared.skipped.len()
    }
}

/// A planned commit with the live objects read and each object's action decided ([`Engine::decide`]):
/// what [`Engine::write`] will send, known before its first write.
#[derive(Debug)]
pub struct Decided {
    server: Kinds,
    entries: Vec<Entry>,
    skipped: Vec<(ObjectId, Provenance, tether_plan::Skipped)>,
}

impl Decided {
    /// Every object the commit will apply (not the skipped ones), as the inventory records them.
    pub fn objects(&self) -> impl Iterator<Item = (&ObjectId, &Kind)> + Clone + '_ {
        self.entries
            .iter()
            .map(|e| (&e.desired.id, &e.desired.kind))
    }
}

/// Applies commits to one cluster; keeps the discovery cache between syncs.
pub struct Engine {
    client: kube::Client,
    kinds: Mutex<Option<Kinds>>,
    /// Watches of the objects this sync owns, in a running agent: read instead of LISTing at each sync.
    live: Option<LiveCache>,
}

impl Engine {
    /// An engine for the cluster behind `client`.
    pub fn new(client: kube::Client) -> Self {
        Engine {
            client,
            kinds: Mutex::new(None),
            live: None,
        }
    }

    /// Reads the live objects from `cache` (kept current by watches) instead of listing them at each sync.
    pub fn set_live(&mut self, cache: LiveCache) {
        self.live = Some(cache);
    }

    /// The live cache, when this engine has one.
    pub fn live(&self) -> Option<&LiveCache> {
        self.live.as_ref()
    }

    /// The client this engine writes with.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Makes the cluster match `resources`, or changes nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`] and [`Error::Rejected`] mean nothing was written. [`Error::ApplyFailed`] means a
    /// write failed after every object passed the dry-run; Namespaces and CRDs created by this sync are
    /// removed again, other objects keep what was applied.
    pub async fn sync(
        &self,
        resources: Vec<Resource>,
        opts: &SyncOptions,
    ) -> Result<Report, Error> {
        let planned = self.plan(resources, opts).await?;
        self.apply(planned, opts).await
    }

    /// Resolves a commit's objects against the server (kinds, namespaces, ownership marks) without sending
    /// a write: what [`Engine::apply`] will write, known before its first write.
    ///
    /// # Errors
    /// [`Error::Invalid`]: the commit cannot be applied as it is; discovery failing.
    pub async fn plan(
        &self,
        resources: Vec<Resource>,
        opts: &SyncOptions,
    ) -> Result<Planned, Error> {
        let mut intake = self.intake(opts).await?;
        for r in resources {
            intake.push(r);
        }
        self.plan_intake(intake).await
    }

    /// Starts planning a commit whose objects arrive one render unit at a time ([`Intake::push`]); finish
    /// with [`Engine::plan_intake`]. The kinds are the cached discovery (discovered now if there is none).
    ///
    /// # Errors
    /// Discovery failing.
    pub async fn intake<'a>(&self, opts: &'a SyncOptions) -> Result<Intake<'a>, Error> {
        let cached = self.kinds.lock().await.clone();
        let (server, fresh) = match cached {
            Some(k) => (k, false),
            None => (self.discover().await?, true),
        };
        Ok(Intake {
            all: server.clone(),
            server,
            fresh,
            crds: Vec::new(),
            preparer: Preparer::new(&opts.default_namespace, &opts.namespaces, &opts.sync_name),
            pending: Vec::new(),
        })
    }

    /// Resolves what [`Intake::push`] could not: objects of a CRD later in the commit, or of a kind
    /// installed since the kinds were cached (discovered again, once); see [`Engine::plan`].
    ///
    /// # Errors
    /// [`Error::Invalid`]: the commit cannot be applied as it is; discovery failing.
    pub async fn plan_intake(&self, intake: Intake<'_>) -> Result<Planned, Error> {
        let Intake {
            mut server,
            fresh,
            mut all,
            crds,
            mut preparer,
            pending,
        } = intake;
        let mut unknown = Vec::new();
        for r in pending {
            if let Some(r) = preparer.push(r, |g, v, k| all.resolve(g, v, k)) {
                unknown.push(r);
            }
        }
        if !unknown.is_empty() && !fresh {
            server = self.discover().await?;
            all = with_crds(&server, &crds);
            let retry = std::mem::take(&mut unknown);
            for r in retry {
                if let Some(r) = preparer.push(r, |g, v, k| all.resolve(g, v, k)) {
                    unknown.push(r);
                }
            }
        }
        for r in unknown {
            preparer.unknown_kind(r);
        }
        let prepared = preparer.finish().map_err(Error::Invalid)?;
        Ok(Planned { server, prepared })
    }

    async fn discover(&self) -> Result<Kinds, Error> {
        let fresh = Kinds::discover(&self.client).await?;
        *self.kinds.lock().await = Some(fresh.clone());
        Ok(fresh)
    }

    /// Applies a planned commit: validates every write, then writes in stages; see [`Engine::sync`].
    pub async fn apply(&self, planned: Planned, opts: &SyncOptions) -> Result<Report, Error> {
        let decided = self.decide(planned, opts).await?;
        self.write(decided, opts).await
    }

    /// Reads the live objects of a planned commit and decides what each needs, without a write; refuses
    /// objects another sync owns (unless `opts.takeover`).
    ///
    /// # Errors
    /// [`Error::Invalid`] (another sync's objects); reading the live objects failing.
    pub async fn decide(&self, planned: Planned, opts: &SyncOptions) -> Result<Decided, Error> {
        let Planned { server, prepared } = planned;
        let live = self.snapshot(&prepared.desired, &server, opts).await?;
        for (id, at, why) in &prepared.skipped {
            match why {
                tether_plan::Skipped::NamespaceNotAllowed => {
                    warn!(component = "apply", object = %id, source = %at, "skipped: {why}")
                }
                tether_plan::Skipped::IgnoredInGit => {
                    info!(component = "apply", object = %id, source = %at, "skipped: {why}")
                }
            }
        }
        if !opts.takeover {
            let foreign: Vec<PlanError> = prepared
                .desired
                .iter()
                .zip(&live)
                .filter_map(|(d, seen)| {
                    let other = seen.as_ref()?.other_sync.as_deref()?;
                    Some(PlanError {
                        at: d.source.clone(),
                        id: Some(d.id.clone()),
                        message: format!(
                            "is managed by sync '{other}', not '{}'; two syncs declaring one object would \
                             take it from each other at every sync: remove it from one of the repositories, \
                             or let this sync take it over",
                            opts.sync_name
                        ),
                        cause: tether_plan::Cause::OtherSync,
                    })
                })
                .collect();
            if !foreign.is_empty() {
                return Err(Error::Invalid(foreign));
            }
        }
        let entries: Vec<Entry> = prepared
            .desired
            .into_iter()
            .zip(live)
            .map(|(d, seen)| {
                let (action, live) = match seen {
                    Some(seen) => (seen.action, seen.live),
                    None => (decide(&d, None), None),
                };
                Entry {
                    desired: d,
                    live,
                    action,
                }
            })
            .collect();
        Ok(Decided {
            server,
            entries,
            skipped: prepared.skipped,
        })
    }

    /// Writes a decided commit: validates every write with a dry-run, then writes in stages; see
    /// [`Engine::sync`].
    ///
    /// # Errors
    /// As [`Engine::sync`].
    pub async fn write(&self, decided: Decided, opts: &SyncOptions) -> Result<Report, Error> {
        let Decided {
            server,
            entries,
            skipped,
        } = decided;
        let mut report = Report::default();
        let mut outcomes: HashMap<ObjectId, Outcome> = HashMap::new();
        let mut uids: HashMap<ObjectId, String> = HashMap::new();
        // An object without an outcome is unchanged: a resync of 20,000 unchanged objects keeps no map of
        // them (it was 5 MB of copied ids).
        for e in &entries {
            match e.action {
                Action::Unchanged => {}
                Action::IgnoredLive => {
                    info!(component = "apply", object = %e.desired.id, "skipped: ignore annotation on the live object");
                    outcomes.insert(
                        e.desired.id.clone(),
                        Outcome::Skipped("ignore annotation on the live object".into()),
                    );
                }
                Action::Create | Action::Update | Action::Verify => {}
            }
        }
        let Stages {
            first,
            now,
            deferred,
        } = stages(&entries, |k| server.contains(k));

        // 1. Validate everything that can be validated before any write.
        let mut writes = self
            .validate(
                &entries,
                first.iter().chain(&now).copied(),
                &server,
                opts.concurrency,
            )
            .await?;

        // 2. Namespaces, then CRDs.
        let mut created_first: Vec<&Desired> = Vec::new();
        for wave in waves(
            &entries,
            first.iter().copied().filter(|i| writes.contains(i)),
        ) {
            let failures = self
                .apply_wave(
                    &entries,
                    &wave,
                    &server,
                    opts.concurrency,
                    (&mut outcomes, &mut uids),
                )
                .await;
            created_first.extend(
                wave.iter()
                    .filter(|&&i| outcomes.get(&entries[i].desired.id) == Some(&Outcome::Created))
                    .map(|&i| &entries[i].desired),
            );
            if !failures.is_empty() {
                self.rollback(&created_first).await;
                return Err(Error::ApplyFailed {
                    failures,
                    changed: changed(&outcomes, &created_first),
                });
            }
        }
        let new_crds: Vec<&Desired> = first
            .iter()
            .filter(|i| writes.contains(i))
            .map(|&i| &entries[i].desired)
            .filter(|d| d.kind.is_crd())
            .collect();
        if !new_crds.is_empty() {
            self.wait_established(&new_crds).await;
            // The server now serves new kinds; rediscover on the next sync.
            *self.kinds.lock().await = None;
        }

        // 3. Validate what needed those, undoing step 2's creations if the commit is rejected after all.
        if !deferred.is_empty() {
            match self
                .validate(
                    &entries,
                    deferred.iter().copied(),
                    &server,
                    opts.concurrency,
                )
                .await
            {
                Ok(more) => writes.extend(more),
                Err(e) => {
                    self.rollback(&created_first).await;
                    return Err(e);
                }
            }
        }

        // 4. Everything else, in the waves of `tether_plan::wave_of` (all at once but Pods and webhooks).
        let rest = now
            .into_iter()
            .chain(deferred)
            .filter(|i| writes.contains(i));
        for wave in waves(&entries, rest) {
            let failures = self
                .apply_wave(
                    &entries,
                    &wave,
                    &server,
                    opts.concurrency,
                    (&mut outcomes, &mut uids),
                )
                .await;
            if !failures.is_empty() {
                self.rollback(&created_first).await;
                return Err(Error::ApplyFailed {
                    failures,
                    changed: changed(&outcomes, &created_first),
                });
            }
        }

        for e in entries {
            report.applied.push(ObjectRef {
                id: e.desired.id.clone(),
                kind: e.desired.kind.clone(),
            });
            let outcome = outcomes.remove(&e.desired.id).unwrap_or(Outcome::Unchanged);
            if let Some(uid) = uids.remove(&e.desired.id) {
                report.uids.insert(e.desired.id.clone(), uid);
            }
            report
                .objects
                .push((e.desired.id, e.desired.source, outcome));
        }
        for (id, at, why) in skipped {
            report
                .objects
                .push((id, at, Outcome::Skipped(why.to_string())));
        }
        Ok(report)
    }

    /// Sets objects that drifted from Git back to what it wants (`desired`, as the last sync prepared them):
    /// the same reading, dry-run and staged apply as a sync, for these objects only.
    ///
    /// # Errors
    /// As [`Engine::apply`].
    pub async fn repair(&self, desired: Vec<Desired>, opts: &SyncOptions) -> Result<Report, Error> {
        let cached = self.kinds.lock().await.clone();
        let server = match cached {
            Some(k) => k,
            None => {
                let fresh = Kinds::discover(&self.client).await?;
                *self.kinds.lock().await = Some(fresh.clone());
                fresh
            }
        };
        let prepared = tether_plan::Prepared {
            desired,
            skipped: Vec::new(),
        };
        self.apply(Planned { server, prepared }, opts).await
    }

    /// Checks `resources` against the server without writing anything: every kind must be served, and every
    /// object must pass a server-side dry-run. An object in a Namespace the set creates is dry-run in
    /// `opts.default_namespace` instead (the server cannot admit anything into a namespace that does not
    /// exist yet); one whose kind a CRD of the set defines is not dry-run. Returns how many were dry-run.
    ///
    /// # Errors
    /// As [`Engine::sync`] before its first write: [`Error::Invalid`] or [`Error::Rejected`].
    pub async fn check(
        &self,
        resources: Vec<Resource>,
        opts: &SyncOptions,
    ) -> Result<usize, Error> {
        let Planned { server, prepared } = self.plan(resources, opts).await?;
        let mut entries: Vec<Entry> = prepared
            .desired
            .into_iter()
            .map(|desired| Entry {
                desired,
                live: None,
                action: Action::Create,
            })
            .collect();
        let Stages {
            first,
            now,
            deferred,
        } = stages(&entries, |k| server.contains(k));
        let mut which: Vec<usize> = first.iter().chain(&now).copied().collect();
        for i in deferred {
            let d = &mut entries[i].desired;
            if !server.contains(&d.kind) || d.id.namespace.is_none() {
                continue;
            }
            // Never skipped quietly: an object left out here would be reported as checked.
            d.set_namespace(&opts.default_namespace).map_err(|e| {
                Error::Invalid(vec![PlanError {
                    at: d.source.clone(),
                    id: Some(d.id.clone()),
                    message: format!("cannot be encoded as JSON: {e}"),
                    cause: tether_plan::Cause::Manifest,
                }])
            })?;
            which.push(i);
        }
        self.validate(&entries, which.iter().copied(), &server, opts.concurrency)
            .await?;
        Ok(which.len())
    }

    /// Reads the live state of every desired object, in as few requests as possible:
    /// 1. objects this sync applied before carry its label: one label-selected LIST per kind (per allowed
    ///    namespace with `--k8s-allow-namespace`), so an unchanged repository costs a handful of requests
    ///    however many objects it has and however large the cluster is;
    /// 2. desired objects not found that way may exist without the label (made by hand or another tool):
    ///    their Namespaces are looked up one by one, and their kinds listed only in namespaces that already
    ///    exist — nothing can live in a namespace this commit is about to create.
    async fn snapshot(
        &self,
        desired: &[Desired],
        server: &Kinds,
        opts: &SyncOptions,
    ) -> Result<Vec<Option<Seen>>, Error> {
        let index: HashMap<&ObjectId, usize> = desired
            .iter()
            .enumerate()
            .map(|(i, d)| (&d.id, i))
            .collect();
        // Decided as each page arrives: only objects that may have drifted keep their body, and what is
        // kept is indexed like `desired` (a map keyed by a copy of every id was 6 MB at 20,000 objects).
        let sync_name = opts.sync_name.as_str();
        let keep = |id: ObjectId, live: Value| -> Option<(usize, Seen)> {
            let i = *index.get(&id)?;
            Some((i, Seen::of(&desired[i], live, sync_name)))
        };
        let restricted = !opts.namespaces.0.is_empty();
        let mut owned: BTreeMap<ListKey, (Kind, Option<String>)> = BTreeMap::new();
        for d in desired.iter().filter(|d| server.contains(&d.kind)) {
            let scope = d.id.namespace.clone().filter(|_| restricted);
            owned
                .entry(list_key(&d.kind, scope.as_deref()))
                .or_insert_with(|| (d.kind.clone(), scope));
        }
        let found = match self.read_cache(desired, server, &owned, &keep).await? {
            Some(found) => found,
            None => {
                let selector = format!("{SYNC_LABEL}={}", opts.sync_name);
                self.list_groups(owned, Some(&selector), &keep).await?
            }
        };
        let mut live: Vec<Option<Seen>> = std::iter::repeat_with(|| None)
            .take(desired.len())
            .collect();
        for (i, seen) in found {
            live[i] = Some(seen);
        }

        let missing: Vec<&Desired> = desired
            .iter()
            .zip(&live)
            .filter(|(d, seen)| server.contains(&d.kind) && seen.is_none())
            .map(|(d, _)| d)
            .collect();
        let namespaces = self
            .get_each(missing.iter().copied().filter(|d| d.kind.is_namespace()))
            .await?;
        let mut new_namespaces = BTreeSet::new();
        for (id, found) in namespaces {
            let name = id.name.clone();
            match found.and_then(|v| keep(id, v)) {
                Some((i, seen)) => live[i] = Some(seen),
                None => {
                    new_namespaces.insert(name);
                }
            }
        }
        let unowned: Vec<&Desired> = missing
            .iter()
            .copied()
            .filter(|d| !d.kind.is_namespace())
            .filter(|d| {
                d.id.namespace
                    .as_deref()
                    .is_none_or(|ns| !new_namespaces.contains(ns))
            })
            .collect();
        if unowned.len() <= GET_INSTEAD_OF_LIST {
            // A commit adding a few objects: a GET each costs less than listing their kinds.
            for (id, found) in self.get_each(unowned.into_iter()).await? {
                if let Some((i, seen)) = found.and_then(|v| keep(id, v)) {
                    live[i] = Some(seen);
                }
            }
            return Ok(live);
        }
        let mut groups: BTreeMap<ListKey, (Kind, Option<String>)> = BTreeMap::new();
        for d in unowned {
            let ns = d.id.namespace.as_deref();
            groups
                .entry(list_key(&d.kind, ns))
                .or_insert_with(|| (d.kind.clone(), ns.map(str::to_owned)));
        }
        for (i, seen) in self.list_groups(groups, None, &keep).await? {
            live[i] = Some(seen);
        }
        Ok(live)
    }

    /// The live objects from the watch cache, when this engine has one and its watches of `owned` have
    /// listed: decided from the cache where it can, a GET for the few it cannot (an object that changed
    /// without a new commit, checked against its body). `None`: read them by LIST instead.
    async fn read_cache(
        &self,
        desired: &[Desired],
        server: &Kinds,
        owned: &BTreeMap<ListKey, (Kind, Option<String>)>,
        keep: &(dyn Fn(ObjectId, Value) -> Option<(usize, Seen)> + Sync),
    ) -> Result<Option<Vec<(usize, Seen)>>, Error> {
        let Some(cache) = &self.live else {
            return Ok(None);
        };
        let groups: Vec<(Kind, Option<String>)> = owned.values().cloned().collect();
        if !cache.ready(&groups, WATCH_READY).await {
            warn!(component = "apply", timeout = ?WATCH_READY,
                "the watches of this sync's objects have not listed them yet; listing them instead");
            return Ok(None);
        }
        let mut live = Vec::new();
        let mut bodies = Vec::new();
        for (i, d) in desired.iter().enumerate() {
            if !server.contains(&d.kind) {
                continue;
            }
            match cache.lookup(d) {
                Known::Absent => {}
                Known::Decided(action) => {
                    // Watched by this sync's label, so never another sync's object.
                    live.push((
                        i,
                        Seen {
                            action,
                            other_sync: None,
                            live: None,
                        },
                    ));
                }
                Known::NeedsBody => bodies.push(d),
            }
        }
        for (id, found) in self.get_each(bodies.into_iter()).await? {
            if let Some(seen) = found.and_then(|v| keep(id, v)) {
                live.push(seen);
            }
        }
        Ok(Some(live))
    }

    /// GETs each object (a few at a time); `None` for those that do not exist.
    async fn get_each<'a>(
        &self,
        items: impl Iterator<Item = &'a Desired>,
    ) -> Result<Vec<(ObjectId, Option<Value>)>, Error> {
        stream::iter(items)
            .map(|d| async move {
                let found = self
                    .api(&d.kind, d.id.namespace.as_deref())
                    .get_opt(&d.id.name)
                    .await
                    .map_err(|source| Error::Api {
                        what: format!("get {}", d.id),
                        source,
                    })?;
                Ok::<_, Error>((d.id.clone(), found.and_then(|o| to_live(o, &d.kind))))
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// LISTs each (kind, namespace) group in parallel, optionally by label selector; `keep` reduces each
    /// object as its page arrives (`None` drops it), so a large cluster's objects are never all held at once.
    pub(crate) async fn list_groups<T: Send>(
        &self,
        groups: BTreeMap<ListKey, (Kind, Option<String>)>,
        selector: Option<&str>,
        keep: &(dyn Fn(ObjectId, Value) -> Option<T> + Sync),
    ) -> Result<Vec<T>, Error> {
        // Pages keep the response bodies small on large clusters.
        let params = match selector {
            Some(s) => ListParams::default().labels(s),
            None => ListParams::default(),
        }
        .limit(LIST_PAGE);
        let params = &params;
        let lists: Vec<Result<Vec<T>, Error>> = stream::iter(groups.into_values())
            .map(|(kind, ns)| async move {
                let api = self.api(&kind, ns.as_deref());
                let what = || match &ns {
                    Some(ns) => format!("list {} in namespace {ns}", kind.plural),
                    None => format!("list {}", kind.plural),
                };
                let mut out = Vec::new();
                let mut page = params.clone();
                loop {
                    let text = self
                        .list_page(&api, &page)
                        .await
                        .map_err(|source| Error::Api {
                            what: what(),
                            source,
                        })?;
                    let next = each_listed(&text, |o| {
                        let id = ObjectId {
                            namespace: o.metadata.namespace.clone(),
                            group: kind.group.clone(),
                            kind: kind.kind.clone(),
                            name: o.metadata.name.clone()?,
                        };
                        out.push(keep(id, to_live(o, &kind)?)?);
                        Some(())
                    })
                    .map_err(|e| Error::Api {
                        what: what(),
                        source: kube::Error::SerdeError(e),
                    })?;
                    match next {
                        Some(token) => page = params.clone().continue_token(&token),
                        None => return Ok(out),
                    }
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut out = Vec::new();
        for l in lists {
            let mut l = l?;
            // Usually one kind holds most objects: keep its list rather than copying it.
            if l.len() > out.len() {
                std::mem::swap(&mut out, &mut l);
            }
            out.extend(l);
        }
        Ok(out)
    }

    /// One page of a LIST as the server's text: kube's `Api::list` would parse the whole page into typed
    /// objects at once (with their managedFields), several times the text's size.
    async fn list_page(
        &self,
        api: &Api<DynamicObject>,
        params: &ListParams,
    ) -> Result<String, kube::Error> {
        let mut req = kube::core::Request::new(api.resource_url())
            .list(params)
            .map_err(kube::Error::BuildRequest)?;
        req.extensions_mut().insert("list");
        self.client.request_text(req).await
    }

    /// Server-side dry-runs the given entries; returns the ones that need a real write. `Verify` entries whose
    /// dry-run result equals the live object are marked unchanged (server normalisation, not drift).
    async fn validate(
        &self,
        entries: &[Entry],
        which: impl Iterator<Item = usize>,
        server: &Kinds,
        concurrency: usize,
    ) -> Result<BTreeSet<usize>, Error> {
        // Each result is reduced to "does it need a write" inside its future, so thousands of dry-run
        // responses are never held in memory at once.
        let gone = Unreachable::default();
        let gone = &gone;
        let results: Vec<(usize, Result<bool, kube::Error>)> = stream::iter(which)
            .map(|i| async move {
                let e = &entries[i];
                if gone.is_set() {
                    return None;
                }
                let res = self.patch(&e.desired, true, server).await.map(|result| {
                    e.action != Action::Verify || {
                        let live = e.live.clone().map(strip_volatile);
                        serde_json::to_value(result).ok().map(strip_volatile) != live
                    }
                });
                gone.note(&res);
                Some((i, res))
            })
            .buffer_unordered(concurrency.max(1))
            .filter_map(std::future::ready)
            .collect()
            .await;
        let mut failures = Vec::new();
        let mut writes = BTreeSet::new();
        for (i, res) in results {
            let e = &entries[i];
            match res {
                Err(error) => failures.push(ObjectFailure::of(&e.desired, error)),
                Ok(false) => {
                    // Only the server's normalisation differed (e.g. `0.5` → `500m`): nothing to write.
                    if let (Some(cache), Some(live)) = (&self.live, &e.live) {
                        cache.confirm(&e.desired.id, live);
                    }
                }
                Ok(true) => {
                    if e.action == Action::Verify {
                        warn!(component = "apply", object = %e.desired.id, source = %e.desired.source,
                            "drift: the live object differs from Git; correcting it");
                    }
                    writes.insert(i);
                }
            }
        }
        if failures.is_empty() {
            Ok(writes)
        } else {
            failures.sort_by(|a, b| a.at.cmp(&b.at));
            Err(Error::Rejected(failures))
        }
    }

    /// Applies entries concurrently; returns the failures.
    async fn apply_wave(
        &self,
        entries: &[Entry],
        wave: &[usize],
        server: &Kinds,
        concurrency: usize,
        (outcomes, uids): (
            &mut HashMap<ObjectId, Outcome>,
            &mut HashMap<ObjectId, String>,
        ),
    ) -> Vec<ObjectFailure> {
        let gone = Unreachable::default();
        let gone = &gone;
        let results: Vec<(usize, Result<Option<String>, kube::Error>)> =
            stream::iter(wave.iter().copied())
                .map(|i| async move {
                    if gone.is_set() {
                        return None;
                    }
                    let d = &entries[i].desired;
                    let written = self.patch(d, false, server).await.map(|o| {
                        let uid = o.metadata.uid.clone();
                        if let Some(cache) = &self.live {
                            cache.written(&d.kind, o);
                        }
                        uid
                    });
                    gone.note(&written);
                    Some((i, written))
                })
                .buffer_unordered(concurrency.max(1))
                .filter_map(std::future::ready)
                .collect()
                .await;
        let mut failures = Vec::new();
        for (i, res) in results {
            let e = &entries[i];
            let d = &e.desired;
            match res {
                Ok(uid) => {
                    if let Some(uid) = uid {
                        uids.insert(d.id.clone(), uid);
                    }
                    let outcome = match e.action {
                        Action::Create => Outcome::Created,
                        Action::Verify => Outcome::DriftCorrected,
                        _ => Outcome::Configured,
                    };
                    let action = match outcome {
                        Outcome::Created => "created",
                        Outcome::DriftCorrected => "drift corrected",
                        _ => "configured",
                    };
                    info!(component = "apply", object = %d.id, source = %d.source, action);
                    outcomes.insert(d.id.clone(), outcome);
                }
                Err(error) => failures.push(ObjectFailure::of(d, error)),
            }
        }
        failures
    }

    /// Server-side apply (or its dry-run) of one object, forcing conflicts as the owner of Git's fields.
    /// `server` is what the server served before this sync: only a kind it did not serve (a CRD this sync
    /// created) may answer 404 for a while; any other 404 is final.
    async fn patch(
        &self,
        d: &Desired,
        dry_run: bool,
        server: &Kinds,
    ) -> Result<DynamicObject, kube::Error> {
        let api = self.api(&d.kind, d.id.namespace.as_deref());
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        // A custom resource whose CRD was created a moment ago can 404 until the server has wired it up.
        let new_kind = !server.contains(&d.kind);
        let not_served_yet =
            |e: &kube::Error| new_kind && matches!(e, kube::Error::Api(s) if s.code == 404);
        let body = Patch::Apply(&d.body);
        let send = || api.patch(&d.id.name, &params, &body);
        send.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(1))
                .with_max_times(30),
        )
        .when(not_served_yet)
        .await
    }

    /// Removes Namespaces and CRDs that this sync created, so a failed commit leaves the cluster as it was.
    async fn rollback(&self, created: &[&Desired]) {
        for d in created.iter().rev() {
            let api = self.api(&d.kind, None);
            match api.delete(&d.id.name, &DeleteParams::background()).await {
                Ok(_) => {
                    warn!(component = "apply", object = %d.id, "rolled back: removed what this failed sync created")
                }
                Err(e) => {
                    warn!(component = "apply", object = %d.id, error = %e, "rollback failed; remove it by hand")
                }
            }
        }
    }

    /// Waits until new CRDs are established, so their custom resources can be validated. One that is not
    /// within 30 s is reported; its custom resources then fail their dry-run with the server's reason.
    async fn wait_established(&self, crds: &[&Desired]) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        futures::future::join_all(crds.iter().map(|d| {
            let established =
                await_condition(api.clone(), &d.id.name, conditions::is_crd_established());
            async move {
                match tokio::time::timeout(CRD_ESTABLISHED_TIMEOUT, established).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(component = "apply", object = %d.id, error = %e,
                        "cannot watch the CRD until it is established"),
                    Err(_) => warn!(component = "apply", object = %d.id,
                        timeout = ?CRD_ESTABLISHED_TIMEOUT,
                        "the CRD is not established in time; its custom resources may be rejected"),
                }
            }
        }))
        .await;
    }

    pub(crate) fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        api_for(&self.client, kind, namespace)
    }
}

/// The API of `kind`, in `namespace` when the kind is namespaced and one is given, else cluster-wide.
pub(crate) fn api_for(
    client: &kube::Client,
    kind: &Kind,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: kind.group.clone(),
        version: kind.version.clone(),
        api_version: kind.api_version(),
        kind: kind.kind.clone(),
        plural: kind.plural.clone(),
    };
    match namespace {
        Some(ns) if kind.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// Set once a request got no answer at all (a timeout, a refused connection): the server is unreachable,
/// so the requests not yet sent are not sent. Each would wait out its own timeout — 1,500 objects at 32 in
/// flight and a 3 s timeout were 140 s of waiting for a server that was gone. Refusals (the server
/// answered) do not count: every rejected object is still reported.
#[derive(Default)]
struct Unreachable(std::sync::atomic::AtomicBool);

impl Unreachable {
    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn note<T>(&self, res: &Result<T, kube::Error>) {
        // An answer the client could not decode is about that object, not the server being gone.
        if matches!(res, Err(e) if !matches!(e, kube::Error::Api(_) | kube::Error::SerdeError(_))) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Groups LIST requests by kind and (optional) namespace.
pub(crate) type ListKey = (String, String, String, Option<String>);

pub(crate) fn list_key(kind: &Kind, namespace: Option<&str>) -> ListKey {
    (
        kind.group.clone(),
        kind.version.clone(),
        kind.kind.clone(),
        namespace.map(str::to_owned),
    )
}

/// How long a sync waits for the CRDs it created to be served.
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// Objects per LIST page: up to 8 pages are in flight, and at 500 Deployments (with their managedFields) they
/// were 22 MB of a no-op's 78 MB heap peak at N = 20,000.
const LIST_PAGE: u32 = 250;

/// Up to this many objects not found by label are looked up one by one rather than by listing their kinds.
const GET_INSTEAD_OF_LIST: usize = 16;

/// How long a sync waits for new watches to list before it lists the objects itself.
const WATCH_READY: Duration = Duration::from_secs(30);

/// A live object as JSON with `apiVersion` and `kind`, which list items lack and the comparison needs.
/// `managedFields` and `status` are dropped at once: no decision reads them, and they are most of the bytes.
pub(crate) fn to_live(mut o: DynamicObject, kind: &Kind) -> Option<Value> {
    // The body is moved, not copied through serde: a LIST page's objects are converted as it arrives.
    o.metadata.managed_fields = None;
    let metadata = serde_json::to_value(&o.metadata).ok()?;
    let mut v = match o.data {
        Value::Object(m) => Value::Object(m),
        _ => Value::Object(serde_json::Map::new()),
    };
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
        obj.insert("apiVersion".into(), kind.api_version().into());
        obj.insert("kind".into(), kind.kind.clone().into());
        obj.insert("metadata".into(), metadata);
    }
    Some(v)
}

/// Hands each object of a LIST page to `each`, parsing one at a time; returns the continue token.
fn each_listed(
    text: &str,
    mut each: impl FnMut(DynamicObject) -> Option<()>,
) -> Result<Option<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Page<'a> {
        #[serde(default)]
        metadata: PageMeta,
        #[serde(borrow, default)]
        items: Vec<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize, Default)]
    struct PageMeta {
        #[serde(rename = "continue", default)]
        continue_: Option<String>,
    }
    let page: Page<'_> = serde_json::from_str(text)?;
    for item in page.items {
        each(serde_json::from_str(item.get())?);
    }
    Ok(page.metadata.continue_.filter(|c| !c.is_empty()))
}

/// The server's kinds, and those `crds` of the commit define that the server does not serve yet.
fn with_crds(server: &Kinds, crds: &[Kind]) -> Kinds {
    let mut all = server.clone();
    for k in crds {
        if all.resolve(&k.group, &k.version, &k.kind).is_none() {
            all.insert(k.clone());
        }
    }
    all
}

/// A commit's objects on their way into a plan: each is prepared (reduced to its compact body) as it
/// arrives, so a render never needs to hold the parsed manifests of the whole repository. From
/// [`Engine::intake`].
pub struct Intake<'a> {
    server: Kinds,
    fresh: bool,
    /// The server's kinds and those the CRDs seen so far define.
    all: Kinds,
    crds: Vec<Kind>,
    preparer: Preparer<'a>,
    /// Objects of kinds not known yet, resolved in [`Engine::plan_intake`].
    pending: Vec<Resource>,
}

impl Intake<'_> {
    /// Takes one rendered object.
    pub fn push(&mut self, r: Resource) {
        for k in kinds_from_crds(std::iter::once(&r.object)) {
            if self.all.resolve(&k.group, &k.version, &k.kind).is_none() {
                self.all.insert(k.clone());
            }
            self.crds.push(k);
        }
        let all = &self.all;
        if let Some(r) = self.preparer.push(r, |g, v, k| all.resolve(g, v, k)) {
            self.pending.push(r);
        }
    }
}
