//! The agent's Deployment and Service.

use serde_json::{json, Value};
use tether_core::ROLE_LABEL;
use tether_source::GitUrl;

use crate::{labels, Manifest, Scope, Valid, KNOWN_HOSTS_CONFIGMAP, NAME};

/// Where the agent keeps its clone and caches (an emptyDir).
pub const CACHE_DIR: &str = "/var/cache/tether";

/// Where the known_hosts ConfigMap's file is mounted.
pub const KNOWN_HOSTS_PATH: &str = "/etc/tether/known_hosts/known_hosts";

/// The API's port (the daemon's `--listen` default).
const API_PORT: u16 = 3030;
/// `/healthz`, `/readyz` and `/metrics` (the daemon's `--listen-metrics` default).
const METRICS_PORT: u16 = 3031;
/// The unprivileged user the image runs as (as in distroless images).
const UID: u32 = 65532;

/// `tether daemon` with the install's flags, exactly as the container runs it.
fn args(o: &Valid) -> Vec<String> {
    let mut args = vec![
        "daemon".to_owned(),
        format!("--git-url={}", o.git_url.as_str()),
        format!("--git-branch={}", o.git_branch),
    ];
    args.extend(o.git_paths.iter().map(|p| format!("--git-path={p}")));
    args.push("--leader-elect".to_owned());
    // Objects carry the sync name as their owner label, and garbage collection sweeps by it: two installs
    // in one cluster must never share one, or each would collect what the other applied.
    args.push(format!("--sync-name={}", o.namespace));
    // The daemon refuses known_hosts for other URLs: it only applies to SSH.
    if matches!(o.git_url, GitUrl::Ssh(_)) {
        args.push(format!("--git-known-hosts={KNOWN_HOSTS_PATH}"));
    }
    args.push(format!("--cache-dir={CACHE_DIR}"));
    if o.git_readonly {
        args.push("--git-readonly".into());
    }
    if o.manifest_generation {
        args.push("--manifest-generation".into());
    }
    args.extend(
        o.allow_namespaces
            .iter()
            .map(|ns| format!("--k8s-allow-namespace={ns}")),
    );
    args
}

pub(crate) fn deployment(o: &Valid) -> Manifest {
    let l = labels(&o.namespace);
    let container = json!({
        "name": NAME,
        "image": o.image,
        "args": args(o),
        "env": [
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            // The sync results' Kubernetes Events are attached to the agent's own Pod.
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "HOME", "value": "/tmp"},
        ],
        "ports": [
            {"name": "api", "containerPort": API_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 10, "timeoutSeconds": 5,
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": UID,
            "runAsGroup": UID,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "cache", "mountPath": CACHE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "known-hosts", "mountPath": "/etc/tether/known_hosts", "readOnly": true},
        ],
    });
    let c = "/spec/template/spec/containers/0";
    let mut args_note = String::from(
        "No --listen or --listen-metrics: the defaults serve the API on 0.0.0.0:3030 and /healthz, /readyz\n\
         and /metrics on 0.0.0.0:3031.",
    );
    if !matches!(o.git_url, GitUrl::Ssh(_)) {
        args_note.push_str(
            "\nNo --git-known-hosts: it applies to SSH URLs only (the ConfigMap is mounted for when the URL\n\
             becomes one).",
        );
    }
    if o.scope == Scope::Namespace {
        args_note.push_str(
            "\n--k8s-allow-namespace: the namespaces the Roles above grant, and no others.",
        );
    }
    Manifest::new(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": o.namespace, "labels": l},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "selector": {"matchLabels": l},
            "template": {
                // A new replica stands by until it wins the Lease and labels itself the leader.
                "metadata": {"labels": with_role(&l, "standby")},
                "spec": {
                    "serviceAccountName": NAME,
                    "containers": [container],
                    "volumes": [
                        {"name": "cache", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "known-hosts", "configMap": {"name": KNOWN_HOSTS_CONFIGMAP}},
                    ],
                },
            },
        },
    }))
    .comment("", "The agent.")
    .comment(
        "/spec/replicas",
        "One writer: the sync marker, the inventory and the commits tether pushes have a single author.",
    )
    .comment(
        "/spec/strategy",
        "Two replicas with --leader-elect: only the holder of the Lease syncs, collects and commits; the\n\
         other serves the read API and takes over within the lease duration when the holder dies.",
    )
    .comment(&format!("{c}/args"), args_note)
    .comment(
        &format!("{c}/env"),
        "POD_NAMESPACE: tether's own namespace (its deploy key, sync state and inventory).\n\
         HOME: git and ssh write their state there; the root filesystem is read-only.",
    )
    .comment(
        &format!("{c}/livenessProbe"),
        "/healthz fails when the sync loop has not come round for --sync-timeout + --git-poll-interval\n\
         + 1m, so a stuck agent is restarted.",
    )
    .comment(
        &format!("{c}/readinessProbe"),
        "/readyz: ready after the first successful sync (the leader), or once it reads Git and the\n\
         cluster (a standby, ready to take over).",
    )
    .comment(
        &format!("{c}/resources"),
        "No CPU limit: throttling would stretch syncs and kustomize builds past their deadlines while the\n\
         node has CPU to spare; the request reserves the agent's share. The memory limit stops a runaway\n\
         render before it hurts the node.",
    )
    .comment(
        &format!("{c}/securityContext"),
        "Nothing the agent does needs root, a writable image or any capability: it writes only to the\n\
         emptyDirs below.",
    )
    .comment(
        "/spec/template/spec/volumes",
        "The clone and caches are rebuilt after a restart, so an emptyDir is enough.",
    )
}

/// `labels` plus `tether.dev/role: <role>`.
fn with_role(labels: &Value, role: &str) -> Value {
    let mut l = labels.clone();
    if let Value::Object(m) = &mut l {
        m.insert(ROLE_LABEL.to_owned(), Value::String(role.to_owned()));
    }
    l
}

pub(crate) fn service(o: &Valid) -> Manifest {
    let port = |name: &str, port: u16| json!({"name": name, "port": port, "targetPort": name, "protocol": "TCP"});
    let l: Value = labels(&o.namespace);
    Manifest::new(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": o.namespace, "labels": l},
        "spec": {
            "type": "ClusterIP",
            "selector": with_role(&l, "leader"),
            "ports": [port("api", API_PORT), port("metrics", METRICS_PORT)],
        },
    }))
    .comment(
        "",
        "The agent's API (/api/v1: every call authenticated and authorised against the API server) and\n\
         webhooks (/hooks: signed), and its metrics, inside the cluster only; to the leader replica only\n\
         (tether.dev/role=leader, which each replica sets on its own Pod).",
    )
}
