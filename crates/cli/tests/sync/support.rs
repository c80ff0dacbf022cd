//! Running the tether binary against the shared test cluster.

use std::process::{Child, Command, Output, Stdio};

use tether_testenv::{Cluster, GitRepo};

/// One test's world: the cluster, a repository, and tether's cache directory.
pub struct World {
    pub cluster: &'static Cluster,
    pub repo: GitRepo,
    pub cache: tempfile::TempDir,
    /// Unique prefix for every name this test creates.
    pub n: String,
    /// [`World::plant_bystanders`] was called.
    planted: std::sync::atomic::AtomicBool,
}

impl World {
    pub fn new(prefix: &str) -> Self {
        World {
            cluster: Cluster::shared(),
            repo: GitRepo::new(),
            cache: tempfile::tempdir().unwrap(),
            n: tether_testenv::unique_name(prefix),
            planted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// `tether daemon --once` with the given source flags.
    pub fn once(&self, source: &[&str]) -> Run {
        let mut args = vec!["daemon", "--once"];
        args.extend_from_slice(source);
        self.tether(&args)
    }

    /// `tether daemon --once --git-url file://...` plus `extra`.
    pub fn once_file(&self, extra: &[&str]) -> Run {
        let url = self.repo.file_url();
        let mut args = vec!["--git-url", &url];
        args.extend_from_slice(extra);
        self.once(&args)
    }

    pub fn tether(&self, args: &[&str]) -> Run {
        Run::of(self.command(args).output().expect("run tether"))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
        cmd.args(args);
        // Each test is its own sync (and so has its own inventory) unless it says otherwise.
        let daemon = matches!(args.first(), Some(&"daemon" | &"update-images"));
        let given = |flag: &str| {
            args.iter()
                .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
        };
        if daemon && !given("--sync-name") {
            cmd.args(["--sync-name", &self.n]);
        }
        // A long-running daemon serves its API on a port of its own (tests read it from the log).
        if daemon && !given("--once") && !given("--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        // Every command that reads the repository itself keeps its clone in this test's cache (those that
        // call the agent have no clone).
        if (daemon || args.contains(&"--git-url") || matches!(args.first(), Some(&"migrate")))
            && !given("--cache-dir")
        {
            cmd.arg("--cache-dir").arg(self.cache.path());
        }
        cmd.env("KUBECONFIG", &self.cluster.kubeconfig)
            .env_remove("POD_NAMESPACE")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Starts a long-running `tether` (the daemon) with `args`; it is killed when the guard drops, and its log
    /// is printed if the test is failing.
    pub fn spawn(&self, args: &[&str]) -> Daemon {
        Daemon::spawn(self.command(args))
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        tether_testenv::run(self.cluster.kubectl().args(args))
    }

    /// `kubectl get -o json` of one object, or None when it does not exist.
    pub fn get(&self, args: &[&str]) -> Option<serde_json::Value> {
        let out = self
            .cluster
            .kubectl()
            .args(["get", "-o", "json", "--show-managed-fields"])
            .args(args)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }
}

/// Where fault tests record what they survived; `scripts/test.sh` clears it first and tallies it at the end
/// (docs/reliability.md quotes the tally of the last full run).
pub const FAULT_TALLY: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/fault-tally");

/// How the cluster compares with the repository's head for one sync name.
#[derive(Debug, Default)]
pub struct Convergence {
    /// Objects Git declares that are not live (lost, or deleted wrongfully).
    pub lost: Vec<String>,
    /// Live objects carrying the sync's label that Git no longer declares (orphaned).
    pub orphaned: Vec<String>,
    /// Objects Git declares.
    pub declared: usize,
    /// Bystanders planted, and those deleted wrongfully (`None`: the test planted none).
    pub bystanders: Option<(usize, Vec<String>)>,
}

/// Every kind the test server can list, as `kubectl get` takes them (Events left out: never labelled).
fn listable_kinds(cluster: &Cluster) -> &'static str {
    static KINDS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KINDS.get_or_init(|| {
        let names = tether_testenv::run(cluster.kubectl().args([
            "api-resources",
            "--verbs=list,delete",
            "-o",
            "name",
        ]));
        names
            .lines()
            .filter(|k| !k.is_empty() && !k.starts_with("events"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// `group/kind/namespace/name` of an object as written (no namespace: `-`).
fn key(object: &serde_json::Value) -> (String, Option<String>) {
    let id = id_of(object);
    (
        format!("{}/{}/{}", id.group, id.kind, id.name),
        id.namespace,
    )
}

/// The id of an object, as tether's plan would make it.
fn id_of(object: &serde_json::Value) -> tether_core::ObjectId {
    let ns = object["metadata"]["namespace"]
        .as_str()
        .filter(|s| !s.is_empty());
    tether_core::ObjectId::new(
        object["apiVersion"].as_str().unwrap_or_default(),
        object["kind"].as_str().unwrap_or_default(),
        ns,
        object["metadata"]["name"].as_str().unwrap_or_default(),
    )
}

/// True when `object` carries the owner mark sync `sync` gives it: tether writes the label and the mark in one
/// apply, so an object with the label but without its mark was not made by tether (a label copied by hand).
fn owned_by(sync: &str, object: &serde_json::Value) -> bool {
    object["metadata"]["annotations"][tether_plan::OWNER_ANNOTATION].as_str()
        == Some(tether_plan::owner_mark(sync, &id_of(object)).as_str())
}

/// The objects [`World::plant_bystanders`] makes beside a fault test's own, in namespace `{n}-bystanders`:
/// (name, labels, annotations) of ConfigMaps tether must never delete, whatever fault a test injects.
fn bystanders(n: &str) -> [(&'static str, String, String); 3] {
    let other = format!("{n}-other");
    let other_id = tether_core::ObjectId::new(
        "v1",
        "ConfigMap",
        Some(&format!("{n}-bystanders")),
        "other-sync",
    );
    [
        // Made by hand or another tool: no label at all.
        ("unlabelled", String::new(), String::new()),
        // Another sync name's object, with its label and owner mark.
        (
            "other-sync",
            format!("{}: {other}", tether_plan::SYNC_LABEL),
            format!(
                "{}: {}",
                tether_plan::OWNER_ANNOTATION,
                tether_plan::owner_mark(&other, &other_id)
            ),
        ),
        // This sync's label copied onto an object by hand, without the owner mark.
        (
            "look-alike",
            format!("{}: {n}", tether_plan::SYNC_LABEL),
            String::new(),
        ),
    ]
}

impl World {
    /// Compares what sync `sync` owns in the cluster (by label, every listable kind) with what the head of
    /// the test's repository declares (rendered by tether's own renderer). Objects being deleted count as
    /// gone.
    pub fn convergence(&self, sync: &str) -> Convergence {
        let declared: Vec<(String, Option<String>)> = tether_render::render(&self.repo.work, &[])
            .expect("the head renders")
            .iter()
            .map(|r| key(&r.object))
            .collect();
        let out = self
            .cluster
            .kubectl()
            .args([
                "get",
                listable_kinds(self.cluster),
                "-A",
                "-o",
                "json",
                "-l",
            ])
            .arg(format!("tether.dev/sync={sync}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl get: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let live: Vec<(String, Option<String>)> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["metadata"]["deletionTimestamp"].is_null() && owned_by(sync, o))
            .map(key)
            .collect();
        // A manifest without a namespace matches its object in whichever namespace it was defaulted to.
        let matches = |(dk, dns): &(String, Option<String>),
                       (lk, lns): &(String, Option<String>)| {
            dk == lk && (dns.is_none() || dns == lns)
        };
        let show =
            |(k, ns): &(String, Option<String>)| format!("{k} in {}", ns.as_deref().unwrap_or("-"));
        Convergence {
            lost: declared
                .iter()
                .filter(|d| !live.iter().any(|l| matches(d, l)))
                .map(show)
                .collect(),
            orphaned: live
                .iter()
                .filter(|l| !declared.iter().any(|d| matches(d, l)))
                .map(show)
                .collect(),
            declared: declared.len(),
            bystanders: self.bystanders_deleted(),
        }
    }

    /// Makes the objects of [`bystanders`] (and their namespace). Fault tests call it before their first
    /// fault; [`World::survived`] fails if any of them is gone or being deleted.
    pub fn plant_bystanders(&self) {
        let ns = format!("{}-bystanders", self.n);
        let mut yaml = namespace(&ns);
        for (name, labels, annotations) in bystanders(&self.n) {
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n  \
                 labels: {{{labels}}}\n  annotations: {{{annotations}}}\ndata:\n  owner: not tether\n"
            ));
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), yaml).unwrap();
        self.kubectl(&["apply", "-f", file.path().to_str().unwrap()]);
        self.planted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The bystanders that are gone or being deleted, and how many were planted (`None`: none planted).
    fn bystanders_deleted(&self) -> Option<(usize, Vec<String>)> {
        if !self.planted.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let ns = format!("{}-bystanders", self.n);
        let all = bystanders(&self.n);
        let gone = all
            .iter()
            .filter(|(name, _, _)| {
                self.get(&["-n", &ns, "configmap", name])
                    .is_none_or(|o| !o["metadata"]["deletionTimestamp"].is_null())
            })
            .map(|(name, _, _)| format!("{ns}:configmap/{name}"))
            .collect();
        Some((all.len(), gone))
    }

    /// Asserts that, after `faults` injected faults, this test's sync owns exactly what Git declares and every
    /// bystander is still there, and records the case for the tally ([`FAULT_TALLY`]).
    pub fn survived(&self, case: &str, faults: usize) {
        let c = self.convergence(&self.n);
        let (planted, deleted) = c
            .bystanders
            .clone()
            .unwrap_or_else(|| panic!("{case}: plant_bystanders() before the first fault"));
        assert!(
            c.lost.is_empty() && c.orphaned.is_empty() && deleted.is_empty(),
            "{case}: lost {:?}, orphaned {:?}, bystanders deleted {deleted:?}",
            c.lost,
            c.orphaned
        );
        std::fs::create_dir_all(FAULT_TALLY).unwrap();
        let line = format!(
            "{case}\t{faults}\t{}\t{}\t{}\t{planted}\t{}\n",
            c.declared,
            c.lost.len(),
            c.orphaned.len(),
            deleted.len()
        );
        std::fs::write(format!("{FAULT_TALLY}/{}.tsv", self.n), line).unwrap();
    }
}

/// A running daemon, stopped on drop.
pub struct Daemon {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Daemon {
    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Starts `cmd` with its log captured.
    pub fn spawn(mut cmd: Command) -> Daemon {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }
}

impl Daemon {
    /// Waits for it to exit on its own, up to `limit`; `None` when it is still running.
    pub fn wait(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stops the daemon with SIGTERM, as Kubernetes stops a pod, and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not exit on SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        if std::thread::panicking() {
            eprintln!("--- tether daemon log ---\n{log}--- end of tether daemon log ---");
        } else {
            // Every daemon's whole log, whatever the test was about.
            tether_testenv::assert_absent("the daemon's log", &log);
        }
    }
}

/// A finished tether run.
pub struct Run(pub Output);

impl Run {
    /// A finished run, once its output is checked for every secret the tests gave tether.
    pub fn of(out: Output) -> Run {
        tether_testenv::assert_absent("tether's stdout", &String::from_utf8_lossy(&out.stdout));
        tether_testenv::assert_absent("tether's stderr", &String::from_utf8_lossy(&out.stderr));
        Run(out)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts success and returns the summary line.
    pub fn ok(&self) -> String {
        assert!(
            self.0.status.success(),
            "tether failed:\n{}\n{}",
            self.stdout(),
            self.stderr()
        );
        let out = self.stdout();
        out.lines()
            .find(|l| l.starts_with("synced "))
            .unwrap_or_else(|| panic!("no summary in {out}"))
            .to_owned()
    }
    /// Asserts success and returns all of stdout.
    pub fn out(&self) -> String {
        assert!(
            self.0.status.success(),
            "tether failed:\n{}\n{}",
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }
    /// Asserts failure and returns tether's final error (everything after `tether: ` on stderr).
    pub fn failed(&self) -> String {
        assert!(
            !self.0.status.success(),
            "tether should have failed:\n{}",
            self.stdout()
        );
        let err = self.stderr();
        let at = err
            .rfind("tether: ")
            .unwrap_or_else(|| panic!("no error line in {err}"));
        err[at..].to_owned()
    }
}

/// A realistic app in namespace `n`: a CRD and one of its custom resources, a Deployment, a Service and a
/// ConfigMap, as a Flux v1 repository would hold them.
pub fn app(n: &str) -> Vec<(String, String)> {
    let files = [
        (
            "app/namespace.yaml",
            r#"apiVersion: v1
kind: Namespace
metadata:
  name: NS
"#,
        ),
        (
            "app/crd.yaml",
            r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.NS.example.com
spec:
  group: NS.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#,
        ),
        (
            "app/widget.yaml",
            r#"apiVersion: NS.example.com/v1
kind: Widget
metadata:
  name: gizmo
  namespace: NS
spec:
  size: 3
"#,
        ),
        (
            "app/deployment.yaml",
            r#"# The web app; Flux v1 annotations are kept as they are.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: NS
  annotations:
    fluxcd.io/automated: "true"
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
"#,
        ),
        (
            "app/service.yaml",
            r#"apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: NS
spec:
  selector: {app: web}
  ports:
  - port: 80
"#,
        ),
        (
            "app/config.yaml",
            r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: NS
data:
  color: blue
"#,
        ),
    ];
    files
        .iter()
        .map(|(p, c)| (p.to_string(), c.replace("NS", n)))
        .collect()
}

/// A Namespace manifest.
pub fn namespace(n: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n")
}

pub fn write(repo: &GitRepo, files: &[(String, String)]) {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    repo.write(&refs);
}

/// Waits until the agent whose admin endpoints listen on `metrics` reports ready (its first sync succeeded).
pub fn wait_ready(metrics: &str, timeout: std::time::Duration) {
    wait_for("the agent's first sync", timeout, || {
        std::net::TcpStream::connect(metrics).is_ok()
            && http_get(metrics, "/readyz").starts_with("HTTP/1.1 200")
    });
}

/// Polls `f` every 200 ms until it holds; fails naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// One plain HTTP/1.1 GET; the whole answer, status line first.
pub fn http_get(addr: &str, path: &str) -> String {
    http(addr, "GET", path, None)
}

/// One plain HTTP/1.1 request with an optional bearer token; the whole answer, status line first.
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> String {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    http_with(addr, method, path, &headers, "")
}

/// One plain HTTP/1.1 request with headers and a body; the whole answer, status line first.
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Sends `partial`, a request whose body never comes, and returns the status line answered meanwhile (or
/// fails the test after 5 s without one) with the connection, still open.
pub fn status_before_body(addr: &str, partial: &[u8]) -> (String, std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(partial).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .expect("no answer before the body was sent");
    (String::from_utf8_lossy(&head).into_owned(), s)
}

/// A loopback address nothing listens on right now, for a daemon's listener.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

/// The hex HMAC-SHA256 of `body` under `key`, computed by openssl: an implementation independent of
/// tether's, for checking its signatures and making the ones it checks.
pub fn openssl_hmac_hex(key: &str, body: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key, "-hex"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl (scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    out.trim().rsplit(' ').next().unwrap().to_owned()
}
