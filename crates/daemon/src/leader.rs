//! Leader election (`--leader-elect`): replicas of one sync name share a coordination.k8s.io Lease in the
//! agent's namespace; only its holder syncs, collects and commits, the others serve the read API and take
//! over once the holder stops renewing. As client-go does, expiry is judged by how long *this* replica has
//! seen the record unchanged, not by comparing the holder's clock with ours; every write carries the
//! resourceVersion it read, so two replicas can never both win the same Lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
}

/// What one replica knows of the Lease, for its loops and its API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// This replica holds the Lease.
    pub leader: bool,
    /// Who does (`None` before the first read).
    pub holder: Option<String>,
}

/// A handle on the election's outcome.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<State>,
    release: Option<Arc<Release>>,
}

/// What giving the Lease up needs.
#[derive(Debug)]
struct Release {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// Set once given up: the election stops renewing.
    done: std::sync::atomic::AtomicBool,
    /// Held by the election during each step.
    writing: tokio::sync::Mutex<()>,
}

impl Leadership {
    /// Always the leader (no election).
    pub fn alone() -> Self {
        let (_tx, rx) = watch::channel(State {
            leader: true,
            holder: None,
        });
        Leadership { rx, release: None }
    }

    /// Gives the Lease up if this replica holds it (on SIGTERM), so a standby takes over at once instead of
    /// a lease duration later; bounded to a few seconds, a failure only logged.
    pub async fn release(&self) {
        let Some(r) = &self.release else {
            return;
        };
        r.done.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wait for a step in flight (bounded below), so it cannot take the Lease back after this.
        let _writing = tokio::time::timeout(Duration::from_secs(3), r.writing.lock())
            .await
            .ok();
        if !self.is_leader() {
            return;
        }
        let give_up = async {
            let mut lease = r.api.get(&r.name).await?;
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(r.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            r.api
                .replace(&r.name, &PostParams::default(), &lease)
                .await
                .map(drop)
        };
        match tokio::time::timeout(Duration::from_secs(3), give_up).await {
            Ok(Ok(())) => info!(component = "leader", lease = %r.name, "gave the Lease up"),
            Ok(Err(e)) => {
                warn!(component = "leader", error = %e, "could not give the Lease up; a standby takes over when it expires")
            }
            Err(_) => warn!(
                component = "leader",
                "giving the Lease up timed out; a standby takes over when it expires"
            ),
        }
    }

    /// Whether this replica may write now.
    pub fn is_leader(&self) -> bool {
        self.rx.borrow().leader
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.rx.borrow().clone()
    }

    /// Resolves once this replica is the leader.
    pub async fn acquired(&mut self) {
        let _ = self.rx.wait_for(|s| s.leader).await;
    }

    /// Resolves once this replica is no longer the leader (never, when it never was elected).
    pub async fn lost(&mut self) {
        if self.rx.wait_for(|s| !s.leader).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The Lease of a sync name.
pub fn lease_name(sync_name: &str) -> String {
    format!("{sync_name}-leader")
}

/// Starts the election in the background.
pub fn start(client: kube::Client, namespace: &str, sync_name: &str, s: Settings) -> Leadership {
    let (tx, rx) = watch::channel(State {
        leader: false,
        holder: None,
    });
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let name = lease_name(sync_name);
    let namespace = namespace.to_owned();
    let tx = Arc::new(tx);
    let release = Arc::new(Release {
        api: api.clone(),
        name: name.clone(),
        identity: s.identity.clone(),
        done: std::sync::atomic::AtomicBool::new(false),
        writing: tokio::sync::Mutex::new(()),
    });
    let released = release.clone();
    tokio::spawn(async move {
        let mut observed: Option<(String, Instant)> = None; // (resourceVersion, when it last changed)
        let renew = s.lease_duration / 3;
        let mut renewed_at: Option<Instant> = None;
        let pod = PodLabel::from_env(api.clone().into_client(), &namespace);
        pod.set(false).await;
        loop {
            if released.done.load(std::sync::atomic::Ordering::SeqCst) {
                tx.send_replace(State {
                    leader: false,
                    holder: None,
                });
                return;
            }
            // A renewal that hangs must not outlive the Lease: after a third of it, or sooner when the last
            // renewal is already old, it counts as failed. Renewals are timed from when they were sent.
            let sent = Instant::now();
            let limit = match renewed_at {
                Some(t) => renew.min((s.lease_duration * 2 / 3).saturating_sub(t.elapsed())),
                None => renew,
            };
            let stepped = {
                // Held while a step may write, so giving the Lease up waits for it (and is not undone by it).
                let _writing = released.writing.lock().await;
                if released.done.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                tokio::time::timeout(limit, step(&api, &name, &s, &mut observed)).await
            };
            let result = match stepped {
                Ok(r) => r,
                Err(_) => Err(kube::Error::Service(
                    format!("no answer within {limit:?}").into(),
                )),
            };
            let state = match result {
                Ok(st) => {
                    if st.leader {
                        renewed_at = Some(sent);
                    }
                    st
                }
                Err(e) => {
                    // A leader that cannot renew steps down before its Lease can expire elsewhere.
                    let still = renewed_at.is_some_and(|t| t.elapsed() < s.lease_duration * 2 / 3);
                    warn!(component = "leader", error = %e, "cannot read or renew the Lease");
                    State {
                        leader: still,
                        holder: tx.borrow().holder.clone(),
                    }
                }
            };
            let was = tx.borrow().leader;
            if state.leader != was {
                if state.leader {
                    info!(component = "leader", identity = %s.identity, lease = %name, "became the leader");
                } else {
                    warn!(component = "leader", identity = %s.identity, holder = ?state.holder,
                        "not the leader any more: standing by");
                    renewed_at = None;
                }
            }
            let changed = state.leader != was;
            let leading = state.leader;
            tx.send_replace(state);
            if changed {
                // Beside the loop: a slow Pod patch must never delay a renewal.
                let pod = pod.clone();
                tokio::spawn(async move { pod.set(leading).await });
            }
            let wait = if tx.borrow().leader {
                renew
            } else {
                Duration::from_secs(1).min(renew)
            };
            tokio::time::sleep(wait).await;
        }
    });
    Leadership {
        rx,
        release: Some(release),
    }
}

/// One round: take the Lease if free or expired, renew it if ours.
async fn step(
    api: &Api<Lease>,
    name: &str,
    s: &Settings,
    observed: &mut Option<(String, Instant)>,
) -> Result<State, kube::Error> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let seconds = i32::try_from(s.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(lease) = api.get_opt(name).await? else {
        let fresh = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(s.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &fresh).await {
            Ok(_) => Ok(mine(s)),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(State {
                leader: false,
                holder: None,
            }),
            Err(e) => Err(e),
        };
    };
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    match observed {
        Some((v, _)) if *v == version => {}
        _ => *observed = Some((version, Instant::now())),
    }
    let held_for = spec
        .lease_duration_seconds
        .and_then(|d| u64::try_from(d).ok())
        .map_or(s.lease_duration, Duration::from_secs);
    let expired = observed
        .as_ref()
        .is_some_and(|(_, at)| at.elapsed() > held_for);
    let ours = holder.as_deref() == Some(s.identity.as_str());
    if !ours && holder.is_some() && !expired {
        return Ok(State {
            leader: false,
            holder,
        });
    }
    let mut next = lease;
    let spec = next.spec.get_or_insert_with(LeaseSpec::default);
    if !ours {
        spec.holder_identity = Some(s.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(now);
    // Carries the resourceVersion read above: if another replica wrote meanwhile, this is a 409.
    match api.replace(name, &PostParams::default(), &next).await {
        Ok(_) => Ok(mine(s)),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(State {
            leader: false,
            holder,
        }),
        Err(e) => Err(e),
    }
}

/// This replica's Pod, when `POD_NAME` names it: labelled with its role so the Service reaches the leader.
#[derive(Clone)]
struct PodLabel {
    api: Api<Pod>,
    name: Option<String>,
}

impl PodLabel {
    fn from_env(client: kube::Client, namespace: &str) -> Self {
        PodLabel {
            api: Api::namespaced(client, namespace),
            name: std::env::var("POD_NAME").ok().filter(|p| !p.is_empty()),
        }
    }

    /// Labels the Pod `leader` or `standby`; a failure is logged (the Service then misses this replica).
    async fn set(&self, leader: bool) {
        let Some(name) = &self.name else {
            return;
        };
        let role = if leader { "leader" } else { "standby" };
        let patch = serde_json::json!({"metadata": {"labels": {tether_core::ROLE_LABEL: role}}});
        if let Err(e) = self
            .api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            warn!(component = "leader", pod = %name, role, error = %e,
                "cannot label this replica's Pod; the Service may not reach the leader (needs patch on pods)");
        }
    }
}

fn mine(s: &Settings) -> State {
    State {
        leader: true,
        holder: Some(s.identity.clone()),
    }
}
