//! Notifications: a broken commit is reported once however often the sync retries, naming the file and the
//! object, and its fix once as recovered; the signature verifies with openssl.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::{call, start};
use crate::automation::Env;
use crate::support::{namespace as ns, openssl_hmac_hex, wait_for};

/// One request a receiver got: its headers (lower-case names) and body.
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// A webhook receiver on loopback that answers 200 to everything and keeps what it got.
fn receiver() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn);
            let mut headers = Vec::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line); // request line
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            keep.lock()
                .unwrap()
                .push((headers, String::from_utf8_lossy(&body).into_owned()));
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn a_broken_commit_is_reported_once_naming_file_and_object_and_its_fix_once() {
    let e = Env::new("notify");
    let n = e.w.n.clone();
    let cm = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {n}\ndata:\n  v: \"1\"\n")
    };
    e.w.repo
        .write(&[("ns.yaml", &ns(&n)), ("good.yaml", &cm("good"))]);
    e.w.repo.commit("first");
    let (url, got) = receiver();
    let key = e.w.cache.path().join("notify-key");
    std::fs::write(&key, format!("{}\n", tether_testenv::secret("n0tify"))).unwrap();
    let agent = start(
        &e,
        &[
            "--registry-disable-scanning",
            "--notify-url",
            &url,
            "--notify-secret-file",
            key.to_str().unwrap(),
        ],
    );

    e.w.repo
        .write(&[("apps/bad.yaml", &format!("# a comment\n{}", cm("Bad_Name")))]);
    e.w.repo.commit("broken");
    // The sync fails, and fails again the same way: one notification, not one per attempt.
    for _ in 0..2 {
        let out = call(&e, &agent, &["sync"]);
        assert!(!out.0.status.success(), "{}", out.stdout());
    }
    wait_for("the failure notification", Duration::from_secs(10), || {
        !got.lock().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        let (headers, body) = &got[0];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["event"], "sync_failed", "{v}");
        assert!(
            v["objects"][0]["at"]
                .as_str()
                .unwrap_or_default()
                .starts_with("apps/bad.yaml:"),
            "{v}"
        );
        assert!(
            v["objects"][0]["object"]
                .as_str()
                .unwrap_or_default()
                .contains("Bad_Name"),
            "{v}"
        );
        let sig = headers
            .iter()
            .find(|(k, _)| k == "x-tether-signature")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert_eq!(sig, format!("sha256={}", openssl_hmac_hex("n0tify", body)));
    }

    e.w.repo.remove("apps/bad.yaml");
    e.w.repo.commit("fixed");
    call(&e, &agent, &["sync"]).out();
    wait_for("the recovery notification", Duration::from_secs(10), || {
        got.lock().unwrap().len() >= 2
    });
    std::thread::sleep(Duration::from_secs(1));
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    let v: serde_json::Value = serde_json::from_str(&got[1].1).unwrap();
    assert_eq!(v["event"], "sync_recovered", "{v}");
}

/// A receiver that accepts connections and never answers, holding them open; counts what it accepted.
fn black_hole() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(conn);
        }
    });
    (url, accepted)
}

#[test]
fn a_receiver_that_hangs_or_is_down_neither_holds_up_nor_fails_a_sync() {
    let e = Env::new("notify-down");
    let n = e.w.n.clone();
    let cm = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {n}\n")
    };
    e.w.repo
        .write(&[("ns.yaml", &ns(&n)), ("good.yaml", &cm("good"))]);
    e.w.repo.commit("first");
    let (hanging, accepted) = black_hole();
    // Nothing listens there: every attempt is refused.
    let down = format!("http://{}/hook", crate::support::free_addr());
    let agent = start(
        &e,
        &[
            "--registry-disable-scanning",
            "--notify-url",
            &hanging,
            "--notify-url",
            &down,
        ],
    );

    e.w.repo.write(&[("bad.yaml", &cm("Bad_Name"))]);
    e.w.repo.commit("broken");
    let out = call(&e, &agent, &["sync"]);
    assert!(!out.0.status.success(), "{}", out.stdout());
    assert!(out.stderr().contains("Bad_Name"), "{}", out.stderr());
    wait_for(
        "the hanging receiver to be sent the failure",
        Duration::from_secs(20),
        || accepted.load(std::sync::atomic::Ordering::SeqCst) > 0,
    );

    // The failure notification is still unanswered (it waits out its 10 s timeout and retries); the
    // fixed commit is synced all the same, and its recovery notification waits in that receiver's queue.
    e.w.repo.remove("bad.yaml");
    e.w.repo.commit("fixed");
    let synced = call(&e, &agent, &["sync"]).out();
    assert!(synced.contains("synced"), "{synced}");
    // Had the loop waited for that delivery, its 10 s timeout would have run out and its retry opened a
    // second connection by now.
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the sync waited for the hanging receiver"
    );
    assert!(
        e.w.get(&["-n", &n, "configmap/good"]).is_some(),
        "the good object is gone"
    );

    // The receiver that is down: three retries, then counted as failed, with the receiver named in the log.
    wait_for(
        "the undeliverable notification to be counted",
        Duration::from_secs(60),
        || {
            crate::support::http_get(&agent.metrics, "/metrics")
                .lines()
                .any(|l| {
                    l.starts_with("tether_notifications_total{outcome=\"failed\"} ")
                        && !l.ends_with(" 0")
                })
        },
    );
    assert!(
        agent
            .daemon
            .log()
            .contains("notification not delivered after retries"),
        "{}",
        agent.daemon.log()
    );
}
