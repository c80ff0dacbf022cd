//! Render: a checked-out tree → the list of desired objects, each with the file and line it came from.
//!
//! Reads every `*.yaml`/`*.yml` under each path, recursively and in a stable order, as multi-document YAML;
//! flattens `List` kinds; skips Helm chart directories (`Chart.yaml` + `values.yaml`) as Flux v1 did. A
//! directory holding a kustomization is built with kustomize as one unit instead ([`kustomize`]). All
//! problems in all files are gathered and reported together, so one sync shows everything to fix.

mod checkout;
mod export;
pub mod generate;
pub mod kustomize;
pub mod patch;
mod process;
mod snapshot;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path};

use serde_json::Value;
use tether_core::{Provenance, Resource};

use checkout::Checkout;
pub use generate::GenerationConfig;
use kustomize::Kustomize;
pub use kustomize::KustomizeConfig;
pub use snapshot::{Snapshot, SnapshotError};
pub use yaml::split_documents;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file, and the line of the document at fault.
    pub at: Provenance,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message may quote the repository (names, a program's stderr): no line of it is forged there.
        write!(
            f,
            "{}: {}",
            self.at,
            tether_core::report::Shown(&self.message)
        )
    }
}

/// Rendering failed; nothing from this revision may be applied.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path to render is absolute, climbs out with `..`, or does not exist.
    #[error("the path '{path}' {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Files could not be read or parsed, or define the same object twice. Every problem is listed.
    #[error("{} problem(s) in the manifests:{}", .0.len(), tether_core::report::Lines(.0))]
    Files(Vec<FileError>),
}

/// The paths a render reads: `paths`, or the repository root when none are given.
pub fn path_roots(paths: &[String]) -> Vec<String> {
    if paths.is_empty() {
        vec![String::new()]
    } else {
        paths.to_vec()
    }
}

/// Validates a path to render: relative, inside the repository.
pub fn check_path(path: &str) -> Result<(), Error> {
    let p = Path::new(path);
    let bad = |reason: &str| Error::BadPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if p.is_absolute() {
        return Err(bad(
            "is absolute; give a path relative to the repository root",
        ));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad("contains '..'; paths must stay inside the repository"));
    }
    Ok(())
}

/// Renders the objects under `paths` (relative to `root`; empty = the whole repository), building
/// kustomizations with the `kustomize` on `PATH` and no cache.
pub fn render(root: &Path, paths: &[String]) -> Result<Vec<Resource>, Error> {
    Renderer::default().render(root, paths)
}

/// How trees are rendered: kustomize, and Flux v1 manifest generation when it is on.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// How kustomization directories are built.
    pub kustomize: KustomizeConfig,
    /// `.flux.yaml` manifest generation; `None` = off (a `.flux.yaml` is reported as ignored).
    pub generation: Option<GenerationConfig>,
    /// The largest manifest file read.
    pub max_file_bytes: u64,
}

/// The default [`RenderConfig::max_file_bytes`]: well above real manifests (Flux v1's largest reported was
/// 2.7 MB), well below what hurts the agent.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 8 << 20;

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            kustomize: KustomizeConfig::default(),
            generation: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Renders trees, keeping what lasts between syncs: the kustomize builds, and which documents were already
/// reported as skipped (each is reported once, not at every sync).
#[derive(Debug)]
pub struct Renderer {
    kustomize: Kustomize,
    generation: Option<GenerationConfig>,
    max_file_bytes: u64,
    reported: std::sync::Mutex<std::collections::BTreeSet<Provenance>>,
}

/// What a render noticed and left out, for reporting once.
#[derive(Debug, Default)]
struct Notes {
    /// Documents that are not Kubernetes objects.
    skipped: Vec<Provenance>,
    /// `.flux.yaml` files found while manifest generation is off.
    ignored_configs: Vec<Provenance>,
}

impl Renderer {
    /// A renderer that builds kustomizations with these settings.
    pub fn new(kustomize: KustomizeConfig) -> Self {
        Renderer::from_config(RenderConfig {
            kustomize,
            ..RenderConfig::default()
        })
    }

    /// A renderer with these settings.
    pub fn from_config(config: RenderConfig) -> Self {
        Renderer {
            kustomize: Kustomize::new(config.kustomize),
            generation: config.generation,
            max_file_bytes: config.max_file_bytes,
            reported: Default::default(),
        }
    }

    /// Turns Flux v1 manifest generation (`.flux.yaml`) on.
    pub fn with_generation(mut self, generation: GenerationConfig) -> Self {
        self.generation = Some(generation);
        self
    }

    /// The generation settings, when manifest generation is on.
    pub fn generation(&self) -> Option<&GenerationConfig> {
        self.generation.as_ref()
    }

    /// How many kustomize builds ran (cache misses).
    pub fn kustomize_runs(&self) -> usize {
        self.kustomize.runs()
    }

    /// Renders the objects under `paths` (relative to `root`; empty = the whole repository).
    pub fn render(&self, root: &Path, paths: &[String]) -> Result<Vec<Resource>, Error> {
        let mut resources = Vec::new();
        self.render_each(root, paths, &mut |unit| resources.extend(unit))?;
        Ok(resources)
    }

    /// [`Renderer::render`], handing over the objects of each file, kustomization or generator as soon as
    /// it is rendered (in the order `render` returns them), so a caller that reduces them need not hold a
    /// whole repository's parsed manifests. On `Err`, discard what was handed over: the tree does not render.
    pub fn render_each(
        &self,
        root: &Path,
        paths: &[String],
        emit: &mut dyn FnMut(Vec<Resource>),
    ) -> Result<(), Error> {
        let mut notes = Notes::default();
        let out = render_with(root, paths, self, &mut notes, emit);
        self.report(notes);
        out
    }

    /// Logs what a render left out, each document once per renderer.
    fn report(&self, notes: Notes) {
        if let Ok(mut reported) = self.reported.lock() {
            for at in notes.skipped {
                if reported.insert(at.clone()) {
                    tracing::info!(component = "render", source = %at,
                        "skipped: a document with neither apiVersion nor kind is not a Kubernetes object");
                }
            }
            for at in notes.ignored_configs {
                if reported.insert(at.clone()) {
                    tracing::info!(component = "render", source = %at.file,
                        "ignored: manifest generation is off, so the files are read as they are; turn it on \
                         to run this .flux.yaml");
                }
            }
        }
    }
}

impl Renderer {
    /// Renders only `files` (repository-relative: a commit's changed files), without walking the tree, when
    /// each that a render of `paths` reads is a plain manifest read as it is: a regular `.yaml`/`.yml` file
    /// under a path, with no kustomization or chart above it, in a repository this renderer has never built
    /// with kustomize or generated manifests for. Files a render does not read (outside the paths, not
    /// YAML) are passed over. `None` when that does not hold (render everything).
    pub fn render_changed(
        &self,
        root: &Path,
        paths: &[String],
        files: &[String],
    ) -> Option<Result<Vec<Resource>, Error>> {
        if self.kustomize_runs() > 0 {
            return None;
        }
        let roots = path_roots(paths);
        if self.generation.is_some() && roots.iter().any(|p| generate::locate(root, p).is_some()) {
            return None;
        }
        let checkout = Checkout::new(root, self.max_file_bytes).ok()?;
        let mut resources = Vec::new();
        let mut errors = Vec::new();
        let mut skipped = Vec::new();
        for rel in files {
            let under = roots.iter().any(|r| {
                r.is_empty()
                    || rel
                        .strip_prefix(r.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            });
            let name = rel.rsplit('/').next().unwrap_or("");
            let manifest = name.ends_with(".yaml") || name.ends_with(".yml");
            if roots.iter().any(|r| r == rel) || name == "Kustomization" {
                // A git-path that is itself the file, or a kustomization by its other name.
                return None;
            }
            if !under || !manifest {
                // Not read by a render of the paths (a `.flux.yaml` above them was looked for above).
                continue;
            }
            let path = root.join(rel);
            let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
            if name == generate::CONFIG_FILE || !regular {
                return None;
            }
            // A kustomization or chart above the file makes it part of a build, not a manifest of its own;
            // a link on the way makes its path one the walk would not use.
            let mut dir = path.parent();
            while let Some(d) = dir {
                if d.starts_with(root) && d != root {
                    let link =
                        std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink());
                    if link
                        || kustomize::kustomization_file(d).is_some()
                        || d.join("Chart.yaml").is_file()
                    {
                        return None;
                    }
                    dir = d.parent();
                } else {
                    break;
                }
            }
            if kustomize::kustomization_file(root).is_some() {
                return None;
            }
            match checkout.read(rel) {
                Ok(text) => yaml::parse_file(rel, &text, &mut resources, &mut errors, &mut skipped),
                Err(message) => errors.push(FileError {
                    at: Provenance {
                        file: rel.clone(),
                        line: 1,
                    },
                    message,
                }),
            }
        }
        check_duplicates(&resources, &mut errors);
        Some(if errors.is_empty() {
            Ok(resources)
        } else {
            Err(Error::Files(errors))
        })
    }
}

/// Every manifest file (repository-relative, sorted) a render of `paths` reads as written: the plain files,
/// and the resource and patch files of each kustomization (its bases included). Generated output is not a
/// file; a `.flux.yaml` git-path contributes what kustomizations and files lie under it.
pub fn source_files(root: &Path, paths: &[String]) -> Result<Vec<String>, Error> {
    let mut units = Vec::new();
    let mut errors = Vec::new();
    let roots = path_roots(paths);
    let checkout =
        Checkout::new(root, DEFAULT_MAX_FILE_BYTES).map_err(|reason| Error::BadPath {
            path: String::new(),
            reason,
        })?;
    for path in &roots {
        let dir = git_path(&checkout, path)?;
        collect_units(&checkout, &dir, &mut units, &mut errors);
    }
    if !errors.is_empty() {
        return Err(Error::Files(errors));
    }
    let mut files = std::collections::BTreeSet::new();
    for unit in units {
        match unit {
            Unit::File(f) => {
                files.insert(f);
            }
            Unit::Kustomization(dir) => {
                let local = kustomize::local_files(root, &dir).map_err(|message| {
                    Error::Files(vec![FileError {
                        at: Provenance {
                            file: dir.clone(),
                            line: 1,
                        },
                        message,
                    }])
                })?;
                files.extend(local.into_iter().map(|l| l.file));
            }
        }
    }
    Ok(files.into_iter().collect())
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::from_config(RenderConfig::default())
    }
}

/// One thing to read: a manifest file, or a kustomization directory built as a whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    File(String),
    Kustomization(String),
}

/// Renders the objects under `paths`, building kustomizations with `kustomize`; documents that are not
/// Kubernetes objects at all (neither apiVersion nor kind) are left out and listed in `skipped`.
fn render_with(
    root: &Path,
    paths: &[String],
    renderer: &Renderer,
    notes: &mut Notes,
    emit: &mut dyn FnMut(Vec<Resource>),
) -> Result<(), Error> {
    let kustomize = &renderer.kustomize;
    let checkout =
        Checkout::new(root, renderer.max_file_bytes).map_err(|reason| Error::BadPath {
            path: String::new(),
            reason,
        })?;
    let mut units = Vec::new();
    let mut generated = Vec::new();
    let mut errors = Vec::new();
    let roots = path_roots(paths);
    for path in &roots {
        let dir = git_path(&checkout, path)?;
        match &renderer.generation {
            Some(_) => match generate::find(root, path) {
                Ok(Some(config)) if config.mode != generate::Mode::Scan => {
                    generated.push(config);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            },
            None => {
                if let Some(file) = generate::locate(root, path) {
                    notes.ignored_configs.push(Provenance { file, line: 1 });
                }
            }
        }
        collect_units(&checkout, &dir, &mut units, &mut errors);
    }
    units.sort();
    units.dedup();

    let mut duplicates = Duplicates::default();
    let mut hand_over = |unit: Vec<Resource>, errors: &mut Vec<FileError>| {
        duplicates.check(&unit, errors);
        emit(unit);
    };
    for unit in &units {
        match unit {
            Unit::File(rel) => match checkout.read(rel) {
                Ok(text) => {
                    let mut resources = Vec::new();
                    yaml::parse_file(rel, &text, &mut resources, &mut errors, &mut notes.skipped);
                    hand_over(resources, &mut errors);
                }
                Err(message) => errors.push(FileError {
                    at: Provenance {
                        file: rel.clone(),
                        line: 1,
                    },
                    message,
                }),
            },
            Unit::Kustomization(rel) => match kustomize.build(&checkout, rel) {
                Ok(built) => hand_over(built, &mut errors),
                Err(e) => errors.extend(e),
            },
        }
    }
    let generation = renderer.generation.clone().unwrap_or_default();
    for config in &generated {
        match config.generate_in(&checkout, &generation) {
            Ok(built) => hand_over(built, &mut errors),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort_by(|a, b| a.at.cmp(&b.at));
        Err(Error::Files(errors))
    }
}

/// Checks a git-path: relative, inside the repository (also through links), present in this revision.
fn git_path(checkout: &Checkout<'_>, path: &str) -> Result<std::path::PathBuf, Error> {
    check_path(path)?;
    let dir = checkout.root.join(path);
    if !dir.exists() {
        return Err(Error::BadPath {
            path: path.to_owned(),
            reason: "does not exist in this revision of the repository".into(),
        });
    }
    checkout.resolve(path).map_err(|reason| Error::BadPath {
        path: path.to_owned(),
        reason,
    })?;
    Ok(dir)
}

/// Walks `dir`, collecting `*.yaml`/`*.yml` files and kustomization directories (not walked further)
/// relative to the checkout; skips `.git` and Helm chart directories. A path that is itself a file is taken
/// whatever its name. Links are followed only to places inside the checkout (others are reported, naming
/// the link); directory loops through links are reported, never walked twice.
fn collect_units(
    checkout: &Checkout<'_>,
    dir: &Path,
    out: &mut Vec<Unit>,
    errors: &mut Vec<FileError>,
) {
    let root = checkout.root;
    let is_chart = |p: &Path| p.join("Chart.yaml").is_file() && p.join("values.yaml").is_file();
    let mut kustomizations = Vec::new();
    let mut refused = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            if e.file_name() == ".git" {
                return false;
            }
            if e.file_name().to_str().is_none() && (e.file_type().is_dir() || is_manifest_name(e)) {
                refused.push(FileError {
                    at: Provenance {
                        file: e
                            .path()
                            .strip_prefix(root)
                            .unwrap_or(e.path())
                            .to_string_lossy()
                            .into_owned(),
                        line: 1,
                    },
                    message: "has a name that is not UTF-8 (shown with \u{fffd} for the bytes that are not); \
                              tether names every file it reads in its messages: rename it"
                        .into(),
                });
                return false;
            }
            if !e.file_type().is_dir() {
                return true;
            }
            if e.path_is_symlink() || e.depth() == 0 {
                if let Some(rel) = relative(root, e.path()) {
                    if let Err(message) = checkout.resolve(&rel) {
                        refused.push(FileError {
                            at: Provenance { file: rel, line: 1 },
                            message,
                        });
                        return false;
                    }
                }
            }
            if kustomize::kustomization_file(e.path()).is_some() {
                kustomizations.push(e.path().to_path_buf());
                return false;
            }
            !is_chart(e.path())
        });
    for entry in walk {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let file = relative(root, e.path().unwrap_or(dir)).unwrap_or_default();
                // A link to an ancestor of the checkout is a loop to walkdir, but first it leaves the checkout.
                let message = match checkout.resolve(&file) {
                    Err(outside) if !outside.starts_with("cannot resolve") => outside,
                    _ => walk_problem(root, &e),
                };
                errors.push(FileError {
                    at: Provenance { file, line: 1 },
                    message,
                });
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        if entry.depth() > 0 && entry.file_name() == generate::CONFIG_FILE {
            continue;
        }
        if entry.depth() == 0 || is_manifest_name(&entry) {
            // Devices, pipes and links out of the checkout are named by the read, never opened blindly.
            if let Some(rel) = relative(root, entry.path()) {
                out.push(Unit::File(rel));
            }
        }
    }
    errors.append(&mut refused);
    out.extend(
        kustomizations
            .iter()
            .filter_map(|k| relative(root, k))
            .map(Unit::Kustomization),
    );
}

/// True for `*.yaml` and `*.yml`, whatever the rest of the name is made of.
fn is_manifest_name(e: &walkdir::DirEntry) -> bool {
    let name = e.file_name().as_encoded_bytes();
    name.ends_with(b".yaml") || name.ends_with(b".yml")
}

/// What a walk error means to whoever wrote the repository, without the agent's own paths.
fn walk_problem(root: &Path, e: &walkdir::Error) -> String {
    if let Some(ancestor) = e.loop_ancestor() {
        let shown = relative(root, ancestor)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "the repository root".into());
        return format!(
            "is a link to {shown}, a directory it is itself in (a loop); remove the link"
        );
    }
    let is_link = e.path().is_some_and(|p| p.is_symlink());
    match (e.io_error().map(std::io::Error::kind), is_link) {
        (Some(std::io::ErrorKind::NotFound), true) => {
            let target = e
                .path()
                .and_then(|p| std::fs::read_link(p).ok())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!(
                "is a link to '{}', which does not exist in this revision; remove the link or commit what it \
                 points to",
                tether_core::report::Shown(&target)
            )
        }
        (Some(kind), _) => format!("cannot list: {kind}"),
        (None, _) => format!("cannot list: {e}"),
    }
}

fn relative(root: &Path, p: &Path) -> Option<String> {
    let rel = p.strip_prefix(root).ok()?;
    Some(
        rel.components()
            .filter_map(|c| c.as_os_str().to_str())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// Two documents that define the same object (as written: apiVersion group, kind, namespace, name).
/// A resource's id as a message shows it: a name from the repository may hold a newline that would
/// otherwise start a forged line of output.
fn shown_id(r: &Resource) -> String {
    let id = tether_core::ObjectId::new(r.api_version(), r.kind(), r.namespace(), r.name());
    tether_core::report::Shown(&id.to_string()).to_string()
}

fn check_duplicates(resources: &[Resource], errors: &mut Vec<FileError>) {
    Duplicates::default().check(resources, errors);
}

/// The objects seen so far in a render, by group, kind, namespace and name, to report any defined twice.
#[derive(Default)]
struct Duplicates(BTreeMap<(String, String, Option<String>, String), Provenance>);

impl Duplicates {
    fn check(&mut self, resources: &[Resource], errors: &mut Vec<FileError>) {
        for r in resources {
            let key = (
                tether_core::id::group_of(r.api_version()).to_owned(),
                r.kind().to_owned(),
                r.namespace().map(str::to_owned),
                r.name().to_owned(),
            );
            if let Some(first) = self.0.get(&key) {
                let id = shown_id(r);
                errors.push(FileError {
                    at: r.source.clone(),
                    message: format!(
                        "duplicate object {id}: also defined at {first}; remove one of them"
                    ),
                });
            } else {
                self.0.insert(key, r.source.clone());
            }
        }
    }
}

/// True when `kind` is a list wrapper (`List`, `ConfigMapList`, ...) whose `items` must be flattened.
fn is_list(object: &Value) -> bool {
    object
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && object.get("items").is_some_and(Value::is_array)
}

#[cfg(test)]
mod tests;
