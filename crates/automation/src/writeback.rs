//! Writing a change to a workload where the user keeps it: the manifest file for plain YAML; the
//! kustomization's `images:` entry (or the file defining the container) for a kustomize directory; the patch
//! file for a `.flux.yaml` with `patchUpdated`; the updaters for `commandUpdated`. Every edit is
//! byte-preserving, and the tree is rendered again afterwards: a change that does not show in the rendered
//! workload (a later patch or overlay overrides it) is refused, so nothing is committed that does not deploy.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tether_core::id::group_of;
use tether_core::{policy, ObjectId, Resource};
use tether_render::generate::{self, FluxConfig, Mode, UpdateRequest};
use tether_render::kustomize::{self, Role};
use tether_render::Renderer;

use crate::workload::{workloads, Workload};
use crate::yaml_edit::{self, EditError, Target};

/// One change to a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set a container's image.
    Image {
        /// The container (or init container).
        container: String,
        /// The full new image reference.
        image: String,
    },
    /// Set a policy (`automated`, `locked`, `tag.web`, ...) to a value.
    SetPolicy {
        /// The policy name, without prefix.
        name: String,
        /// Its value.
        value: String,
    },
    /// Remove a policy under every prefix it is read from.
    RemovePolicy {
        /// The policy name, without prefix.
        name: String,
    },
}

/// How a repository renders: the same for every checkout of it.
#[derive(Debug, Clone, Copy)]
pub struct Paths<'a> {
    /// The git-paths rendered.
    pub paths: &'a [String],
    /// The renderer of the sync (kustomize and manifest generation settings).
    pub renderer: &'a Renderer,
    /// Namespace of namespaced objects written without one.
    pub default_namespace: &'a str,
}

/// A checked-out tree and how it renders.
#[derive(Debug, Clone, Copy)]
pub struct Tree<'a> {
    /// The checkout (a worktree tether may edit).
    pub root: &'a Path,
    /// How it renders.
    pub at: Paths<'a>,
}

impl Tree<'_> {
    fn render(&self) -> Result<Vec<Resource>, tether_render::Error> {
        self.at.renderer.render(self.root, self.at.paths)
    }
}

/// A change could not be written; the tree is as it was for that file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The edit was refused (the workload moved, or its YAML cannot be edited safely in place).
    #[error("{file}: {source}")]
    Edit {
        /// The file.
        file: String,
        /// Why the editor refused.
        #[source]
        source: EditError,
    },
    /// The tree does not render (before or after the change).
    #[error(transparent)]
    Render(#[from] tether_render::Error),
    /// The workload is not in the rendered tree.
    #[error("{0} is not defined under the synced paths")]
    NoWorkload(String),
    /// tether cannot tell which file to change, or a command refused the change.
    #[error("{workload}: {reason}")]
    Refused {
        /// The workload.
        workload: String,
        /// What is in the way, and what the user can do.
        reason: String,
    },
    /// The edit was made but the rendered workload does not show it.
    #[error(
        "{workload}: after writing {change} into {file}, the rendered workload still has {found}; something \
         applied later (an overlay, a patch, an updater) overrides it, so nothing was committed"
    )]
    NotEffective {
        /// The workload.
        workload: String,
        /// The change, as a person would say it.
        change: String,
        /// Where it was written.
        file: String,
        /// What the workload has instead.
        found: String,
    },
}

impl Change {
    fn describe(&self) -> String {
        match self {
            Change::Image { container, image } => {
                format!("image {image} for container {container}")
            }
            Change::SetPolicy { name, value } => format!("policy {name}={value}"),
            Change::RemovePolicy { name } => format!("the removal of policy {name}"),
        }
    }

    /// What the workload shows now for this change, when it does not show the change.
    fn missing_in(&self, w: &Workload) -> Option<String> {
        match self {
            Change::Image { container, image } => {
                let now = w
                    .containers
                    .iter()
                    .find(|c| &c.name == container)
                    .map(|c| c.image.clone());
                (now.as_deref() != Some(image.as_str()))
                    .then(|| format!("image {}", now.unwrap_or_else(|| "none".into())))
            }
            Change::SetPolicy { name, value } => {
                let now = policy::get(w.annotations(), name);
                (now != Some(value.as_str()))
                    .then(|| format!("{name}={}", now.unwrap_or("<unset>")))
            }
            Change::RemovePolicy { name } => {
                policy::get(w.annotations(), name).map(|v| format!("{name}={v}"))
            }
        }
    }
}

/// What [`write`] changed.
#[derive(Debug, Default)]
pub struct Written {
    /// The files changed (repository-relative), in the order first changed.
    pub files: Vec<String>,
    /// The changes that were needed and made, per workload (a change the tree already shows is left out).
    pub applied: Vec<(ObjectId, Change)>,
    /// Workloads whose changes were not made, and why; their files are as they were.
    pub refused: Vec<(ObjectId, WriteError)>,
}

/// The files one workload's changes touched, with what they held before, so a refused change is undone.
#[derive(Debug, Default)]
struct Backup(BTreeMap<String, Option<Vec<u8>>>);

impl Backup {
    /// Remembers `file` as it is now, before its first change.
    fn save(&mut self, root: &Path, file: &str) {
        self.0
            .entry(file.to_owned())
            .or_insert_with(|| std::fs::read(root.join(file)).ok());
    }

    fn files(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    /// Puts every file back as it was.
    fn restore(self, root: &Path) {
        for (file, old) in self.0 {
            let path = root.join(&file);
            let undone = match old {
                Some(bytes) => std::fs::write(&path, bytes),
                None => std::fs::remove_file(&path),
            };
            if let Err(e) = undone {
                tracing::warn!(component = "automation", file = %file, error = %e,
                    "cannot undo a refused change; the worktree is reset before its next use");
            }
        }
    }
}

/// Writes each workload's changes into the tree, each where the user keeps it, one workload at a time: after
/// each, the tree is rendered again, and the workload must show every change while no other object may
/// differ (a kustomization `images:` entry shared with a locked workload, a base other overlays use). A
/// workload that fails either check has its files put back and is listed in [`Written::refused`]; the others
/// go ahead.
///
/// # Errors
/// Only when the tree does not render before any change.
pub fn write(tree: &Tree<'_>, changes: &[(ObjectId, Vec<Change>)]) -> Result<Written, WriteError> {
    let mut current = tree.render()?;
    let mut written = Written::default();
    for (id, list) in changes {
        let mut backup = Backup::default();
        match write_workload(tree, &current, id, list, &mut backup) {
            Ok(None) => {}
            Ok(Some((after, applied))) => {
                current = after;
                for file in backup.files() {
                    if !written.files.contains(file) {
                        written.files.push(file.clone());
                    }
                }
                written
                    .applied
                    .extend(applied.into_iter().map(|c| (id.clone(), c)));
            }
            Err(e) => {
                backup.restore(tree.root);
                written.refused.push((id.clone(), e));
            }
        }
    }
    Ok(written)
}

/// The tree rendered after a workload's changes, and the changes made.
type Made = (Vec<Resource>, Vec<Change>);

/// One workload's changes against the rendered tree `current`; the new render and the changes made, or
/// `None` when it already shows them all.
fn write_workload(
    tree: &Tree<'_>,
    current: &[Resource],
    id: &ObjectId,
    list: &[Change],
    backup: &mut Backup,
) -> Result<Option<Made>, WriteError> {
    let w = find(current, tree.at.default_namespace, id)?;
    let pending: Vec<Change> = list
        .iter()
        .filter(|c| c.missing_in(&w).is_some())
        .cloned()
        .collect();
    if pending.is_empty() {
        return Ok(None);
    }
    for change in &pending {
        write_one(tree, &w, change, backup)?;
    }
    let after = tree.render()?;
    let now = find(&after, tree.at.default_namespace, id)?;
    let files = || backup.files().cloned().collect::<Vec<_>>().join(", ");
    for change in &pending {
        if let Some(found) = change.missing_in(&now) {
            return Err(WriteError::NotEffective {
                workload: id.to_string(),
                change: change.describe(),
                file: files(),
                found,
            });
        }
    }
    if let Some(other) = first_other_change(current, &after, tree.at.default_namespace, id) {
        return Err(WriteError::Refused {
            workload: id.to_string(),
            reason: format!(
                "writing it into {} would also change {other}, so nothing was written; give {id} a setting \
                 of its own (an overlay patch or images: entry only it uses)",
                files()
            ),
        });
    }
    Ok(Some((after, pending)))
}

/// An object other than `id` that differs between two renders (or is in only one), if any.
fn first_other_change(
    before: &[Resource],
    after: &[Resource],
    default_namespace: &str,
    id: &ObjectId,
) -> Option<String> {
    let key = |r: &Resource| {
        ObjectId::new(
            r.api_version(),
            r.kind(),
            Some(r.namespace().unwrap_or(default_namespace)),
            r.name(),
        )
    };
    let map = |rs: &[Resource]| -> BTreeMap<ObjectId, Value> {
        rs.iter()
            .map(|r| (key(r), r.object.clone()))
            .filter(|(k, _)| !same(k, id))
            .collect()
    };
    let (a, b) = (map(before), map(after));
    a.iter()
        .find(|(k, v)| b.get(*k) != Some(*v))
        .or_else(|| b.iter().find(|(k, _)| !a.contains_key(*k)))
        .map(|(k, _)| k.to_string())
}

fn find(
    resources: &[Resource],
    default_namespace: &str,
    id: &ObjectId,
) -> Result<Workload, WriteError> {
    workloads(resources, default_namespace)
        .into_iter()
        .find(|w| same(&w.id, id))
        .ok_or_else(|| WriteError::NoWorkload(id.to_string()))
}

/// Ids compared as a person names a workload: the group only when both know it.
fn same(a: &ObjectId, b: &ObjectId) -> bool {
    a.matches(b) || b.matches(a)
}

/// Writes one change, saving each file in `backup` before it changes.
fn write_one(
    tree: &Tree<'_>,
    w: &Workload,
    change: &Change,
    backup: &mut Backup,
) -> Result<(), WriteError> {
    let source = &w.source.file;
    if source.rsplit('/').next() == Some(generate::CONFIG_FILE) {
        let config = config_for(tree, w)?;
        return match &config.mode {
            Mode::Patch { .. } => {
                let file = config
                    .patch_file()
                    .ok_or_else(|| refused(w, "the patch file is outside the repository"))?;
                edit_patch_file(tree, w, &file, change, backup)
            }
            Mode::Commands { .. } => run_updaters(tree, w, &config, change, backup),
            Mode::Scan => Err(refused(w, "its .flux.yaml generates nothing")),
        };
    }
    if kustomize::is_kustomization_file(source) {
        let dir = source.rsplit_once('/').map_or("", |(d, _)| d);
        return edit_kustomization(tree, w, dir, change, backup);
    }
    let target = Target::new(w.id.clone()).with_default_namespace(tree.at.default_namespace);
    edit_file(tree.root, source, backup, |text| {
        apply(text, &target, change)
    })
}

fn refused(w: &Workload, reason: impl Into<String>) -> WriteError {
    WriteError::Refused {
        workload: w.id.to_string(),
        reason: reason.into(),
    }
}

/// The `.flux.yaml` configuration that generated `w`: of the git-path whose generated output holds it.
fn config_for(tree: &Tree<'_>, w: &Workload) -> Result<FluxConfig, WriteError> {
    let mut candidates = Vec::new();
    for path in tether_render::path_roots(tree.at.paths) {
        match generate::find(tree.root, &path) {
            Ok(Some(c)) if c.file == w.source.file => candidates.push(c),
            Ok(_) => {}
            Err(e) => return Err(tether_render::Error::Files(vec![e]).into()),
        }
    }
    if candidates.len() > 1 {
        // Several git-paths share the .flux.yaml: the one whose output holds the workload is the one.
        let generation = tree.at.renderer.generation().cloned().unwrap_or_default();
        let mut failures = Vec::new();
        let mut holding = Vec::new();
        for c in candidates {
            match c.generate(tree.root, &generation) {
                Ok(out) => {
                    if workloads(&out, tree.at.default_namespace)
                        .iter()
                        .any(|o| same(&o.id, &w.id))
                    {
                        holding.push(c);
                    }
                }
                Err(e) => failures.extend(e),
            }
        }
        if holding.is_empty() && !failures.is_empty() {
            return Err(tether_render::Error::Files(failures).into());
        }
        candidates = holding;
    }
    candidates
        .into_iter()
        .next()
        .ok_or_else(|| refused(w, format!("no synced path uses {}", w.source.file)))
}

/// The text with `change` made to `target`'s document.
fn apply(text: &str, target: &Target, change: &Change) -> Result<String, EditError> {
    match change {
        Change::Image { container, image } => yaml_edit::set_image(text, target, container, image),
        Change::SetPolicy { name, value } => yaml_edit::set_policy(text, target, name, value),
        Change::RemovePolicy { name } => yaml_edit::remove_policy(text, target, name),
    }
}

fn io_error(file: &str) -> impl Fn(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        file: file.to_owned(),
        source,
    }
}

/// Writes `text` to `file` (creating its directory), saved in `backup` first.
fn store(root: &Path, file: &str, text: &str, backup: &mut Backup) -> Result<(), WriteError> {
    backup.save(root, file);
    let path = root.join(file);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(file))?;
    }
    std::fs::write(&path, text).map_err(io_error(file))
}

/// Reads `file`, edits it with `f` and writes it back when it changed.
fn edit_file(
    root: &Path,
    file: &str,
    backup: &mut Backup,
    f: impl FnOnce(&str) -> Result<String, EditError>,
) -> Result<(), WriteError> {
    let text = std::fs::read_to_string(root.join(file)).map_err(io_error(file))?;
    let edited = f(&text).map_err(|source| WriteError::Edit {
        file: file.to_owned(),
        source,
    })?;
    if edited != text {
        store(root, file, &edited, backup)?;
    }
    Ok(())
}

/// `patchUpdated`: the workload's entry in the patch file gets the change; a workload without an entry gets
/// one, an entry without the container gets the container (the file is created when absent).
fn edit_patch_file(
    tree: &Tree<'_>,
    w: &Workload,
    file: &str,
    change: &Change,
    backup: &mut Backup,
) -> Result<(), WriteError> {
    let text = match std::fs::read_to_string(tree.root.join(file)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_error(file)(e)),
    };
    let target = Target::new(w.id.clone()).with_default_namespace(tree.at.default_namespace);
    let edited = match apply(&text, &target, change) {
        Ok(t) => t,
        Err(EditError::NotFound { .. }) => match change {
            // Nothing to remove from a patch that does not exist.
            Change::RemovePolicy { .. } => return Ok(()),
            _ => append_document(&text, &patch_document(w, change))
                .map_err(|reason| refused(w, format!("{file}: {reason}")))?,
        },
        Err(EditError::ContainerNotFound { .. } | EditError::NoPodSpec { .. }) => {
            let Change::Image { container, image } = change else {
                return Err(refused(
                    w,
                    format!("{file}: the entry has no such container"),
                ));
            };
            add_container(&text, &target, w, container, image)
                .map_err(|reason| refused(w, format!("{file}: {reason}")))?
        }
        Err(source) => {
            return Err(WriteError::Edit {
                file: file.to_owned(),
                source,
            })
        }
    };
    if edited != text {
        store(tree.root, file, &edited, backup)?;
    }
    Ok(())
}

/// Where `container` lives in `w`: `containers` or `initContainers`.
fn list_of(w: &Workload, container: &str) -> &'static str {
    if w.containers.iter().any(|c| c.name == container && c.init) {
        "initContainers"
    } else {
        "containers"
    }
}

/// A new patch-file document holding only `change` for `w`, as Flux v1 wrote them.
fn patch_document(w: &Workload, change: &Change) -> Value {
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), Value::from(w.id.name.clone()));
    if let Some(ns) = w
        .object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        metadata.insert("namespace".into(), Value::from(ns));
    }
    let mut doc = serde_json::json!({
        "apiVersion": w.object.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": w.object.get("kind").cloned().unwrap_or(Value::Null),
    });
    match change {
        Change::SetPolicy { name, value } => {
            let key = format!("{}{name}", policy::prefix_in_use(w.annotations()));
            metadata.insert("annotations".into(), serde_json::json!({ key: value }));
        }
        Change::Image { container, image } => {
            insert_container(&mut doc, w, container, image);
        }
        Change::RemovePolicy { .. } => {}
    }
    if let Some(d) = doc.as_object_mut() {
        d.insert("metadata".into(), Value::Object(metadata));
    }
    doc
}

/// Adds `{name: container, image}` to the pod spec of patch document `doc`, creating the path.
fn insert_container(doc: &mut Value, w: &Workload, container: &str, image: &str) {
    let mut at = doc;
    for key in tether_core::workload::pod_spec_path(&w.id.kind).unwrap_or(&[]) {
        if !at.get(*key).is_some_and(Value::is_object) {
            if let Some(map) = at.as_object_mut() {
                map.insert((*key).to_owned(), Value::Object(serde_json::Map::new()));
            }
        }
        let Some(next) = at.get_mut(*key) else {
            return;
        };
        at = next;
    }
    let Some(spec) = at.as_object_mut() else {
        return;
    };
    let list = spec
        .entry(list_of(w, container))
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(items) = list.as_array_mut() {
        items.push(serde_json::json!({"name": container, "image": image}));
    }
}

/// `text` with the entry of `target` rewritten to also set `container`'s image. Only that document's bytes
/// change (its comments are lost: it is written anew); every other document stays as it was.
fn add_container(
    text: &str,
    target: &Target,
    w: &Workload,
    container: &str,
    image: &str,
) -> Result<String, String> {
    let docs = tether_render::split_documents(text);
    let mut found = None;
    for (_, doc) in &docs {
        let value: Value =
            tether_render::yaml::from_str(doc).map_err(|e| format!("not valid YAML: {e}"))?;
        if target.matches(&value) {
            if found.is_some() {
                return Err(format!(
                    "{target} has more than one entry; remove the duplicates"
                ));
            }
            found = Some((*doc, value));
        }
    }
    let Some((doc, mut value)) = found else {
        return Err(format!("{target} has no entry"));
    };
    insert_container(&mut value, w, container, image);
    let start = doc.as_ptr() as usize - text.as_ptr() as usize;
    let eol = if doc.contains("\r\n") { "\r\n" } else { "\n" };
    let body = serde_saphyr::to_string(&value)
        .map_err(|e| format!("cannot write the entry: {e}"))?
        .replace('\n', eol);
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(&text[..start]);
    out.push_str(&body);
    out.push_str(&text[start + doc.len()..]);
    Ok(out)
}

/// `text` with `doc` added as its last document.
fn append_document(text: &str, doc: &Value) -> Result<String, String> {
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let body = serde_saphyr::to_string(doc)
        .map_err(|e| format!("cannot write the entry: {e}"))?
        .replace('\n', eol);
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(eol);
    }
    out.push_str("---");
    out.push_str(eol);
    out.push_str(&body);
    Ok(out)
}

/// `commandUpdated`: the updaters make the change, with Flux v1's environment.
fn run_updaters(
    tree: &Tree<'_>,
    w: &Workload,
    config: &FluxConfig,
    change: &Change,
    backup: &mut Backup,
) -> Result<(), WriteError> {
    let generation = tree.at.renderer.generation().cloned().unwrap_or_default();
    let ns =
        w.id.namespace
            .as_deref()
            .unwrap_or(tree.at.default_namespace);
    let workload = (ns, w.id.kind.as_str(), w.id.name.as_str());
    let (image_name, tag);
    let request = match change {
        Change::Image { container, image } => {
            (image_name, tag) = crate::run::split_tag(image);
            UpdateRequest::Image {
                container,
                image: image_name,
                tag: tag.unwrap_or_default(),
            }
        }
        Change::SetPolicy { name, value } => UpdateRequest::Policy {
            name,
            value: Some(value),
        },
        Change::RemovePolicy { name } => UpdateRequest::Policy { name, value: None },
    };
    let changed = config
        .update(tree.root, &generation, workload, &request)
        .map_err(|reason| refused(w, reason))?;
    for (file, old) in changed {
        backup.0.entry(file).or_insert(old);
    }
    Ok(())
}

/// A kustomize directory without `.flux.yaml`: an image goes into the overlay's own `images:` entry that
/// sets it, else into the overlay's own file defining the container; a policy into the overlay's own patch
/// or resource file. Never into a base: other overlays share it.
fn edit_kustomization(
    tree: &Tree<'_>,
    w: &Workload,
    dir: &str,
    change: &Change,
    backup: &mut Backup,
) -> Result<(), WriteError> {
    let fail = |reason: String| refused(w, reason);
    let shown = if dir.is_empty() { "." } else { dir };
    match change {
        Change::Image { container, image } => {
            let current = w
                .containers
                .iter()
                .find(|c| &c.name == container)
                .map(|c| c.image.as_str())
                .unwrap_or_default();
            let (repo, _) = crate::run::split_tag(current);
            let entries = kustomize::image_entries(tree.root, dir).map_err(fail)?;
            if let Some(entry) = entries.iter().find(|e| e.produces() == repo) {
                let own = entry.file.rsplit_once('/').map_or("", |(d, _)| d) == dir;
                if !own {
                    return Err(fail(format!(
                        "its image is set by images[{}] of {}, which other overlays may share; add an images: \
                         entry for {} to {shown}'s kustomization and tether keeps it up to date",
                        entry.index, entry.file, entry.name
                    )));
                }
                if entry.digest.is_some() {
                    return Err(fail(format!(
                        "{} pins {repo} by digest (images[{}]); remove the digest to let tether set a tag",
                        entry.file, entry.index
                    )));
                }
                let (new_repo, new_tag) = crate::run::split_tag(image);
                if new_repo != repo {
                    return Err(fail(format!(
                        "{} sets {repo}, not {new_repo}; change newName there by hand",
                        entry.file
                    )));
                }
                let label = entry.file.clone();
                return edit_file(tree.root, &entry.file, backup, |text| {
                    yaml_edit::set_list_entry(
                        text,
                        &label,
                        "images",
                        entry.index,
                        "newTag",
                        new_tag.unwrap_or_default(),
                    )
                });
            }
            let (file, doc) = defining_file(
                tree,
                w,
                dir,
                |doc| {
                    tether_core::workload::pod_spec(doc).is_some_and(|spec| {
                        ["containers", "initContainers"].iter().any(|list| {
                            spec.get(*list).and_then(Value::as_array).is_some_and(|cs| {
                                cs.iter().any(|c| {
                                    c.get("name").and_then(Value::as_str) == Some(container)
                                        && c.get("image").and_then(Value::as_str) == Some(current)
                                })
                            })
                        })
                    })
                },
                |f| f.role == Role::Resource && f.own,
            )
            .map_err(|_| {
                fail(format!(
                    "no file of {shown}'s own kustomization sets its image (a base other overlays may share \
                     does); add an images: entry for it to {shown}'s kustomization and tether keeps it up to date"
                ))
            })?;
            let target = written_target(&doc);
            edit_file(tree.root, &file, backup, |text| {
                apply(text, &target, change)
            })
        }
        Change::SetPolicy { .. } | Change::RemovePolicy { .. } => {
            let (file, doc) = defining_file(tree, w, dir, |_| true, |f| f.own).map_err(|_| {
                fail(format!(
                    "it is built by kustomize in {shown} from files other overlays may share; add a patch for \
                     it to that kustomization (patchesStrategicMerge) and tether writes its policies there"
                ))
            })?;
            let target = written_target(&doc);
            edit_file(tree.root, &file, backup, |text| {
                apply(text, &target, change)
            })
        }
    }
}

/// The target of a document as it is written in its own file (kustomize may give it a namespace later).
fn written_target(doc: &Value) -> Target {
    let s = |p: &str| doc.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let ns = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    Target::new(ObjectId::new(
        s("/apiVersion"),
        s("/kind"),
        ns,
        s("/metadata/name"),
    ))
}

/// The one local file of the kustomization that holds a document for `w` (same kind and group; the name as
/// written, which kustomize may prefix or suffix) passing `doc_ok`, among files passing `file_ok`, the
/// overlay's own files first. Returns the file and the document.
fn defining_file(
    tree: &Tree<'_>,
    w: &Workload,
    dir: &str,
    doc_ok: impl Fn(&Value) -> bool,
    file_ok: impl Fn(&kustomize::LocalFile) -> bool,
) -> Result<(String, Value), WriteError> {
    let files = kustomize::local_files(tree.root, dir).map_err(|r| refused(w, r))?;
    let mut found: BTreeMap<u8, Vec<(String, Value)>> = BTreeMap::new();
    for f in files.iter().filter(|f| file_ok(f)) {
        let Ok(text) = std::fs::read_to_string(tree.root.join(&f.file)) else {
            continue;
        };
        let Ok(docs): Result<Vec<Value>, _> = tether_render::yaml::from_str_multiple(&text) else {
            continue;
        };
        for doc in docs {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let api = doc
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !kind.eq_ignore_ascii_case(&w.id.kind)
                || name.is_empty()
                || !w.id.name.contains(name)
                || (!w.id.group.is_empty() && group_of(api) != w.id.group)
                || !doc_ok(&doc)
            {
                continue;
            }
            // Exact names first, then the overlay's own files.
            let rank = u8::from(name != w.id.name) * 2 + u8::from(!f.own);
            found.entry(rank).or_default().push((f.file.clone(), doc));
        }
    }
    let Some((_, mut best)) = found.into_iter().next() else {
        return Err(refused(
            w,
            format!(
                "no file of the kustomization in {} defines it",
                if dir.is_empty() { "." } else { dir }
            ),
        ));
    };
    if best.len() > 1 {
        let list: Vec<&str> = best.iter().map(|(f, _)| f.as_str()).collect();
        return Err(refused(
            w,
            format!(
                "it is defined in more than one file ({}); tether cannot tell which to edit",
                list.join(", ")
            ),
        ));
    }
    Ok(best.remove(0))
}
