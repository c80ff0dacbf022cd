//! Flux v1 manifest generation: a `.flux.yaml` at a git-path or above it says the manifests are the output of
//! commands (`generators`), optionally patched by a file of strategic-merge patches (`patchUpdated`), or
//! changed by other commands (`commandUpdated`'s `updaters`). Only with manifest generation turned on, as in
//! Flux v1; without it the file is reported once as ignored.
//!
//! Commands run with `sh -c` in the git-path directory (as Flux v1 did, not in the `.flux.yaml` directory) of a
//! copy of the tree without `.git` ([`crate::export`]), in an environment holding only `PATH` and an empty
//! `HOME`, with a deadline each; updaters' changes are copied back. They still run as the agent: manifest
//! generation is for repositories whose committers may run code in the agent's pod. Everything a generator prints is one
//! YAML stream; every object from it names the `.flux.yaml` as its source.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tether_core::report::Shown;
use tether_core::{Provenance, Resource};

pub use crate::export::Changed;
use crate::export::Export;
use crate::patch;
use crate::FileError;

/// The file name Flux v1 looks for.
pub const CONFIG_FILE: &str = ".flux.yaml";

/// How generation runs.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// A command's deadline when its `timeout` is not set (Flux v1 used `--sync-timeout`).
    pub timeout: Duration,
    /// Put first on the commands' `PATH`, so `kustomize` in a generator is the kustomize tether was given.
    pub tools_dir: Option<PathBuf>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            timeout: Duration::from_secs(60),
            tools_dir: None,
        }
    }
}

/// A `.flux.yaml` that applies to one git-path.
#[derive(Debug, Clone, PartialEq)]
pub struct FluxConfig {
    /// The `.flux.yaml`, relative to the repository root.
    pub file: String,
    /// The git-path it applies to (where commands run), relative to the repository root; `""` is the root.
    pub dir: String,
    /// What it asks for.
    pub mode: Mode,
}

/// The three forms of a `.flux.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// `scanForFiles`: read the files as if there were no `.flux.yaml`.
    Scan,
    /// `patchUpdated`: generate, then apply the patch file; changes are written into the patch file.
    Patch {
        /// The commands whose output is the manifests.
        generators: Vec<CommandSpec>,
        /// The patch file, relative to the git-path.
        patch_file: String,
    },
    /// `commandUpdated`: generate; changes are made by running the updaters.
    Commands {
        /// The commands whose output is the manifests.
        generators: Vec<CommandSpec>,
        /// The commands that change an image or a policy.
        updaters: Vec<Updater>,
    },
}

/// One command of a `.flux.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Run with `sh -c`.
    pub command: String,
    /// Its own deadline, when set.
    pub timeout: Option<Duration>,
}

/// One entry of `updaters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updater {
    /// Sets a container's image (gets `FLUX_CONTAINER`, `FLUX_IMG`, `FLUX_TAG`).
    pub container_image: Option<CommandSpec>,
    /// Sets or removes a policy (gets `FLUX_POLICY`, and `FLUX_POLICY_VALUE` unless it is removed).
    pub policy: Option<CommandSpec>,
}

/// What an updater is asked to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateRequest<'a> {
    /// A container's image.
    Image {
        /// The container.
        container: &'a str,
        /// The image without its tag (`FLUX_IMG`).
        image: &'a str,
        /// The tag (`FLUX_TAG`).
        tag: &'a str,
    },
    /// A policy (the name as Flux v1 spelled it, e.g. `automated`, `tag.web`).
    Policy {
        /// `FLUX_POLICY`.
        name: &'a str,
        /// `FLUX_POLICY_VALUE`; `None` removes the policy.
        value: Option<&'a str>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    version: Option<Value>,
    scan_for_files: Option<Value>,
    patch_updated: Option<RawPatch>,
    command_updated: Option<RawCommands>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPatch {
    #[serde(default)]
    generators: Vec<RawCommand>,
    patch_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCommands {
    #[serde(default)]
    generators: Vec<RawCommand>,
    #[serde(default)]
    updaters: Vec<RawUpdater>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    command: String,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawUpdater {
    container_image: Option<RawCommand>,
    policy: Option<RawCommand>,
}

/// The `.flux.yaml` that would apply to `git_path`, without reading it.
pub fn locate(root: &Path, git_path: &str) -> Option<String> {
    let mut dir = git_path.trim_matches('/').to_owned();
    loop {
        let rel = crate::kustomize::join(&dir, CONFIG_FILE);
        if root.join(&rel).is_file() {
            return Some(rel);
        }
        if dir.is_empty() {
            return None;
        }
        dir = parent(&dir);
    }
}

fn parent(dir: &str) -> String {
    match dir.rfind('/') {
        Some(i) => dir[..i].to_owned(),
        None => String::new(),
    }
}

/// The `.flux.yaml` for `git_path`: the first found looking from it up to the repository root.
///
/// # Errors
/// The file found does not read or is not a valid version 1 `.flux.yaml`; the error names it and the fix.
pub fn find(root: &Path, git_path: &str) -> Result<Option<FluxConfig>, FileError> {
    let Some(rel) = locate(root, git_path) else {
        return Ok(None);
    };
    let text = crate::checkout::Checkout::new(root, crate::DEFAULT_MAX_FILE_BYTES)
        .and_then(|c| c.read(&rel))
        .map_err(|message| FileError {
            at: Provenance {
                file: rel.clone(),
                line: 1,
            },
            message,
        })?;
    parse(&rel, git_path, &text).map(Some)
}

/// Reads the text of `.flux.yaml` `file` as it applies to `git_path`.
pub fn parse(file: &str, git_path: &str, text: &str) -> Result<FluxConfig, FileError> {
    let fail = |message: String| FileError {
        at: Provenance {
            file: file.to_owned(),
            line: 1,
        },
        message,
    };
    let raw: RawConfig = crate::yaml::from_str(text).map_err(|e| {
        fail(format!(
            "not a valid .flux.yaml: {e}; it needs `version: 1` and one of scanForFiles, patchUpdated \
             (generators, patchFile) or commandUpdated (generators, updaters)"
        ))
    })?;
    match &raw.version {
        Some(v) if v.as_u64() == Some(1) || v.as_str() == Some("1") => {}
        Some(v) => {
            return Err(fail(format!(
                "version {v} is not supported; write `version: 1`"
            )))
        }
        None => return Err(fail("`version: 1` is missing".into())),
    }
    let given = usize::from(raw.scan_for_files.is_some())
        + usize::from(raw.patch_updated.is_some())
        + usize::from(raw.command_updated.is_some());
    if given != 1 {
        return Err(fail(format!(
            "exactly one of scanForFiles, patchUpdated and commandUpdated must be given ({given} are)"
        )));
    }
    let commands = |raw: Vec<RawCommand>, what: &str| -> Result<Vec<CommandSpec>, FileError> {
        raw.into_iter()
            .map(|c| command(c, what).map_err(&fail))
            .collect()
    };
    let mode = if let Some(p) = raw.patch_updated {
        let patch_file = p.patch_file.trim().to_owned();
        if patch_file.is_empty()
            || Path::new(&patch_file).is_absolute()
            || crate::kustomize::normalise(&crate::kustomize::join(git_path, &patch_file)).is_none()
        {
            return Err(fail(format!(
                "patchFile '{patch_file}' must be a path relative to the git-path, inside the repository"
            )));
        }
        Mode::Patch {
            generators: commands(p.generators, "generators")?,
            patch_file,
        }
    } else if let Some(c) = raw.command_updated {
        let updaters = c
            .updaters
            .into_iter()
            .map(|u| {
                Ok(Updater {
                    container_image: u
                        .container_image
                        .map(|c| command(c, "updaters.containerImage"))
                        .transpose()
                        .map_err(&fail)?,
                    policy: u
                        .policy
                        .map(|c| command(c, "updaters.policy"))
                        .transpose()
                        .map_err(&fail)?,
                })
            })
            .collect::<Result<_, FileError>>()?;
        Mode::Commands {
            generators: commands(c.generators, "generators")?,
            updaters,
        }
    } else {
        Mode::Scan
    };
    if let Mode::Patch { generators, .. } | Mode::Commands { generators, .. } = &mode {
        if generators.is_empty() {
            return Err(fail(
                "generators is empty; give at least one command".into(),
            ));
        }
    }
    Ok(FluxConfig {
        file: file.to_owned(),
        dir: git_path.trim_matches('/').to_owned(),
        mode,
    })
}

fn command(raw: RawCommand, what: &str) -> Result<CommandSpec, String> {
    if raw.command.trim().is_empty() {
        return Err(format!("a command in {what} is empty"));
    }
    let timeout = match raw.timeout {
        None => None,
        Some(t) => {
            let d = humantime::parse_duration(t.trim())
                .map_err(|e| format!("timeout '{t}' of `{}`: {e}", raw.command))?;
            if d < Duration::from_secs(1) {
                return Err(format!(
                    "timeout '{t}' of `{}` is below the minimum of 1s",
                    raw.command
                ));
            }
            Some(d)
        }
    };
    Ok(CommandSpec {
        command: raw.command,
        timeout,
    })
}

impl FluxConfig {
    fn at(&self) -> Provenance {
        Provenance {
            file: self.file.clone(),
            line: 1,
        }
    }

    fn fail(&self, message: String) -> Vec<FileError> {
        vec![FileError {
            at: self.at(),
            message,
        }]
    }

    /// The patch file, relative to the repository root, in `patchUpdated` mode.
    pub fn patch_file(&self) -> Option<String> {
        match &self.mode {
            Mode::Patch { patch_file, .. } => {
                crate::kustomize::normalise(&crate::kustomize::join(&self.dir, patch_file))
            }
            _ => None,
        }
    }

    /// Runs the generators and applies the patch file: the objects of this git-path.
    pub fn generate(
        &self,
        root: &Path,
        config: &GenerationConfig,
    ) -> Result<Vec<Resource>, Vec<FileError>> {
        let checkout = crate::checkout::Checkout::new(root, crate::DEFAULT_MAX_FILE_BYTES)
            .map_err(|e| self.fail(e))?;
        self.generate_in(&checkout, config)
    }

    /// [`FluxConfig::generate`] in a checkout already resolved.
    pub(crate) fn generate_in(
        &self,
        checkout: &crate::checkout::Checkout<'_>,
        config: &GenerationConfig,
    ) -> Result<Vec<Resource>, Vec<FileError>> {
        let generators = match &self.mode {
            Mode::Scan => return Ok(Vec::new()),
            Mode::Patch { generators, .. } | Mode::Commands { generators, .. } => generators,
        };
        let export = Export::of(checkout.root).map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for g in generators {
            let text = self
                .run(&export, config, g, &[])
                .map_err(|e| self.fail(e))?;
            let resources = crate::yaml::parse_output(
                &self.at(),
                &format!("generator `{}`", g.command),
                &text,
            )?;
            out.extend(resources);
        }
        if let Some(patch_file) = self.patch_file() {
            apply_patches(checkout, &patch_file, &mut out)?;
        }
        Ok(out)
    }

    /// Runs every updater's command for `request` on `workload` (`namespace:kind/name`), in order. Returns
    /// the files they changed, each with what it held before (`None`: new).
    ///
    /// # Errors
    /// No updater handles this kind of change, or one failed (with its stderr).
    pub fn update(
        &self,
        root: &Path,
        config: &GenerationConfig,
        workload: (&str, &str, &str),
        request: &UpdateRequest<'_>,
    ) -> Result<Vec<Changed>, String> {
        let Mode::Commands { updaters, .. } = &self.mode else {
            return Err(format!("{} has no updaters", self.file));
        };
        let (ns, kind, name) = workload;
        let mut env: Vec<(&str, String)> = vec![
            (
                "FLUX_WORKLOAD",
                format!("{ns}:{}/{name}", kind.to_ascii_lowercase()),
            ),
            ("FLUX_WL_NS", ns.to_owned()),
            ("FLUX_WL_KIND", kind.to_ascii_lowercase()),
            ("FLUX_WL_NAME", name.to_owned()),
        ];
        let commands: Vec<&CommandSpec> = match request {
            UpdateRequest::Image {
                container,
                image,
                tag,
            } => {
                env.push(("FLUX_CONTAINER", (*container).to_owned()));
                env.push(("FLUX_IMG", (*image).to_owned()));
                env.push(("FLUX_TAG", (*tag).to_owned()));
                updaters
                    .iter()
                    .filter_map(|u| u.container_image.as_ref())
                    .collect()
            }
            UpdateRequest::Policy { name, value } => {
                env.push(("FLUX_POLICY", (*name).to_owned()));
                if let Some(v) = value {
                    env.push(("FLUX_POLICY_VALUE", (*v).to_owned()));
                }
                updaters.iter().filter_map(|u| u.policy.as_ref()).collect()
            }
        };
        if commands.is_empty() {
            return Err(format!(
                "{}: no updater sets {}; add one to commandUpdated.updaters",
                self.file,
                match request {
                    UpdateRequest::Image { .. } => "images (containerImage)",
                    UpdateRequest::Policy { .. } => "policies (policy)",
                }
            ));
        }
        let export = Export::of(root)?;
        for c in commands {
            self.run(&export, config, c, &env)
                .map_err(|e| format!("{}: {e}", self.file))?;
        }
        export.copy_back(root)
    }

    /// Runs one command in the git-path; returns its stdout.
    fn run(
        &self,
        export: &Export,
        config: &GenerationConfig,
        spec: &CommandSpec,
        env: &[(&str, String)],
    ) -> Result<String, String> {
        let root = export.path();
        let dir = root.join(&self.dir);
        // An absolute tools directory: a relative one would be looked up in the repository's own tree.
        let tools = config
            .tools_dir
            .as_deref()
            .and_then(|d| d.canonicalize().ok());
        let mut cmd = crate::process::sandboxed("/bin/sh", &dir, tools.as_deref(), export.home());
        cmd.arg("-c").arg(&spec.command);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let shown = format!("`{}` (from {})", spec.command, self.file);
        let run = crate::process::Run {
            shown: shown.clone(),
            root: root.to_path_buf(),
            timeout: spec.timeout.unwrap_or(config.timeout),
        };
        let out = run.output(cmd)?;
        String::from_utf8(out).map_err(|_| format!("{shown} wrote output that is not UTF-8"))
    }
}

/// Applies every document of the patch file (absent: no patches) to the object it names, as Flux v1 did:
/// strategic merge for Kubernetes' own kinds, JSON merge for the others.
fn apply_patches(
    checkout: &crate::checkout::Checkout<'_>,
    patch_file: &str,
    objects: &mut Vec<Resource>,
) -> Result<(), Vec<FileError>> {
    if !checkout.root.join(patch_file).exists() && !checkout.root.join(patch_file).is_symlink() {
        return Ok(());
    }
    let text = checkout.read(patch_file).map_err(|message| {
        vec![FileError {
            at: Provenance {
                file: patch_file.to_owned(),
                line: 1,
            },
            message: format!("the patch file {message}"),
        }]
    })?;
    let mut patches = Vec::new();
    let mut errors = Vec::new();
    let mut not_objects = Vec::new();
    crate::yaml::parse_file(
        patch_file,
        &text,
        &mut patches,
        &mut errors,
        &mut not_objects,
    );
    errors.extend(not_objects.into_iter().map(|at| FileError {
        at,
        message: "a patch needs apiVersion, kind and metadata.name to say what it patches".into(),
    }));
    for p in &patches {
        // Matched as Flux v1 did, by namespace, kind and name: a patch written when the base said
        // `extensions/v1beta1` still applies to the `apps/v1` object the base says now.
        let same = |r: &&mut Resource| {
            r.kind() == p.kind() && r.name() == p.name() && r.namespace() == p.namespace()
        };
        let id = crate::shown_id(p);
        let Some(target) = objects.iter_mut().find(same) else {
            let elsewhere: Vec<String> = objects
                .iter()
                .filter(|r| r.kind() == p.kind() && r.name() == p.name())
                .map(|r| Shown(r.namespace().unwrap_or("<none>")).to_string())
                .collect();
            let hint = if elsewhere.is_empty() {
                "remove this patch or fix its kind, name or namespace".to_owned()
            } else {
                format!(
                    "the generators produce it in namespace {} (as written in their output); set the \
                     patch's metadata.namespace to that",
                    elsewhere.join(", ")
                )
            };
            errors.push(FileError {
                at: p.source.clone(),
                message: format!("patches {id}, which the generators do not produce; {hint}"),
            });
            continue;
        };
        // apiVersion and kind only say what is patched; the generated object keeps its own.
        let mut body = p.object.clone();
        if let Some(map) = body.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
        match patch::merge(
            &target.object,
            &body,
            patch::strategy_for(target.api_version(), target.kind()),
        ) {
            Ok(merged) => target.object = merged,
            Err(e) => errors.push(FileError {
                at: p.source.clone(),
                message: format!("cannot patch {id}: {e}"),
            }),
        }
    }
    // `$patch: delete` at the top of a patch removes the object from the output.
    objects.retain(|r| !r.object.is_null());
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
