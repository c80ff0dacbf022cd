use super::*;
use tether_testenv::tree;

const CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: demo\ndata:\n  k: v\n";

#[test]
fn reads_multi_document_files_recursively_with_start_lines() {
    let t = tree(&[
        ("apps/web.yaml", "# leading comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\n---\n\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: demo}\n"),
        ("apps/nested/cm.yml", CM),
        ("README.md", "not yaml"),
        ("data.json", "{}"),
    ]);
    let rs = render(t.path(), &[]).unwrap();
    let got: Vec<String> = rs
        .iter()
        .map(|r| format!("{} {}", r.source, r.kind()))
        .collect();
    assert_eq!(
        got,
        [
            "apps/nested/cm.yml:1 ConfigMap",
            "apps/web.yaml:3 Service",
            "apps/web.yaml:8 Deployment"
        ]
    );
}

#[test]
fn flattens_lists_and_skips_helm_charts_and_empty_documents() {
    let list = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: one}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: two}}\n---\n# only a comment\n---\n";
    let t = tree(&[
        ("list.yaml", list),
        ("chart/Chart.yaml", "name: c\n"),
        ("chart/values.yaml", "a: 1\n"),
        ("chart/templates/x.yaml", "{{ broken"),
    ]);
    let names: Vec<_> = render(t.path(), &[])
        .unwrap()
        .iter()
        .map(|r| r.name().to_owned())
        .collect();
    assert_eq!(names, ["one", "two"]);
}

#[test]
fn reports_every_bad_file_with_file_and_line() {
    let t = tree(&[
        (
            "a.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n",
        ),
        (
            "b.yaml",
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: x}\n",
        ),
        ("c.yaml", CM),
    ]);
    let err = render(t.path(), &[]).unwrap_err();
    let Error::Files(errors) = &err else {
        panic!("{err}")
    };
    assert_eq!(errors.len(), 2, "{err}");
    assert_eq!(errors[0].at.file, "a.yaml");
    assert!(errors[0].message.contains("invalid YAML"), "{}", errors[0]);
    assert_eq!(
        errors[1].to_string(),
        "b.yaml:2: object has no metadata.name"
    );
}

#[test]
fn duplicate_objects_name_both_places() {
    let t = tree(&[("one.yaml", CM), ("two.yaml", &format!("---\n{CM}"))]);
    let err = render(t.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("two.yaml:2: duplicate object demo:configmap/a: also defined at one.yaml:1"),
        "{err}"
    );
}

#[test]
fn a_duplicate_whose_name_holds_a_newline_is_named_on_one_line() {
    let forged =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"a\\nlevel=error msg=forged\"\n";
    let t = tree(&[("one.yaml", forged), ("two.yaml", forged)]);
    let err = render(t.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains(
            "duplicate object <cluster>:configmap/a\\nlevel=error msg=forged: also defined"
        ),
        "{err}"
    );
    assert!(!err.lines().any(|l| l.starts_with("level=")), "{err}");
}

#[test]
fn only_the_given_paths_are_read_and_escaping_paths_are_rejected() {
    let t = tree(&[("prod/cm.yaml", CM), ("staging/cm.yaml", "broken: [")]);
    assert_eq!(render(t.path(), &["prod".into()]).unwrap().len(), 1);
    assert!(render(t.path(), &["../etc".into()])
        .unwrap_err()
        .to_string()
        .contains("'..'"));
    assert!(render(t.path(), &["/etc".into()])
        .unwrap_err()
        .to_string()
        .contains("absolute"));
    assert!(render(t.path(), &["nope".into()])
        .unwrap_err()
        .to_string()
        .contains("does not exist"));
}

#[test]
fn split_keeps_inline_documents_after_the_marker() {
    let docs = split_documents("--- {a: 1}\n--- \nb: 2\n...\n");
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].0, 1);
    assert_eq!(docs[1], (3, "b: 2\n"));
}

#[test]
fn a_directory_link_loop_is_reported_once_instead_of_walked() {
    let t = tree(&[("apps/cm.yaml", CM)]);
    std::os::unix::fs::symlink(".", t.path().join("apps/loop")).unwrap();
    let err = render(t.path(), &[]).unwrap_err().to_string();
    // Before walkdir: every file again under loop/, loop/loop/, ... and 40 "duplicate object" errors.
    assert!(err.contains("1 problem(s)"), "{err}");
    assert!(err.contains("apps/loop") && err.contains("loop"), "{err}");
    assert!(!err.contains("duplicate"), "{err}");
}

#[test]
fn documents_that_are_not_kubernetes_objects_are_skipped_but_half_objects_are_errors() {
    let t = tree(&[
        (
            ".circleci/config.yml",
            "version: 2.1\njobs:\n  build: {docker: [{image: rust}]}\n",
        ),
        ("values.yaml", "replicas: 3\n---\n# notes\nowner: team-a\n"),
        ("app/cm.yaml", CM),
    ]);
    let renderer = Renderer::default();
    let rs = renderer.render(t.path(), &[]).unwrap();
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].kind(), "ConfigMap");

    let t = tree(&[("half.yaml", "kind: ConfigMap\nmetadata: {name: x}\n")]);
    let err = renderer.render(t.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("half.yaml:1: object has no apiVersion"),
        "{err}"
    );
}

/// A file outside the checkout, holding an object that must never reach the cluster.
fn outside() -> tempfile::TempDir {
    tree(&[(
        "secret.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leaked\n  namespace: default\n",
    )])
}

#[test]
fn links_out_of_the_checkout_are_refused_and_named() {
    let out = outside();
    let t = tree(&[("apps/cm.yaml", CM)]);
    std::os::unix::fs::symlink(
        out.path().join("secret.yaml"),
        t.path().join("apps/leak.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(out.path(), t.path().join("apps/ext")).unwrap();
    std::os::unix::fs::symlink("../../", t.path().join("apps/up")).unwrap();
    let err = render(t.path(), &[]).unwrap_err().to_string();
    assert!(!err.contains("leaked"), "read through a link: {err}");
    for link in ["apps/leak.yaml", "apps/ext", "apps/up"] {
        let line = err
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{link}:")))
            .unwrap_or_else(|| panic!("{link} not named in {err}"));
        assert!(line.contains("outside the repository"), "{line}");
    }
}

#[test]
fn a_git_path_that_links_out_of_the_checkout_is_refused() {
    let out = outside();
    let t = tree(&[("apps/cm.yaml", CM)]);
    std::os::unix::fs::symlink(out.path(), t.path().join("elsewhere")).unwrap();
    let err = render(t.path(), &["elsewhere".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("elsewhere") && err.contains("outside the repository"),
        "{err}"
    );
}

#[test]
fn only_regular_files_are_read_and_links_inside_the_checkout_are_followed() {
    let t = tree(&[("apps/cm.yaml", CM)]);
    std::os::unix::fs::symlink("/dev/zero", t.path().join("apps/zero.yaml")).unwrap();
    let err = render(t.path(), &[]).unwrap_err().to_string();
    assert!(err.contains("apps/zero.yaml"), "{err}");
    std::fs::remove_file(t.path().join("apps/zero.yaml")).unwrap();
    // A link to a directory inside the checkout is read through, once.
    std::fs::create_dir_all(t.path().join("shared")).unwrap();
    std::fs::write(
        t.path().join("shared/other.yaml"),
        CM.replace("name: a\n", "name: other\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink("../shared", t.path().join("apps/shared")).unwrap();
    let out = render(t.path(), &["apps".into()]).unwrap();
    assert_eq!(out.len(), 2);
}

#[test]
fn names_that_are_not_utf8_and_dangling_links_are_refused_naming_them() {
    use std::os::unix::ffi::OsStrExt;
    let t = tree(&[("apps/cm.yaml", CM)]);
    let odd = |name: &[u8]| t.path().join(std::ffi::OsStr::from_bytes(name));
    std::fs::write(odd(b"w\xfe.yaml"), CM.replace("name: a", "name: w")).unwrap();
    std::fs::create_dir(odd(b"d\xff")).unwrap();
    std::fs::write(odd(b"d\xff/inner.yaml"), CM.replace("name: a", "name: i")).unwrap();
    // Files that are never read may have any name.
    std::fs::write(odd(b"logo\xfe.png"), [0_u8, 1, 2]).unwrap();
    std::os::unix::fs::symlink("gone.yaml", t.path().join("apps/dangling.yaml")).unwrap();
    let err = render(t.path(), &[]).unwrap_err().to_string();
    assert!(err.starts_with("3 problem(s)"), "{err}");
    for line in [
        "w\u{fffd}.yaml:1: has a name that is not UTF-8",
        "d\u{fffd}:1: has a name that is not UTF-8",
        "apps/dangling.yaml:1: is a link to 'gone.yaml', which does not exist in this revision",
    ] {
        assert!(err.contains(line), "{line} not in {err}");
    }
    assert!(!err.contains(&t.path().display().to_string()), "{err}");
}

#[test]
fn a_file_over_the_size_limit_is_refused_without_reading_it_whole() {
    let big = format!("{CM}data:\n  blob: \"{}\"\n", "x".repeat(2 << 20));
    let t = tree(&[("apps/big.yaml", &big)]);
    let renderer = Renderer::from_config(RenderConfig {
        max_file_bytes: 1 << 20,
        ..RenderConfig::default()
    });
    let err = renderer.render(t.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("apps/big.yaml:1") && err.contains("larger than"),
        "{err}"
    );
}

#[test]
fn thousands_of_bad_documents_give_a_bounded_message() {
    let bad: String = (0..5000)
        .map(|i| format!("---\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"))
        .collect();
    let t = tree(&[("apps/bad.yaml", &bad)]);
    let err = render(t.path(), &[]).unwrap_err().to_string();
    assert!(err.starts_with("5000 problem(s)"), "{}", &err[..200]);
    assert!(err.lines().count() <= 102, "{} lines", err.lines().count());
    assert!(
        err.ends_with("… and 4900 more"),
        "{}",
        &err[err.len() - 100..]
    );
}

#[test]
fn hostile_documents_fail_with_a_message_not_a_crash() {
    // Billion laughs: nine levels of aliases, each ten times the one before.
    let mut bomb = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb, namespace: demo}\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep, namespace: demo}}\ndata: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let t = tree(&[("apps/bomb.yaml", &bomb), ("apps/deep.yaml", &deep)]);
    std::fs::write(
        t.path().join("apps/binary.yaml"),
        [0xff_u8, 0xfe, 0x00, 0x81, 0x9f, 0x0a, 0xc3],
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = render(t.path(), &[]).unwrap_err().to_string();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    for file in ["apps/bomb.yaml", "apps/deep.yaml", "apps/binary.yaml"] {
        assert!(
            err.contains(file),
            "{file} not named: {}",
            &err[..err.len().min(2000)]
        );
    }
    assert!(err.contains("not UTF-8"), "{}", &err[..err.len().min(2000)]);
}

#[test]
fn render_each_hands_over_each_file_in_render_order() {
    let t = tree(&[
        ("b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"),
        ("a.yaml", CM),
    ]);
    let mut units = Vec::new();
    Renderer::default()
        .render_each(t.path(), &[], &mut |unit| {
            units.push(unit.iter().map(|r| r.name().to_owned()).collect::<Vec<_>>())
        })
        .unwrap();
    assert_eq!(units, [vec!["a"], vec!["b", "c"]]);
}

#[test]
fn render_each_reports_an_object_defined_in_two_files() {
    let t = tree(&[("a.yaml", CM), ("b.yaml", CM)]);
    let err = Renderer::default()
        .render_each(t.path(), &[], &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("b.yaml:1") && err.contains("also defined at a.yaml:1"),
        "{err}"
    );
}
