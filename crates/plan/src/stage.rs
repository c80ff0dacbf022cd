//! Staging: in which order a commit's writes are validated and sent.
//!
//! Every write is dry-run before any is applied. Objects that need a Namespace or a CRD this commit creates
//! cannot be dry-run before it exists, so Namespaces and CRDs go first, and those dependants are validated
//! after them (undoing the first stage if they are then rejected). Within a stage, writes go out in waves
//! ([`wave_of`]): Namespaces, CRDs, then everything else at once, except the few kinds the API server
//! admits only when others exist (bare Pods need their ServiceAccount) or that change how others are
//! admitted (admission webhooks and policies), which go last. A wave per [`crate::rank`] made every kind wait for
//! the slowest write of the one before (Services, for their cluster IPs).

use std::collections::BTreeSet;

use crate::kinds::Kind;
use crate::prepare::{Action, Entry};

/// The writes of one sync, as indices into its entries, split into stages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stages {
    /// Namespaces and CRDs: validated with `now`, written first.
    pub first: Vec<usize>,
    /// Validated before any write.
    pub now: Vec<usize>,
    /// Validated only after `first` is written: the kind comes from a CRD in this commit, or the object
    /// lives in a Namespace this commit creates.
    pub deferred: Vec<usize>,
}

/// Splits the entries that may need a write (`Create`, `Update`, `Verify`) into stages; `served` tells
/// whether the server already serves a kind (not only a CRD in this commit).
pub fn stages(entries: &[Entry], served: impl Fn(&Kind) -> bool) -> Stages {
    let new_namespaces: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.desired.kind.is_namespace() && e.action == Action::Create)
        .map(|e| e.desired.id.name.as_str())
        .collect();
    let mut out = Stages::default();
    for (i, e) in entries.iter().enumerate() {
        if !matches!(e.action, Action::Create | Action::Update | Action::Verify) {
            continue;
        }
        let k = &e.desired.kind;
        let in_new_namespace = e
            .desired
            .id
            .namespace
            .as_deref()
            .is_some_and(|ns| new_namespaces.contains(ns));
        if k.is_namespace() || k.is_crd() {
            out.first.push(i);
        } else if !served(k) || in_new_namespace {
            out.deferred.push(i);
        } else {
            out.now.push(i);
        }
    }
    out
}

/// Which wave a kind is written in: 0 Namespaces, 1 CRDs, 2 everything else, 3 kinds admitted only after
/// others exist or that decide how others are admitted.
pub fn wave_of(kind: &Kind) -> u8 {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Namespace") => 0,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 1,
        ("", "Pod")
        | (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration"
            | "MutatingWebhookConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "MutatingAdmissionPolicy"
            | "MutatingAdmissionPolicyBinding",
        ) => 3,
        _ => 2,
    }
}

/// The writes `which` grouped into waves ([`wave_of`]), lowest first; each wave runs at full concurrency.
pub fn waves(entries: &[Entry], which: impl IntoIterator<Item = usize>) -> Vec<Vec<usize>> {
    let mut sorted: Vec<usize> = which.into_iter().collect();
    sorted.sort_by_key(|&i| (wave_of(&entries[i].desired.kind), i));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut last = None;
    for i in sorted {
        let r = wave_of(&entries[i].desired.kind);
        match out.last_mut() {
            Some(wave) if last == Some(r) => wave.push(i),
            _ => out.push(vec![i]),
        }
        last = Some(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::Desired;
    use crate::test_support::object_ref;
    use serde_json::json;
    use tether_core::policy::Ignore;
    use tether_core::Provenance;

    fn entry(group: &str, kind: &str, ns: Option<&str>, name: &str, action: Action) -> Entry {
        let r = object_ref(kind, group, ns, name);
        Entry {
            desired: Desired {
                id: r.id,
                kind: r.kind,
                body: serde_json::value::to_raw_value(&json!({})).unwrap(),
                source: Provenance {
                    file: "f.yaml".into(),
                    line: 1,
                },
                checksum: String::new(),
                ignore: Ignore::No,
            },
            live: None,
            action,
        }
    }

    #[test]
    fn namespaces_and_crds_go_first_and_what_needs_them_is_validated_after() {
        let entries = vec![
            entry("", "Namespace", None, "new", Action::Create),
            entry("", "Namespace", None, "old", Action::Update),
            entry(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                None,
                "widgets.example.com",
                Action::Create,
            ),
            entry("", "ConfigMap", Some("new"), "in-new", Action::Create),
            entry("", "ConfigMap", Some("old"), "in-old", Action::Update),
            entry("example.com", "Widget", Some("old"), "w", Action::Create),
            entry("", "ConfigMap", Some("old"), "same", Action::Unchanged),
            entry("", "Secret", Some("old"), "ignored", Action::IgnoredLive),
            entry("apps", "Deployment", Some("old"), "drifted", Action::Verify),
        ];
        let served = |k: &Kind| k.group != "example.com";
        assert_eq!(
            stages(&entries, served),
            Stages {
                first: vec![0, 1, 2],
                now: vec![4, 8],
                deferred: vec![3, 5],
            }
        );
    }

    #[test]
    fn an_existing_namespace_does_not_defer_its_objects() {
        let entries = vec![
            entry("", "Namespace", None, "app", Action::Verify),
            entry("", "ConfigMap", Some("app"), "c", Action::Create),
        ];
        let s = stages(&entries, |_| true);
        assert_eq!((s.first, s.now, s.deferred), (vec![0], vec![1], vec![]));
    }

    #[test]
    fn namespaces_then_crds_then_everything_at_once_and_pods_and_webhooks_last() {
        let entries = vec![
            entry("apps", "Deployment", Some("a"), "web", Action::Create),
            entry("", "ConfigMap", Some("a"), "c", Action::Create),
            entry("", "Namespace", None, "a", Action::Create),
            entry(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                None,
                "x.example.com",
                Action::Create,
            ),
            entry("", "Service", Some("a"), "web", Action::Create),
            entry("", "Secret", Some("a"), "s", Action::Create),
            entry("example.com", "Widget", Some("a"), "w", Action::Create),
            entry("", "Pod", Some("a"), "p", Action::Create),
            entry(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
                None,
                "v",
                Action::Create,
            ),
        ];
        assert_eq!(
            waves(&entries, 0..entries.len()),
            vec![vec![2], vec![3], vec![0, 1, 4, 5, 6], vec![7, 8]]
        );
        // Only the writes asked for; Namespaces come before CRDs within the first stage.
        assert_eq!(waves(&entries, [3, 2]), vec![vec![2], vec![3]]);
        assert!(waves(&entries, []).is_empty());
    }
}
