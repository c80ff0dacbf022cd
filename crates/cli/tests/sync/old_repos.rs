//! Flux v1 era repositories on a current cluster: removed API versions are named, with their replacement.

use crate::support::World;

#[test]
fn removed_api_versions_fail_the_sync_with_one_line_each_and_nothing_is_applied() {
    let w = World::new("oldrepo");
    let n = w.n.clone();
    w.repo.write(&[
        (
            "ns.yaml",
            &crate::support::namespace(&n),
        ),
        (
            "hpa.yaml",
            &format!(
                "apiVersion: autoscaling/v2beta1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\n  namespace: {n}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  minReplicas: 1\n  maxReplicas: 3\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, targetAverageUtilization: 80}}\n"
            ),
        ),
        (
            "ingress.yaml",
            &format!(
                "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: web\n  namespace: {n}\nspec:\n  backend: {{serviceName: web, servicePort: 80}}\n"
            ),
        ),
    ]);
    w.repo.commit("a 2019 repository");
    let err = w.once_file(&[]).failed();
    let hpa = err
        .lines()
        .find(|l| l.contains("hpa.yaml:1"))
        .unwrap_or_else(|| panic!("no line for the HPA in {err}"));
    assert!(
        hpa.contains("removed in Kubernetes 1.25") && hpa.contains("autoscaling/v2"),
        "{hpa}"
    );
    let ingress = err
        .lines()
        .find(|l| l.contains("ingress.yaml:1"))
        .unwrap_or_else(|| panic!("no line for the Ingress in {err}"));
    assert!(
        ingress.contains("removed in Kubernetes 1.22") && ingress.contains("networking.k8s.io/v1"),
        "{ingress}"
    );
    assert!(
        w.get(&["namespace", &n]).is_none(),
        "a failed commit was partly applied"
    );
}

fn commits(w: &World) -> Vec<String> {
    let log = tether_testenv::run(tether_testenv::git::git(&w.repo.bare).args([
        "log",
        "--format=%s",
        "main",
    ]));
    log.lines().map(str::to_owned).collect()
}

#[test]
fn migrate_converts_removed_versions_in_one_commit_and_the_next_sync_succeeds() {
    let w = World::new("migrate");
    let n = w.n.clone();
    let hpa = format!(
        "# scales web on CPU\napiVersion: autoscaling/v2beta1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\n  namespace: {n}\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: web\n  minReplicas: 1\n  maxReplicas: 3 # keep it small\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      targetAverageUtilization: 80\n"
    );
    let ingress = format!(
        "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: web\n  namespace: {n}\nspec:\n  rules:\n  - host: web.example.com\n    http:\n      paths:\n      - path: /\n        backend:\n          serviceName: web\n          servicePort: 80\n"
    );
    let service = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: {n}\nspec:\n  ports:\n  - port: 80\n  selector:\n    app: web\n"
    );
    w.repo.write(&[
        ("ns.yaml", &crate::support::namespace(&n)),
        ("web/hpa.yaml", &hpa),
        ("web/ingress.yaml", &ingress),
        ("web/service.yaml", &service),
    ]);
    w.repo.commit("a 2019 repository");
    let err = w.once_file(&[]).failed();
    assert!(
        err.contains("web/hpa.yaml:2") || err.contains("web/hpa.yaml:1"),
        "{err}"
    );
    assert!(err.contains("tether migrate"), "{err}");
    let url = w.repo.file_url();

    // --dry-run shows the change, checked by the server, and commits nothing.
    let run = w.tether(&["migrate", "--git-url", &url, "--dry-run"]);
    assert!(run.0.status.success(), "{}\n{}", run.stdout(), run.stderr());
    let out = run.stdout();
    assert!(
        out.contains("-apiVersion: autoscaling/v2beta1")
            && out.contains("+apiVersion: autoscaling/v2"),
        "{out}"
    );
    assert!(
        out.contains("averageUtilization: 80") && out.contains("dry run"),
        "{out}"
    );
    assert_eq!(commits(&w).len(), 1, "--dry-run committed");

    let run = w.tether(&["migrate", "--git-url", &url]);
    assert!(run.0.status.success(), "{}\n{}", run.stdout(), run.stderr());
    let log = commits(&w);
    assert_eq!(log.len(), 2);
    assert!(log[0].starts_with("Migrate 2 object(s)"), "{log:?}");
    let body = tether_testenv::run(tether_testenv::git::git(&w.repo.bare).args([
        "log",
        "-1",
        "--format=%B",
        "main",
    ]));
    assert!(
        body.contains("web/hpa.yaml") && body.contains("web/ingress.yaml"),
        "{body}"
    );
    let migrated = tether_testenv::run(
        tether_testenv::git::git(&w.repo.bare).args(["show", "main:web/hpa.yaml"]),
    );
    assert!(
        migrated.starts_with("# scales web on CPU\napiVersion: autoscaling/v2\n"),
        "{migrated}"
    );
    assert!(
        migrated.contains("maxReplicas: 3 # keep it small"),
        "{migrated}"
    );

    let summary = w.once_file(&[]).ok();
    assert!(summary.contains("created=4"), "{summary}");
    let h = w.get(&["-n", &n, "hpa/web"]).expect("the HPA");
    assert_eq!(
        h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
    let i = w.get(&["-n", &n, "ingress/web"]).expect("the Ingress");
    let backend = &i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(
        (backend["name"].as_str(), backend["port"]["number"].as_i64()),
        (Some("web"), Some(80))
    );
    // Nothing left to do.
    let run = w.tether(&["migrate", "--git-url", &url]);
    assert!(
        run.stdout().contains("nothing to migrate"),
        "{}",
        run.stdout()
    );
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}
