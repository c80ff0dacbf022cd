//! `tether lock`, `unlock`, `automate`, `deautomate` and `policy`: change a workload's policies in Git, one
//! commit with Flux v1's message. Through the agent (its API pushes and deploys the commit), or, with
//! `--git-url`, straight on the repository with the daemon's source flags.

use std::process::ExitCode;

use clap::Args;
use tether_automation::change::{self, PolicyUpdate};
use tether_core::ObjectId;
use tether_render::Renderer;
use tether_source::Repo;

use crate::flags::SourceArgs;
use crate::remote::Connect;
use tether_api::{PolicyRequest, TagFilter};

/// Which workload, and who asks.
#[derive(Debug, Args)]
pub struct Target {
    /// With --git-url: work on the repository directly instead of through the agent.
    #[command(flatten)]
    source: SourceArgs,
    /// How to reach the agent (without --git-url).
    #[command(flatten)]
    connect: Connect,
    /// The workload: `namespace:kind/name`, or `kind/name` in --namespace.
    #[arg(long, short = 'w')]
    workload: String,
    /// Namespace of a workload given as `kind/name` [default: the kubeconfig context's, else "default"].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
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
pub enum Toggle {
    /// `tether lock`.
    Lock,
    /// `tether unlock`.
    Unlock,
    /// `tether automate`.
    Automate,
    /// `tether deautomate`.
    Deautomate,
}

/// Runs `tether lock`, `unlock`, `automate` or `deautomate`.
pub fn toggle(rt: &tokio::runtime::Runtime, args: LockArgs, which: Toggle) -> ExitCode {
    let t = &args.target;
    let update = match which {
        Toggle::Lock => PolicyUpdate::Lock {
            message: t.message.clone(),
            user: t.user.clone(),
        },
        Toggle::Unlock => PolicyUpdate::Unlock,
        Toggle::Automate => PolicyUpdate::Automate,
        Toggle::Deautomate => PolicyUpdate::Deautomate,
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
    let ns = t.namespace.as_deref().unwrap_or("default");
    crate::remote::workload(&t.workload, ns).map_err(|e| e.to_string())
}

/// The request the agent's API takes for `updates`.
fn request(t: &Target, updates: &[PolicyUpdate]) -> PolicyRequest {
    let mut req = PolicyRequest {
        workload: t.workload.clone(),
        message: t.message.clone(),
        user: t.user.clone(),
        ..PolicyRequest::default()
    };
    for u in updates {
        match u {
            PolicyUpdate::Lock { .. } => req.lock = Some(true),
            PolicyUpdate::Unlock => req.lock = Some(false),
            PolicyUpdate::Automate => req.automate = Some(true),
            PolicyUpdate::Deautomate => req.automate = Some(false),
            PolicyUpdate::Tag { container, pattern } if container.is_empty() => {
                req.tag_all = Some(pattern.clone());
            }
            PolicyUpdate::Tag { container, pattern } => req.tags.push(TagFilter {
                container: container.clone(),
                pattern: pattern.clone(),
            }),
        }
    }
    req
}

fn run(rt: &tokio::runtime::Runtime, t: &Target, updates: Vec<PolicyUpdate>) -> ExitCode {
    if t.source.git_url.is_none() {
        return crate::calls::policy(rt, &t.connect, t.namespace.clone(), request(t, &updates));
    }
    let source = &t.source;
    let settled = source.settle().and_then(|s| Ok((s, workload(t)?)));
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
        Ok::<_, anyhow::Error>(
            change::apply_policy(
                &repo,
                at,
                &id,
                &updates,
                change::Asked {
                    message: t.message.as_deref(),
                    user: t.user.as_deref(),
                    authenticated: None,
                },
            )
            .await?,
        )
    });
    match result {
        Ok((subject, Some(commit))) => {
            crate::out::outln!("{subject} {commit}");
            ExitCode::SUCCESS
        }
        Ok((_, None)) => {
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
