//! Changes a person asks for — lock, unlock, automate, deautomate, tag policies — written where the user
//! keeps the workload ([`crate::writeback`]) and committed with Flux v1's messages, pushed like automation's
//! commits: on the branch head, redone when the branch moved, never forced.

use std::path::Path;

use tether_core::policy::names;
use tether_core::ObjectId;
use tether_source::Repo;

use crate::run::Error;
pub use crate::writeback::Paths;
use crate::writeback::{self, Change, Tree};

/// How many times a commit is redone on a branch that moved before giving up.
pub(crate) const PUSH_ATTEMPTS: usize = 5;

/// A policy change to one workload, as the CLI asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyUpdate {
    /// `locked: "true"`, with who and why when given.
    Lock {
        /// Why (`locked_msg`).
        message: Option<String>,
        /// Who (`locked_user`).
        user: Option<String>,
    },
    /// Removes the lock and its reason.
    Unlock,
    /// `automated: "true"`.
    Automate,
    /// Removes `automated`.
    Deautomate,
    /// `tag.<container>: <pattern>`.
    Tag {
        /// The container.
        container: String,
        /// e.g. `semver:~1.4`; `*`/`glob:*` removes the filter, as in fluxctl.
        pattern: String,
    },
}

impl PolicyUpdate {
    /// The edits this update makes to annotations.
    pub fn changes(&self) -> Vec<Change> {
        let set = |name: &str, value: &str| Change::SetPolicy {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        let remove = |name: &str| Change::RemovePolicy {
            name: name.to_owned(),
        };
        match self {
            PolicyUpdate::Lock { message, user } => {
                let mut c = vec![set(names::LOCKED, "true")];
                c.extend(message.as_deref().map(|m| set(names::LOCKED_MSG, m)));
                c.extend(user.as_deref().map(|u| set(names::LOCKED_USER, u)));
                c
            }
            PolicyUpdate::Unlock => vec![
                remove(names::LOCKED),
                remove(names::LOCKED_MSG),
                remove(names::LOCKED_USER),
            ],
            PolicyUpdate::Automate => vec![set(names::AUTOMATED, "true")],
            PolicyUpdate::Deautomate => vec![remove(names::AUTOMATED)],
            PolicyUpdate::Tag { container, pattern } => {
                let name = format!("{}{container}", names::TAG_PREFIX);
                if matches!(pattern.as_str(), "*" | "glob:*") {
                    vec![remove(&name)]
                } else {
                    vec![set(&name, pattern)]
                }
            }
        }
    }
}

/// Flux v1's commit subject for `updates` of `workload`: `Locked: ns:kind/name`, ..., `Updated policies: …`.
pub fn subject(workload: &ObjectId, updates: &[PolicyUpdate]) -> String {
    match updates {
        [PolicyUpdate::Lock { .. }] => format!("Locked: {workload}"),
        [PolicyUpdate::Unlock] => format!("Unlocked: {workload}"),
        [PolicyUpdate::Automate] => format!("Automated: {workload}"),
        [PolicyUpdate::Deautomate] => format!("Deautomated: {workload}"),
        _ => format!("Updated policies: {workload}"),
    }
}

/// Who asked for a change and why, for its commit message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    /// The person's message (fluxctl's `--message`).
    pub message: Option<&'a str>,
    /// Who they say they are (fluxctl's `--user`): their word only.
    pub user: Option<&'a str>,
    /// Who the cluster says they are (the API's TokenReview): what a reader of the history can trust.
    pub authenticated: Option<&'a str>,
}

/// The full commit message: the subject, then the person's message, and trailers naming who asked (as
/// they say) and who was authenticated (as the cluster says); the latter last, where a message cannot
/// put a line after it.
pub fn commit_message(subject: &str, asked: Asked<'_>) -> String {
    let mut out = subject.to_owned();
    if let Some(m) = asked.message.filter(|m| !m.trim().is_empty()) {
        out.push_str("\n\n");
        out.push_str(m.trim());
    }
    let mut trailers = Vec::new();
    if let Some(u) = asked.user.filter(|u| !u.trim().is_empty()) {
        trailers.push(format!("Requested-by: {}", u.trim()));
    }
    if let Some(u) = asked.authenticated.filter(|u| !u.trim().is_empty()) {
        trailers.push(format!("Authenticated-by: {}", u.trim()));
    }
    if !trailers.is_empty() {
        out.push_str("\n\n");
        out.push_str(&trailers.join("\n"));
    }
    out
}

/// Writes `changes` to `workload` on the branch head, commits with `message` and pushes. Returns the commit,
/// or `None` when the workload already was so.
pub async fn commit(
    repo: &Repo,
    at: Paths<'_>,
    workload: &ObjectId,
    changes: &[Change],
    message: &str,
) -> Result<Option<String>, Error> {
    let done = edit_and_push(repo, "policy", |root| {
        let tree = Tree { root, at };
        let mut written = writeback::write(&tree, &[(workload.clone(), changes.to_vec())])?;
        if let Some((_, e)) = written.refused.pop() {
            return Err(e.into());
        }
        Ok((!written.applied.is_empty()).then(|| ((), message.to_owned(), written.files)))
    })
    .await?;
    Ok(done.map(|(_, commit)| commit))
}

/// Applies `updates` to `workload` on the branch head and pushes one commit with Flux v1's subject and
/// `message`/`user` in its body. A tag filter with an empty container name means every container of the
/// workload, read from the rendered head. Returns the subject and the commit (`None`: nothing to change).
pub async fn apply_policy(
    repo: &Repo,
    at: Paths<'_>,
    workload: &ObjectId,
    updates: &[PolicyUpdate],
    asked: Asked<'_>,
) -> Result<(String, Option<String>), Error> {
    let refuse = |reason: String| {
        Error::Update(writeback::WriteError::Refused {
            workload: workload.to_string(),
            reason,
        })
    };
    check(updates, asked.message, asked.user).map_err(refuse)?;
    // Tag filters are checked against the workload's containers in Git: an annotation for a container
    // that does not exist would be a silent no-op (or, with an odd name, a key the API server refuses).
    let containers: Vec<String> = if updates
        .iter()
        .any(|u| matches!(u, PolicyUpdate::Tag { .. }))
    {
        let head = tether_render::Snapshot::head(repo, at.paths, at.renderer).await?;
        crate::workloads(&head.resources, at.default_namespace)
            .into_iter()
            .find(|w| workload.matches(&w.id))
            .ok_or_else(|| writeback::WriteError::NoWorkload(workload.to_string()))?
            .containers
            .into_iter()
            .map(|c| c.name)
            .collect()
    } else {
        Vec::new()
    };
    let mut changes = Vec::new();
    for u in updates {
        match u {
            PolicyUpdate::Tag { container, .. }
                if !container.is_empty() && !containers.contains(container) =>
            {
                return Err(refuse(format!(
                    "has no container {container:?} (its containers: {})",
                    containers.join(", ")
                )));
            }
            PolicyUpdate::Tag { container, pattern } if container.is_empty() => {
                for c in &containers {
                    changes.extend(
                        PolicyUpdate::Tag {
                            container: c.clone(),
                            pattern: pattern.clone(),
                        }
                        .changes(),
                    );
                }
            }
            u => changes.extend(u.changes()),
        }
    }
    let subject = subject(workload, updates);
    let full = commit_message(&subject, asked);
    let commit = commit(repo, at, workload, &changes, &full).await?;
    Ok((subject, commit))
}

/// The longest lock message and user name written into annotations (the API server refuses an object whose
/// annotations pass 256 KiB, which would stop every sync of the repository).
pub const MAX_MESSAGE: usize = 1024;
/// The longest user name.
pub const MAX_USER: usize = 256;

/// Refuses input that would write an annotation the API server rejects or that is not what was meant: an
/// overlong message or user, a user with control characters, a tag pattern that does not parse.
pub fn check(
    updates: &[PolicyUpdate],
    message: Option<&str>,
    user: Option<&str>,
) -> Result<(), String> {
    if message.is_some_and(|m| m.len() > MAX_MESSAGE) {
        return Err(format!("the message is longer than {MAX_MESSAGE} bytes"));
    }
    if let Some(u) = user {
        if u.len() > MAX_USER || u.chars().any(char::is_control) {
            return Err(format!(
                "the user must be at most {MAX_USER} bytes without control characters"
            ));
        }
    }
    for u in updates {
        if let PolicyUpdate::Tag { pattern, .. } = u {
            if !matches!(pattern.as_str(), "*" | "glob:*") {
                tether_registry::TagPolicy::parse(pattern)
                    .map_err(|e| format!("tag filter {pattern:?}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Makes a change in a fresh worktree of the branch head with `edit` (which returns what it did, the commit
/// message and the files it changed, or `None` for nothing to do), commits exactly those files (not what a
/// generator may have left behind) and pushes; redoes it on the new head when the branch moved meanwhile.
pub(crate) async fn edit_and_push<T>(
    repo: &Repo,
    worktree: &str,
    mut edit: impl FnMut(&Path) -> Result<Option<(T, String, Vec<String>)>, Error>,
) -> Result<Option<(T, String)>, Error> {
    for _ in 0..PUSH_ATTEMPTS {
        let head = repo.fetch().await?;
        let wt = repo.worktree(worktree, &head).await?;
        let Some((done, message, files)) = edit(wt.path())? else {
            return Ok(None);
        };
        let Some(commit) = wt.commit_files(&message, &files).await? else {
            return Ok(None);
        };
        match wt.push().await {
            Ok(()) => return Ok(Some((done, commit))),
            Err(tether_source::Error::Rejected { .. }) => {
                tracing::info!(
                    component = "automation",
                    "the branch moved while pushing; redoing the change on the new head"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ObjectId {
        ObjectId::new("apps/v1", "Deployment", Some("demo"), "echov")
    }

    #[test]
    fn oversize_messages_control_characters_and_bad_patterns_are_refused() {
        let tag = |p: &str| PolicyUpdate::Tag {
            container: "web".into(),
            pattern: p.into(),
        };
        assert!(check(&[tag("semver:~1.4")], Some("incident 42"), Some("alice")).is_ok());
        assert!(check(&[tag("*")], None, None).is_ok());
        assert!(check(&[tag("semver:not a range")], None, None).is_err());
        assert!(check(&[], Some(&"x".repeat(MAX_MESSAGE + 1)), None).is_err());
        assert!(check(&[], None, Some("al\nice")).is_err());
    }

    #[test]
    fn commit_messages_follow_flux_v1() {
        let lock = PolicyUpdate::Lock {
            message: Some("incident 42".into()),
            user: Some("alice".into()),
        };
        assert_eq!(
            subject(&id(), std::slice::from_ref(&lock)),
            "Locked: demo:deployment/echov"
        );
        assert_eq!(
            subject(&id(), &[PolicyUpdate::Unlock]),
            "Unlocked: demo:deployment/echov"
        );
        assert_eq!(
            subject(&id(), &[PolicyUpdate::Automate, lock]),
            "Updated policies: demo:deployment/echov"
        );
        let asked = Asked {
            message: Some("incident 42"),
            user: Some("alice"),
            authenticated: None,
        };
        assert_eq!(
            commit_message("Locked: demo:deployment/echov", asked),
            "Locked: demo:deployment/echov\n\nincident 42\n\nRequested-by: alice"
        );
        // Through the API: who the cluster says asked comes last, after anything the caller wrote.
        let asked = Asked {
            message: Some("fix\n\nAuthenticated-by: admin"),
            authenticated: Some("system:serviceaccount:ci:deployer"),
            ..asked
        };
        let full = commit_message("S", asked);
        assert_eq!(
            full.lines().last(),
            Some("Authenticated-by: system:serviceaccount:ci:deployer"),
            "{full}"
        );
        assert_eq!(
            commit_message(
                "S",
                Asked {
                    message: Some(" "),
                    ..Asked::default()
                }
            ),
            "S"
        );
    }

    #[test]
    fn a_lock_records_who_and_why_and_an_unlock_removes_all_three() {
        let lock = PolicyUpdate::Lock {
            message: Some("incident 42".into()),
            user: Some("alice".into()),
        };
        let names: Vec<String> = lock
            .changes()
            .iter()
            .map(|c| match c {
                Change::SetPolicy { name, value } => format!("{name}={value}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            ["locked=true", "locked_msg=incident 42", "locked_user=alice"]
        );
        assert_eq!(PolicyUpdate::Unlock.changes().len(), 3);
        let any = PolicyUpdate::Tag {
            container: "web".into(),
            pattern: "glob:*".into(),
        };
        assert_eq!(
            any.changes(),
            [Change::RemovePolicy {
                name: "tag.web".into()
            }]
        );
    }
}
