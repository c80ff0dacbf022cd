//! The daemon loop: fetch every poll interval, sync on a new commit or every sync interval, back off on
//! failure without moving the marker, stop cleanly on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::Notify;

use crate::admin::AdminState;
use crate::control::{record_of, Control, SyncRequest};
use crate::leader::Leadership;
use crate::notify::{Dedup, Event, Notifier};

use tokio::time::{sleep_until, Instant};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::sync::{SyncError, SyncSummary, Syncer};

/// Performs exactly one sync.
pub async fn run_once(cfg: Config) -> anyhow::Result<SyncSummary> {
    let mut syncer = Syncer::new(cfg).await?;
    Ok(syncer.sync().await?)
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let poll = cfg.poll_interval;
    let full = cfg.sync_interval;
    info!(component = "daemon", version = env!("CARGO_PKG_VERSION"), source = %cfg.git.url,
        branch = %cfg.git.branch, poll_interval = ?poll, sync_interval = ?full, "starting");
    let automation = cfg.automation.clone();
    let automation_interval = automation
        .as_ref()
        .map_or(Duration::from_secs(60), |a| a.interval);
    let explain = cfg.explain;
    let readonly = cfg.readonly;
    // The loop must come round at least this often; /healthz fails when it has not (a stuck agent is
    // restarted by its liveness probe instead of sitting there looking healthy).
    let stuck_after = cfg.sync_timeout + poll + Duration::from_secs(60);
    let admin = Arc::new(AdminState::new(stuck_after));
    crate::admin::serve(cfg.listen_metrics, admin.clone()).await?;
    let notifier = match cfg.notify.clone() {
        Some(settings) => Notifier::start(
            settings,
            cfg.sync_name.clone(),
            cfg.git.url.to_string(),
            admin.clone(),
        )?,
        None => Notifier::off(),
    };
    let mut dedup = Dedup::default();
    let listen = cfg.listen;
    let leader = cfg.leader.clone();
    // A request that arrives during a sync waits for it and for the next one (which starts after the
    // request, so it sees the newest commit and repairs drift).
    let sync_wait = cfg.sync_timeout * 2 + Duration::from_secs(30);
    let mut syncer = Syncer::new(cfg).await?;
    syncer.watch_live().await?;
    let live = syncer.live();
    let pushed = Arc::new(Notify::new());
    let automation = match &automation {
        Some(settings) => Some(Arc::new(crate::automation::build(settings, &syncer)?)),
        None => None,
    };
    let mut leadership = match &leader {
        Some(s) => crate::leader::start(
            syncer.client().clone(),
            syncer.namespace(),
            &syncer.config().sync_name,
            s.clone(),
        ),
        None => Leadership::alone(),
    };
    let (control, mut requests) = Control::new();
    let events = crate::events::Events::new(
        syncer.client().clone(),
        syncer.namespace(),
        &syncer.config().sync_name,
    );
    crate::api::serve(
        listen,
        Arc::new(api_state(
            &syncer,
            control.clone(),
            automation.clone(),
            sync_wait,
            leadership.clone(),
        )),
    )
    .await?;
    match automation {
        Some(a) => crate::automation::spawn(
            a,
            explain,
            automation_interval,
            crate::automation::Wiring {
                pushed: pushed.clone(),
                admin: admin.clone(),
                control: control.clone(),
                notifier: notifier.clone(),
                leadership: leadership.clone(),
            },
        ),
        None if readonly => info!(
            component = "automation",
            "image automation is off: --git-readonly means tether never pushes commits"
        ),
        None => info!(
            component = "automation",
            "image automation is off (--registry-disable-scanning)"
        ),
    }
    let mut last_applied: Option<String> = None;
    let mut next_poll = Instant::now();
    let mut next_full = Instant::now();
    let mut delays = backoff(poll);
    // The commit whose sync failed, and when it is tried again: a webhook announcing that same commit
    // (a flood, or a replayed delivery) fetches but does not sync it again before then.
    let mut retry: Option<(String, Instant)> = None;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    // Callers of the API waiting for the next sync; all answered by it.
    let mut waiting: Vec<SyncRequest> = Vec::new();
    loop {
        admin.alive();
        if !leadership.is_leader() {
            // Standing by: keep the read API's view of Git current, write nothing, take over when elected.
            // Callers waiting for a sync are answered at once (their channel closes: "standing by").
            waiting.clear();
            while requests.try_recv().is_ok() {}
            if Instant::now() >= next_poll {
                match syncer.observe().await {
                    Ok(None) => {}
                    Ok(Some(workloads)) => {
                        control.set_workloads(workloads);
                        // A standby that reads Git and the cluster is ready to serve reads and to lead.
                        admin
                            .ready
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        warn!(component = "daemon", error = %explain(&e), "standby: cannot read the branch head")
                    }
                }
                next_poll = Instant::now() + poll;
            }
            tokio::select! {
                _ = &mut shutdown => {
                    info!(component = "daemon", "shutting down");
                    leadership.release().await;
                    return Ok(());
                }
                _ = leadership.acquired() => {
                    info!(component = "daemon", "elected: syncing now");
                    // Another replica may have synced and collected meanwhile: start from a full sync.
                    syncer.forget_applied();
                    retry = None;
                    next_poll = Instant::now();
                    next_full = Instant::now();
                }
                _ = sleep_until(next_poll) => {}
            }
            continue;
        }
        let wake = next_poll.min(next_full);
        let mut drifted = false;
        tokio::select! {
            _ = &mut shutdown => {
                info!(component = "daemon", "shutting down");
                leadership.release().await;
                return Ok(());
            }
            _ = sleep_until(wake) => {}
            // Automation pushed a commit: fetch and deploy it now rather than at the next poll.
            _ = pushed.notified() => next_poll = Instant::now(),
            // A webhook saw a push to the branch.
            _ = control.poked() => next_poll = Instant::now(),
            Some(r) = requests.recv() => waiting.push(r),
            // A watched object no longer matches the last commit applied.
            _ = drift(live.as_ref()) => drifted = true,
        }
        while let Ok(r) = requests.try_recv() {
            waiting.push(r);
        }
        if drifted && waiting.is_empty() {
            // One edit is often several events (kubectl apply, a controller's follow-up): take them together.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let repaired = tokio::select! {
                r = syncer.repair_drift() => r,
                _ = &mut shutdown => {
                    info!(component = "daemon", "shutting down");
                    leadership.release().await;
                    return Ok(());
                }
                _ = leadership.lost() => {
                    warn!(component = "daemon", "lost the leadership during a drift repair: stopped it");
                    continue;
                }
            };
            match repaired {
                Ok(Some(r)) => {
                    admin.metrics.drift_repaired(r.repaired.len());
                    for (change, manager) in &r.fights {
                        events.fight(&r.revision, change.clone(), manager.as_deref());
                    }
                    events.repaired(&r.revision, r.repaired);
                }
                Ok(None) => {}
                Err(e) => {
                    // The next sync (or the next drift event) tries again; the marker is not involved.
                    warn!(component = "drift", error = %explain(&e), "cannot set drifted objects back");
                }
            }
            continue;
        }
        if waiting.is_empty() && Instant::now() < next_poll.min(next_full) {
            continue;
        }
        let now = Instant::now();
        let started = std::time::Instant::now();
        let started_at = std::time::SystemTime::now();
        // Asked for a sync: apply even when the head has not moved, so a hand-made drift is repaired.
        let due_full = now >= next_full || !waiting.is_empty();
        let asked = !waiting.is_empty();
        let work = async {
            let head = syncer.fetch().await?;
            if !asked
                && retry
                    .as_ref()
                    .is_some_and(|(failed, at)| *failed == head && Instant::now() < *at)
            {
                return Ok(None);
            }
            let unchanged = last_applied.as_deref() == Some(head.as_str());
            if unchanged && !due_full {
                return Ok(None);
            }
            if unchanged && !asked {
                // The periodic sync of a head already applied: the watches know what drifted.
                if let Some(r) = syncer.resync(&head).await {
                    return r.map(Some);
                }
            }
            if !unchanged {
                info!(component = "daemon", revision = %head, "new commit");
            }
            syncer.sync().await.map(Some)
        };
        // A signal ends a sync in progress at once: the marker moves only after a complete sync, so the
        // next start applies the commit again.
        let result: Result<Option<SyncSummary>, SyncError> = tokio::select! {
            r = work => r,
            _ = &mut shutdown => {
                info!(component = "daemon", "shutting down during a sync; the sync marker did not move");
                leadership.release().await;
                return Ok(());
            }
            // Another replica may hold the Lease soon: stop writing at once.
            _ = leadership.lost() => {
                warn!(component = "daemon", "lost the leadership during a sync: stopped it; the sync marker did not move");
                continue;
            }
        };
        let result = match result {
            Ok(None) => {
                match &retry {
                    // Held back until the failed commit's retry: a full sync due meanwhile waits too, or
                    // the loop would wake for it (and fetch) at once, again and again.
                    Some((_, at)) if *at > Instant::now() => {
                        next_poll = *at;
                        next_full = next_full.max(*at);
                    }
                    _ => next_poll = Instant::now() + poll,
                }
                continue;
            }
            Ok(Some(summary)) => Ok(summary),
            Err(e) => Err(e),
        };
        let (mut record, by_object) = record_of(
            result.as_ref(),
            syncer.attempted().map(str::to_owned),
            started_at,
            started.elapsed(),
            explain,
        );
        if let Some(rev) = &record.revision {
            record.commit = syncer.commit_info(rev).await.map(|c| tether_api::Commit {
                subject: c.subject,
                author: c.author,
                date: c.date,
            });
        }
        control.record(
            record.clone(),
            result.is_ok().then(|| syncer.workloads()),
            by_object,
        );
        for w in waiting.drain(..) {
            let _ = w.send(record.clone());
        }
        tell(&notifier, &mut dedup, &result, &record);
        match &result {
            // A periodic sync that found everything as Git wants it is not news (one Event every
            // --sync-interval would be all an idle agent writes).
            Ok(s)
                if s.changed_total == 0 && last_applied.as_deref() == Some(s.revision.as_str()) => {
            }
            Ok(s) => events.synced(&s.revision, s.changes.clone(), s.changed_total),
            Err(_) => events.failed(
                record.revision.as_deref(),
                record.error.as_deref().unwrap_or(""),
            ),
        }
        match result {
            Ok(summary) => {
                admin.metrics.sync_succeeded(
                    summary.duration.as_secs_f64(),
                    &[
                        ("created", summary.created),
                        ("configured", summary.configured),
                        ("unchanged", summary.unchanged),
                        ("skipped", summary.skipped),
                        ("deleted", summary.deleted),
                        ("gc_kept", summary.gc_kept),
                    ],
                );
                admin
                    .ready
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                last_applied = Some(summary.revision.clone());
                retry = None;
                delays = backoff(poll);
                next_full = Instant::now() + full;
                next_poll = Instant::now() + poll;
            }
            Err(e) => {
                admin
                    .metrics
                    .sync_failed(started.elapsed().as_secs_f64(), e.label());
                let delay = delays.next().unwrap_or(poll);
                error!(component = "daemon", error = %explain(&e), reason = e.label(), retry_in = ?delay, "sync failed");
                next_poll = Instant::now() + delay;
                retry = syncer.attempted().map(|h| (h.to_owned(), next_poll));
                next_full = next_full.max(next_poll);
                if due_full {
                    next_full = next_poll;
                }
            }
        }
    }
}

/// Resolves when the watch cache saw drift; never without a cache.
async fn drift(live: Option<&tether_apply::LiveCache>) {
    match live {
        Some(l) => l.drifted().await,
        None => std::future::pending().await,
    }
}

/// Notifies people of what a sync did that they should hear about: a new failure (not its retries), the
/// recovery, a collection, a deploy key that cannot push.
fn tell(
    notifier: &Notifier,
    dedup: &mut Dedup,
    result: &Result<SyncSummary, SyncError>,
    record: &tether_api::SyncRecord,
) {
    match result {
        Ok(summary) => {
            if dedup.succeeded() {
                notifier.send(Event::SyncRecovered {
                    revision: summary.revision.clone(),
                });
            }
            if !summary.collected.is_empty() {
                notifier.send(Event::Collected {
                    revision: summary.revision.clone(),
                    objects: summary.collected.iter().map(ToString::to_string).collect(),
                });
            }
        }
        Err(e) => {
            let error = record.error.clone().unwrap_or_default();
            // The same failure is the same reason about the same objects; the text (a git stderr with a
            // timing in it, say) may differ from one retry to the next.
            let objects: Vec<&str> = record
                .objects
                .iter()
                .filter_map(|o| o.object.as_deref())
                .collect();
            if !dedup.failed(format!("{}: {}", e.label(), objects.join(","))) {
                return;
            }
            if let SyncError::Source(tether_source::Error::ReadOnly { .. }) = e {
                notifier.send(Event::ReadOnlyKey { error });
            } else {
                notifier.send(Event::SyncFailed {
                    revision: record.revision.clone(),
                    error,
                    objects: record.objects.clone(),
                });
            }
        }
    }
}

/// What the API works with, taken from the syncer (sharing its clone, renderer and client).
fn api_state(
    syncer: &Syncer,
    control: Arc<Control>,
    automation: Option<Arc<tether_automation::Automation>>,
    sync_wait: Duration,
    leadership: Leadership,
) -> crate::api::ApiState {
    let cfg = syncer.config();
    let deploy_key = match (&cfg.git.url, &cfg.git.auth.ssh_key, &cfg.deploy_key) {
        (tether_source::GitUrl::Ssh(_), _, Some(name)) if syncer.uses_deploy_key() => {
            Some(crate::identity::DeployKey {
                namespace: syncer.namespace().to_owned(),
                name: name.clone(),
            })
        }
        _ => None,
    };
    crate::api::ApiState {
        auth: crate::api::auth::Auth::new(syncer.client().clone()),
        control,
        kube: syncer.client().clone(),
        repo: syncer.repo(),
        renderer: syncer.renderer(),
        paths: cfg.paths.clone(),
        default_namespace: syncer.default_namespace().to_owned(),
        namespace: syncer.namespace().to_owned(),
        sync_name: cfg.sync_name.clone(),
        source: cfg.git.url.to_string(),
        branch: cfg.git.branch.clone(),
        readonly: cfg.readonly,
        automation,
        deploy_key,
        sync_wait,
        explain: cfg.explain,
        webhook_secret: cfg.webhook_secret.as_ref().map(|s| s.0.clone()),
        leadership,
    }
}

/// Exponential backoff from 5 s, capped at the poll interval; a fresh one after each success.
fn backoff(cap: Duration) -> ExponentialBackoff {
    let first = Duration::from_secs(5);
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(cap.max(first))
        .without_max_times()
        .build()
}

/// Resolves on SIGTERM or Ctrl-C (the binary's other long-running commands use it too).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!(component = "daemon", error = %e, "cannot listen for SIGTERM; only Ctrl-C stops tether");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_the_poll_interval() {
        let got: Vec<u64> = backoff(Duration::from_secs(30))
            .take(5)
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(got, [5, 10, 20, 30, 30]);
        // A poll interval under 5 s still waits 5 s, never less.
        assert_eq!(
            backoff(Duration::from_secs(1)).next(),
            Some(Duration::from_secs(5))
        );
    }
}
