//! `tether list-images`: through the agent (its registry cache), or, with `--git-url`, offline straight from
//! Git and the registries.

use std::process::ExitCode;

use crate::flags::{RegistryArgs, SourceArgs};
use crate::remote::Connect;
use crate::table::Output;
use clap::Args;
use tether_core::ObjectId;
use tether_registry::RegistryClient;
use tether_render::{Renderer, Snapshot};
use tether_source::Repo;

/// Flags of `tether list-images`.
#[derive(Debug, Args)]
pub struct ListImagesArgs {
    /// With --git-url: read the repository and registries directly instead of asking the agent.
    #[command(flatten)]
    source: SourceArgs,
    /// How to reach the agent (without --git-url).
    #[command(flatten)]
    connect: Connect,
    /// Namespace of the workloads (through the agent) [default: every namespace you may read].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// How registries are queried.
    #[command(flatten)]
    registry: RegistryArgs,
    /// Only this workload (`namespace:kind/name`).
    #[arg(long, short = 'w')]
    workload: Option<String>,
    /// How many candidates to show per container.
    #[arg(long, short = 'l', default_value_t = 5)]
    limit: usize,
    /// Namespace of workloads that name none.
    #[arg(long, default_value = "default")]
    k8s_default_namespace: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
}

/// Runs the command.
pub fn run(rt: &tokio::runtime::Runtime, args: ListImagesArgs) -> ExitCode {
    if args.source.git_url.is_none() {
        return crate::calls::list_images(
            rt,
            &args.connect,
            args.namespace.clone(),
            args.workload.clone(),
            args.limit,
            args.output,
        );
    }
    let settled = args.source.settle().and_then(|s| {
        let only = args
            .workload
            .as_deref()
            .map(ObjectId::parse)
            .transpose()
            .map_err(|e| e.to_string())?;
        let (registry, creds) = args.registry.settle(&s.cache_dir)?;
        Ok((s, only, registry, creds))
    });
    let (source, only, registry, creds) = match settled {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tether: {e}");
            return ExitCode::from(crate::EX_USAGE);
        }
    };
    let result = rt.block_on(async {
        let repo = Repo::open(source.git.clone(), &source.cache_dir).await?;
        let renderer = Renderer::from_config(source.render.clone());
        let snapshot = Snapshot::head(&repo, &source.paths, &renderer).await?;
        let workloads =
            tether_automation::workloads(&snapshot.resources, &args.k8s_default_namespace);
        if let Some(o) = &only {
            if !workloads.iter().any(|w| o.matches(&w.id)) {
                anyhow::bail!(
                    "no workload {o} in {} (branch {})",
                    source.git.url,
                    source.git.branch
                );
            }
        }
        let client = RegistryClient::new(registry)?;
        Ok::<_, anyhow::Error>(
            tether_automation::list_images(&client, &workloads, only.as_ref(), args.limit, &creds)
                .await,
        )
    });
    match result {
        Ok(rows) => crate::calls::print_images(&tether_daemon::api::images_of(rows), args.output),
        Err(e) => {
            eprintln!(
                "tether: {}",
                crate::advice::with_advice(e.as_ref(), format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}
