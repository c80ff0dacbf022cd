//! Kubernetes Events (events.k8s.io/v1), so `kubectl describe` on an object says that tether changed it, from
//! which commit, and `kubectl get events` in the agent's namespace shows each sync's result. Aggregated: at
//! most [`PER_SYNC`] object events per sync (the rest summed up in one), and kube-runtime's recorder folds a
//! repeated event into a series instead of a new object. Publishing runs beside the loop and never fails a
//! sync: an event that cannot be written is logged at debug level.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tether_core::ObjectId;
use tracing::debug;

/// Object events one sync publishes at most.
pub const PER_SYNC: usize = 50;

/// What one sync did to one object, for its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The object.
    pub id: ObjectId,
    /// Its `apiVersion` as served.
    pub api_version: String,
    /// Its uid (absent for deleted objects).
    pub uid: Option<String>,
    /// `Created`, `Configured`, `DriftCorrected` or `Deleted`.
    pub reason: &'static str,
}

/// Where events go.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    agent: ObjectReference,
}

impl Events {
    /// Events by `tether` (instance: the pod name); sync results are attached to the agent's Pod when
    /// `POD_NAME` says which (the installed Deployment sets it), else to the sync's inventory ConfigMap.
    pub fn new(client: kube::Client, namespace: &str, sync_name: &str) -> Self {
        let pod = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty());
        let agent = match &pod {
            Some(name) => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.clone()),
                namespace: Some(namespace.to_owned()),
                uid: std::env::var("POD_UID").ok().filter(|u| !u.is_empty()),
                ..ObjectReference::default()
            },
            None => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
                name: Some(tether_record::inventory_name(sync_name)),
                namespace: Some(namespace.to_owned()),
                ..ObjectReference::default()
            },
        };
        let reporter = Reporter {
            controller: "tether".into(),
            instance: pod,
        };
        Events {
            recorder: Recorder::new(client, reporter),
            agent,
        }
    }

    /// Publishes a sync's result on the agent and an event per changed object (at most [`PER_SYNC`]).
    pub fn synced(&self, revision: &str, changes: Vec<Change>, total: usize) {
        let this = self.clone();
        let revision = revision.to_owned();
        tokio::spawn(async move {
            let short = tether_api::short(&revision).to_owned();
            // The recorder folds repeats of an event into a series by (object, reason, action), keeping the
            // first note: the commit is in the action, so a new commit is a new event with its own note.
            let action = format!("Sync {short}");
            let shown = changes.len();
            for c in changes {
                let reference = reference_of(&c);
                let note = match c.reason {
                    "Created" => format!("created by tether from commit {short}"),
                    "DriftCorrected" => {
                        format!("changed by hand; tether set it back to commit {short}")
                    }
                    "Deleted" => {
                        format!("deleted by tether: no longer in Git as of commit {short}")
                    }
                    _ => format!("updated by tether to commit {short}"),
                };
                this.publish(EventType::Normal, c.reason, &action, note, &reference)
                    .await;
            }
            let mut note = format!("applied commit {short}");
            if total > 0 {
                note.push_str(&format!(", {total} object(s) changed"));
            }
            if total > shown {
                note.push_str(&format!(
                    " ({} without an event of their own)",
                    total - shown
                ));
            }
            this.publish(EventType::Normal, "Synced", &action, note, &this.agent)
                .await;
        });
    }

    /// Publishes a failed sync on the agent.
    pub fn failed(&self, revision: Option<&str>, error: &str) {
        let this = self.clone();
        let short = revision.map_or("-", tether_api::short).to_owned();
        let mut note = format!("sync of {short} failed: {error}");
        // The API server refuses notes over 1 kB.
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        tokio::spawn(async move {
            let action = format!("Sync {short}");
            this.publish(EventType::Warning, "SyncFailed", &action, note, &this.agent)
                .await;
        });
    }

    /// Objects changed by hand that tether set back between syncs (from the watch), to the applied commit.
    pub fn repaired(&self, revision: &str, changes: Vec<Change>) {
        let this = self.clone();
        let short = tether_api::short(revision).to_owned();
        tokio::spawn(async move {
            let action = format!("Sync {short}");
            for c in changes {
                let note = format!("changed by hand; tether set it back to commit {short}");
                this.publish(
                    EventType::Normal,
                    c.reason,
                    &action,
                    note,
                    &reference_of(&c),
                )
                .await;
            }
        });
    }

    /// tether stopped setting an object back: something keeps changing what Git sets (reported once).
    pub fn fight(&self, revision: &str, change: Change, manager: Option<&str>) {
        let this = self.clone();
        let short = tether_api::short(revision).to_owned();
        let who = manager.map_or_else(
            || "another writer".to_owned(),
            |m| format!("field manager '{m}'"),
        );
        let note = format!(
            "{who} keeps changing fields Git sets: tether set them back {} times in {} minutes and stops \
             reverting until the manifest changes (the periodic sync still applies commit {short}); make Git \
             and that writer agree, or leave the field out of Git",
            tether_plan::drift::TRIP_AFTER,
            tether_plan::drift::WINDOW.as_secs() / 60
        );
        tokio::spawn(async move {
            let action = format!("Sync {short}");
            this.publish(
                EventType::Warning,
                "DriftFight",
                &action,
                note,
                &reference_of(&change),
            )
            .await;
        });
    }

    async fn publish(
        &self,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        reference: &ObjectReference,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, reference).await {
            debug!(component = "events", error = %e, object = ?reference.name, "event not written");
        }
    }
}

/// The object an event about `c` refers to.
fn reference_of(c: &Change) -> ObjectReference {
    ObjectReference {
        api_version: Some(c.api_version.clone()),
        kind: Some(c.id.kind.clone()),
        name: Some(c.id.name.clone()),
        namespace: c.id.namespace.clone(),
        uid: c.uid.clone(),
        ..ObjectReference::default()
    }
}
