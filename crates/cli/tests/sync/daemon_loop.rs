//! The long-running loop: new commits land within a poll interval.

use std::time::{Duration, Instant};

use crate::support::{http_get, wait_for, World};

#[test]
fn a_new_commit_is_applied_within_one_poll_interval() {
    let w = World::new("loop");
    let n = w.n.clone();
    let cm = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {n}\ndata:\n  v: \"{v}\"\n")
    };
    w.repo.write(&[
        ("ns.yaml", &crate::support::namespace(&n)),
        ("cm.yaml", &cm("1")),
    ]);
    w.repo.commit("first");
    let url = w.repo.file_url();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = format!("127.0.0.1:{port}");
    let _daemon = w.spawn(&[
        "daemon",
        "--git-url",
        &url,
        "--git-poll-interval",
        "1s",
        "--sync-interval",
        "1h",
        "--listen-metrics",
        &admin,
    ]);
    let value = || {
        w.get(&["-n", &n, "configmap/c"])
            .map(|c| c["data"]["v"].as_str().unwrap_or("").to_owned())
    };
    wait_for("the first sync", Duration::from_secs(30), || {
        value().as_deref() == Some("1")
    });
    w.repo.write(&[("cm.yaml", &cm("2"))]);
    let second = w.repo.commit("second");
    wait_for("the new commit", Duration::from_secs(10), || {
        value().as_deref() == Some("2")
    });
    wait_for("the tag", Duration::from_secs(5), || {
        w.repo
            .rev_parse("refs/tags/tether-sync^{commit}")
            .as_deref()
            == Some(second.as_str())
    });
    // The admin endpoints report it: ready, and a successful sync counted.
    assert!(http_get(&admin, "/readyz").starts_with("HTTP/1.1 200"));
    let metrics = http_get(&admin, "/metrics");
    assert!(
        metrics.contains(r#"tether_syncs_total{result="success",reason=""}"#),
        "{metrics}"
    );
}

/// An "API server" that accepts connections and never answers: what a SIGSTOPped or wedged server looks
/// like to a client. Returns a kubeconfig pointing at it; the listener lives as long as the returned guard.
fn stalled_api_server(dir: &std::path::Path) -> (std::path::PathBuf, std::net::TcpListener) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in held.incoming().flatten() {
            open.push(conn); // held open, never read from or written to
        }
    });
    let kubeconfig = dir.join("stalled.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: not-a-secret\ncontexts:\n- name: c\n  context: {{cluster: s, user: u, namespace: default}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    (kubeconfig, listener)
}

/// Waits for `child` to exit within `limit`; kills it and fails otherwise. Returns its exit status.
fn exits_within(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stalled_api_server_fails_a_sync_instead_of_hanging_and_sigterm_ends_one_at_once() {
    let w = World::new("stall");
    w.repo
        .write(&[("ns.yaml", &crate::support::namespace(&w.n))]);
    w.repo.commit("one namespace");
    let url = w.repo.file_url();
    let dir = tempfile::tempdir().unwrap();
    let (kubeconfig, _server) = stalled_api_server(dir.path());

    // --once: every request has a deadline, so the sync fails and says why.
    let mut once = w
        .command(&["daemon", "--once", "--git-url", &url, "--k8s-timeout", "2s"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = exits_within(&mut once, Duration::from_secs(90), "tether daemon --once");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut once.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("did not answer within --k8s-timeout"), "{err}");

    // The whole sync has a deadline too, even when each request would wait long.
    let mut bounded = w
        .command(&[
            "daemon",
            "--once",
            "--git-url",
            &url,
            "--k8s-timeout",
            "10m",
            "--sync-timeout",
            "3s",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = exits_within(
        &mut bounded,
        Duration::from_secs(90),
        "tether daemon --once --sync-timeout",
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut bounded.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        !status.success() && err.contains("did not finish within 3s"),
        "{err}"
    );
    assert!(err.contains("--sync-timeout"), "no advice in {err}");

    // The loop, in a sync that waits on the server: SIGTERM ends it without waiting for the sync.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = w
        .command(&[
            "daemon",
            "--git-url",
            &url,
            "--k8s-timeout",
            "10m",
            "--sync-timeout",
            "10m",
            "--listen-metrics",
            &format!("127.0.0.1:{port}"),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon exited early"
    );
    tether_testenv::run(
        std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]),
    );
    let status = exits_within(
        &mut daemon,
        Duration::from_secs(20),
        "tether daemon after SIGTERM",
    );
    assert!(status.success(), "{status}");
    assert!(
        w.repo.rev_parse("refs/tags/tether-sync^{commit}").is_none(),
        "the marker moved for a sync that never finished"
    );
}

/// The real API server frozen (SIGSTOP) while a sync is writing: every request has a deadline, so the sync
/// fails in bounded time without moving the marker; once the server is back the next sync converges, and
/// objects the stopped sync wrote are collected like any other when they leave Git.
#[test]
fn an_api_server_paused_mid_sync_fails_it_in_bounded_time_and_nothing_is_orphaned() {
    let w = World::new("paused");
    w.plant_bystanders();
    let n = w.n.clone();
    let cms = |count: usize| {
        (0..count)
            .map(|i| {
                format!(
                    "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n  namespace: {n}\ndata:\n  v: \"{i}\"\n"
                )
            })
            .collect::<String>()
    };
    w.repo.write(&[
        ("ns.yaml", &crate::support::namespace(&n)),
        ("cms.yaml", &cms(1500)),
    ]);
    let first = w.repo.commit("1500 objects");
    let api = w.cluster.private_api_server();
    let url = w.repo.file_url();
    let once = |api: &tether_testenv::cluster::ApiServer| {
        let mut cmd = w.command(&[
            "daemon",
            "--once",
            "--git-url",
            &url,
            "--k8s-timeout",
            "3s",
            "--sync-timeout",
            "60s",
            "--sync-garbage-collection",
        ]);
        cmd.env("KUBECONFIG", &api.kubeconfig);
        crate::support::Daemon::spawn(cmd)
    };
    let mut d = once(&api);
    let written = || {
        w.kubectl(&["-n", &n, "get", "configmaps", "-o", "name"])
            .lines()
            .filter(|l| l.starts_with("configmap/c"))
            .count()
    };
    wait_for("the sync's first writes", Duration::from_secs(60), || {
        w.get(&["namespace", &n]).is_some()
    });
    api.pause();
    let paused = Instant::now();
    let status = d.wait(Duration::from_secs(60));
    let took = paused.elapsed();
    api.resume();
    let status =
        status.unwrap_or_else(|| panic!("still running 60 s after the pause\n{}", d.log()));
    assert!(!status.success(), "{}", d.log());
    assert!(
        took < Duration::from_secs(30),
        "a 3 s request timeout ends the sync soon after the pause, not after {took:?}\n{}",
        d.log()
    );
    assert!(
        w.repo.rev_parse("refs/tags/tether-sync^{commit}").is_none(),
        "the marker moved for a sync that did not finish"
    );
    let partial = written();

    // The server is back: the next sync converges.
    let mut again = once(&api);
    let status = again
        .wait(Duration::from_secs(180))
        .expect("the second sync finished");
    assert!(status.success(), "{}", again.log());
    assert_eq!(
        written(),
        1500,
        "after {partial} written by the paused sync"
    );
    assert_eq!(
        w.repo
            .rev_parse("refs/tags/tether-sync^{commit}")
            .as_deref(),
        Some(first.as_str())
    );

    // Everything leaves Git but the namespace: all of it is collected, what the paused sync wrote too.
    w.repo.write(&[("cms.yaml", &cms(0))]);
    w.repo.commit("no objects but the namespace");
    let mut last = once(&api);
    let status = last
        .wait(Duration::from_secs(180))
        .expect("the collecting sync finished");
    assert!(status.success(), "{}", last.log());
    assert_eq!(written(), 0, "nothing orphaned\n{}", last.log());
    w.survived(
        "the API server frozen (SIGSTOP) mid-sync of 1,500 objects",
        1,
    );
    drop(api);
}
