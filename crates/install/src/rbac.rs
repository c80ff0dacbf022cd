//! The agent's rights, and example roles for people. Every rule carries the reason it exists, printed above
//! it in the YAML; cluster-scoped names carry tether's namespace, so two installs never share (or, when one
//! is removed, delete) each other's objects.

use serde_json::{json, Value};

use crate::{labels, Manifest, Scope, Valid, DEPLOY_KEY_SECRET, NAME};

/// What syncing needs on the kinds a repository holds. Listed, never `*`: without `escalate`, `bind`,
/// `impersonate` and `deletecollection` RBAC refuses the agent any Role or binding beyond these verbs.
pub(crate) const SYNC_VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

const RBAC: &str = "rbac.authorization.k8s.io";

/// One rule and why it is granted.
struct Rule {
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
    why: String,
}

impl Rule {
    fn new(
        groups: &'static [&'static str],
        resources: &'static [&'static str],
        verbs: &'static [&'static str],
        why: impl Into<String>,
    ) -> Rule {
        Rule {
            groups,
            resources,
            verbs,
            why: why.into(),
        }
    }
}

/// A Role (with `namespace`) or ClusterRole, each rule's reason above it.
fn role(name: &str, namespace: Option<&str>, instance: &str, rules: Vec<Rule>) -> Manifest {
    let mut metadata = json!({"name": name, "labels": labels(instance)});
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    let body: Vec<Value> = rules
        .iter()
        .map(|r| json!({"apiGroups": r.groups, "resources": r.resources, "verbs": r.verbs}))
        .collect();
    let mut m = Manifest::new(json!({
        "apiVersion": format!("{RBAC}/v1"),
        "kind": if namespace.is_some() { "Role" } else { "ClusterRole" },
        "metadata": metadata,
        "rules": body,
    }));
    for (i, r) in rules.into_iter().enumerate() {
        m = m.comment(&format!("/rules/{i}"), r.why);
    }
    m
}

/// Binds the role of the same name and kind to tether's ServiceAccount.
fn binding(name: &str, namespace: Option<&str>, o: &Valid) -> Manifest {
    let mut metadata = json!({"name": name, "labels": labels(&o.namespace)});
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    Manifest::new(json!({
        "apiVersion": format!("{RBAC}/v1"),
        "kind": if namespace.is_some() { "RoleBinding" } else { "ClusterRoleBinding" },
        "metadata": metadata,
        "roleRef": {
            "apiGroup": RBAC,
            "kind": if namespace.is_some() { "Role" } else { "ClusterRole" },
            "name": name,
        },
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": o.namespace}],
    }))
}

/// Every RBAC object, in apply order.
pub(crate) fn objects(o: &Valid) -> Vec<Manifest> {
    let ns = o.namespace.as_str();
    let mut out = vec![
        role(NAME, Some(ns), ns, own_namespace_rules()).comment(
            "",
            "What the agent keeps in its own namespace. This namespace holds only tether's objects, so the\n\
             rules are not narrowed by resourceNames: `create` cannot be, and the names follow\n\
             --git-deploy-secret, --k8s-secret-name and --sync-name.",
        ),
        binding(NAME, Some(ns), o),
    ];
    let reviews = format!("tether-{ns}-auth");
    out.push(
        role(&reviews, None, ns, review_rules()).comment(
            "",
            "Cluster-wide because TokenReview and SubjectAccessReview are cluster-scoped: `create` on them\n\
             lets the agent ask the API server who a caller is and what it may do, and grants nothing.",
        ),
    );
    out.push(binding(&reviews, None, o));
    match o.scope {
        Scope::Cluster => {
            let name = format!("tether-{ns}");
            out.push(
                role(
                    &name,
                    None,
                    ns,
                    vec![Rule::new(
                        &["*"],
                        &["*"],
                        &SYNC_VERBS,
                        "tether applies whatever kinds the repository holds, in any namespace: get, list and\n\
                         watch to compare them with the cluster, find what a sync owns and wait for new CRDs;\n\
                         create, update, patch and delete to apply them and collect what left Git. The verbs\n\
                         are listed and there are no nonResourceURLs: without escalate, bind or impersonate,\n\
                         RBAC refuses the agent any Role or binding beyond this rule (Flux v1 had `*` on `*`\n\
                         plus every non-resource URL). Reading Secrets and creating Pods still reach what\n\
                         other ServiceAccounts may do; --scope namespace bounds that to chosen namespaces.",
                    )],
                )
                .comment(
                    "",
                    "--scope cluster: tether may sync any kind into any namespace.",
                ),
            );
            out.push(binding(&name, None, o));
        }
        Scope::Namespace => {
            let name = format!("tether-{ns}");
            for allowed in &o.allow_namespaces {
                out.push(
                    role(
                        &name,
                        Some(allowed),
                        ns,
                        vec![Rule::new(
                            &["*"],
                            &["*"],
                            &SYNC_VERBS,
                            format!(
                                "tether applies whatever kinds the repository holds in namespace {allowed}:\n\
                                 get, list and watch to compare them with the cluster and find what a sync\n\
                                 owns; create, update, patch and delete to apply them and collect what left\n\
                                 Git. A Role: none of it reaches beyond this namespace."
                            ),
                        )],
                    )
                    .comment(
                        "",
                        format!(
                            "--scope namespace: tether writes only in --k8s-allow-namespace {list} (the daemon\n\
                             runs with the same flags, so it lists nothing elsewhere). This namespace must exist\n\
                             before this is applied. Discovery needs no grant: the built-in ClusterRole\n\
                             system:discovery lets every authenticated user read /api and /apis, and a\n\
                             namespace-scoped tether lists no cluster-scoped kinds and reads no\n\
                             CustomResourceDefinitions, so it gets no ClusterRole besides the reviews above.\n\
                             The API server refuses cluster-scoped objects in the repository (Namespaces, CRDs,\n\
                             ClusterRoles): sync those with a cluster-scoped tether.",
                            list = o.allow_namespaces.join(", "),
                        ),
                    ),
                );
                out.push(binding(&name, Some(allowed), o));
            }
        }
    }
    out.extend(people(ns));
    out
}

fn own_namespace_rules() -> Vec<Rule> {
    vec![
        Rule::new(
            &[""],
            &["secrets"],
            &["get", "create", "update", "patch"],
            format!(
                "The deploy key Secret {DEPLOY_KEY_SECRET} (key `identity`), generated on the first start, and\n\
                 with --git-readonly the sync-state Secret tether-sync (annotation tether.dev/sync-hwm)."
            ),
        ),
        Rule::new(
            &[""],
            &["configmaps"],
            &["get", "create", "update", "patch"],
            "The garbage-collection inventory, ConfigMap <sync-name>-inventory (tether-inventory by default):\n\
             what the last sync applied, so only that is ever collected.",
        ),
        Rule::new(
            &["", "events.k8s.io"],
            &["events"],
            &["create", "patch"],
            "Events about each sync's result, on the agent's own Pod (kubectl describe pod).",
        ),
        Rule::new(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "create", "update"],
            "Leader election: the Lease <sync-name>-leader, so only one replica syncs, collects and commits.",
        ),
        Rule::new(
            &[""],
            &["pods"],
            &["get", "patch"],
            "Each replica labels its own Pod tether.dev/role=leader or standby, so the Service sends API\n\
             calls and webhooks to the leader only.",
        ),
    ]
}

fn review_rules() -> Vec<Rule> {
    vec![
        Rule::new(
            &["authentication.k8s.io"],
            &["tokenreviews"],
            &["create"],
            "The API (port 3030) authenticates every caller's bearer token with a TokenReview.",
        ),
        Rule::new(
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
            &["create"],
            "It authorises each call with a SubjectAccessReview on the virtual tether.dev resources:\n\
             workloads in the workload's namespace, syncs in the agent's own.",
        ),
    ]
}

/// Example roles for people, bound per namespace by the teams that use them.
fn people(ns: &str) -> Vec<Manifest> {
    let example = |role: &str, what: &str| {
        let name = format!("tether-{ns}-{role}");
        format!(
            "For people: {what} through tether's API.\n\
             tether.dev/workloads and syncs are virtual: nothing serves them, the agent checks them with a\n\
             SubjectAccessReview (workloads in the workload's namespace, syncs in the agent's namespace,\n\
             {ns}). A team is granted this in its own namespace for its workloads, and in {ns} to trigger\n\
             syncs and read the sync state, for example:\n\
             \n  kubectl create rolebinding tether-{role} -n demo --clusterrole={name} --group=demo-team\n\
             \n  kubectl create rolebinding demo-team-{role} -n {ns} --clusterrole={name} --group=demo-team\n\
             \nor as YAML:\n\
             \n  apiVersion: rbac.authorization.k8s.io/v1\
             \n  kind: RoleBinding\
             \n  metadata: {{name: tether-{role}, namespace: demo}}\
             \n  roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {name}}}\
             \n  subjects:\
             \n  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: demo-team}}"
        )
    };
    vec![
        role(
            &format!("tether-{ns}-viewer"),
            None,
            ns,
            vec![
                Rule::new(
                    &["tether.dev"],
                    &["workloads"],
                    &["get", "list"],
                    "tether list-workloads and list-images: workloads, their images, rollout and policies.",
                ),
                Rule::new(
                    &["tether.dev"],
                    &["syncs"],
                    &["get"],
                    "The sync state: the applied revision and the last error.",
                ),
            ],
        )
        .comment("", example("viewer", "read workloads and the sync state")),
        role(
            &format!("tether-{ns}-releaser"),
            None,
            ns,
            vec![
                Rule::new(
                    &["tether.dev"],
                    &["workloads"],
                    &["get", "list", "update"],
                    "Read workloads; release, lock, unlock, automate, deautomate or change a policy (each a\n\
                     commit the agent makes and pushes).",
                ),
                Rule::new(
                    &["tether.dev"],
                    &["syncs"],
                    &["get", "update"],
                    "Read the sync state; `tether sync` to sync now.",
                ),
            ],
        )
        .comment(
            "",
            example("releaser", "what a viewer may, plus releases, locks and syncs"),
        ),
    ]
}
