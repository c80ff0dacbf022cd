//! Wiring image automation into the daemon: its own task on its own timer, sharing the clone with syncs,
//! waking the sync loop as soon as it has pushed a commit.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tether_automation::{Automation, AutomationConfig, Pass};
use tether_registry::RegistryClient;
use tokio::sync::Notify;
use tracing::{error, info, info_span, Instrument};

use crate::admin::AdminState;
use crate::config::{AutomationSettings, Config, Explain};
use crate::control::Control;
use crate::sync::Syncer;
use tether_registry::ImageRepo;

/// Builds the automation state next to a syncer.
pub(crate) fn build(settings: &AutomationSettings, syncer: &Syncer) -> anyhow::Result<Automation> {
    let registry = RegistryClient::new(settings.registry.clone())?;
    Ok(Automation::new(
        registry,
        syncer.client().clone(),
        syncer.repo(),
        AutomationConfig {
            paths: syncer.config().paths.clone(),
            renderer: syncer.renderer(),
            default_namespace: syncer.default_namespace().to_owned(),
            docker_config: settings.docker_config.clone(),
        },
    ))
}

/// Runs one automation pass (`tether automate --once`).
pub async fn automate_once(cfg: Config) -> anyhow::Result<Pass> {
    let Some(settings) = cfg.automation.clone() else {
        anyhow::bail!("image automation is off: it needs a writable repository (no --git-readonly) and registry scanning (no --registry-disable-scanning)");
    };
    let syncer = Syncer::new(cfg).await?;
    let automation = build(&settings, &syncer)?;
    Ok(automation.run_once().await?)
}

/// What the automation loop shares with the rest of the agent.
pub(crate) struct Wiring {
    /// Notified whenever a pass pushed a commit (the sync loop deploys it at once).
    pub pushed: Arc<Notify>,
    /// Metrics.
    pub admin: Arc<AdminState>,
    /// Scan requests from registry webhooks.
    pub control: Arc<Control>,
    /// Where "automation pushed" goes.
    pub notifier: crate::notify::Notifier,
    /// Only the leader commits.
    pub leadership: crate::leader::Leadership,
}

/// Spawns the automation loop.
pub(crate) fn spawn(automation: Arc<Automation>, explain: Explain, interval: Duration, w: Wiring) {
    let Wiring {
        pushed,
        admin,
        control,
        notifier,
        leadership,
    } = w;
    let task = async move {
        // `None`: every automated workload; else only those running these repositories (a registry webhook).
        let mut only: Option<BTreeSet<ImageRepo>> = None;
        let mut next_full = tokio::time::Instant::now();
        loop {
            if !leadership.is_leader() {
                // Only the leader commits; a standby replica waits for its turn.
                tokio::time::sleep(interval.min(std::time::Duration::from_secs(5))).await;
                continue;
            }
            let mut losing = leadership.clone();
            // A pass stops (before or during its push) the moment another replica may lead.
            let pass = tokio::select! {
                r = automation.run_pass(only.as_ref()) => Some(r),
                _ = losing.lost() => None,
            };
            let Some(pass) = pass else {
                info!(
                    component = "automation",
                    "not the leader any more: the pass was stopped"
                );
                continue;
            };
            match pass {
                Ok(pass) => {
                    admin
                        .metrics
                        .automation_pass(pass.failure_label(), pass.updates.len());
                    info!(
                        component = "automation",
                        updates = pass.updates.len(),
                        errors = pass.errors.len(),
                        commit = pass.commit.as_deref().unwrap_or("none"),
                        "automation pass complete"
                    );
                    if let Some(commit) = &pass.commit {
                        pushed.notify_one();
                        notifier.send(crate::notify::Event::AutomationPushed {
                            commit: commit.clone(),
                            images: pass
                                .updates
                                .iter()
                                .map(|u| {
                                    (
                                        u.workload.to_string(),
                                        u.container.clone(),
                                        u.from.clone(),
                                        u.to.clone(),
                                    )
                                })
                                .collect(),
                        });
                    }
                }
                Err(e) => {
                    admin.metrics.automation_pass(Some(e.label()), 0);
                    error!(component = "automation", error = %explain(&e), "automation pass failed")
                }
            }
            if only.is_none() {
                next_full = tokio::time::Instant::now() + interval;
            }
            // Webhook scans come between full passes without postponing them.
            only = tokio::select! {
                _ = tokio::time::sleep_until(next_full) => None,
                repos = control.scans_wanted() => Some(repos),
            };
        }
    };
    tokio::spawn(task.instrument(info_span!("automation")));
}
