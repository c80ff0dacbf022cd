//! Garbage collection: deletes exactly what this sync applied and Git dropped.

use crate::support::{namespace as ns, World};

fn cm(n: &str, name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {n}\ndata:\n  k: v\n")
}

fn deploy(n: &str, name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {n}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: c\n        image: nginx:1.25\n"
    )
}

const GC: &str = "--sync-garbage-collection";

#[test]
fn removed_objects_are_deleted_but_unowned_and_label_copying_objects_survive() {
    let w = World::new("gc-basic");
    let n = w.n.clone();
    w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        ("web.yaml", &deploy(&n, "web")),
        ("cm.yaml", &cm(&n, "settings")),
        ("keep.yaml", &cm(&n, "keep")),
    ]);
    w.repo.commit("first");
    w.once_file(&[GC]).ok();

    // An object nobody declared, and one that copies every ownership label and annotation of a managed one.
    w.kubectl(&["-n", &n, "create", "configmap", "unowned"]);
    let keep = w.get(&["-n", &n, "configmap/keep"]).unwrap();
    let mut copy = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "impostor", "namespace": n,
        "labels": keep["metadata"]["labels"], "annotations": keep["metadata"]["annotations"]}});
    copy["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), copy.to_string()).unwrap();
    w.kubectl(&["create", "-f", tmp.path().to_str().unwrap()]);

    w.repo.remove("web.yaml").remove("cm.yaml");
    w.repo.commit("drop two objects");
    let summary = w.once_file(&[GC]).ok();
    assert!(summary.contains("deleted=2"), "{summary}");
    assert!(w.get(&["-n", &n, "deployment/web"]).is_none());
    assert!(w.get(&["-n", &n, "configmap/settings"]).is_none());
    for survivor in ["keep", "unowned", "impostor"] {
        assert!(
            w.get(&["-n", &n, &format!("configmap/{survivor}")])
                .is_some(),
            "{survivor} was deleted"
        );
    }
    // Nothing to collect the second time.
    assert!(w.once_file(&[GC]).ok().contains("deleted=0"));
}

#[test]
fn dry_run_only_logs_what_it_would_delete() {
    let w = World::new("gc-dry");
    let n = w.n.clone();
    w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        ("a.yaml", &cm(&n, "a")),
        ("b.yaml", &cm(&n, "b")),
    ]);
    w.repo.commit("first");
    w.once_file(&[]).ok();
    w.repo.remove("a.yaml");
    w.repo.commit("drop a");
    let run = w.once_file(&["--sync-garbage-collection-dry"]);
    let summary = run.ok();
    assert!(
        summary.contains("deleted=0") && summary.contains("would_delete=1"),
        "{summary}"
    );
    assert!(
        run.stderr().contains(&format!("object={n}:configmap/a"))
            && run.stderr().contains("would delete")
    );
    assert!(w.get(&["-n", &n, "configmap/a"]).is_some());
    // Without any GC flag nothing is ever deleted; enabling GC later still collects it.
    w.once_file(&[]).ok();
    assert!(w.get(&["-n", &n, "configmap/a"]).is_some());
    assert!(w.once_file(&[GC]).ok().contains("deleted=1"));
    assert!(w.get(&["-n", &n, "configmap/a"]).is_none());
}

#[test]
fn moving_the_source_path_or_branch_adopts_what_is_still_there_and_collects_the_rest() {
    let w = World::new("gc-move");
    let n = w.n.clone();
    w.repo.write(&[
        ("old/ns.yaml", &ns(&n)),
        ("old/a.yaml", &cm(&n, "a")),
        ("old/b.yaml", &cm(&n, "b")),
    ]);
    w.repo.commit("first");
    w.once_file(&[GC, "--git-path", "old"]).ok();

    // Same objects under a new path, minus b.
    w.repo
        .write(&[("new/ns.yaml", &ns(&n)), ("new/a.yaml", &cm(&n, "a"))]);
    w.repo.commit("new path");
    let summary = w.once_file(&[GC, "--git-path", "new"]).ok();
    assert!(
        summary.contains("created=0") && summary.contains("deleted=1"),
        "{summary}"
    );
    assert!(w.get(&["-n", &n, "configmap/a"]).is_some());
    assert!(w.get(&["-n", &n, "configmap/b"]).is_none());

    // Another branch with a different set: c arrives, a goes.
    tether_testenv::run(
        tether_testenv::git::git(&w.repo.work).args(["checkout", "-q", "-b", "prod"]),
    );
    w.repo
        .write(&[("new/c.yaml", &cm(&n, "c"))])
        .remove("new/a.yaml");
    tether_testenv::run(tether_testenv::git::git(&w.repo.work).args(["add", "-A"]));
    tether_testenv::run(
        tether_testenv::git::git(&w.repo.work).args(["commit", "-q", "-m", "prod"]),
    );
    tether_testenv::run(
        tether_testenv::git::git(&w.repo.work).args(["push", "-q", "origin", "prod"]),
    );
    let summary = w
        .once_file(&[GC, "--git-path", "new", "--git-branch", "prod"])
        .ok();
    assert!(
        summary.contains("created=1") && summary.contains("deleted=1"),
        "{summary}"
    );
    assert!(w.get(&["-n", &n, "configmap/a"]).is_none());
    assert!(w.get(&["-n", &n, "configmap/c"]).is_some());
    assert!(w.get(&["namespace", &n]).is_some());
}

#[test]
fn two_syncs_sharing_a_namespace_never_collect_each_others_objects() {
    let w = World::new("gc-two");
    let n = w.n.clone();
    let other = World::new("gc-two-other");
    // Unique per run: the inventories outlive the test on a reused cluster.
    let (alpha, beta) = (format!("{n}-alpha"), format!("{n}-beta"));
    w.repo
        .write(&[("ns.yaml", &ns(&n)), ("mine.yaml", &cm(&n, "mine"))]);
    w.repo.commit("first");
    other.repo.write(&[("theirs.yaml", &cm(&n, "theirs"))]);
    other.repo.commit("first");
    w.once_file(&[GC, "--sync-name", &alpha]).ok();
    other.once_file(&[GC, "--sync-name", &beta]).ok();

    // alpha drops everything but its namespace; beta's object in that namespace must survive.
    w.repo.remove("mine.yaml");
    w.repo.commit("drop mine");
    assert!(w
        .once_file(&[GC, "--sync-name", &alpha])
        .ok()
        .contains("deleted=1"));
    assert!(w.get(&["-n", &n, "configmap/theirs"]).is_some());
    assert!(other
        .once_file(&[GC, "--sync-name", &beta])
        .ok()
        .contains("deleted=0"));
}

#[test]
fn an_empty_render_or_a_failed_apply_deletes_nothing() {
    let w = World::new("gc-safety");
    let n = w.n.clone();
    w.repo
        .write(&[("ns.yaml", &ns(&n)), ("a.yaml", &cm(&n, "a"))]);
    w.repo.commit("first");
    w.once_file(&[GC]).ok();

    // Everything gone from Git: most likely a mistake, so nothing is deleted without the explicit flag.
    w.repo.remove("ns.yaml").remove("a.yaml");
    w.repo.write(&[("README.md", "moved elsewhere\n")]);
    w.repo.commit("empty");
    let run = w.once_file(&[GC]);
    assert!(run.ok().contains("deleted=0"), "{}", run.stdout());
    assert!(
        run.stderr().contains("renders no objects"),
        "{}",
        run.stderr()
    );
    assert!(w.get(&["-n", &n, "configmap/a"]).is_some());

    // A commit that drops `a` but fails to apply deletes nothing either.
    w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        ("bad.yaml", &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n  namespace: {n}\nspec:\n  ports:\n  - port: 99999\n")),
    ]);
    w.repo.commit("bad");
    w.once_file(&[GC]).failed();
    assert!(w.get(&["-n", &n, "configmap/a"]).is_some());
}

#[test]
fn a_namespace_holding_an_unowned_object_is_kept_and_reported() {
    let w = World::new("gc-ns");
    let n = w.n.clone();
    w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        ("a.yaml", &cm(&n, "a")),
        ("other.yaml", &cm("default", &format!("{n}-x"))),
    ]);
    w.repo.commit("first");
    w.once_file(&[GC]).ok();
    w.kubectl(&["-n", &n, "create", "configmap", "precious"]);

    w.repo.remove("ns.yaml").remove("a.yaml");
    w.repo.commit("drop the namespace");
    let run = w.once_file(&[GC]);
    let summary = run.ok();
    assert!(
        summary.contains("deleted=1") && summary.contains("gc_kept=1"),
        "{summary}"
    );
    assert!(
        run.stderr().contains(&format!("{n}:configmap/precious")),
        "{}",
        run.stderr()
    );
    assert!(w.get(&["namespace", &n]).is_some());
    assert!(w.get(&["-n", &n, "configmap/precious"]).is_some());
    assert!(w.get(&["-n", &n, "configmap/a"]).is_none());

    // Once the stranger is gone, the namespace is collected on the next sync.
    w.kubectl(&["-n", &n, "delete", "configmap", "precious"]);
    assert!(w.once_file(&[GC]).ok().contains("deleted=1"));
}

#[test]
fn sync_only_in_git_and_ignore_on_the_live_object_exempt_from_collection() {
    let w = World::new("gc-exempt");
    let n = w.n.clone();
    let sync_only = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sync-only\n  namespace: {n}\n  annotations:\n    fluxcd.io/ignore: sync_only\n"
    );
    w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        ("s.yaml", &sync_only),
        ("l.yaml", &cm(&n, "live-ignored")),
    ]);
    w.repo.commit("first");
    let summary = w.once_file(&[GC]).ok();
    assert!(
        summary.contains("created=3"),
        "sync_only must still be applied: {summary}"
    );
    w.kubectl(&[
        "-n",
        &n,
        "annotate",
        "configmap",
        "live-ignored",
        "tether.dev/ignore=true",
    ]);

    w.repo.remove("s.yaml").remove("l.yaml");
    w.repo.commit("drop both");
    let summary = w.once_file(&[GC]).ok();
    assert!(
        summary.contains("deleted=0") && summary.contains("gc_kept=2"),
        "{summary}"
    );
    assert!(w.get(&["-n", &n, "configmap/sync-only"]).is_some());
    assert!(w.get(&["-n", &n, "configmap/live-ignored"]).is_some());
    // Exempt is not forgotten: once the annotation is gone, the object is collected.
    w.kubectl(&[
        "-n",
        &n,
        "annotate",
        "configmap",
        "live-ignored",
        "tether.dev/ignore-",
    ]);
    let summary = w.once_file(&[GC]).ok();
    assert!(
        summary.contains("deleted=1") && summary.contains("gc_kept=1"),
        "{summary}"
    );
    assert!(w.get(&["-n", &n, "configmap/live-ignored"]).is_none());
}

/// A custom resource definition of this test's own group, and a custom resource of `bytes` bytes: big ones
/// pass the server-side dry-run and are then refused by etcd (its 1.5 MiB request limit), a failure after
/// validation that is deterministic.
fn blob_kind(n: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: blobs.{n}.example.com\nspec:\n  group: {n}.example.com\n  scope: Namespaced\n  names: {{plural: blobs, singular: blob, kind: Blob}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n"
    )
}

fn blob(n: &str, name: &str, bytes: usize) -> String {
    format!(
        "apiVersion: {n}.example.com/v1\nkind: Blob\nmetadata:\n  name: {name}\n  namespace: {n}\ndata: \"{}\"\n",
        "x".repeat(bytes)
    )
}

#[test]
fn objects_a_failed_sync_wrote_are_collected_once_they_leave_git() {
    let w = World::new("gc-pending");
    w.plant_bystanders();
    let n = w.n.clone();
    w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        ("crd.yaml", &blob_kind(&n)),
        ("a.yaml", &cm(&n, "a")),
        ("b.yaml", &cm(&n, "b")),
        ("big.yaml", &blob(&n, "big", 1_800_000)),
    ]);
    w.repo.commit("a custom resource too big for etcd");
    // The Namespace exists before this sync, so the rollback of new Namespaces leaves the objects alone.
    w.kubectl(&["create", "namespace", &n]);
    let err = w.once_file(&[GC]).failed();
    assert!(err.contains("big.yaml"), "{err}");
    assert!(
        err.contains("were changed before the failure")
            && err.contains(&format!("{n}:configmap/b")),
        "the error does not say what the failed sync changed: {err}"
    );
    // Written before the failure and still there: the sync applied them but never finished recording.
    assert!(w.get(&["-n", &n, "configmap/b"]).is_some(), "{err}");

    w.repo.remove("b.yaml").remove("big.yaml");
    w.repo.commit("drop b and the blob");
    let summary = w.once_file(&[GC]).ok();
    assert!(
        w.get(&["-n", &n, "configmap/b"]).is_none(),
        "an object a failed sync wrote was orphaned: {summary}"
    );
    assert!(w.get(&["-n", &n, "configmap/a"]).is_some());
    w.survived("a write refused by etcd after every dry-run passed", 1);
    w.kubectl(&[
        "delete",
        "crd",
        &format!("blobs.{n}.example.com"),
        "--wait=false",
    ]);
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

#[test]
fn a_lost_inventory_does_not_orphan_anything() {
    let w = World::new("gc-lost");
    w.plant_bystanders();
    let n = w.n.clone();
    w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        ("a.yaml", &cm(&n, "a")),
        ("b.yaml", &deploy(&n, "b")),
    ]);
    w.repo.commit("first");
    w.once_file(&[GC]).ok();
    // Someone deletes the inventory by hand; then b leaves Git.
    let inventory = format!("configmap/{n}-inventory");
    w.kubectl(&["-n", "default", "delete", &inventory]);
    w.repo.remove("b.yaml");
    w.repo.commit("drop b");
    let summary = w.once_file(&[GC]).ok();
    assert!(summary.contains("deleted=1"), "{summary}");
    assert!(w.get(&["-n", &n, "deployment/b"]).is_none());
    assert!(w.get(&["-n", &n, "configmap/a"]).is_some());
    assert!(
        w.get(&["-n", "default", &inventory]).is_some(),
        "no new inventory"
    );
    w.survived("the inventory ConfigMap deleted by hand", 1);
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

/// Commits a Namespace and `count` ConfigMaps `c000`, `c001`, ... in files `cm/000.yaml`, ...
fn many_config_maps(w: &World, count: usize) {
    let n = &w.n;
    let mut files = vec![("ns.yaml".to_owned(), ns(n))];
    for i in 0..count {
        files.push((format!("cm/{i:03}.yaml"), cm(n, &format!("c{i:03}"))));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    w.repo.write(&refs);
    w.repo.commit(&format!("{count} config maps"));
}

/// The names of the ConfigMaps `c…` in the test's namespace.
fn config_maps(w: &World) -> Vec<String> {
    w.kubectl(&["-n", &w.n, "get", "configmaps", "-o", "name"])
        .lines()
        .filter(|l| l.starts_with("configmap/c"))
        .map(str::to_owned)
        .collect()
}

/// Starts `tether daemon --once` with GC and `extra` flags and kills it with SIGKILL once `started` holds.
fn kill_when(w: &World, extra: &[&str], started: impl Fn() -> bool) {
    let url = w.repo.file_url();
    let mut args = vec!["daemon", "--once", "--git-url", &url, GC];
    args.extend_from_slice(extra);
    let mut sync = w
        .command(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync never got that far"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sync.kill().unwrap();
    sync.wait().unwrap();
}

#[test]
fn a_sync_killed_mid_apply_leaves_nothing_orphaned() {
    let w = World::new("gc-kill");
    w.plant_bystanders();
    let n = w.n.clone();
    many_config_maps(&w, 400);
    // kill -9 as soon as the first object exists: the sync is between its first and last write.
    kill_when(&w, &["--apply-concurrency", "1"], || {
        w.get(&["namespace", &n]).is_some()
    });
    let inventory = w
        .get(&["-n", "default", &format!("configmap/{n}-inventory")])
        .expect("the intent was recorded before the first write");
    let pending = inventory["data"]["pending"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(pending.contains(&format!("{n} c399")), "{pending}");
    let created = config_maps(&w).len();
    assert!(
        created < 400,
        "the sync finished before it was killed; nothing was tested"
    );

    // Git drops every second object; the next sync collects every one of them that the dead sync wrote.
    for i in (0..400).step_by(2) {
        w.repo.remove(&format!("cm/{i:03}.yaml"));
    }
    w.repo.commit("drop half");
    w.once_file(&[GC]).ok();
    let left = config_maps(&w);
    assert_eq!(left.len(), 200, "{left:?}");
    assert!(left.iter().all(|l| l
        .trim_start_matches("configmap/c")
        .parse::<usize>()
        .unwrap()
        % 2
        == 1));
    let inventory = w
        .get(&["-n", "default", &format!("configmap/{n}-inventory")])
        .unwrap();
    assert_eq!(
        inventory["data"]["pending"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count(),
        0
    );
    w.survived("kill -9 after the first of 400 writes", 1);
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

#[test]
fn a_sync_does_not_silently_take_another_syncs_object() {
    let w = World::new("takeover");
    let n = w.n.clone();
    let other = World::new("takeover-other");
    let (alpha, beta) = (format!("{n}-alpha"), format!("{n}-beta"));
    w.repo
        .write(&[("ns.yaml", &ns(&n)), ("shared.yaml", &cm(&n, "shared"))]);
    w.repo.commit("first");
    other.repo.write(&[("shared.yaml", &cm(&n, "shared"))]);
    other.repo.commit("the same object");
    w.once_file(&[GC, "--sync-name", &alpha]).ok();

    let err = other.once_file(&[GC, "--sync-name", &beta]).failed();
    assert!(
        err.contains("shared.yaml") && err.contains(&format!("managed by sync '{alpha}'")),
        "{err}"
    );
    assert!(err.contains("--sync-takeover"), "{err}");
    let label = |w: &World| {
        w.get(&["-n", &n, "configmap/shared"]).unwrap()["metadata"]["labels"]["tether.dev/sync"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(label(&w), alpha);

    other
        .once_file(&[GC, "--sync-name", &beta, "--sync-takeover"])
        .ok();
    assert_eq!(label(&w), beta);
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

#[test]
fn a_sync_killed_while_collecting_finishes_the_job_at_the_next_one() {
    let w = World::new("gc-kill-prune");
    w.plant_bystanders();
    let n = w.n.clone();
    many_config_maps(&w, 300);
    w.once_file(&[GC]).ok();
    for i in 0..250 {
        w.repo.remove(&format!("cm/{i:03}.yaml"));
    }
    w.repo.commit("drop 250");
    let count = || config_maps(&w).len();
    // kill -9 once collection has begun.
    kill_when(&w, &[], || count() < 300);
    let left = count();
    assert!(
        left > 50,
        "the sync finished collecting before it was killed; nothing was tested"
    );

    let summary = w.once_file(&[GC]).ok();
    assert_eq!(count(), 50, "{summary}");
    assert!(
        summary.contains(&format!("deleted={}", left - 50)),
        "{summary}"
    );
    assert!(w.once_file(&[GC]).ok().contains("deleted=0"));
    w.survived("kill -9 while collecting 250 of 300 objects", 1);
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

#[test]
fn an_inventory_edited_by_hand_stops_collection_with_its_fix_and_deletes_nothing() {
    let w = World::new("gc-edited");
    w.plant_bystanders();
    let n = w.n.clone();
    w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        ("a.yaml", &cm(&n, "a")),
        ("b.yaml", &cm(&n, "b")),
    ]);
    w.repo.commit("first");
    w.once_file(&[GC]).ok();
    // Someone "fixes" the inventory by hand and leaves a line tether cannot read; then b leaves Git.
    let inventory = format!("configmap/{n}-inventory");
    w.kubectl(&[
        "-n",
        "default",
        "patch",
        &inventory,
        "--type=merge",
        "-p",
        r##"{"data":{"objects":"# edited\nthis is not an inventory line\n"}}"##,
    ]);
    w.repo.remove("b.yaml");
    w.repo.commit("drop b");
    let err = w.once_file(&[GC]).failed();
    assert!(
        err.contains("malformed") && err.contains("delete it"),
        "{err}"
    );
    assert!(
        w.get(&["-n", &n, "configmap/b"]).is_some(),
        "deleted on an unreadable inventory"
    );
    // The advice works: with the inventory deleted, the label sweep finds b and collects it.
    w.kubectl(&["-n", "default", "delete", &inventory]);
    let summary = w.once_file(&[GC]).ok();
    assert!(summary.contains("deleted=1"), "{summary}");
    assert!(w.get(&["-n", &n, "configmap/b"]).is_none());
    assert!(w.get(&["-n", &n, "configmap/a"]).is_some());
    w.survived("the inventory ConfigMap edited by hand into garbage", 1);
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}

#[test]
fn two_replicas_without_leader_election_on_different_revisions_orphan_nothing() {
    // Two agents of one sync name run at once, one still on the old commit (a rollout without
    // --leader-elect): whatever order their writes land in, the next sync of the real head leaves exactly
    // Git's objects carrying the sync's label.
    let w = World::new("gc-twins");
    w.plant_bystanders();
    let n = w.n.clone();
    let old = tether_testenv::GitRepo::new();
    old.write(&[
        ("ns.yaml", &ns(&n)),
        ("a.yaml", &cm(&n, "a")),
        ("x.yaml", &cm(&n, "old-only")),
    ]);
    old.commit("old");
    w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        ("a.yaml", &cm(&n, "a")),
        ("y.yaml", &cm(&n, "new-only")),
    ]);
    w.repo.commit("new");
    let run = |url: String| {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().display().to_string();
        let child = w
            .command(&[
                "daemon",
                "--once",
                "--git-url",
                &url,
                GC,
                "--cache-dir",
                &dir,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        (child, cache)
    };
    for _ in 0..3 {
        let (mut x, _cx) = run(w.repo.file_url());
        let (mut y, _cy) = run(old.file_url());
        let _ = x.wait();
        let _ = y.wait();
    }
    let summary = w.once_file(&[GC]).ok();
    assert!(summary.contains("revision="), "{summary}");
    let labelled = w.kubectl(&[
        "-n",
        &n,
        "get",
        "configmaps",
        "-l",
        &format!("tether.dev/sync={n}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let mut names: Vec<&str> = labelled.split_whitespace().collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "new-only"], "orphaned or lost: {labelled}");
    w.survived(
        "two replicas on different revisions, three times at once",
        3,
    );
    w.kubectl(&["delete", "namespace", &n, "--wait=false"]);
}
