//! Policy annotations: tether's own prefix and Flux v1's `fluxcd.io/` and `flux.weave.works/`, so a Flux v1
//! config repo keeps working unchanged.

use crate::resource::Annotations;

/// tether's own annotation prefix.
pub const TETHER_PREFIX: &str = "tether.dev/";
/// Every prefix a policy is read under, tether's first.
pub const PREFIXES: [&str; 3] = [TETHER_PREFIX, "fluxcd.io/", "flux.weave.works/"];
/// Flux v1's other spelling of the `tag.<container>` policy: `filter.fluxcd.io/<container>`.
pub const FILTER_PREFIX: &str = "filter.fluxcd.io/";

/// Policy names (the part after the prefix).
pub mod names {
    /// `"true"`: image automation may update this workload.
    pub const AUTOMATED: &str = "automated";
    /// `"true"`: nothing may change this workload's images.
    pub const LOCKED: &str = "locked";
    /// Who locked it.
    pub const LOCKED_USER: &str = "locked_user";
    /// Why it was locked.
    pub const LOCKED_MSG: &str = "locked_msg";
    /// `"true"` or `"sync_only"`.
    pub const IGNORE: &str = "ignore";
    /// Prefix of per-container tag filters: `tag.<container>`.
    pub const TAG_PREFIX: &str = "tag.";
}

/// Every annotation key policy `name` is read under, in precedence order: under each of [`PREFIXES`], and
/// `tag.<container>` also as Flux's `filter.fluxcd.io/<container>`.
pub fn keys(name: &str) -> Vec<String> {
    let mut keys: Vec<String> = PREFIXES.iter().map(|p| format!("{p}{name}")).collect();
    if let Some(container) = name.strip_prefix(names::TAG_PREFIX) {
        keys.push(format!("{FILTER_PREFIX}{container}"));
    }
    keys
}

/// The key prefixes a container's tag policy is read under, in precedence order (the container name
/// follows): `<prefix>tag.` for each of [`PREFIXES`], then `filter.fluxcd.io/`.
pub fn tag_key_prefixes() -> Vec<String> {
    PREFIXES
        .iter()
        .map(|p| format!("{p}{}", names::TAG_PREFIX))
        .chain(std::iter::once(FILTER_PREFIX.to_owned()))
        .collect()
}

/// Looks `name` up under every key it is read under ([`keys`]), tether's first; returns the value.
pub fn get<'a>(annotations: Annotations<'a>, name: &str) -> Option<&'a str> {
    keys(name).iter().find_map(|k| annotations.get(k))
}

/// True only for the exact string `"true"`, as in Flux v1.
pub fn is_true(annotations: Annotations<'_>, name: &str) -> bool {
    get(annotations, name) == Some("true")
}

/// The prefix to write new policies under: the one the object already uses, else tether's own.
pub fn prefix_in_use(annotations: Annotations<'_>) -> &'static str {
    PREFIXES
        .iter()
        .copied()
        .find(|p| annotations.keys().any(|k| k.starts_with(p)))
        .unwrap_or(TETHER_PREFIX)
}

/// The `ignore` policy of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignore {
    /// Applied and garbage-collected normally.
    No,
    /// `ignore: "true"`: never applied, never deleted.
    Always,
    /// `ignore: "sync_only"`: applied, but never garbage-collected.
    SyncOnly,
}

impl Ignore {
    /// Reads the `ignore` policy.
    pub fn of(annotations: Annotations<'_>) -> Self {
        match get(annotations, names::IGNORE) {
            Some("true") => Ignore::Always,
            Some("sync_only") => Ignore::SyncOnly,
            _ => Ignore::No,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(annotations: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"annotations": annotations}})
    }

    #[test]
    fn reads_flux_v1_prefixes_and_tethers_own() {
        for key in [
            "tether.dev/ignore",
            "fluxcd.io/ignore",
            "flux.weave.works/ignore",
        ] {
            let o = obj(json!({ key: "true" }));
            assert_eq!(Ignore::of(Annotations::of(&o)), Ignore::Always, "{key}");
        }
        let o = obj(json!({"fluxcd.io/ignore": "sync_only"}));
        assert_eq!(Ignore::of(Annotations::of(&o)), Ignore::SyncOnly);
        let o = obj(json!({"fluxcd.io/ignore": "yes"}));
        assert_eq!(Ignore::of(Annotations::of(&o)), Ignore::No);
    }

    #[test]
    fn only_the_exact_string_true_is_true() {
        let o = obj(json!({"fluxcd.io/automated": "True"}));
        assert!(!is_true(Annotations::of(&o), names::AUTOMATED));
        let o = obj(json!({"flux.weave.works/automated": "true"}));
        assert!(is_true(Annotations::of(&o), names::AUTOMATED));
    }

    #[test]
    fn tag_policies_are_also_read_under_fluxs_filter_spelling_after_the_prefixes() {
        assert_eq!(
            keys("tag.web"),
            [
                "tether.dev/tag.web",
                "fluxcd.io/tag.web",
                "flux.weave.works/tag.web",
                "filter.fluxcd.io/web"
            ]
        );
        assert_eq!(keys("locked").len(), 3);
        let o = obj(json!({"filter.fluxcd.io/web": "semver:^2", "fluxcd.io/tag.api": "glob:*"}));
        assert_eq!(get(Annotations::of(&o), "tag.web"), Some("semver:^2"));
        assert_eq!(tag_key_prefixes()[3], FILTER_PREFIX);
    }

    #[test]
    fn writes_under_the_prefix_the_object_already_uses() {
        let o = obj(json!({"flux.weave.works/automated": "true"}));
        assert_eq!(prefix_in_use(Annotations::of(&o)), "flux.weave.works/");
        let o = json!({"metadata": {}});
        assert_eq!(prefix_in_use(Annotations::of(&o)), TETHER_PREFIX);
    }
}
