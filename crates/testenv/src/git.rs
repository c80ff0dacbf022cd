//! Git repositories for tests: a bare "remote" plus a working clone that tests commit into with real git.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

/// A bare repository (the remote tether syncs from) and a clone used to author commits.
#[derive(Debug)]
pub struct GitRepo {
    /// The bare repository; `file://` URLs and SSH URLs point here.
    pub bare: PathBuf,
    /// The authoring clone.
    pub work: PathBuf,
    /// The branch commits go to.
    pub branch: String,
    _dir: tempfile::TempDir,
}

impl GitRepo {
    /// An empty repository whose default branch is `main`.
    pub fn new() -> Self {
        Self::with_branch("main")
    }

    /// An empty repository whose first branch is `branch`.
    pub fn with_branch(branch: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tether-git-")
            .tempdir()
            .expect("temp dir");
        let bare = dir.path().join("remote.git");
        let work = dir.path().join("work");
        run(git(dir.path())
            .args(["init", "-q", "--bare", "-b", branch])
            .arg(&bare));
        run(git(dir.path())
            .args(["init", "-q", "-b", branch])
            .arg(&work));
        run(git(&work).args(["remote", "add", "origin"]).arg(&bare));
        GitRepo {
            bare,
            work,
            branch: branch.to_owned(),
            _dir: dir,
        }
    }

    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Writes files (path relative to the repo root, content) in the authoring clone.
    pub fn write(&self, files: &[(&str, &str)]) -> &Self {
        for (path, content) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().expect("file has a parent")).expect("mkdir");
            std::fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        }
        self
    }

    /// Removes a file or directory from the authoring clone.
    pub fn remove(&self, path: &str) -> &Self {
        run(git(&self.work).args(["rm", "-r", "-q", path]));
        self
    }

    /// Commits everything and pushes to the bare repository; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        run(git(&self.work).args(["add", "-A"]));
        run(git(&self.work).args(["commit", "-q", "--allow-empty", "-m", message]));
        run(git(&self.work)
            .args(["push", "-q", "origin"])
            .arg(format!("HEAD:{}", self.branch)));
        self.head()
    }

    /// The commit id the branch points to in the bare repository.
    pub fn head(&self) -> String {
        self.rev_parse(&format!("refs/heads/{}", self.branch))
            .expect("branch exists")
    }

    /// Resolves a ref in the bare repository (e.g. `refs/tags/tether-sync^{commit}`), if it exists.
    pub fn rev_parse(&self, rev: &str) -> Option<String> {
        let out = git(&self.bare)
            .args(["rev-parse", "--verify", "-q", rev])
            .output()
            .expect("git rev-parse");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// `git -C dir` with a fixed identity and no user or system config, so tests behave the same everywhere.
pub fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com");
    cmd
}
