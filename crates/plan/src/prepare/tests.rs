use super::*;
use serde_json::json;

fn res(file: &str, object: Value) -> Resource {
    Resource {
        object,
        source: Provenance {
            file: file.into(),
            line: 1,
        },
    }
}

fn resolve(group: &str, version: &str, kind: &str) -> Option<Kind> {
    let namespaced = match kind {
        "Namespace" | "CustomResourceDefinition" | "ClusterRole" => false,
        "ConfigMap" | "Deployment" => true,
        _ => return None,
    };
    Some(Kind {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
        namespaced,
    })
}

fn cm(name: &str, ns: Option<&str>) -> Value {
    let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}});
    if let Some(ns) = ns {
        v["metadata"]["namespace"] = ns.into();
    }
    v
}

#[test]
fn defaults_the_namespace_and_orders_namespaces_first() {
    let p = prepare(
        vec![
            res("cm.yaml", cm("a", None)),
            res("ns.yaml", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo", "namespace": "x"}})),
        ],
        resolve,
        "fallback",
        &NamespaceFilter::default(),
        "tether",
    )
    .unwrap();
    let ids: Vec<String> = p.desired.iter().map(|d| d.id.to_string()).collect();
    assert_eq!(ids, ["<cluster>:namespace/demo", "fallback:configmap/a"]);
    assert_eq!(
        p.desired[1].body_value().unwrap()["metadata"]["namespace"],
        "fallback"
    );
    assert!(p.desired[0].body_value().unwrap()["metadata"]
        .get("namespace")
        .is_none());
    assert_eq!(
        p.desired[1].body_value().unwrap()["metadata"]["labels"][SYNC_LABEL],
        "tether"
    );
}

#[test]
fn same_object_through_default_namespace_is_a_duplicate_naming_both_files() {
    let err = prepare(
        vec![
            res("a.yaml", cm("a", None)),
            res("b.yaml", cm("a", Some("default"))),
        ],
        resolve,
        "default",
        &NamespaceFilter::default(),
        "tether",
    )
    .unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(
        err[0].to_string(),
        "default:configmap/a (b.yaml:1): defined twice: also at a.yaml:1; remove one of them"
    );
}

#[test]
fn unknown_kinds_are_all_reported_with_their_files() {
    let err = prepare(
        vec![
            res("w.yaml", json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})),
            res("g.yaml", json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}})),
        ],
        resolve,
        "default",
        &NamespaceFilter::default(),
        "tether",
    )
    .unwrap_err();
    assert_eq!(err.len(), 2);
    assert!(
        err[0]
            .to_string()
            .starts_with("w.yaml:1: example.com/v1 Widget is not served"),
        "{}",
        err[0]
    );
}

#[test]
fn a_kind_holding_control_characters_is_named_on_one_line() {
    let err = prepare(
        vec![res(
            "w.yaml",
            json!({"apiVersion": "v1", "kind": "K\u{1b}[2J\nlevel=error msg=forged", "metadata": {"name": "w"}}),
        )],
        resolve,
        "default",
        &NamespaceFilter::default(),
        "tether",
    )
    .unwrap_err();
    let shown = err[0].to_string();
    assert!(!shown.contains(['\n', '\u{1b}']), "{shown}");
    assert!(shown.contains("K\\u{1b}[2J\\nlevel=error"), "{shown}");
}

#[test]
fn ignored_and_disallowed_objects_are_skipped_with_a_reason() {
    let mut ignored = cm("i", Some("demo"));
    ignored["metadata"]["annotations"] = json!({"fluxcd.io/ignore": "true"});
    let filter = NamespaceFilter(["demo".to_owned()].into());
    let p = prepare(
        vec![
            res("a.yaml", ignored),
            res("b.yaml", cm("other", Some("prod"))),
            res("c.yaml", cm("ok", Some("demo"))),
            res(
                "d.yaml",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}),
            ),
        ],
        resolve,
        "default",
        &filter,
        "tether",
    )
    .unwrap();
    assert_eq!(p.desired.len(), 1);
    let reasons: Vec<_> = p
        .skipped
        .iter()
        .map(|(id, _, why)| (id.to_string(), *why))
        .collect();
    assert_eq!(
        reasons,
        [
            ("demo:configmap/i".to_owned(), Skipped::IgnoredInGit),
            (
                "prod:configmap/other".to_owned(),
                Skipped::NamespaceNotAllowed
            ),
            (
                "<cluster>:namespace/prod".to_owned(),
                Skipped::NamespaceNotAllowed
            ),
        ]
    );
}

#[test]
fn owner_marks_differ_per_sync_name_and_object() {
    let a = ObjectId::new("v1", "ConfigMap", Some("ns"), "a");
    let b = ObjectId::new("v1", "ConfigMap", Some("ns"), "b");
    assert_ne!(owner_mark("tether", &a), owner_mark("other", &a));
    assert_ne!(owner_mark("tether", &a), owner_mark("tether", &b));
    assert_eq!(owner_mark("tether", &a), owner_mark("tether", &a));
}

fn desired_cm() -> Desired {
    prepare(
        vec![res("a.yaml", cm("a", Some("demo")))],
        resolve,
        "default",
        &NamespaceFilter::default(),
        "tether",
    )
    .unwrap()
    .desired
    .remove(0)
}

#[test]
fn decisions_follow_live_state() {
    let d = desired_cm();
    assert_eq!(decide(&d, None), Action::Create);

    let mut live = d.body_value().unwrap();
    live["metadata"]["resourceVersion"] = "7".into();
    assert_eq!(decide(&d, Some(&live)), Action::Unchanged);

    live["data"]["k"] = "edited by hand".into();
    assert_eq!(decide(&d, Some(&live)), Action::Verify);

    let mut old = d.body_value().unwrap();
    old["metadata"]["annotations"][CHECKSUM_ANNOTATION] = "older".into();
    assert_eq!(decide(&d, Some(&old)), Action::Update);

    old["metadata"]["annotations"]["flux.weave.works/ignore"] = "true".into();
    assert_eq!(decide(&d, Some(&old)), Action::IgnoredLive);
}

#[test]
fn a_removed_api_version_names_its_release_and_replacement() {
    let err = prepare(
        vec![
            res(
                "hpa.yaml",
                json!({"apiVersion": "autoscaling/v2beta1", "kind": "HorizontalPodAutoscaler",
                       "metadata": {"name": "web", "namespace": "demo"}}),
            ),
            res(
                "ing.yaml",
                json!({"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "web"}}),
            ),
        ],
        resolve,
        "default",
        &NamespaceFilter::default(),
        "tether",
    )
    .unwrap_err();
    let lines: Vec<String> = err.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "hpa.yaml:1: autoscaling/v2beta1 HorizontalPodAutoscaler is no longer served"
        ) && lines[0].contains("1.25")
            && lines[0].contains("autoscaling/v2"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("networking.k8s.io/v1") && lines[1].contains("pathType"),
        "{}",
        lines[1]
    );
}

#[test]
fn names_and_namespaces_that_would_break_a_request_url_are_refused_before_any_request() {
    for bad in [
        "a?dryRun=All&x=",
        "a/b",
        "..",
        "a%2F",
        "with space",
        "a#frag",
        "",
    ] {
        let err = prepare(
            vec![res("cm.yaml", cm(bad, Some("demo")))],
            resolve,
            "fallback",
            &NamespaceFilter::default(),
            "tether",
        )
        .unwrap_err();
        assert_eq!(err.len(), 1, "{bad}");
        assert!(
            err[0].message.contains("metadata.name"),
            "{bad}: {}",
            err[0]
        );
    }
    let err = prepare(
        vec![res("cm.yaml", cm("ok", Some("Demo_NS")))],
        resolve,
        "fallback",
        &NamespaceFilter::default(),
        "tether",
    )
    .unwrap_err();
    assert!(err[0].message.contains("metadata.namespace"), "{}", err[0]);
    // RBAC names may hold colons.
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:tether:view"}});
    assert!(prepare(
        vec![res("r.yaml", role)],
        resolve,
        "fallback",
        &NamespaceFilter::default(),
        "tether"
    )
    .is_ok());
}

#[test]
fn a_secret_written_with_string_data_is_unchanged_once_the_server_stored_it_as_data() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": "demo"},
        "stringData": {"password": "hunter2"}, "data": {"user": "YWxpY2U="}});
    let resolve_secret = |g: &str, v: &str, k: &str| {
        (k == "Secret").then(|| Kind {
            group: g.into(),
            version: v.into(),
            kind: k.into(),
            plural: "secrets".into(),
            namespaced: true,
        })
    };
    let d = prepare(
        vec![res("s.yaml", secret)],
        resolve_secret,
        "default",
        &NamespaceFilter::default(),
        "tether",
    )
    .unwrap()
    .desired
    .remove(0);
    // What the server keeps: stringData folded into data, base64-encoded.
    let mut live = d.body_value().unwrap();
    live.as_object_mut().unwrap().remove("stringData");
    live["data"]["password"] = "aHVudGVyMg==".into();
    assert_eq!(decide(&d, Some(&live)), Action::Unchanged);
    live["data"]["password"] = "Y2hhbmdlZA==".into();
    assert_eq!(decide(&d, Some(&live)), Action::Verify);
}

#[test]
fn checksums_ignore_key_order_and_match_those_taken_of_sorted_maps() {
    let a: Value =
        serde_json::from_str(r#"{"kind":"ConfigMap","apiVersion":"v1","data":{"b":"2","a":"1"}}"#)
            .unwrap();
    let b: Value =
        serde_json::from_str(r#"{"apiVersion":"v1","data":{"a":"1","b":"2"},"kind":"ConfigMap"}"#)
            .unwrap();
    assert_eq!(checksum_of(&a), checksum_of(&b));
    // What serde_json wrote for the same object when its maps were sorted: checksums already on live objects
    // stay valid.
    let sorted = r#"{"apiVersion":"v1","data":{"a":"1","b":"2"},"kind":"ConfigMap"}"#;
    assert_eq!(
        checksum_of(&a),
        hex::encode(&Sha256::digest(sorted.as_bytes())[..16])
    );
    let c: Value =
        serde_json::from_str(r#"{"apiVersion":"v1","data":{"a":"1","b":"3"},"kind":"ConfigMap"}"#)
            .unwrap();
    assert_ne!(checksum_of(&a), checksum_of(&c));
}

#[test]
fn a_preparer_gives_back_unknown_kinds_and_finds_duplicates_across_pushes() {
    let filter = NamespaceFilter::default();
    let mut p = Preparer::new("default", &filter, "tether");
    let widget = res(
        "a-widget.yaml",
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
    );
    let back = p
        .push(widget, resolve)
        .expect("an unknown kind is given back");
    assert!(p.push(res("b.yaml", cm("a", None)), resolve).is_none());
    assert!(p.push(res("c.yaml", cm("a", None)), resolve).is_none());
    // The CRD that defines it came later: pushed again with a resolver that knows it.
    let knows_widgets = |g: &str, v: &str, k: &str| {
        resolve(g, v, k).or_else(|| {
            (k == "Widget").then(|| Kind {
                group: g.into(),
                version: v.into(),
                kind: k.into(),
                plural: "widgets".into(),
                namespaced: true,
            })
        })
    };
    assert!(p.push(back, knows_widgets).is_none());
    let errors = p.finish().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].at.file, "c.yaml");
    assert!(errors[0].message.contains("also at b.yaml:1"), "{errors:?}");
}

#[test]
fn a_prepared_body_is_compact_json_with_tethers_marks() {
    let d = desired_cm();
    assert!(!d.body.get().contains(char::is_whitespace), "{}", d.body);
    let body = d.body_value().unwrap();
    assert_eq!(body["metadata"]["labels"][SYNC_LABEL], "tether");
    assert_eq!(
        body["metadata"]["annotations"][CHECKSUM_ANNOTATION],
        d.checksum.as_str()
    );
}
