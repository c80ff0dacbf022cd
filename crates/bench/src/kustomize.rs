//! Kustomize builds: what an unchanged kustomization costs at the next sync. Flux v1 re-ran every build at
//! every sync (a 14 s build per sync in fluxcd/flux#2801); tether caches builds by the hash of their input
//! tree, on disk. Measured in-process with the renderer the daemon uses and the real kustomize, whose runs
//! are counted by a wrapper script; rendering the same objects as plain files is the reference.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tether_render::{KustomizeConfig, Renderer};

use crate::cluster::repo_root;

/// One measured render.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Objects the kustomization builds.
    pub n: usize,
    /// What was rendered.
    pub step: &'static str,
    /// Wall time of the render.
    pub wall_s: f64,
    /// How many times kustomize ran.
    pub builds: usize,
}

/// The kustomize binary the test ground builds.
fn kustomize_bin() -> Result<PathBuf> {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/build-tools.sh"))
        .args(["bin", "kustomize"])
        .output()
        .context("run scripts/build-tools.sh bin kustomize")?;
    if !out.status.success() {
        bail!(
            "scripts/build-tools.sh bin kustomize failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("kustomize"))
}

/// A base of `n` ConfigMaps and an overlay that renames them.
fn write_tree(root: &Path, n: usize) -> Result<()> {
    let base = root.join("base");
    let overlay = root.join("staging");
    let plain = root.join("plain");
    for d in [&base, &overlay, &plain] {
        std::fs::create_dir_all(d)?;
    }
    let mut objects = String::new();
    for i in 0..n {
        let _ = write!(
            objects,
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: bench\ndata:\n  key: value-{i}\n  index: \"{i}\"\n"
        );
    }
    std::fs::write(base.join("configmaps.yaml"), &objects)?;
    std::fs::write(
        base.join("kustomization.yaml"),
        "resources:\n- configmaps.yaml\n",
    )?;
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "namePrefix: staging-\ncommonLabels:\n  env: staging\nresources:\n- ../base\n",
    )?;
    std::fs::write(plain.join("configmaps.yaml"), &objects)?;
    Ok(())
}

/// Renders `path` once; returns the wall time and the number of objects.
fn time(renderer: &Renderer, root: &Path, path: &str) -> Result<(f64, usize)> {
    let started = Instant::now();
    let out = renderer
        .render(root, &[path.to_owned()])
        .map_err(|e| anyhow::anyhow!("render {path}: {e}"))?;
    Ok((started.elapsed().as_secs_f64(), out.len()))
}

/// The largest N the section builds: kustomize's own build time grows faster than N (15 s at 5,000; more
/// than the 600 s timeout at 20,000 on 2 cores), and what the section shows (no build for an unchanged
/// tree) does not change with size.
const LARGEST: usize = 5000;

/// Measures, for each size up to [`LARGEST`]: the first build, the same tree again (same process, then a new
/// one reading the disk cache), one changed file, and the plain-file reference.
pub fn run(work: &Path, sizes: &[usize]) -> Result<Vec<Row>> {
    let real = kustomize_bin()?;
    let mut rows = Vec::new();
    for &n in sizes.iter().filter(|&&n| n <= LARGEST) {
        let root = work.join(format!("kustomize-{n}"));
        write_tree(&root, n)?;
        let log = root.join("builds.log");
        let wrapper = root.join("kustomize");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho build >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            ),
        )?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
        }
        let builds = || {
            std::fs::read_to_string(&log)
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        let config = KustomizeConfig {
            bin: wrapper.clone(),
            allow_remote: false,
            timeout: Duration::from_secs(600),
            cache_dir: Some(root.join("cache")),
        };
        let mut measure = |step: &'static str, renderer: &Renderer, path: &str| -> Result<()> {
            let before = builds();
            let (wall_s, objects) = time(renderer, &root, path)?;
            if objects != n {
                bail!("{step}: rendered {objects} objects, expected {n}");
            }
            rows.push(Row {
                n,
                step,
                wall_s,
                builds: builds() - before,
            });
            Ok(())
        };
        let first = Renderer::new(config.clone());
        measure("first build", &first, "staging")?;
        measure("same tree, same process", &first, "staging")?;
        measure(
            "same tree, after a restart (disk cache)",
            &Renderer::new(config.clone()),
            "staging",
        )?;
        let base = root.join("base/configmaps.yaml");
        let text = std::fs::read_to_string(&base)?;
        std::fs::write(&base, text.replacen("value-0", "value-0-changed", 1))?;
        measure("one file of the base changed", &first, "staging")?;
        measure(
            "reference: the same objects as plain files",
            &first,
            "plain",
        )?;
    }
    Ok(rows)
}

/// The section of the report.
pub fn markdown(rows: &[Row]) -> String {
    let mut md = String::from(
        "\n## Kustomize builds across syncs\n\nA base of N ConfigMaps and an overlay; each row is one render as \
         a sync does it, with the number of times kustomize actually ran (counted by a wrapper).\n\n\
         | N | render | wall | kustomize runs |\n|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} s | {} |",
            r.n, r.step, r.wall_s, r.builds
        );
    }
    md
}
