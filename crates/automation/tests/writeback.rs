//! Changes written where the user keeps them: the patch file of a `.flux.yaml`, the updaters, a
//! kustomization's `images:` entry, an overlay's own patch. Built with the real kustomize of the test ground.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use tether_automation::writeback::{write, Change, Paths, Tree, WriteError, Written};
use tether_core::ObjectId;
use tether_render::{GenerationConfig, KustomizeConfig, Renderer};
use tether_testenv::tree;

fn renderer() -> Renderer {
    let bin = tether_testenv::tool("kustomize");
    Renderer::new(KustomizeConfig {
        bin: bin.clone(),
        allow_remote: false,
        timeout: Duration::from_secs(60),
        cache_dir: None,
    })
    .with_generation(GenerationConfig {
        timeout: Duration::from_secs(60),
        tools_dir: bin.parent().map(Path::to_path_buf),
    })
}

fn podinfo() -> ObjectId {
    ObjectId::new("apps/v1", "Deployment", Some("demo"), "podinfo")
}

fn image(to: &str) -> Change {
    Change::Image {
        container: "podinfod".into(),
        image: to.into(),
    }
}

fn lock() -> Change {
    Change::SetPolicy {
        name: "locked".into(),
        value: "true".into(),
    }
}

/// The result of a write that refused nothing.
fn ok(w: Written) -> Written {
    assert!(w.refused.is_empty(), "refused: {:?}", w.refused);
    w
}

/// The one refusal of a write.
fn refusal(w: Written) -> WriteError {
    assert!(w.applied.is_empty(), "applied: {:?}", w.applied);
    let mut r = w.refused;
    assert_eq!(r.len(), 1, "{r:?}");
    r.remove(0).1
}

fn tree_at<'a>(root: &'a Path, paths: &'a [String], r: &'a Renderer) -> Tree<'a> {
    Tree {
        root,
        at: Paths {
            paths,
            renderer: r,
            default_namespace: "default",
        },
    }
}

fn read(root: &Path, file: &str) -> String {
    std::fs::read_to_string(root.join(file)).unwrap()
}

const BASE: &str = "apiVersion: apps/v1
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
        image: stefanprodan/podinfo:1.4.0
        ports:
        - containerPort: 9898
";

const FLUX_PATCH: &str = "# Flux annotations and the automated image of staging
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: demo
  annotations:
    fluxcd.io/automated: \"true\"
    fluxcd.io/tag.podinfod: semver:~1.4
spec:
  template:
    spec:
      $setElementOrder/containers:
      - name: podinfod
      containers:
      - image: stefanprodan/podinfo:1.4.1
        name: podinfod
";

fn flux_kustomize_layout(patch: Option<&str>) -> tempfile::TempDir {
    let mut files = vec![
        (
            ".flux.yaml",
            "version: 1\npatchUpdated:\n  generators:\n  - command: kustomize build .\n  patchFile: flux-patch.yaml\n",
        ),
        ("base/deployment.yaml", BASE),
        ("base/kustomization.yaml", "resources:\n- deployment.yaml\n"),
        (
            "staging/kustomization.yaml",
            "namespace: demo\nresources:\n- ../base\n",
        ),
        (
            "production/kustomization.yaml",
            "namespace: demo-prod\nresources:\n- ../base\n",
        ),
    ];
    if let Some(p) = patch {
        files.push(("staging/flux-patch.yaml", p));
    }
    tree(&files)
}

#[test]
fn patch_updated_changes_go_into_the_patch_file_only() {
    let t = flux_kustomize_layout(Some(FLUX_PATCH));
    let r = renderer();
    let paths = vec!["staging".to_owned()];
    let tree = tree_at(t.path(), &paths, &r);
    let written = ok(write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2"), lock()])],
    )
    .unwrap());
    assert_eq!(written.files, ["staging/flux-patch.yaml"]);
    assert_eq!(written.applied.len(), 2);
    let want = FLUX_PATCH
        .replace("podinfo:1.4.1", "podinfo:1.4.2")
        .replace(
            "    fluxcd.io/tag.podinfod: semver:~1.4\n",
            "    fluxcd.io/tag.podinfod: semver:~1.4\n    fluxcd.io/locked: \"true\"\n",
        );
    assert_eq!(read(t.path(), "staging/flux-patch.yaml"), want);
    assert_eq!(read(t.path(), "base/deployment.yaml"), BASE);
    // Already so: nothing to do.
    let again = ok(write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap());
    assert!(again.files.is_empty() && again.applied.is_empty());
}

#[test]
fn a_patch_entry_holding_only_annotations_gets_the_container_and_a_missing_file_is_created() {
    let t = flux_kustomize_layout(None);
    let r = renderer();
    let paths = vec!["staging".to_owned()];
    let tree = tree_at(t.path(), &paths, &r);
    // A lock first creates the entry with annotations only, as Flux v1 wrote them...
    ok(write(&tree, &[(podinfo(), vec![lock()])]).unwrap());
    let patch = read(t.path(), "staging/flux-patch.yaml");
    assert!(
        patch.starts_with("---\n") && !patch.contains("containers"),
        "{patch}"
    );
    // ...then automation adds the container to that entry.
    ok(write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap());
    let rendered = r.render(t.path(), &paths).unwrap();
    let o = &rendered[0].object;
    assert_eq!(
        o.pointer("/metadata/annotations/tether.dev~1locked"),
        Some(&"true".into())
    );
    assert_eq!(
        o.pointer("/spec/template/spec/containers/0/image"),
        Some(&"stefanprodan/podinfo:1.4.2".into())
    );
    assert_eq!(
        o.pointer("/spec/template/spec/containers/0/ports/0/containerPort"),
        Some(&9898.into())
    );
    assert_eq!(read(t.path(), "base/deployment.yaml"), BASE);
}

#[test]
fn a_fresh_patch_file_entry_carries_the_image() {
    let t = flux_kustomize_layout(None);
    let r = renderer();
    let paths = vec!["production".to_owned()];
    let tree = tree_at(t.path(), &paths, &r);
    let prod = ObjectId::new("apps/v1", "Deployment", Some("demo-prod"), "podinfo");
    ok(write(&tree, &[(prod, vec![image("stefanprodan/podinfo:1.5.0")])]).unwrap());
    let rendered = r.render(t.path(), &paths).unwrap();
    assert_eq!(
        rendered[0]
            .object
            .pointer("/spec/template/spec/containers/0/image"),
        Some(&"stefanprodan/podinfo:1.5.0".into())
    );
    assert_eq!(read(t.path(), "base/deployment.yaml"), BASE);
}

#[test]
fn command_updated_runs_the_updaters_and_an_updater_that_changes_nothing_is_refused() {
    let t = tree(&[
        (
            "app/.flux.yaml",
            "version: 1\ncommandUpdated:\n  generators:\n  - command: cat deployment.yaml.tmpl | sed \"s|IMAGE|$(cat image)|\"\n  updaters:\n  - containerImage:\n      command: printf '%s:%s' \"$FLUX_IMG\" \"$FLUX_TAG\" > image\n    policy:\n      command: 'true'\n",
        ),
        ("app/image", "stefanprodan/podinfo:1.4.0"),
        (
            "app/deployment.yaml.tmpl",
            &BASE
                .replace("stefanprodan/podinfo:1.4.0", "IMAGE")
                .replace("  name: podinfo\n", "  name: podinfo\n  namespace: demo\n"),
        ),
    ]);
    let r = renderer();
    let paths = vec!["app".to_owned()];
    let tree = tree_at(t.path(), &paths, &r);
    let written = ok(write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap());
    assert_eq!(written.files, ["app/image"]);
    assert_eq!(read(t.path(), "app/image"), "stefanprodan/podinfo:1.4.2");
    // The policy updater exits 0 but changes nothing: the lock would not deploy, so it is refused.
    let e = refusal(write(&tree, &[(podinfo(), vec![lock()])]).unwrap());
    assert!(matches!(e, WriteError::NotEffective { .. }), "{e}");
    assert!(e.to_string().contains("locked=<unset>"), "{e}");
}

const OVERLAY: &str = "# staging pins its own tag
namespace: demo
resources:
- ../base
images:
- name: stefanprodan/podinfo
  newTag: 1.4.0 # bumped by automation
patchesStrategicMerge:
- policy.yaml
";

#[test]
fn a_kustomize_overlay_gets_its_new_tag_in_images_and_its_policy_in_its_own_patch() {
    let t = tree(&[
        ("base/deployment.yaml", BASE),
        ("base/kustomization.yaml", "resources:\n- deployment.yaml\n"),
        ("staging/kustomization.yaml", OVERLAY),
        (
            "staging/policy.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\n  annotations:\n    fluxcd.io/automated: \"true\"\n",
        ),
    ]);
    let r = renderer();
    let paths = vec!["staging".to_owned()];
    let tree = tree_at(t.path(), &paths, &r);
    let written = ok(write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap());
    assert_eq!(written.files, ["staging/kustomization.yaml"]);
    assert_eq!(
        read(t.path(), "staging/kustomization.yaml"),
        OVERLAY.replace("newTag: 1.4.0", "newTag: \"1.4.2\"")
    );
    let written = ok(write(&tree, &[(podinfo(), vec![lock()])]).unwrap());
    assert_eq!(written.files, ["staging/policy.yaml"]);
    assert!(read(t.path(), "staging/policy.yaml").contains("    fluxcd.io/locked: \"true\"\n"));
    assert_eq!(read(t.path(), "base/deployment.yaml"), BASE);
}

#[test]
fn a_kustomization_without_images_gets_the_edit_in_its_own_file_defining_the_container() {
    let t = tree(&[
        ("app/deployment.yaml", BASE),
        (
            "app/kustomization.yaml",
            "namespace: demo\nresources:\n- deployment.yaml\n",
        ),
    ]);
    let r = renderer();
    let paths = vec!["app".to_owned()];
    let tree = tree_at(t.path(), &paths, &r);
    ok(write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap());
    assert_eq!(
        read(t.path(), "app/deployment.yaml"),
        BASE.replace("podinfo:1.4.0", "podinfo:1.4.2")
    );
}

#[test]
fn a_base_other_overlays_share_is_never_edited() {
    let t = tree(&[
        ("base/deployment.yaml", BASE),
        (
            "base/kustomization.yaml",
            "resources:\n- deployment.yaml\nimages:\n- name: stefanprodan/podinfo\n  newTag: 1.4.0\n",
        ),
        (
            "staging/kustomization.yaml",
            "namespace: demo\nresources:\n- ../base\n",
        ),
    ]);
    let r = renderer();
    let paths = vec!["staging".to_owned()];
    let tree = tree_at(t.path(), &paths, &r);
    let e = refusal(
        write(
            &tree,
            &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
        )
        .unwrap(),
    );
    assert!(e.to_string().contains("other overlays may share"), "{e}");
    std::fs::write(
        t.path().join("base/kustomization.yaml"),
        "resources:\n- deployment.yaml\n",
    )
    .unwrap();
    let e = refusal(
        write(
            &tree,
            &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
        )
        .unwrap(),
    );
    assert!(e.to_string().contains("own kustomization"), "{e}");
    assert_eq!(read(t.path(), "base/deployment.yaml"), BASE);
}

#[test]
fn an_images_entry_shared_with_another_workload_is_refused_and_the_others_go_ahead() {
    let second = BASE
        .replace("name: podinfo\n", "name: backend\n")
        .replace("app: podinfo", "app: backend");
    let third = BASE
        .replace("name: podinfo\n", "name: other\n")
        .replace("app: podinfo", "app: other")
        .replace("stefanprodan/podinfo:1.4.0", "team/other:1.0");
    let t = tree(&[
        ("app/deployment.yaml", BASE),
        ("app/backend.yaml", &second),
        ("app/other.yaml", &third),
        (
            "app/kustomization.yaml",
            "namespace: demo\nresources:\n- deployment.yaml\n- backend.yaml\n- other.yaml\nimages:\n- name: stefanprodan/podinfo\n  newTag: 1.4.0\n",
        ),
    ]);
    let r = renderer();
    let paths = vec!["app".to_owned()];
    let tree = tree_at(t.path(), &paths, &r);
    let other = ObjectId::new("apps/v1", "Deployment", Some("demo"), "other");
    let written = write(
        &tree,
        &[
            (podinfo(), vec![image("stefanprodan/podinfo:1.4.2")]),
            (
                other.clone(),
                vec![Change::Image {
                    container: "podinfod".into(),
                    image: "team/other:1.1".into(),
                }],
            ),
        ],
    )
    .unwrap();
    // Editing the shared entry would also move `backend` (maybe locked): refused, files put back.
    assert_eq!(written.refused.len(), 1, "{:?}", written.refused);
    let (id, e) = &written.refused[0];
    assert_eq!(id, &podinfo());
    assert!(
        e.to_string()
            .contains("would also change demo:deployment/backend"),
        "{e}"
    );
    assert!(read(t.path(), "app/kustomization.yaml").contains("newTag: 1.4.0"));
    // The other workload's own file went ahead.
    assert_eq!(written.applied.len(), 1);
    assert_eq!(written.applied[0].0, other);
    assert!(read(t.path(), "app/other.yaml").contains("team/other:1.1"));
}
