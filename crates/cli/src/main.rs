//! The `tether` binary: parses the command line and hands off to the library crates.
//!
//! Exit codes: 0 success, 1 the operation failed, 64 the command line or configuration is invalid.

mod advice;
mod calls;
mod dashboard;
mod flags;
mod forward;
mod identity;
mod images;
mod install;
mod migrate;
mod out;
mod policy;
mod remote;
mod table;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use flags::DaemonArgs;

/// tether keeps a Kubernetes cluster equal to a Git repository.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sync loop (or one sync with --once) against the cluster in KUBECONFIG / in-cluster config.
    Daemon(Box<DaemonArgs>),
    /// Run one image-automation pass now, without the agent: newer allowed tags for automated workloads,
    /// committed and pushed (the agent does this on its own every --automation-interval).
    UpdateImages(Box<DaemonArgs>),
    /// Ask the agent to fetch and apply now (also an unchanged commit, repairing drift); waits for the result.
    Sync(Box<calls::SyncArgs>),
    /// List the workloads the agent deploys: the image running, rollout status, policies, last error.
    ListWorkloads(Box<calls::ListWorkloadsArgs>),
    /// Show, per container, the image and the newest tags its policy allows (through the agent, or offline
    /// with --git-url).
    ListImages(Box<images::ListImagesArgs>),
    /// Release an image (or the newest allowed ones) to workloads: one commit, pushed and deployed.
    Release(Box<calls::ReleaseArgs>),
    /// Let image automation update a workload (one commit).
    Automate(Box<policy::LockArgs>),
    /// Stop image automation for a workload (one commit).
    Deautomate(Box<policy::LockArgs>),
    /// Lock a workload: image automation and releases leave it alone (one commit).
    Lock(Box<policy::LockArgs>),
    /// Remove a workload's lock (one commit).
    Unlock(Box<policy::LockArgs>),
    /// Change a workload's policies: automation, lock, tag filters (one commit, pushed).
    Policy(Box<policy::PolicyArgs>),
    /// Rewrite manifests that use API versions Kubernetes removed to the served ones (one commit, pushed).
    Migrate(Box<migrate::MigrateArgs>),
    /// Print the agent's deploy key (its public half, to add to the repository), or rotate it.
    Identity(Box<identity::IdentityArgs>),
    /// Serve a status page on 127.0.0.1 that reads the agent with your credentials, and print its address.
    Dashboard(Box<dashboard::DashboardArgs>),
    /// Print the manifests that run tether in a cluster (or write them, one file per object, with -o DIR).
    Install(Box<install::InstallArgs>),
    /// Print a shell completion script (e.g. `source <(tether completion bash)`).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the version.
    Version,
}

const EX_USAGE: u8 = 64;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(EX_USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match cli.command {
        Command::Version => {
            crate::out::outln!("tether {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Daemon(args) => daemon(*args, false),
        Command::UpdateImages(args) => daemon(*args, true),
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tether", &mut script);
            crate::out::write(&String::from_utf8_lossy(&script));
            ExitCode::SUCCESS
        }
        Command::Sync(args) => runtime().map_or(ExitCode::FAILURE, |rt| calls::sync(&rt, *args)),
        Command::ListWorkloads(args) => {
            runtime().map_or(ExitCode::FAILURE, |rt| calls::list_workloads(&rt, *args))
        }
        Command::Release(args) => {
            runtime().map_or(ExitCode::FAILURE, |rt| calls::release(&rt, *args))
        }
        Command::Automate(args) => runtime().map_or(ExitCode::FAILURE, |rt| {
            policy::toggle(&rt, *args, policy::Toggle::Automate)
        }),
        Command::Deautomate(args) => runtime().map_or(ExitCode::FAILURE, |rt| {
            policy::toggle(&rt, *args, policy::Toggle::Deautomate)
        }),
        Command::ListImages(args) => {
            runtime().map_or(ExitCode::FAILURE, |rt| images::run(&rt, *args))
        }
        Command::Lock(args) => runtime().map_or(ExitCode::FAILURE, |rt| {
            policy::toggle(&rt, *args, policy::Toggle::Lock)
        }),
        Command::Unlock(args) => runtime().map_or(ExitCode::FAILURE, |rt| {
            policy::toggle(&rt, *args, policy::Toggle::Unlock)
        }),
        Command::Install(args) => install::run(*args),
        Command::Dashboard(args) => {
            runtime().map_or(ExitCode::FAILURE, |rt| dashboard::run(&rt, *args))
        }
        Command::Identity(args) => {
            runtime().map_or(ExitCode::FAILURE, |rt| identity::run(&rt, *args))
        }
        Command::Migrate(args) => {
            runtime().map_or(ExitCode::FAILURE, |rt| migrate::run(&rt, *args))
        }
        Command::Policy(args) => {
            runtime().map_or(ExitCode::FAILURE, |rt| policy::policy(&rt, *args))
        }
    }
}

/// A multi-threaded runtime, or a printed error.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("tether: cannot start the async runtime: {e}");
            None
        }
    }
}

fn daemon(args: DaemonArgs, automate: bool) -> ExitCode {
    let cfg = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tether: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    tether_daemon::logging::init(cfg.log_format);
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let once = cfg.once;
    let result = runtime.block_on(async move {
        if automate {
            let pass = tether_daemon::automate_once(cfg).await?;
            crate::out::outln!(
                "automation updates={} commit={} errors={}",
                pass.updates.len(),
                pass.commit.as_deref().unwrap_or("none"),
                pass.errors.len()
            );
            if !pass.errors.is_empty() {
                let list: Vec<String> = pass
                    .errors
                    .iter()
                    .map(|(id, e)| {
                        let containers: Vec<String> =
                            e.0.iter().map(|c| advice::explain(c)).collect();
                        format!("{id}: {}", containers.join("; "))
                    })
                    .collect();
                anyhow::bail!(
                    "{} workload(s) could not be checked:\n  {}",
                    list.len(),
                    list.join("\n  ")
                );
            }
            Ok(())
        } else if once {
            tether_daemon::run_once(cfg)
                .await
                .map(|summary| crate::out::outln!("synced {summary}"))
        } else {
            tether_daemon::run(cfg).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "tether: {}",
                advice::with_advice(e.as_ref(), format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}
