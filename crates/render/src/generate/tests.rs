#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: demo
spec:
  selector:
    matchLabels: {app: podinfo}
  template:
    metadata:
      labels: {app: podinfo}
    spec:
      containers:
      - name: podinfod
        image: stefanprodan/podinfo:1.4.0
        ports:
        - containerPort: 9898
";

const PATCH_CONFIG: &str = "version: 1
patchUpdated:
  generators:
  - command: cat ../base/*.yaml
  patchFile: flux-patch.yaml
";

#[test]
fn the_nearest_flux_yaml_above_the_git_path_applies_and_commands_run_in_the_git_path() {
    let t = tree(&[
        (".flux.yaml", PATCH_CONFIG),
        ("base/deployment.yaml", DEPLOYMENT),
        ("staging/flux-patch.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\n  namespace: demo\n  annotations:\n    fluxcd.io/automated: \"true\"\nspec:\n  template:\n    spec:\n      $setElementOrder/containers:\n      - name: podinfod\n      containers:\n      - image: stefanprodan/podinfo:1.4.2\n        name: podinfod\n"),
    ]);
    let config = find(t.path(), "staging").unwrap().unwrap();
    assert_eq!(config.file, ".flux.yaml");
    assert_eq!(config.dir, "staging");
    assert_eq!(
        config.patch_file().as_deref(),
        Some("staging/flux-patch.yaml")
    );
    let out = config
        .generate(t.path(), &GenerationConfig::default())
        .unwrap();
    assert_eq!(out.len(), 1);
    let o = &out[0].object;
    assert_eq!(
        o.pointer("/spec/template/spec/containers/0/image"),
        Some(&Value::from("stefanprodan/podinfo:1.4.2"))
    );
    assert_eq!(
        o.pointer("/spec/template/spec/containers/0/ports/0/containerPort"),
        Some(&Value::from(9898))
    );
    assert_eq!(
        o.pointer("/metadata/annotations/fluxcd.io~1automated"),
        Some(&Value::from("true"))
    );
    assert!(o.to_string().find("$setElementOrder").is_none(), "{o}");
    assert_eq!(out[0].source.to_string(), ".flux.yaml:1");
}

#[test]
fn a_missing_patch_file_means_no_patches_and_a_stale_patch_is_an_error() {
    let t = tree(&[
        (".flux.yaml", PATCH_CONFIG),
        ("base/deployment.yaml", DEPLOYMENT),
    ]);
    std::fs::create_dir_all(t.path().join("staging")).unwrap();
    let config = find(t.path(), "staging").unwrap().unwrap();
    assert_eq!(
        config
            .generate(t.path(), &GenerationConfig::default())
            .unwrap()
            .len(),
        1
    );
    std::fs::write(
        t.path().join("staging/flux-patch.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: gone\n  namespace: demo\n",
    )
    .unwrap();
    let errors = config
        .generate(t.path(), &GenerationConfig::default())
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    let e = errors[0].to_string();
    assert!(
        e.starts_with("staging/flux-patch.yaml:1: patches demo:deployment/gone"),
        "{e}"
    );
}

#[test]
fn a_failing_generator_names_the_config_the_command_and_its_stderr() {
    let t = tree(&[(
        "app/.flux.yaml",
        "version: 1\ncommandUpdated:\n  generators:\n  - command: echo 'no such overlay' >&2; exit 3\n",
    )]);
    let config = find(t.path(), "app").unwrap().unwrap();
    let e = config
        .generate(t.path(), &GenerationConfig::default())
        .unwrap_err();
    let e = e[0].to_string();
    assert!(e.starts_with("app/.flux.yaml:1: "), "{e}");
    assert!(e.contains("`echo 'no such overlay' >&2; exit 3`"), "{e}");
    assert!(
        e.contains("exit status: 3") && e.contains("no such overlay"),
        "{e}"
    );
}

#[test]
fn a_generator_that_stalls_is_stopped_at_its_timeout() {
    let t = tree(&[(
        ".flux.yaml",
        "version: 1\ncommandUpdated:\n  generators:\n  - command: sleep 30\n    timeout: 1s\n",
    )]);
    let config = find(t.path(), "").unwrap().unwrap();
    let started = std::time::Instant::now();
    let e = config
        .generate(t.path(), &GenerationConfig::default())
        .unwrap_err();
    assert!(
        e[0].message.contains("did not finish within 1s"),
        "{}",
        e[0]
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn invalid_configs_say_what_to_write() {
    for (text, want) in [
        ("patchUpdated:\n  generators: [{command: x}]\n  patchFile: p.yaml\n", "`version: 1` is missing"),
        ("version: 2\nscanForFiles: {}\n", "version 2 is not supported"),
        ("version: 1\n", "exactly one of"),
        ("version: 1\nscanForFiles: {}\npatchUpdated: {generators: [{command: x}], patchFile: p}\n", "exactly one of"),
        ("version: 1\npatchUpdated:\n  generators: []\n  patchFile: p.yaml\n", "generators is empty"),
        ("version: 1\npatchUpdated:\n  generators: [{command: x}]\n  patchFile: ../../etc/passwd\n", "inside the repository"),
        ("version: 1\ncommandUpdated:\n  generators: [{command: x, timeout: 10ms}]\n", "below the minimum"),
        ("version: 1\ncommandUpdated:\n  generator: [{command: x}]\n", "not a valid .flux.yaml"),
    ] {
        let e = parse("a/.flux.yaml", "a", text).unwrap_err();
        assert!(e.to_string().starts_with("a/.flux.yaml:1: "), "{e}");
        assert!(e.message.contains(want), "{text}: {e}");
    }
    assert_eq!(
        parse("f", "", "version: 1\nscanForFiles: {}\n")
            .unwrap()
            .mode,
        Mode::Scan
    );
}

#[test]
fn updaters_get_the_environment_flux_v1_gave() {
    let t = tree(&[(
        "app/.flux.yaml",
        "version: 1\ncommandUpdated:\n  generators: [{command: 'true'}]\n  updaters:\n  - containerImage:\n      command: echo \"$FLUX_WORKLOAD $FLUX_WL_NS $FLUX_WL_KIND $FLUX_WL_NAME $FLUX_CONTAINER $FLUX_IMG $FLUX_TAG\" > image.out\n    policy:\n      command: echo \"$FLUX_POLICY=${FLUX_POLICY_VALUE-unset}\" >> policy.out\n",
    )]);
    let config = find(t.path(), "app").unwrap().unwrap();
    let wl = ("demo", "Deployment", "web");
    let g = GenerationConfig::default();
    config
        .update(
            t.path(),
            &g,
            wl,
            &UpdateRequest::Image {
                container: "c",
                image: "r/app",
                tag: "1.2",
            },
        )
        .unwrap();
    config
        .update(
            t.path(),
            &g,
            wl,
            &UpdateRequest::Policy {
                name: "locked",
                value: Some("true"),
            },
        )
        .unwrap();
    config
        .update(
            t.path(),
            &g,
            wl,
            &UpdateRequest::Policy {
                name: "locked",
                value: None,
            },
        )
        .unwrap();
    let read = |f: &str| std::fs::read_to_string(t.path().join("app").join(f)).unwrap();
    assert_eq!(
        read("image.out"),
        "demo:deployment/web demo deployment web c r/app 1.2\n"
    );
    assert_eq!(read("policy.out"), "locked=true\nlocked=unset\n");
}

#[test]
fn an_updater_missing_for_a_change_is_an_error() {
    let config = parse(
        ".flux.yaml",
        "",
        "version: 1\ncommandUpdated:\n  generators: [{command: 'true'}]\n  updaters:\n  - policy: {command: 'true'}\n",
    )
    .unwrap();
    let t = tempfile::tempdir().unwrap();
    let e = config
        .update(
            t.path(),
            &GenerationConfig::default(),
            ("demo", "Deployment", "web"),
            &UpdateRequest::Image {
                container: "c",
                image: "r",
                tag: "1",
            },
        )
        .unwrap_err();
    assert!(e.contains("no updater sets images"), "{e}");
}

#[test]
fn commands_see_no_agent_environment_and_no_git_directory() {
    let t = tree(&[
        (
            "app/.flux.yaml",
            "version: 1\ncommandUpdated:\n  generators:\n  - command: env | cut -d= -f1 | sort | tr '\\n' ' ' >&2; ls -a .. >&2; exit 1\n",
        ),
        (".git/config", "[core]\n"),
    ]);
    let config = find(t.path(), "app").unwrap().unwrap();
    let e = config
        .generate(t.path(), &GenerationConfig::default())
        .unwrap_err();
    let stderr = e[0].message.clone();
    let names: Vec<&str> = stderr
        .split(": ")
        .last()
        .unwrap_or_default()
        .split([' ', '|'])
        .filter(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !w.is_empty())
        .collect();
    for name in &names {
        assert!(
            [
                "PATH",
                "HOME",
                "GIT_TERMINAL_PROMPT",
                "PWD",
                "SHLVL",
                "OLDPWD",
                "_"
            ]
            .contains(name),
            "{name} reached the command: {stderr}"
        );
    }
    assert!(names.contains(&"PATH"), "{stderr}");
    assert!(!stderr.contains(".git"), "the command saw .git: {stderr}");
}
