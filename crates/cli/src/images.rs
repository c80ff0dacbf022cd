//! `tether list-images`: offline, straight from Git and the registries.

use std::process::ExitCode;

use crate::flags::{RegistryArgs, SourceArgs};
use clap::{Args, ValueEnum};
use tether_core::ObjectId;
use tether_registry::RegistryClient;
use tether_render::{Renderer, Snapshot};
use tether_source::Repo;

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// A table for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// Flags of `tether list-images`.
#[derive(Debug, Args)]
pub struct ListImagesArgs {
    /// Where the manifests come from.
    #[command(flatten)]
    source: SourceArgs,
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
        Ok(rows) => {
            match args.output {
                Output::Table => crate::out::out!("{}", tether_automation::render_table(&rows)),
                Output::Json => match serde_json::to_string_pretty(&rows) {
                    Ok(s) => crate::out::outln!("{s}"),
                    Err(e) => {
                        eprintln!("tether: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            if rows.iter().any(|r| r.error.is_some()) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
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
