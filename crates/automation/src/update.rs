//! Image updates: what automation found, written into a checked-out tree where the user keeps each image.

use std::collections::BTreeMap;

use tether_core::ObjectId;

use crate::writeback::{self, Change, Tree, WriteError};

/// One container's new image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUpdate {
    /// The workload.
    pub workload: ObjectId,
    /// The file (repository-relative) that defines it.
    pub file: String,
    /// The container.
    pub container: String,
    /// The image in Git now.
    pub from: String,
    /// The image to set.
    pub to: String,
}

/// What [`write_updates`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The updates that changed something (an update whose image is already set is dropped).
    pub updates: Vec<ImageUpdate>,
    /// The files changed.
    pub files: Vec<String>,
    /// Workloads whose updates were not written, and why; their files are as they were.
    pub refused: Vec<(ObjectId, WriteError)>,
}

/// Writes `updates` into the checked-out tree, each where the user keeps the image ([`writeback`]).
///
/// # Errors
/// The tree does not render; a workload that cannot be written is in [`Applied::refused`] instead.
pub fn write_updates(tree: &Tree<'_>, updates: &[ImageUpdate]) -> Result<Applied, WriteError> {
    let mut by_workload: BTreeMap<&ObjectId, Vec<Change>> = BTreeMap::new();
    for u in updates {
        by_workload
            .entry(&u.workload)
            .or_default()
            .push(Change::Image {
                container: u.container.clone(),
                image: u.to.clone(),
            });
    }
    let changes: Vec<(ObjectId, Vec<Change>)> = by_workload
        .into_iter()
        .map(|(id, c)| (id.clone(), c))
        .collect();
    let written = writeback::write(tree, &changes)?;
    let updates = updates
        .iter()
        .filter(|u| {
            written.applied.iter().any(|(id, c)| {
                id == &u.workload
                    && matches!(c, Change::Image { container, image } if container == &u.container && image == &u.to)
            })
        })
        .cloned()
        .collect();
    Ok(Applied {
        updates,
        files: written.files,
        refused: written.refused,
    })
}

/// Flux v1's commit messages: `Auto-release <image>`, or `Auto-release multiple (N) images` with a list.
pub fn commit_message(updates: &[ImageUpdate]) -> String {
    let mut images: Vec<&str> = updates.iter().map(|u| u.to.as_str()).collect();
    images.sort();
    images.dedup();
    match images.as_slice() {
        [one] => format!("Auto-release {one}"),
        many => {
            let list: String = many.iter().map(|i| format!("\n - {i}")).collect();
            format!("Auto-release multiple ({}) images\n{list}", many.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(file: &str, container: &str, to: &str) -> ImageUpdate {
        ImageUpdate {
            workload: ObjectId::new("apps/v1", "Deployment", Some("demo"), "web"),
            file: file.into(),
            container: container.into(),
            from: String::new(),
            to: to.into(),
        }
    }

    fn tree_of<'a>(root: &'a std::path::Path, renderer: &'a tether_render::Renderer) -> Tree<'a> {
        Tree {
            root,
            at: crate::writeback::Paths {
                paths: &[],
                renderer,
                default_namespace: "default",
            },
        }
    }

    #[test]
    fn edits_every_container_of_a_file_in_place_and_reports_only_real_changes() {
        let dir = tempfile::tempdir().unwrap();
        let text = "# keep me\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: r/a:1.0 # pinned\n      - name: b\n        image: \"r/b:2.0\"\n";
        std::fs::write(dir.path().join("w.yaml"), text).unwrap();
        let renderer = tether_render::Renderer::default();
        let applied = write_updates(
            &tree_of(dir.path(), &renderer),
            &[
                update("w.yaml", "a", "r/a:1.1"),
                update("w.yaml", "b", "r/b:2.0"),
            ],
        )
        .unwrap();
        assert_eq!(applied.updates.len(), 1);
        assert_eq!(applied.files, ["w.yaml"]);
        let after = std::fs::read_to_string(dir.path().join("w.yaml")).unwrap();
        assert_eq!(after, text.replace("r/a:1.0", "r/a:1.1"));
    }

    #[test]
    fn a_missing_container_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: r/a:1.0\n";
        std::fs::write(dir.path().join("w.yaml"), text).unwrap();
        let renderer = tether_render::Renderer::default();
        let applied = write_updates(
            &tree_of(dir.path(), &renderer),
            &[update("w.yaml", "missing", "x:1")],
        )
        .unwrap();
        assert!(applied.updates.is_empty());
        let err = applied.refused[0].1.to_string();
        assert!(err.starts_with("w.yaml: "), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("w.yaml")).unwrap(),
            text
        );
    }

    #[test]
    fn commit_messages_follow_flux() {
        assert_eq!(
            commit_message(&[update("f", "a", "r/a:1.1")]),
            "Auto-release r/a:1.1"
        );
        assert_eq!(
            commit_message(&[update("f", "a", "r/a:1.1"), update("g", "b", "r/b:2")]),
            "Auto-release multiple (2) images\n\n - r/a:1.1\n - r/b:2"
        );
    }
}
