//! Garbage collection decisions: whether to collect at all, which previously applied objects are gone from
//! Git, whether each may really be deleted, and what the next inventory holds. Pure; `tether-apply` reads the
//! live objects and deletes, `tether-record` stores the inventory.

use std::collections::BTreeSet;

use serde_json::Value;
use tether_core::policy::Ignore;
use tether_core::resource::Annotations;
use tether_core::{ObjectId, ObjectRef};

use crate::kinds::rank;
use crate::prepare::{owner_mark, OWNER_ANNOTATION, SYNC_LABEL};

/// How garbage collection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Never delete anything.
    Off,
    /// Only report what would be deleted.
    DryRun,
    /// Delete what left Git.
    On,
}

/// What garbage collection does after a fully successful apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Delete nothing; the candidates stay in the inventory to be looked at again.
    Keep {
        /// What left Git since the previous inventory.
        candidates: Vec<ObjectRef>,
        /// Why collection is held back although it is on, for the log and the sync report.
        held_back: Option<HeldBack>,
    },
    /// Judge each candidate against its live object and delete (or, dry-run, report) the owned ones.
    Collect {
        /// What left Git, in deletion order.
        candidates: Vec<ObjectRef>,
        /// Report only.
        dry_run: bool,
    },
}

/// A safety valve that stopped collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBack {
    /// The commit renders no objects at all while the inventory is not empty: more likely a broken path or
    /// branch than a wish to delete everything.
    EmptyRender,
}

impl std::fmt::Display for HeldBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeldBack::EmptyRender => f.write_str("empty render"),
        }
    }
}

/// Decides whether this sync collects: `rendered` is every object the commit renders (applied or skipped),
/// `allow_empty` lets an empty render delete everything.
pub fn decide(
    previous: &[ObjectRef],
    rendered: &BTreeSet<ObjectId>,
    mode: Mode,
    allow_empty: bool,
) -> Decision {
    let candidates = candidates(previous, rendered);
    match mode {
        Mode::Off => Decision::Keep {
            candidates,
            held_back: None,
        },
        _ if rendered.is_empty() && !previous.is_empty() && !allow_empty => Decision::Keep {
            candidates,
            held_back: Some(HeldBack::EmptyRender),
        },
        mode => Decision::Collect {
            candidates,
            dry_run: mode == Mode::DryRun,
        },
    }
}

/// The inventory after a sync: what it applied, the candidates collection must look at again (kept, failed
/// or only reported), and objects of the previous inventory that the commit still renders but that were
/// skipped this time (ignored, or outside the allowed namespaces): they stay owned.
pub fn next_inventory(
    applied: &[ObjectRef],
    retained: impl IntoIterator<Item = ObjectRef>,
    previous: &[ObjectRef],
    rendered: &BTreeSet<ObjectId>,
) -> Vec<ObjectRef> {
    let applied_ids: BTreeSet<&ObjectId> = applied.iter().map(|r| &r.id).collect();
    let mut next = applied.to_vec();
    next.extend(retained);
    next.extend(
        previous
            .iter()
            .filter(|r| rendered.contains(&r.id) && !applied_ids.contains(&r.id))
            .cloned(),
    );
    next
}

/// Whether a sync that applied `applied` leaves an exact inventory `previous` as it is: then nothing left
/// Git, nothing needs collecting and the inventory needs no write, so a resync of an unchanged repository
/// skips collection without copying the inventory.
pub fn inventory_unchanged(previous: &[ObjectRef], applied: &[ObjectRef]) -> bool {
    sorted_refs(previous) == sorted_refs(applied)
}

fn sorted_refs(refs: &[ObjectRef]) -> Vec<&ObjectRef> {
    let mut v: Vec<&ObjectRef> = refs.iter().collect();
    v.sort();
    v.dedup_by(|a, b| a.id == b.id);
    v
}

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
    use crate::test_support::object_ref as r;
    use serde_json::json;

    #[test]
    fn an_inventory_is_unchanged_only_by_the_same_objects_of_the_same_kinds() {
        let previous = vec![
            r("Deployment", "apps", Some("a"), "web"),
            r("ConfigMap", "", Some("a"), "one"),
        ];
        let same = vec![
            previous[1].clone(),
            previous[0].clone(),
            previous[1].clone(),
        ];
        assert!(inventory_unchanged(&previous, &same));
        assert!(!inventory_unchanged(&previous, &same[..1]), "one left Git");
        let mut more = same.clone();
        more.push(r("Service", "", Some("a"), "web"));
        assert!(!inventory_unchanged(&previous, &more), "one added");
        let mut moved = previous.clone();
        moved[0].kind.version = "v2".into();
        assert!(
            !inventory_unchanged(&previous, &moved),
            "the kind's version is recorded, so a new one is a change"
        );
        assert!(inventory_unchanged(&[], &[]));
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
    fn collection_runs_only_when_on_and_never_on_an_empty_render_unless_allowed() {
        let previous = vec![
            r("ConfigMap", "", Some("app"), "a"),
            r("ConfigMap", "", Some("app"), "b"),
        ];
        let rendered: BTreeSet<ObjectId> = [previous[0].id.clone()].into();
        let gone = vec![previous[1].clone()];
        assert_eq!(
            decide(&previous, &rendered, Mode::Off, false),
            Decision::Keep {
                candidates: gone.clone(),
                held_back: None
            }
        );
        assert_eq!(
            decide(&previous, &rendered, Mode::DryRun, false),
            Decision::Collect {
                candidates: gone.clone(),
                dry_run: true
            }
        );
        assert_eq!(
            decide(&previous, &rendered, Mode::On, false),
            Decision::Collect {
                candidates: gone,
                dry_run: false
            }
        );
        let nothing = BTreeSet::new();
        let everything = candidates(&previous, &nothing);
        assert_eq!(
            decide(&previous, &nothing, Mode::On, false),
            Decision::Keep {
                candidates: everything.clone(),
                held_back: Some(HeldBack::EmptyRender)
            }
        );
        assert_eq!(
            decide(&previous, &nothing, Mode::On, true),
            Decision::Collect {
                candidates: everything,
                dry_run: false
            }
        );
        // A first sync with an empty inventory has nothing to hold back.
        assert_eq!(
            decide(&[], &nothing, Mode::On, false),
            Decision::Collect {
                candidates: vec![],
                dry_run: false
            }
        );
    }

    #[test]
    fn the_next_inventory_keeps_what_was_applied_retained_or_skipped_but_still_rendered() {
        let applied = r("ConfigMap", "", Some("app"), "applied");
        let skipped = r("ConfigMap", "", Some("app"), "ignored-now");
        let retained = r("ConfigMap", "", Some("app"), "delete-failed");
        let gone = r("ConfigMap", "", Some("app"), "deleted");
        let previous = vec![applied.clone(), skipped.clone(), retained.clone(), gone];
        let rendered: BTreeSet<ObjectId> = [applied.id.clone(), skipped.id.clone()].into();
        let next = next_inventory(
            std::slice::from_ref(&applied),
            [retained.clone()],
            &previous,
            &rendered,
        );
        assert_eq!(next, vec![applied, retained, skipped]);
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
