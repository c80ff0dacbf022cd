//! Git over SSH: deploy keys, read-only keys, host keys.

use tether_testenv::SshServer;

use crate::support::World;

fn configmap(n: &str) -> [(String, String); 2] {
    [
        ("ns.yaml".into(), crate::support::namespace(n)),
        (
            "cm.yaml".into(),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {n}\n"),
        ),
    ]
}

/// A test's world whose repository holds one ConfigMap in one commit (returned), and a git host over SSH.
fn over_ssh(prefix: &str) -> (World, SshServer, String) {
    let w = World::new(prefix);
    crate::support::write(&w.repo, &configmap(&w.n));
    let head = w.repo.commit("first");
    (w, SshServer::start(), head)
}

/// `--git-url`, `--git-ssh-key` and `--git-known-hosts`: how a test points tether at an SSH remote.
fn ssh_source(url: &str, key: &std::path::Path, known_hosts: &std::path::Path) -> [String; 6] {
    [
        "--git-url".into(),
        url.into(),
        "--git-ssh-key".into(),
        key.display().to_string(),
        "--git-known-hosts".into(),
        known_hosts.display().to_string(),
    ]
}

#[test]
fn syncs_over_ssh_with_a_write_key_and_moves_the_tag() {
    let (w, ssh, head) = over_ssh("ssh-rw");
    let source = ssh_source(&ssh.url(&w.repo), &ssh.rw_key, &ssh.known_hosts);
    let summary = w.once(&source.each_ref().map(String::as_str)).ok();
    assert!(summary.contains("created=2"), "{summary}");
    assert_eq!(
        w.repo
            .rev_parse("refs/tags/tether-sync^{commit}")
            .as_deref(),
        Some(head.as_str())
    );
    // The write check's throw-away tag is gone again.
    assert!(
        !tether_testenv::run(tether_testenv::git::git(&w.repo.bare).args(["tag"]))
            .contains("write-check")
    );
}

#[test]
fn a_read_only_key_gives_one_actionable_line_and_git_readonly_syncs_with_a_secret() {
    let (w, ssh, head) = over_ssh("ssh-ro");
    let n = w.n.clone();
    let source = ssh_source(&ssh.url(&w.repo), &ssh.ro_key, &ssh.known_hosts);
    let source = source.each_ref().map(String::as_str);

    let err = w.once(&source).failed();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for want in [
        "read-only",
        "write access",
        "--git-readonly",
        "marked as read only",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert!(!err.contains("Please make sure"), "{err}");
    assert!(
        w.get(&["-n", &n, "configmap/c"]).is_none(),
        "applied despite the failed write check"
    );

    // Read-only mode: same key, sync state in a Secret.
    w.kubectl(&["create", "namespace", &format!("{n}-tether")]);
    let secret_ns = format!("{n}-tether");
    let mut args = source.to_vec();
    args.extend([
        "--git-readonly",
        "--sync-state",
        "secret",
        "--namespace",
        &secret_ns,
    ]);
    let summary = w.once(&args).ok();
    assert!(summary.contains("created=2"), "{summary}");
    let secret = w.get(&["-n", &secret_ns, "secret/tether-sync"]).unwrap();
    assert_eq!(
        secret["metadata"]["annotations"]["tether.dev/sync-hwm"],
        head.as_str()
    );
    assert!(
        w.repo.rev_parse("refs/tags/tether-sync").is_none(),
        "read-only mode pushed a tag"
    );
    w.kubectl(&["delete", "namespace", &secret_ns, "--wait=false"]);
}

#[test]
fn an_unknown_ssh_host_key_is_refused() {
    let (w, ssh, _) = over_ssh("ssh-hostkey");
    let source = ssh_source(&ssh.url(&w.repo), &ssh.rw_key, &ssh.wrong_known_hosts);
    let err = w.once(&source.each_ref().map(String::as_str)).failed();
    assert!(
        err.contains("not trusted") && err.contains("--git-known-hosts"),
        "{err}"
    );
    assert!(w.get(&["namespace", &w.n]).is_none());
}

#[test]
fn bad_flags_fail_at_start_with_exit_64() {
    let w = World::new("flags");
    let run = w.tether(&[
        "daemon",
        "--once",
        "--git-url",
        "/x",
        "--git-readonly",
        "--sync-state",
        "git",
    ]);
    assert_eq!(run.0.status.code(), Some(64), "{}", run.stderr());
    assert!(run.stderr().contains("contradicts"));
    let run = w.tether(&["daemon", "--once", "--git-url", "/x", "--git-path", "../up"]);
    assert_eq!(run.0.status.code(), Some(64));
}

#[test]
fn a_remote_that_vanishes_fails_the_sync_and_a_rewritten_history_is_followed() {
    let w = World::new("remote-faults");
    w.plant_bystanders();
    let n = w.n.clone();
    configmaps_a_and_b(&w);
    w.repo.commit("first");
    let gc = "--sync-garbage-collection";
    w.once_file(&[gc]).ok();

    // The remote is gone: the sync fails naming it, and nothing is collected.
    let away = w.repo.bare.with_extension("away");
    std::fs::rename(&w.repo.bare, &away).unwrap();
    let err = w.once_file(&[gc]).failed();
    assert!(err.contains(&w.repo.bare.display().to_string()), "{err}");
    assert!(
        w.get(&["-n", &n, "configmap/a"]).is_some() && w.get(&["-n", &n, "configmap/b"]).is_some()
    );
    std::fs::rename(&away, &w.repo.bare).unwrap();

    // History rewritten (a force-push of a new root commit without b): followed, and b collected.
    tether_testenv::run(tether_testenv::git::git(&w.repo.work).args([
        "checkout",
        "-q",
        "--orphan",
        "rewritten",
    ]));
    tether_testenv::run(
        tether_testenv::git::git(&w.repo.work).args(["rm", "-q", "-r", "--cached", "."]),
    );
    std::fs::remove_file(w.repo.work.join("b.yaml")).unwrap();
    tether_testenv::run(tether_testenv::git::git(&w.repo.work).args(["add", "ns.yaml", "a.yaml"]));
    tether_testenv::run(tether_testenv::git::git(&w.repo.work).args([
        "commit",
        "-q",
        "-m",
        "rewritten",
    ]));
    tether_testenv::run(tether_testenv::git::git(&w.repo.work).args([
        "push",
        "-q",
        "--force",
        "origin",
        "HEAD:main",
    ]));
    let summary = w.once_file(&[gc]).ok();
    assert!(summary.contains("deleted=1"), "{summary}");
    assert!(w.get(&["-n", &n, "configmap/b"]).is_none());
    assert_eq!(
        w.repo.rev_parse("refs/tags/tether-sync^{commit}"),
        Some(w.repo.head()),
        "the marker does not point at the rewritten head"
    );
    w.survived("the git remote gone, then its history rewritten", 2);
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

/// Writes a Namespace and ConfigMaps `a` and `b` in it (files `a.yaml`, `b.yaml`), not yet committed.
fn configmaps_a_and_b(w: &World) {
    let n = &w.n;
    let cm = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {n}\n")
    };
    w.repo.write(&[
        ("ns.yaml", &crate::support::namespace(n)),
        ("a.yaml", &cm("a")),
        ("b.yaml", &cm("b")),
    ]);
}

/// Every loose object file of a bare repository.
fn loose_objects(bare: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    for dir in std::fs::read_dir(bare.join("objects")).unwrap().flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if name.len() != 2 {
            continue; // info/, pack/
        }
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            out.insert(f.path());
        }
    }
    out
}

#[test]
fn a_corrupted_remote_fails_the_sync_without_collecting_and_recovers_once_repaired() {
    let w = World::new("remote-corrupt");
    w.plant_bystanders();
    let n = w.n.clone();
    configmaps_a_and_b(&w);
    let first = w.repo.commit("first");
    let gc = "--sync-garbage-collection";
    w.once_file(&[gc]).ok();

    // The next commit (dropping b) reaches the host, whose disk then corrupts the objects it stored.
    let before = loose_objects(&w.repo.bare);
    w.repo.remove("b.yaml");
    w.repo.commit("drop b");
    let added: Vec<_> = loose_objects(&w.repo.bare)
        .difference(&before)
        .cloned()
        .collect();
    assert!(!added.is_empty(), "the push stored no loose objects");
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = added
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    for (p, _) in &saved {
        let mut perms = std::fs::metadata(p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(p, perms).unwrap();
        std::fs::write(p, b"not a git object").unwrap();
    }
    let err = w.once_file(&[gc]).failed();
    assert!(err.contains(&w.repo.bare.display().to_string()), "{err}");
    assert!(
        w.get(&["-n", &n, "configmap/b"]).is_some(),
        "collected on a commit that could not be read"
    );
    assert_eq!(
        w.repo.rev_parse("refs/tags/tether-sync^{commit}"),
        Some(first),
        "the marker moved"
    );

    // Repaired, the commit is applied and b collected.
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).unwrap();
    }
    let summary = w.once_file(&[gc]).ok();
    assert!(summary.contains("deleted=1"), "{summary}");
    assert!(w.get(&["-n", &n, "configmap/b"]).is_none());
    w.survived("the git remote corrupted", 1);
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

#[test]
fn credentials_in_the_git_url_are_in_no_output_log_or_file_of_the_cache() {
    let (w, ssh, _) = over_ssh("url-pw");
    let password = tether_testenv::secret(format!("pw-in-the-url-{}", w.n));
    let token = tether_testenv::secret(format!("tok-in-the-url-{}", w.n));
    // A password pasted into an SSH URL (SSH authenticates with the key), a user:password and a bare token
    // in HTTP URLs (nothing listens on port 9: the fetch fails and its error names the URL).
    let urls = [
        ssh.url(&w.repo)
            .replacen("@127.0.0.1", &format!(":{password}@127.0.0.1"), 1),
        format!("https://bob:{password}@127.0.0.1:9/r.git"),
        format!("http://{token}@127.0.0.1:9/r.git"),
    ];
    for url in &urls {
        let source = ssh_source(url, &ssh.rw_key, &ssh.known_hosts);
        let mut flags = source.each_ref().map(String::as_str).to_vec();
        flags.extend(["--git-timeout", "5s"]);
        // `--once` (its output is checked by `Run::of`) and the agent (its log, checked on drop).
        let err = w.once(&flags).failed();
        assert!(
            err.contains("***@127.0.0.1"),
            "the URL is named, redacted: {err}"
        );
        let mut args = vec!["daemon"];
        args.extend(flags);
        let mut agent = w.spawn(&args);
        match agent.wait(std::time::Duration::from_secs(30)) {
            Some(status) => assert!(!status.success(), "{}", agent.log()),
            None => assert!(agent.log().contains("***@127.0.0.1"), "{}", agent.log()),
        }
    }
    // The way to give HTTPS credentials: through the environment, handed to git by tether. The fetch fails
    // (nothing listens) after git was given them; neither its error nor the clone holds them.
    let run = crate::support::Run::of(
        w.command(&[
            "daemon",
            "--once",
            "--git-url",
            "http://127.0.0.1:9/r.git",
            "--git-timeout",
            "5s",
        ])
        .env("TETHER_GIT_HTTPS_USER", "bob")
        .env("TETHER_GIT_HTTPS_PASSWORD", &password)
        .output()
        .unwrap(),
    );
    assert!(run.failed().contains("127.0.0.1:9"), "{}", run.stderr());
    // Nothing tether keeps (a clone's .git/config above all) holds them either.
    let mut dirs = vec![w.cache.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let text =
                    String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
                tether_testenv::assert_absent(&entry.path().display().to_string(), &text);
            }
        }
    }
}

#[test]
fn two_runs_racing_to_move_the_sync_tag_both_succeed() {
    // Two runs of one sync name on one commit (a rollout's old and new pod, or a manual `--once` beside the
    // agent) both move the sync tag. The remote holds each push of the tag until the other one has arrived
    // too, so both were told the tag's old place and one of them loses the ref lock: a race about the marker,
    // not a failure of the sync. Before issue 11 the loser exited 1.
    let w = World::new("tag-race");
    crate::support::write(&w.repo, &configmap(&w.n));
    let head = w.repo.commit("first");
    let hook = w.repo.bare.join("hooks/pre-receive");
    let arrived = w.repo.bare.join("tag-pushes");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n\
             # Holds a push of the sync tag until a second one has arrived (60 s at most: the second run may be slow to start on a loaded machine).\n\
             grep -q ' refs/tags/tether-sync$' || exit 0\n\
             echo x >> '{a}'\n\
             i=0\n\
             while [ \"$(wc -l < '{a}')\" -lt 2 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n",
            a = arrived.display()
        ),
    )
    .unwrap();
    tether_testenv::run(std::process::Command::new("chmod").arg("755").arg(&hook));
    let url = w.repo.file_url();
    let start = || {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().display().to_string();
        let child = w
            .command(&[
                "daemon",
                "--once",
                "--git-url",
                &url,
                "--cache-dir",
                &dir,
                // Longer than the hook may hold a push.
                "--git-timeout",
                "90s",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (child, cache)
    };
    // The second run starts once the first is held, a second later: its tag is another object (the tagger's
    // time differs), where two tags made in the same second would be one and the same and never conflict.
    let first = start();
    crate::support::wait_for(
        "the first run's tag push",
        std::time::Duration::from_secs(60),
        || arrived.exists(),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let runs = [first, start()];
    for (child, _cache) in runs {
        let run = crate::support::Run::of(child.wait_with_output().unwrap());
        run.ok();
    }
    let pushes = std::fs::read_to_string(&arrived).unwrap().lines().count();
    assert!(
        pushes >= 3,
        "the two pushes of the tag did not race ({pushes} arrived); the test proves nothing"
    );
    assert_eq!(
        w.repo.rev_parse("refs/tags/tether-sync^{commit}"),
        Some(head)
    );
}
