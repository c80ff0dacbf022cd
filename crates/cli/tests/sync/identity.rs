//! The deploy key: made by the agent on its first start, shown by `tether identity`, used once added.

use tether_testenv::SshServer;

use crate::support::World;

#[test]
fn the_first_start_makes_a_deploy_key_that_works_once_added_and_regenerate_rotates_it() {
    let w = World::new("identity");
    let n = w.n.clone();
    let ssh = SshServer::start();
    w.kubectl(&["create", "namespace", &n]);
    w.repo.write(&[(
        "cm.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {n}\n"),
    )]);
    w.repo.commit("one config map");
    let url = ssh.url(&w.repo);
    let kh = ssh.known_hosts.display().to_string();
    let sync = || {
        w.tether(&[
            "daemon",
            "--once",
            "--git-url",
            &url,
            "--git-known-hosts",
            &kh,
            "--namespace",
            &n,
        ])
    };

    // No key yet: the agent makes one, stores it, and the host refuses it until it is added.
    let first = sync();
    let err = first.failed();
    assert!(err.contains("refused"), "{err}");
    let secret = w
        .get(&["-n", &n, "secret/tether-git-deploy"])
        .expect("the deploy key Secret");
    assert!(secret["data"]["identity"].is_string());
    register_private_key(&secret);
    // Its output came before the key was known to the check.
    tether_testenv::assert_absent(
        "the first sync's output",
        &(first.stdout() + &first.stderr()),
    );

    let shown = w.tether(&["identity", "--namespace", &n]);
    let public = shown.stdout().trim().to_owned();
    assert!(
        public.starts_with("ssh-ed25519 AAAA"),
        "{public}\n{}",
        shown.stderr()
    );
    let fingerprint = w
        .tether(&["identity", "--namespace", &n, "--fingerprint"])
        .stdout();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");

    // Added as a read-write deploy key: the next sync applies and pushes the sync tag.
    ssh.authorize(&public);
    let summary = sync().ok();
    assert!(summary.contains("created=1"), "{summary}");
    assert!(
        w.repo.rev_parse("refs/tags/tether-sync^{commit}").is_some(),
        "no sync tag pushed"
    );
    // The same key at the next start, and never the private key in any output.
    let again = sync();
    again.ok();
    for out in [first.stderr(), again.stderr(), shown.stderr()] {
        assert!(
            !out.contains("PRIVATE KEY"),
            "the private key was printed: {out}"
        );
    }
    assert_eq!(
        w.tether(&["identity", "--namespace", &n]).stdout().trim(),
        public
    );

    let rotated = w
        .tether(&["identity", "--namespace", &n, "--regenerate"])
        .stdout();
    assert!(
        rotated.starts_with("ssh-ed25519 AAAA") && rotated.trim() != public,
        "{rotated}"
    );
    register_private_key(
        &w.get(&["-n", &n, "secret/tether-git-deploy"])
            .expect("the deploy key Secret"),
    );
    tether_testenv::assert_absent("the rotation's output", &rotated);
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

/// Registers the private key tether keeps in its deploy-key Secret, so that no output may contain it.
fn register_private_key(secret: &serde_json::Value) {
    tether_testenv::secrets::secret_key_base64(
        secret["data"]["identity"].as_str().expect("identity"),
    );
}
