//! Writing image updates into a checked-out tree: one verified, format-preserving edit per container.

use std::collections::BTreeMap;
use std::path::Path;

use tether_core::ObjectId;

use crate::yaml_edit::{set_image, EditError, Target};

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

/// An update could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why the file system refused.
        #[source]
        source: std::io::Error,
    },
    /// The edit was refused (the workload moved, or its YAML cannot be edited safely in place).
    #[error("{file}: {source}")]
    Edit {
        /// The file.
        file: String,
        /// Why the editor refused.
        #[source]
        source: EditError,
    },
}

/// Writes `updates` into the files under `root`; each file is read and written once. Returns the updates
/// that changed a file (an update whose image is already set is dropped).
///
/// # Errors
/// The first file that cannot be edited; files are only written after all their edits succeeded, so a
/// failure never leaves a half-edited file.
pub fn write_updates(
    root: &Path,
    updates: &[ImageUpdate],
    default_namespace: &str,
) -> Result<Vec<ImageUpdate>, UpdateError> {
    let mut by_file: BTreeMap<&str, Vec<&ImageUpdate>> = BTreeMap::new();
    for u in updates {
        by_file.entry(u.file.as_str()).or_default().push(u);
    }
    let mut staged = Vec::new();
    let mut applied = Vec::new();
    for (file, ups) in by_file {
        let path = root.join(file);
        let io = |source| UpdateError::Io {
            file: file.to_owned(),
            source,
        };
        let original = std::fs::read_to_string(&path).map_err(io)?;
        let mut text = original.clone();
        for u in ups {
            let target = Target::new(u.workload.clone()).with_default_namespace(default_namespace);
            let edited = set_image(&text, &target, &u.container, &u.to).map_err(|source| {
                UpdateError::Edit {
                    file: file.to_owned(),
                    source,
                }
            })?;
            if edited != text {
                applied.push(u.clone());
                text = edited;
            }
        }
        if text != original {
            staged.push((path, text));
        }
    }
    for (path, text) in staged {
        std::fs::write(&path, text).map_err(|source| UpdateError::Io {
            file: path.display().to_string(),
            source,
        })?;
    }
    Ok(applied)
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

    #[test]
    fn edits_every_container_of_a_file_in_place_and_reports_only_real_changes() {
        let dir = tempfile::tempdir().unwrap();
        let text = "# keep me\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: r/a:1.0 # pinned\n      - name: b\n        image: \"r/b:2.0\"\n";
        std::fs::write(dir.path().join("w.yaml"), text).unwrap();
        let applied = write_updates(
            dir.path(),
            &[
                update("w.yaml", "a", "r/a:1.1"),
                update("w.yaml", "b", "r/b:2.0"),
            ],
            "default",
        )
        .unwrap();
        assert_eq!(applied.len(), 1);
        let after = std::fs::read_to_string(dir.path().join("w.yaml")).unwrap();
        assert_eq!(after, text.replace("r/a:1.0", "r/a:1.1"));
    }

    #[test]
    fn a_failing_edit_leaves_the_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: r/a:1.0\n";
        std::fs::write(dir.path().join("w.yaml"), text).unwrap();
        let err = write_updates(
            dir.path(),
            &[
                update("w.yaml", "a", "r/a:1.1"),
                update("w.yaml", "missing", "x:1"),
            ],
            "default",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("w.yaml: "), "{err}");
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
