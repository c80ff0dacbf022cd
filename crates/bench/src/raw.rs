//! The limit: a minimal server-side-apply client. It sends the same N objects the other tools apply, as
//! `PATCH ?fieldManager=bench-raw&force=true` with `application/apply-patch+yaml`, Namespaces first (they must
//! exist before anything in them), then everything else at once with `concurrency` requests in flight. No
//! discovery, no reads, no dry-run, no ordering beyond that: what the API server can absorb on this machine.
//!
//! With `validate`, each wave is first dry-run in full and only then written: the same requests tether sends
//! for a first sync (validate everything, then write), without anything else tether does, so the report can
//! tell what a validated sync costs on this server from what tether adds to it.

use std::path::Path;

use anyhow::{bail, Context, Result};
use futures::{stream, StreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::Value;

use crate::workload::Kind;

/// Applies every object in the JSON-lines file `objects` (each wave dry-run first when `validate`); prints
/// `applied N` on success.
pub async fn run(
    kubeconfig: &Path,
    objects: &Path,
    concurrency: usize,
    validate: bool,
) -> Result<()> {
    let text =
        std::fs::read_to_string(objects).with_context(|| format!("read {}", objects.display()))?;
    let mut items: Vec<(Kind, Value)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        let kind = v["kind"]
            .as_str()
            .and_then(Kind::parse)
            .with_context(|| format!("unsupported kind in {line}"))?;
        items.push((kind, v));
    }
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    let client = kube::Client::try_from(config)?;
    let write = PatchParams::apply("bench-raw").force();
    let dry_run = PatchParams {
        dry_run: true,
        ..write.clone()
    };
    let passes: &[&PatchParams] = if validate {
        &[&dry_run, &write]
    } else {
        &[&write]
    };

    let (namespaces, rest): (Vec<_>, Vec<_>) =
        items.into_iter().partition(|(k, _)| *k == Kind::Namespace);
    let mut applied = 0usize;
    for wave in [namespaces, rest] {
        for &params in passes {
            let results: Vec<Result<()>> = stream::iter(&wave)
                .map(|(kind, body)| {
                    let client = client.clone();
                    async move {
                        let name = body["metadata"]["name"].as_str().unwrap_or_default();
                        let ns = body["metadata"]["namespace"].as_str();
                        let api = api(client, *kind, ns);
                        let verb = if params.dry_run { "dry-run" } else { "apply" };
                        api.patch(name, params, &Patch::Apply(body))
                            .await
                            .with_context(|| format!("{verb} {} {name}", kind.name()))?;
                        Ok(())
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
            for r in results {
                r?;
            }
        }
        applied += wave.len();
    }
    if applied == 0 {
        bail!("no objects in {}", objects.display());
    }
    println!("applied {applied}");
    Ok(())
}

fn api(client: kube::Client, kind: Kind, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: kind.group().into(),
        version: "v1".into(),
        api_version: kind.api_version().into(),
        kind: kind.name().into(),
        plural: kind.plural().into(),
    };
    match ns {
        Some(ns) if kind.namespaced() => Api::namespaced_with(client, ns, &ar),
        _ => Api::all_with(client, &ar),
    }
}

/// The kube API of `kind` in `ns` (or cluster-wide), for the harness's own checks.
pub fn api_for(client: kube::Client, kind: Kind, ns: Option<&str>) -> Api<DynamicObject> {
    api(client, kind, ns)
}
