//! Image automation end to end: a real registry (pushed to without Docker), git over SSH, the API server.

use tether_testenv::registry::{
    dockerconfigjson, Auth, Fault, RegistryOptions, RequestKind, TestImage, TestRegistry,
};
use tether_testenv::SshServer;

use crate::support::{namespace as ns, Run, World};

/// A world with a registry and an SSH git server, for tests that push (shared with other test files).
pub(crate) struct Env {
    pub(crate) w: World,
    pub(crate) reg: TestRegistry,
    pub(crate) ssh: SshServer,
    pub(crate) rt: tokio::runtime::Runtime,
}

impl Env {
    pub(crate) fn new(prefix: &str) -> Self {
        Self::with(prefix, RegistryOptions::default(), None)
    }

    pub(crate) fn with(prefix: &str, options: RegistryOptions, push_hook: Option<&str>) -> Self {
        Env {
            w: World::new(prefix),
            reg: TestRegistry::start_with(options),
            ssh: SshServer::start_with_push_hook(push_hook),
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// Pushes an image built at `created` (RFC 3339).
    pub(crate) fn push(&self, path: &str, tag: &str, created: &str) {
        self.rt
            .block_on(self.reg.pusher().push(path, tag, &TestImage::new(created)));
    }

    /// The source flags: the repository over SSH with the read-write key.
    pub(crate) fn git_flags(&self) -> Vec<String> {
        vec![
            "--git-url".into(),
            self.ssh.url(&self.w.repo),
            "--git-ssh-key".into(),
            self.ssh.rw_key.display().to_string(),
            "--git-known-hosts".into(),
            self.ssh.known_hosts.display().to_string(),
        ]
    }

    pub(crate) fn flags(&self) -> Vec<String> {
        let mut flags = self.git_flags();
        flags.extend(["--registry-insecure-host".into(), self.reg.host.clone()]);
        flags
    }

    pub(crate) fn run(&self, command: &[&str], extra: &[&str]) -> Run {
        let flags = self.flags();
        let mut args: Vec<&str> = command.to_vec();
        args.extend(flags.iter().map(String::as_str));
        args.extend_from_slice(extra);
        self.w.tether(&args)
    }

    pub(crate) fn automate(&self) -> Run {
        self.run(&["update-images"], &[])
    }

    pub(crate) fn sync(&self) -> String {
        self.run(&["daemon", "--once"], &[]).ok()
    }

    pub(crate) fn image_of(&self, deployment: &str) -> String {
        let d = self
            .w
            .get(&["-n", &self.w.n, &format!("deployment/{deployment}")])
            .unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) fn commits(&self) -> Vec<String> {
        let log = tether_testenv::run(tether_testenv::git::git(&self.w.repo.bare).args([
            "log",
            "--format=%s",
            "main",
        ]));
        log.lines().map(str::to_owned).collect()
    }
}

fn deployment(n: &str, name: &str, annotations: &str, image: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {n}\n  annotations:\n{annotations}\
         spec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n{extra_spec}\
         \x20     containers:\n      - name: app\n        image: {image}\n"
    )
}

#[test]
fn semver_policy_commits_the_newest_allowed_tag_once_and_the_next_sync_deploys_it() {
    let e = Env::new("auto-semver");
    let n = e.w.n.clone();
    for (tag, created) in [
        ("1.4.0", "2024-01-01T00:00:00Z"),
        ("1.4.9", "2024-02-01T00:00:00Z"),
        ("1.5.0", "2024-03-01T00:00:00Z"),
    ] {
        e.push("team/app", tag, created);
    }
    let image = e.reg.repo("team/app");
    let annotations = "    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.app: semver:~1.4\n";
    e.w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        (
            "app.yaml",
            &deployment(&n, "app", annotations, &format!("{image}:1.4.0"), ""),
        ),
    ]);
    e.w.repo.commit("app at 1.4.0");
    e.sync();
    assert_eq!(e.image_of("app"), format!("{image}:1.4.0"));

    let out = e.automate();
    assert!(out.0.status.success(), "{}", out.stderr());
    assert!(out.stdout().contains("updates=1"), "{}", out.stdout());
    assert_eq!(e.commits()[0], format!("Auto-release {image}:1.4.9"));
    // A second pass finds nothing to do: no duplicate commit.
    assert!(e.automate().stdout().contains("updates=0 commit=none"));
    assert_eq!(e.commits().len(), 2);

    let summary = e.sync();
    assert!(summary.contains("configured=1"), "{summary}");
    assert_eq!(e.image_of("app"), format!("{image}:1.4.9"));
}

#[test]
fn only_automated_unlocked_unignored_workloads_change_glob_follows_build_time_and_the_file_keeps_its_bytes(
) {
    let e = Env::new("auto-glob");
    let n = e.w.n.clone();
    for (tag, created) in [
        ("1.0", "2024-01-01T00:00:00Z"),
        ("2.0", "2023-01-01T00:00:00Z"),
        ("1.5", "2024-06-01T00:00:00Z"),
        ("latest", "2025-01-01T00:00:00Z"),
    ] {
        e.push("team/web", tag, created);
    }
    let image = e.reg.repo("team/web");
    let auto = "    fluxcd.io/automated: \"true\"\n";
    let file = format!(
        "# Four workloads; only the first may be changed by automation.\n---\n{}---\n# locked by a person\n{}---\n{}---\n{}",
        deployment(&n, "auto", auto, &format!("\"{image}:1.0\" # quoted, with a comment"), ""),
        deployment(&n, "locked", &format!("{auto}    fluxcd.io/locked: \"true\"\n    fluxcd.io/locked_user: ops\n"), &format!("{image}:1.0"), ""),
        deployment(&n, "manual", "    team: web\n", &format!("{image}:1.0"), ""),
        deployment(&n, "ignored", &format!("{auto}    flux.weave.works/ignore: \"true\"\n"), &format!("{image}:1.0"), ""),
    );
    e.w.repo.write(&[("ns.yaml", &ns(&n)), ("web.yaml", &file)]);
    e.w.repo.commit("four workloads");

    let out = e.automate();
    assert!(out.0.status.success(), "{}", out.stderr());
    assert!(out.stdout().contains("updates=1"), "{}", out.stdout());
    let after = tether_testenv::run(
        tether_testenv::git::git(&e.w.repo.bare).args(["show", "main:web.yaml"]),
    );
    // 1.5 is the newest build; 2.0 is a higher number but older, and `latest` is never chosen by glob:*.
    let expected = file.replacen(&format!("\"{image}:1.0\""), &format!("\"{image}:1.5\""), 1);
    assert_eq!(after, expected, "only the one image string may change");
}

#[test]
fn credentials_come_from_the_image_pull_secret_and_wrong_ones_are_named() {
    let auth = Auth::Htpasswd {
        username: "robot".into(),
        password: "s3cret".into(),
    };
    let e = Env::with(
        "auto-auth",
        RegistryOptions {
            auth,
            page_size: None,
        },
        None,
    );
    let n = e.w.n.clone();
    e.push("private/app", "1.0.0", "2024-01-01T00:00:00Z");
    e.push("private/app", "1.1.0", "2024-02-01T00:00:00Z");
    let image = e.reg.repo("private/app");
    let annotations = "    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.app: semver:^1\n";
    let pull = "      imagePullSecrets:\n      - name: regcred\n";
    e.w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        (
            "app.yaml",
            &deployment(&n, "app", annotations, &format!("{image}:1.0.0"), pull),
        ),
    ]);
    e.w.repo.commit("private app");
    e.sync();

    let secret = |password: &str| {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let password = tether_testenv::secret(password);
        std::fs::write(
            tmp.path(),
            dockerconfigjson(&e.reg.host, "robot", &password),
        )
        .unwrap();
        let _ =
            e.w.cluster
                .kubectl()
                .args(["-n", &n, "delete", "secret", "regcred"])
                .output();
        e.w.kubectl(&[
            "-n",
            &n,
            "create",
            "secret",
            "generic",
            "regcred",
            "--type",
            "kubernetes.io/dockerconfigjson",
            &format!("--from-file=.dockerconfigjson={}", tmp.path().display()),
        ]);
    };
    secret("wrong-password");
    let out = e.automate();
    assert!(!out.0.status.success());
    let err = out.stderr();
    assert!(
        err.contains(&format!("imagePullSecret {n}/regcred")) && err.contains(&e.reg.host),
        "{err}"
    );
    assert!(
        !err.contains("wrong-password"),
        "the password leaked: {err}"
    );

    secret("s3cret");
    let out = e.automate();
    assert!(out.0.status.success(), "{}", out.stderr());
    assert_eq!(e.commits()[0], format!("Auto-release {image}:1.1.0"));
}

#[test]
fn a_push_race_ends_with_both_commits_and_no_force_push() {
    // The Git host lets someone else land a commit just before tether's first push arrives.
    let e_bare = tempfile::tempdir().unwrap();
    let hook_clone = e_bare.path().join("human");
    let e = {
        let w = World::new("auto-race");
        let bare = w.repo.bare.display().to_string();
        let hook = format!(
            "git clone -q {bare} {c} && cd {c} && echo human > HUMAN.md && git add -A && \
             git -c user.name=human -c user.email=h@example.com commit -qm 'human change' && git push -q origin HEAD:main",
            c = hook_clone.display()
        );
        Env {
            w,
            reg: TestRegistry::start(),
            ssh: SshServer::start_with_push_hook(Some(&hook)),
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    };
    let n = e.w.n.clone();
    e.push("team/race", "1.0.0", "2024-01-01T00:00:00Z");
    e.push("team/race", "1.0.1", "2024-01-02T00:00:00Z");
    let image = e.reg.repo("team/race");
    let annotations = "    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.app: semver:~1.0\n";
    e.w.repo.write(&[(
        "app.yaml",
        &deployment(&n, "app", annotations, &format!("{image}:1.0.0"), ""),
    )]);
    e.w.repo.commit("first");

    let out = e.automate();
    assert!(out.0.status.success(), "{}", out.stderr());
    assert!(
        out.stderr().contains("branch moved"),
        "the race did not happen: {}",
        out.stderr()
    );
    assert_eq!(
        e.commits(),
        [
            format!("Auto-release {image}:1.0.1"),
            "human change".into(),
            "first".into()
        ]
    );
}

#[test]
fn a_throttling_registry_is_backed_off_and_a_restart_refetches_nothing_it_knows() {
    let e = Env::new("auto-429");
    let n = e.w.n.clone();
    for (tag, created) in [
        ("a", "2024-01-01T00:00:00Z"),
        ("b", "2024-02-01T00:00:00Z"),
        ("c", "2024-03-01T00:00:00Z"),
    ] {
        e.push("team/slow", tag, created);
    }
    let image = e.reg.repo("team/slow");
    let annotations = "    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.app: glob:*\n";
    e.w.repo.write(&[(
        "app.yaml",
        &deployment(&n, "app", annotations, &format!("{image}:a"), ""),
    )]);
    e.w.repo.commit("first");
    e.reg
        .inject(Fault::too_many_requests(RequestKind::ManifestGet, 2, "1"));
    let out = e.automate();
    assert!(out.0.status.success(), "{}", out.stderr());
    assert!(e.reg.counts().injected >= 2, "{:?}", e.reg.counts());
    assert_eq!(
        e.commits(),
        [format!("Auto-release {image}:c"), "first".into()]
    );

    // A new process with the same cache: the tag list only, no manifest or blob request, no new commit.
    e.reg.reset_counts();
    let out = e.automate();
    assert!(out.stdout().contains("updates=0"), "{}", out.stdout());
    let counts = e.reg.counts();
    assert_eq!(counts.metadata(), 0, "{counts:?}");
    assert!(counts.tags_list >= 1, "{counts:?}");
    assert_eq!(e.commits().len(), 2);
}

#[test]
fn list_images_shows_the_current_image_and_what_automation_would_pick() {
    let e = Env::new("auto-list");
    let n = e.w.n.clone();
    e.push("team/list", "1.0.0", "2024-01-01T00:00:00Z");
    e.push("team/list", "1.2.0", "2024-02-01T00:00:00Z");
    let image = e.reg.repo("team/list");
    let annotations = "    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.app: semver:^1\n";
    e.w.repo.write(&[(
        "app.yaml",
        &deployment(&n, "app", annotations, &format!("{image}:1.0.0"), ""),
    )]);
    e.w.repo.commit("first");
    let out = e.run(
        &["list-images"],
        &["--workload", &format!("{n}:deployment/app")],
    );
    assert!(out.0.status.success(), "{}", out.stderr());
    let text = out.stdout();
    assert!(
        text.contains(&format!(
            "{n}:deployment/app  container=app  automated  policy=semver:^1"
        )),
        "{text}"
    );
    assert!(
        text.contains("-> 1.2.0") && text.contains("(automation would deploy this)"),
        "{text}"
    );
    assert!(
        text.contains("1.0.0") && text.contains("(current)"),
        "{text}"
    );
    // list-images is read-only.
    assert_eq!(e.commits().len(), 1);
}

#[test]
fn the_daemon_commits_a_new_tag_and_deploys_it_without_waiting_for_the_poll() {
    let e = Env::new("auto-loop");
    let n = e.w.n.clone();
    e.push("team/live", "1.0.0", "2024-01-01T00:00:00Z");
    let image = e.reg.repo("team/live");
    let annotations = "    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.app: semver:^1\n";
    e.w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        (
            "app.yaml",
            &deployment(&n, "app", annotations, &format!("{image}:1.0.0"), ""),
        ),
    ]);
    e.w.repo.commit("first");
    let flags = e.flags();
    let mut args: Vec<&str> = vec!["daemon"];
    args.extend(flags.iter().map(String::as_str));
    // A long poll interval: only automation's wake-up can deploy the new tag quickly.
    args.extend([
        "--automation-interval",
        "1s",
        "--git-poll-interval",
        "10m",
        "--listen-metrics",
        "127.0.0.1:0",
    ]);
    let daemon = e.w.spawn(&args);
    let wait = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let got =
                e.w.get(&["-n", &n, "deployment/app"])
                    .map(|d| d["spec"]["template"]["spec"]["containers"][0]["image"].clone());
            if got.as_ref().and_then(|v| v.as_str()) == Some(want) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never saw {want}, last {got:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    wait(&format!("{image}:1.0.0"));
    e.push("team/live", "1.1.0", "2024-02-01T00:00:00Z");
    wait(&format!("{image}:1.1.0"));
    drop(daemon);
    assert_eq!(e.commits()[0], format!("Auto-release {image}:1.1.0"));
}

#[test]
fn an_automation_killed_while_pushing_converges_with_one_commit_after_a_restart() {
    use std::os::unix::process::CommandExt;
    // The Git host holds tether's first push for a while: long enough to kill tether (-9, with the git and
    // ssh processes it started) between its local commit and the push landing.
    let marker = tempfile::tempdir().unwrap();
    let pushing = marker.path().join("pushing");
    let hook = format!("touch {} && sleep 8", pushing.display());
    let e = Env::with("auto-kill", RegistryOptions::default(), Some(&hook));
    let n = e.w.n.clone();
    e.push("team/kill", "1.0.0", "2024-01-01T00:00:00Z");
    e.push("team/kill", "1.1.0", "2024-02-01T00:00:00Z");
    let image = e.reg.repo("team/kill");
    let annotations = "    fluxcd.io/automated: \"true\"\n";
    e.w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        (
            "app.yaml",
            &deployment(&n, "app", annotations, &format!("{image}:1.0.0"), ""),
        ),
    ]);
    e.w.repo.commit("first");

    let flags = e.flags();
    let mut args: Vec<&str> = vec!["update-images"];
    args.extend(flags.iter().map(String::as_str));
    let mut cmd = e.w.command(&args);
    cmd.process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !pushing.exists() {
        assert!(std::time::Instant::now() < deadline, "tether never pushed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let group = format!("-{}", child.id());
    let killed = std::process::Command::new("kill")
        .args(["-9", "--", &group])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = child.wait();

    // Whether or not the held push landed, a restart ends with exactly one commit for the update, and the
    // next sync deploys it.
    let out = e.automate();
    assert!(out.0.status.success(), "{}", out.stderr());
    let commits = e.commits();
    assert_eq!(
        commits,
        [format!("Auto-release {image}:1.1.0"), "first".into()],
        "{commits:?}"
    );
    e.sync();
    assert_eq!(e.image_of("app"), format!("{image}:1.1.0"));
}

#[test]
fn a_registry_failing_for_a_while_costs_passes_and_nothing_else() {
    let e = Env::new("auto-500");
    let n = e.w.n.clone();
    e.push("team/flaky", "1.0.0", "2024-01-01T00:00:00Z");
    e.push("team/flaky", "1.1.0", "2024-02-01T00:00:00Z");
    let image = e.reg.repo("team/flaky");
    e.w.repo.write(&[(
        "app.yaml",
        &deployment(
            &n,
            "app",
            "    fluxcd.io/automated: \"true\"\n",
            &format!("{image}:1.0.0"),
            "",
        ),
    )]);
    e.w.repo.commit("first");
    // The registry answers 500 to every tag list for a while (more than any pass retries).
    e.reg.inject(Fault {
        kind: Some(RequestKind::TagsList),
        times: 1000,
        status: 500,
        retry_after: None,
        body: None,
    });
    for _ in 0..2 {
        let out = e.automate();
        assert!(!out.0.status.success(), "{}", out.stdout());
        let err = out.stderr();
        assert!(
            err.contains(&format!("{n}:deployment/app")) && err.contains("500"),
            "{err}"
        );
    }
    assert_eq!(e.commits(), ["first"], "a failing registry made a commit");
    // Once it answers again, the next pass makes the one commit.
    e.reg.clear_faults();
    let out = e.automate();
    assert!(out.0.status.success(), "{}", out.stderr());
    assert_eq!(
        e.commits(),
        [format!("Auto-release {image}:1.1.0"), "first".into()]
    );
}

#[test]
fn a_policy_change_that_would_break_every_sync_is_refused_before_anything_is_committed() {
    let e = Env::new("auto-badpolicy");
    let n = e.w.n.clone();
    e.w.repo.write(&[(
        "app.yaml",
        &deployment(&n, "app", "    team: x\n", "registry.example/app:1.0.0", ""),
    )]);
    e.w.repo.commit("first");
    let id = format!("{n}:deployment/app");
    let git = e.git_flags();
    let run = |command: &str, extra: &[&str]| {
        let mut args = vec![command];
        args.extend(git.iter().map(String::as_str));
        args.extend_from_slice(extra);
        e.w.tether(&args)
    };
    // A container the workload does not have, a pattern that does not parse, a message too long for an
    // annotation the API server would still accept.
    let no_container = run("policy", &["--workload", &id, "--tag", "nosuch=semver:~1"]);
    assert!(
        no_container
            .failed()
            .contains("has no container \"nosuch\""),
        "{}",
        no_container.stderr()
    );
    let bad_pattern = run(
        "policy",
        &["--workload", &id, "--tag", "app=semver:not a range"],
    );
    assert!(
        bad_pattern.failed().contains("tag filter"),
        "{}",
        bad_pattern.stderr()
    );
    let long = "x".repeat(5000);
    let too_long = run("lock", &["--workload", &id, "-m", &long]);
    assert!(
        too_long.failed().contains("longer than"),
        "{}",
        too_long.stderr()
    );
    assert_eq!(e.commits(), ["first"], "a refused change was committed");
}
