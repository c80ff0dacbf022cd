//! Releases a person asks for (`tether release`): which workloads and containers change to which image,
//! decided from Git alone, and the commit that writes it. Flux v1's rules: a locked workload is left alone
//! unless forced, an ignored one always, and an image its tag filter does not allow needs `--force`.

use tether_core::ObjectId;
use tether_registry::ImageRef;
use tether_source::Repo;

use crate::run::Error;
use crate::update::{write_updates, ImageUpdate};
use crate::workload::Workload;
use crate::writeback::{Paths, Tree, WriteError};

/// Which workloads a release considers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every workload Git defines.
    All,
    /// These (`ns:kind/name`, group optional).
    Only(Vec<ObjectId>),
}

/// What a release asks for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The workloads.
    pub targets: Targets,
    /// Left out.
    pub exclude: Vec<ObjectId>,
    /// Release locked workloads and images their filter does not allow.
    pub force: bool,
}

/// A workload or container left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// The workload.
    pub workload: ObjectId,
    /// The container, when only it is concerned.
    pub container: Option<String>,
    /// Why.
    pub reason: String,
}

/// The workloads `request` covers, and those it leaves alone with why. A named workload Git does not
/// define is an error, naming it: a typo must not release nothing silently.
pub fn select<'a>(
    workloads: &'a [Workload],
    request: &Request,
) -> Result<(Vec<&'a Workload>, Vec<Skip>), String> {
    if let Targets::Only(ids) = &request.targets {
        for id in ids {
            if !workloads.iter().any(|w| id.matches(&w.id)) {
                return Err(format!(
                    "{id} is not defined under the synced paths (list them with `tether list-workloads`)"
                ));
            }
        }
    }
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    for w in workloads {
        let named = match &request.targets {
            Targets::All => true,
            Targets::Only(ids) => ids.iter().any(|id| id.matches(&w.id)),
        };
        if !named || request.exclude.iter().any(|x| x.matches(&w.id)) {
            continue;
        }
        let skip = |reason: &str| Skip {
            workload: w.id.clone(),
            container: None,
            reason: reason.to_owned(),
        };
        if w.ignored() {
            skipped.push(skip("ignored (policy ignore: true)"));
        } else if w.locked() && !request.force {
            skipped.push(skip("locked (release it with --force, or unlock it first)"));
        } else {
            chosen.push(w);
        }
    }
    Ok((chosen, skipped))
}

/// Every container of `workloads` running `image`'s repository moves to `image`. A tag its filter does not
/// allow is skipped unless `force`.
pub fn set_image(
    workloads: &[&Workload],
    image: &str,
    force: bool,
) -> Result<(Vec<ImageUpdate>, Vec<Skip>), String> {
    let wanted = ImageRef::parse(image).map_err(|e| format!("--update-image {image}: {e}"))?;
    let Some(tag) = wanted.tag.clone() else {
        return Err(format!(
            "--update-image {image}: give the tag to release, e.g. {image}:1.2.3"
        ));
    };
    let mut updates = Vec::new();
    let mut skipped = Vec::new();
    for w in workloads {
        for c in &w.containers {
            let Ok(current) = ImageRef::parse(&c.image) else {
                continue;
            };
            if current.repo != wanted.repo {
                continue;
            }
            if current.tag.as_deref() == Some(tag.as_str()) && current.digest.is_none() {
                continue;
            }
            if !force {
                match w.policy(&c.name) {
                    Ok(p) if !p.matches(&tag) => {
                        skipped.push(Skip {
                            workload: w.id.clone(),
                            container: Some(c.name.clone()),
                            reason: format!(
                                "tag {tag} is not allowed by its filter {p} (release it with --force)"
                            ),
                        });
                        continue;
                    }
                    Err(e) => {
                        skipped.push(Skip {
                            workload: w.id.clone(),
                            container: Some(c.name.clone()),
                            reason: e.to_string(),
                        });
                        continue;
                    }
                    Ok(_) => {}
                }
            }
            updates.push(ImageUpdate {
                workload: w.id.clone(),
                file: w.source.file.clone(),
                container: c.name.clone(),
                from: c.image.clone(),
                to: crate::run::retag(&c.image, &tag),
            });
        }
    }
    Ok((updates, skipped))
}

/// Flux v1's release subject: `Release <image> to <workloads>`, or `Release latest images to <workloads>`.
pub fn subject(image: Option<&str>, updates: &[ImageUpdate]) -> String {
    let mut ids: Vec<String> = updates.iter().map(|u| u.workload.to_string()).collect();
    ids.sort();
    ids.dedup();
    let to = if ids.is_empty() {
        "no workloads".to_owned()
    } else {
        ids.join(", ")
    };
    match image {
        Some(i) => format!("Release {i} to {to}"),
        None => format!("Release latest images to {to}"),
    }
}

/// What [`commit`] did.
#[derive(Debug, Default)]
pub struct Committed {
    /// The updates written (one already in place is dropped).
    pub applied: Vec<ImageUpdate>,
    /// The pushed commit; `None` when nothing changed.
    pub commit: Option<String>,
    /// Workloads that could not be written, and why.
    pub refused: Vec<(ObjectId, WriteError)>,
}

/// Writes `updates` on the branch head where each image is kept, commits with the message `message` makes
/// of what was written, and pushes; redone on a moved branch, never forced.
pub async fn commit(
    repo: &Repo,
    at: Paths<'_>,
    updates: &[ImageUpdate],
    message: impl Fn(&[ImageUpdate]) -> String,
) -> Result<Committed, Error> {
    let mut refused = Vec::new();
    let done = crate::change::edit_and_push(repo, "release", |root| {
        let tree = Tree { root, at };
        let applied = write_updates(&tree, updates)?;
        refused = applied.refused;
        Ok((!applied.updates.is_empty()).then(|| {
            let m = message(&applied.updates);
            (applied.updates, m, applied.files)
        }))
    })
    .await?;
    Ok(match done {
        Some((applied, commit)) => Committed {
            applied,
            commit: Some(commit),
            refused,
        },
        None => Committed {
            refused,
            ..Committed::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::{Provenance, Resource};

    fn workloads(yaml: &[(&str, &str)]) -> Vec<Workload> {
        let resources: Vec<Resource> = yaml
            .iter()
            .map(|(name, annotations)| Resource {
                object: serde_json::json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": "demo",
                        "annotations": serde_json::from_str::<serde_json::Value>(annotations).unwrap()},
                    "spec": {"template": {"spec": {"containers": [
                        {"name": "web", "image": "registry.example/team/web:1.0.0"},
                        {"name": "side", "image": "busybox:1"}
                    ]}}}
                }),
                source: Provenance {
                    file: format!("{name}.yaml"),
                    line: 1,
                },
            })
            .collect();
        crate::workload::workloads(&resources, "default")
    }

    fn id(s: &str) -> ObjectId {
        ObjectId::parse(s).unwrap()
    }

    #[test]
    fn locked_workloads_are_skipped_unless_forced_and_ignored_ones_always() {
        let ws = workloads(&[
            ("a", "{}"),
            ("b", r#"{"fluxcd.io/locked": "true"}"#),
            ("c", r#"{"fluxcd.io/ignore": "true"}"#),
        ]);
        let mut req = Request {
            targets: Targets::All,
            exclude: vec![],
            force: false,
        };
        let (chosen, skipped) = select(&ws, &req).unwrap();
        assert_eq!(chosen.len(), 1);
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].reason.contains("locked"), "{skipped:?}");
        req.force = true;
        let (chosen, skipped) = select(&ws, &req).unwrap();
        assert_eq!(chosen.len(), 2);
        assert_eq!(skipped.len(), 1);
        req.exclude = vec![id("demo:deployment/a")];
        assert_eq!(select(&ws, &req).unwrap().0.len(), 1);
    }

    #[test]
    fn a_named_workload_git_does_not_define_is_an_error_naming_it() {
        let ws = workloads(&[("a", "{}")]);
        let req = Request {
            targets: Targets::Only(vec![id("demo:deployment/typo")]),
            exclude: vec![],
            force: false,
        };
        let e = select(&ws, &req).unwrap_err();
        assert!(e.contains("demo:deployment/typo"), "{e}");
    }

    #[test]
    fn an_image_moves_only_containers_of_its_repository_within_their_filter() {
        let ws = workloads(&[
            ("a", "{}"),
            ("b", r#"{"fluxcd.io/tag.web": "semver:~1.0"}"#),
        ]);
        let refs: Vec<&Workload> = ws.iter().collect();
        let (updates, skipped) =
            set_image(&refs, "registry.example/team/web:2.0.0", false).unwrap();
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert!(id("demo:deployment/a").matches(&updates[0].workload));
        assert_eq!(updates[0].to, "registry.example/team/web:2.0.0");
        assert!(skipped[0].reason.contains("semver:~1.0"), "{skipped:?}");
        let (forced, _) = set_image(&refs, "registry.example/team/web:2.0.0", true).unwrap();
        assert_eq!(forced.len(), 2);
        assert!(set_image(&refs, "registry.example/team/web", false).is_err());
        assert_eq!(
            subject(Some("web:2.0.0"), &forced),
            "Release web:2.0.0 to demo:deployment/a, demo:deployment/b"
        );
    }
}
