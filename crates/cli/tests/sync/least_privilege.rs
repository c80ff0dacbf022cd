//! tether with namespace-scoped rights only (unlike Flux v1's cluster-admin).

use crate::support::{free_addr, http_get, Daemon, Run, World};

/// Creates the test's namespace and lets the unprivileged `tether-user` read and write `resources` in it
/// (and nothing else); its kubeconfig.
fn namespace_for_tether_user(w: &World, resources: &str) -> std::path::PathBuf {
    let Some(user_kubeconfig) = w.cluster.user_kubeconfig.clone() else {
        panic!("this test needs an unprivileged identity: set TETHER_TEST_USER_KUBECONFIG")
    };
    let n = &w.n;
    w.kubectl(&["create", "namespace", n]);
    w.kubectl(&[
        "-n",
        n,
        "create",
        "role",
        "tether",
        "--verb=get,list,create,update,patch,delete",
        &format!("--resource={resources}"),
    ]);
    w.kubectl(&[
        "-n",
        n,
        "create",
        "rolebinding",
        "tether",
        "--role=tether",
        "--user=tether-user",
    ]);
    user_kubeconfig
}

/// `tether daemon --once` as `tether-user`, confined to the test's namespace, plus `extra`.
fn once_as_tether_user(w: &World, kubeconfig: &std::path::Path, extra: &[&str]) -> Run {
    let url = w.repo.file_url();
    let n = &w.n;
    let mut args = vec![
        "daemon",
        "--once",
        "--git-url",
        &url,
        "--k8s-allow-namespace",
        n,
        "--namespace",
        n,
    ];
    args.extend_from_slice(extra);
    Run::of(
        w.command(&args)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .unwrap(),
    )
}

#[test]
fn a_namespace_scoped_identity_syncs_and_collects_within_its_namespace() {
    let w = World::new("lp");
    let n = w.n.clone();
    let user_kubeconfig =
        namespace_for_tether_user(&w, "configmaps,secrets,services,deployments.apps");

    let cm = |name: &str, ns: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n")
    };
    w.repo.write(&[
        ("a.yaml", &cm("a", &n)),
        ("b.yaml", &cm("b", &n)),
        ("elsewhere.yaml", &cm(&format!("{n}-x"), "kube-system")),
    ]);
    w.repo.commit("first");
    let run = |extra: &[&str]| {
        let mut args = vec!["--sync-garbage-collection"];
        args.extend_from_slice(extra);
        once_as_tether_user(&w, &user_kubeconfig, &args)
    };
    let first = run(&[]);
    let summary = first.ok();
    assert!(
        summary.contains("created=2") && summary.contains("skipped=1"),
        "{summary}"
    );
    assert!(
        first.stderr().contains("not in --k8s-allow-namespace"),
        "{}",
        first.stderr()
    );
    assert!(w
        .get(&["-n", "kube-system", &format!("configmap/{n}-x")])
        .is_none());

    w.repo.remove("b.yaml");
    w.repo.commit("drop b");
    assert!(run(&[]).ok().contains("deleted=1"));
    assert!(w.get(&["-n", &n, "configmap/b"]).is_none());
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

/// Requests the API server refused with 429 at priority level `level` so far.
fn rejected_at(w: &World, level: &str) -> u64 {
    let metrics = w.kubectl(&["get", "--raw", "/metrics"]);
    let label = format!("priority_level=\"{level}\"");
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_flowcontrol_rejected_requests_total{") && l.contains(&label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A priority level of a few seats that rejects the rest (API Priority and Fairness) for tether-user's
/// Secret patches in the test's namespace, once the API server has taken it up; returns tether-user's
/// kubeconfig and the file that made the level (delete it at the end).
fn throttled_level(w: &World, n: &str) -> (std::path::PathBuf, ThrottledLevel) {
    let user_kubeconfig = namespace_for_tether_user(w, "configmaps,secrets");
    let apf = format!(
        r#"apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {{name: {n}}}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    lendablePercent: 0
    borrowingLimitPercent: 0
    limitResponse: {{type: Reject}}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {{name: {n}}}
spec:
  matchingPrecedence: 500
  priorityLevelConfiguration: {{name: {n}}}
  distinguisherMethod: {{type: ByUser}}
  rules:
  - subjects:
    - kind: User
      user: {{name: tether-user}}
    resourceRules:
    - verbs: ["patch"]
      apiGroups: [""]
      resources: ["secrets"]
      namespaces: ["{n}"]
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("apf.yaml");
    std::fs::write(&file, apf).unwrap();
    w.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    // The API server picks up flow-control objects from its informers: wait until it reports the level's
    // seats, so the sync meets the limit.
    let label = format!("priority_level=\"{n}\"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let seats = loop {
        let metrics = w.kubectl(&["get", "--raw", "/metrics"]);
        let seats = metrics
            .lines()
            .find(|l| {
                l.starts_with("apiserver_flowcontrol_nominal_limit_seats{") && l.contains(&label)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if let Some(seats) = seats {
            break seats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API server never took up the priority level"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(
        seats < 6.0,
        "{seats} seats: too many to throttle 8 writes at once"
    );

    let mut remove_level = w.cluster.kubectl();
    remove_level
        .args(["delete", "-f"])
        .arg(&file)
        .arg("--wait=false");
    let mut remove_namespace = w.cluster.kubectl();
    remove_namespace.args(["delete", "namespace", n, "--wait=false"]);
    (
        user_kubeconfig,
        ThrottledLevel {
            _dir: dir,
            cleanup: vec![remove_level, remove_namespace],
        },
    )
}

/// A [`throttled_level`] with `count` Secrets committed for tether-user to sync: the world, tether-user's
/// kubeconfig, the level, and how many requests the server had refused at that level so far.
fn throttled_secrets(name: &str, count: usize) -> (World, std::path::PathBuf, ThrottledLevel, u64) {
    let w = World::new(name);
    let n = w.n.clone();
    let (user_kubeconfig, level) = throttled_level(&w, &n);
    crate::support::write(&w.repo, &secrets(&n, count, name));
    w.repo.commit(&format!("{count} secrets"));
    let before = rejected_at(&w, &n);
    (w, user_kubeconfig, level, before)
}

/// `count` Secrets in namespace `n` (files `sNN.yaml`), each value registered as a secret of the test and
/// unique to `tag`.
fn secrets(n: &str, count: usize, tag: &str) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            (
                format!("s{i:02}.yaml"),
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s{i:02}\n  namespace: {n}\nstringData:\n  k: {}\n",
                    tether_testenv::secret(format!("value-{i:02}-{tag}-of-{n}"))
                ),
            )
        })
        .collect()
}

/// A [`throttled_level`]: its priority level, flow schema and namespace are deleted on drop, also when an
/// assertion failed.
struct ThrottledLevel {
    _dir: tempfile::TempDir,
    cleanup: Vec<std::process::Command>,
}

impl Drop for ThrottledLevel {
    fn drop(&mut self) {
        for cmd in &mut self.cleanup {
            let _ = cmd.output();
        }
    }
}

#[test]
fn writes_the_api_server_throttles_are_sent_again_and_the_sync_completes() {
    // API Priority and Fairness gives this test's writes (tether-user patching Secrets in its namespace) a
    // priority level of a few seats that rejects the rest: 8 dry-runs at once meet 429s. kube's client
    // sends a refused request again after the server's Retry-After (its default retry policy, up to 15
    // times); this holds tether to a sync that completes rather than one that fails after its dry-runs.
    let w = World::new("apf");
    let n = w.n.clone();
    let (user_kubeconfig, _level) = throttled_level(&w, &n);
    // Whether requests overlap at the server depends on how fast the client opens its connections, so a
    // commit that happened not to be throttled is followed by another, up to three.
    let mut throttled = false;
    for attempt in 0..3 {
        crate::support::write(&w.repo, &secrets(&n, 8, &attempt.to_string()));
        w.repo.commit(&format!("8 secrets, attempt {attempt}"));
        let before = rejected_at(&w, &n);
        let run = once_as_tether_user(&w, &user_kubeconfig, &["--apply-concurrency", "32"]);
        let rejected = rejected_at(&w, &n) - before;
        let summary = run.ok();
        let applied = if attempt == 0 {
            "created=8"
        } else {
            "configured=8"
        };
        assert!(summary.contains(applied), "{summary}");
        if rejected > 0 {
            throttled = true;
            break;
        }
    }
    assert!(
        throttled,
        "the API server never throttled the writes in three syncs, so nothing was tested"
    );
}

#[test]
fn a_throttling_api_server_is_sent_fewer_requests_at_once() {
    // 60 Secrets at 32 writes in flight against a level of a few seats. Each refused request is sent again
    // after the server's Retry-After; at the same concurrency each round of retries met the same refusals.
    const SECRETS: usize = 60;
    let (w, user_kubeconfig, _level, before) = throttled_secrets("apf-adapt", SECRETS);
    let n = w.n.clone();
    let started = std::time::Instant::now();
    let run = once_as_tether_user(&w, &user_kubeconfig, &["--apply-concurrency", "32"]);
    let rejected = rejected_at(&w, &n) - before;
    eprintln!(
        "{SECRETS} secrets: {rejected} requests refused, {:?}",
        started.elapsed()
    );
    let summary = run.ok();
    assert!(summary.contains("created=60"), "{summary}");
    // 120 requests (a dry-run and a write each). Without the adaptive limit 150 were refused (82 s); with
    // it 50 (10 s).
    assert!(
        rejected < 2 * SECRETS as u64,
        "{rejected} of 120 requests refused: the refusals did not lower the concurrency"
    );
    assert!(
        run.stderr().contains("sending fewer at once"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_throttled_agent_shows_its_lowered_limit_and_the_refusals_on_its_metrics() {
    // The running agent, as the same throttled identity: an operator sees on /metrics that the API server
    // refused requests and that tether sends fewer at once, not only in a log line.
    let (w, user_kubeconfig, _level, before) = throttled_secrets("apf-metrics", 60);
    let n = w.n.clone();
    // The agent also watches what it applied.
    w.kubectl(&[
        "-n",
        &n,
        "create",
        "role",
        "tether-watch",
        "--verb=watch",
        "--resource=configmaps,secrets",
    ]);
    w.kubectl(&[
        "-n",
        &n,
        "create",
        "rolebinding",
        "tether-watch",
        "--role=tether-watch",
        "--user=tether-user",
    ]);
    let metrics = free_addr();
    let url = w.repo.file_url();
    let mut cmd = w.command(&[
        "daemon",
        "--git-url",
        &url,
        "--k8s-allow-namespace",
        &n,
        "--namespace",
        &n,
        "--apply-concurrency",
        "32",
        "--listen-metrics",
        &metrics,
        "--git-poll-interval",
        "1h",
        "--sync-interval",
        "1h",
    ]);
    cmd.env("KUBECONFIG", &user_kubeconfig);
    let agent = Daemon::spawn(cmd);
    crate::support::wait_ready(&metrics, std::time::Duration::from_secs(120));
    let text = http_get(&metrics, "/metrics");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} on /metrics:\n{text}\n{}", agent.log()))
    };
    let refused = value("tether_k8s_requests_refused_total");
    let limit = value("tether_k8s_request_concurrency_limit");
    let rejected = rejected_at(&w, &n) - before;
    eprintln!("refused {refused} (server: {rejected}), limit now {limit}");
    assert!(
        rejected > 0,
        "the server refused nothing, so nothing was tested"
    );
    // Every 429 the server sent this level reached the gate (kube's retries pass it too).
    assert_eq!(refused as u64, rejected, "{text}");
    // The first refusal cut the limit to half of at most 32 in flight; growing back from 16 past 32 takes
    // about 400 served answers, more than this sync's 120 writes and their retries.
    assert!(
        limit <= 32.0,
        "the limit was not lowered to what was in flight:\n{text}"
    );
}
