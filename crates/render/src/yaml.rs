//! Multi-document YAML → JSON objects, keeping the line each document starts on.

use serde_json::Value;
use tether_core::{Provenance, Resource};

use crate::{is_list, FileError};

/// Parses one YAML document with errors that never quote the text around the fault (the parser's default):
/// the file may hold Secret values, and errors go to Events and notifications.
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, serde_saphyr::options! { with_snippet: false })
}

/// As [`from_str`], for a stream of documents.
pub fn from_str_multiple<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<Vec<T>, serde_saphyr::Error> {
    serde_saphyr::from_str_multiple_with_options(
        text,
        serde_saphyr::options! { with_snippet: false },
    )
}

/// Splits a YAML stream at `---` / `...` markers; returns each document with the 1-based line of its first
/// content line. Markers are only recognised at column 0, where YAML allows nothing else to start.
pub fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let inline = is_start && !bare[3..].trim().is_empty() && !bare[3..].trim().starts_with('#');
        let is_end = bare == "...";
        if is_start || is_end {
            docs.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = i + 2;
            if inline {
                // `--- {inline: doc}`: keep the content after the marker as part of the next document.
                start_byte = offset + 4;
                start_line = i + 1;
            }
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs.into_iter()
        .filter_map(|(line, doc)| {
            // Point at the first line with content, not at leading comments or blank lines.
            let skip = doc
                .lines()
                .take_while(|l| {
                    let t = l.trim();
                    t.is_empty() || t.starts_with('#')
                })
                .count();
            (skip < doc.lines().count()).then_some((line + skip, doc))
        })
        .collect()
}

/// Parses what a program printed (kustomize, a `.flux.yaml` generator) into resources. Everything it
/// emits must be an object; and since lines of its output mean nothing to a reader of the repository, every
/// object and every problem points at `at` (the file that asked for it), naming `producer` and the line.
pub(crate) fn parse_output(
    at: &Provenance,
    producer: &str,
    text: &str,
) -> Result<Vec<Resource>, Vec<FileError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut not_objects = Vec::new();
    parse_file(&at.file, text, &mut out, &mut errors, &mut not_objects);
    errors.extend(not_objects.into_iter().map(|line| FileError {
        at: line,
        message: "object has no apiVersion and no kind".into(),
    }));
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|e| FileError {
                at: at.clone(),
                message: format!(
                    "in the output of {producer} (line {}): {}",
                    e.at.line, e.message
                ),
            })
            .collect());
    }
    for r in &mut out {
        r.source = at.clone();
    }
    Ok(out)
}

/// Parses one file's documents into resources, or records why not. Mappings with neither `apiVersion` nor
/// `kind` (CI configs, Helm values, notes under a synced path) are not Kubernetes objects: they go to
/// `skipped`, as Flux v1 skipped them; one with only one of the two stays an error.
pub(crate) fn parse_file(
    file: &str,
    text: &str,
    out: &mut Vec<Resource>,
    errors: &mut Vec<FileError>,
    skipped: &mut Vec<Provenance>,
) {
    for (line, doc) in split_documents(text) {
        let at = Provenance {
            file: file.to_owned(),
            line,
        };
        let value: Value = match from_str(doc) {
            Ok(v) => v,
            Err(e) => {
                let rel = e.location().map(|l| l.line() as usize).unwrap_or(1).max(1);
                // The parser counts lines from the document start, which may have leading comments.
                let leading = doc
                    .lines()
                    .take_while(|l| l.trim().is_empty() || l.trim().starts_with('#'))
                    .count();
                errors.push(FileError {
                    at: Provenance {
                        file: file.to_owned(),
                        line: line - leading + rel - 1,
                    },
                    message: yaml_problem(&e),
                });
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        if value.is_object() && value.get("apiVersion").is_none() && value.get("kind").is_none() {
            skipped.push(at);
            continue;
        }
        if is_list(&value) {
            for (i, item) in value
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                push_object(item.clone(), &at, Some(i + 1), out, errors);
            }
        } else {
            push_object(value, &at, None, out, errors);
        }
    }
}

/// Takes one object (`item`: its 1-based place in a `List`), or records what it lacks.
fn push_object(
    object: Value,
    at: &Provenance,
    item: Option<usize>,
    out: &mut Vec<Resource>,
    errors: &mut Vec<FileError>,
) {
    let mut problems = Vec::new();
    if !object.is_object() {
        problems.push(
            "is not a mapping; a Kubernetes object needs apiVersion, kind and metadata".to_owned(),
        );
    } else {
        for (field, ptr) in [
            ("apiVersion", "/apiVersion"),
            ("kind", "/kind"),
            ("metadata.name", "/metadata/name"),
        ] {
            match object.pointer(ptr) {
                Some(Value::String(s)) if !s.is_empty() => {}
                // `name: 0123` or `name: on` are a number and a boolean to YAML.
                Some(v @ (Value::Number(_) | Value::Bool(_))) => problems.push(format!(
                    "{field} is {} to YAML, not a string; quote it (\"{v}\")",
                    if v.is_number() {
                        "a number"
                    } else {
                        "a boolean"
                    }
                )),
                Some(_) => problems.push(format!("{field} must be a non-empty string")),
                None => problems.push(format!("has no {field}")),
            }
        }
    }
    if problems.is_empty() {
        out.push(Resource {
            object,
            source: at.clone(),
        });
    } else {
        let which = item
            .map(|i| format!("item {i} of the List: "))
            .unwrap_or_default();
        errors.push(FileError {
            at: at.clone(),
            message: format!("{which}object {}", problems.join("; ")),
        });
    }
}

/// What a parse error means to whoever wrote the file, and what to do. The parser's own wording for its
/// limits names its settings (`set DuplicateKeyPolicy in Options`), which a repository's author cannot change.
fn yaml_problem(e: &serde_saphyr::Error) -> String {
    const TOO_DEEP: &str =
        "is nested deeper than tether reads (a YAML bomb?); flatten the document";
    let mut e = e;
    let mut through_alias = false;
    loop {
        match e {
            serde_saphyr::Error::AliasError { error, .. } => {
                through_alias = true;
                e = error;
            }
            serde_saphyr::Error::WithSnippet { error, .. } => e = error,
            _ => break,
        }
    }
    match e {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            serde_saphyr::budget::BudgetBreach::Depth { .. } => TOO_DEEP.to_owned(),
            _ if through_alias => {
                "expands to more values than tether reads through anchors and aliases \
                 (`&name` / `*name`: a YAML bomb?); write the repeated parts out"
                    .to_owned()
            }
            other => format!("is larger or more complex than tether reads ({other:?}); split it"),
        },
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => format!(
            "invalid YAML: the key {} appears twice in one mapping; remove one of them",
            key.as_deref()
                .map(|k| format!("'{}'", tether_core::report::Shown(k)))
                .unwrap_or_default()
        ),
        other => {
            let text = other.render_with_formatter(&serde_saphyr::UserMessageFormatter);
            let first = first_line(&text);
            if first.contains("recursion limit exceeded") {
                TOO_DEEP.to_owned()
            } else {
                format!("invalid YAML: {first}")
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
