//! Edits Kubernetes manifests in place, changing only the bytes of the one value being set: comments,
//! quoting, indentation, key order, blank lines, line endings and the other documents of a file stay as they
//! were, so the commit tether pushes is the one-line diff a person would have made.
//!
//! Every edit is checked by reading the whole result back: the edited document must equal the original with
//! exactly the intended change, and every other document must be unchanged. Otherwise the edit is refused
//! with an error and the caller keeps the original text. Values that cannot be edited safely in place (YAML
//! aliases and anchors, block scalars) are refused with an error that says what to change in the file.
//!
//! Positions come from serde-saphyr's byte spans; every offset is a byte offset, so non-ASCII text is safe.

pub(crate) mod spans;
mod text;
mod tree;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::{Map, Value};
use tether_core::id::group_of;
use tether_core::policy;
use tether_core::resource::Annotations;
use tether_core::{workload, ObjectId};

use text::Style;
use tree::{Kind, Node};

/// The object in a file to edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Kind (compared case-insensitively), name and namespace; the API group too, when it is known.
    pub id: ObjectId,
    /// The namespace that documents without `metadata.namespace` are applied to.
    pub default_namespace: Option<String>,
}

impl Target {
    /// Targets `id`; documents without a namespace match only if `id` has none either.
    pub fn new(id: ObjectId) -> Self {
        Target {
            id,
            default_namespace: None,
        }
    }

    /// Documents without `metadata.namespace` count as being in `namespace`.
    pub fn with_default_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.default_namespace = Some(namespace.into());
        self
    }

    /// Whether document `doc` is the target.
    pub fn matches(&self, doc: &Value) -> bool {
        let str_at = |pointer: &str| doc.pointer(pointer).and_then(Value::as_str);
        let namespace = str_at("/metadata/namespace")
            .filter(|ns| !ns.is_empty())
            .or(self.default_namespace.as_deref());
        str_at("/kind").is_some_and(|k| k.eq_ignore_ascii_case(&self.id.kind))
            && str_at("/metadata/name") == Some(self.id.name.as_str())
            && namespace == self.id.namespace.as_deref()
            && (self.id.group.is_empty()
                || group_of(str_at("/apiVersion").unwrap_or_default()) == self.id.group)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.id.fmt(f)
    }
}

/// The value an edit is about, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The `image` of a container or init container.
    Image {
        /// The container name.
        container: String,
    },
    /// One annotation under `metadata.annotations`.
    Annotation {
        /// The annotation key.
        key: String,
    },
    /// A setting of a configuration file, e.g. a kustomization's `images[0].newTag`.
    Setting {
        /// Where it is, e.g. `images[0].newTag`.
        path: String,
    },
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Image { container } => write!(f, "the image of container '{container}'"),
            Field::Annotation { key } => write!(f, "annotation '{key}'"),
            Field::Setting { path } => write!(f, "'{path}'"),
        }
    }
}

/// Why an edit was not made. In every case the caller's text is untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The file does not parse.
    #[error("the file is not valid YAML, so it was not edited: {reason}")]
    Yaml {
        /// The parser's message, with line and column.
        reason: String,
    },
    /// No document in the file is the target.
    #[error("{target} is not defined in this file{hint}")]
    NotFound {
        /// The target.
        target: String,
        /// What the file does define, and how namespaces were matched.
        hint: String,
    },
    /// More than one document is the target.
    #[error("{target} is defined {count} times in this file; remove the duplicates")]
    Ambiguous {
        /// The target.
        target: String,
        /// How many documents matched.
        count: usize,
    },
    /// The target's kind has no pod template tether knows.
    #[error(
        "{target}: kind {kind} has no containers tether can update (only Deployment, StatefulSet, \
         DaemonSet and CronJob)"
    )]
    UnsupportedKind {
        /// The target.
        target: String,
        /// The kind found.
        kind: String,
    },
    /// The target lacks the path to its containers.
    #[error("{target} has no {path}, where its containers should be")]
    NoPodSpec {
        /// The target.
        target: String,
        /// The missing path, e.g. `spec.template.spec`.
        path: String,
    },
    /// No container or init container has that name.
    #[error(
        "{target} has no container or init container named '{container}' (it has: {available})"
    )]
    ContainerNotFound {
        /// The target.
        target: String,
        /// The name asked for.
        container: String,
        /// The names present, comma-separated.
        available: String,
    },
    /// Two containers share the name (Kubernetes would reject the object).
    #[error(
        "{target} has more than one container named '{container}'; container names must be unique"
    )]
    DuplicateContainer {
        /// The target.
        target: String,
        /// The duplicated name.
        container: String,
    },
    /// The container has no image to replace.
    #[error("container '{container}' of {target} has no image (line {line}); give it one first")]
    NoImage {
        /// The target.
        target: String,
        /// The container.
        container: String,
        /// 1-based line of the container.
        line: usize,
    },
    /// The value is written in a way that cannot be edited in place safely.
    #[error("cannot edit {field} of {target} at line {line}: {reason}")]
    Unsupported {
        /// The target.
        target: String,
        /// What was to be edited.
        field: Field,
        /// 1-based line of the offending node.
        line: usize,
        /// What is in the way, and what to change.
        reason: String,
    },
    /// The new value itself is unusable.
    #[error("cannot set {field} to '{value}': {reason}")]
    InvalidValue {
        /// What was to be edited.
        field: Field,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the result back showed a change other than the intended one.
    #[error(
        "editing {field} of {target} would have changed more than that ({detail}), so the file was left \
         unchanged; this happens when YAML anchors (&) and aliases (*) share the value, otherwise please \
         report it with the file"
    )]
    Verification {
        /// The target.
        target: String,
        /// What was to be edited.
        field: Field,
        /// The first unexpected difference.
        detail: String,
    },
}

/// Replaces bytes `start..end` of the text with `with`.
#[derive(Debug)]
struct Splice {
    start: usize,
    end: usize,
    with: String,
}

impl Splice {
    fn insert(at: usize, with: String) -> Self {
        Splice {
            start: at,
            end: at,
            with,
        }
    }

    fn delete(start: usize, end: usize) -> Self {
        Splice {
            start,
            end,
            with: String::new(),
        }
    }
}

/// One edit in progress: the file, the target document (only it is parsed) and what is being changed.
///
/// A file is split into its documents first and only the documents that could be the target are parsed,
/// so an edit costs the size of one document, not of the file (Flux v1's largest reported file: 2.7 MB,
/// 3,478 objects), and bytes outside the target document can never change.
struct Edit<'a> {
    /// The whole file.
    full: &'a str,
    /// Where the target document starts in `full`.
    base: usize,
    /// Lines of `full` before `base`, for line numbers in messages.
    lines_before: usize,
    /// The target document: every span is an offset into it.
    text: &'a str,
    /// The target document as JSON.
    value: Value,
    /// The target document's span tree.
    root: Node,
    /// The object (or file) edited, for messages.
    target: String,
    field: Field,
}

impl<'a> Edit<'a> {
    /// Finds the one document of `text` that is `target`.
    fn open(text: &'a str, target: &'a Target, field: Field) -> Result<Self, EditError> {
        let name = target.id.name.clone();
        Self::open_matching(
            text,
            target.to_string(),
            field,
            // A document that is the target spells its name somewhere; the others are never parsed.
            move |doc| doc.contains(name.as_str()),
            |v| target.matches(v),
            |values| not_found_hint(values, target),
        )
    }

    /// Opens the one document of a file that holds a single document (a kustomization).
    fn open_single(text: &'a str, label: &str, field: Field) -> Result<Self, EditError> {
        let mut seen = false;
        Self::open_matching(
            text,
            label.to_owned(),
            field,
            |_| true,
            |_| !std::mem::replace(&mut seen, true),
            |_| " (the file is empty)".to_owned(),
        )
    }

    fn open_matching(
        full: &'a str,
        target: String,
        field: Field,
        could_be: impl Fn(&str) -> bool,
        mut matches: impl FnMut(&Value) -> bool,
        hint: impl FnOnce(&[Value]) -> String,
    ) -> Result<Self, EditError> {
        let docs = tether_render::split_documents(full);
        let mut found: Vec<(&str, Value)> = Vec::new();
        for (_, doc) in docs.iter().filter(|(_, d)| could_be(d)) {
            let mut values: Vec<Value> =
                tether_render::yaml::from_str_multiple(doc).map_err(|e| EditError::Yaml {
                    reason: e.to_string(),
                })?;
            if values.len() == 1 && matches(&values[0]) {
                found.push((doc, values.remove(0)));
            }
        }
        let (doc, value) = match found.len() {
            1 => found.remove(0),
            0 => {
                // Only for the message: what the file does define, or that part of it does not parse.
                let mut values: Vec<Value> = Vec::new();
                for (_, d) in &docs {
                    let parsed: Vec<Value> =
                        tether_render::yaml::from_str_multiple(d).map_err(|e| EditError::Yaml {
                            reason: e.to_string(),
                        })?;
                    values.extend(parsed);
                }
                return Err(EditError::NotFound {
                    hint: hint(&values),
                    target,
                });
            }
            count => return Err(EditError::Ambiguous { count, target }),
        };
        let mut trees = tree::parse(doc).map_err(|reason| EditError::Yaml { reason })?;
        if trees.len() != 1 {
            return Err(EditError::Yaml {
                reason: format!(
                    "the parser disagreed with itself about the number of documents ({} vs 1)",
                    trees.len()
                ),
            });
        }
        let base = doc.as_ptr() as usize - full.as_ptr() as usize;
        Ok(Edit {
            full,
            base,
            lines_before: full[..base].bytes().filter(|&b| b == b'\n').count(),
            text: doc,
            value,
            root: trees.remove(0),
            target,
            field,
        })
    }

    /// The target document as JSON.
    fn value(&self) -> &Value {
        &self.value
    }

    /// The 1-based line of `pos` (an offset into the document) in the file.
    fn line(&self, pos: usize) -> usize {
        self.lines_before + text::line_number(self.text, pos)
    }

    fn unsupported(&self, node: &Node, reason: impl Into<String>) -> EditError {
        EditError::Unsupported {
            target: self.target.clone(),
            field: self.field.clone(),
            line: self.line(node.start),
            reason: reason.into(),
        }
    }

    /// An internal inconsistency: reported like a failed read-back, since the file is left alone either way.
    fn inconsistent(&self, detail: impl Into<String>) -> EditError {
        EditError::Verification {
            target: self.target.clone(),
            field: self.field.clone(),
            detail: detail.into(),
        }
    }

    /// Refuses nodes whose text is shared with another place.
    fn no_alias(&self, node: &Node) -> Result<(), EditError> {
        if node.alias {
            return Err(self.unsupported(
                node,
                "it is reached through a YAML alias (*…) or merge key (<<), so its text is shared with \
                 another place; write it out in full here",
            ));
        }
        Ok(())
    }

    /// `metadata` of the target document: its key and value nodes.
    fn metadata(&self) -> Result<&(Node, Node), EditError> {
        let entry = self
            .root
            .entry("metadata")
            .ok_or_else(|| self.inconsistent("the document has no metadata"))?;
        self.no_alias(&entry.1)?;
        if entry.1.entries().is_none() {
            return Err(self.unsupported(&entry.1, "metadata is not a mapping"));
        }
        Ok(entry)
    }

    /// Applies `splices` to the target document, reads it back and checks that it now equals `expected`;
    /// returns the whole file with only that document's bytes changed.
    fn finish(&self, expected: &Value, mut splices: Vec<Splice>) -> Result<String, EditError> {
        splices.sort_by_key(|s| std::cmp::Reverse(s.start));
        let mut out = self.text.to_owned();
        let mut limit = out.len();
        for splice in &splices {
            if splice.start > splice.end || splice.end > limit {
                return Err(self.inconsistent("two changes overlapped"));
            }
            out.replace_range(splice.start..splice.end, &splice.with);
            limit = splice.start;
        }
        let values: Vec<Value> = tether_render::yaml::from_str_multiple(&out)
            .map_err(|e| self.inconsistent(format!("the result would not parse: {e}")))?;
        let [new] = values.as_slice() else {
            return Err(self.inconsistent(format!(
                "the document would become {} documents",
                values.len()
            )));
        };
        if let Some(path) = first_difference(expected, new, String::new()) {
            return Err(self.inconsistent(format!("the document would change at '{path}'")));
        }
        let mut file = String::with_capacity(self.full.len() + out.len() - self.text.len());
        file.push_str(&self.full[..self.base]);
        file.push_str(&out);
        file.push_str(&self.full[self.base + self.text.len()..]);
        Ok(file)
    }

    /// Replaces the scalar `value` of the entry `key: value` with `new`, keeping its quoting where that
    /// style can hold `new`. `flow` tells whether the entry is inside `{…}`.
    fn replace_scalar(
        &self,
        (key, value): &(Node, Node),
        new: &str,
        flow: bool,
    ) -> Result<Splice, EditError> {
        let text = self.text;
        if value.alias || key.alias {
            return Err(self.unsupported(
                value,
                "the value is a YAML alias (*…) of a value defined elsewhere; write the value out here \
                 instead",
            ));
        }
        if !value.is_scalar() {
            return Err(self.unsupported(value, "the value is a list or mapping, not a string"));
        }
        if matches!(value.kind, Kind::Null) && value.start == value.end {
            // An empty value sits at its key's end: write after the colon.
            let at = self.after_colon(key, value)?;
            return Ok(Splice::insert(
                at,
                format!(" {}", text::render(new, Style::Plain, flow)),
            ));
        }
        text::check_between(text, key, value).map_err(|r| self.unsupported(value, r))?;
        text::check_scalar_bytes(text, value).map_err(|r| self.unsupported(value, r))?;
        Ok(Splice {
            start: value.start,
            end: value.end,
            with: text::render(new, text::style_of(text, value), flow),
        })
    }

    /// The offset just past the `:` that follows `key`.
    fn after_colon(&self, key: &Node, value: &Node) -> Result<usize, EditError> {
        let rest = &self.text[key.end..];
        let gap = rest.len() - rest.trim_start().len();
        if rest[gap..].starts_with(':') {
            Ok(key.end + gap + 1)
        } else {
            Err(self.unsupported(value, "the key is not followed by ':'"))
        }
    }

    /// Inserts new lines after the last entry of a block mapping, each indented like its keys plus `extra`.
    fn insert_block_entries(
        &self,
        entries: &[(Node, Node)],
        lines: &[(usize, String)],
    ) -> Result<Splice, EditError> {
        let text = self.text;
        let (Some((first, _)), Some((last_key, last_value))) = (entries.first(), entries.last())
        else {
            return Err(self.inconsistent("a block mapping without entries"));
        };
        let indent = text::indent_of(text, first.start)
            .filter(|&i| text::indent_of(text, last_key.start) == Some(i))
            .ok_or_else(|| {
                self.unsupported(
                    last_key,
                    "the mapping's keys do not each start their own line at one indentation",
                )
            })?;
        let at = text::block_entry_end(text, last_key, last_value, indent);
        let eol = text::eol_at(text, last_key.start);
        let body: Vec<String> = lines
            .iter()
            .map(|(extra, line)| format!("{}{line}", " ".repeat(indent + extra)))
            .collect();
        let with = if text[..at].ends_with('\n') {
            format!("{}{eol}", body.join(eol))
        } else {
            // The file's last line had no line break: add one before, and none after, as it was.
            format!("{eol}{}", body.join(eol))
        };
        Ok(Splice::insert(at, with))
    }

    /// Inserts `entry` (`key: value`) as the last entry of the flow mapping `map`.
    fn insert_flow_entry(&self, map: &Node, entry: &str) -> Result<Splice, EditError> {
        let text = self.text;
        let close = text::flow_close(text, map.start)
            .ok_or_else(|| self.unsupported(map, "cannot find the closing '}'"))?;
        let inner = text[map.start + 1..close].trim_end();
        let at = map.start + 1 + inner.len();
        let with = if inner.trim().is_empty() {
            entry.to_owned()
        } else if inner.ends_with(',') {
            format!(" {entry}")
        } else {
            format!(", {entry}")
        };
        Ok(Splice::insert(at, with))
    }

    /// The document's indentation step: how much deeper `metadata`'s keys are than `metadata` itself.
    fn indent_step(&self, (metadata_key, metadata): &(Node, Node)) -> usize {
        let outer = text::indent_of(self.text, metadata_key.start);
        let inner = metadata
            .entries()
            .and_then(|e| e.first())
            .and_then(|(k, _)| text::indent_of(self.text, k.start));
        match (outer, inner) {
            (Some(o), Some(i)) if i > o => i - o,
            _ => 2,
        }
    }

    /// Turns `annotations:` with an empty or null value into a mapping holding `entry` (`key: "value"`).
    fn null_to_mapping(
        &self,
        (key, null): &(Node, Node),
        in_flow: bool,
        step: usize,
        entry: &str,
    ) -> Result<Vec<Splice>, EditError> {
        let text = self.text;
        self.no_alias(null)?;
        if in_flow {
            let mapping = format!("{{{entry}}}");
            return Ok(vec![if null.start == null.end {
                Splice::insert(self.after_colon(key, null)?, format!(" {mapping}"))
            } else {
                Splice {
                    start: null.start,
                    end: null.end,
                    with: mapping,
                }
            }]);
        }
        let indent = text::indent_of(text, key.start)
            .ok_or_else(|| self.unsupported(key, "'annotations:' does not start its own line"))?;
        let line_break = text::line_break(text, key.start);
        let mut splices = Vec::new();
        if null.end > null.start {
            if null.end > line_break {
                return Err(self.unsupported(null, "the null is not on the line of 'annotations:'"));
            }
            let start = text[..null.start].trim_end_matches(' ').len();
            splices.push(Splice::delete(start, null.end));
        }
        splices.push(Splice::insert(
            line_break,
            format!(
                "{}{}{entry}",
                text::eol_at(text, key.start),
                " ".repeat(indent + step)
            ),
        ));
        Ok(splices)
    }

    /// Removes entry `index` of a flow mapping together with one separating comma.
    fn remove_flow_entry(
        &self,
        entries: &[(Node, Node)],
        index: usize,
    ) -> Result<Splice, EditError> {
        let (key, value) = &entries[index];
        let scalar_end = |node: &Node| -> Result<usize, EditError> {
            if node.is_scalar() {
                Ok(node.end)
            } else {
                Err(self.unsupported(node, "an annotation value is not a string"))
            }
        };
        Ok(if let Some((next_key, _)) = entries.get(index + 1) {
            Splice::delete(key.start, next_key.start)
        } else if let Some(previous) = index.checked_sub(1).map(|i| &entries[i].1) {
            Splice::delete(scalar_end(previous)?, scalar_end(value)?.max(key.end))
        } else {
            Splice::delete(key.start, scalar_end(value)?.max(key.end))
        })
    }
}

/// What the file does define, so a wrong namespace or name is easy to spot.
fn not_found_hint(values: &[Value], target: &Target) -> String {
    let defined: Vec<String> = values
        .iter()
        .filter_map(|doc| {
            let kind = doc.get("kind")?.as_str()?;
            let name = doc.pointer("/metadata/name")?.as_str()?;
            let namespace = doc
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .map(str::to_owned)
                .or_else(|| target.default_namespace.clone())
                .unwrap_or_else(|| "<no namespace>".to_owned());
            Some(format!("{namespace}:{}/{name}", kind.to_ascii_lowercase()))
        })
        .take(10)
        .collect();
    let namespaces = match &target.default_namespace {
        Some(ns) => format!("documents without metadata.namespace count as namespace '{ns}'"),
        None => "documents without metadata.namespace match no namespaced target".to_owned(),
    };
    if defined.is_empty() {
        format!(" (it defines no named objects; {namespaces})")
    } else {
        format!(" (it defines {}; {namespaces})", defined.join(", "))
    }
}

/// The JSON-pointer-like path of the first difference between two values, if any.
fn first_difference(want: &Value, got: &Value, path: String) -> Option<String> {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()) {
                let child = format!("{path}/{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => {
                        if let Some(p) = first_difference(x, y, child) {
                            return Some(p);
                        }
                    }
                    _ => return Some(child),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!(
                    "{path} (length {} instead of {})",
                    b.len(),
                    a.len()
                ));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}/{i}")))
        }
        _ if want == got => None,
        _ => Some(if path.is_empty() {
            "/".to_owned()
        } else {
            path
        }),
    }
}

/// Sets the image of container `container` (a container or an init container) of the workload `target`.
///
/// Returns the new text, or the text unchanged when the image already is `image`.
pub fn set_image(
    text: &str,
    target: &Target,
    container: &str,
    image: &str,
) -> Result<String, EditError> {
    let field = Field::Image {
        container: container.to_owned(),
    };
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EditError::InvalidValue {
            field,
            value: image.to_owned(),
            reason: "an image reference is not empty and has no spaces or control characters"
                .to_owned(),
        });
    }
    let edit = Edit::open(text, target, field)?;
    // Spans are offsets into the target document; the whole file is only returned or spliced.
    let (full, text) = (text, edit.text);
    let kind = edit
        .value()
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path = workload::pod_spec_path(kind).ok_or_else(|| EditError::UnsupportedKind {
        target: target.to_string(),
        kind: kind.to_owned(),
    })?;
    let mut pod_spec = &edit.root;
    for key in path {
        pod_spec = pod_spec.get(key).ok_or_else(|| EditError::NoPodSpec {
            target: target.to_string(),
            path: path.join("."),
        })?;
        edit.no_alias(pod_spec)?;
    }
    let mut available = Vec::new();
    let mut found = Vec::new();
    for list in ["containers", "initContainers"] {
        let Some(seq) = pod_spec.get(list) else {
            continue;
        };
        let Kind::Seq(items) = &seq.kind else {
            continue;
        };
        for (index, item) in items.iter().enumerate() {
            if let Some(name) = item.get("name").and_then(Node::as_str) {
                available.push(name.to_owned());
                if name == container {
                    found.push((list, seq, index, item));
                }
            }
        }
    }
    let (list, seq, index, item) = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(EditError::ContainerNotFound {
                target: target.to_string(),
                container: container.to_owned(),
                available: if available.is_empty() {
                    "none".to_owned()
                } else {
                    available.join(", ")
                },
            })
        }
        _ => {
            return Err(EditError::DuplicateContainer {
                target: target.to_string(),
                container: container.to_owned(),
            })
        }
    };
    edit.no_alias(seq)?;
    edit.no_alias(item)?;
    let no_image = || EditError::NoImage {
        target: target.to_string(),
        container: container.to_owned(),
        line: edit.line(item.start),
    };
    let entry = item.entry("image").ok_or_else(no_image)?;
    match &entry.1.kind {
        Kind::Null => return Err(no_image()),
        Kind::Str(current) if current == image && !entry.1.alias => return Ok(full.to_owned()),
        _ => {}
    }
    let splice = edit.replace_scalar(entry, image, text::is_flow(text, item))?;
    let mut expected = edit.value().clone();
    let pointer = format!("/{}/{list}/{index}/image", path.join("/"));
    let slot = expected
        .pointer_mut(&pointer)
        .ok_or_else(|| edit.inconsistent(format!("'{pointer}' is missing from the document")))?;
    *slot = Value::String(image.to_owned());
    edit.finish(&expected, vec![splice])
}

fn annotations_mut(doc: &mut Value) -> Option<&mut Map<String, Value>> {
    let metadata = doc.get_mut("metadata")?.as_object_mut()?;
    let slot = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Sets annotation `key` of `target` to `value`, adding `annotations:` to `metadata` when it is missing.
///
/// An existing value keeps its quoting where it can hold `value`; a new entry goes after the last existing
/// one, with its value double-quoted (so `"true"` stays a string). Returns the text unchanged when the
/// annotation already has that value.
pub fn set_annotation(
    text: &str,
    target: &Target,
    key: &str,
    value: &str,
) -> Result<String, EditError> {
    let field = Field::Annotation {
        key: key.to_owned(),
    };
    if key.is_empty() {
        return Err(EditError::InvalidValue {
            field,
            value: value.to_owned(),
            reason: "the annotation key is empty".to_owned(),
        });
    }
    let edit = Edit::open(text, target, field)?;
    // Spans are offsets into the target document; the whole file is only returned or spliced.
    let (full, text) = (text, edit.text);
    let metadata_entry = edit.metadata()?;
    let metadata = &metadata_entry.1;
    let meta_flow = text::is_flow(text, metadata);
    let quoted = text::double_quoted(value);
    let splices = match metadata.entry("annotations") {
        Some(annotations_entry) => {
            let annotations = &annotations_entry.1;
            edit.no_alias(annotations)?;
            let flow = text::is_flow(text, annotations);
            match &annotations.kind {
                Kind::Map(entries) => {
                    if let Some(entry) = entries.iter().find(|(k, _)| k.as_str() == Some(key)) {
                        if entry.1.as_str() == Some(value) && !entry.1.alias {
                            return Ok(full.to_owned());
                        }
                        vec![edit.replace_scalar(entry, value, flow)?]
                    } else if flow {
                        let entry = format!("{}: {quoted}", text::render_key(key, true));
                        vec![edit.insert_flow_entry(annotations, &entry)?]
                    } else {
                        let line = format!("{}: {quoted}", text::render_key(key, false));
                        vec![edit.insert_block_entries(entries, &[(0, line)])?]
                    }
                }
                Kind::Null => {
                    let entry = format!("{}: {quoted}", text::render_key(key, meta_flow));
                    let step = edit.indent_step(metadata_entry);
                    edit.null_to_mapping(annotations_entry, meta_flow, step, &entry)?
                }
                _ => {
                    return Err(
                        edit.unsupported(annotations, "metadata.annotations is not a mapping")
                    )
                }
            }
        }
        None if meta_flow => {
            let entry = format!("annotations: {{{}: {quoted}}}", text::render_key(key, true));
            vec![edit.insert_flow_entry(metadata, &entry)?]
        }
        None => {
            let lines = [
                (0, "annotations:".to_owned()),
                (
                    edit.indent_step(metadata_entry),
                    format!("{}: {quoted}", text::render_key(key, false)),
                ),
            ];
            let entries = metadata.entries().unwrap_or_default();
            vec![edit.insert_block_entries(entries, &lines)?]
        }
    };
    let mut expected = edit.value().clone();
    annotations_mut(&mut expected)
        .ok_or_else(|| edit.inconsistent("metadata is not a mapping"))?
        .insert(key.to_owned(), Value::String(value.to_owned()));
    edit.finish(&expected, splices)
}

/// Removes annotation `key` of `target`. Returns the text unchanged when there is no such annotation.
///
/// When it was the only annotation, the `annotations:` entry goes too, unless comments stand in it; then it
/// becomes `annotations: {}` and the comments stay.
pub fn remove_annotation(text: &str, target: &Target, key: &str) -> Result<String, EditError> {
    let field = Field::Annotation {
        key: key.to_owned(),
    };
    let edit = Edit::open(text, target, field)?;
    // Spans are offsets into the target document; the whole file is only returned or spliced.
    let (full, text) = (text, edit.text);
    let (_, metadata) = edit.metadata()?;
    let Some((annotations_key, annotations)) = metadata.entry("annotations") else {
        return Ok(full.to_owned());
    };
    let Some(entries) = annotations.entries() else {
        return Ok(full.to_owned());
    };
    let Some(index) = entries.iter().position(|(k, _)| k.as_str() == Some(key)) else {
        return Ok(full.to_owned());
    };
    edit.no_alias(annotations)?;
    let (entry_key, entry_value) = &entries[index];
    edit.no_alias(entry_value)?;
    let mut drop_annotations = false;
    let splices = if text::is_flow(text, annotations) {
        vec![edit.remove_flow_entry(entries, index)?]
    } else {
        let indent = text::indent_of(text, entry_key.start).ok_or_else(|| {
            edit.unsupported(entry_key, "the annotation does not start its own line")
        })?;
        let start = text::line_start(text, entry_key.start);
        let end = text::block_entry_end(text, entry_key, entry_value, indent);
        if entries.len() > 1 {
            vec![Splice::delete(start, end)]
        } else {
            let key_line_end = text::line_end(text, annotations_key.start);
            let after_key =
                &text[annotations_key.end..text::line_break(text, annotations_key.start)];
            let alone = text::indent_of(text, annotations_key.start).is_some()
                && after_key.trim() == ":"
                && text[key_line_end..start].trim().is_empty();
            if alone {
                drop_annotations = true;
                vec![Splice::delete(
                    text::line_start(text, annotations_key.start),
                    end,
                )]
            } else {
                let colon = edit.after_colon(annotations_key, annotations)?;
                vec![
                    Splice::delete(start, end),
                    Splice::insert(colon, " {}".to_owned()),
                ]
            }
        }
    };
    let mut expected = edit.value().clone();
    if let Some(metadata) = expected.get_mut("metadata").and_then(Value::as_object_mut) {
        if drop_annotations {
            metadata.remove("annotations");
        } else if let Some(map) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            map.remove(key);
        }
    }
    edit.finish(&expected, splices)
}

/// Sets policy `name` (e.g. `automated`, `tag.web`) of `target` to `value`: under the key it is already
/// read from if any, else under the prefix the object already uses ([`policy::prefix_in_use`]).
pub fn set_policy(
    text: &str,
    target: &Target,
    name: &str,
    value: &str,
) -> Result<String, EditError> {
    let field = Field::Annotation {
        key: name.to_owned(),
    };
    let edit = Edit::open(text, target, field)?;
    let annotations = Annotations::of(edit.value());
    let present = |k: &String| annotations.0.is_some_and(|m| m.contains_key(k));
    let key = policy::keys(name)
        .into_iter()
        .find(present)
        .unwrap_or_else(|| format!("{}{name}", policy::prefix_in_use(annotations)));
    set_annotation(text, target, &key, value)
}

/// Removes policy `name` of `target` under every key it could be read from.
pub fn remove_policy(text: &str, target: &Target, name: &str) -> Result<String, EditError> {
    let mut out = text.to_owned();
    for key in policy::keys(name) {
        out = remove_annotation(&out, target, &key)?;
    }
    Ok(out)
}

/// Sets `field` of entry `index` of the top-level list `list` in a file holding one document, e.g. a
/// kustomization's `images[0].newTag`; adds the field after the entry's last key when it is absent.
///
/// Returns the text unchanged when the field already has that value. `label` names the file in errors.
pub fn set_list_entry(
    text: &str,
    label: &str,
    list: &str,
    index: usize,
    field: &str,
    value: &str,
) -> Result<String, EditError> {
    let path = format!("{list}[{index}].{field}");
    let edit = Edit::open_single(text, label, Field::Setting { path: path.clone() })?;
    // Spans are offsets into the document; the whole file is only returned or spliced.
    let (full, text) = (text, edit.text);
    let missing = || edit.inconsistent(format!("'{list}[{index}]' is not in the file"));
    let seq = edit.root.get(list).ok_or_else(missing)?;
    edit.no_alias(seq)?;
    let Kind::Seq(items) = &seq.kind else {
        return Err(edit.unsupported(seq, format!("'{list}' is not a list")));
    };
    let item = items.get(index).ok_or_else(missing)?;
    edit.no_alias(item)?;
    let Some(entries) = item.entries() else {
        return Err(edit.unsupported(item, format!("'{list}[{index}]' is not a mapping")));
    };
    let flow = text::is_flow(text, item);
    let splice = match item.entry(field) {
        Some(entry) if entry.1.as_str() == Some(value) && !entry.1.alias => {
            return Ok(full.to_owned())
        }
        Some(entry) => edit.replace_scalar(entry, value, flow)?,
        None if flow => {
            let entry = format!(
                "{}: {}",
                text::render_key(field, true),
                text::double_quoted(value)
            );
            edit.insert_flow_entry(item, &entry)?
        }
        None => {
            let (Some((first, _)), Some((last_key, last_value))) =
                (entries.first(), entries.last())
            else {
                return Err(edit.unsupported(item, format!("'{list}[{index}]' is empty")));
            };
            // The first key of a list item follows `- `: its column, not its line's indentation, is the
            // indentation of the item's keys.
            let column = first.start - text::line_start(text, first.start);
            let prefix = &text[text::line_start(text, first.start)..first.start];
            if !prefix.bytes().all(|b| b == b' ' || b == b'-') {
                return Err(edit.unsupported(first, "the entry does not start its own line"));
            }
            let at = text::block_entry_end(text, last_key, last_value, column);
            let eol = text::eol_at(text, last_key.start);
            let line = format!(
                "{}{}: {}",
                " ".repeat(column),
                text::render_key(field, false),
                text::double_quoted(value)
            );
            let with = if text[..at].ends_with('\n') {
                format!("{line}{eol}")
            } else {
                format!("{eol}{line}")
            };
            Splice::insert(at, with)
        }
    };
    let mut expected = edit.value().clone();
    let slot = expected
        .get_mut(list)
        .and_then(|l| l.get_mut(index))
        .and_then(Value::as_object_mut)
        .ok_or_else(missing)?;
    slot.insert(field.to_owned(), Value::String(value.to_owned()));
    edit.finish(&expected, vec![splice])
}
