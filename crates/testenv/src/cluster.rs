//! The local control plane with simulated nodes: started once per test process by `scripts/cluster.sh up
//! --owner-pid`, or reused from `TETHER_TEST_KUBECONFIG` (for example a user's kind or k3s cluster, or the one
//! `.ci/run` started).

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{repo_root, run, unique_name};

/// A running control plane and the identities tests can use.
#[derive(Debug)]
pub struct Cluster {
    /// Kubeconfig of an admin (`system:masters`).
    pub kubeconfig: PathBuf,
    /// Kubeconfig of `tether-user`, an authenticated user with no RBAC grants.
    pub user_kubeconfig: Option<PathBuf>,
    /// The API server's audit log (JSON lines, Metadata level for write verbs).
    pub audit_log: Option<PathBuf>,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();

impl Cluster {
    /// The control plane shared by every test in this process; started on first use.
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(|| {
            if let Ok(kc) = std::env::var("TETHER_TEST_KUBECONFIG") {
                return Cluster {
                    kubeconfig: kc.into(),
                    user_kubeconfig: std::env::var_os("TETHER_TEST_USER_KUBECONFIG")
                        .map(Into::into),
                    audit_log: std::env::var_os("TETHER_TEST_AUDIT_LOG").map(Into::into),
                };
            }
            Cluster::start()
        })
    }

    fn start() -> Cluster {
        // `cluster.sh down` (run by its watchdog when this process exits) removes the directory.
        let plane = tempfile::Builder::new()
            .prefix("tether-cluster-")
            .tempdir()
            .expect("temp dir for the control plane")
            .keep();
        run(Command::new("bash")
            .arg(repo_root().join("scripts/cluster.sh"))
            .arg("up")
            .arg("--dir")
            .arg(&plane)
            .arg("--owner-pid")
            .arg(std::process::id().to_string()));
        Cluster {
            kubeconfig: plane.join("admin.kubeconfig"),
            user_kubeconfig: Some(plane.join("user.kubeconfig")),
            audit_log: Some(plane.join("audit.log")),
        }
    }

    /// A client with admin rights. Make one per test: clients are bound to the runtime they were built in.
    pub async fn client(&self) -> kube::Client {
        client_for(&self.kubeconfig).await
    }

    /// A client for the unprivileged `tether-user`.
    pub async fn user_client(&self) -> kube::Client {
        let kc = self
            .user_kubeconfig
            .as_ref()
            .expect("set TETHER_TEST_USER_KUBECONFIG to an unprivileged user's kubeconfig");
        client_for(kc).await
    }

    /// `kubectl --kubeconfig <admin>`, with the kubectl of the control plane's release.
    pub fn kubectl(&self) -> Command {
        static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
        let mut cmd = Command::new(KUBECTL.get_or_init(|| crate::tool("kubectl")));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// The audit log; panics when the cluster has none (a user-provided cluster without `TETHER_TEST_AUDIT_LOG`).
    pub fn audit(&self) -> AuditLog {
        let path = self
            .audit_log
            .clone()
            .expect("this test counts write requests: set TETHER_TEST_AUDIT_LOG to the API server's audit log");
        AuditLog::new(path)
    }

    /// Creates a fresh namespace for one test; it is deleted when the returned guard drops.
    pub fn namespace(&'static self, prefix: &str) -> TestNamespace {
        let name = unique_name(prefix);
        run(self.kubectl().args(["create", "namespace", &name]));
        TestNamespace {
            name,
            cluster: self,
        }
    }
}

/// Builds a kube client from a kubeconfig file.
pub async fn client_for(path: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    kube::Client::try_from(config).expect("kube client")
}

/// A namespace owned by one test.
#[derive(Debug)]
pub struct TestNamespace {
    /// Its name.
    pub name: String,
    cluster: &'static Cluster,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl()
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .output();
    }
}

/// One audit event (the fields tests look at).
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// `create`, `update`, `patch`, `delete`, ...
    pub verb: String,
    /// `objectRef.resource`, e.g. `configmaps`.
    pub resource: String,
    /// `objectRef.namespace` (empty for cluster-scoped).
    pub namespace: String,
    /// `objectRef.name`.
    pub name: String,
    /// The request URI, to tell dry-runs (`dryRun=All`) apart.
    pub request_uri: String,
    /// The authenticated user.
    pub user: String,
    /// The client's User-Agent.
    pub user_agent: String,
}

impl AuditEvent {
    /// A write that changes stored state: a write verb that is not a server-side dry-run.
    pub fn is_persisted_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) && !self.request_uri.contains("dryRun=")
    }
}

/// Reads the audit log from a mark on, so a test sees only what happened after it.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    offset: u64,
}

impl AuditLog {
    fn new(path: PathBuf) -> Self {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        AuditLog { path, offset }
    }

    /// Every event logged since this `AuditLog` was made.
    pub fn events(&self) -> Vec<AuditEvent> {
        let mut f = std::fs::File::open(&self.path)
            .unwrap_or_else(|e| panic!("open audit log {}: {e}", self.path.display()));
        f.seek(SeekFrom::Start(self.offset))
            .expect("seek audit log");
        let s = |v: &serde_json::Value, p: &str| {
            v.pointer(p)
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_owned()
        };
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .map(|v| AuditEvent {
                verb: s(&v, "/verb"),
                resource: s(&v, "/objectRef/resource"),
                namespace: s(&v, "/objectRef/namespace"),
                name: s(&v, "/objectRef/name"),
                request_uri: s(&v, "/requestURI"),
                user: s(&v, "/user/username"),
                user_agent: s(&v, "/userAgent"),
            })
            .collect()
    }

    /// Persisted writes since the mark by clients other than the cluster's own components, for which `keep`
    /// holds. The controllers, scheduler and simulated kubelets (all `system:` users) write Pods, ReplicaSets
    /// and statuses on their own; those are not tether's writes.
    pub fn writes(&self, keep: impl Fn(&AuditEvent) -> bool) -> Vec<AuditEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.is_persisted_write() && !e.user.starts_with("system:") && keep(e))
            .collect()
    }
}
