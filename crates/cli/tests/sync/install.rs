//! `tether install` is proven where it matters: its output passes the API server's dry-run and applies, and
//! the daemon, run as the Deployment runs it (its own arguments, the downward-API namespace) with exactly the
//! installed ServiceAccount's token, syncs a repository and collects what leaves it.

use std::path::Path;
use std::process::Command;

use crate::support::{namespace, Run, World};

/// Removes what one install created, also when an assertion failed: its cluster-scoped objects (found by
/// the instance label every install object carries) and the namespaces.
struct Installed<'a> {
    w: &'a World,
    instance: String,
    namespaces: Vec<String>,
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let selector = format!(
            "app.kubernetes.io/name=tether,app.kubernetes.io/instance={}",
            self.instance
        );
        let _ = self
            .w
            .cluster
            .kubectl()
            .args([
                "delete",
                "clusterrole,clusterrolebinding",
                "-l",
                &selector,
                "--ignore-not-found",
            ])
            .output();
        for ns in &self.namespaces {
            let _ = self
                .w
                .cluster
                .kubectl()
                .args([
                    "delete",
                    "namespace",
                    ns,
                    "--wait=false",
                    "--ignore-not-found",
                ])
                .output();
        }
    }
}

fn cm(name: &str, ns: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n  k: v\n")
}

/// `kubectl auth can-i` as tether's ServiceAccount: "yes" or "no".
fn can_i(w: &World, ns: &str, args: &[&str]) -> String {
    let out = w
        .cluster
        .kubectl()
        .args([
            "auth",
            "can-i",
            "--as",
            &format!("system:serviceaccount:{ns}:tether"),
        ])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A kubeconfig for the admin's server (and CA) that authenticates with `token` only.
pub(crate) fn token_kubeconfig(w: &World, token: &str, path: &Path) {
    tether_testenv::secret(token);
    let admin: serde_json::Value = serde_json::from_str(&w.kubectl(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "--flatten",
        "-o",
        "json",
    ]))
    .unwrap();
    let cluster = admin["clusters"][0]["cluster"].clone();
    assert!(cluster["server"].is_string(), "{admin}");
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "tether", "user": {"token": token}}],
        "contexts": [{"name": "tether", "context": {"cluster": "test", "user": "tether"}}],
        "current-context": "tether",
    });
    std::fs::write(path, kubeconfig.to_string()).unwrap();
}

fn install_sync_and_collect(prefix: &str, namespace_scope: bool) {
    let w = World::new(prefix);
    let ns = w.n.clone();
    let app = format!("{ns}-app");
    let _installed = Installed {
        w: &w,
        instance: ns.clone(),
        namespaces: vec![ns.clone(), app.clone()],
    };

    let mut files = vec![("app/a.yaml", cm("a", &app)), ("app/b.yaml", cm("b", &app))];
    if namespace_scope {
        // A namespace-scoped agent cannot create namespaces: the Roles go into one that exists.
        w.kubectl(&["create", "namespace", &app]);
    } else {
        files.push(("app/namespace.yaml", namespace(&app)));
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    w.repo.write(&refs);
    w.repo.commit("two config maps");

    let dir = tempfile::tempdir().unwrap();
    let url = w.repo.file_url();
    let mut install = vec!["install", "--git-url", &url, "--namespace", &ns];
    if namespace_scope {
        install.extend(["--scope", "namespace", "--k8s-allow-namespace", &app]);
    }
    install.extend(["-o", dir.path().to_str().unwrap()]);
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(&install)
        .output()
        .unwrap();
    let printed = Run::of(out);
    assert!(printed.0.status.success(), "{}", printed.stderr());
    let written: Vec<String> = printed.stdout().lines().map(str::to_owned).collect();
    assert!(
        written[0].ends_with(&format!("/01-namespace-{ns}.yaml")),
        "{written:?}"
    );
    assert!(
        written.iter().all(|f| Path::new(f).is_file()),
        "{written:?}"
    );

    // A server-side dry-run cannot see a namespace the same dry-run would create, so the Namespace is
    // applied first, as `kubectl create namespace` would; then every object is validated, then applied.
    let dir_arg = dir.path().to_str().unwrap();
    w.kubectl(&["apply", "--server-side", "-f", &written[0]]);
    w.kubectl(&["apply", "--server-side", "--dry-run=server", "-f", dir_arg]);
    w.kubectl(&["apply", "--server-side", "-f", dir_arg]);

    // What RBAC now says about the ServiceAccount.
    assert_eq!(can_i(&w, &ns, &["create", "configmaps", "-n", &app]), "yes");
    assert_eq!(
        can_i(&w, &ns, &["create", "tokenreviews.authentication.k8s.io"]),
        "yes"
    );
    assert_eq!(can_i(&w, &ns, &["impersonate", "users"]), "no");
    assert_eq!(can_i(&w, &ns, &["escalate", "clusterroles"]), "no");
    assert_eq!(can_i(&w, &ns, &["get", "/metrics"]), "no");
    let elsewhere = if namespace_scope { "no" } else { "yes" };
    assert_eq!(
        can_i(&w, &ns, &["create", "configmaps", "-n", "default"]),
        elsewhere
    );

    // The daemon as the Deployment runs it: its args from the applied object, POD_NAMESPACE from the
    // downward API, the cache in the test's directory instead of the emptyDir.
    let deployment = w.get(&["-n", &ns, "deployment/tether"]).unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["env"][0]["name"], "POD_NAMESPACE");
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    let known_hosts = tempfile::NamedTempFile::new().unwrap();
    let mut args: Vec<String> = Vec::new();
    for a in container["args"].as_array().unwrap() {
        let a = a.as_str().unwrap();
        if a.starts_with("--cache-dir=") {
            continue; // `World::command` gives the test's cache
        }
        if a.starts_with("--git-known-hosts=") {
            args.push(format!(
                "--git-known-hosts={}",
                known_hosts.path().display()
            ));
        } else {
            args.push(a.to_owned());
        }
    }
    assert_eq!(args[0], "daemon");
    assert!(args.contains(&format!("--git-url={url}")), "{args:?}");
    assert_eq!(
        args.contains(&format!("--k8s-allow-namespace={app}")),
        namespace_scope,
        "{args:?}"
    );
    assert!(args.contains(&format!("--sync-name={ns}")), "{args:?}");
    let looping = args.clone();
    args.extend(["--once".into(), "--sync-garbage-collection".into()]);

    let token = w.kubectl(&["create", "token", "tether", "-n", &ns, "--duration", "1h"]);
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    token_kubeconfig(&w, token.trim(), kubeconfig.path());
    let daemon = || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Run::of(
            w.command(&args)
                .env("KUBECONFIG", kubeconfig.path())
                .env("POD_NAMESPACE", &ns)
                .output()
                .unwrap(),
        )
    };

    let first = daemon().ok();
    let created = if namespace_scope {
        "created=2"
    } else {
        "created=3"
    };
    assert!(first.contains(created), "{first}");
    assert!(w.get(&["-n", &app, "configmap/a"]).is_some());
    assert!(w.get(&["-n", &app, "configmap/b"]).is_some());
    // The inventory went into tether's namespace, through the Role there.
    let inventory = format!("configmap/{}-inventory", w.n);
    assert!(w.get(&["-n", &ns, &inventory]).is_some());

    w.repo.remove("app/b.yaml");
    w.repo.commit("drop b");
    let second = daemon().ok();
    assert!(second.contains("deleted=1"), "{second}");
    assert!(w.get(&["-n", &app, "configmap/b"]).is_none());
    assert!(w.get(&["-n", &app, "configmap/a"]).is_some());

    // Running as the agent, the ServiceAccount may check callers' tokens and permissions: `tether sync`
    // through the API (with the admin's token from the test kubeconfig) is authenticated and authorised.
    let api = crate::support::free_addr();
    let metrics = crate::support::free_addr();
    let mut looping: Vec<&str> = looping.iter().map(String::as_str).collect();
    looping.extend(["--listen", &api, "--listen-metrics", &metrics]);
    let mut agent = w.command(&looping);
    agent
        .env("KUBECONFIG", kubeconfig.path())
        .env("POD_NAMESPACE", &ns);
    let _agent = crate::support::Daemon::spawn(agent);
    crate::support::wait_for(
        "the agent's API",
        std::time::Duration::from_secs(30),
        || std::net::TcpStream::connect(&api).is_ok(),
    );
    let synced = w.tether(&["sync", "--url", &format!("http://{api}")]).out();
    assert!(synced.contains("synced revision="), "{synced}");
}

#[test]
fn install_with_cluster_scope_applies_and_its_service_account_syncs_and_collects() {
    install_sync_and_collect("inst-cl", false);
}

#[test]
fn install_with_namespace_scope_applies_and_its_service_account_syncs_and_collects_there_only() {
    install_sync_and_collect("inst-ns", true);
}
