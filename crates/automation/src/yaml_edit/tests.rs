use super::*;
use tether_core::policy::names;

fn target(id: &str) -> Target {
    Target::new(ObjectId::parse(id).unwrap())
}

fn web() -> Target {
    target("demo:deployment/web")
}

/// Asserts that `after` is `before` with the first `from` replaced by `to`: every other byte is unchanged.
#[track_caller]
fn assert_only(before: &str, after: &str, from: &str, to: &str) {
    assert!(before.contains(from), "test bug: {from:?} not in input");
    assert_eq!(after, before.replacen(from, to, 1));
}

#[track_caller]
fn image_error(text: &str, target: &Target, container: &str) -> EditError {
    match set_image(text, target, container, "nginx:9.9") {
        Ok(out) => panic!("expected an error, got:\n{out}"),
        Err(e) => e,
    }
}

const DEPLOYMENT: &str = "\
# The web front end.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web   # selector label

spec:
  replicas: 2
  template:
    metadata:
      labels: {app: web}
    spec:
      # containers, in start order
      containers:
      - image: nginx:1.0 # pinned until the CVE fix
        name: web

        ports:
        - containerPort: 80
      - name: sidecar
        image: 'envoy:1.2'
      - name: logger
        image: \"fluent/fluent-bit:2.1\"
      initContainers:
        - name: migrate
          image: registry.example.com:5000/team/migrate@sha256:abc # digest
";

// ---- images -------------------------------------------------------------------------------------------

#[test]
fn sets_a_plain_image_keeping_the_trailing_comment_and_everything_else() {
    let out = set_image(DEPLOYMENT, &web(), "web", "nginx:1.1").unwrap();
    assert_only(DEPLOYMENT, &out, "nginx:1.0 # pinned", "nginx:1.1 # pinned");
}

#[test]
fn keeps_single_and_double_quotes() {
    let out = set_image(DEPLOYMENT, &web(), "sidecar", "envoy:1.3").unwrap();
    assert_only(DEPLOYMENT, &out, "'envoy:1.2'", "'envoy:1.3'");
    let out = set_image(DEPLOYMENT, &web(), "logger", "fluent/fluent-bit:2.2").unwrap();
    assert_only(
        DEPLOYMENT,
        &out,
        "\"fluent/fluent-bit:2.1\"",
        "\"fluent/fluent-bit:2.2\"",
    );
}

#[test]
fn sets_init_container_images_with_registry_ports_and_digests() {
    let image = "registry.example.com:5000/team/migrate@sha256:def";
    let out = set_image(DEPLOYMENT, &web(), "migrate", image).unwrap();
    assert_only(
        DEPLOYMENT,
        &out,
        "migrate@sha256:abc # digest",
        "migrate@sha256:def # digest",
    );
}

#[test]
fn setting_the_current_image_changes_nothing() {
    assert_eq!(
        set_image(DEPLOYMENT, &web(), "sidecar", "envoy:1.2").unwrap(),
        DEPLOYMENT
    );
}

#[test]
fn flow_style_containers() {
    let text = "\
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  template:
    spec:
      containers:
      - {name: web, image: \"nginx:1.0\", ports: [{containerPort: 80}]}
      - {name: side, image: busybox:1}
";
    let out = set_image(text, &web(), "web", "nginx:1.1").unwrap();
    assert_only(text, &out, "\"nginx:1.0\"", "\"nginx:1.1\"");
    let out = set_image(text, &web(), "side", "busybox:2").unwrap();
    assert_only(text, &out, "busybox:1}", "busybox:2}");
}

#[test]
fn json_manifests_are_yaml_too() {
    let text = r#"{
  "apiVersion": "apps/v1",
  "kind": "Deployment",
  "metadata": {"name": "web", "namespace": "demo"},
  "spec": {"template": {"spec": {"containers": [
    {"name": "web", "image": "nginx:1.0"}
  ]}}}
}
"#;
    let out = set_image(text, &web(), "web", "nginx:1.1").unwrap();
    assert_only(text, &out, "\"nginx:1.0\"", "\"nginx:1.1\"");
}

#[test]
fn edits_only_the_target_document_of_a_multi_document_file() {
    let text = "\
# same names, other kinds and namespaces: none of these may change
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: staging
spec:
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.0
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: demo
spec:
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.0
---

# the one to edit
apiVersion: apps/v1
kind: Deployment
metadata:
  namespace: demo
  name: web
spec:
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.0
...
";
    let out = set_image(text, &web(), "web", "nginx:1.1").unwrap();
    let at = text.rfind("nginx:1.0").unwrap();
    let mut expected = text.to_owned();
    expected.replace_range(at..at + "nginx:1.0".len(), "nginx:1.1");
    assert_eq!(out, expected);
    let sts = target("demo:statefulset/web");
    let out = set_image(text, &sts, "web", "nginx:1.2").unwrap();
    let at = text.find("kind: StatefulSet").unwrap();
    assert_eq!(out[..at], text[..at]);
    assert_eq!(out.matches("nginx:1.2").count(), 1);
    assert!(out[at..].starts_with(&text[at..text.find("nginx:1.0\n---\n\n#").unwrap()]));
}

#[test]
fn documents_without_a_namespace_match_the_default_namespace() {
    let text = "\
kind: DaemonSet
metadata:
  name: agent
spec:
  template:
    spec:
      containers:
      - name: agent
        image: agent:1
";
    let agent = target("monitoring:daemonset/agent");
    assert!(matches!(
        image_error(text, &agent, "agent"),
        EditError::NotFound { .. }
    ));
    let agent = agent.with_default_namespace("monitoring");
    let out = set_image(text, &agent, "agent", "agent:2").unwrap();
    assert_only(text, &out, "agent:1", "agent:2");
}

#[test]
fn crlf_files_stay_crlf() {
    let text = DEPLOYMENT.replace('\n', "\r\n");
    let out = set_image(&text, &web(), "web", "nginx:1.1").unwrap();
    assert_only(&text, &out, "nginx:1.0 # pinned", "nginx:1.1 # pinned");
    let out = set_image(&text, &web(), "sidecar", "envoy:1.3").unwrap();
    assert_only(&text, &out, "'envoy:1.2'\r\n", "'envoy:1.3'\r\n");
}

#[test]
fn non_ascii_text_before_the_image_does_not_shift_the_edit() {
    let text = "\
# Überwachung 監視 🚀 — déploiement
kind: Deployment
metadata:
  name: web
  namespace: demo
  annotations:
    description: \"Frontend für Kunden — 日本語\"
spec:
  template:
    spec:
      containers:
      - name: web # 名前
        image: nginx:1.0 # ✓ geprüft
";
    let out = set_image(text, &web(), "web", "nginx:1.25.3").unwrap();
    assert_only(text, &out, "nginx:1.0 # ✓", "nginx:1.25.3 # ✓");
}

#[test]
fn cronjob_job_templates_in_both_api_versions() {
    for api in ["batch/v1", "batch/v1beta1"] {
        let text = format!(
            "\
apiVersion: {api}
kind: CronJob
metadata:
  name: report
  namespace: demo
spec:
  schedule: \"0 * * * *\"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          initContainers:
          - name: fetch
            image: curl:8.0
          containers:
          - name: report
            image: reporter:1.0   # nightly
"
        );
        let job = target("demo:cronjob/report");
        let out = set_image(&text, &job, "report", "reporter:1.1").unwrap();
        assert_only(&text, &out, "reporter:1.0   #", "reporter:1.1   #");
        let out = set_image(&text, &job, "fetch", "curl:8.1").unwrap();
        assert_only(&text, &out, "curl:8.0", "curl:8.1");
    }
}

#[test]
fn kinds_match_case_insensitively_and_groups_when_given() {
    let text = DEPLOYMENT.replace("kind: Deployment", "kind: deployment");
    assert!(set_image(&text, &web(), "web", "nginx:2").is_ok());
    let mut grouped = web();
    grouped.id.group = "apps".to_owned();
    assert!(set_image(DEPLOYMENT, &grouped, "web", "nginx:2").is_ok());
    grouped.id.group = "extensions".to_owned();
    assert!(matches!(
        image_error(DEPLOYMENT, &grouped, "web"),
        EditError::NotFound { .. }
    ));
}

#[test]
fn tags_comments_and_values_on_the_next_line() {
    let text = "\
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  template:
    spec:
      containers:
      - name: web
        image: !!str nginx:1.0
      - name: side
        \"image\": # the sidecar
          envoy:1.2
";
    let out = set_image(text, &web(), "web", "nginx:1.1").unwrap();
    assert_only(text, &out, "!!str nginx:1.0", "!!str nginx:1.1");
    let out = set_image(text, &web(), "side", "envoy:1.3").unwrap();
    assert_only(text, &out, "envoy:1.2", "envoy:1.3");
}

const TRICKY: &str = "\
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  defaults: &whole {name: whole, image: nginx:1.0}
  template:
    spec:
      containers:
      - name: anchored
        image: &img nginx:1.0
      - name: aliased
        image: *img
      - name: folded
        image: >-
          nginx:1.0
      - name: literal
        image: |
          nginx:1.0
      - name: empty
        image:
      - name: numeric
        image: 12
      - name: listed
        image: [nginx]
      - <<: {name: merged, image: nginx:1.0}
      - *whole
";

#[test]
fn refuses_values_that_cannot_be_edited_in_place() {
    let cases = [
        ("anchored", "anchor &img"),
        ("aliased", "alias"),
        ("folded", "block scalar (>-)"),
        ("literal", "block scalar (|)"),
        ("listed", "not a string"),
        ("merged", "alias"),
        ("whole", "alias"),
    ];
    for (container, why) in cases {
        let err = image_error(TRICKY, &web(), container);
        assert!(
            matches!(err, EditError::Unsupported { .. }),
            "{container}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(why), "{container}: {msg}");
        assert!(msg.contains(&format!("container '{container}'")), "{msg}");
        assert!(msg.contains("line "), "{msg}");
    }
    let err = image_error(TRICKY, &web(), "empty");
    assert!(
        matches!(err, EditError::NoImage { line: 18, .. }),
        "{err:?}"
    );
}

#[test]
fn a_number_written_as_image_is_replaced_by_a_string() {
    let out = set_image(TRICKY, &web(), "numeric", "nginx:1.1").unwrap();
    assert_only(TRICKY, &out, "image: 12", "image: nginx:1.1");
}

#[test]
fn a_value_shared_through_an_anchored_list_is_refused_by_the_read_back() {
    let text = "\
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  template:
    spec:
      containers: &same
      - name: web
        image: nginx:1.0
      initContainers: *same
";
    let err = set_image(text, &web(), "web", "nginx:1.1").unwrap_err();
    // Both lists hold a container named web: Kubernetes would refuse it too.
    assert!(
        matches!(err, EditError::DuplicateContainer { .. }),
        "{err:?}"
    );

    let text = "\
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  template:
    metadata:
      annotations: &shared {image: nginx:1.0}
    spec:
      containers:
      - name: web
        image: nginx:1.0
      - name: other
        image: x
        env: [*shared]
";
    // The edited scalar itself is not shared, so the edit goes through and nothing else moves.
    let out = set_image(text, &web(), "web", "nginx:1.1").unwrap();
    assert_only(text, &out, "image: nginx:1.0\n", "image: nginx:1.1\n");
}

#[test]
fn edits_through_an_anchored_pod_spec_are_caught_by_the_read_back() {
    let text = "\
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  template:
    spec: &pod
      containers:
      - name: web
        image: nginx:1.0
  other: *pod
";
    let err = set_image(text, &web(), "web", "nginx:1.1").unwrap_err();
    assert!(matches!(err, EditError::Verification { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/spec/other") && msg.contains("left unchanged"),
        "{msg}"
    );
}

#[test]
fn explains_what_is_missing() {
    let err = image_error(DEPLOYMENT, &web(), "nginx").to_string();
    assert!(
        err.contains("'nginx'") && err.contains("web, sidecar, logger, migrate"),
        "{err}"
    );

    let err = image_error(DEPLOYMENT, &target("prod:deployment/web"), "web").to_string();
    assert!(
        err.contains("prod:deployment/web is not defined") && err.contains("demo:deployment/web"),
        "{err}"
    );

    let doubled = format!("{DEPLOYMENT}---\n{DEPLOYMENT}");
    assert!(matches!(
        image_error(&doubled, &web(), "web"),
        EditError::Ambiguous { count: 2, .. }
    ));

    let service = "kind: Service\nmetadata: {name: web, namespace: demo}\nspec: {}\n";
    let err = image_error(service, &target("demo:service/web"), "web");
    assert!(matches!(err, EditError::UnsupportedKind { .. }), "{err:?}");

    let bare = "kind: Deployment\nmetadata: {name: web, namespace: demo}\nspec: {}\n";
    let err = image_error(bare, &web(), "web").to_string();
    assert!(err.contains("spec.template.spec"), "{err}");

    let err = image_error("kind: [unclosed\n", &web(), "web");
    assert!(matches!(err, EditError::Yaml { .. }), "{err:?}");

    for bad in ["", "nginx 1.0", "nginx:1.0\n"] {
        let err = set_image(DEPLOYMENT, &web(), "web", bad).unwrap_err();
        assert!(
            matches!(err, EditError::InvalidValue { .. }),
            "{bad:?}: {err:?}"
        );
    }
}

// ---- annotations --------------------------------------------------------------------------------------

const ANNOTATED: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  annotations:
    fluxcd.io/automated: \"false\"   # not yet
    fluxcd.io/tag.web: glob:1.*
    note: |
      Owned by team A.
      # not a comment: part of the note

  # labels follow
  labels:
    app: web
spec: {}
";

#[test]
fn sets_an_existing_annotation_in_its_quoting() {
    let out = set_annotation(ANNOTATED, &web(), "fluxcd.io/automated", "true").unwrap();
    assert_only(
        ANNOTATED,
        &out,
        "\"false\"   # not yet",
        "\"true\"   # not yet",
    );
    let out = set_annotation(ANNOTATED, &web(), "fluxcd.io/tag.web", "semver:~1.4").unwrap();
    assert_only(ANNOTATED, &out, "glob:1.*", "semver:~1.4");
}

#[test]
fn a_plain_value_that_would_not_read_back_as_a_string_gets_quoted() {
    let out = set_annotation(ANNOTATED, &web(), "fluxcd.io/tag.web", "true").unwrap();
    assert_only(ANNOTATED, &out, "glob:1.*", "\"true\"");
    let text = ANNOTATED.replace("\"false\"", "false");
    let out = set_annotation(&text, &web(), "fluxcd.io/automated", "true").unwrap();
    assert_only(&text, &out, "false   #", "\"true\"   #");
}

#[test]
fn adds_an_annotation_after_the_last_one_even_after_a_block_scalar() {
    let out = set_annotation(ANNOTATED, &web(), "fluxcd.io/locked", "true").unwrap();
    assert_only(
        ANNOTATED,
        &out,
        "part of the note\n",
        "part of the note\n    fluxcd.io/locked: \"true\"\n",
    );
}

#[test]
fn creates_annotations_at_the_files_indentation() {
    let text = "\
kind: Deployment
metadata:
    name: web    # four spaces here
    namespace: demo
    labels:
        app: web
        tier: front

spec: {}
";
    let out = set_annotation(text, &web(), "fluxcd.io/automated", "true").unwrap();
    assert_only(
        text,
        &out,
        "tier: front\n",
        "tier: front\n    annotations:\n        fluxcd.io/automated: \"true\"\n",
    );
}

#[test]
fn annotations_in_flow_style_and_empty_ones() {
    let text = "kind: Deployment\nmetadata: {name: web, namespace: demo}\nspec: {}\n";
    let out = set_annotation(text, &web(), "fluxcd.io/automated", "true").unwrap();
    assert_only(
        text,
        &out,
        "demo}",
        "demo, annotations: {fluxcd.io/automated: \"true\"}}",
    );

    let text = "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  annotations: {}\n";
    let out = set_annotation(text, &web(), "a", "b").unwrap();
    assert_only(text, &out, "{}", "{a: \"b\"}");

    let text =
        "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  annotations: {x: 'y'}\n";
    let out = set_annotation(text, &web(), "a", "b").unwrap();
    assert_only(text, &out, "{x: 'y'}", "{x: 'y', a: \"b\"}");
    let out = set_annotation(text, &web(), "x", "it's").unwrap();
    assert_only(text, &out, "'y'", "'it''s'");
}

#[test]
fn an_empty_annotations_key_becomes_a_mapping() {
    for empty in [
        "annotations:",
        "annotations: ~",
        "annotations: null # none yet",
    ] {
        let text =
            format!("kind: Deployment\nmetadata:\n  name: web\n  {empty}\n  namespace: demo\n");
        let out = set_annotation(&text, &web(), "fluxcd.io/automated", "true").unwrap();
        let kept = empty.replace(" ~", "").replace(" null", "");
        let expected = text.replace(
            &format!("  {empty}\n"),
            &format!("  {kept}\n    fluxcd.io/automated: \"true\"\n"),
        );
        assert_eq!(out, expected, "{empty}");
    }
}

#[test]
fn an_annotation_without_a_value_gets_one() {
    let text = "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  annotations:\n    fluxcd.io/automated:   # set me\n";
    let out = set_annotation(text, &web(), "fluxcd.io/automated", "true").unwrap();
    assert_only(text, &out, "automated:   #", "automated: \"true\"   #");
}

#[test]
fn multi_line_flow_annotations() {
    let text = "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  annotations: {\n    a: b,  # first\n    c: d\n  }\n";
    let out = set_annotation(text, &web(), "e", "f").unwrap();
    assert_only(text, &out, "c: d\n", "c: d, e: \"f\"\n");
    let out = remove_annotation(text, &web(), "a").unwrap();
    assert_only(text, &out, "a: b,  # first\n    ", "");
}

#[test]
fn annotations_in_crlf_files_and_files_without_a_final_newline() {
    let text = "kind: Deployment\r\nmetadata:\r\n  name: web\r\n  namespace: demo\r\n";
    let out = set_annotation(text, &web(), "k", "v").unwrap();
    assert_eq!(out, format!("{text}  annotations:\r\n    k: \"v\"\r\n"));

    let text = "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo";
    let out = set_annotation(text, &web(), "k", "v").unwrap();
    assert_eq!(out, format!("{text}\n  annotations:\n    k: \"v\""));
}

#[test]
fn annotation_keys_and_values_that_need_quoting() {
    let text =
        "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  annotations:\n    a: b\n";
    let out = set_annotation(text, &web(), "odd: key", "line1\nline2 \"q\" ✓").unwrap();
    assert_only(
        text,
        &out,
        "a: b\n",
        "a: b\n    \"odd: key\": \"line1\\nline2 \\\"q\\\" ✓\"\n",
    );
}

#[test]
fn sets_annotations_in_the_right_document_only() {
    let text = format!(
        "{ANNOTATED}---\n{}",
        ANNOTATED.replace("namespace: demo", "namespace: prod")
    );
    let out = set_annotation(
        &text,
        &target("prod:deployment/web"),
        "fluxcd.io/automated",
        "true",
    )
    .unwrap();
    let at = text.find("---\n").unwrap();
    assert_eq!(out[..at], text[..at]);
    assert_eq!(out.matches("\"true\"").count(), 1);
    assert!(out[at..].contains("\"true\""));
}

#[test]
fn removes_one_annotation_and_its_whole_entry() {
    let out = remove_annotation(ANNOTATED, &web(), "fluxcd.io/tag.web").unwrap();
    assert_only(ANNOTATED, &out, "    fluxcd.io/tag.web: glob:1.*\n", "");
    let out = remove_annotation(ANNOTATED, &web(), "note").unwrap();
    assert_only(
        ANNOTATED,
        &out,
        "    note: |\n      Owned by team A.\n      # not a comment: part of the note\n",
        "",
    );
    assert_eq!(
        remove_annotation(ANNOTATED, &web(), "absent").unwrap(),
        ANNOTATED
    );
}

#[test]
fn removing_the_last_annotation_removes_annotations_unless_comments_are_in_it() {
    let text = "kind: Deployment\nmetadata:\n  name: web\n  annotations:\n    fluxcd.io/locked: 'true'\n  namespace: demo\n";
    let out = remove_annotation(text, &web(), "fluxcd.io/locked").unwrap();
    assert_eq!(
        out,
        "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n"
    );

    let text = "kind: Deployment\nmetadata:\n  name: web\n  annotations:\n    # why it is locked\n    fluxcd.io/locked: 'true'\n  namespace: demo\n";
    let out = remove_annotation(text, &web(), "fluxcd.io/locked").unwrap();
    assert_eq!(
        out,
        "kind: Deployment\nmetadata:\n  name: web\n  annotations: {}\n    # why it is locked\n  namespace: demo\n"
    );
}

#[test]
fn removes_flow_style_annotations() {
    let text = "kind: Deployment\nmetadata: {name: web, namespace: demo, annotations: {a: '1', b: \"2\", c: x}}\n";
    let cases = [
        ("a", "{b: \"2\", c: x}"),
        ("b", "{a: '1', c: x}"),
        ("c", "{a: '1', b: \"2\"}"),
    ];
    for (key, rest) in cases {
        let out = remove_annotation(text, &web(), key).unwrap();
        assert_only(text, &out, "{a: '1', b: \"2\", c: x}", rest);
    }
    let text = "kind: Deployment\nmetadata: {name: web, namespace: demo, annotations: {a: '1'}}\n";
    let out = remove_annotation(text, &web(), "a").unwrap();
    assert_only(text, &out, "{a: '1'}", "{}");
}

#[test]
fn policies_are_written_under_the_prefix_already_in_use() {
    let out = set_policy(ANNOTATED, &web(), names::LOCKED, "true").unwrap();
    assert!(out.contains("    fluxcd.io/locked: \"true\"\n"), "{out}");
    let out = set_policy(ANNOTATED, &web(), names::AUTOMATED, "true").unwrap();
    assert_only(ANNOTATED, &out, "\"false\"", "\"true\"");

    let legacy = ANNOTATED.replace("fluxcd.io/", "flux.weave.works/");
    let out = set_policy(&legacy, &web(), names::LOCKED, "true").unwrap();
    assert!(
        out.contains("    flux.weave.works/locked: \"true\"\n"),
        "{out}"
    );

    let plain = "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n";
    let out = set_policy(plain, &web(), "tag.web", "semver:^1").unwrap();
    assert!(
        out.ends_with("  annotations:\n    tether.dev/tag.web: \"semver:^1\"\n"),
        "{out}"
    );

    let filter = "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  annotations:\n    filter.fluxcd.io/web: glob:*\n";
    let out = set_policy(filter, &web(), "tag.web", "semver:^1").unwrap();
    assert_only(filter, &out, "glob:*", "semver:^1");
}

#[test]
fn removing_a_policy_removes_every_spelling() {
    let text = "\
kind: Deployment
metadata:
  name: web
  namespace: demo
  annotations:
    fluxcd.io/tag.web: glob:1.*
    keep: me
    filter.fluxcd.io/web: semver:^1
    tether.dev/tag.web: glob:*
";
    let out = remove_policy(text, &web(), "tag.web").unwrap();
    assert_eq!(
        out,
        "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  annotations:\n    keep: me\n"
    );
}

#[test]
fn finds_the_end_of_metadata_whatever_its_last_entry_is() {
    let cases = [
        // A list at the key's own indentation.
        "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  finalizers:\n  - a\n  - b\n",
        // A flow mapping whose closing brace is back at the key's indentation.
        "kind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  labels: {\n    app: web\n  }\n",
        // A value on the line after its key.
        "kind: Deployment\nmetadata:\n  name: web\n  namespace:\n    demo\n",
    ];
    for text in cases {
        let out = set_annotation(text, &web(), "k", "v").unwrap();
        assert_eq!(
            out,
            format!("{text}  annotations:\n    k: \"v\"\n"),
            "{text}"
        );
    }
    let text = "\
kind: Deployment
spec: {}
metadata:
  name: web
  namespace: demo

# trailing comment
---
kind: ConfigMap
metadata: {name: web, namespace: demo}
";
    let out = set_annotation(text, &web(), "k", "v").unwrap();
    assert_only(
        text,
        &out,
        "demo\n\n#",
        "demo\n  annotations:\n    k: \"v\"\n\n#",
    );
}

#[test]
fn a_byte_order_mark_does_not_shift_the_edit() {
    let text = format!("\u{feff}{DEPLOYMENT}");
    let out = set_image(&text, &web(), "web", "nginx:1.1").unwrap();
    assert_only(&text, &out, "nginx:1.0", "nginx:1.1");
}

#[test]
fn chained_edits_compose() {
    let out = set_image(DEPLOYMENT, &web(), "web", "nginx:1.1").unwrap();
    let out = set_image(&out, &web(), "migrate", "migrate:2").unwrap();
    let out = set_policy(&out, &web(), names::AUTOMATED, "true").unwrap();
    let out = set_policy(&out, &web(), "tag.web", "semver:~1").unwrap();
    let out = remove_policy(&out, &web(), names::AUTOMATED).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&out).unwrap();
    let doc = &docs[0];
    assert_eq!(
        doc.pointer("/spec/template/spec/containers/0/image"),
        Some(&Value::from("nginx:1.1"))
    );
    assert_eq!(
        doc.pointer("/spec/template/spec/initContainers/0/image"),
        Some(&Value::from("migrate:2"))
    );
    let annotations = doc.pointer("/metadata/annotations").unwrap();
    assert_eq!(
        annotations,
        &serde_json::json!({"tether.dev/tag.web": "semver:~1"})
    );
    assert!(
        out.contains("  annotations:\n    tether.dev/tag.web: \"semver:~1\"\n"),
        "{out}"
    );
    assert!(out.contains("# containers, in start order\n"));
}

// ---- scalar rendering ---------------------------------------------------------------------------------

#[test]
fn plain_scalars_are_only_used_when_they_read_back_as_the_same_string() {
    for safe in [
        "nginx:1.0",
        "123456789.dkr.ecr.eu-west-1.amazonaws.com/app:1",
        "glob:*",
        "semver:~1.4",
    ] {
        assert_eq!(text::render(safe, Style::Plain, false), safe);
    }
    for unsafe_ in [
        "true",
        "yes",
        "On",
        "~",
        "null",
        "1",
        "1.20",
        "1:20",
        "0x1F",
        "2024-01-01",
        ".inf",
        "a: b",
        "a #b",
        "*x",
        "-x",
        "",
        " x",
        "x:",
    ] {
        let out = text::render(unsafe_, Style::Plain, false);
        assert!(out.starts_with('"'), "{unsafe_:?} -> {out}");
        let back: String = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(back, unsafe_);
    }
    assert_eq!(text::render("a,b", Style::Plain, false), "a,b");
    assert_eq!(text::render("a,b", Style::Plain, true), "\"a,b\"");
    assert_eq!(text::render("it's", Style::Single, false), "'it''s'");
    assert_eq!(
        text::render("tab\there", Style::Single, false),
        "\"tab\\there\""
    );
}

/// A stream the size of the largest one reported to Flux v1 (fluxcd/flux#1857): 2.7 MB, 3,478 documents.
pub(crate) fn big_stream() -> String {
    let mut s = String::new();
    for i in 0..1739 {
        s.push_str(&format!(
            "---\n# workload {i}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: team-{t}\n  labels: {{app: app-{i}, tier: backend}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n    spec:\n      containers:\n      - name: main\n        image: registry.example.com/team-{t}/app-{i}:1.0.{i}\n        ports:\n        - containerPort: 8080\n        env:\n        - {{name: LOG_LEVEL, value: info}}\n        - {{name: CONFIG_PATH, value: /etc/app-{i}/config.yaml}}\n        - {{name: DATABASE_URL, value: \"postgres://db.team-{t}.svc:5432/app_{i}\"}}\n        - {{name: CACHE_URL, value: \"redis://cache.team-{t}.svc:6379/{i}\"}}\n        - {{name: FEATURE_FLAGS, value: \"search,recommendations,checkout-v2,new-ui\"}}\n        - {{name: OTEL_EXPORTER_OTLP_ENDPOINT, value: \"http://otel.observability.svc:4317\"}}\n        - {{name: JAVA_OPTS, value: \"-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=200\"}}\n        - {{name: SERVICE_NAME, value: app-{i}}}\n        - {{name: TEAM, value: team-{t}}}\n        resources:\n          requests: {{cpu: 100m, memory: 128Mi}}\n          limits: {{cpu: 500m, memory: 512Mi}}\n        readinessProbe:\n          httpGet: {{path: /healthz, port: 8080}}\n          periodSeconds: 10\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\n  namespace: team-{t}\n  annotations: {{description: \"the service in front of app-{i}, of team {t}, with a long annotation\"}}\nspec:\n  selector: {{app: app-{i}}}\n  ports:\n  - {{port: 80, targetPort: 8080, protocol: TCP}}\n",
            t = i % 40
        ));
    }
    s
}

#[test]
fn an_edit_in_a_stream_of_thousands_of_documents_changes_only_its_line() {
    let stream = big_stream();
    assert!(stream.len() > 2_600_000, "{}", stream.len());
    let target = Target::new(ObjectId::new(
        "apps/v1",
        "Deployment",
        Some("team-2"),
        "app-1722",
    ));
    let out = set_image(
        &stream,
        &target,
        "main",
        "registry.example.com/team-2/app-1722:2.0",
    )
    .unwrap();
    assert_eq!(
        out,
        stream.replace(
            "image: registry.example.com/team-2/app-1722:1.0.1722",
            "image: registry.example.com/team-2/app-1722:2.0"
        )
    );
    let locked = set_annotation(&out, &target, "fluxcd.io/locked", "true").unwrap();
    let labels = "  labels: {app: app-1722, tier: backend}\n";
    assert_eq!(
        locked,
        out.replacen(
            labels,
            &format!("{labels}  annotations:\n    fluxcd.io/locked: \"true\"\n"),
            1
        )
    );
}
