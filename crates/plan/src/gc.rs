//! Garbage collection decisions: which previously applied objects are gone from Git, and whether each may
//! really be deleted. Pure; `tether-apply` reads the live objects and deletes.

use std::collections::BTreeSet;

use serde_json::Value;
use tether_core::policy::Ignore;
use tether_core::resource::Annotations;
use tether_core::{ObjectId, ObjectRef};

use crate::kinds::rank;
use crate::prepare::{owner_mark, OWNER_ANNOTATION, SYNC_LABEL};

/// Objects in the previous inventory that this sync's rendering no longer contains, in deletion order:
/// the reverse of apply order (custom resources before their CRD, workloads before their Namespace).
pub fn candidates(previous: &[ObjectRef], keep: &BTreeSet<ObjectId>) -> Vec<ObjectRef> {
    let mut out: Vec<ObjectRef> = previous
        .iter()
        .filter(|r| !keep.contains(&r.id))
        .cloned()
        .collect();
    out.sort_by(|a, b| (rank(&b.kind.kind), &b.id).cmp(&(rank(&a.kind.kind), &a.id)));
    out.dedup();
    out
}

/// What to do with one candidate, given its live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// Owned by this sync and not exempt: delete it.
    Delete,
    /// Already gone.
    Gone,
    /// Live, but not marked as owned by this sync (someone else's, or a copied label): never touched.
    NotOwned,
    /// Owned, but `ignore: "true"` or `"sync_only"` on the live object exempts it.
    Exempt,
}

/// Decides whether a candidate may be deleted. Ownership needs both the sync label and the owner mark, which
/// binds sync name and object id, so a label copied onto another object never makes it collectable.
pub fn judge(candidate: &ObjectRef, live: Option<&Value>, sync_name: &str) -> Prune {
    let Some(live) = live else { return Prune::Gone };
    let labels = live.pointer("/metadata/labels");
    let labelled = labels
        .and_then(|l| l.get(SYNC_LABEL))
        .and_then(Value::as_str)
        == Some(sync_name);
    let annotations = Annotations::of(live);
    if !labelled
        || annotations.get(OWNER_ANNOTATION) != Some(owner_mark(sync_name, &candidate.id).as_str())
    {
        return Prune::NotOwned;
    }
    if Ignore::of(annotations) != Ignore::No {
        return Prune::Exempt;
    }
    Prune::Delete
}

/// True when a live object inside a Namespace means the Namespace must not be deleted: anything except what
/// Kubernetes itself puts in every namespace or derives from other objects (owner references, events).
pub fn blocks_namespace_deletion(kind: &str, object: &Value) -> bool {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let has_owner = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|o| !o.is_empty());
    let system = match kind {
        "Event" | "Endpoints" | "EndpointSlice" | "Lease" => true,
        "ServiceAccount" => name == "default",
        "ConfigMap" => name == "kube-root-ca.crt",
        "Secret" => {
            object.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token")
        }
        _ => false,
    };
    !(has_owner || system)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tether_core::Kind;

    fn r(kind: &str, group: &str, ns: Option<&str>, name: &str) -> ObjectRef {
        let api_version = if group.is_empty() {
            "v1".to_owned()
        } else {
            format!("{group}/v1")
        };
        ObjectRef {
            id: ObjectId::new(&api_version, kind, ns, name),
            kind: Kind {
                group: group.into(),
                version: "v1".into(),
                kind: kind.into(),
                plural: format!("{}s", kind.to_lowercase()),
                namespaced: ns.is_some(),
            },
        }
    }

    #[test]
    fn candidates_are_what_git_dropped_in_reverse_apply_order() {
        let previous = vec![
            r("Namespace", "", None, "app"),
            r(
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                None,
                "widgets.example.com",
            ),
            r("Widget", "example.com", Some("app"), "w"),
            r("Deployment", "apps", Some("app"), "web"),
            r("ConfigMap", "", Some("app"), "kept"),
        ];
        let keep: BTreeSet<ObjectId> = [previous[4].id.clone()].into();
        let order: Vec<String> = candidates(&previous, &keep)
            .iter()
            .map(|c| c.kind.kind.clone())
            .collect();
        assert_eq!(
            order,
            [
                "Widget",
                "Deployment",
                "CustomResourceDefinition",
                "Namespace"
            ]
        );
    }

    #[test]
    fn only_objects_marked_for_this_sync_and_this_id_are_deleted() {
        let c = r("ConfigMap", "", Some("app"), "a");
        let owned = |sync: &str, id: &ObjectId| json!({"metadata": {"labels": {SYNC_LABEL: sync}, "annotations": {OWNER_ANNOTATION: owner_mark(sync, id)}}});
        assert_eq!(judge(&c, None, "tether"), Prune::Gone);
        assert_eq!(
            judge(&c, Some(&owned("tether", &c.id)), "tether"),
            Prune::Delete
        );
        // Another sync's object, or marks copied from a different object, are not ours.
        assert_eq!(
            judge(&c, Some(&owned("other", &c.id)), "tether"),
            Prune::NotOwned
        );
        let other = r("ConfigMap", "", Some("app"), "b");
        assert_eq!(
            judge(&c, Some(&owned("tether", &other.id)), "tether"),
            Prune::NotOwned
        );
        assert_eq!(
            judge(
                &c,
                Some(&json!({"metadata": {"labels": {SYNC_LABEL: "tether"}}})),
                "tether"
            ),
            Prune::NotOwned
        );
        let mut exempt = owned("tether", &c.id);
        exempt["metadata"]["annotations"]["fluxcd.io/ignore"] = "sync_only".into();
        assert_eq!(judge(&c, Some(&exempt), "tether"), Prune::Exempt);
    }

    #[test]
    fn what_kubernetes_creates_in_every_namespace_does_not_block_its_deletion() {
        assert!(!blocks_namespace_deletion(
            "ServiceAccount",
            &json!({"metadata": {"name": "default"}})
        ));
        assert!(!blocks_namespace_deletion(
            "ConfigMap",
            &json!({"metadata": {"name": "kube-root-ca.crt"}})
        ));
        assert!(!blocks_namespace_deletion(
            "Secret",
            &json!({"metadata": {"name": "default-token-x"}, "type": "kubernetes.io/service-account-token"})
        ));
        assert!(!blocks_namespace_deletion(
            "ReplicaSet",
            &json!({"metadata": {"name": "x", "ownerReferences": [{"name": "web"}]}})
        ));
        assert!(blocks_namespace_deletion(
            "ConfigMap",
            &json!({"metadata": {"name": "precious"}})
        ));
    }
}
