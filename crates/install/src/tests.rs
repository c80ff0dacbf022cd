use super::*;

fn opts() -> Options {
    Options::new("git@github.com:org/config")
}

fn namespaced() -> Options {
    Options {
        scope: Scope::Namespace,
        allow_namespaces: vec!["apps".into(), "web".into()],
        ..opts()
    }
}

fn find<'a>(ms: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    ms.iter()
        .find(|m| m.kind() == kind && m.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn roles(ms: &[Manifest]) -> impl Iterator<Item = &Manifest> {
    ms.iter()
        .filter(|m| m.kind() == "Role" || m.kind() == "ClusterRole")
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn container(ms: &[Manifest]) -> &Value {
    &find(ms, "Deployment", "tether").object["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn objects_come_in_apply_order_with_the_documented_names() {
    let ms = render(&opts()).unwrap();
    let kinds: Vec<(&str, &str)> = ms.iter().map(|m| (m.kind(), m.name())).collect();
    assert_eq!(
        kinds,
        [
            ("Namespace", "tether"),
            ("ServiceAccount", "tether"),
            ("Role", "tether"),
            ("RoleBinding", "tether"),
            ("ClusterRole", "tether-tether-auth"),
            ("ClusterRoleBinding", "tether-tether-auth"),
            ("ClusterRole", "tether-tether"),
            ("ClusterRoleBinding", "tether-tether"),
            ("ClusterRole", "tether-tether-viewer"),
            ("ClusterRole", "tether-tether-releaser"),
            ("Secret", "tether-git-deploy"),
            ("ConfigMap", "tether-known-hosts"),
            ("Deployment", "tether"),
            ("Service", "tether"),
        ]
    );
    for m in ms
        .iter()
        .filter(|m| m.kind() != "Namespace" && !m.kind().starts_with("Cluster"))
    {
        assert_eq!(m.namespace(), Some("tether"), "{} {}", m.kind(), m.name());
    }
    assert_eq!(manifests(&opts()).unwrap().len(), ms.len());
}

#[test]
fn cluster_scoped_names_carry_the_namespace_so_two_installs_never_collide() {
    let a = render(&Options {
        namespace: "team-a".into(),
        ..opts()
    })
    .unwrap();
    let b = render(&Options {
        namespace: "team-b".into(),
        ..opts()
    })
    .unwrap();
    let cluster_names = |ms: &[Manifest]| -> Vec<String> {
        ms.iter()
            .filter(|m| m.namespace().is_none() && m.kind() != "Namespace")
            .map(|m| format!("{}/{}", m.kind(), m.name()))
            .collect()
    };
    let (a, b) = (cluster_names(&a), cluster_names(&b));
    assert!(a.iter().all(|n| n.contains("team-a")), "{a:?}");
    assert!(a.iter().all(|n| !b.contains(n)), "{a:?} {b:?}");
}

#[test]
fn no_rule_anywhere_grants_star_verbs_or_non_resource_urls() {
    for o in [opts(), namespaced()] {
        for m in roles(&render(&o).unwrap()) {
            for rule in m.object["rules"].as_array().unwrap() {
                assert!(!strs(&rule["verbs"]).contains(&"*"), "{}: {rule}", m.name());
                assert!(
                    rule.get("nonResourceURLs").is_none(),
                    "{}: {rule}",
                    m.name()
                );
                for v in ["escalate", "bind", "impersonate"] {
                    assert!(!strs(&rule["verbs"]).contains(&v), "{}: {rule}", m.name());
                }
            }
        }
    }
}

#[test]
fn cluster_scope_syncs_any_kind_with_explicit_verbs() {
    let ms = render(&opts()).unwrap();
    let rule = &find(&ms, "ClusterRole", "tether-tether").object["rules"][0];
    assert_eq!(strs(&rule["apiGroups"]), ["*"]);
    assert_eq!(strs(&rule["resources"]), ["*"]);
    assert_eq!(
        strs(&rule["verbs"]),
        ["get", "list", "watch", "create", "update", "patch", "delete"]
    );
    let binding = &find(&ms, "ClusterRoleBinding", "tether-tether").object;
    assert_eq!(binding["roleRef"]["name"], "tether-tether");
    assert_eq!(binding["subjects"][0]["name"], "tether");
    assert_eq!(binding["subjects"][0]["namespace"], "tether");
}

#[test]
fn namespace_scope_has_no_cluster_wide_write_rule_and_a_role_per_allowed_namespace() {
    let ms = render(&namespaced()).unwrap();
    const WRITES: [&str; 4] = ["create", "update", "patch", "delete"];
    for m in ms.iter().filter(|m| m.kind() == "ClusterRole") {
        for rule in m.object["rules"].as_array().unwrap() {
            let groups = strs(&rule["apiGroups"]);
            let writes = strs(&rule["verbs"]).iter().any(|v| WRITES.contains(v));
            // Creating a review asks a question; the people's roles name only tether's virtual resources.
            let harmless = groups.iter().all(|g| {
                [
                    "authentication.k8s.io",
                    "authorization.k8s.io",
                    "tether.dev",
                ]
                .contains(g)
            });
            assert!(!writes || harmless, "{}: {rule}", m.name());
            assert!(!groups.contains(&"*") && !strs(&rule["resources"]).contains(&"*"));
        }
    }
    assert!(!ms
        .iter()
        .any(|m| m.kind() == "ClusterRoleBinding" && m.name() == "tether-tether"));
    for ns in ["apps", "web"] {
        let role = ms
            .iter()
            .find(|m| m.kind() == "Role" && m.namespace() == Some(ns))
            .unwrap();
        assert_eq!(role.name(), "tether-tether");
        assert_eq!(strs(&role.object["rules"][0]["resources"]), ["*"]);
        let binding = ms
            .iter()
            .find(|m| m.kind() == "RoleBinding" && m.namespace() == Some(ns))
            .unwrap();
        assert_eq!(binding.object["roleRef"]["kind"], "Role");
        assert_eq!(binding.object["subjects"][0]["namespace"], "tether");
        assert!(role.comment_at("").unwrap().contains("system:discovery"));
    }
    let args = strs(&container(&ms)["args"]);
    assert!(
        args.contains(&"--k8s-allow-namespace=apps") && args.contains(&"--k8s-allow-namespace=web")
    );
}

#[test]
fn every_rule_says_why_above_it_in_the_yaml() {
    for o in [opts(), namespaced()] {
        for m in roles(&render(&o).unwrap()) {
            let rules = m.object["rules"].as_array().unwrap();
            assert!(!rules.is_empty());
            let yaml = m.to_yaml();
            for (i, rule) in rules.iter().enumerate() {
                let why = m
                    .comment_at(&format!("/rules/{i}"))
                    .unwrap_or_else(|| panic!("{} rule {i} has no why", m.name()));
                let first = why.lines().next().unwrap();
                // The comment sits right above its rule's first line.
                let group = rule["apiGroups"][0].as_str().unwrap();
                let at = yaml.find(&format!("# {first}\n")).unwrap();
                let rest = &yaml[at..];
                let next_rule = rest.find("\n- apiGroups:").unwrap();
                assert!(rest[next_rule..]
                    .starts_with(&format!("\n- apiGroups:\n  - {}\n", yaml::string(group))));
            }
            assert!(m.object["metadata"].get("annotations").is_none());
        }
    }
}

#[test]
fn required_and_malformed_flags_are_refused_naming_the_flag() {
    let cases: Vec<(Options, &str)> = vec![
        (
            Options {
                scope: Scope::Namespace,
                ..opts()
            },
            "--k8s-allow-namespace",
        ),
        (Options::new(""), "--git-url"),
        (Options::new("gopher://x/y"), "--git-url"),
        (
            Options {
                git_branch: "-x".into(),
                ..opts()
            },
            "--git-branch",
        ),
        (
            Options {
                git_branch: " ".into(),
                ..opts()
            },
            "--git-branch",
        ),
        (
            Options {
                git_paths: vec!["../up".into()],
                ..opts()
            },
            "--git-path",
        ),
        (
            Options {
                git_paths: vec!["/abs".into()],
                ..opts()
            },
            "--git-path",
        ),
        (
            Options {
                namespace: "Tether".into(),
                ..opts()
            },
            "--namespace",
        ),
        (
            Options {
                namespace: "-x".into(),
                ..opts()
            },
            "--namespace",
        ),
        (
            Options {
                namespace: "a".repeat(64),
                ..opts()
            },
            "--namespace",
        ),
        (
            Options {
                allow_namespaces: vec!["ok".into(), "Not_OK".into()],
                ..namespaced()
            },
            "--k8s-allow-namespace",
        ),
        (
            Options {
                image: Some("a b".into()),
                ..opts()
            },
            "--image",
        ),
        (
            Options {
                image: Some(String::new()),
                ..opts()
            },
            "--image",
        ),
        (
            Options {
                known_hosts: Some("# nothing\n".into()),
                ..opts()
            },
            "--git-known-hosts",
        ),
    ];
    for (o, flag) in cases {
        let e = render(&o).unwrap_err().to_string();
        assert!(e.contains(flag), "{o:?}: {e}");
    }
    assert_eq!(
        render(&Options {
            scope: Scope::Namespace,
            ..opts()
        })
        .unwrap_err(),
        InstallError::NoAllowedNamespace
    );
}

#[test]
fn the_deployment_runs_the_daemon_with_the_install_flags_only() {
    let o = Options {
        git_branch: "prod".into(),
        git_paths: vec!["apps/".into(), "infra".into(), "apps".into(), ".".into()],
        git_readonly: true,
        manifest_generation: true,
        ..opts()
    };
    let ms = render(&o).unwrap();
    let c = container(&ms);
    assert_eq!(
        strs(&c["args"]),
        [
            "daemon",
            "--git-url=git@github.com:org/config",
            "--git-branch=prod",
            "--git-path=apps",
            "--git-path=infra",
            "--leader-elect",
            "--sync-name=tether",
            "--git-known-hosts=/etc/tether/known_hosts/known_hosts",
            "--cache-dir=/var/cache/tether",
            "--git-readonly",
            "--manifest-generation",
        ]
    );
    assert!(!strs(&c["args"]).iter().any(|a| a.starts_with("--listen")));
    assert_eq!(c["image"], default_image());
    assert!(default_image().ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))));
    let env = &c["env"];
    assert_eq!(env[0]["name"], "POD_NAMESPACE");
    assert_eq!(
        env[0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["resources"]["requests"]["cpu"], "50m");
    assert!(c["resources"]["limits"].get("cpu").is_none());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let d = &find(&ms, "Deployment", "tether").object["spec"];
    // Two replicas, one writer: the Lease decides, so a rolling update is safe.
    assert_eq!(d["replicas"], 2);
    assert_eq!(d["strategy"]["type"], "RollingUpdate");
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(
        mounts,
        ["/var/cache/tether", "/tmp", "/etc/tether/known_hosts"]
    );
    let svc = &find(&ms, "Service", "tether").object["spec"];
    assert_eq!(svc["ports"][0]["port"], 3030);
    assert_eq!(svc["ports"][1]["port"], 3031);
    // The Service reaches the pods of this Deployment, and of them only the leader.
    let mut leader = d["selector"]["matchLabels"].clone();
    leader["tether.dev/role"] = "leader".into();
    assert_eq!(svc["selector"], leader);
    assert_eq!(
        d["template"]["metadata"]["labels"]["tether.dev/role"],
        "standby"
    );
}

#[test]
fn known_hosts_is_passed_for_ssh_urls_only_and_given_files_replace_the_published_keys() {
    let ms = render(&Options::new("https://example.com/org/config.git")).unwrap();
    assert!(!strs(&container(&ms)["args"])
        .iter()
        .any(|a| a.starts_with("--git-known-hosts")));
    let published = &find(&ms, "ConfigMap", "tether-known-hosts").object["data"]["known_hosts"];
    assert!(published
        .as_str()
        .unwrap()
        .contains("github.com ssh-ed25519 "));

    let own = "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";
    let ms = render(&Options {
        known_hosts: Some(own.into()),
        image: Some("registry.example.com/tether:dev".into()),
        ..opts()
    })
    .unwrap();
    assert_eq!(
        find(&ms, "ConfigMap", "tether-known-hosts").object["data"]["known_hosts"],
        own
    );
    assert_eq!(container(&ms)["image"], "registry.example.com/tether:dev");
}

#[test]
fn the_deploy_key_secret_is_empty_for_the_agent_to_fill() {
    let ms = render(&opts()).unwrap();
    let s = &find(&ms, "Secret", "tether-git-deploy").object;
    assert_eq!(s["type"], "Opaque");
    assert!(s.get("data").is_none() && s.get("stringData").is_none());
}

#[test]
fn file_names_number_objects_in_apply_order() {
    let ms = render(&namespaced()).unwrap();
    let width = index_width(ms.len());
    let names: Vec<String> = ms
        .iter()
        .enumerate()
        .map(|(i, m)| m.file_name(i + 1, width))
        .collect();
    assert_eq!(names[0], "01-namespace-tether.yaml");
    assert_eq!(
        names.last().unwrap(),
        &format!("{}-service-tether.yaml", ms.len())
    );
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, names);
    assert_eq!(index_width(100), 3);
}

#[test]
fn the_stream_is_one_document_per_object() {
    let ms = render(&opts()).unwrap();
    let yaml = to_yaml(&ms);
    assert_eq!(yaml.matches("---\n").count(), ms.len());
    assert!(yaml.contains("\nkind: Deployment\n"));
    assert!(yaml.contains("  known_hosts: |\n    # The SSH host keys"));
}
