//! The bad-input corpus (issue 11): a repository is untrusted input. Each case is a commit on top of one that
//! synced, which also makes ordinary changes (a changed value, a new object, a removed one) beside its hostile
//! part. Each must fail naming the file and what to do, in bounded output, with nothing of the commit applied
//! and the marker left where it was; the same commit without its hostile part must then sync in full. Each
//! group of cases is one repository's history and one row of the fault tally.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::support::{namespace, World};

/// Largest error output a case may print (the 243,241-document file printed 19 MB before issue 11).
const MAX_OUTPUT: usize = 16 * 1024;

/// One entry of a hostile commit, under the repository root. Paths are bytes: a file name need not be UTF-8.
enum Entry {
    File(Vec<u8>, Vec<u8>),
    Link(Vec<u8>, String),
}

use Entry::{File, Link};

fn file(path: &str, text: impl Into<Vec<u8>>) -> Entry {
    File(path.into(), text.into())
}

fn link(path: &str, target: impl Into<String>) -> Entry {
    Link(path.into(), target.into())
}

/// A hostile commit and what its refusal must say.
struct Case {
    /// What it is, in a failure message.
    what: &'static str,
    entries: Vec<Entry>,
    /// Text the error must contain, the file's name first.
    says: Vec<String>,
    /// Extra flags for the sync of this commit only.
    flags: Vec<String>,
}

fn case(what: &'static str, entries: Vec<Entry>, says: &[&str]) -> Case {
    Case {
        what,
        entries,
        says: says.iter().map(|s| s.to_string()).collect(),
        flags: Vec::new(),
    }
}

fn cm(n: &str, name: &str, extra: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {n}\n{extra}")
}

/// A directory outside the repository holding a manifest of an object that must never reach the cluster.
fn outside(n: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("leak.yaml"), cm(n, "leaked", "")).unwrap();
    dir
}

/// Runs `cases` one after the other on one repository: each hostile commit is refused with nothing applied,
/// then the same commit without its hostile entries syncs, changes and collection included.
fn refuse_each(w: &World, group: &str, cases: Vec<Case>) {
    let n = &w.n;
    let gc = "--sync-garbage-collection";
    let bounded = ["--sync-timeout", "60s"];
    w.plant_bystanders();
    let mut files = vec![
        ("ns.yaml".to_owned(), namespace(n)),
        ("keep.yaml".to_owned(), cm(n, "keep", "data:\n  v: \"0\"\n")),
    ];
    for i in 0..cases.len() {
        files.push((format!("gone-{i}.yaml"), cm(n, &format!("gone-{i}"), "")));
    }
    crate::support::write(&w.repo, &files);
    w.repo.commit("good");
    w.once_file(&[gc]).ok();

    let count = cases.len();
    let mut failures = Vec::new();
    for (i, c) in cases.into_iter().enumerate() {
        let synced = w.repo.head();
        // Ordinary changes beside the hostile part.
        w.repo.write(&[
            (
                "keep.yaml",
                &cm(n, "keep", &format!("data:\n  v: \"{}\"\n", i + 1)),
            ),
            (
                &format!("canary-{i}.yaml"),
                &cm(n, &format!("canary-{i}"), ""),
            ),
        ]);
        w.repo.remove(&format!("gone-{i}.yaml"));
        let mut made: Vec<PathBuf> = Vec::new();
        for e in &c.entries {
            let (path, made_it) = match e {
                File(p, text) => {
                    let path = w.repo.work.join(std::ffi::OsStr::from_bytes(p));
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    (path.clone(), std::fs::write(&path, text))
                }
                Link(p, target) => {
                    let path = w.repo.work.join(std::ffi::OsStr::from_bytes(p));
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    (path.clone(), std::os::unix::fs::symlink(target, &path))
                }
            };
            made_it.unwrap();
            made.push(path);
        }
        w.repo.commit(c.what);

        let mut args: Vec<&str> = vec![gc, bounded[0], bounded[1]];
        args.extend(c.flags.iter().map(String::as_str));
        let run = w.once_file(&args);
        let mut wrong = Vec::new();
        let out = run.stderr();
        if run.0.status.code() != Some(1) {
            wrong.push(format!("exit status {:?}, not 1", run.0.status.code()));
        }
        for s in &c.says {
            if !out.contains(s.as_str()) {
                wrong.push(format!("does not say {s:?}"));
            }
        }
        if out.len() > MAX_OUTPUT {
            wrong.push(format!("printed {} bytes", out.len()));
        }
        let value = w
            .get(&["-n", n, "configmap/keep"])
            .map(|o| o["data"]["v"].clone());
        if value != Some(serde_json::json!(i.to_string())) {
            wrong.push(format!(
                "keep holds {value:?}: the commit was applied in part"
            ));
        }
        if w.get(&["-n", n, &format!("configmap/canary-{i}")])
            .is_some()
        {
            wrong.push("the commit's new object was created".into());
        }
        if w.get(&["-n", n, &format!("configmap/gone-{i}")]).is_none() {
            wrong.push("an object the commit removes was collected".into());
        }
        if w.get(&["-n", n, "configmap/leaked"]).is_some() {
            wrong.push("an object from outside the repository was applied".into());
        }
        if w.repo.rev_parse("refs/tags/tether-sync^{commit}") != Some(synced.clone()) {
            wrong.push("the sync marker moved".into());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n--- its output ---\n{}",
                c.what,
                wrong.join("; "),
                &out[..out.len().min(2000)]
            ));
        }

        // The same commit without its hostile part syncs in full.
        for path in made.iter().rev() {
            if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(path).unwrap();
            } else {
                std::fs::remove_file(path).unwrap();
            }
            // A directory made for the entry goes too (git keeps no empty directories; the work tree would).
            if let Some(parent) = path.parent().filter(|p| *p != w.repo.work) {
                let _ = std::fs::remove_dir(parent);
            }
        }
        w.repo
            .commit(&format!("without the hostile part of: {}", c.what));
        w.once_file(&[gc]).ok();
        assert_eq!(
            w.get(&["-n", n, "configmap/keep"]).unwrap()["data"]["v"],
            (i + 1).to_string()
        );
        assert!(w.get(&["-n", n, &format!("configmap/gone-{i}")]).is_none());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    w.survived(
        &format!("{group}: {count} commits refused, each then synced without its hostile part"),
        count,
    );
}

#[test]
fn hostile_yaml_is_refused_naming_the_file_and_nothing_of_its_commit_is_applied() {
    let w = World::new("hostile-yaml");
    let n = w.n.clone();
    // Billion laughs: nine levels of aliases, each ten times the one before.
    let mut bomb = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bomb, namespace: {n}}}\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    );
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{p}"); 10].join(", ")
        ));
    }
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep, namespace: {n}}}\ndata: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    // The size of the report that made issue 11: a quarter of a million documents that are not objects.
    let many: String = "---\nkind: ConfigMap\n".repeat(243_241);
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut latin1 = cm(&n, "latin", "data:\n  k: caf").into_bytes();
    latin1.extend_from_slice(b"\xe9\n");
    let cases = vec![
        case(
            "an alias bomb",
            vec![file("bomb.yaml", bomb)],
            &["bomb.yaml:", "anchors and aliases"],
        ),
        case(
            "100,000 levels of nesting",
            vec![file("deep.yaml", deep)],
            &["deep.yaml:", "nested deeper"],
        ),
        case(
            "a binary file named .yaml",
            vec![File(b"blob.yaml".to_vec(), binary)],
            &["blob.yaml:1: is not UTF-8 text"],
        ),
        case(
            "a Latin-1 file",
            vec![File(b"latin1.yaml".to_vec(), latin1)],
            &["latin1.yaml:1: is not UTF-8 text"],
        ),
        case(
            "a file over the size limit",
            vec![file(
                "huge.yaml",
                cm(&n, "huge", &format!("data:\n  blob: \"{}\"\n", "x".repeat(9 << 20))),
            )],
            &["huge.yaml:1: is 94", "larger than the 8388608 bytes"],
        ),
        case(
            "243,241 documents that are not objects",
            vec![file("many.yaml", many)],
            &["243241 problem(s)", "many.yaml:2: object has no apiVersion", "… and 243141 more"],
        ),
        case(
            "a key twice in one mapping",
            vec![file(
                "dupkeys.yaml",
                cm(&n, "dupkeys", "data:\n  a: \"1\"\n  a: \"2\"\n"),
            )],
            &["dupkeys.yaml:8:", "the key 'a' appears twice"],
        ),
        case(
            "documents that are not mappings",
            vec![file("scalars.yaml", "just text\n---\n- a\n- b\n")],
            &["scalars.yaml:1: object is not a mapping", "scalars.yaml:3:"],
        ),
        case(
            "a List item without apiVersion",
            vec![file(
                "list.yaml",
                format!("apiVersion: v1\nkind: List\nitems:\n- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: ok, namespace: {n}}}}}\n- kind: ConfigMap\n  metadata: {{name: x}}\n"),
            )],
            &["list.yaml:1: item 2 of the List: object has no apiVersion"],
        ),
        case(
            "a name YAML reads as a number",
            vec![file("number.yaml", cm(&n, "123", ""))],
            &["number.yaml:1:", "metadata.name is a number to YAML, not a string; quote it"],
        ),
        case(
            "a file whose name holds a newline",
            vec![file(
                "evil\nlevel=error msg=forged.yaml",
                "kind: ConfigMap\nmetadata: {name: x}\n",
            )],
            &["evil\\nlevel=error msg=forged.yaml:1: object has no apiVersion"],
        ),
        case(
            "a manifest whose name is not UTF-8",
            vec![File(b"w\xfe.yaml".to_vec(), cm(&n, "weird", "").into_bytes())],
            &["w\u{fffd}.yaml:1: has a name that is not UTF-8", "rename it"],
        ),
        case(
            "a directory whose name is not UTF-8",
            vec![File(b"d\xff/inner.yaml".to_vec(), cm(&n, "inner", "").into_bytes())],
            &["d\u{fffd}:1: has a name that is not UTF-8"],
        ),
        case(
            "one object defined in two files",
            vec![
                file("twice-a.yaml", cm(&n, "twice", "")),
                file("twice-b.yaml", format!("# again\n---\n{}", cm(&n, "twice", ""))),
            ],
            &["twice-b.yaml:3: duplicate object", "also defined at twice-a.yaml:1"],
        ),
    ];
    refuse_each(&w, "hostile YAML", cases);
}

#[test]
fn links_out_of_the_checkout_or_nowhere_are_refused_and_nothing_is_read_through_them() {
    let w = World::new("hostile-links");
    let out = outside(&w.n);
    let leak = out.path().join("leak.yaml").display().to_string();
    let outside_dir = out.path().display().to_string();
    let mut git_path = case(
        "--git-path naming a link out of the checkout",
        vec![link("elsewhere", &outside_dir)],
        &["elsewhere", "outside the repository"],
    );
    git_path.flags = vec!["--git-path".into(), "elsewhere".into()];
    let cases = vec![
        case(
            "a link to a manifest outside the checkout",
            vec![link("leak.yaml", &leak)],
            &[
                "leak.yaml:1: is or passes through a link to",
                "outside the repository",
            ],
        ),
        case(
            "a link to a directory outside the checkout",
            vec![link("ext", &outside_dir)],
            &[
                "ext:1: is or passes through a link to",
                "outside the repository",
            ],
        ),
        case(
            "a link up out of the checkout (up -> ../../)",
            vec![link("apps/up", "../../")],
            &[
                "apps/up:1: is or passes through a link to",
                "outside the repository",
            ],
        ),
        case(
            "a link to /dev/zero",
            vec![link("zero.yaml", "/dev/zero")],
            &["zero.yaml:1: is or passes through a link to /dev/zero"],
        ),
        case(
            "a link loop (loop -> .)",
            vec![link("apps/loop", ".")],
            &["apps/loop:1: is a link to apps, a directory it is itself in (a loop)"],
        ),
        case(
            "a dangling link",
            vec![link("dangling.yaml", "nothing-here.yaml")],
            &["dangling.yaml:1: is a link to 'nothing-here.yaml', which does not exist"],
        ),
        git_path,
    ];
    refuse_each(&w, "links out of the checkout or to nothing", cases);
}

#[test]
fn objects_the_server_or_tether_cannot_take_are_refused_before_any_write() {
    let w = World::new("hostile-objects");
    let n = w.n.clone();
    let cases = vec![
        case(
            "a 1.5 MiB ConfigMap",
            vec![file(
                "big.yaml",
                cm(&n, "big", &format!("data:\n  blob: \"{}\"\n", "x".repeat(1536 << 10))),
            )],
            &["configmap/big (big.yaml:1)", "Too long", "nothing was changed"],
        ),
        case(
            "300 KiB of annotations",
            vec![file(
                "noted.yaml",
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: noted\n  namespace: {n}\n  annotations:\n    note: \"{}\"\n",
                    "x".repeat(300 << 10)
                ),
            )],
            &["configmap/noted (noted.yaml:1)", "metadata.annotations: Too long"],
        ),
        case(
            "a name that would put a query into the request URL",
            vec![file("query.yaml", cm(&n, "\"a?dryRun=All&x=\"", ""))],
            &["query.yaml:1: metadata.name 'a?dryRun=All&x=' holds a character"],
        ),
        case(
            "a name Kubernetes refuses",
            vec![file("upper.yaml", cm(&n, "Web_App", ""))],
            &["configmap/Web_App (upper.yaml:1)", "lowercase RFC 1123"],
        ),
        case(
            "a namespace that climbs out (../kube-system)",
            vec![file(
                "badns.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: ../kube-system\n",
            )],
            &["badns.yaml:1: metadata.namespace '../kube-system' is not a namespace name"],
        ),
        case(
            "a kind the cluster does not serve",
            vec![file(
                "widget.yaml",
                format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: {n}\n"),
            )],
            &["widget.yaml:1: example.com/v1 Widget is not served", "install the CRD"],
        ),
        case(
            "an API version Kubernetes removed",
            vec![file(
                "ingress.yaml",
                format!("apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: old\n  namespace: {n}\nspec:\n  backend:\n    serviceName: web\n    servicePort: 80\n"),
            )],
            &["ingress.yaml:1: extensions/v1beta1 Ingress is no longer served", "tether migrate"],
        ),
        case(
            "a field of the wrong type",
            vec![file("wrongtype.yaml", cm(&n, "wrongtype", "data: [1, 2]\n"))],
            &["configmap/wrongtype (wrongtype.yaml:1)", ".data: expected map"],
        ),
        case(
            "a Secret whose data is a list",
            vec![file(
                "secret-list.yaml",
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: {n}\ndata: [{}]\n",
                    tether_testenv::secrets::secret("c2VjcmV0LWxpc3QtdmFsdWU=")
                ),
            )],
            &["secret-list.yaml:1: Secret data is a list", "the value is not shown"],
        ),
        case(
            "a Secret value that is a number",
            vec![file(
                "secret-number.yaml",
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: {n}\nstringData:\n  pin: {}\n",
                    tether_testenv::secrets::secret("9876543210")
                ),
            )],
            &["secret-number.yaml:1: Secret stringData.pin is a number"],
        ),
        case(
            "a Secret whose data is not base64",
            vec![file(
                "secret-b64.yaml",
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: {n}\ndata:\n  password: \"{}\"\n",
                    tether_testenv::secrets::secret("not-base64-at-all!!")
                ),
            )],
            &["secret-b64.yaml:1: Secret data.password is not base64", "the value is not shown"],
        ),
    ];
    refuse_each(&w, "objects the server or tether cannot take", cases);
}

#[test]
fn a_policy_quoting_a_secrets_value_in_its_refusal_never_gets_it_into_tethers_output() {
    // Admission policies and webhooks may quote what they refuse; tether shows their answers to users,
    // logs, notifications and Events, so a Secret's values are taken out of them.
    let w = World::new("hostile-policy");
    let n = w.n.clone();
    let policy = format!("{n}-no-passwords");
    let yaml = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {policy}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["secrets"]
  validations:
  - expression: "!has(object.data) || !('password' in object.data)"
    messageExpression: "'the password ' + string(object.data['password']) + ' is on a list of leaked passwords'"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {policy}
spec:
  policyName: {policy}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {n}
"#
    );
    let _cleanup = Cleanup(&w, policy.clone());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    w.kubectl(&["apply", "-f", file.path().to_str().unwrap()]);
    w.kubectl(&["create", "namespace", &n]);
    // Policies take effect a moment after they are created: wait until one is refused by the server.
    crate::support::wait_for(
        "the policy to refuse",
        std::time::Duration::from_secs(30),
        || {
            let out = w
                .cluster
                .kubectl()
                .args([
                    "-n",
                    &n,
                    "create",
                    "secret",
                    "generic",
                    "probe",
                    "--dry-run=server",
                ])
                .arg("--from-literal=password=probe-value")
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stderr).contains("leaked passwords")
        },
    );

    let plain = tether_testenv::secrets::secret("hunter2-from-git");
    let encoded = tether_testenv::secrets::secret("aHVudGVyMi1mcm9tLWdpdA==");
    w.repo.write(&[(
        "secrets.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: written\n  namespace: {n}\nstringData:\n  password: {plain}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: encoded\n  namespace: {n}\ndata:\n  password: {encoded}\n"
        ),
    )]);
    w.repo.commit("two Secrets the policy refuses");
    // `Run::of` fails the test if any registered secret is in tether's output.
    let err = w.once_file(&[]).failed();
    for name in [
        "secret/written (secrets.yaml:1)",
        "secret/encoded (secrets.yaml:9)",
    ] {
        assert!(err.contains(name), "{err}");
    }
    assert_eq!(
        err.matches("the password [redacted] is on a list").count(),
        2,
        "{err}"
    );
}

/// Removes a cluster-wide admission policy and its binding when the test ends, whatever the outcome.
struct Cleanup<'a>(&'a World, String);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for kind in [
            "validatingadmissionpolicybinding",
            "validatingadmissionpolicy",
        ] {
            let _ = self
                .0
                .cluster
                .kubectl()
                .args(["delete", kind, &self.1, "--ignore-not-found"])
                .output();
        }
    }
}

#[test]
fn odd_but_valid_file_names_are_read_and_named_as_they_are() {
    // Names git and UTF-8 allow are no reason to refuse a file: each is applied, and named as written.
    let w = World::new("odd-names");
    let n = w.n.clone();
    w.repo.write(&[
        ("ns.yaml", &namespace(&n)),
        ("-rf.yaml", &cm(&n, "dash", "")),
        ("with space.yaml", &cm(&n, "space", "")),
        ("ünï/cödé.yml", &cm(&n, "unicode", "")),
        ("quote'semi;colon.yaml", &cm(&n, "quote", "")),
    ]);
    w.repo.commit("odd names");
    let out = w.once_file(&[]).ok();
    assert!(out.contains("created=5"), "{out}");
    for name in ["dash", "space", "unicode", "quote"] {
        assert!(
            w.get(&["-n", &n, &format!("configmap/{name}")]).is_some(),
            "{name} missing"
        );
    }
    // A duplicate in an odd-named file is reported with that name as it is.
    w.repo.write(&[("ünï/again.yaml", &cm(&n, "unicode", ""))]);
    w.repo.commit("a duplicate");
    let err = w.once_file(&[]).failed();
    assert!(
        err.contains("ünï/cödé.yml:1") && err.contains("ünï/again.yaml:1"),
        "{err}"
    );
}
