//! Test support for tether: a real kube-apiserver + etcd + kube-controller-manager on loopback, git
//! repositories served over `file://` and over SSH by a loopback `sshd` with read-write and read-only deploy
//! keys. Everything is started by the project's own scripts and stopped when the test process ends.
//!
//! This crate is for tests only; it panics with a clear message when the environment is not set up
//! (run `scripts/setup.sh`), because a test that silently skips its server is worse than a failing one.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod cluster;
pub mod git;
pub mod registry;
pub mod secrets;
pub mod ssh;

pub use cluster::{AuditEvent, AuditLog, Cluster, TestNamespace};
pub use git::GitRepo;
pub use registry::{Pusher, TestImage, TestRegistry};
pub use secrets::{assert_absent, secret, secret_key_file};
pub use ssh::SshServer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The repository root (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A short name unique to this process and call, usable as a Kubernetes name (lowercase, digits, `-`).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}{n}", (std::process::id() ^ nanos) & 0xfffff)
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The path of a test-ground tool that `scripts/setup.sh` builds and caches from its pinned module in
/// `testenv/<module>/`: `kustomize`, `helm`, `kwok`, `etcd`, or `kubectl` and the control-plane binaries
/// (module `kube`).
pub fn tool(name: &str) -> PathBuf {
    let module = match name {
        "kubectl" | "kube-apiserver" | "kube-controller-manager" | "kube-scheduler" => "kube",
        other => other,
    };
    let dir = run(std::process::Command::new("bash")
        .arg(repo_root().join("scripts/build-tools.sh"))
        .args(["bin", module]));
    PathBuf::from(dir.trim()).join(name)
}

/// A temporary directory holding `files` (relative path, content); parent directories are created.
pub fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("a file path has a parent"))
            .expect("create dirs");
        std::fs::write(p, content).expect("write file");
    }
    dir
}

/// Writes an executable script (mode 0755), e.g. a stand-in for a tool that a test wants to watch.
pub fn write_executable(path: &std::path::Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, script).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
