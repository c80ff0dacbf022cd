//! The long-running loop: new commits land within a poll interval.

use std::time::{Duration, Instant};

use crate::support::World;

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

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

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
