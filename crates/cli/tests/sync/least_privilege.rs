//! tether with namespace-scoped rights only (unlike Flux v1's cluster-admin).

use crate::support::{Run, World};

#[test]
fn a_namespace_scoped_identity_syncs_and_collects_within_its_namespace() {
    let w = World::new("lp");
    let n = w.n.clone();
    let Some(user_kubeconfig) = w.cluster.user_kubeconfig.clone() else {
        panic!("this test needs an unprivileged identity: set TETHER_TEST_USER_KUBECONFIG")
    };
    w.kubectl(&["create", "namespace", &n]);
    w.kubectl(&[
        "-n",
        &n,
        "create",
        "role",
        "tether",
        "--verb=get,list,create,update,patch,delete",
        "--resource=configmaps,secrets,services,deployments.apps",
    ]);
    w.kubectl(&[
        "-n",
        &n,
        "create",
        "rolebinding",
        "tether",
        "--role=tether",
        "--user=tether-user",
    ]);

    let cm = |name: &str, ns: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n")
    };
    w.repo.write(&[
        ("a.yaml", &cm("a", &n)),
        ("b.yaml", &cm("b", &n)),
        ("elsewhere.yaml", &cm(&format!("{n}-x"), "kube-system")),
    ]);
    w.repo.commit("first");
    let url = w.repo.file_url();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "daemon",
            "--once",
            "--git-url",
            &url,
            "--k8s-allow-namespace",
            &n,
            "--namespace",
            &n,
            "--sync-garbage-collection",
        ];
        args.extend_from_slice(extra);
        Run(w
            .command(&args)
            .env("KUBECONFIG", &user_kubeconfig)
            .output()
            .unwrap())
    };
    let first = run(&[]);
    let summary = first.ok();
    assert!(
        summary.contains("created=2") && summary.contains("skipped=1"),
        "{summary}"
    );
    assert!(
        first.stderr().contains("not in --k8s-allow-namespace"),
        "{}",
        first.stderr()
    );
    assert!(w
        .get(&["-n", "kube-system", &format!("configmap/{n}-x")])
        .is_none());

    w.repo.remove("b.yaml");
    w.repo.commit("drop b");
    assert!(run(&[]).ok().contains("deleted=1"));
    assert!(w.get(&["-n", &n, "configmap/b"]).is_none());
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}
