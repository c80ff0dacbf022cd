//! The agent's API and the fluxctl-style commands that call it, end to end: a running daemon, git over SSH,
//! a registry, and the API server's own TokenReview and SubjectAccessReview deciding who may do what.

use std::time::Duration;

use crate::automation::Env;
use crate::support::{free_addr, http, namespace as ns, wait_for, Daemon, Run};

/// A running agent and where its API is.
pub(crate) struct Agent {
    pub(crate) daemon: Daemon,
    pub(crate) url: String,
    pub(crate) api: String,
    /// Address of /healthz, /readyz and /metrics.
    pub(crate) metrics: String,
}

/// Starts the agent on `e`'s repository (over SSH) and waits for its first successful sync.
pub(crate) fn start(e: &Env, extra: &[&str]) -> Agent {
    start_with(e, extra, |_| {})
}

/// As [`start`], with `tweak` applied to the command first (its environment, say).
pub(crate) fn start_with(
    e: &Env,
    extra: &[&str],
    tweak: impl FnOnce(&mut std::process::Command),
) -> Agent {
    let api = free_addr();
    let metrics = free_addr();
    let flags = e.flags();
    let mut args: Vec<&str> = vec!["daemon"];
    args.extend(flags.iter().map(String::as_str));
    args.extend([
        "--listen",
        &api,
        "--listen-metrics",
        &metrics,
        "--git-poll-interval",
        "1h",
        "--sync-interval",
        "1h",
    ]);
    args.extend_from_slice(extra);
    let mut cmd = e.w.command(&args);
    tweak(&mut cmd);
    let daemon = crate::support::Daemon::spawn(cmd);
    crate::support::wait_ready(&metrics, Duration::from_secs(60));
    Agent {
        daemon,
        url: format!("http://{api}"),
        api,
        metrics,
    }
}

pub(crate) fn deployment(
    n: &str,
    name: &str,
    annotations: &str,
    image: &str,
    replicas: u32,
) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {n}\n  annotations:\n{annotations}\
         spec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n\
         \x20     containers:\n      - name: app\n        image: {image}\n"
    )
}

/// `tether <args> --url <agent>` with the token of the current kubeconfig context (the admin's).
pub(crate) fn call(e: &Env, agent: &Agent, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--url", &agent.url]);
    e.w.tether(&all)
}

/// A ServiceAccount in `namespace` that may read and change workloads there (tether.dev's virtual
/// resource, as a team's Role would grant it), and a token for it.
fn team_token(e: &Env, namespace: &str) -> String {
    let role = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: dev, namespace: {namespace}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: tether-releaser, namespace: {namespace}}}\n\
         rules:\n- apiGroups: [tether.dev]\n  resources: [workloads]\n  verbs: [get, list, update]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: dev-releaser, namespace: {namespace}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: tether-releaser}}\n\
         subjects:\n- {{kind: ServiceAccount, name: dev, namespace: {namespace}}}\n"
    );
    let file = e.w.cache.path().join("team.yaml");
    std::fs::write(&file, role).unwrap();
    e.w.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    tether_testenv::secret(
        e.w.kubectl(&["create", "token", "dev", "-n", namespace])
            .trim(),
    )
}

#[test]
fn a_team_role_lists_and_locks_its_own_workloads_and_nothing_else() {
    let e = Env::new("api-authz");
    let a = e.w.n.clone();
    let b = format!("{a}-b");
    let image = format!("{}:1.0.0", e.reg.repo("team/app"));
    e.w.repo.write(&[
        ("ns-a.yaml", &ns(&a)),
        ("ns-b.yaml", &ns(&b)),
        (
            "a.yaml",
            &deployment(&a, "app", "    fluxcd.io/tag.app: semver:~1\n", &image, 1),
        ),
        (
            "b.yaml",
            &deployment(&b, "app", "    fluxcd.io/tag.app: semver:~1\n", &image, 1),
        ),
    ]);
    e.w.repo.commit("two teams");
    let agent = start(&e, &["--registry-disable-scanning"]);

    // No token, or one the cluster does not know: 401, with a reason.
    let none = http(&agent.api, "GET", "/api/v1/workloads", None);
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    assert!(none.contains("bearer token"), "{none}");
    let bogus = http(&agent.api, "GET", "/api/v1/workloads", Some("not-a-token"));
    assert!(bogus.starts_with("HTTP/1.1 401"), "{bogus}");
    // Without --webhook-secret-file the hooks are off, signed or not.
    let hook = http(&agent.api, "POST", "/hooks/git", None);
    assert!(
        hook.starts_with("HTTP/1.1 404") && hook.contains("--webhook-secret-file"),
        "{hook}"
    );
    // A token longer than any cluster issues is refused without asking the cluster.
    let huge = "x".repeat(20 << 10);
    let huge = http(&agent.api, "GET", "/api/v1/workloads", Some(&huge));
    assert!(huge.starts_with("HTTP/1.1 401"), "{huge}");
    // The token is checked before the body is read: a caller without one announcing 2 MB gets its 401
    // at once, and the agent never buffers what it would send.
    let (status, _) = crate::support::status_before_body(
        &agent.api,
        b"POST /api/v1/policy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 2000000\r\n\r\n{\"workload\":",
    );
    assert_eq!(status, "HTTP/1.1 401");

    let token = team_token(&e, &a);
    // Each named workload costs a review: a release naming thousands is refused before any.
    let many: Vec<String> = (0..1001)
        .map(|i| format!("\"{a}:deployment/w{i}\""))
        .collect();
    let body = format!(
        r#"{{"workloads": [{}], "allImages": true, "dryRun": true}}"#,
        many.join(",")
    );
    let bearer = format!("Bearer {token}");
    let refused = crate::support::http_with(
        &agent.api,
        "POST",
        "/api/v1/release",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert!(
        refused.starts_with("HTTP/1.1 400") && refused.contains("at most 1000 workloads"),
        "{refused}"
    );
    let with_token = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--token", &token]);
        call(&e, &agent, &all)
    };
    let own = with_token(&["list-workloads", "-n", &a]).out();
    assert!(own.contains(&format!("{a}:deployment/app")), "{own}");
    assert!(own.contains("tag.app=semver:~1"), "{own}");
    let other = with_token(&["list-workloads", "-n", &b]).failed();
    assert!(
        other.contains("may not list workloads.tether.dev") && other.contains(&b),
        "{other}"
    );
    // Every namespace: only those the caller may read.
    let all = with_token(&["list-workloads", "-a"]).out();
    assert!(all.contains(&format!("{a}:deployment/app")), "{all}");
    assert!(!all.contains(&format!("{b}:deployment/app")), "{all}");

    let before = e.commits().len();
    let denied = with_token(&["lock", "--workload", &format!("{b}:deployment/app")]).failed();
    assert!(
        denied.contains("may not update workloads.tether.dev"),
        "{denied}"
    );
    assert_eq!(e.commits().len(), before, "a refused lock committed");

    let locked = with_token(&[
        "lock",
        "--workload",
        "deployment/app",
        "-n",
        &a,
        "-m",
        "incident 42",
        "--user",
        "alice",
    ])
    .out();
    assert!(
        locked.contains(&format!("Locked: {a}:deployment/app")),
        "{locked}"
    );
    assert_eq!(e.commits()[0], format!("Locked: {a}:deployment/app"));
    let git =
        |args: &[&str]| tether_testenv::run(tether_testenv::git::git(&e.w.repo.bare).args(args));
    let body = git(&["log", "-1", "--format=%B", "main"]);
    assert!(
        body.contains("incident 42") && body.contains("Requested-by: alice"),
        "{body}"
    );
    // Who the cluster says asked, last: `user` is only what the caller says.
    assert!(
        body.trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("Authenticated-by: system:serviceaccount:")),
        "{body}"
    );
    // Only the annotations changed: one file, and only lines adding the lock.
    let diff = git(&["diff", "--unified=0", "main~1", "main"]);
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert!(
        diff.contains("a.yaml") && !diff.contains("b.yaml"),
        "{diff}"
    );
    assert!(
        !changed.is_empty()
            && changed
                .iter()
                .all(|l| l.starts_with("+    fluxcd.io/locked")),
        "{diff}"
    );
    // The command returned after the agent deployed it, and list-workloads shows who locked it and why.
    let live = e.w.get(&["-n", &a, "deployment/app"]).unwrap();
    assert_eq!(live["metadata"]["annotations"]["fluxcd.io/locked"], "true");
    let shown = with_token(&["list-workloads", "-n", &a]).out();
    assert!(shown.contains("locked (alice: incident 42)"), "{shown}");
}

#[test]
fn sync_repairs_drift_on_an_unchanged_head_and_list_workloads_shows_what_runs() {
    let e = Env::new("api-sync");
    let n = e.w.n.clone();
    let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {n}\ndata:\n  v: \"1\"\n");
    e.w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        ("cm.yaml", &cm),
        (
            "web.yaml",
            &deployment(
                &n,
                "web",
                "    fluxcd.io/automated: \"true\"\n",
                "nginx:1.27.0",
                2,
            ),
        ),
    ]);
    e.w.repo.commit("web");
    let agent = start(&e, &["--registry-disable-scanning"]);

    e.w.kubectl(&[
        "-n",
        &n,
        "patch",
        "configmap",
        "c",
        "-p",
        r#"{"data":{"v":"drift"}}"#,
    ]);
    let out = call(&e, &agent, &["sync"]).out();
    assert!(out.contains("synced revision="), "{out}");
    let v = e.w.get(&["-n", &n, "configmap/c"]).unwrap();
    assert_eq!(
        v["data"]["v"], "1",
        "tether sync returned before repairing the drift"
    );
    // Kubernetes Events say what tether did to the object, and `kubectl describe` shows them.
    wait_for(
        "tether's events on the ConfigMap",
        Duration::from_secs(20),
        || {
            let events = e.w.kubectl(&[
                "-n",
                &n,
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=c",
            ]);
            events.contains("Created") && events.contains("DriftCorrected")
        },
    );
    let described = e.w.kubectl(&["-n", &n, "describe", "configmap", "c"]);
    assert!(
        described.contains("DriftCorrected") && described.contains("set it back to commit"),
        "{described}"
    );

    // Two simulated Pods become ready; the table shows the running image, the rollout and the policy.
    let mut table = String::new();
    wait_for("two ready replicas", Duration::from_secs(60), || {
        table = call(&e, &agent, &["list-workloads", "-n", &n]).out();
        table.contains("ready 2/2")
    });
    let row = table
        .lines()
        .find(|l| l.contains(&format!("{n}:deployment/web")))
        .unwrap_or_default();
    assert!(
        row.contains("nginx:1.27.0") && row.contains("automated"),
        "{table}"
    );
    assert!(table.starts_with("WORKLOAD"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&call(&e, &agent, &["list-workloads", "-n", &n, "-o", "json"]).out())
            .unwrap();
    assert_eq!(json["items"][0]["rollout"]["ready"], 2, "{json}");
    assert_eq!(json["items"][0]["containers"][0]["running"], "nginx:1.27.0");
}

#[test]
fn a_lock_holds_automation_off_and_release_deploys_only_when_not_a_dry_run() {
    let e = Env::new("api-release");
    let n = e.w.n.clone();
    e.push("team/app", "1.0.0", "2024-01-01T00:00:00Z");
    let repo = e.reg.repo("team/app");
    let automated = "    fluxcd.io/automated: \"true\"\n";
    e.w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        (
            "auto.yaml",
            &deployment(&n, "auto", automated, &format!("{repo}:1.0.0"), 1),
        ),
        (
            "rel.yaml",
            &deployment(&n, "rel", "    team: x\n", &format!("{repo}:1.0.0"), 1),
        ),
    ]);
    e.w.repo.commit("two workloads");
    let agent = start(&e, &["--automation-interval", "1s"]);

    call(
        &e,
        &agent,
        &["lock", "--workload", &format!("{n}:deployment/auto")],
    )
    .out();
    e.push("team/app", "1.1.0", "2024-02-01T00:00:00Z");
    // Several automation passes see the newer tag; the locked workload stays.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(e.commits()[0], format!("Locked: {n}:deployment/auto"));
    assert_eq!(e.image_of("auto"), format!("{repo}:1.0.0"));

    let commits = e.commits().len();
    let plan = call(
        &e,
        &agent,
        &[
            "release",
            "--workload",
            &format!("{n}:deployment/rel"),
            "--update-image",
            &format!("{repo}:1.1.0"),
            "--dry-run",
        ],
    )
    .out();
    assert!(
        plan.contains(&format!("{repo}:1.0.0 -> {repo}:1.1.0")),
        "{plan}"
    );
    assert!(plan.contains("dry run"), "{plan}");
    assert_eq!(e.commits().len(), commits, "a dry run committed");
    // A locked workload is left out of a release unless forced.
    let refused = call(
        &e,
        &agent,
        &[
            "release",
            "--workload",
            &format!("{n}:deployment/auto"),
            "--update-image",
            &format!("{repo}:1.1.0"),
            "--dry-run",
        ],
    )
    .out();
    assert!(
        refused.contains("skipped") && refused.contains("locked"),
        "{refused}"
    );

    let done = call(
        &e,
        &agent,
        &[
            "release",
            "--workload",
            &format!("{n}:deployment/rel"),
            "--update-image",
            &format!("{repo}:1.1.0"),
            "-m",
            "ship it",
        ],
    )
    .out();
    assert!(
        done.contains(&format!("Release {repo}:1.1.0 to {n}:deployment/rel")),
        "{done}"
    );
    assert_eq!(
        e.image_of("rel"),
        format!("{repo}:1.1.0"),
        "release returned before deploying"
    );

    // Unlocked, automation moves the workload to the newer tag and the agent deploys it.
    call(
        &e,
        &agent,
        &["unlock", "--workload", &format!("{n}:deployment/auto")],
    )
    .out();
    wait_for(
        "automation to update the unlocked workload",
        Duration::from_secs(30),
        || e.image_of("auto") == format!("{repo}:1.1.0"),
    );
    assert!(
        e.commits()
            .iter()
            .any(|c| c == &format!("Auto-release {repo}:1.1.0")),
        "{:?}",
        e.commits()
    );
}
