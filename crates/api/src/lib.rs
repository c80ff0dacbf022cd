//! The agent's API, version 1: its paths, the JSON it takes and gives, the authorisation vocabulary the
//! agent checks with SubjectAccessReview, and the client the CLI (and the status page) use. The daemon
//! serves it; nothing here knows how. `docs/api.md` describes it for people.

mod client;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use client::{Client, ClientError};

/// Paths of version 1. Every one needs `Authorization: Bearer <token>`.
pub mod paths {
    /// `GET`: the sync state and recent syncs. `POST`: fetch and sync now, answered when that sync ended.
    pub const SYNC: &str = "/api/v1/sync";
    /// `GET`: the workloads Git defines, with what runs in the cluster (`?namespace=`, `?container=`).
    pub const WORKLOADS: &str = "/api/v1/workloads";
    /// `GET`: per container the image in Git and the newest candidates its policy allows (`?namespace=`,
    /// `?workload=`, `?limit=`).
    pub const IMAGES: &str = "/api/v1/images";
    /// `POST`: change a workload's policies (lock, automate, tag filters): one commit, pushed and synced.
    pub const POLICY: &str = "/api/v1/policy";
    /// `POST`: release images to workloads: one commit, pushed and synced (or only planned).
    pub const RELEASE: &str = "/api/v1/release";
    /// `GET`: the agent's deploy key (public half).
    pub const IDENTITY: &str = "/api/v1/identity";
    /// `POST`: a Git host's push event (signed, no bearer token): fetch and sync now.
    pub const HOOK_GIT: &str = "/hooks/git";
    /// `POST`: a registry's push event (signed, no bearer token): scan that image repository now.
    pub const HOOK_REGISTRY: &str = "/hooks/registry";
}

/// The API group of the virtual resources the agent authorises calls against.
pub const GROUP: &str = "tether.dev";

/// A virtual resource a call is authorised against (nothing serves it; RBAC rules name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Workloads, in their own namespace; the SubjectAccessReview's name is `kind/name`.
    Workloads,
    /// The agent's syncs, in the agent's namespace; the name is the sync name.
    Syncs,
}

impl Resource {
    /// The plural RBAC rules use.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Workloads => "workloads",
            Resource::Syncs => "syncs",
        }
    }
}

/// What a call does to a resource, as an RBAC verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Read one.
    Get,
    /// Read many.
    List,
    /// Change (release, lock, policies, trigger a sync).
    Update,
}

impl Verb {
    /// The verb RBAC rules use.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Update => "update",
        }
    }
}

/// The body of every error answer: one line saying what went wrong and what to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The message.
    pub error: String,
}

/// How many objects a successful sync touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCounts {
    /// Created.
    pub created: usize,
    /// Changed (drift included).
    pub configured: usize,
    /// Already as desired.
    pub unchanged: usize,
    /// Deleted by garbage collection.
    pub deleted: usize,
    /// Skipped by policy or namespace filter.
    pub skipped: usize,
    /// Garbage collection would delete (dry-run mode).
    pub would_delete: usize,
    /// Garbage collection kept on purpose or failed to delete.
    pub gc_kept: usize,
}

/// One object a failed sync names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectError {
    /// `namespace:kind/name`, when known.
    pub object: Option<String>,
    /// `file:line` in Git.
    pub at: String,
    /// The server's or the manifest's problem.
    pub message: String,
}

/// One sync, finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    /// The commit it applied (or tried to; `None` when even the fetch failed).
    pub revision: Option<String>,
    /// When it started, RFC 3339.
    pub started: String,
    /// How long it took.
    pub duration_ms: u64,
    /// Whether it succeeded (the marker moved).
    pub ok: bool,
    /// What it did, when it succeeded.
    pub counts: Option<SyncCounts>,
    /// Why it failed, with the advice the log gives.
    pub error: Option<String>,
    /// A short stable label of the failure (`rejected`, `timeout`, `fetch`, ...).
    pub reason: Option<String>,
    /// The objects it failed on, when the failure is about objects.
    #[serde(default)]
    pub objects: Vec<ObjectError>,
    /// The commit's subject, author and date.
    pub commit: Option<Commit>,
    /// Objects garbage collection deleted (at most 100).
    #[serde(default)]
    pub collected: Vec<String>,
}

/// A commit as people know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The first line of its message.
    pub subject: String,
    /// Its author's name.
    pub author: String,
    /// Its author date, RFC 3339.
    pub date: String,
}

impl fmt::Display for SyncRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rev = self.revision.as_deref().map_or("-", short);
        match (&self.counts, &self.error) {
            (Some(c), _) if self.ok => write!(
                f,
                "revision={rev} created={} configured={} unchanged={} deleted={} skipped={} duration={:.2}s",
                c.created,
                c.configured,
                c.unchanged,
                c.deleted,
                c.skipped,
                self.duration_ms as f64 / 1000.0
            ),
            (_, Some(e)) => write!(f, "revision={rev} failed: {e}"),
            _ => write!(f, "revision={rev} ok={}", self.ok),
        }
    }
}

/// A commit id shortened to 12 characters, as logs print it.
pub fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}

/// `GET /api/v1/sync`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// The sync name (owner of what it applies).
    pub sync_name: String,
    /// The repository, without credentials.
    pub source: String,
    /// The branch.
    pub branch: String,
    /// The last commit applied successfully.
    pub applied: Option<String>,
    /// Its subject, author and date.
    #[serde(default)]
    pub applied_commit: Option<Commit>,
    /// The last syncs, newest first (at most 20).
    pub history: Vec<SyncRecord>,
}

/// A workload's policies, read from its annotations in Git.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policies {
    /// Image automation updates it.
    pub automated: bool,
    /// Nothing changes its images.
    pub locked: bool,
    /// Who locked it.
    pub locked_user: Option<String>,
    /// Why.
    pub locked_msg: Option<String>,
    /// tether leaves it alone.
    pub ignore: bool,
    /// Tag filters by container.
    pub tags: BTreeMap<String, String>,
}

impl fmt::Display for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.automated {
            parts.push("automated".to_owned());
        }
        if self.locked {
            let who = [self.locked_user.as_deref(), self.locked_msg.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            if who.is_empty() {
                parts.push("locked".to_owned());
            } else {
                parts.push(format!("locked ({})", who.join(": ")));
            }
        }
        if self.ignore {
            parts.push("ignore".to_owned());
        }
        for (c, p) in &self.tags {
            parts.push(format!("tag.{c}={p}"));
        }
        f.write_str(&parts.join(","))
    }
}

/// Where a workload's rollout stands, from the live object's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// `ready`, `updating`, `missing` (not in the cluster), `suspended`, `scheduled` (a CronJob) or
    /// `unknown`.
    pub status: String,
    /// Ready replicas (or scheduled pods of a DaemonSet).
    pub ready: i64,
    /// Desired replicas.
    pub desired: i64,
    /// Replicas already at the current template.
    pub updated: i64,
}

impl fmt::Display for Rollout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status.as_str() {
            "ready" | "updating" => write!(f, "{} {}/{}", self.status, self.ready, self.desired),
            s => f.write_str(s),
        }
    }
}

/// One container of a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// The container.
    pub name: String,
    /// The image the live object runs (`None` when the object is not in the cluster).
    pub running: Option<String>,
    /// The image Git says.
    pub git: String,
}

/// One workload: what Git says and what the cluster runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// `namespace:kind/name`.
    pub id: String,
    /// Its namespace.
    pub namespace: String,
    /// `file:line` in Git.
    pub source: String,
    /// Containers (init containers included), in file order.
    pub containers: Vec<ContainerStatus>,
    /// The rollout.
    pub rollout: Rollout,
    /// Policies.
    pub policies: Policies,
    /// What the last sync reported for this object, when it failed on it.
    pub error: Option<String>,
}

/// `GET /api/v1/workloads`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadList {
    /// The workloads, sorted by id.
    pub items: Vec<WorkloadStatus>,
    /// The revision they were read from (the last one applied).
    pub revision: Option<String>,
}

/// One candidate tag of a container's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The tag.
    pub tag: String,
    /// When the image was built, RFC 3339, when the registry said.
    pub created: Option<String>,
    /// The tag in Git now.
    pub current: bool,
}

/// One container's images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImages {
    /// `namespace:kind/name`.
    pub workload: String,
    /// The container.
    pub container: String,
    /// The image in Git.
    pub image: String,
    /// Automated and neither locked nor ignored.
    pub automated: bool,
    /// Locked.
    pub locked: bool,
    /// The tag policy.
    pub policy: String,
    /// Newest first.
    pub candidates: Vec<Candidate>,
    /// The tag automation would move to.
    pub next: Option<String>,
    /// Why the registry could not be asked.
    pub error: Option<String>,
}

/// `GET /api/v1/images`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageList {
    /// Per container.
    pub items: Vec<ContainerImages>,
}

/// One container's tag filter in a [`PolicyRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagFilter {
    /// The container.
    pub container: String,
    /// e.g. `semver:~1.4`; `*` removes the filter.
    pub pattern: String,
}

/// `POST /api/v1/policy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRequest {
    /// `namespace:kind/name`.
    pub workload: String,
    /// `true` automates, `false` deautomates.
    pub automate: Option<bool>,
    /// `true` locks, `false` unlocks.
    pub lock: Option<bool>,
    /// Tag filters per container.
    #[serde(default)]
    pub tags: Vec<TagFilter>,
    /// A tag filter for every container.
    pub tag_all: Option<String>,
    /// Why (commit message body, and the lock's message).
    pub message: Option<String>,
    /// Who (commit message body, and the lock's user).
    pub user: Option<String>,
}

/// What a change (policy or release) did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeResult {
    /// The commit subject.
    pub subject: String,
    /// The pushed commit; `None` when nothing needed to change.
    pub commit: Option<String>,
    /// The sync that deployed it.
    pub synced: Option<SyncRecord>,
}

/// `POST /api/v1/release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest {
    /// Workloads, `namespace:kind/name`.
    #[serde(default)]
    pub workloads: Vec<String>,
    /// Every workload.
    #[serde(default)]
    pub all: bool,
    /// The image to set on every container running that repository (`repo:tag`).
    pub image: Option<String>,
    /// Move every container to the newest tag its filter allows.
    #[serde(default)]
    pub all_images: bool,
    /// Workloads left out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Only plan; commit nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Release locked workloads too, and images their tag filter does not allow.
    #[serde(default)]
    pub force: bool,
    /// Why.
    pub message: Option<String>,
    /// Who.
    pub user: Option<String>,
}

/// One container a release changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseItem {
    /// `namespace:kind/name`.
    pub workload: String,
    /// The container.
    pub container: String,
    /// The image now.
    pub from: String,
    /// The image after.
    pub to: String,
}

/// A workload (or container) a release leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// `namespace:kind/name`.
    pub workload: String,
    /// The container, when only one is concerned.
    pub container: Option<String>,
    /// Why (`locked`, `ignored`, `tag 2.0 is not allowed by semver:~1`, ...).
    pub reason: String,
}

/// What a release did (or, with `dryRun`, would do).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseResult {
    /// The changes.
    pub plan: Vec<ReleaseItem>,
    /// What was left alone.
    pub skipped: Vec<Skipped>,
    /// The commit subject.
    pub subject: String,
    /// The pushed commit (`None` with `dryRun` or nothing to do).
    pub commit: Option<String>,
    /// The sync that deployed it.
    pub synced: Option<SyncRecord>,
}

/// `GET /api/v1/identity`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// One authorized_keys line.
    pub public_key: String,
    /// `SHA256:...`.
    pub fingerprint: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollouts_and_policies_read_like_kubectl_columns() {
        let r = Rollout {
            status: "updating".into(),
            ready: 1,
            desired: 2,
            updated: 1,
        };
        assert_eq!(r.to_string(), "updating 1/2");
        let p = Policies {
            automated: true,
            locked: true,
            locked_user: Some("alice".into()),
            locked_msg: Some("incident 42".into()),
            tags: [("web".to_owned(), "semver:~1".to_owned())].into(),
            ..Policies::default()
        };
        assert_eq!(
            p.to_string(),
            "automated,locked (alice: incident 42),tag.web=semver:~1"
        );
    }

    #[test]
    fn requests_take_camel_case_and_missing_lists() {
        let r: ReleaseRequest =
            serde_json::from_str(r#"{"all":true,"allImages":true,"dryRun":true}"#)
                .unwrap_or_default();
        assert!(r.all && r.all_images && r.dry_run && r.workloads.is_empty());
    }
}
