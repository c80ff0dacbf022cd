//! Commands from a repository (`.flux.yaml` generators and updaters) run on a copy of the tree without its
//! `.git`: in the checkout they could rewrite the agent's own clone (its config, its hooks) and so run again
//! inside every later git command tether makes, with its credentials, long after the commit is reverted.
//! Each copy also gets an empty `HOME` of its own.

use std::path::Path;

use tempfile::TempDir;

/// A file commands changed (repository-relative) and what it held before (`None`: it is new).
pub type Changed = (String, Option<Vec<u8>>);

/// A copy of a checkout without `.git`, and a private `HOME`.
#[derive(Debug)]
pub(crate) struct Export {
    tree: TempDir,
    home: TempDir,
}

fn temp(prefix: &str) -> Result<TempDir, String> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("cannot make a working copy for the repository's commands: {e}"))
}

impl Export {
    /// Copies the tree at `root` (files, directories and links as links; not `.git`).
    pub fn of(root: &Path) -> Result<Export, String> {
        let tree = temp("tether-generate-")?;
        let home = temp("tether-home-")?;
        for entry in walkdir::WalkDir::new(root)
            .follow_links(false)
            .min_depth(1)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".git")
        {
            let entry = entry.map_err(|e| format!("cannot copy the tree: {e}"))?;
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            let to = tree.path().join(rel);
            let copied = if entry.path_is_symlink() {
                std::fs::read_link(entry.path())
                    .and_then(|target| std::os::unix::fs::symlink(target, &to))
            } else if entry.file_type().is_dir() {
                std::fs::create_dir_all(&to)
            } else if entry.file_type().is_file() {
                std::fs::copy(entry.path(), &to).map(drop)
            } else {
                Ok(()) // devices, pipes and sockets are not content
            };
            copied.map_err(|e| {
                format!(
                    "cannot copy {} for the repository's commands: {e}",
                    rel.display()
                )
            })?;
        }
        Ok(Export { tree, home })
    }

    /// The copy.
    pub fn path(&self) -> &Path {
        self.tree.path()
    }

    /// The private `HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Brings what the commands changed back into `root`: changed and new regular files are written, files
    /// they removed are removed. Links are neither followed nor created, and `.git` is never touched.
    /// Returns the changed files, repository-relative, each with what it held before (`None`: it was new).
    pub fn copy_back(&self, root: &Path) -> Result<Vec<Changed>, String> {
        let mut changed = Vec::new();
        let rel_of = |base: &Path, p: &Path| {
            p.strip_prefix(base)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        for entry in walkdir::WalkDir::new(self.path())
            .follow_links(false)
            .min_depth(1)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
        {
            let rel = rel_of(self.path(), entry.path());
            let to = root.join(&rel);
            if to.is_symlink() || rel.split('/').next() == Some(".git") {
                continue;
            }
            let new =
                std::fs::read(entry.path()).map_err(|e| format!("cannot read back {rel}: {e}"))?;
            let old = std::fs::read(&to).ok();
            if old.as_deref() == Some(new.as_slice()) {
                continue;
            }
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot write {rel}: {e}"))?;
            }
            std::fs::write(&to, new).map_err(|e| format!("cannot write {rel}: {e}"))?;
            changed.push((rel, old));
        }
        for entry in walkdir::WalkDir::new(root)
            .follow_links(false)
            .min_depth(1)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".git")
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
        {
            let rel = rel_of(root, entry.path());
            if !self.path().join(&rel).exists() {
                let old = std::fs::read(entry.path()).ok();
                std::fs::remove_file(entry.path())
                    .map_err(|e| format!("cannot remove {rel}: {e}"))?;
                changed.push((rel, old));
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_copy_has_no_git_and_changes_come_back_without_touching_git() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(".git")).unwrap();
        std::fs::write(root.path().join(".git/config"), "[core]\n").unwrap();
        std::fs::create_dir_all(root.path().join("app")).unwrap();
        std::fs::write(root.path().join("app/a.yaml"), "a: 1\n").unwrap();
        std::fs::write(root.path().join("app/gone.yaml"), "g: 1\n").unwrap();
        let export = Export::of(root.path()).unwrap();
        assert!(!export.path().join(".git").exists());
        std::fs::write(export.path().join("app/a.yaml"), "a: 2\n").unwrap();
        std::fs::write(export.path().join("app/new.yaml"), "n: 1\n").unwrap();
        std::fs::remove_file(export.path().join("app/gone.yaml")).unwrap();
        std::fs::create_dir_all(export.path().join(".git")).unwrap();
        std::fs::write(
            export.path().join(".git/config"),
            "[core]\n\tfsmonitor = evil\n",
        )
        .unwrap();
        let mut changed: Vec<String> = export
            .copy_back(root.path())
            .unwrap()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        changed.sort();
        assert_eq!(changed, ["app/a.yaml", "app/gone.yaml", "app/new.yaml"]);
        assert_eq!(
            std::fs::read_to_string(root.path().join("app/a.yaml")).unwrap(),
            "a: 2\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join(".git/config")).unwrap(),
            "[core]\n"
        );
    }
}
