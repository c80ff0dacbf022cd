//! The `tether` binary: parses the command line and hands off to the library crates.
//!
//! Exit codes: 0 success, 1 the operation failed, 64 the command line or configuration is invalid.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tether_daemon::DaemonArgs;

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
    /// Print the version.
    Version,
}

const EX_USAGE: u8 = 64;

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
            println!("tether {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Daemon(args) => daemon(*args),
    }
}

fn daemon(args: DaemonArgs) -> ExitCode {
    let cfg = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tether: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    tether_daemon::logging::init(cfg.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let once = cfg.once;
    let result = runtime.block_on(async move {
        if once {
            tether_daemon::run_once(cfg)
                .await
                .map(|summary| println!("synced {summary}"))
        } else {
            tether_daemon::run(cfg).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::FAILURE
        }
    }
}
