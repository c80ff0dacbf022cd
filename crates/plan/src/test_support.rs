//! Builders the unit tests share.

use tether_core::{Kind, ObjectId, ObjectRef};

/// An object of `kind` in API group `group` (version `v1`), namespaced when `ns` is given.
pub(crate) fn object_ref(kind: &str, group: &str, ns: Option<&str>, name: &str) -> ObjectRef {
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
