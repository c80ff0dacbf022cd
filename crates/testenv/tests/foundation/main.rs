//! The ground every other test stands on: a real API server (SSA, RBAC, controllers) and git over SSH with
//! read-write and read-only deploy keys.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use tether_testenv::{git::git, ssh::READ_ONLY_MESSAGE, Cluster, GitRepo, SshServer};

fn configmaps() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps")
}

#[tokio::test]
async fn server_side_apply_through_kube_records_the_field_manager() {
    let cluster = Cluster::shared();
    let ns = cluster.namespace("foundation-ssa");
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client().await, &ns.name, &configmaps());
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "probe", "namespace": ns.name},
        "data": {"k": "v"}
    });
    let audit = cluster.audit();
    let applied = api
        .patch(
            "probe",
            &PatchParams::apply("tether-test").force(),
            &Patch::Apply(&body),
        )
        .await
        .expect("server-side apply");
    assert_eq!(applied.data["data"]["k"], "v");
    let managers: Vec<_> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, vec!["tether-test".to_owned()]);
    // The audit log sees the write, so later tests can count what a sync sends.
    let writes = audit.writes(|e| e.namespace == ns.name && e.name == "probe");
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].verb, "patch");
}

#[tokio::test]
async fn unprivileged_user_is_denied_by_rbac() {
    let cluster = Cluster::shared();
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.user_client().await, "default", &configmaps());
    match api.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("tether-user"), "{}", status.message);
        }
        other => panic!("expected a 403 for tether-user, got {other:?}"),
    }
}

#[tokio::test]
async fn controller_manager_finishes_namespace_deletion() {
    let cluster = Cluster::shared();
    let ns = tether_testenv::unique_name("foundation-nsdel");
    tether_testenv::run(cluster.kubectl().args(["create", "namespace", &ns]));
    tether_testenv::run(
        cluster
            .kubectl()
            .args(["-n", &ns, "create", "configmap", "x"]),
    );
    // Without the namespace controller this would hang in Terminating until the timeout.
    tether_testenv::run(
        cluster
            .kubectl()
            .args(["delete", "namespace", &ns, "--timeout=60s"]),
    );
}

#[test]
fn git_over_ssh_clones_with_either_key_and_refuses_push_with_the_read_only_key() {
    let repo = GitRepo::new();
    repo.write(&[("README", "hello\n")]).commit("first");
    let ssh = SshServer::start();
    let url = ssh.url(&repo);
    let tmp = tempfile::tempdir().unwrap();

    for (name, key) in [("rw", &ssh.rw_key), ("ro", &ssh.ro_key)] {
        let dest = tmp.path().join(name);
        tether_testenv::run(
            git(tmp.path())
                .args(["clone", "-q", &url])
                .arg(&dest)
                .env("GIT_SSH_COMMAND", ssh.ssh_command(key, &ssh.known_hosts)),
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("README")).unwrap(),
            "hello\n"
        );
    }

    let push = |name: &str, key| {
        let dest = tmp.path().join(name);
        git(&dest)
            .args(["push", "origin", "HEAD:refs/tags/probe"])
            .env("GIT_SSH_COMMAND", ssh.ssh_command(key, &ssh.known_hosts))
            .output()
            .unwrap()
    };
    let ok = push("rw", &ssh.rw_key);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(repo.rev_parse("refs/tags/probe").is_some());

    let refused = push("ro", &ssh.ro_key);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains(READ_ONLY_MESSAGE));
}

#[test]
fn git_over_ssh_refuses_an_unknown_host_key() {
    let repo = GitRepo::new();
    repo.write(&[("README", "hello\n")]).commit("first");
    let ssh = SshServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let out = git(tmp.path())
        .args(["clone", "-q", &ssh.url(&repo), "x"])
        .env(
            "GIT_SSH_COMMAND",
            ssh.ssh_command(&ssh.rw_key, &ssh.wrong_known_hosts),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_ground_is_a_supported_kubernetes_whose_simulated_nodes_run_pods() {
    let cluster = Cluster::shared();
    let version: serde_json::Value = serde_json::from_str(&tether_testenv::run(
        cluster.kubectl().args(["get", "--raw", "/version"]),
    ))
    .unwrap();
    let minor: u32 = version["minor"]
        .as_str()
        .unwrap()
        .trim_end_matches('+')
        .parse()
        .unwrap();
    assert!(
        version["major"] == "1" && minor >= 33,
        "tether's users run Kubernetes 1.33 or later; this server is {version}"
    );

    let ns = cluster.namespace("foundation-pod");
    tether_testenv::run(cluster.kubectl().args([
        "-n",
        &ns.name,
        "run",
        "probe",
        "--image=registry.invalid/probe:1",
        "--restart=Never",
    ]));
    // Scheduled onto a simulated node and reported Ready by it, as a kubelet would.
    tether_testenv::run(cluster.kubectl().args([
        "-n",
        &ns.name,
        "wait",
        "pod/probe",
        "--for=condition=Ready",
        "--timeout=60s",
    ]));
    let node = tether_testenv::run(cluster.kubectl().args([
        "-n",
        &ns.name,
        "get",
        "pod/probe",
        "-o",
        "jsonpath={.spec.nodeName}",
    ]));
    assert!(node.starts_with("kwok-node-"), "scheduled onto {node:?}");
}

#[test]
fn kustomize_and_helm_are_on_hand_and_render_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let k = tmp.path().join("k");
    std::fs::create_dir_all(&k).unwrap();
    std::fs::write(
        k.join("kustomization.yaml"),
        "namePrefix: staging-\nresources: [cm.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        k.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {a: b}\n",
    )
    .unwrap();
    let out = tether_testenv::run(
        std::process::Command::new(tether_testenv::tool("kustomize"))
            .arg("build")
            .arg(&k),
    );
    assert!(out.contains("name: staging-app"), "{out}");

    let chart = tmp.path().join("chart");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(chart.join("values.yaml"), "color: blue\n").unwrap();
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\ndata: {color: {{ .Values.color }}}\n",
    )
    .unwrap();
    let out = tether_testenv::run(
        std::process::Command::new(tether_testenv::tool("helm"))
            .args(["template", "demo"])
            .arg(&chart)
            .args(["--set", "color=red"])
            .env("HELM_CACHE_HOME", tmp.path().join("helm-cache"))
            .env("HELM_CONFIG_HOME", tmp.path().join("helm-config"))
            .env("HELM_DATA_HOME", tmp.path().join("helm-data")),
    );
    assert!(
        out.contains("name: demo") && out.contains("color: red"),
        "{out}"
    );
}
