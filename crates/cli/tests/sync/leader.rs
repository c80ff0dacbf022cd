//! Two replicas, one writer: with --leader-elect only the Lease holder syncs; when it is killed (-9) the
//! standby takes over within the lease duration and syncs the next commit; the audit log never shows both
//! writing.

use std::time::{Duration, Instant};

use crate::install::token_kubeconfig;
use crate::support::{free_addr, wait_for, Daemon, World};

/// A ServiceAccount in `ns` with every right there, and a kubeconfig with its token.
fn replica_identity(w: &World, ns: &str, name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    w.kubectl(&["-n", ns, "create", "serviceaccount", name]);
    w.kubectl(&[
        "-n",
        ns,
        "create",
        "rolebinding",
        &format!("{name}-admin"),
        "--clusterrole=cluster-admin",
        &format!("--serviceaccount={ns}:{name}"),
    ]);
    let token = w.kubectl(&["-n", ns, "create", "token", name, "--duration", "1h"]);
    let path = dir.join(format!("{name}.kubeconfig"));
    token_kubeconfig(w, token.trim(), &path);
    path
}

#[test]
fn the_standby_takes_over_when_the_leader_is_killed_and_there_are_never_two_writers() {
    let w = World::new("leader");
    let n = w.n.clone();
    w.kubectl(&["create", "namespace", &n]);
    let dir = tempfile::tempdir().unwrap();
    let k1 = replica_identity(&w, &n, "r1", dir.path());
    let k2 = replica_identity(&w, &n, "r2", dir.path());
    let cm = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {n}\ndata:\n  v: \"{v}\"\n")
    };
    w.repo.write(&[("cm.yaml", &cm("1"))]);
    w.repo.commit("first");
    let value = || {
        w.get(&["-n", &n, "configmap/c"])
            .map(|c| c["data"]["v"].as_str().unwrap_or("").to_owned())
    };
    // Empty until the first replica has made the Lease.
    let holder = || {
        let out = w
            .cluster
            .kubectl()
            .args(["-n", &n, "get", "lease", &format!("{n}-leader")])
            .args(["-o", "jsonpath={.spec.holderIdentity}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let audit = w.cluster.audit();
    let url = w.repo.file_url();
    let cache2 = tempfile::tempdir().unwrap();
    // Each replica's "own Pod" (simulated nodes run them): replicas label theirs with their role.
    for pod in ["a", "b", "c"] {
        w.kubectl(&[
            "-n",
            &n,
            "run",
            pod,
            "--image=registry.invalid/tether:test",
            "--restart=Never",
        ]);
    }
    let role = |pod: &str| {
        w.kubectl(&[
            "-n",
            &n,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.metadata.labels.tether\\.dev/role}",
        ])
    };
    let replica =
        |identity: &str, kubeconfig: &std::path::Path, cache: Option<&std::path::Path>| {
            let (api, metrics) = (free_addr(), free_addr());
            let mut args = vec![
                "daemon",
                "--git-url",
                &url,
                "--leader-elect",
                "--leader-election-lease-duration",
                "6s",
                "--leader-identity",
                identity,
                "--git-poll-interval",
                "1s",
                "--sync-interval",
                "1h",
                "--namespace",
                &n,
                "--k8s-allow-namespace",
                &n,
                "--registry-disable-scanning",
                "--listen",
                &api,
                "--listen-metrics",
                &metrics,
            ];
            let cache_arg = cache.map(|c| c.display().to_string());
            if let Some(c) = &cache_arg {
                args.extend(["--cache-dir", c]);
            }
            let mut cmd = w.command(&args);
            cmd.env("KUBECONFIG", kubeconfig).env("POD_NAME", identity);
            Daemon::spawn(cmd)
        };

    let first = replica("a", &k1, None);
    wait_for("a to lead", Duration::from_secs(30), || holder() == "a");
    wait_for("a's first sync", Duration::from_secs(30), || {
        value().as_deref() == Some("1")
    });
    let mut second = replica("b", &k2, Some(cache2.path()));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        holder(),
        "a",
        "the standby took the Lease from a live leader"
    );
    assert_eq!(
        (role("a").as_str(), role("b").as_str()),
        ("leader", "standby")
    );
    w.repo.write(&[("cm.yaml", &cm("2"))]);
    w.repo.commit("second");
    wait_for(
        "the leader to sync the second commit",
        Duration::from_secs(20),
        || value().as_deref() == Some("2"),
    );

    drop(first); // SIGKILL: no chance to hand over
    let killed = Instant::now();
    w.repo.write(&[("cm.yaml", &cm("3"))]);
    w.repo.commit("third");
    wait_for(
        "the standby to sync the next commit",
        Duration::from_secs(20),
        || value().as_deref() == Some("3"),
    );
    eprintln!(
        "leader killed to next commit applied: {:?}",
        killed.elapsed()
    );
    assert_eq!(holder(), "b");
    wait_for(
        "b to label its Pod the leader",
        Duration::from_secs(10),
        || role("b") == "leader",
    );

    // Writes by each replica's identity, in the order the API server logged them (Lease renewals, Events
    // and each replica labelling its own Pod aside): once b writes, a never does again, and before that only a wrote.
    let who = |u: &str| match u {
        u if u == format!("system:serviceaccount:{n}:r1") => Some("a"),
        u if u == format!("system:serviceaccount:{n}:r2") => Some("b"),
        _ => None,
    };
    let writers: Vec<&str> = audit
        .events()
        .into_iter()
        .filter(|e| {
            e.is_persisted_write() && !matches!(e.resource.as_str(), "leases" | "events" | "pods")
        })
        .filter_map(|e| who(&e.user))
        .collect();
    let first_b = writers
        .iter()
        .position(|w| *w == "b")
        .expect("b never wrote");
    assert!(
        first_b > 0 && writers[..first_b].iter().all(|w| *w == "a"),
        "{writers:?}"
    );
    assert!(
        writers[first_b..].iter().all(|w| *w == "b"),
        "two writers: {writers:?}"
    );

    // A leader stopped the way Kubernetes stops a pod (SIGTERM) gives the Lease up on its way out, so the
    // standby takes over at once rather than a lease duration later.
    let cache3 = tempfile::tempdir().unwrap();
    let _third = replica("c", &k2, Some(cache3.path()));
    wait_for("c to stand by", Duration::from_secs(10), || {
        role("c") == "standby"
    });
    assert!(second.terminate().success());
    assert_ne!(holder(), "b", "the stopped leader kept the Lease");
    wait_for("c to lead", Duration::from_secs(10), || holder() == "c");
}
