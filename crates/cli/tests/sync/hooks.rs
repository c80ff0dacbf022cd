//! Webhooks on the agent's API listener: a signed Git push syncs at once (the poll interval is an hour), a
//! wrongly signed one does nothing; a registry's push event starts a scan of that repository. Signatures
//! are made with `openssl`, so tether's HMAC is checked against an independent implementation.

use std::time::{Duration, Instant};

use crate::api::{deployment, start};
use crate::automation::Env;
use crate::support::{http_with, namespace as ns, openssl_hmac_hex, wait_for};

/// `sha256=<hex HMAC-SHA256 of body under secret>`, as GitHub signs, computed by openssl.
fn github_signature(secret: &str, body: &str) -> String {
    format!("sha256={}", openssl_hmac_hex(secret, body))
}

fn secret_file(e: &Env, secret: &str) -> String {
    let path = e.w.cache.path().join("webhook-secret");
    std::fs::write(&path, format!("{}\n", tether_testenv::secret(secret))).unwrap();
    path.display().to_string()
}

/// A test's world whose repository holds ConfigMap `c` with `v: "1"` in one commit; the function makes
/// its manifest for another value.
fn one_configmap(prefix: &str) -> (Env, impl Fn(&str) -> String) {
    let e = Env::new(prefix);
    let n = e.w.n.clone();
    let cm = move |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {n}\ndata:\n  v: \"{v}\"\n")
    };
    e.w.repo
        .write(&[("ns.yaml", &ns(&e.w.n)), ("cm.yaml", &cm("1"))]);
    e.w.repo.commit("first");
    (e, cm)
}

#[test]
fn a_signed_push_syncs_at_once_and_a_wrongly_signed_one_triggers_nothing() {
    let (e, cm) = one_configmap("hook-git");
    let n = e.w.n.clone();
    let secret = secret_file(&e, "s3cret");
    let agent = start(
        &e,
        &[
            "--webhook-secret-file",
            &secret,
            "--registry-disable-scanning",
        ],
    );
    let value = || {
        e.w.get(&["-n", &n, "configmap/c"])
            .map(|c| c["data"]["v"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(value().as_deref(), Some("1"));

    e.w.repo.write(&[("cm.yaml", &cm("2"))]);
    e.w.repo.commit("second");
    let body = format!(
        r#"{{"ref":"refs/heads/main","repository":{{"ssh_url":"{}"}}}}"#,
        e.ssh.url(&e.w.repo)
    );
    let post = |signature: &str| {
        http_with(
            &agent.api,
            "POST",
            "/hooks/git",
            &[
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", signature),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
    };
    let forged = post(&github_signature("not-the-secret", &body));
    assert!(forged.starts_with("HTTP/1.1 401"), "{forged}");
    // Senders with no signature trickling a body: each is refused at once, and none takes one of the
    // few places for hooks, so the real push below still gets through while they hang on.
    let trickling: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let (status, s) = crate::support::status_before_body(
                &agent.api,
                b"POST /hooks/git HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n\
                  Content-Length: 1000000\r\n\r\n{\"ref\":",
            );
            assert_eq!(status, "HTTP/1.1 401");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(value().as_deref(), Some("1"), "a forged webhook synced");

    // Another branch is acknowledged and ignored.
    let other = body.replace("refs/heads/main", "refs/heads/feature");
    let ignored = http_with(
        &agent.api,
        "POST",
        "/hooks/git",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &github_signature("s3cret", &other)),
        ],
        &other,
    );
    assert!(
        ignored.starts_with("HTTP/1.1 200") && ignored.contains("not a push to main"),
        "{ignored}"
    );

    let sent = Instant::now();
    let accepted = post(&github_signature("s3cret", &body));
    drop(trickling);
    assert!(accepted.starts_with("HTTP/1.1 202"), "{accepted}");
    wait_for("the pushed commit", Duration::from_secs(10), || {
        value().as_deref() == Some("2")
    });
    eprintln!("webhook to applied: {:?}", sent.elapsed());
}

#[test]
fn a_registry_push_event_scans_that_repository_and_the_update_is_deployed() {
    let e = Env::new("hook-reg");
    let n = e.w.n.clone();
    e.push("team/hooked", "1.0.0", "2024-01-01T00:00:00Z");
    let repo = e.reg.repo("team/hooked");
    e.w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        (
            "app.yaml",
            &deployment(
                &n,
                "app",
                "    fluxcd.io/automated: \"true\"\n",
                &format!("{repo}:1.0.0"),
                1,
            ),
        ),
    ]);
    e.w.repo.commit("first");
    let secret = secret_file(&e, "reg-secret");
    // Automation's own timer is an hour away: only the webhook can make it look now.
    let agent = start(
        &e,
        &[
            "--webhook-secret-file",
            &secret,
            "--automation-interval",
            "1h",
        ],
    );
    // The pass automation makes at start is over (it found nothing newer) before the new tag exists, so
    // only the webhook can find it.
    wait_for("the first automation pass", Duration::from_secs(30), || {
        crate::support::http_get(&agent.metrics, "/metrics")
            .contains(r#"tether_automation_passes_total{result="success",reason=""} 1"#)
    });
    e.push("team/hooked", "1.1.0", "2024-02-01T00:00:00Z");
    let (host, path) = repo.split_once('/').unwrap();
    let event = format!(
        r#"{{"events":[{{"action":"push","target":{{"repository":"{path}","tag":"1.1.0"}},"request":{{"host":"{host}"}}}}]}}"#
    );
    let wrong = http_with(
        &agent.api,
        "POST",
        "/hooks/registry",
        &[("Authorization", "nope")],
        &event,
    );
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let ok = http_with(
        &agent.api,
        "POST",
        "/hooks/registry",
        &[("Authorization", "reg-secret")],
        &event,
    );
    assert!(ok.starts_with("HTTP/1.1 202"), "{ok}");
    wait_for("the new tag deployed", Duration::from_secs(30), || {
        e.image_of("app") == format!("{repo}:1.1.0")
    });
    assert_eq!(e.commits()[0], format!("Auto-release {repo}:1.1.0"));
}

/// `tether_syncs_total{result="success"}` on the agent's metrics.
fn successful_syncs(metrics: &str) -> u64 {
    syncs(metrics, "success")
}

/// Syncs counted on /metrics with this result, whatever their reason.
fn syncs(metrics: &str, result: &str) -> u64 {
    crate::support::http_get(metrics, "/metrics")
        .lines()
        .filter(|l| l.starts_with(&format!(r#"tether_syncs_total{{result="{result}""#)))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_flood_of_webhooks_syncs_the_commit_once_and_fetches_far_fewer_times() {
    let (e, cm) = one_configmap("hook-flood");
    let n = e.w.n.clone();
    let secret = secret_file(&e, "fl00d-secret");
    // Counts the agent's fetches: a `git` ahead of the real one on its PATH.
    let bin = tempfile::tempdir().unwrap();
    let fetches = bin.path().join("fetches");
    tether_testenv::write_executable(
        &bin.path().join("git"),
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = fetch ] && echo . >> {} && break; done\nexec /usr/bin/git \"$@\"\n",
            fetches.display()
        ),
    );
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let agent = crate::api::start_with(
        &e,
        &[
            "--webhook-secret-file",
            &secret,
            "--registry-disable-scanning",
        ],
        |cmd| {
            cmd.env("PATH", &path);
        },
    );
    let count = || {
        std::fs::read_to_string(&fetches)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let (fetched_before, synced_before) = (count(), successful_syncs(&agent.metrics));

    e.w.repo.write(&[("cm.yaml", &cm("2"))]);
    e.w.repo.commit("second");
    let body = format!(
        r#"{{"ref":"refs/heads/main","repository":{{"ssh_url":"{}"}}}}"#,
        e.ssh.url(&e.w.repo)
    );
    let signature = github_signature("fl00d-secret", &body);
    const HOOKS: usize = 200;
    let push = || {
        http_with(
            &agent.api,
            "POST",
            "/hooks/git",
            &[
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &signature),
            ],
            &body,
        )
    };
    // Eight senders at once, as a busy Git host retrying deliveries would.
    let flood = |hooks: usize| {
        let answers: Vec<String> = std::thread::scope(|s| {
            let senders: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..hooks / 8).map(|_| push()).collect::<Vec<_>>()))
                .collect();
            senders
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        assert_eq!(answers.len(), hooks / 8 * 8);
        for a in &answers {
            assert!(a.starts_with("HTTP/1.1 202"), "{a}");
        }
    };
    let settled = || {
        wait_for(
            "the flood's fetches to end",
            Duration::from_secs(30),
            || {
                let a = count();
                std::thread::sleep(Duration::from_secs(2));
                a == count()
            },
        )
    };
    flood(HOOKS);
    wait_for("the pushed commit", Duration::from_secs(30), || {
        e.w.get(&["-n", &n, "configmap/c"])
            .is_some_and(|c| c["data"]["v"] == "2")
    });
    // Let the queued wake-ups run out, then count.
    settled();
    let fetched = count() - fetched_before;
    eprintln!("{HOOKS} webhooks: {fetched} fetches");
    assert!(
        (1..HOOKS / 4).contains(&fetched),
        "{HOOKS} webhooks made {fetched} fetches"
    );
    assert_eq!(
        successful_syncs(&agent.metrics) - synced_before,
        1,
        "the commit is synced once however many hooks announce it"
    );

    // A commit that fails, announced again every 300 ms for 6 s (a replayed delivery): the announcements do
    // not turn the failure's backoff into back-to-back attempts (the first is at once, the next 5 s later).
    let failed_before = syncs(&agent.metrics, "failure");
    e.w.repo.write(&[("cm.yaml", "broken: [\n")]);
    e.w.repo.commit("broken");
    const REPLAYS: usize = 20;
    for _ in 0..REPLAYS {
        let a = push();
        assert!(a.starts_with("HTTP/1.1 202"), "{a}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let failed = syncs(&agent.metrics, "failure") - failed_before;
    eprintln!("{REPLAYS} webhooks for a failing commit: {failed} attempts");
    assert!(
        (1..=3).contains(&failed),
        "a failing commit announced {REPLAYS} times in 6 s was tried {failed} times"
    );
    assert!(crate::support::http_get(&agent.metrics, "/healthz").starts_with("HTTP/1.1 200"));
}
