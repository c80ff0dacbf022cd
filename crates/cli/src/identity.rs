//! `tether identity`: the agent's deploy key, to add to the repository (with write access unless the agent
//! runs with --git-readonly). Reads the key's Secret with the credentials of the current kubeconfig context
//! until the agent's API exists; creates the key if the agent has not yet.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tether_daemon::identity::DeployKey;

/// Flags of `tether identity`.
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// tether's namespace [default: the kubeconfig context's].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// The Secret holding the deploy key.
    #[arg(long, default_value = "tether-git-deploy")]
    git_deploy_secret: String,
    /// Print the key's SHA256 fingerprint instead of the public key.
    #[arg(long)]
    fingerprint: bool,
    /// Replace the key with a new one (the agent uses it from its next start; remove the old one from the
    /// repository's deploy keys).
    #[arg(long)]
    regenerate: bool,
    /// Limit for each request to the Kubernetes API.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    k8s_timeout: Duration,
}

/// Runs the command.
pub fn run(rt: &tokio::runtime::Runtime, args: IdentityArgs) -> ExitCode {
    let result = rt.block_on(async {
        let client = tether_daemon::client(args.k8s_timeout).await?;
        let key = DeployKey {
            namespace: args
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned()),
            name: args.git_deploy_secret.clone(),
        };
        key.get_or_create(&client, args.regenerate).await
    });
    match result {
        Ok(id) if args.fingerprint => {
            crate::out::outln!("{}", id.fingerprint());
            ExitCode::SUCCESS
        }
        Ok(id) => {
            crate::out::outln!("{}", id.public_line());
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
