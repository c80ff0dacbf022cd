//! Git failures, classified into what a person can act on. Raw git output is kept to one relevant line.
//! Messages say what happened; what to change in tether's configuration is the binary's to say, since only
//! it knows its flags.

use std::time::Duration;

/// Result of a git operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A git operation failed, classified by what fixes it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key authenticates but may not push (a read-only deploy key). Retrying does not help.
    #[error("the deploy key for {url} is read-only: the Git host refused to {op} ({detail})")]
    ReadOnly {
        /// Redacted URL.
        url: String,
        /// What was attempted (`push the sync tag`).
        op: String,
        /// The host's one-line reason.
        detail: String,
    },
    /// A push was refused because the branch moved since the last fetch (someone else pushed). Retry on the
    /// new head; never force.
    #[error("the push to {url} was rejected because the branch moved meanwhile ({detail})")]
    Rejected {
        /// Redacted URL.
        url: String,
        /// git's line.
        detail: String,
    },
    /// The server's SSH host key is unknown or changed. Never accepted automatically.
    #[error("the SSH host key of {url} is not trusted ({detail})")]
    HostKey {
        /// Redacted URL.
        url: String,
        /// ssh's reason.
        detail: String,
    },
    /// The server refused the credentials.
    #[error("{url} refused tether's credentials ({detail})")]
    Auth {
        /// Redacted URL.
        url: String,
        /// The server's reason.
        detail: String,
    },
    /// The configured branch does not exist.
    #[error("branch '{branch}' does not exist in {url}")]
    NoBranch {
        /// Redacted URL.
        url: String,
        /// The branch.
        branch: String,
    },
    /// The repository could not be reached; retried with backoff.
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// Redacted URL.
        url: String,
        /// The reason.
        detail: String,
    },
    /// A git command ran past its time limit; retried with backoff.
    #[error("git {op} for {url} did not finish within {timeout:?}")]
    Timeout {
        /// The git subcommand.
        op: String,
        /// Redacted URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// Any other git failure, with git's most relevant line.
    #[error("git {op} failed for {url}: {detail}")]
    Git {
        /// The git subcommand.
        op: String,
        /// Redacted URL.
        url: String,
        /// git's most relevant output line.
        detail: String,
    },
    /// git could not be started.
    #[error("cannot run git ({0}); install git")]
    Spawn(#[source] std::io::Error),
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What tether was doing.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True for failures that may go away by themselves (network, timeouts); the loop retries those with backoff.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. } | Error::Timeout { .. } | Error::Git { .. }
        )
    }

    /// A short stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Error::ReadOnly { .. } => "read_only",
            Error::Rejected { .. } => "push_rejected",
            Error::HostKey { .. } => "host_key",
            Error::Auth { .. } => "auth",
            Error::NoBranch { .. } => "no_branch",
            Error::Unreachable { .. } => "unreachable",
            Error::Timeout { .. } => "timeout",
            Error::Git { .. } => "git",
            Error::Spawn(_) => "spawn",
            Error::Io { .. } => "io",
        }
    }
}

/// Turns git's stderr for a failed `op` into the most specific error.
pub(crate) fn classify(op: &str, url: &str, branch: &str, stderr: &str) -> Error {
    let lower = stderr.to_ascii_lowercase();
    let detail = relevant_line(stderr);
    let url = url.to_owned();
    if lower.contains("[rejected]")
        && (lower.contains("fetch first") || lower.contains("non-fast-forward"))
    {
        return Error::Rejected { url, detail };
    }
    if lower.contains("read only")
        || lower.contains("read-only")
        || lower.contains("write access to repository not granted")
        || (lower.contains("permission to") && lower.contains("denied to"))
        || lower.contains("the requested url returned error: 403")
    {
        return Error::ReadOnly {
            url,
            op: op.to_owned(),
            detail,
        };
    }
    if lower.contains("host key verification failed")
        || lower.contains("remote host identification has changed")
        || lower.contains("no matching host key")
        || lower.contains("host key is known")
    {
        return Error::HostKey {
            url,
            detail: host_key_line(stderr).unwrap_or(detail),
        };
    }
    if lower.contains("permission denied (publickey")
        || lower.contains("authentication failed")
        || lower.contains("could not read username")
        || lower.contains("the requested url returned error: 401")
    {
        return Error::Auth { url, detail };
    }
    if lower.contains("couldn't find remote ref")
        || lower.contains("remote branch") && lower.contains("not found")
    {
        return Error::NoBranch {
            url,
            branch: branch.to_owned(),
        };
    }
    if lower.contains("could not resolve host")
        || lower.contains("connection refused")
        || lower.contains("connection timed out")
        || lower.contains("network is unreachable")
        || lower.contains("does not appear to be a git repository")
        || lower.contains("no route to host")
    {
        return Error::Unreachable { url, detail };
    }
    Error::Git {
        op: op.to_owned(),
        url,
        detail,
    }
}

/// ssh's verdict line about the host key, without the ASCII-art banner around it.
fn host_key_line(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| {
            l.contains("host key for")
                || l.contains("Host key verification failed")
                || l.contains("No ") && l.contains("host key is known")
        })
        .map(str::to_owned)
}

/// The line of git output that explains a failure: a remote `ERROR:`/`fatal:` line, else the last line.
fn relevant_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(|l| l.trim().trim_start_matches("remote:").trim())
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Please make sure")
                && !l.starts_with("and the repository exists")
        })
        .collect();
    let pick = lines
        .iter()
        .find(|l| {
            l.starts_with("ERROR") || l.contains("[remote rejected]") || l.contains("! [rejected]")
        })
        .or_else(|| {
            lines
                .iter()
                .find(|l| l.starts_with("fatal:") && !l.contains("Could not read from remote"))
        })
        .or_else(|| lines.last())
        .copied()
        .unwrap_or("no output");
    pick.trim_start_matches("fatal:")
        .trim_start_matches("ERROR:")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The exact output quoted in the seed notes (a GitHub read-only deploy key).
    const SEED: &str = "ERROR: The key you are authenticating with has been marked as read only.\n\
        fatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\n\
        and the repository exists.\n";

    #[test]
    fn read_only_key_becomes_one_line_with_the_hosts_reason() {
        let err = classify("push", "git@github.com:org/repo", "main", SEED);
        assert!(matches!(err, Error::ReadOnly { .. }));
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("is read-only"), "{msg}");
        assert!(msg.contains("marked as read only"), "{msg}");
        assert!(!msg.contains("Please make sure"), "{msg}");
    }

    #[test]
    fn changed_host_key_is_reported_without_the_banner() {
        let stderr = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@@@@\n\
            IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\nHost key for [127.0.0.1]:2222 has changed and you have requested strict checking.\n\
            Host key verification failed.\nfatal: Could not read from remote repository.\n";
        let err = classify("fetch", "ssh://h/r", "main", stderr);
        assert!(matches!(err, Error::HostKey { .. }), "{err:?}");
        assert!(err.to_string().contains("not trusted"), "{err}");
        assert!(!err.to_string().contains("NASTY"));
    }

    #[test]
    fn missing_branch_is_named() {
        let err = classify(
            "fetch",
            "file:///r",
            "prod",
            "fatal: couldn't find remote ref refs/heads/prod\n",
        );
        assert_eq!(err.to_string(), "branch 'prod' does not exist in file:///r");
    }
}
