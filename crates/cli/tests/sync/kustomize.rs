//! Kustomize overlays synced from Git, built with the real kustomize binary.

use crate::support::World;

/// A kustomize binary that logs each run, so a test can count builds.
fn counting_kustomize(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let log = dir.join("runs.log");
    let bin = dir.join("kustomize");
    tether_testenv::write_executable(
        &bin,
        &format!(
            "#!/bin/sh\necho run >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            tether_testenv::tool("kustomize").display()
        ),
    );
    (bin.display().to_string(), log)
}

fn runs(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn an_overlay_syncs_as_kustomize_builds_it_is_built_once_per_change_and_a_broken_build_changes_nothing(
) {
    let w = World::new("kustomize");
    let n = w.n.clone();
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {n}\nspec:\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: registry.invalid/web:1.0\n"
    );
    let overlay = "namePrefix: staging-\nresources: [../base]\nimages:\n- name: registry.invalid/web\n  newTag: \"1.1\"\n";
    w.repo.write(&[
        ("namespaces/ns.yaml", &crate::support::namespace(&n)),
        // A CI config under a synced path is not a Kubernetes object: skipped, not an error.
        (
            "namespaces/.circleci/config.yml",
            "version: 2.1\njobs:\n  test:\n    docker: [{image: rust}]\n",
        ),
        (
            "deploy/base/kustomization.yaml",
            "resources: [deployment.yaml]\n",
        ),
        ("deploy/base/deployment.yaml", &deployment),
        ("deploy/staging/kustomization.yaml", overlay),
    ]);
    w.repo.commit("staging overlay");
    let tools = tempfile::tempdir().unwrap();
    let (bin, log) = counting_kustomize(tools.path());
    let flags = [
        "--git-path",
        "namespaces,deploy/staging",
        "--kustomize-bin",
        bin.as_str(),
    ];

    let summary = w.once_file(&flags).ok();
    assert!(summary.contains("created=2"), "{summary}");
    let d = w
        .get(&["-n", &n, "deployment/staging-web"])
        .expect("the overlay's Deployment");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.invalid/web:1.1"
    );
    assert!(
        w.get(&["-n", &n, "deployment/web"]).is_none(),
        "the base was applied on its own"
    );
    assert_eq!(runs(&log), 1);

    // The same commit again, in a new process: the build comes from the cache.
    let summary = w.once_file(&flags).ok();
    assert!(summary.contains("unchanged=2"), "{summary}");
    assert_eq!(runs(&log), 1, "an unchanged kustomization was built again");

    // A build that fails fails the sync as a whole, naming the kustomization, and applies nothing.
    w.repo.write(&[(
        "deploy/staging/kustomization.yaml",
        &overlay.replace("[../base]", "[../base, missing.yaml]"),
    )]);
    w.repo.write(&[(
        "namespaces/cm.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: new\n  namespace: {n}\n"),
    )]);
    w.repo.commit("a broken overlay");
    let err = w.once_file(&flags).failed();
    assert!(
        err.contains("deploy/staging/kustomization.yaml:1") && err.contains("missing.yaml"),
        "{err}"
    );
    assert!(
        w.get(&["-n", &n, "configmap/new"]).is_none(),
        "a broken commit was partly applied"
    );
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}
