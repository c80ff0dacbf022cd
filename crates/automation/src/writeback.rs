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

/// The checked-out tree and how it renders.
#[derive(Debug, Clone, Copy)]
pub struct Tree<'a> {
    /// The checkout (a worktree tether may edit).
    pub root: &'a Path,
    /// The git-paths rendered.
    pub paths: &'a [String],
    /// The renderer of the sync (kustomize and manifest generation settings).
    pub renderer: &'a Renderer,
    /// Namespace of namespaced objects written without one.
    pub default_namespace: &'a str,
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// The files changed (repository-relative), in the order first changed; empty when updaters made the
    /// changes or nothing needed changing.
    pub files: Vec<String>,
    /// The changes that were needed, per workload (a change the tree already shows is left out).
    pub applied: Vec<(ObjectId, Change)>,
}

/// Writes each workload's changes into the tree, each where the user keeps it, then renders the tree again
/// and checks that every workload shows every change.
///
/// # Errors
/// The first change that cannot be written, or one the rendered result does not show. The tree may then
/// hold some of the changes: the caller discards it (tether writes into a throwaway worktree).
pub fn write(tree: &Tree<'_>, changes: &[(ObjectId, Vec<Change>)]) -> Result<Written, WriteError> {
    let before = tree.renderer.render(tree.root, tree.paths)?;
    let mut written = Written::default();
    for (id, list) in changes {
        let w = find(&before, tree.default_namespace, id)?;
        for change in list.iter().filter(|c| c.missing_in(&w).is_some()) {
            if let Some(file) = write_one(tree, &w, change)? {
                if !written.files.contains(&file) {
                    written.files.push(file);
                }
            }
            written.applied.push((id.clone(), change.clone()));
        }
    }
    if written.applied.is_empty() {
        return Ok(written);
    }
    let after = tree.renderer.render(tree.root, tree.paths)?;
    for (id, change) in &written.applied {
        let now = find(&after, tree.default_namespace, id)?;
        if let Some(found) = change.missing_in(&now) {
            return Err(WriteError::NotEffective {
                workload: id.to_string(),
                change: change.describe(),
                file: written.files.join(", "),
                found,
            });
        }
    }
    Ok(written)
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
    a.kind.eq_ignore_ascii_case(&b.kind)
        && a.name == b.name
        && a.namespace == b.namespace
        && (a.group.is_empty() || b.group.is_empty() || a.group == b.group)
}

/// Writes one change; returns the file it changed, if it changed one.
fn write_one(tree: &Tree<'_>, w: &Workload, change: &Change) -> Result<Option<String>, WriteError> {
    let source = &w.source.file;
    if source.rsplit('/').next() == Some(generate::CONFIG_FILE) {
        let config = config_for(tree, w)?;
        return match &config.mode {
            Mode::Patch { .. } => {
                let file = config
                    .patch_file()
                    .ok_or_else(|| refused(w, "the patch file is outside the repository"))?;
                edit_patch_file(tree, w, &file, change).map(Some)
            }
            Mode::Commands { .. } => {
                run_updaters(tree, w, &config, change)?;
                Ok(None)
            }
            Mode::Scan => Err(refused(w, "its .flux.yaml generates nothing")),
        };
    }
    if kustomize::is_kustomization_file(source) {
        let dir = source.rsplit_once('/').map_or("", |(d, _)| d);
        return edit_kustomization(tree, w, dir, change).map(Some);
    }
    let target = Target::new(w.id.clone()).with_default_namespace(tree.default_namespace);
    edit_file(tree.root, source, |text| apply(text, &target, change)).map(Some)
}

fn refused(w: &Workload, reason: impl Into<String>) -> WriteError {
    WriteError::Refused {
        workload: w.id.to_string(),
        reason: reason.into(),
    }
}

/// The `.flux.yaml` configuration that generated `w`: of the git-path whose generated output holds it.
fn config_for(tree: &Tree<'_>, w: &Workload) -> Result<FluxConfig, WriteError> {
    let paths: Vec<String> = if tree.paths.is_empty() {
        vec![String::new()]
    } else {
        tree.paths.to_vec()
    };
    let mut candidates = Vec::new();
    for path in &paths {
        match generate::find(tree.root, path) {
            Ok(Some(c)) if c.file == w.source.file => candidates.push(c),
            Ok(_) => {}
            Err(e) => return Err(tether_render::Error::Files(vec![e]).into()),
        }
    }
    if candidates.len() > 1 {
        // Several git-paths share the .flux.yaml: the one whose output holds the workload is the one.
        let generation = tree.renderer.generation().cloned().unwrap_or_default();
        candidates.retain(|c| {
            c.generate(tree.root, &generation).is_ok_and(|out| {
                workloads(&out, tree.default_namespace)
                    .iter()
                    .any(|o| same(&o.id, &w.id))
            })
        });
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

/// Reads `file`, edits it with `f` and writes it back when it changed. Returns the file.
fn edit_file(
    root: &Path,
    file: &str,
    f: impl FnOnce(&str) -> Result<String, EditError>,
) -> Result<String, WriteError> {
    let path = root.join(file);
    let io = |source| WriteError::Io {
        file: file.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(&path).map_err(io)?;
    let edited = f(&text).map_err(|source| WriteError::Edit {
        file: file.to_owned(),
        source,
    })?;
    if edited != text {
        std::fs::write(&path, edited).map_err(io)?;
    }
    Ok(file.to_owned())
}

/// `patchUpdated`: the workload's entry in the patch file gets the change; a workload without an entry, or an
/// entry without the container, gets one (the file is created when absent).
fn edit_patch_file(
    tree: &Tree<'_>,
    w: &Workload,
    file: &str,
    change: &Change,
) -> Result<String, WriteError> {
    let path = tree.root.join(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(WriteError::Io {
                file: file.to_owned(),
                source,
            })
        }
    };
    let target = Target::new(w.id.clone()).with_default_namespace(tree.default_namespace);
    let edited = match apply(&text, &target, change) {
        Ok(t) => t,
        Err(EditError::NotFound { .. }) => match change {
            // Nothing to remove from a patch that does not exist.
            Change::RemovePolicy { .. } => return Ok(file.to_owned()),
            _ => append_document(&text, &patch_document(w, change)),
        },
        Err(EditError::ContainerNotFound { .. } | EditError::NoPodSpec { .. }) => {
            return Err(refused(
                w,
                format!(
                    "its entry in {file} sets no image for this container; add `containers: [{{name: …, \
                     image: …}}]` under spec.template.spec of that entry once, and tether keeps it up to date"
                ),
            ))
        }
        Err(source) => {
            return Err(WriteError::Edit {
                file: file.to_owned(),
                source,
            })
        }
    };
    if edited != text {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| WriteError::Io {
                file: file.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, edited).map_err(|source| WriteError::Io {
            file: file.to_owned(),
            source,
        })?;
    }
    Ok(file.to_owned())
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
            let mut spec = serde_json::json!({"containers": [{"name": container, "image": image}]});
            for key in tether_core::workload::pod_spec_path(&w.id.kind)
                .unwrap_or(&[])
                .iter()
                .rev()
            {
                spec = serde_json::json!({ *key: spec });
            }
            if let (Some(d), Some(s)) = (doc.as_object_mut(), spec.as_object()) {
                d.extend(s.clone());
            }
        }
        Change::RemovePolicy { .. } => {}
    }
    if let Some(d) = doc.as_object_mut() {
        d.insert("metadata".into(), Value::Object(metadata));
    }
    doc
}

/// `text` with `doc` added as its last document.
fn append_document(text: &str, doc: &Value) -> String {
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let body = serde_saphyr::to_string(doc).unwrap_or_default();
    let body = body.replace('\n', eol);
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(eol);
    }
    out.push_str("---");
    out.push_str(eol);
    out.push_str(&body);
    out
}

/// `commandUpdated`: the updaters make the change, with Flux v1's environment.
fn run_updaters(
    tree: &Tree<'_>,
    w: &Workload,
    config: &FluxConfig,
    change: &Change,
) -> Result<(), WriteError> {
    let generation = tree.renderer.generation().cloned().unwrap_or_default();
    let ns = w.id.namespace.as_deref().unwrap_or(tree.default_namespace);
    let workload = (ns, w.id.kind.as_str(), w.id.name.as_str());
    let (image_name, tag);
    let request = match change {
        Change::Image { container, image } => {
            (image_name, tag) = split_tag(image);
            UpdateRequest::Image {
                container,
                image: image_name,
                tag,
            }
        }
        Change::SetPolicy { name, value } => UpdateRequest::Policy {
            name,
            value: Some(value),
        },
        Change::RemovePolicy { name } => UpdateRequest::Policy { name, value: None },
    };
    config
        .update(tree.root, &generation, workload, &request)
        .map_err(|reason| refused(w, reason))
}

/// `repo[:tag]` split at the tag (a registry port is not a tag).
fn split_tag(image: &str) -> (&str, &str) {
    let name_end = image.find('@').unwrap_or(image.len());
    let name = &image[..name_end];
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
        None => (name, ""),
    }
}

/// A kustomize directory without `.flux.yaml`: an image goes into the `images:` entry that sets it, else
/// into the file that defines the container; a policy into the overlay's own patch or resource file for the
/// workload (never into a base other overlays share).
fn edit_kustomization(
    tree: &Tree<'_>,
    w: &Workload,
    dir: &str,
    change: &Change,
) -> Result<String, WriteError> {
    let fail = |reason: String| refused(w, reason);
    match change {
        Change::Image { container, image } => {
            let current = w
                .containers
                .iter()
                .find(|c| &c.name == container)
                .map(|c| c.image.as_str())
                .unwrap_or_default();
            let (repo, _) = split_tag(current);
            let entries = kustomize::image_entries(tree.root, dir).map_err(fail)?;
            if let Some(entry) = entries.iter().find(|e| e.produces() == repo) {
                if entry.digest.is_some() {
                    return Err(fail(format!(
                        "{} pins {repo} by digest (images[{}]); remove the digest to let tether set a tag",
                        entry.file, entry.index
                    )));
                }
                let (new_repo, new_tag) = split_tag(image);
                if new_repo != repo {
                    return Err(fail(format!(
                        "{} sets {repo}, not {new_repo}; change newName there by hand",
                        entry.file
                    )));
                }
                let label = entry.file.clone();
                return edit_file(tree.root, &entry.file, |text| {
                    yaml_edit::set_list_entry(
                        text,
                        &label,
                        "images",
                        entry.index,
                        "newTag",
                        new_tag,
                    )
                });
            }
            let file = defining_file(
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
                |f| f.role == Role::Resource,
            )?;
            let target = written_target(&file.1);
            edit_file(tree.root, &file.0, |text| apply(text, &target, change))
        }
        Change::SetPolicy { .. } | Change::RemovePolicy { .. } => {
            let file = defining_file(tree, w, dir, |_| true, |f| f.own).map_err(|_| {
                fail(format!(
                    "it is built by kustomize in {} from files other overlays may share; add a patch for it to \
                     that kustomization (patchesStrategicMerge) and tether writes its policies there",
                    if dir.is_empty() { "." } else { dir }
                ))
            })?;
            let target = written_target(&file.1);
            edit_file(tree.root, &file.0, |text| apply(text, &target, change))
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
        let Ok(docs): Result<Vec<Value>, _> = serde_saphyr::from_str_multiple(&text) else {
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
