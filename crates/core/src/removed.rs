//! API versions Kubernetes stopped serving since the Flux v1 era (the deprecated-API migration guide), so an
//! old manifest fails with what replaced it instead of "not served".

/// One removed `apiVersion` for some kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// The release that stopped serving it, e.g. `1.25`.
    pub release: &'static str,
    /// What to use instead, e.g. `autoscaling/v2`; `None` when nothing replaces it.
    pub replacement: Option<&'static str>,
    /// What changes besides the `apiVersion` line, for the message; `None` when nothing else does.
    pub changes: Option<&'static str>,
}

/// `(apiVersion, kinds (empty: every kind of that apiVersion), removal)`.
const REMOVALS: &[(&str, &[&str], Removal)] = &[
    (
        "extensions/v1beta1",
        &["Deployment", "DaemonSet", "ReplicaSet"],
        Removal {
            release: "1.16",
            replacement: Some("apps/v1"),
            changes: Some("spec.selector is required and must match the template's labels"),
        },
    ),
    (
        "apps/v1beta1",
        &[],
        Removal {
            release: "1.16",
            replacement: Some("apps/v1"),
            changes: Some("spec.selector is required and must match the template's labels"),
        },
    ),
    (
        "apps/v1beta2",
        &[],
        Removal {
            release: "1.16",
            replacement: Some("apps/v1"),
            changes: Some("spec.selector is required and must match the template's labels"),
        },
    ),
    (
        "extensions/v1beta1",
        &["NetworkPolicy"],
        Removal {
            release: "1.16",
            replacement: Some("networking.k8s.io/v1"),
            changes: None,
        },
    ),
    (
        "extensions/v1beta1",
        &["Ingress"],
        Removal {
            release: "1.22",
            replacement: Some("networking.k8s.io/v1"),
            changes: Some("spec.backend becomes spec.defaultBackend, serviceName/servicePort become \
                      service.name and service.port.number (or .name), and each path needs a pathType"),
        },
    ),
    (
        "networking.k8s.io/v1beta1",
        &["Ingress", "IngressClass"],
        Removal {
            release: "1.22",
            replacement: Some("networking.k8s.io/v1"),
            changes: Some("for an Ingress, spec.backend becomes spec.defaultBackend, serviceName/servicePort \
                      become service.name and service.port.number (or .name), and each path needs a pathType"),
        },
    ),
    (
        "extensions/v1beta1",
        &["PodSecurityPolicy"],
        Removal {
            release: "1.16",
            replacement: None,
            changes: Some("PodSecurityPolicy is gone since 1.25; label Namespaces for Pod Security Admission"),
        },
    ),
    (
        "apiextensions.k8s.io/v1beta1",
        &["CustomResourceDefinition"],
        Removal {
            release: "1.22",
            replacement: Some("apiextensions.k8s.io/v1"),
            changes: Some("spec.version becomes spec.versions[], and the validation schema moves into each \
                      version as a structural schema"),
        },
    ),
    (
        "rbac.authorization.k8s.io/v1beta1",
        &[],
        Removal {
            release: "1.22",
            replacement: Some("rbac.authorization.k8s.io/v1"),
            changes: None,
        },
    ),
    (
        "admissionregistration.k8s.io/v1beta1",
        &[],
        Removal {
            release: "1.22",
            replacement: Some("admissionregistration.k8s.io/v1"),
            changes: Some("admissionReviewVersions and sideEffects are required"),
        },
    ),
    (
        "apiregistration.k8s.io/v1beta1",
        &[],
        Removal {
            release: "1.22",
            replacement: Some("apiregistration.k8s.io/v1"),
            changes: None,
        },
    ),
    (
        "scheduling.k8s.io/v1beta1",
        &[],
        Removal {
            release: "1.22",
            replacement: Some("scheduling.k8s.io/v1"),
            changes: None,
        },
    ),
    (
        "storage.k8s.io/v1beta1",
        &["CSIDriver", "CSINode", "StorageClass", "VolumeAttachment"],
        Removal {
            release: "1.22",
            replacement: Some("storage.k8s.io/v1"),
            changes: None,
        },
    ),
    (
        "coordination.k8s.io/v1beta1",
        &[],
        Removal {
            release: "1.22",
            replacement: Some("coordination.k8s.io/v1"),
            changes: None,
        },
    ),
    (
        "certificates.k8s.io/v1beta1",
        &[],
        Removal {
            release: "1.22",
            replacement: Some("certificates.k8s.io/v1"),
            changes: Some("signerName and usages are required"),
        },
    ),
    (
        "batch/v1beta1",
        &["CronJob"],
        Removal {
            release: "1.25",
            replacement: Some("batch/v1"),
            changes: None,
        },
    ),
    (
        "autoscaling/v2beta1",
        &["HorizontalPodAutoscaler"],
        Removal {
            release: "1.25",
            replacement: Some("autoscaling/v2"),
            changes: Some("each metric's targetAverageUtilization/targetAverageValue/targetValue becomes a \
                      target {type, averageUtilization|averageValue|value}, and metricName/metricSelector \
                      become metric {name, selector}"),
        },
    ),
    (
        "policy/v1beta1",
        &["PodDisruptionBudget"],
        Removal {
            release: "1.25",
            replacement: Some("policy/v1"),
            changes: Some("an empty spec.selector {} now selects every Pod in the namespace"),
        },
    ),
    (
        "policy/v1beta1",
        &["PodSecurityPolicy"],
        Removal {
            release: "1.25",
            replacement: None,
            changes: Some("label Namespaces for Pod Security Admission instead"),
        },
    ),
    (
        "discovery.k8s.io/v1beta1",
        &["EndpointSlice"],
        Removal {
            release: "1.25",
            replacement: Some("discovery.k8s.io/v1"),
            changes: Some("topology[\"kubernetes.io/hostname\"] becomes nodeName"),
        },
    ),
    (
        "events.k8s.io/v1beta1",
        &["Event"],
        Removal {
            release: "1.25",
            replacement: Some("events.k8s.io/v1"),
            changes: Some("the deprecated* fields are renamed"),
        },
    ),
    (
        "node.k8s.io/v1beta1",
        &["RuntimeClass"],
        Removal {
            release: "1.25",
            replacement: Some("node.k8s.io/v1"),
            changes: None,
        },
    ),
    (
        "autoscaling/v2beta2",
        &["HorizontalPodAutoscaler"],
        Removal {
            release: "1.26",
            replacement: Some("autoscaling/v2"),
            changes: None,
        },
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta1",
        &[],
        Removal {
            release: "1.26",
            replacement: Some("flowcontrol.apiserver.k8s.io/v1"),
            changes: Some(
                "a PriorityLevelConfiguration's spec.limited.assuredConcurrencyShares becomes \
                 nominalConcurrencyShares",
            ),
        },
    ),
    (
        "storage.k8s.io/v1beta1",
        &["CSIStorageCapacity"],
        Removal {
            release: "1.27",
            replacement: Some("storage.k8s.io/v1"),
            changes: None,
        },
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta2",
        &[],
        Removal {
            release: "1.29",
            replacement: Some("flowcontrol.apiserver.k8s.io/v1"),
            changes: Some(
                "a PriorityLevelConfiguration's spec.limited.assuredConcurrencyShares becomes \
                 nominalConcurrencyShares",
            ),
        },
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta3",
        &[],
        Removal {
            release: "1.32",
            replacement: Some("flowcontrol.apiserver.k8s.io/v1"),
            changes: None,
        },
    ),
];

/// The removal that covers `kind` at `api_version`, if Kubernetes stopped serving it.
pub fn removal(api_version: &str, kind: &str) -> Option<Removal> {
    REMOVALS
        .iter()
        .find(|(v, kinds, _)| *v == api_version && (kinds.is_empty() || kinds.contains(&kind)))
        .map(|(_, _, r)| *r)
}

impl Removal {
    /// One line for `kind` at `api_version`: which release removed it and what to write instead.
    pub fn describe(&self, api_version: &str, kind: &str) -> String {
        match self.replacement {
            Some(new) => format!(
                "{api_version} {kind} is no longer served (removed in Kubernetes {}); change apiVersion to \
                 {new} ({})",
                self.release,
                match self.changes {
                    None => "nothing else changes".to_owned(),
                    Some(c) => format!("also: {c}"),
                }
            ),
            None => format!(
                "{api_version} {kind} is no longer served (removed in Kubernetes {}) and has no replacement{}",
                self.release,
                self.changes.map(|c| format!(": {c}")).unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux_v1_era_versions_name_their_release_and_replacement() {
        let hpa = removal("autoscaling/v2beta1", "HorizontalPodAutoscaler").unwrap();
        assert_eq!(
            (hpa.release, hpa.replacement),
            ("1.25", Some("autoscaling/v2"))
        );
        let line = hpa.describe("autoscaling/v2beta1", "HorizontalPodAutoscaler");
        assert!(
            line.contains("1.25")
                && line.contains("autoscaling/v2 ")
                && line.contains("averageUtilization"),
            "{line}"
        );
        let ing = removal("extensions/v1beta1", "Ingress").unwrap();
        assert_eq!(ing.replacement, Some("networking.k8s.io/v1"));
        assert_eq!(
            removal("extensions/v1beta1", "Deployment").map(|r| r.replacement),
            Some(Some("apps/v1"))
        );
        assert_eq!(
            removal("rbac.authorization.k8s.io/v1beta1", "ClusterRole").map(|r| r.release),
            Some("1.22")
        );
        let rbac = removal("rbac.authorization.k8s.io/v1beta1", "Role").unwrap();
        assert!(rbac
            .describe("rbac.authorization.k8s.io/v1beta1", "Role")
            .contains("nothing else changes"));
        assert!(removal("policy/v1beta1", "PodSecurityPolicy")
            .unwrap()
            .describe("policy/v1beta1", "PodSecurityPolicy")
            .contains("no replacement"));
        // Versions that are still served, or kinds a removal does not cover.
        assert_eq!(removal("apps/v1", "Deployment"), None);
        assert_eq!(removal("extensions/v1beta1", "Widget"), None);
        assert_eq!(removal("example.com/v1beta1", "Widget"), None);
    }
}
