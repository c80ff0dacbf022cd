//! Git source for tether: keeps one local clone per source, fetches incrementally, checks out revisions,
//! moves the sync tag and pushes commits, and turns git's failures into errors a person can act on.
//!
//! Why the `git` CLI rather than libgit2 or gitoxide: it is the one implementation that fetches *and* pushes
//! over SSH with OpenSSH's own known_hosts checking, speaks protocol v2, and needs no C build; Argo CD makes
//! the same choice. Every invocation runs with an isolated configuration, no terminal prompts and a timeout.

mod error;
mod git;
pub mod identity;
mod url;

pub use error::{Error, Result};
pub use git::{Auth, CommitInfo, GitConfig, Repo, Worktree};
pub use url::{redact, GitUrl};
