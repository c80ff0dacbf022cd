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
            let cluster = match std::env::var("TETHER_TEST_KUBECONFIG") {
                Ok(kc) => Cluster {
                    kubeconfig: kc.into(),
                    user_kubeconfig: std::env::var_os("TETHER_TEST_USER_KUBECONFIG")
                        .map(Into::into),
                    audit_log: std::env::var_os("TETHER_TEST_AUDIT_LOG").map(Into::into),
                },
                Err(_) => Cluster::start(),
            };
            // The credentials every test hands tether through its kubeconfig.
            for kc in std::iter::once(&cluster.kubeconfig).chain(&cluster.user_kubeconfig) {
                register_kubeconfig_credentials(kc);
            }
            cluster
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

/// Registers a kubeconfig's tokens and client keys as secrets ([`crate::secrets`]).
pub fn register_kubeconfig_credentials(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let line = line.trim();
        for field in ["token:", "client-key-data:", "password:"] {
            if let Some(v) = line.strip_prefix(field) {
                let v = v.trim().trim_matches('"');
                if v.len() >= 6 {
                    crate::secret(v);
                }
            }
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

/// A second kube-apiserver over the shared cluster's etcd, owned by one test: it can be restarted (every
/// watch on it is dropped) without disturbing the tests that use the shared one. Stopped on drop.
#[derive(Debug)]
pub struct ApiServer {
    args: Vec<String>,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    /// Kubeconfig of an admin, pointing at this server.
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts a private API server with the shared one's flags (its port and audit log aside). Needs a
    /// control plane started by `scripts/cluster.sh` (its `procs` file names the shared server's pid).
    pub fn private_api_server(&self) -> ApiServer {
        let plane = self
            .kubeconfig
            .parent()
            .expect("the kubeconfig is in the control plane's directory");
        let procs = std::fs::read_to_string(plane.join("procs"))
            .expect("a control plane started by scripts/cluster.sh (its procs file)");
        let pid = procs
            .lines()
            .find_map(|l| l.strip_suffix(" kube-apiserver"))
            .expect("kube-apiserver in the procs file");
        let cmdline =
            std::fs::read(format!("/proc/{pid}/cmdline")).expect("the API server's command line");
        let mut args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut old_port = String::new();
        for i in 0..args.len().saturating_sub(1) {
            match args[i].as_str() {
                "--secure-port" => {
                    old_port = std::mem::replace(&mut args[i + 1], port.to_string());
                }
                "--audit-log-path" => {
                    args[i + 1] = dir.path().join("audit.log").display().to_string();
                }
                _ => {}
            }
        }
        assert!(!old_port.is_empty(), "no --secure-port in {args:?}");
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        std::fs::write(
            &kubeconfig,
            text.replace(
                &format!("127.0.0.1:{old_port}"),
                &format!("127.0.0.1:{port}"),
            ),
        )
        .unwrap();
        let mut server = ApiServer {
            args,
            child: None,
            dir,
            kubeconfig,
        };
        server.start();
        server
    }
}

impl ApiServer {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("kube-apiserver.log"))
            .unwrap();
        let child = Command::new(&self.args[0])
            .args(&self.args[1..])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start the private kube-apiserver");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let ok = Command::new(crate::tool("kubectl"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["get", "--raw", "/readyz"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the private API server is not ready after 90 s:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..100 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, as with a wedged server.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status();
        }
    }

    /// Starts it again after [`ApiServer::stop`], on the same port, and waits until it is ready.
    pub fn start_again(&mut self) {
        self.start();
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kube-apiserver.log")).unwrap_or_default()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- private kube-apiserver log (last 40 lines) ---\n{tail}");
        }
        self.stop();
    }
}
