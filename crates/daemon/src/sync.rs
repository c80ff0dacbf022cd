//! One sync: fetch → check out → render → apply → record. Each stage is a library call; this file only
//! composes them and decides what is worth retrying.

use std::fmt;
use std::time::{Duration, Instant};

use tether_apply::{Engine, SyncOptions};
use tether_record::Marker;
use tether_source::Repo;
use tracing::{info, info_span, Instrument};

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
}

impl SyncError {
    /// A short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            SyncError::Source(e) => e.label(),
            SyncError::Render(_) => "render",
            SyncError::Apply(e) => e.label(),
            SyncError::Record(_) => "record",
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
    /// Wall time.
    pub duration: Duration,
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
        )
    }
}

fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}

/// Holds what lives across syncs: the clone, the discovery cache, the marker.
pub struct Syncer {
    cfg: Config,
    repo: Repo,
    engine: Engine,
    marker: Marker,
    opts: SyncOptions,
    write_checked: bool,
}

impl Syncer {
    /// Connects to the cluster and opens the local clone. Nothing is fetched or applied yet.
    pub async fn new(cfg: Config) -> anyhow::Result<Syncer> {
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot build a Kubernetes client from KUBECONFIG or the in-cluster config: {e}"
            )
        })?;
        let default_namespace = cfg
            .default_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let marker = match cfg.sync_state {
            SyncState::Git => Marker::GitTag {
                tag: cfg.sync_tag.clone(),
            },
            SyncState::Secret => Marker::Secret {
                namespace: cfg
                    .secret_namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_owned()),
                name: cfg.secret_name.clone(),
            },
        };
        let repo = Repo::open(cfg.git.clone(), &cfg.cache_dir).await?;
        let opts = SyncOptions {
            default_namespace,
            namespaces: cfg.namespaces.clone(),
            sync_name: cfg.sync_name.clone(),
            concurrency: cfg.concurrency,
        };
        Ok(Syncer {
            engine: Engine::new(client),
            repo,
            marker,
            opts,
            cfg,
            write_checked: false,
        })
    }

    /// Fetches and returns the branch head.
    pub async fn fetch(&self) -> Result<String, SyncError> {
        Ok(self.repo.fetch().await?)
    }

    /// Fetches, then applies the branch head and moves the marker.
    pub async fn sync(&mut self) -> Result<SyncSummary, SyncError> {
        let started = Instant::now();
        let revision = self.fetch().await?;
        let span = info_span!("sync", repo = %self.cfg.git.url, revision = short(&revision));
        self.sync_revision(revision, started).instrument(span).await
    }

    async fn sync_revision(
        &mut self,
        revision: String,
        started: Instant,
    ) -> Result<SyncSummary, SyncError> {
        if self.cfg.sync_state == SyncState::Git && !self.write_checked {
            // As Flux v1 did: find out at once, not after the first apply, that the key cannot push.
            self.repo.check_write(&revision).await?;
            self.write_checked = true;
        }
        let tree = self.repo.checkout(&revision).await?;
        let resources = tether_render::render(tree, &self.cfg.paths)?;
        let report = self.engine.sync(resources, &self.opts).await?;
        self.marker
            .write(&revision, &self.repo, self.engine.client())
            .await?;
        let summary = SyncSummary {
            revision,
            created: report.created(),
            configured: report.configured(),
            unchanged: report.unchanged(),
            deleted: 0,
            skipped: report.skipped(),
            duration: started.elapsed(),
        };
        info!(
            component = "sync",
            created = summary.created,
            configured = summary.configured,
            unchanged = summary.unchanged,
            deleted = summary.deleted,
            skipped = summary.skipped,
            duration_ms = summary.duration.as_millis() as u64,
            "sync complete"
        );
        Ok(summary)
    }
}
