//! What the sync loop publishes (recent syncs, the workloads of the last applied commit, the objects the last
//! failure named) and how others ask it to sync now. The loop owns the syncer; the API only reads this and
//! queues requests, so a request never runs a second sync beside the loop's.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tether_api::{ObjectError, SyncCounts, SyncRecord};
use tether_automation::Workload;
use tether_registry::ImageRepo;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::Explain;
use crate::sync::{SyncError, SyncSummary};

/// How many syncs are kept for `GET /api/v1/sync`.
pub const HISTORY: usize = 20;

/// A request for a sync, answered with its record when it ended.
pub(crate) type SyncRequest = oneshot::Sender<SyncRecord>;

/// What the loop last published.
#[derive(Debug, Default, Clone)]
pub struct Published {
    /// The last commit applied successfully.
    pub applied: Option<String>,
    /// Its subject, author and date (kept when newer failures push it out of the history).
    pub applied_commit: Option<tether_api::Commit>,
    /// Newest first.
    pub history: VecDeque<SyncRecord>,
    /// The workloads of the last applied commit.
    pub workloads: Arc<Vec<Workload>>,
    /// Per object (`ns:kind/name`), what the last failed sync said about it; cleared by a success.
    pub object_errors: BTreeMap<String, String>,
}

/// The loop's side and the API's side of one agent.
#[derive(Debug)]
pub struct Control {
    state: RwLock<Published>,
    requests: mpsc::Sender<SyncRequest>,
    /// A webhook saw a push: fetch now. A `Notify` keeps at most one wake-up queued, so a flood of events
    /// becomes one fetch in flight and one queued.
    poked: Notify,
    /// Image repositories a registry webhook says were pushed to, for the next automation pass.
    scans: std::sync::Mutex<BTreeSet<ImageRepo>>,
    scan_wanted: Notify,
}

/// The loop's end of the request queue.
pub(crate) type Requests = mpsc::Receiver<SyncRequest>;

impl Control {
    /// A control and the loop's end of its queue.
    pub(crate) fn new() -> (Arc<Control>, Requests) {
        // Requests that arrive during a sync wait here and are all answered by the next one.
        let (tx, rx) = mpsc::channel(256);
        (
            Arc::new(Control {
                state: RwLock::new(Published::default()),
                requests: tx,
                poked: Notify::new(),
                scans: std::sync::Mutex::new(BTreeSet::new()),
                scan_wanted: Notify::new(),
            }),
            rx,
        )
    }

    /// A copy of what the loop published.
    pub fn published(&self) -> Published {
        self.state
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Asks the loop to fetch and sync now, and waits for that sync (one that started after this call) to end.
    /// `None` when the loop is gone or `limit` passed first.
    pub async fn sync_now(&self, limit: Duration) -> Option<SyncRecord> {
        let (tx, rx) = oneshot::channel();
        let asked = async {
            self.requests.send(tx).await.ok()?;
            rx.await.ok()
        };
        tokio::time::timeout(limit, asked).await.ok()?
    }

    /// Asks the loop to fetch now (and sync when the head moved), without waiting.
    pub fn poke(&self) {
        self.poked.notify_one();
    }

    /// Resolves when a webhook asked for a fetch.
    pub(crate) async fn poked(&self) {
        self.poked.notified().await;
    }

    /// Asks the automation loop to scan `repos` now.
    pub fn scan(&self, repos: Vec<ImageRepo>) {
        self.scans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(repos);
        self.scan_wanted.notify_one();
    }

    /// Waits for a scan request and takes the repositories asked for.
    pub(crate) async fn scans_wanted(&self) -> BTreeSet<ImageRepo> {
        self.scan_wanted.notified().await;
        std::mem::take(&mut *self.scans.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the workloads the read API shows (a standby replica reads them from the branch head).
    pub(crate) fn set_workloads(&self, workloads: Arc<Vec<Workload>>) {
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .workloads = workloads;
    }

    /// Records a finished sync.
    pub(crate) fn record(
        &self,
        record: SyncRecord,
        workloads: Option<Arc<Vec<Workload>>>,
        object_errors: BTreeMap<String, String>,
    ) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        if record.ok {
            s.applied.clone_from(&record.revision);
            s.applied_commit.clone_from(&record.commit);
        }
        if let Some(w) = workloads {
            s.workloads = w;
        }
        s.object_errors = object_errors;
        s.history.push_front(record);
        s.history.truncate(HISTORY);
    }
}

/// The record of one finished sync, and what it said per object.
pub(crate) fn record_of(
    result: Result<&SyncSummary, &SyncError>,
    revision: Option<String>,
    started: SystemTime,
    took: Duration,
    explain: Explain,
) -> (SyncRecord, BTreeMap<String, String>) {
    let started = humantime::format_rfc3339_seconds(started).to_string();
    let duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(s) => (
            SyncRecord {
                revision: Some(s.revision.clone()),
                started,
                duration_ms,
                ok: true,
                counts: Some(SyncCounts {
                    created: s.created,
                    configured: s.configured,
                    unchanged: s.unchanged,
                    deleted: s.deleted,
                    skipped: s.skipped,
                    would_delete: s.would_delete,
                    gc_kept: s.gc_kept,
                }),
                error: None,
                reason: None,
                objects: Vec::new(),
                commit: None,
                collected: s
                    .collected
                    .iter()
                    .take(100)
                    .map(ToString::to_string)
                    .collect(),
            },
            BTreeMap::new(),
        ),
        Err(e) => {
            let objects = object_errors(e);
            let by_object = objects
                .iter()
                .filter_map(|o| Some((o.object.clone()?, o.message.clone())))
                .collect();
            (
                SyncRecord {
                    revision,
                    started,
                    duration_ms,
                    ok: false,
                    counts: None,
                    error: Some(explain(e)),
                    reason: Some(e.label().to_owned()),
                    objects,
                    commit: None,
                    collected: Vec::new(),
                },
                by_object,
            )
        }
    }
}

/// The objects a failure is about, at most 100.
fn object_errors(e: &SyncError) -> Vec<ObjectError> {
    use tether_apply::Error as A;
    let out: Vec<ObjectError> = match e {
        SyncError::Apply(A::Invalid(errors)) => errors
            .iter()
            .map(|p| ObjectError {
                object: p.id.as_ref().map(ToString::to_string),
                at: p.at.to_string(),
                message: tether_core::report::Shown(&p.message).to_string(),
            })
            .collect(),
        SyncError::Apply(A::Rejected(failures) | A::ApplyFailed { failures, .. }) => failures
            .iter()
            .map(|f| ObjectError {
                object: Some(f.id.to_string()),
                at: f.at.to_string(),
                message: f.message(),
            })
            .collect(),
        _ => Vec::new(),
    };
    out.into_iter().take(100).collect()
}
