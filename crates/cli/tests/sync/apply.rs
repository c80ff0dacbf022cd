//! What a sync does to the cluster: first apply, no-op resync, drift, invalid commits.

use crate::support::{app, write, World};

fn managers(obj: &serde_json::Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap().to_owned(),
                m["operation"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn syncs_a_whole_app_then_resyncs_without_a_single_write_and_reverts_drift() {
    let w = World::new("sync-app");
    let n = &w.n;
    write(&w.repo, &app(n));
    let head = w.repo.commit("the app");

    let summary = w.once_file(&[]).ok();
    assert!(
        summary.contains("created=6 configured=0 unchanged=0"),
        "{summary}"
    );
    assert!(summary.contains(&head[..12]), "{summary}");

    for args in [
        vec!["namespace", n.as_str()],
        vec!["crd", &format!("widgets.{n}.example.com")],
        vec!["-n", n, "widgets.{n}.example.com/gizmo"],
        vec!["-n", n, "deployment/web"],
        vec!["-n", n, "service/web"],
        vec!["-n", n, "configmap/web-config"],
    ] {
        let args: Vec<String> = args.iter().map(|a| a.replace("{n}", n)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let obj = w
            .get(&args)
            .unwrap_or_else(|| panic!("{args:?} was not created"));
        assert!(
            managers(&obj).contains(&("tether".to_owned(), "Apply".to_owned())),
            "{args:?} is not managed by tether: {:?}",
            managers(&obj)
        );
    }
    assert_eq!(
        w.repo
            .rev_parse("refs/tags/tether-sync^{commit}")
            .as_deref(),
        Some(head.as_str())
    );

    // The same commit again: every object unchanged and not one write request.
    let audit = w.cluster.audit();
    let summary = w.once_file(&[]).ok();
    assert!(
        summary.contains("created=0 configured=0 unchanged=6"),
        "{summary}"
    );
    let writes = audit.writes(|e| e.namespace == *n || e.name.contains(n.as_str()));
    assert!(writes.is_empty(), "a no-op resync wrote: {writes:?}");

    // A hand edit of a field tether manages is drift; the next sync puts Git's value back.
    w.kubectl(&[
        "-n",
        n,
        "patch",
        "configmap",
        "web-config",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"color":"red"}}"#,
    ]);
    w.kubectl(&["-n", n, "scale", "deployment", "web", "--replicas", "5"]);
    let summary = w.once_file(&[]).ok();
    assert!(summary.contains("configured=2 unchanged=4"), "{summary}");
    let cm = w.get(&["-n", n, "configmap/web-config"]).unwrap();
    assert_eq!(cm["data"]["color"], "blue");
    let deploy = w.get(&["-n", n, "deployment/web"]).unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2);
}

#[test]
fn a_custom_resource_in_a_file_read_before_its_crds_is_applied() {
    // Each file is planned as it is rendered, so the Widget arrives before the CRD that defines it.
    let w = World::new("sync-cr-first");
    let n = &w.n;
    let files: Vec<(String, String)> = app(n)
        .into_iter()
        .map(|(path, text)| match path.as_str() {
            "app/widget.yaml" => ("app/a-widget.yaml".to_owned(), text),
            _ => (path, text),
        })
        .collect();
    assert!(files.iter().any(|(p, _)| p == "app/a-widget.yaml"));
    write(&w.repo, &files);
    w.repo.commit("a widget before its CRD");
    let summary = w.once_file(&[]).ok();
    assert!(
        summary.contains("created=6 configured=0 unchanged=0"),
        "{summary}"
    );
    assert!(w
        .get(&["-n", n, &format!("widgets.{n}.example.com/gizmo")])
        .is_some());
}

#[test]
fn a_commit_with_one_invalid_object_applies_nothing_and_keeps_the_marker() {
    let w = World::new("sync-invalid");
    let n = &w.n;
    let ns = crate::support::namespace(n);
    let cm = |value: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {n}\ndata:\n  mode: {value}\n")
    };
    w.repo
        .write(&[("ns.yaml", &ns), ("settings.yaml", &cm("one"))]);
    let good = w.repo.commit("good");
    w.once_file(&[]).ok();

    // Valid changes next to an object the server rejects (a port out of range).
    let extra =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: {n}\n");
    let bad = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\n  namespace: {n}\nspec:\n  ports:\n  - port: 99999\n"
    );
    w.repo.write(&[
        ("settings.yaml", &cm("two")),
        ("extra.yaml", &extra),
        ("bad/service.yaml", &bad),
    ]);
    w.repo.commit("one bad object");
    let err = w.once_file(&[]).failed();
    assert!(
        err.contains(&format!("{n}:service/broken (bad/service.yaml:1)")),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(
        w.get(&["-n", n, "configmap/settings"]).unwrap()["data"]["mode"],
        "one"
    );
    assert!(
        w.get(&["-n", n, "configmap/extra"]).is_none(),
        "the valid new object was applied"
    );
    assert_eq!(
        w.repo
            .rev_parse("refs/tags/tether-sync^{commit}")
            .as_deref(),
        Some(good.as_str())
    );

    // Reverting the bad object lets the rest through.
    w.repo.remove("bad");
    let fixed = w.repo.commit("drop the bad object");
    let summary = w.once_file(&[]).ok();
    assert!(summary.contains("created=1 configured=1"), "{summary}");
    assert_eq!(
        w.get(&["-n", n, "configmap/settings"]).unwrap()["data"]["mode"],
        "two"
    );
    assert_eq!(
        w.repo
            .rev_parse("refs/tags/tether-sync^{commit}")
            .as_deref(),
        Some(fixed.as_str())
    );
}

#[test]
fn a_rejected_object_in_a_new_namespace_leaves_no_namespace_behind() {
    let w = World::new("sync-rollback");
    let n = &w.n;
    w.repo.write(&[
        ("ns.yaml", &crate::support::namespace(n)),
        ("cm.yaml", &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n  namespace: {n}\n")),
        (
            "svc.yaml",
            &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\n  namespace: {n}\nspec:\n  ports:\n  - port: 0\n"),
        ),
    ]);
    w.repo.commit("new namespace with a bad object");
    let err = w.once_file(&[]).failed();
    assert!(err.contains("svc.yaml:1"), "{err}");
    // The namespace this sync created is removed again (it may take a moment to finish terminating).
    let ns = w.get(&["namespace", n]);
    assert!(
        ns.is_none() || ns.as_ref().unwrap()["status"]["phase"] == "Terminating",
        "namespace left behind: {ns:?}"
    );
}

#[test]
fn parse_errors_and_duplicates_name_every_file_and_line() {
    let w = World::new("sync-render");
    let n = &w.n;
    let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n  namespace: {n}\n");
    w.repo.write(&[
        ("a.yaml", &cm),
        ("b.yaml", &format!("# copy\n---\n{cm}")),
        (
            "c.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
        ),
    ]);
    w.repo.commit("broken");
    let err = w.once_file(&[]).failed();
    assert!(
        err.contains(&format!(
            "b.yaml:3: duplicate object {n}:configmap/dup: also defined at a.yaml:1"
        )),
        "{err}"
    );
    assert!(err.contains("c.yaml:"), "{err}");
    assert!(w.repo.rev_parse("refs/tags/tether-sync").is_none());
}

#[test]
fn ignored_objects_are_not_applied_whether_marked_in_git_or_live() {
    let w = World::new("sync-ignore");
    let n = &w.n;
    let cm = |name: &str, extra: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {n}\n{extra}data:\n  v: git\n")
    };
    w.repo.write(&[
        ("ns.yaml", &crate::support::namespace(n)),
        (
            "git.yaml",
            &cm(
                "in-git",
                "  annotations:\n    flux.weave.works/ignore: \"true\"\n",
            ),
        ),
        ("live.yaml", &cm("on-live", "")),
    ]);
    w.repo.commit("first");
    w.once_file(&[]).ok();
    assert!(w.get(&["-n", n, "configmap/in-git"]).is_none());

    w.kubectl(&[
        "-n",
        n,
        "annotate",
        "configmap",
        "on-live",
        "fluxcd.io/ignore=true",
    ]);
    w.kubectl(&[
        "-n",
        n,
        "patch",
        "configmap",
        "on-live",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"v":"hand"}}"#,
    ]);
    let summary = w.once_file(&[]).ok();
    assert!(summary.contains("skipped=2"), "{summary}");
    assert_eq!(
        w.get(&["-n", n, "configmap/on-live"]).unwrap()["data"]["v"],
        "hand"
    );
}

#[test]
fn an_object_in_a_misspelled_namespace_fails_at_the_first_answer() {
    let w = World::new("nsmiss");
    let n = w.n.clone();
    w.repo.write(&[
        ("ns.yaml", &crate::support::namespace(&n)),
        (
            "cm.yaml",
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: {n}-typo\n"
            ),
        ),
    ]);
    w.repo.commit("a typo in a namespace");
    let audit = w.cluster.audit();
    let err = w.once_file(&[]).failed();
    assert!(
        err.contains("cm.yaml:1") && err.contains("not found"),
        "{err}"
    );
    // One dry-run: a 404 for a namespace that exists nowhere is a definite answer, not a race to wait out.
    let tries: Vec<_> = audit
        .events()
        .into_iter()
        .filter(|e| {
            e.verb == "patch" && e.resource == "configmaps" && e.namespace == format!("{n}-typo")
        })
        .collect();
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert!(
        w.get(&["namespace", &n]).is_none(),
        "a rejected commit was partly applied"
    );
}

#[test]
fn oversize_annotations_and_text_that_is_not_utf8_are_refused_naming_the_object_and_nothing_is_applied(
) {
    let w = World::new("sync-oversize");
    let n = &w.n;
    let ns = crate::support::namespace(n);
    w.repo.write(&[("ns.yaml", &ns)]);
    w.repo.commit("namespace");
    w.once_file(&[]).ok();

    // 300 KiB of annotations: over the API server's 256 KiB limit for the whole of an object's annotations.
    let huge = "x".repeat(300 * 1024);
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\n  namespace: {n}\n  annotations:\n    note: \"{huge}\"\n"
    );
    let fine =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n  namespace: {n}\n");
    w.repo
        .write(&[("big/annotated.yaml", &big), ("fine.yaml", &fine)]);
    w.repo.commit("an object with too many annotations");
    let err = w.once_file(&[]).failed();
    assert!(
        err.contains(&format!("{n}:configmap/big (big/annotated.yaml:1)"))
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(
        !err.contains(&huge[..1000]),
        "the annotation was echoed whole"
    );
    assert!(w.get(&["-n", n, "configmap/fine"]).is_none());

    // A manifest with bytes that are not UTF-8 names its file; still nothing applied.
    w.repo.remove("big");
    std::fs::write(
        w.repo.work.join("latin1.yaml"),
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latin\n  namespace: x\ndata:\n  k: caf\xe9\n",
    )
    .unwrap();
    w.repo.commit("a Latin-1 file");
    let err = w.once_file(&[]).failed();
    assert!(err.contains("latin1.yaml"), "{err}");
    assert!(w.get(&["-n", n, "configmap/fine"]).is_none());
}
