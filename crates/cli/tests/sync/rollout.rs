//! What a user sees after a sync on a cluster with nodes: workloads roll out and become ready, Jobs complete.

use crate::support::World;

fn workloads(n: &str) -> String {
    r#"apiVersion: v1
kind: Namespace
metadata:
  name: NS
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: NS
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1.0
        ports:
        - containerPort: 8080
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  namespace: NS
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: registry.invalid/migrate:1.0
"#
    .replace("NS", n)
}

/// `kubectl wait` with a deadline; on a timeout the failure shows the object and the namespace's events.
fn wait(w: &World, what: &str, condition: &str) {
    let out = w
        .cluster
        .kubectl()
        .args([
            "-n",
            &w.n,
            "wait",
            what,
            "--for",
            condition,
            "--timeout=90s",
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        let state = w
            .cluster
            .kubectl()
            .args(["-n", &w.n, "get", "all,events", "-o", "wide"])
            .output()
            .unwrap();
        panic!(
            "{what} did not reach {condition}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&state.stdout)
        );
    }
}

#[test]
fn a_synced_deployment_becomes_available_with_ready_pods_and_a_job_completes() {
    let w = World::new("rollout");
    w.repo.write(&[("apps/app.yaml", &workloads(&w.n))]);
    w.repo.commit("web and its migration job");

    let summary = w.once_file(&[]).ok();
    assert!(summary.contains("created=3"), "{summary}");

    wait(&w, "deployment/web", "condition=Available");
    let deploy = w.get(&["-n", &w.n, "deployment/web"]).unwrap();
    assert_eq!(
        deploy["status"]["readyReplicas"], 2,
        "{:#}",
        deploy["status"]
    );
    let pods = w.get(&["-n", &w.n, "pods", "-l", "app=web"]).unwrap();
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 2);
    for p in pods {
        assert_eq!(p["status"]["phase"], "Running", "{:#}", p["status"]);
        assert!(
            p["spec"]["nodeName"]
                .as_str()
                .unwrap()
                .starts_with("kwok-node-"),
            "{:#}",
            p["spec"]
        );
    }
    wait(&w, "job/migrate", "condition=Complete");

    // The Pods and ReplicaSets the controllers made are theirs, not tether's: a resync of the same commit
    // leaves everything unchanged and deletes nothing, with garbage collection on.
    let summary = w.once_file(&["--sync-garbage-collection"]).ok();
    assert!(
        summary.contains("created=0 configured=0 unchanged=3") && summary.contains("deleted=0"),
        "{summary}"
    );
    w.kubectl(&["delete", "namespace", &w.n, "--wait=false"]);
}
