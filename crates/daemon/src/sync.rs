//! One sync: fetch → check out → render → apply → record. Each stage is a library call; this file only
//! composes them and decides what is worth retrying.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use std::sync::Arc;

use tether_apply::{Engine, SyncOptions};
use tether_record::{Inventory, Marker};
use tether_render::{Renderer, Snapshot, SnapshotError};
use tether_source::Repo;
use tokio::sync::Mutex;

use tether_apply::PruneReport;
use tether_core::{ObjectId, ObjectRef};
use tether_plan::gc;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{Config, SyncState};

/// Why a sync failed. The marker never moves on failure.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Fetching, checking out or pushing failed.
    #[error(transparent)]
    Source(#[from] tether_source::Error),
    /// The manifests are invalid.
    #[error(transparent)]
    Render(#[from] tether_render::Error),
    /// The cluster rejected the commit or could not be reached.
    #[error(transparent)]
    Apply(#[from] tether_apply::Error),
    /// The sync was applied but the marker could not be moved.
    #[error(transparent)]
    Record(#[from] tether_record::Error),
    /// The sync was applied but the inventory could not be read or written.
    #[error(transparent)]
    Inventory(#[from] tether_record::InventoryError),
    /// The sync did not finish in time and was stopped; what it applied before stays, the marker did not move.
    #[error("the sync did not finish within {0:?} and was stopped; the sync marker did not move")]
    Timeout(std::time::Duration),
}

impl From<SnapshotError> for SyncError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Source(e) => SyncError::Source(e),
            SnapshotError::Render(e) => SyncError::Render(e),
        }
    }
}

impl SyncError {
    /// A short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            SyncError::Source(e) => e.label(),
            SyncError::Render(_) => "render",
            SyncError::Apply(e) => e.label(),
            SyncError::Record(_) => "record",
            SyncError::Inventory(_) => "inventory",
            SyncError::Timeout(_) => "timeout",
        }
    }
}

/// What one successful sync did.
#[derive(Debug, Clone)]
pub struct SyncSummary {
    /// The applied commit.
    pub revision: String,
    /// Objects created.
    pub created: usize,
    /// Objects updated (drift included).
    pub configured: usize,
    /// Objects already as desired.
    pub unchanged: usize,
    /// Objects deleted by garbage collection.
    pub deleted: usize,
    /// Objects skipped by policy.
    pub skipped: usize,
    /// Objects garbage collection would delete (dry-run mode).
    pub would_delete: usize,
    /// Objects garbage collection kept on purpose (safety valves) or failed to delete; retried next sync.
    pub gc_kept: usize,
    /// Wall time.
    pub duration: Duration,
    /// The objects garbage collection deleted.
    pub collected: Vec<ObjectId>,
    /// Objects created, changed, set back or deleted, for their events (at most `events::PER_SYNC`).
    pub changes: Vec<crate::events::Change>,
    /// How many objects were created, changed, set back or deleted in all.
    pub changed_total: usize,
}

impl fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "revision={} created={} configured={} unchanged={} deleted={} skipped={} duration={:.2}s",
            short(&self.revision),
            self.created,
            self.configured,
            self.unchanged,
            self.deleted,
            self.skipped,
            self.duration.as_secs_f64()
        )?;
        if self.would_delete > 0 {
            write!(f, " would_delete={}", self.would_delete)?;
        }
        if self.gc_kept > 0 {
            write!(f, " gc_kept={}", self.gc_kept)?;
        }
        Ok(())
    }
}

/// Commits changing more files than this are applied by the full sync alone.
const CHANGED_FIRST_MAX_FILES: usize = 32;

impl SyncSummary {
    /// A sync that wrote only what `report` says (of `total` objects) and collected nothing.
    fn without_collection(
        revision: String,
        report: &tether_apply::Report,
        total: usize,
        started: Instant,
    ) -> Self {
        let (changes, changed_total) = changes_of(report, &PruneReport::default());
        SyncSummary {
            revision,
            created: report.created(),
            configured: report.configured(),
            unchanged: total.saturating_sub(report.created() + report.configured()),
            deleted: 0,
            skipped: report.skipped(),
            would_delete: 0,
            gc_kept: 0,
            duration: started.elapsed(),
            collected: Vec::new(),
            changes,
            changed_total,
        }
    }
}

fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}

/// Holds what lives across syncs: the clone, the discovery cache, the marker.
pub struct Syncer {
    cfg: Config,
    repo: Arc<Mutex<Repo>>,
    engine: Engine,
    marker: Marker,
    inventory: Inventory,
    opts: SyncOptions,
    renderer: Arc<Renderer>,
    write_checked: bool,
    namespace: String,
    uses_deploy_key: bool,
    /// The head a standby last rendered for the read API.
    observed: Option<String>,
    /// The commit the last sync tried, for its record when it failed.
    attempted: Option<String>,
    /// The workloads of the last commit applied successfully, for the API.
    workloads: Arc<Vec<tether_automation::Workload>>,
    /// The last commit applied successfully, and whether garbage collection left something to retry.
    applied: Option<(String, bool)>,
    /// Stops repairing objects that something keeps changing back.
    breaker: tether_plan::drift::Breaker,
}

/// What one repair of drift between syncs did.
#[derive(Debug)]
pub struct DriftRepair {
    /// The commit the objects were set back to.
    pub revision: String,
    /// Objects set back (or recreated), for their events.
    pub repaired: Vec<crate::events::Change>,
    /// Objects tether stopped setting back this time, with the field manager it was fighting.
    pub fights: Vec<(crate::events::Change, Option<String>)>,
}

/// A Kubernetes client from KUBECONFIG or the in-cluster config in which every request has a deadline: a
/// stalled API server fails a request, it does not hang the agent. Its requests pass the process's
/// [`crate::throttle::Gate`].
pub async fn client(timeout: std::time::Duration) -> anyhow::Result<kube::Client> {
    client_gated(timeout, true).await
}

/// [`client`], with or without the gate.
async fn client_gated(timeout: std::time::Duration, gated: bool) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot build a Kubernetes client from KUBECONFIG or the in-cluster config: {e}"
        )
    })?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // Count the wait from the request, not from when a pooled connection went idle.
    config.reset_reader_on_write = true;
    // So an API server's audit log and its priority-and-fairness flow schemas can tell tether's requests.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("tether/", env!("CARGO_PKG_VERSION"))),
    ));
    // kube's retry policy (429/503/504 after the server's Retry-After), placed outside a gate that sends
    // fewer requests at once while the server refuses them (see `throttle`).
    config.default_retry = false;
    // A client that is not held back still gets kube's retry policy.
    let gate = gated.then(|| crate::throttle::GateLayer(crate::throttle::Gate::shared()));
    let stack = tower::ServiceBuilder::new()
        .layer(tower::retry::RetryLayer::new(
            kube::client::retry::RetryPolicy::server_retry(),
        ))
        .option_layer(gate)
        .layer(tower::buffer::BufferLayer::new(1024));
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| anyhow::anyhow!("cannot build a Kubernetes client: {e}"))?;
    Ok(builder.with_layer(&stack).build())
}

impl Syncer {
    /// Connects to the cluster and opens the local clone. Nothing is fetched or applied yet.
    pub async fn new(cfg: Config) -> anyhow::Result<Syncer> {
        let client = client(cfg.k8s_timeout).await?;
        let default_namespace = cfg
            .default_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let namespace = cfg
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let marker = match cfg.sync_state {
            SyncState::Git => Marker::GitTag {
                tag: cfg.sync_tag.clone(),
            },
            SyncState::Secret => Marker::Secret {
                namespace: namespace.clone(),
                name: cfg.secret_name.clone(),
            },
        };
        let inventory = Inventory::new(&namespace, &cfg.sync_name);
        let mut git = cfg.git.clone();
        let mut uses_deploy_key = false;
        if let (tether_source::GitUrl::Ssh(_), None, Some(name)) =
            (&git.url, &git.auth.ssh_key, &cfg.deploy_key)
        {
            // The agent's own deploy key, from its Secret (made on first start): `tether identity` shows it.
            let id = crate::identity::DeployKey {
                namespace: namespace.clone(),
                name: name.clone(),
            }
            .get_or_create(&client, false)
            .await?;
            std::fs::create_dir_all(&cfg.cache_dir).map_err(|e| {
                anyhow::anyhow!("cannot create --cache-dir {}: {e}", cfg.cache_dir.display())
            })?;
            let file = cfg.cache_dir.join("deploy-key");
            id.write_key_file(&file)?;
            info!(component = "identity", fingerprint = %id.fingerprint(), "using the deploy key");
            git.auth.ssh_key = Some(file);
            uses_deploy_key = true;
        }
        let repo = Repo::open(git, &cfg.cache_dir).await?;
        let opts = SyncOptions {
            takeover: cfg.takeover,
            default_namespace,
            namespaces: cfg.namespaces.clone(),
            sync_name: cfg.sync_name.clone(),
            concurrency: cfg.concurrency,
        };
        Ok(Syncer {
            renderer: Arc::new(Renderer::from_config(cfg.render.clone())),
            engine: Engine::new(client),
            repo: Arc::new(Mutex::new(repo)),
            marker,
            inventory,
            opts,
            cfg,
            write_checked: false,
            namespace,
            uses_deploy_key,
            observed: None,
            attempted: None,
            workloads: Arc::default(),
            applied: None,
            breaker: tether_plan::drift::Breaker::default(),
        })
    }

    /// Keeps the objects this sync owns in a watch cache (a running agent): a sync then reads them from it
    /// instead of listing them, and drift is seen as it happens.
    pub async fn watch_live(&mut self) -> anyhow::Result<()> {
        // A quiet watch sends nothing for minutes; its reads may wait until the server ends it.
        let timeout = Duration::from_secs(u64::from(tether_apply::live::WATCH_TIMEOUT_SECS) + 40);
        // Not gated: a (re)list that may take that long must not hold the sync's writes behind it when the
        // server throttles, and the cache sends one LIST and one watch per kind.
        let client = client_gated(self.cfg.k8s_timeout.max(timeout), false).await?;
        self.engine
            .set_live(tether_apply::LiveCache::new(client, &self.cfg.sync_name));
        Ok(())
    }

    /// Makes the next sync a full one (render, plan, collect), whatever this agent applied before: after
    /// it was standing by, another replica may have moved the cluster on.
    pub fn forget_applied(&mut self) {
        self.applied = None;
        if let Some(live) = self.engine.live() {
            live.unsettle();
        }
    }

    /// The watch cache, when the agent keeps one.
    pub fn live(&self) -> Option<tether_apply::LiveCache> {
        self.engine.live().cloned()
    }

    /// The periodic sync of an unchanged head, from the watch cache: objects the watches show as Git wants
    /// them cost nothing (no render, no request); the others are set back. `None` when it cannot be done
    /// that way (no cache, no successful sync yet, `head` is new, garbage collection has retries pending):
    /// run a full sync.
    pub async fn resync(&mut self, head: &str) -> Option<Result<SyncSummary, SyncError>> {
        let started = Instant::now();
        match &self.applied {
            Some((rev, false)) if rev == head => {}
            _ => return None,
        }
        let live = self.engine.live()?;
        let stale = live.unsynced()?;
        let total = live.expected_len();
        let revision = head.to_owned();
        self.attempted = Some(revision.clone());
        if stale.is_empty() {
            info!(
                component = "sync",
                revision = short(&revision),
                unchanged = total,
                duration_ms = started.elapsed().as_millis() as u64,
                "periodic sync from the watch cache: every object as Git wants it"
            );
            return Some(Ok(SyncSummary {
                revision,
                created: 0,
                configured: 0,
                unchanged: total,
                deleted: 0,
                skipped: 0,
                would_delete: 0,
                gc_kept: 0,
                duration: started.elapsed(),
                collected: Vec::new(),
                changes: Vec::new(),
                changed_total: 0,
            }));
        }
        let report = match self.engine.repair(stale, &self.opts).await {
            Ok(r) => r,
            Err(e) => return Some(Err(e.into())),
        };
        let summary = SyncSummary::without_collection(revision, &report, total, started);
        info!(
            component = "sync",
            revision = short(&summary.revision),
            unchanged = total,
            set_back = summary.changed_total,
            duration_ms = summary.duration.as_millis() as u64,
            "periodic sync from the watch cache: set back what had drifted"
        );
        Some(Ok(summary))
    }

    /// A commit that only changes objects in place (the same objects in the same plain YAML files as the
    /// commit applied last) has those files alone rendered, validated and applied: a change is live in
    /// milliseconds rather than after rendering and planning every object, and that is the whole sync. A
    /// full render could not have decided otherwise: the other files are those of a commit that synced, the
    /// ids are the same (so no new duplicate, nothing to collect), no Namespace or CRD changes, no kustomize
    /// or generator reads across files, and every change is dry-run before any write. `None` when the
    /// commit is not of that kind, or when this failed (the full sync then runs and reports why).
    async fn apply_changed_first(
        &mut self,
        revision: &str,
    ) -> Option<(tether_apply::Report, Vec<tether_automation::Workload>)> {
        let live = self.engine.live()?.clone();
        let last = match &self.applied {
            Some((last, false)) if last != revision && live.is_settled() => last.clone(),
            _ => return None,
        };
        let resources = {
            let repo = self.repo.lock().await;
            let files = repo.changed_files(&last, revision).await.ok()??;
            if files.is_empty() || files.len() > CHANGED_FIRST_MAX_FILES {
                return None;
            }
            let tree = repo.checkout(revision).await.ok()?;
            let resources = self
                .renderer
                .render_changed(tree, &self.cfg.paths, &files)?
                .ok()?;
            let before = live.ids_from_files(&files);
            let ids: BTreeSet<ObjectId> = resources
                .iter()
                .map(|r| ObjectId::new(r.api_version(), r.kind(), r.namespace(), r.name()))
                .collect();
            // Namespaces resolve in plan; compare after it. Here only the count can tell early.
            if ids.len() != before.len() {
                return None;
            }
            (resources, before)
        };
        let (resources, before) = resources;
        let workloads = tether_automation::workload::workload_summaries(
            &resources,
            &self.opts.default_namespace,
        );
        let planned = self.engine.plan(resources, &self.opts).await.ok()?;
        let after: BTreeSet<ObjectId> = planned.desired().iter().map(|d| d.id.clone()).collect();
        if planned.skipped() > 0
            || after != before
            || planned
                .desired()
                .iter()
                .any(|d| d.kind.is_namespace() || d.kind.is_crd())
        {
            return None;
        }
        live.expect_some(planned.desired());
        match self.engine.apply(planned, &self.opts).await {
            Ok(report) => Some((report, workloads)),
            Err(e) => {
                debug!(component = "sync", error = %e, "applying the changed objects first failed; the full sync reports it");
                None
            }
        }
    }

    /// Completes a sync whose commit only changed objects in place (see [`Syncer::apply_changed_first`]):
    /// every other object is as the commit applied last left it and the watches show it so, and the set of
    /// objects is the same (nothing to collect, the inventory stays exact), so only the marker moves and the
    /// API's workloads are brought up to date. No render of the whole tree, no plan of every object.
    async fn finish_in_place(
        &mut self,
        revision: String,
        report: tether_apply::Report,
        changed: Vec<tether_automation::Workload>,
        started: Instant,
        mut stages: Stages,
    ) -> Result<SyncSummary, SyncError> {
        self.marker
            .write(&revision, &*self.repo.lock().await, self.engine.client())
            .await?;
        stages.mark("record");
        let replaced: BTreeSet<ObjectId> = changed.iter().map(|w| w.id.clone()).collect();
        let mut workloads: Vec<tether_automation::Workload> = self
            .workloads
            .iter()
            .filter(|w| !replaced.contains(&w.id))
            .cloned()
            .collect();
        workloads.extend(changed);
        workloads.sort_by(|a, b| a.source.cmp(&b.source));
        self.workloads = Arc::new(workloads);
        self.applied = Some((revision.clone(), false));
        debug!(component = "sync", stages = %stages, "time per stage");
        let total = self.engine.live().map_or(0, |l| l.expected_len());
        let summary = SyncSummary::without_collection(revision, &report, total, started);
        info!(
            component = "sync",
            created = summary.created,
            configured = summary.configured,
            unchanged = summary.unchanged,
            deleted = 0,
            skipped = summary.skipped,
            would_delete = 0,
            gc_kept = 0,
            duration_ms = summary.duration.as_millis() as u64,
            in_place = true,
            "sync complete"
        );
        Ok(summary)
    }

    /// Sets back the objects the watches saw drift from the last successful sync, except those tether has
    /// been fighting over (see [`tether_plan::drift`]). `None` when there was nothing to do.
    pub async fn repair_drift(&mut self) -> Result<Option<DriftRepair>, SyncError> {
        let Some((revision, _)) = self.applied.clone() else {
            return Ok(None);
        };
        let Some(live) = self.engine.live().cloned() else {
            return Ok(None);
        };
        let mut checksums = std::collections::HashMap::new();
        let mut managers = std::collections::HashMap::new();
        let mut allowed = Vec::new();
        for (d, manager) in live.take_drifted() {
            if !self.breaker.allows(&d.id, &d.checksum) {
                continue;
            }
            checksums.insert(d.id.clone(), d.checksum.clone());
            managers.insert(d.id.clone(), manager);
            allowed.push(d);
        }
        if allowed.is_empty() {
            return Ok(None);
        }
        let report = self.engine.repair(allowed, &self.opts).await?;
        let (changes, _) = changes_of(&report, &PruneReport::default());
        let now = std::time::Instant::now();
        let mut fights = Vec::new();
        for c in &changes {
            let manager = managers.get(&c.id).cloned().flatten();
            info!(component = "drift", object = %c.id, manager = manager.as_deref().unwrap_or("-"),
                revision = short(&revision), "set back to Git: changed outside Git since the last sync");
            let checksum = checksums.get(&c.id).map(String::as_str).unwrap_or("");
            if self.breaker.repaired(&c.id, checksum, now) == tether_plan::drift::Verdict::Tripped {
                warn!(component = "drift", object = %c.id, manager = manager.as_deref().unwrap_or("-"),
                    repairs = tether_plan::drift::TRIP_AFTER,
                    window_s = tether_plan::drift::WINDOW.as_secs(),
                    "another writer keeps changing fields Git sets; no longer setting this object back between \
                     syncs until its manifest changes (the periodic sync still applies Git)");
                fights.push((c.clone(), manager));
            }
        }
        Ok(Some(DriftRepair {
            revision,
            repaired: changes,
            fights,
        }))
    }

    /// The local clone, shared with the image automation loop (which commits through a worktree of it).
    pub fn repo(&self) -> Arc<Mutex<Repo>> {
        self.repo.clone()
    }

    /// The renderer (kustomize cache, manifest generation), shared with the image automation loop.
    pub fn renderer(&self) -> Arc<Renderer> {
        self.renderer.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The Kubernetes client.
    pub fn client(&self) -> &kube::Client {
        self.engine.client()
    }

    /// tether's own namespace (state, inventory, deploy key).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The clone authenticates with the deploy key from its Secret (not --git-ssh-key).
    pub fn uses_deploy_key(&self) -> bool {
        self.uses_deploy_key
    }

    /// The commit the last sync tried (set once its fetch succeeded).
    pub fn attempted(&self) -> Option<&str> {
        self.attempted.as_deref()
    }

    /// The workloads of the last commit applied successfully.
    pub fn workloads(&self) -> Arc<Vec<tether_automation::Workload>> {
        self.workloads.clone()
    }

    /// Namespace for namespaced objects that name none.
    pub fn default_namespace(&self) -> &str {
        &self.opts.default_namespace
    }

    /// Subject, author and date of a fetched commit (`None` when git cannot say).
    pub async fn commit_info(&self, rev: &str) -> Option<tether_source::CommitInfo> {
        self.repo.lock().await.commit_info(rev).await.ok().flatten()
    }

    /// Fetches and renders the branch head without applying anything: the workloads it defines, or `None`
    /// when the head is the one observed last (a standby does this every poll; rendering costs seconds at
    /// tens of thousands of objects).
    pub async fn observe(
        &mut self,
    ) -> Result<Option<Arc<Vec<tether_automation::Workload>>>, SyncError> {
        let repo = self.repo.lock().await;
        let head = repo.fetch().await?;
        if self.observed.as_deref() == Some(head.as_str()) {
            return Ok(None);
        }
        let snapshot = Snapshot::read(&repo, &head, &self.cfg.paths, &self.renderer).await?;
        drop(repo);
        self.observed = Some(head);
        Ok(Some(Arc::new(
            tether_automation::workload::workload_summaries(
                &snapshot.resources,
                &self.opts.default_namespace,
            ),
        )))
    }

    /// Fetches and returns the branch head.
    pub async fn fetch(&self) -> Result<String, SyncError> {
        Ok(self.repo.lock().await.fetch().await?)
    }

    /// Fetches, then applies the branch head and moves the marker.
    pub async fn sync(&mut self) -> Result<SyncSummary, SyncError> {
        let limit = self.cfg.sync_timeout;
        match tokio::time::timeout(limit, self.sync_unbounded()).await {
            Ok(result) => result,
            Err(_) => Err(SyncError::Timeout(limit)),
        }
    }

    async fn sync_unbounded(&mut self) -> Result<SyncSummary, SyncError> {
        let started = Instant::now();
        self.attempted = None;
        let revision = self.fetch().await?;
        self.attempted = Some(revision.clone());
        let span = info_span!("sync", repo = %self.cfg.git.url, revision = short(&revision));
        self.sync_revision(revision, started).instrument(span).await
    }

    async fn sync_revision(
        &mut self,
        revision: String,
        started: Instant,
    ) -> Result<SyncSummary, SyncError> {
        let mut stages = Stages::new(started);
        stages.mark("fetch");
        if self.cfg.sync_state == SyncState::Git && !self.write_checked {
            // As Flux v1 did: find out at once, not after the first apply, that the key cannot push.
            self.repo.lock().await.check_write(&revision).await?;
            self.write_checked = true;
            stages.mark("write_check");
        }
        if let Some((report, workloads)) = self.apply_changed_first(&revision).await {
            stages.mark("changed_in_place");
            return self
                .finish_in_place(revision, report, workloads, started, stages)
                .await;
        }
        // Each file's objects are prepared as it is rendered: the parsed manifests of the whole tree are
        // never held at once (at 20,000 objects they were 110 MB of a 196 MB peak).
        let mut intake = self.engine.intake(&self.opts).await?;
        // For the API: each workload's id, file, containers and annotations, not its whole manifest.
        let mut workloads: Vec<tether_automation::Workload> = Vec::new();
        let default_namespace = &self.opts.default_namespace;
        // The clone is shared with image automation; hold it only while reading the tree.
        Snapshot::read_each(
            &*self.repo.lock().await,
            &revision,
            &self.cfg.paths,
            &self.renderer,
            &mut |unit| {
                workloads.extend(tether_automation::workload::workload_summaries(
                    &unit,
                    default_namespace,
                ));
                for r in unit {
                    intake.push(r);
                }
            },
        )
        .await?;
        stages.mark("checkout_render");
        let planned = self.engine.plan_intake(intake).await?;
        if let Some(live) = self.engine.live() {
            // Watch events from here on are judged against this commit.
            live.expect(planned.desired());
        }
        // The live objects are read before the inventory is: a no-op resync then never holds both.
        let decided = self.engine.decide(planned, &self.opts).await?;
        let client = self.engine.client();
        let previous = self.inventory.load(client).await?;
        // What this name may have applied, when more than the inventory's objects: the inventory is missing,
        // or a sync that died left pending entries in it (None: exactly its objects).
        let suspect = match &previous {
            None => Some(Vec::new()),
            Some(p) if !p.pending.is_empty() => Some(p.all()),
            Some(_) => None,
        };
        let mut state = previous.unwrap_or_default();
        // Intent first: if this sync dies after its first write, the next one still knows what it wrote.
        self.inventory
            .mark_pending(client, &mut state, decided.objects())
            .await?;
        stages.mark("plan");
        let report = self.engine.write(decided, &self.opts).await?;
        stages.mark("apply");
        let gc = self.collect_garbage(&report, suspect, state).await?;
        stages.mark("gc");
        let (changes, changed_total) = changes_of(&report, &gc);
        self.marker
            .write(&revision, &*self.repo.lock().await, self.engine.client())
            .await?;
        stages.mark("record");
        self.workloads = Arc::new(workloads);
        self.applied = Some((revision.clone(), gc.not_deleted() > 0));
        if let Some(live) = self.engine.live() {
            live.settle();
            let ids: BTreeSet<ObjectId> = report.rendered();
            self.breaker.retain(|id| ids.contains(id));
        }
        debug!(component = "sync", stages = %stages, "time per stage");
        let summary = SyncSummary {
            revision,
            created: report.created(),
            configured: report.configured(),
            unchanged: report.unchanged(),
            deleted: gc.deleted.len(),
            skipped: report.skipped(),
            would_delete: gc.would_delete.len(),
            gc_kept: gc.not_deleted(),
            duration: started.elapsed(),
            collected: gc.deleted.iter().map(|r| r.id.clone()).collect(),
            changes,
            changed_total,
        };
        info!(
            component = "sync",
            created = summary.created,
            configured = summary.configured,
            unchanged = summary.unchanged,
            deleted = summary.deleted,
            skipped = summary.skipped,
            would_delete = summary.would_delete,
            gc_kept = summary.gc_kept,
            duration_ms = summary.duration.as_millis() as u64,
            "sync complete"
        );
        Ok(summary)
    }
}

impl Syncer {
    /// Runs garbage collection (if enabled) against everything this sync name may have applied — the
    /// previous inventory, pending entries a sync that died left, and, when the inventory is missing or a
    /// sync died, every object in the cluster carrying this sync's label — and stores the new inventory.
    /// (Intent is recorded before any write, so a complete inventory without pending entries is exact.) Only called
    /// after a fully successful apply, so a failed render, apply or fetch never deletes anything.
    async fn collect_garbage(
        &self,
        report: &tether_apply::Report,
        suspect: Option<Vec<ObjectRef>>,
        mut state: tether_record::Stored,
    ) -> Result<PruneReport, SyncError> {
        if suspect.is_none() && gc::inventory_unchanged(&state.objects, &report.applied) {
            // The usual resync: the inventory is exact and lists what was applied, nothing else.
            return Ok(PruneReport::default());
        }
        // The inventory alone cannot be trusted: search the cluster by label too.
        let sweep = suspect.is_some();
        // Not suspect: the inventory's objects, which marking this sync's intent pending left as they were.
        let mut prev = suspect.unwrap_or_else(|| state.objects.clone());
        if self.cfg.gc != gc::Mode::Off && sweep {
            let known: BTreeSet<ObjectId> = prev.iter().map(|r| r.id.clone()).collect();
            let found = self
                .engine
                .owned(&self.cfg.sync_name, &self.cfg.namespaces)
                .await?;
            let strays: Vec<ObjectRef> = found
                .into_iter()
                .filter(|r| !known.contains(&r.id))
                .collect();
            if !strays.is_empty() {
                info!(component = "gc", count = strays.len(),
                    "found objects carrying this sync's label that no inventory lists (left by a sync that died); \
                     collecting them like the rest");
            }
            prev.extend(strays);
        }
        // The intent this sync marked pending is what it applied.
        let accounted: BTreeSet<&ObjectId> =
            prev.iter().chain(&report.applied).map(|r| &r.id).collect();
        let client = self.engine.client();
        let rendered = report.rendered();
        let (gc, retained) = match gc::decide(
            &prev,
            &rendered,
            self.cfg.gc,
            self.cfg.gc_allow_empty,
        ) {
            gc::Decision::Keep {
                candidates,
                held_back,
            } => {
                let mut gc = PruneReport::default();
                if let Some(why) = held_back {
                    warn!(component = "gc", inventory = prev.len(),
                        "not collecting: the repository renders no objects at all, which looks like a mistake; \
                         pass --sync-garbage-collection-allow-empty to allow deleting everything");
                    gc.kept = candidates
                        .iter()
                        .cloned()
                        .map(|c| (c, why.to_string()))
                        .collect();
                }
                (gc, candidates)
            }
            gc::Decision::Collect {
                candidates,
                dry_run,
            } => {
                let gc = self
                    .engine
                    .prune(candidates, &rendered, &self.cfg.sync_name, dry_run)
                    .await?;
                let retained = gc.retained().cloned().collect();
                (gc, retained)
            }
        };
        let next = gc::next_inventory(&report.applied, retained, &prev, &rendered);
        self.inventory
            .store(client, &mut state, &next, &accounted)
            .await?;
        Ok(gc)
    }
}

/// What a sync changed, for events: the first `events::PER_SYNC` objects, and how many in all.
fn changes_of(
    report: &tether_apply::Report,
    gc: &PruneReport,
) -> (Vec<crate::events::Change>, usize) {
    use tether_apply::Outcome;
    let kinds: std::collections::HashMap<&ObjectId, &tether_core::Kind> =
        report.applied.iter().map(|r| (&r.id, &r.kind)).collect();
    let written = report.objects.iter().filter_map(|(id, _, outcome)| {
        let reason = match outcome {
            Outcome::Created => "Created",
            Outcome::Configured => "Configured",
            Outcome::DriftCorrected => "DriftCorrected",
            _ => return None,
        };
        Some(crate::events::Change {
            id: id.clone(),
            api_version: kinds.get(id).map(|k| k.api_version()).unwrap_or_default(),
            uid: report.uids.get(id).cloned(),
            reason,
        })
    });
    let deleted = gc.deleted.iter().map(|r| crate::events::Change {
        id: r.id.clone(),
        api_version: r.kind.api_version(),
        uid: None,
        reason: "Deleted",
    });
    let mut total = 0;
    let mut shown = Vec::new();
    for c in written.chain(deleted) {
        total += 1;
        if shown.len() < crate::events::PER_SYNC {
            shown.push(c);
        }
    }
    (shown, total)
}

/// Wall time and resident memory after each stage of one sync, for `RUST_LOG=debug` (where a slow or large
/// sync spends its time and memory).
struct Stages {
    last: Instant,
    spent: Vec<(&'static str, std::time::Duration, Option<u64>)>,
}

/// Resident memory of this process in MB (Linux), for the stage log.
fn rss_mb() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096 / 1_000_000)
}

impl Stages {
    fn new(started: Instant) -> Self {
        Stages {
            last: started,
            spent: Vec::new(),
        }
    }

    fn mark(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.spent.push((stage, now - self.last, rss_mb()));
        self.last = now;
    }
}

impl fmt::Display for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (stage, d, rss)) in self.spent.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{stage}={}ms", d.as_millis())?;
            if let Some(mb) = rss {
                write!(f, "/{mb}MB")?;
            }
        }
        Ok(())
    }
}
