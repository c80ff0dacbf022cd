//! Kustomization directories rendered with the real kustomize binary the test ground builds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::Duration;

use tether_render::{KustomizeConfig, Renderer};
use tether_testenv::{tree, write_executable};

fn config(bin: PathBuf, cache: Option<&Path>) -> KustomizeConfig {
    KustomizeConfig {
        bin,
        allow_remote: false,
        timeout: Duration::from_secs(60),
        cache_dir: cache.map(Path::to_path_buf),
    }
}

fn renderer(cache: Option<&Path>) -> Renderer {
    Renderer::new(config(tether_testenv::tool("kustomize"), cache))
}

const BASE_DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
spec:
  selector:
    matchLabels: {app: podinfo}
  template:
    metadata:
      labels: {app: podinfo}
    spec:
      containers:
      - name: podinfod
        image: ghcr.io/example/podinfo:1.4.0
";

/// The layout of a Flux v1 kustomize repo: a base and two overlays.
fn layout() -> tempfile::TempDir {
    tree(&[
        ("base/kustomization.yaml", "resources: [deployment.yaml]\n"),
        ("base/deployment.yaml", BASE_DEPLOY),
        (
            "staging/kustomization.yaml",
            "namespace: staging\nnamePrefix: staging-\nresources: [../base]\nimages:\n- name: ghcr.io/example/podinfo\n  newTag: 1.4.1\n",
        ),
        (
            "production/kustomization.yaml",
            "namespace: production\nresources: [../base]\n",
        ),
        ("production/notes.yaml", "# not applied: production is built by kustomize\nfoo: bar\n"),
    ])
}

#[test]
fn an_overlay_is_built_as_one_unit_and_its_kustomization_is_never_an_object() {
    let t = layout();
    let r = renderer(None);
    let rs = r.render(t.path(), &["staging".into()]).unwrap();
    assert_eq!(rs.len(), 1, "{rs:?}");
    let d = &rs[0];
    assert_eq!(d.name(), "staging-podinfo");
    assert_eq!(d.namespace(), Some("staging"));
    assert_eq!(
        d.object["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/example/podinfo:1.4.1"
    );
    assert_eq!(d.source.to_string(), "staging/kustomization.yaml:1");

    // Walking the whole repository builds each kustomization once and reads none of their files as
    // manifests (production/notes.yaml would otherwise be a skipped document, base/deployment.yaml a
    // duplicate of the base build).
    let rs = r.render(t.path(), &[]).unwrap();
    let mut names: Vec<String> = rs
        .iter()
        .map(|r| format!("{}/{} {}", r.namespace().unwrap_or("-"), r.name(), r.source))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "-/podinfo base/kustomization.yaml:1",
            "production/podinfo production/kustomization.yaml:1",
            "staging/staging-podinfo staging/kustomization.yaml:1"
        ]
    );
}

#[test]
fn an_unchanged_kustomization_is_not_built_again_even_after_a_restart() {
    let t = layout();
    let cache = tempfile::tempdir().unwrap();
    let r = renderer(Some(cache.path()));
    r.render(t.path(), &["staging".into()]).unwrap();
    r.render(t.path(), &["staging".into()]).unwrap();
    assert_eq!(r.kustomize_runs(), 1);
    // A new process (a restarted daemon, `tether daemon --once`) finds the build on disk.
    let again = renderer(Some(cache.path()));
    again.render(t.path(), &["staging".into()]).unwrap();
    assert_eq!(again.kustomize_runs(), 0);
    // A change in the base the overlay uses is a change of the overlay.
    std::fs::write(
        t.path().join("base/deployment.yaml"),
        BASE_DEPLOY.replace("1.4.0", "1.5.0"),
    )
    .unwrap();
    again.render(t.path(), &["staging".into()]).unwrap();
    assert_eq!(again.kustomize_runs(), 1);
}

#[test]
fn a_remote_base_is_refused_before_kustomize_runs() {
    let t = tree(&[(
        "app/kustomization.yaml",
        "resources:\n- github.com/example/config//base?ref=v1\n",
    )]);
    let r = renderer(None);
    let err = r.render(t.path(), &["app".into()]).unwrap_err().to_string();
    assert!(
        err.contains("app/kustomization.yaml:1")
            && err.contains("github.com/example/config//base?ref=v1")
            && err.contains("network"),
        "{err}"
    );
    assert_eq!(r.kustomize_runs(), 0);
}

#[test]
fn a_failed_build_names_the_command_its_status_and_stderr() {
    let t = tree(&[("app/kustomization.yaml", "resources: [missing.yaml]\n")]);
    let err = renderer(None)
        .render(t.path(), &["app".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("app/kustomization.yaml:1")
            && err.contains("kustomize build")
            && err.contains("exit status")
            && err.contains("missing.yaml"),
        "{err}"
    );
}

#[test]
fn a_build_that_hangs_is_stopped_at_its_deadline() {
    let t = tree(&[("app/kustomization.yaml", "resources: []\n")]);
    let bin = t.path().join("slow-kustomize");
    write_executable(&bin, "#!/bin/sh\nexec sleep 30\n");
    let mut cfg = config(bin, None);
    cfg.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = Renderer::new(cfg)
        .render(t.path(), &["app".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not finish within"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "not stopped");
}

#[test]
fn a_kustomization_cannot_be_led_out_of_the_checkout_by_a_link() {
    let outside = tree(&[(
        "secret.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leaked\n",
    )]);
    let t = tree(&[("app/kustomization.yaml", "resources:\n- leak.yaml\n")]);
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        t.path().join("app/leak.yaml"),
    )
    .unwrap();
    let err = renderer(None)
        .render(t.path(), &["app".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("app/leak.yaml") && err.contains("outside the repository"),
        "{err}"
    );
    assert!(!err.contains("leaked"), "{err}");
}

#[test]
fn a_secret_generators_values_never_reach_an_error() {
    // Render errors go to Events, notifications and the status page: kustomize's stderr and the parser's
    // quote of the lines around a syntax error would carry the literals of a secretGenerator with them.
    for (what, kustomization, names) in [
        (
            "a literal without '='",
            "secretGenerator:\n- name: db\n  literals:\n  - password hunter2-typo\n",
            &["kustomize build", "app/kustomization.yaml:1"][..],
        ),
        (
            "an env file with a line that is not UTF-8",
            "secretGenerator:\n- name: db\n  envs: [db.env]\n",
            &["kustomize build", "app/kustomization.yaml:1"][..],
        ),
        (
            "a syntax error next to a literal",
            "secretGenerator:\n- name: db\n  literals:\n  - password=hunter2-typo\n  - [broken\n",
            &["app/kustomization.yaml is not valid YAML"][..],
        ),
    ] {
        let t = tree(&[("app/kustomization.yaml", kustomization)]);
        // Not UTF-8, with Windows line ends: kustomize refuses the line, quoting it as text and as bytes.
        std::fs::write(
            t.path().join("app/db.env"),
            b"user=admin\r\npassword=hunter2-in-env\xff\r\n",
        )
        .unwrap();
        let err = renderer(None)
            .render(t.path(), &["app".into()])
            .unwrap_err()
            .to_string();
        for name in names {
            assert!(err.contains(name), "{what}: {err}");
        }
        assert!(!err.contains("hunter2"), "{what}: {err}");
        // `hunter2` as kustomize prints the bytes of a line that is not UTF-8.
        assert!(!err.contains("104 117 110 116 101 114 50"), "{what}: {err}");
    }
}
