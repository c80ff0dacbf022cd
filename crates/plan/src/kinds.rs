//! Kinds as the server (or a CRD in the same commit) offers them, and the order they are applied in.

use serde_json::Value;
pub use tether_core::Kind;

/// Kinds defined by CustomResourceDefinitions among the desired objects, so their custom resources can be
/// planned in the same commit before the server serves them.
pub fn kinds_from_crds<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Vec<Kind> {
    let mut out = Vec::new();
    for o in objects {
        if o.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            continue;
        }
        let s = |p: &str| {
            o.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let (group, kind, plural) = (
            s("/spec/group"),
            s("/spec/names/kind"),
            s("/spec/names/plural"),
        );
        let namespaced = s("/spec/scope") != "Cluster";
        let mut versions: Vec<String> = o
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        // apiextensions/v1beta1 CRDs may give a single `spec.version`.
        if let Some(v) = o.pointer("/spec/version").and_then(Value::as_str) {
            versions.push(v.to_owned());
        }
        for version in versions {
            out.push(Kind {
                group: group.clone(),
                version,
                kind: kind.clone(),
                plural: plural.clone(),
                namespaced,
            });
        }
    }
    out
}

/// Apply order (lower first), as Flux v1 ranked kinds: namespaces, then definitions and identities, then
/// configuration, then workloads, then everything else. Deletion runs in the reverse order.
pub fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition"
        | "ServiceAccount"
        | "ClusterRole"
        | "Role"
        | "PersistentVolume"
        | "Service" => 1,
        "ResourceQuota"
        | "LimitRange"
        | "Secret"
        | "ConfigMap"
        | "RoleBinding"
        | "ClusterRoleBinding"
        | "PersistentVolumeClaim"
        | "Ingress" => 2,
        "DaemonSet"
        | "Deployment"
        | "ReplicationController"
        | "ReplicaSet"
        | "Job"
        | "CronJob"
        | "StatefulSet" => 3,
        _ => 4,
    }
}
