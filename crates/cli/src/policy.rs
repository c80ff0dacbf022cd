//! `tether lock`, `tether unlock` and `tether policy`: change a workload's policies in Git, committed and
//! pushed as one commit with Flux v1's message. Until the agent's API exists these work straight on the
//! repository, with the same source flags as the daemon.

use std::process::ExitCode;

use clap::Args;
use tether_automation::change::{self, PolicyUpdate};
use tether_core::ObjectId;
use tether_render::Renderer;
use tether_source::Repo;

use crate::flags::SourceArgs;

/// Which workload, and who asks.
#[derive(Debug, Args)]
pub struct Target {
    /// Where the manifests come from.
    #[command(flatten)]
    source: SourceArgs,
    /// The workload: `namespace:kind/name`, or `kind/name` in --namespace.
    #[arg(long, short = 'w')]
    workload: String,
    /// Namespace of a workload given as `kind/name`.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Namespace of namespaced objects the manifests write without one.
    #[arg(long, default_value = "default")]
    k8s_default_namespace: String,
    /// Why, for the commit message (and the lock).
    #[arg(long, short = 'm')]
    message: Option<String>,
    /// Who, for the commit message (and the lock).
    #[arg(long)]
    user: Option<String>,
}

/// Flags of `tether lock` and `tether unlock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    target: Target,
}

/// Flags of `tether policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    target: Target,
    /// Let image automation update the workload.
    #[arg(long, conflicts_with = "deautomate")]
    automate: bool,
    /// Stop image automation for the workload.
    #[arg(long)]
    deautomate: bool,
    /// Lock the workload: nothing changes its images.
    #[arg(long, conflicts_with = "unlock")]
    lock: bool,
    /// Remove the lock.
    #[arg(long)]
    unlock: bool,
    /// Tag filter for one container, `CONTAINER=PATTERN` (e.g. `web=semver:~1.4`; `web=*` removes it).
    #[arg(long = "tag", value_name = "CONTAINER=PATTERN")]
    tags: Vec<String>,
    /// Tag filter for every container of the workload.
    #[arg(long, value_name = "PATTERN")]
    tag_all: Option<String>,
}

/// Which command.
#[derive(Debug, Clone, Copy)]
pub enum Lock {
    /// `tether lock`.
    Lock,
    /// `tether unlock`.
    Unlock,
}

/// Runs `tether lock` or `tether unlock`.
pub fn lock(rt: &tokio::runtime::Runtime, args: LockArgs, which: Lock) -> ExitCode {
    let t = &args.target;
    let update = match which {
        Lock::Lock => PolicyUpdate::Lock {
            message: t.message.clone(),
            user: t.user.clone(),
        },
        Lock::Unlock => PolicyUpdate::Unlock,
    };
    run(rt, &args.target, vec![update])
}

/// Runs `tether policy`.
pub fn policy(rt: &tokio::runtime::Runtime, args: PolicyArgs) -> ExitCode {
    let mut updates = Vec::new();
    if args.automate {
        updates.push(PolicyUpdate::Automate);
    }
    if args.deautomate {
        updates.push(PolicyUpdate::Deautomate);
    }
    if args.lock {
        updates.push(PolicyUpdate::Lock {
            message: args.target.message.clone(),
            user: args.target.user.clone(),
        });
    }
    if args.unlock {
        updates.push(PolicyUpdate::Unlock);
    }
    for tag in &args.tags {
        let Some((container, pattern)) = tag
            .split_once('=')
            .filter(|(c, p)| !c.is_empty() && !p.is_empty())
        else {
            eprintln!("tether: --tag {tag}: write CONTAINER=PATTERN, e.g. web=semver:~1.4");
            return ExitCode::from(crate::EX_USAGE);
        };
        updates.push(PolicyUpdate::Tag {
            container: container.to_owned(),
            pattern: pattern.to_owned(),
        });
    }
    if let Some(pattern) = &args.tag_all {
        // The containers are only known from the manifests: resolved when the tree is read.
        updates.push(PolicyUpdate::Tag {
            container: String::new(),
            pattern: pattern.clone(),
        });
    }
    if updates.is_empty() {
        eprintln!(
            "tether: nothing to change; give --automate, --deautomate, --lock, --unlock, --tag or --tag-all"
        );
        return ExitCode::from(crate::EX_USAGE);
    }
    run(rt, &args.target, updates)
}

/// The workload named on the command line.
fn workload(t: &Target) -> Result<ObjectId, String> {
    let full = if t.workload.contains(':') {
        t.workload.clone()
    } else {
        format!("{}:{}", t.namespace, t.workload)
    };
    ObjectId::parse(&full).map_err(|e| format!("--workload: {e}"))
}

fn run(rt: &tokio::runtime::Runtime, t: &Target, updates: Vec<PolicyUpdate>) -> ExitCode {
    let settled = t.source.settle().and_then(|s| Ok((s, workload(t)?)));
    let (source, id) = match settled {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tether: {e}");
            return ExitCode::from(crate::EX_USAGE);
        }
    };
    let result = rt.block_on(async {
        let repo = Repo::open(source.git.clone(), &source.cache_dir).await?;
        let renderer = Renderer::from_config(source.render.clone());
        let at = change::Paths {
            paths: &source.paths,
            renderer: &renderer,
            default_namespace: &t.k8s_default_namespace,
        };
        let mut changes = Vec::new();
        for u in &updates {
            match u {
                PolicyUpdate::Tag { container, pattern } if container.is_empty() => {
                    let head =
                        tether_render::Snapshot::head(&repo, &source.paths, &renderer).await?;
                    let w = tether_automation::workloads(&head.resources, &t.k8s_default_namespace)
                        .into_iter()
                        .find(|w| id.matches(&w.id))
                        .ok_or_else(|| {
                            anyhow::anyhow!("{id} is not defined under the synced paths")
                        })?;
                    for c in &w.containers {
                        changes.extend(
                            PolicyUpdate::Tag {
                                container: c.name.clone(),
                                pattern: pattern.clone(),
                            }
                            .changes(),
                        );
                    }
                }
                u => changes.extend(u.changes()),
            }
        }
        let message = change::commit_message(
            &change::subject(&id, &updates),
            t.message.as_deref(),
            t.user.as_deref(),
        );
        Ok::<_, anyhow::Error>(change::commit(&repo, at, &id, &changes, &message).await?)
    });
    match result {
        Ok(Some(commit)) => {
            crate::out::outln!("{} {commit}", change::subject(&id, &updates));
            ExitCode::SUCCESS
        }
        Ok(None) => {
            crate::out::outln!("{id}: nothing to change");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "tether: {}",
                crate::advice::with_advice(e.as_ref(), format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}
