//! Flux v1 manifest generation (`.flux.yaml`) and automation of kustomize overlays, end to end: a repo laid
//! out like Flux v1's kustomize example, the real kustomize, a real registry, git over SSH.

use crate::automation::Env;
use crate::support::namespace;

fn base(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: podinfo}}\n  template:\n    metadata:\n      labels: {{app: podinfo}}\n    spec:\n      containers:\n      - name: podinfod\n        image: {image}\n        ports:\n        - containerPort: 9898\n"
    )
}

fn flux_patch(ns: &str, annotations: &str, image: &str) -> String {
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\n  namespace: {ns}\n  annotations:\n{annotations}spec:\n  template:\n    spec:\n      $setElementOrder/containers:\n      - name: podinfod\n      containers:\n      - image: {image}\n        name: podinfod\n"
    )
}

impl Env {
    /// `git show --name-only` of the branch head: the files the last commit touched.
    fn files_of_head(&self) -> Vec<String> {
        let out = tether_testenv::run(tether_testenv::git::git(&self.w.repo.bare).args([
            "show",
            "--format=",
            "--name-only",
            "main",
        ]));
        out.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `git show` of the head commit's diff, only the changed lines.
    fn changed_lines_of_head(&self) -> Vec<String> {
        let out = tether_testenv::run(tether_testenv::git::git(&self.w.repo.bare).args([
            "show",
            "--format=",
            "--unified=0",
            "main",
        ]));
        out.lines()
            .filter(|l| {
                (l.starts_with('+') || l.starts_with('-'))
                    && !l.starts_with("+++")
                    && !l.starts_with("---")
            })
            .map(str::to_owned)
            .collect()
    }

    /// `tether <command>` with the git flags only (no registry), plus `extra`.
    fn git_command(&self, command: &[&str], extra: &[&str]) -> crate::support::Run {
        let flags = self.git_flags();
        let mut args: Vec<&str> = command.to_vec();
        args.extend(flags.iter().map(String::as_str));
        args.extend_from_slice(extra);
        self.w.tether(&args)
    }

    fn message_of_head(&self) -> String {
        tether_testenv::run(tether_testenv::git::git(&self.w.repo.bare).args([
            "log",
            "-1",
            "--format=%B",
            "main",
        ]))
    }
}

#[test]
fn a_flux_kustomize_repo_syncs_each_overlay_and_automation_and_locks_write_only_the_patch_file() {
    let e = Env::new("fluxgen");
    let n = e.w.n.clone();
    let (staging, production) = (format!("{n}-staging"), format!("{n}-prod"));
    for (tag, created) in [
        ("1.4.0", "2024-01-01T00:00:00Z"),
        ("1.4.9", "2024-02-01T00:00:00Z"),
        ("1.5.0", "2024-03-01T00:00:00Z"),
    ] {
        e.push("stefanprodan/podinfo", tag, created);
    }
    let image = e.reg.repo("stefanprodan/podinfo");
    let automated = "    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.podinfod: semver:~1.4\n";
    let overlay = |ns: &str| format!("namespace: {ns}\nresources:\n- namespace.yaml\n- ../base\n");
    e.w.repo.write(&[
        (
            ".flux.yaml",
            "version: 1\npatchUpdated:\n  generators:\n  - command: kustomize build .\n  patchFile: flux-patch.yaml\n",
        ),
        ("base/kustomization.yaml", "resources:\n- deployment.yaml\n"),
        ("base/deployment.yaml", &base("stefanprodan/podinfo:1.0.0")),
        ("staging/kustomization.yaml", &overlay(&staging)),
        ("staging/namespace.yaml", &namespace(&staging)),
        (
            "staging/flux-patch.yaml",
            &flux_patch(&staging, automated, &format!("{image}:1.4.0")),
        ),
        ("production/kustomization.yaml", &overlay(&production)),
        ("production/namespace.yaml", &namespace(&production)),
        (
            "production/flux-patch.yaml",
            &flux_patch(&production, "    fluxcd.io/locked: \"true\"\n", &format!("{image}:1.4.0")),
        ),
        // Not a Kubernetes object, under a synced path: skipped.
        (".circleci/config.yml", "version: 2.1\n"),
    ]);
    e.w.repo.commit("podinfo with flux-patch.yaml per overlay");
    let kustomize = tether_testenv::tool("kustomize").display().to_string();
    let gen = [
        "--manifest-generation",
        "--kustomize-bin",
        kustomize.as_str(),
        "--git-path",
        "staging,production",
    ];
    let summary = e.run(&["daemon", "--once"], &gen).ok();
    assert!(summary.contains("created=4"), "{summary}");
    let image_in = |ns: &str| {
        let d = e.w.get(&["-n", ns, "deployment/podinfo"]).unwrap();
        (
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_owned(),
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"].clone(),
        )
    };
    assert_eq!(image_in(&staging), (format!("{image}:1.4.0"), 9898.into()));
    assert_eq!(image_in(&production).0, format!("{image}:1.4.0"));

    // Automation under semver:~1.4: 1.4.9, written into the staging patch file only.
    let out = e.run(&["update-images"], &gen);
    assert!(out.0.status.success(), "{}", out.stderr());
    assert!(out.stdout().contains("updates=1"), "{}", out.stdout());
    assert_eq!(e.files_of_head(), ["staging/flux-patch.yaml"]);
    assert_eq!(
        e.changed_lines_of_head(),
        [
            format!("-      - image: {image}:1.4.0"),
            format!("+      - image: {image}:1.4.9")
        ]
    );
    e.run(&["daemon", "--once"], &gen).ok();
    assert_eq!(image_in(&staging).0, format!("{image}:1.4.9"));
    assert_eq!(image_in(&production).0, format!("{image}:1.4.0"));

    // A lock through the CLI lands in the patch file too, as one commit with Flux v1's message.
    let workload = format!("{staging}:deployment/podinfo");
    let out = e.git_command(
        &[
            "lock",
            "--workload",
            &workload,
            "-m",
            "incident 42",
            "--user",
            "alice",
        ],
        &gen,
    );
    assert!(out.0.status.success(), "{}\n{}", out.stdout(), out.stderr());
    assert_eq!(e.files_of_head(), ["staging/flux-patch.yaml"]);
    assert_eq!(
        e.changed_lines_of_head(),
        [
            "+    fluxcd.io/locked: \"true\"",
            "+    fluxcd.io/locked_msg: \"incident 42\"",
            "+    fluxcd.io/locked_user: \"alice\""
        ]
    );
    assert_eq!(
        e.message_of_head().trim(),
        format!("Locked: {workload}\n\nincident 42\n\nRequested-by: alice")
    );
    // Locked: a newer allowed tag is left alone.
    e.push("stefanprodan/podinfo", "1.4.10", "2024-04-01T00:00:00Z");
    let out = e.run(&["update-images"], &gen);
    assert!(out.stdout().contains("updates=0"), "{}", out.stdout());
    // Unlocked: it is updated.
    let out = e.git_command(&["unlock", "--workload", &workload], &gen);
    assert!(out.0.status.success(), "{}", out.stderr());
    assert!(e
        .message_of_head()
        .starts_with(&format!("Unlocked: {workload}")));
    let out = e.run(&["update-images"], &gen);
    assert!(out.stdout().contains("updates=1"), "{}", out.stdout());
    assert_eq!(e.files_of_head(), ["staging/flux-patch.yaml"]);
    e.run(&["daemon", "--once"], &gen).ok();
    assert_eq!(image_in(&staging).0, format!("{image}:1.4.10"));
    for ns in [&staging, &production] {
        e.w.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
}

#[test]
fn a_plain_kustomize_overlay_is_automated_through_its_images_entry() {
    let e = Env::new("kimages");
    let n = e.w.n.clone();
    for (tag, created) in [
        ("1.4.0", "2024-01-01T00:00:00Z"),
        ("1.4.9", "2024-02-01T00:00:00Z"),
    ] {
        e.push("team/podinfo", tag, created);
    }
    let image = e.reg.repo("team/podinfo");
    let overlay = format!(
        "# staging\nnamespace: {n}\nresources:\n- namespace.yaml\n- ../base\nimages:\n- name: {image}\n  newTag: \"1.4.0\"\npatchesStrategicMerge:\n- automation.yaml\n"
    );
    e.w.repo.write(&[
        ("base/kustomization.yaml", "resources:\n- deployment.yaml\n"),
        ("base/deployment.yaml", &base(&format!("{image}:1.0.0"))),
        ("staging/kustomization.yaml", &overlay),
        ("staging/namespace.yaml", &namespace(&n)),
        (
            "staging/automation.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\n  annotations:\n    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.podinfod: semver:~1.4\n",
        ),
    ]);
    e.w.repo.commit("a kustomize overlay with images:");
    let kustomize = tether_testenv::tool("kustomize").display().to_string();
    let flags = [
        "--kustomize-bin",
        kustomize.as_str(),
        "--git-path",
        "staging",
    ];
    e.run(&["daemon", "--once"], &flags).ok();
    assert_eq!(e.image_of("podinfo"), format!("{image}:1.4.0"));
    let out = e.run(&["update-images"], &flags);
    assert!(
        out.stdout().contains("updates=1"),
        "{}\n{}",
        out.stdout(),
        out.stderr()
    );
    assert_eq!(e.files_of_head(), ["staging/kustomization.yaml"]);
    assert_eq!(
        e.changed_lines_of_head(),
        ["-  newTag: \"1.4.0\"", "+  newTag: \"1.4.9\""]
    );
    e.run(&["daemon", "--once"], &flags).ok();
    assert_eq!(e.image_of("podinfo"), format!("{image}:1.4.9"));
    e.w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

#[test]
fn a_failing_generator_changes_nothing_and_without_the_flag_the_config_is_ignored() {
    let w = crate::support::World::new("fluxfail");
    let n = w.n.clone();
    let cm = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {n}\n")
    };
    w.repo.write(&[
        ("ns/ns.yaml", &namespace(&n)),
        ("app/cm.yaml", &cm("plain")),
        (
            "app/.flux.yaml",
            "version: 1\ncommandUpdated:\n  generators:\n  - command: cat cm.yaml\n",
        ),
    ]);
    w.repo.commit("a generator");
    let flags = ["--manifest-generation", "--git-path", "ns,app"];
    let summary = w.once_file(&flags).ok();
    assert!(summary.contains("created=2"), "{summary}");

    w.repo.write(&[
        ("ns/more.yaml", &cm("more")),
        (
            "app/.flux.yaml",
            "version: 1\ncommandUpdated:\n  generators:\n  - command: echo 'chart not found' >&2; exit 2\n",
        ),
    ]);
    w.repo.commit("a broken generator");
    let err = w.once_file(&flags).failed();
    assert!(err.contains("app/.flux.yaml:1"), "{err}");
    assert!(err.contains("echo 'chart not found' >&2; exit 2"), "{err}");
    assert!(
        err.contains("chart not found") && err.contains("exit status: 2"),
        "{err}"
    );
    assert!(
        w.get(&["-n", &n, "configmap/more"]).is_none(),
        "a commit with a failing generator was partly applied"
    );

    // Without --manifest-generation the files are read as they are, and the .flux.yaml is named once.
    let run = w.once_file(&["--git-path", "ns,app"]);
    let summary = run.ok();
    assert!(summary.contains("created=1"), "{summary}");
    let log = run.stderr();
    assert!(
        log.contains("app/.flux.yaml") && log.contains("manifest generation is off"),
        "{log}"
    );
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}
