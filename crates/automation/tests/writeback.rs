//! Changes written where the user keeps them: the patch file of a `.flux.yaml`, the updaters, a
//! kustomization's `images:` entry, an overlay's own patch. Built with the real kustomize of the test ground.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use tether_automation::writeback::{write, Change, Tree, WriteError};
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
    let tree = Tree {
        root: t.path(),
        paths: &paths,
        renderer: &r,
        default_namespace: "default",
    };
    let written = write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2"), lock()])],
    )
    .unwrap();
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
    let again = write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap();
    assert!(again.files.is_empty() && again.applied.is_empty());
}

#[test]
fn patch_updated_creates_the_patch_file_when_absent() {
    let t = flux_kustomize_layout(None);
    let r = renderer();
    let paths = vec!["staging".to_owned()];
    let tree = Tree {
        root: t.path(),
        paths: &paths,
        renderer: &r,
        default_namespace: "default",
    };
    write(
        &tree,
        &[(podinfo(), vec![lock(), image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap_err();
    // An entry without the container says how to add it; a lock alone creates the entry.
    write(&tree, &[(podinfo(), vec![lock()])]).unwrap();
    let patch = read(t.path(), "staging/flux-patch.yaml");
    assert!(patch.starts_with("---\n"), "{patch}");
    let rendered = r.render(t.path(), &paths).unwrap();
    let locked = rendered[0]
        .object
        .pointer("/metadata/annotations/tether.dev~1locked")
        .cloned();
    assert_eq!(locked, Some("true".into()), "{patch}");
}

#[test]
fn a_fresh_patch_file_entry_carries_the_image() {
    let t = flux_kustomize_layout(None);
    let r = renderer();
    let paths = vec!["production".to_owned()];
    let tree = Tree {
        root: t.path(),
        paths: &paths,
        renderer: &r,
        default_namespace: "default",
    };
    let prod = ObjectId::new("apps/v1", "Deployment", Some("demo-prod"), "podinfo");
    write(&tree, &[(prod, vec![image("stefanprodan/podinfo:1.5.0")])]).unwrap();
    let rendered = r.render(t.path(), &paths).unwrap();
    assert_eq!(
        rendered[0]
            .object
            .pointer("/spec/template/spec/containers/0/image"),
        Some(&"stefanprodan/podinfo:1.5.0".into())
    );
    assert_eq!(
        rendered[0]
            .object
            .pointer("/spec/template/spec/containers/0/ports/0/containerPort"),
        Some(&9898.into())
    );
    assert_eq!(read(t.path(), "base/deployment.yaml"), BASE);
}

#[test]
fn command_updated_runs_the_updaters() {
    let t = tree(&[
        (
            "app/.flux.yaml",
            "version: 1\ncommandUpdated:\n  generators:\n  - command: cat deployment.yaml.tmpl | sed \"s|IMAGE|$(cat image)|\"\n  updaters:\n  - containerImage:\n      command: printf '%s:%s' \"$FLUX_IMG\" \"$FLUX_TAG\" > image\n",
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
    let tree = Tree {
        root: t.path(),
        paths: &paths,
        renderer: &r,
        default_namespace: "default",
    };
    write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap();
    assert_eq!(read(t.path(), "app/image"), "stefanprodan/podinfo:1.4.2");
    // No policy updater: a lock is refused with what to add.
    let e = write(&tree, &[(podinfo(), vec![lock()])]).unwrap_err();
    assert!(e.to_string().contains("no updater sets policies"), "{e}");
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
    let tree = Tree {
        root: t.path(),
        paths: &paths,
        renderer: &r,
        default_namespace: "default",
    };
    let written = write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap();
    assert_eq!(written.files, ["staging/kustomization.yaml"]);
    assert_eq!(
        read(t.path(), "staging/kustomization.yaml"),
        OVERLAY.replace("newTag: 1.4.0", "newTag: \"1.4.2\"")
    );
    let written = write(&tree, &[(podinfo(), vec![lock()])]).unwrap();
    assert_eq!(written.files, ["staging/policy.yaml"]);
    assert!(read(t.path(), "staging/policy.yaml").contains("    fluxcd.io/locked: \"true\"\n"));
    assert_eq!(read(t.path(), "base/deployment.yaml"), BASE);
}

#[test]
fn a_kustomization_without_images_gets_the_edit_in_the_file_defining_the_container() {
    let t = tree(&[
        ("app/deployment.yaml", BASE),
        (
            "app/kustomization.yaml",
            "namespace: demo\nresources:\n- deployment.yaml\n",
        ),
    ]);
    let r = renderer();
    let paths = vec!["app".to_owned()];
    let tree = Tree {
        root: t.path(),
        paths: &paths,
        renderer: &r,
        default_namespace: "default",
    };
    write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap();
    assert_eq!(
        read(t.path(), "app/deployment.yaml"),
        BASE.replace("podinfo:1.4.0", "podinfo:1.4.2")
    );
}

#[test]
fn a_change_that_an_overlay_overrides_is_refused() {
    // The overlay's patch sets the image after the base: editing the base would not deploy.
    let t = tree(&[
        ("base/deployment.yaml", BASE),
        ("base/kustomization.yaml", "resources:\n- deployment.yaml\n"),
        (
            "staging/kustomization.yaml",
            "namespace: demo\nresources:\n- ../base\npatchesStrategicMerge:\n- image.yaml\n",
        ),
        (
            "staging/image.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\nspec:\n  template:\n    spec:\n      containers:\n      - name: podinfod\n        image: stefanprodan/podinfo:1.3.0\n",
        ),
    ]);
    let r = renderer();
    let paths = vec!["staging".to_owned()];
    let tree = Tree {
        root: t.path(),
        paths: &paths,
        renderer: &r,
        default_namespace: "default",
    };
    // The defining file with that image is the overlay's patch, which is a patch, not a resource.
    let e = write(
        &tree,
        &[(podinfo(), vec![image("stefanprodan/podinfo:1.4.2")])],
    )
    .unwrap_err();
    assert!(matches!(e, WriteError::Refused { .. }), "{e}");
}
