//! A workload's tag policies, read from its annotations (`tag.<container>` under every prefix, and Flux v1's
//! `filter.fluxcd.io/<container>`; the keys are tether-core's) into the registry crate's [`TagPolicy`].

use std::collections::BTreeMap;

use serde_json::Value;
use tether_core::policy::tag_key_prefixes;
use tether_core::resource::Annotations;
use tether_registry::policy::{PolicyError, TagPolicy};

/// The tag policy of one container, read from a workload's annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPolicy {
    /// The container name.
    pub container: String,
    /// The annotation it was read from, e.g. `fluxcd.io/tag.web`.
    pub annotation: String,
    /// The policy, or why the annotation's value is unusable.
    pub policy: Result<TagPolicy, PolicyError>,
}

/// The tag policies of all containers that have one, sorted by container name. When one container has
/// policies under several spellings, the first in [`tag_key_prefixes`] order wins, like
/// `tether_core::policy::get`. Containers without an annotation are absent: they get the default policy.
pub fn container_policies(annotations: Annotations<'_>) -> Vec<ContainerPolicy> {
    let mut found: BTreeMap<String, ContainerPolicy> = BTreeMap::new();
    for prefix in tag_key_prefixes() {
        for key in annotations.keys() {
            let Some(container) = key.strip_prefix(prefix.as_str()) else {
                continue;
            };
            if container.is_empty() || found.contains_key(container) {
                continue;
            }
            found.insert(
                container.to_owned(),
                ContainerPolicy {
                    container: container.to_owned(),
                    annotation: key.to_owned(),
                    policy: read(annotations, key),
                },
            );
        }
    }
    found.into_values().collect()
}

/// The tag policy of `container`: its annotation if it has one, else `glob:*`.
pub fn policy_for(annotations: Annotations<'_>, container: &str) -> Result<TagPolicy, PolicyError> {
    tag_key_prefixes()
        .iter()
        .map(|p| format!("{p}{container}"))
        .find(|key| annotations.0.is_some_and(|m| m.contains_key(key)))
        .map_or_else(|| Ok(TagPolicy::default()), |key| read(annotations, &key))
}

fn read(annotations: Annotations<'_>, key: &str) -> Result<TagPolicy, PolicyError> {
    match annotations.0.and_then(|m| m.get(key)) {
        Some(Value::String(s)) => TagPolicy::parse(s),
        Some(other) => Err(PolicyError::NotAString {
            annotation: key.to_owned(),
            found: other.to_string(),
        }),
        None => Ok(TagPolicy::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(value: &str) -> TagPolicy {
        TagPolicy::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    // ---- reading annotations ------------------------------------------------------------------------------

    fn workload(annotations: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"name": "web", "annotations": annotations}})
    }

    #[test]
    fn reads_every_containers_policy_under_each_prefix() {
        let obj = workload(json!({
            "fluxcd.io/automated": "true",
            "fluxcd.io/tag.web": "semver:~1.4",
            "flux.weave.works/tag.sidecar": "glob:main-*",
            "filter.fluxcd.io/init": "regexp:^v",
            "tether.dev/tag.cache": "7.*",
            "fluxcd.io/tag.broken": "semver:1.x.y",
            "fluxcd.io/tag.number": 1.2,
        }));
        let found = container_policies(Annotations::of(&obj));
        let summary: Vec<(String, String, Result<String, String>)> = found
            .iter()
            .map(|c| {
                let policy = c
                    .policy
                    .as_ref()
                    .map(|p| p.to_string())
                    .map_err(|e| e.to_string());
                (c.container.clone(), c.annotation.clone(), policy)
            })
            .collect();
        assert_eq!(summary.len(), 6, "{summary:#?}");
        assert_eq!(summary[0].0, "broken");
        assert!(summary[0].2.as_ref().is_err_and(|e| e.contains("1.x.y")));
        assert_eq!(
            summary[1],
            (
                "cache".into(),
                "tether.dev/tag.cache".into(),
                Ok("glob:7.*".into())
            )
        );
        assert_eq!(
            summary[2],
            (
                "init".into(),
                "filter.fluxcd.io/init".into(),
                Ok("regexp:^v".into())
            )
        );
        assert_eq!(summary[3].0, "number");
        assert!(
            summary[3].2.as_ref().is_err_and(|e| e.contains("quote")),
            "{:?}",
            summary[3]
        );
        assert_eq!(
            summary[4],
            (
                "sidecar".into(),
                "flux.weave.works/tag.sidecar".into(),
                Ok("glob:main-*".into())
            )
        );
        assert_eq!(
            summary[5],
            (
                "web".into(),
                "fluxcd.io/tag.web".into(),
                Ok("semver:~1.4".into())
            )
        );
    }

    #[test]
    fn tethers_prefix_wins_over_fluxs_when_both_are_set() {
        let obj = workload(json!({
            "fluxcd.io/tag.web": "semver:~1.4",
            "tether.dev/tag.web": "semver:~2.0",
            "filter.fluxcd.io/web": "glob:*",
        }));
        let found = container_policies(Annotations::of(&obj));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].annotation, "tether.dev/tag.web");
        assert_eq!(
            policy_for(Annotations::of(&obj), "web"),
            Ok(p("semver:~2.0"))
        );
    }

    #[test]
    fn a_container_without_a_policy_gets_glob_star() {
        let obj = workload(json!({"fluxcd.io/tag.web": "semver:~1.4"}));
        assert_eq!(
            policy_for(Annotations::of(&obj), "sidecar"),
            Ok(TagPolicy::default())
        );
        let bare = json!({"metadata": {"name": "web"}});
        assert_eq!(
            policy_for(Annotations::of(&bare), "web"),
            Ok(TagPolicy::default())
        );
        assert!(container_policies(Annotations::of(&bare)).is_empty());
        let filter = workload(json!({"filter.fluxcd.io/web": "semver:^2"}));
        assert_eq!(
            policy_for(Annotations::of(&filter), "web"),
            Ok(p("semver:^2"))
        );
        let broken = workload(json!({"fluxcd.io/tag.web": "regexp:("}));
        assert!(policy_for(Annotations::of(&broken), "web").is_err());
    }
}
