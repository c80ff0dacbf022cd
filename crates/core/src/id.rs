//! Object ids in Flux v1's `namespace:kind/name` form, with `<cluster>` for cluster-scoped objects.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Namespace placeholder Flux v1 uses for cluster-scoped objects.
pub const CLUSTER_SCOPE: &str = "<cluster>";

/// Identity of a Kubernetes object as tether reports it: `namespace:kind/name`.
///
/// The API group is kept so that two kinds of the same name in different groups stay distinct, but it is not
/// printed, to stay compatible with the ids users know from fluxctl.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId {
    /// The namespace, or `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// API group (`""` for the core group, `apps`, ...).
    pub group: String,
    /// Kind as written in the manifest (`Deployment`).
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectId {
    /// Builds an id from an `apiVersion` (`apps/v1`, `v1`), kind, namespace and name.
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectId {
            namespace: namespace.map(str::to_owned),
            group: group_of(api_version).to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Parses `namespace:kind/name` (also `<cluster>:kind/name`); the group is left empty, so compare
    /// parsed ids with [`ObjectId::matches`].
    pub fn parse(s: &str) -> Result<Self, ParseIdError> {
        let bad = || ParseIdError(s.to_owned());
        let (ns, rest) = s.split_once(':').ok_or_else(bad)?;
        let (kind, name) = rest.split_once('/').ok_or_else(bad)?;
        if ns.is_empty() || kind.is_empty() || name.is_empty() || name.contains('/') {
            return Err(bad());
        }
        Ok(ObjectId {
            namespace: (ns != CLUSTER_SCOPE).then(|| ns.to_owned()),
            group: String::new(),
            kind: kind.to_owned(),
            name: name.to_owned(),
        })
    }

    /// True when `self` (usually parsed from user input, without a group) names `other`: kinds are compared
    /// case-insensitively as fluxctl does, the group only when `self` has one.
    pub fn matches(&self, other: &ObjectId) -> bool {
        self.namespace == other.namespace
            && self.name == other.name
            && self.kind.eq_ignore_ascii_case(&other.kind)
            && (self.group.is_empty() || self.group == other.group)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.namespace.as_deref().unwrap_or(CLUSTER_SCOPE);
        write!(f, "{ns}:{}/{}", self.kind.to_ascii_lowercase(), self.name)
    }
}

/// The API group of an `apiVersion` string: `apps/v1` → `apps`, `v1` → `""`.
pub fn group_of(api_version: &str) -> &str {
    split_api_version(api_version).0
}

/// A DNS-1123 label: what Kubernetes accepts as a namespace name (and tether as a sync name): at most 63
/// lowercase letters, digits and '-', starting and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Why `name` cannot be an object name, if it cannot: it goes into request URLs, so beyond what each kind's
/// own validation says (the server's job), it must be a non-empty URL path segment of at most 253
/// characters with no `/`, `%`, `?`, `#`, whitespace or control characters, and not `.` or `..`.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty; every object needs a name")
    } else if name.len() > 253 {
        Some("is longer than 253 characters")
    } else if name == "." || name == ".." {
        Some("is not a name Kubernetes accepts")
    } else if name
        .chars()
        .any(|c| matches!(c, '/' | '%' | '?' | '#') || c.is_whitespace() || c.is_control())
    {
        Some(
            "holds a character no Kubernetes name may hold ('/', '%', '?', '#', spaces or control \
             characters); use lowercase letters, digits, '-' and '.'",
        )
    } else {
        None
    }
}

/// Why `namespace` cannot be a namespace name (a DNS label: lowercase letters, digits and '-', at most 63).
pub fn namespace_problem(namespace: &str) -> Option<&'static str> {
    (!is_dns_label(namespace)).then_some(
        "is not a namespace name: use at most 63 lowercase letters, digits and '-', starting and ending \
         with a letter or digit",
    )
}

/// An `apiVersion` as (group, version): `apps/v1` → (`apps`, `v1`), `v1` → (`""`, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// A string that is not of the form `namespace:kind/name`.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not an object id: expected namespace:kind/name, e.g. default:deployment/web or <cluster>:namespace/web")]
pub struct ParseIdError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_fluxctl_with_lowercase_kind_and_cluster_placeholder() {
        let id = ObjectId::new("apps/v1", "Deployment", Some("demo"), "web");
        assert_eq!(id.to_string(), "demo:deployment/web");
        let ns = ObjectId::new("v1", "Namespace", None, "demo");
        assert_eq!(ns.to_string(), "<cluster>:namespace/demo");
    }

    #[test]
    fn parsed_ids_match_regardless_of_kind_case_and_group() {
        let live = ObjectId::new("apps/v1", "Deployment", Some("demo"), "web");
        assert!(ObjectId::parse("demo:deployment/web")
            .unwrap()
            .matches(&live));
        assert!(!ObjectId::parse("other:deployment/web")
            .unwrap()
            .matches(&live));
        assert!(ObjectId::parse("<cluster>:namespace/demo")
            .unwrap()
            .matches(&ObjectId::new("v1", "Namespace", None, "demo")));
    }

    #[test]
    fn rejects_malformed_ids_with_an_example() {
        let err = ObjectId::parse("deployment/web").unwrap_err().to_string();
        assert!(err.contains("namespace:kind/name"), "{err}");
        assert!(ObjectId::parse("ns:deployment/").is_err());
    }

    #[test]
    fn group_of_core_and_named_groups() {
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("apiextensions.k8s.io/v1"), "apiextensions.k8s.io");
    }
}
