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
