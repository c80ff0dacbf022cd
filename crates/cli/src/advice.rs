//! What to change about an error, in this binary's flags. The libraries classify failures and say what
//! happened; only the binary knows which flag fixes each.

use std::error::Error as StdError;

use tether_daemon::SyncError;
use tether_registry::{Error as RegistryError, TransportHint};
use tether_render::{Error as RenderError, SnapshotError};
use tether_source::Error as SourceError;

/// The advice for `err`, if one of its layers is an error a flag fixes.
pub fn advice(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut layer = Some(err);
    while let Some(e) = layer {
        if let Some(a) = advice_for(e) {
            return Some(a.to_owned());
        }
        layer = e.source();
    }
    let kube = chain(err).any(|e| e.downcast_ref::<kube::Error>().is_some());
    let timed_out = chain(err).any(|e| {
        e.downcast_ref::<tokio::time::error::Elapsed>().is_some()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    (kube && timed_out).then(|| {
        "the Kubernetes API server did not answer within --k8s-timeout: check that it is up and reachable \
         from here, or raise --k8s-timeout"
            .to_owned()
    })
}

/// `err` and every error under it.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

fn advice_for(e: &(dyn StdError + 'static)) -> Option<&'static str> {
    // `#[error(transparent)]` wrappers forward `source()` past the wrapped error, so they are unwrapped here.
    if let Some(e) = e.downcast_ref::<SyncError>() {
        return match e {
            SyncError::Source(e) => source(e),
            SyncError::Render(e) => render(e),
            SyncError::Timeout(_) => Some(
                "raise --sync-timeout if syncs of this repository are this slow, or find what stalls (the \
                 API server, a generator, kustomize)",
            ),
            SyncError::Apply(tether_apply::Error::Invalid(errors))
                if errors.iter().any(|e| e.cause == tether_plan::Cause::OtherSync) =>
            {
                Some("--sync-takeover lets this sync take over objects another sync name applied")
            }
            SyncError::Apply(tether_apply::Error::Invalid(errors))
                if errors.iter().any(|e| e.cause == tether_plan::Cause::Removed) =>
            {
                Some(
                    "`tether migrate` (with the same --git-url and --git-path) rewrites removed API versions \
                     to the served ones in one commit; add --dry-run to see the change first",
                )
            }
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<SnapshotError>() {
        return match e {
            SnapshotError::Source(e) => source(e),
            SnapshotError::Render(e) => render(e),
        };
    }
    if let Some(e) = e.downcast_ref::<tether_automation::run::Error>() {
        return match e {
            tether_automation::run::Error::Source(e) => source(e),
            tether_automation::run::Error::Render(e) => render(e),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<SourceError>() {
        return source(e);
    }
    if let Some(e) = e.downcast_ref::<RenderError>() {
        return render(e);
    }
    e.downcast_ref::<RegistryError>().and_then(registry)
}

fn source(e: &SourceError) -> Option<&'static str> {
    Some(match e {
        SourceError::ReadOnly { .. } => {
            "give the deploy key write access, or run with --git-readonly (tether then records the sync \
             state in a Secret)"
        }
        SourceError::HostKey { .. } => {
            "add the host's key to the file given by --git-known-hosts (for example with ssh-keyscan, \
             verified out of band)"
        }
        SourceError::Auth { url, .. } if url.starts_with("http") => {
            "fix the HTTPS credentials (--git-https-credentials-file, or TETHER_GIT_HTTPS_USER and \
             TETHER_GIT_HTTPS_PASSWORD): the server refused them"
        }
        SourceError::Auth { .. } => {
            "add the agent's public key as a deploy key of the repository, with write access: `tether identity` \
             prints it (or, with --git-ssh-key, `ssh-keygen -y -f <key>`)"
        }
        SourceError::NoBranch { .. } => "push the branch, or set --git-branch",
        SourceError::Timeout { .. } => "raise --git-timeout if the repository is large",
        _ => return None,
    })
}

fn render(e: &RenderError) -> Option<&'static str> {
    match e {
        RenderError::BadPath { .. } => Some("check --git-path against the repository's layout"),
        RenderError::Files(_) => None,
    }
}

fn registry(e: &RegistryError) -> Option<&'static str> {
    match e {
        RegistryError::RateLimited { .. } => {
            Some("lower --registry-rps or --registry-burst, or automate fewer images")
        }
        RegistryError::Transport {
            hint: Some(TransportHint::MaybePlainHttp),
            ..
        } => Some("list the host in --registry-insecure-host if it serves plain HTTP"),
        RegistryError::Unauthorized {
            anonymous: true, ..
        } => Some("credentials can also come from a docker config.json given with --docker-config"),
        _ => None,
    }
}

/// `text` (the description of `err`) followed by the advice for `err`, if any: `<text>; <advice>`.
pub fn with_advice(err: &(dyn StdError + 'static), text: String) -> String {
    match advice(err) {
        Some(a) => format!("{text}; {a}"),
        None => text,
    }
}

/// `err` and its advice on one line, for the daemon's log.
pub fn explain(err: &(dyn StdError + 'static)) -> String {
    with_advice(err, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_failures_get_the_flag_that_fixes_them_through_every_wrapper() {
        let read_only = || SourceError::ReadOnly {
            url: "git@h:r".into(),
            op: "push".into(),
            detail: "denied".into(),
        };
        for err in [
            Box::new(read_only()) as Box<dyn StdError>,
            Box::new(SyncError::Source(read_only())),
            Box::new(SnapshotError::Source(read_only())),
        ] {
            let a = advice(err.as_ref()).unwrap();
            assert!(
                a.contains("write access") && a.contains("--git-readonly"),
                "{a}"
            );
        }
        let host_key = SourceError::HostKey {
            url: "ssh://h/r".into(),
            detail: "changed".into(),
        };
        assert!(advice(&host_key).unwrap().contains("--git-known-hosts"));
        let branch = SourceError::NoBranch {
            url: "file:///r".into(),
            branch: "prod".into(),
        };
        assert_eq!(
            with_advice(&branch, branch.to_string()),
            "branch 'prod' does not exist in file:///r; push the branch, or set --git-branch"
        );
        let unreachable = SourceError::Unreachable {
            url: "ssh://h/r".into(),
            detail: "refused".into(),
        };
        assert_eq!(advice(&unreachable), None);
    }

    #[test]
    fn registry_failures_name_the_registry_flags() {
        let limited = RegistryError::RateLimited {
            host: "r".into(),
            attempts: 3,
            retry_after: None,
        };
        assert!(advice(&limited).unwrap().contains("--registry-rps"));
        let denied = |anonymous| RegistryError::Unauthorized {
            host: "r".into(),
            repository: "r/app".into(),
            status: 401,
            detail: String::new(),
            hint: "…".into(),
            anonymous,
        };
        assert!(advice(&denied(true)).unwrap().contains("--docker-config"));
        // Credentials that were sent and refused are fixed where they came from, not with a flag.
        assert_eq!(advice(&denied(false)), None);
        let bad_path = RenderError::BadPath {
            path: "x".into(),
            reason: "does not exist".into(),
        };
        assert!(advice(&bad_path).unwrap().contains("--git-path"));
    }
}
