//! A manifest object as rendered from Git, with the file and line it came from.

use std::fmt;

use serde_json::{Map, Value};

/// Where an object was defined: a repository-relative file and the 1-based line its document starts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Provenance {
    /// Path relative to the repository root, with `/` separators.
    pub file: String,
    /// 1-based line of the start of the object's YAML document.
    pub line: usize,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", crate::report::Shown(&self.file), self.line)
    }
}

/// One desired object: its JSON body exactly as written in Git, and its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The object as a JSON map (`apiVersion`, `kind`, `metadata`, ...).
    pub object: Value,
    /// Where it was defined.
    pub source: Provenance,
}

impl Resource {
    /// `apiVersion`, or `""` when missing (render rejects such objects).
    pub fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `kind`, or `""` when missing.
    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `metadata.name`, or `""` when missing.
    pub fn name(&self) -> &str {
        self.metadata()
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `metadata.namespace` as written in the manifest.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata()
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `metadata` as a map.
    pub fn metadata(&self) -> Option<&Map<String, Value>> {
        self.object.get("metadata").and_then(Value::as_object)
    }

    /// `metadata.annotations` (empty when absent).
    pub fn annotations(&self) -> Annotations<'_> {
        Annotations(
            self.metadata()
                .and_then(|m| m.get("annotations"))
                .and_then(Value::as_object),
        )
    }
}

/// Read-only view of an object's annotations, present or not.
#[derive(Debug, Clone, Copy)]
pub struct Annotations<'a>(pub Option<&'a Map<String, Value>>);

impl<'a> Annotations<'a> {
    /// Reads the annotations of any object body.
    pub fn of(object: &'a Value) -> Self {
        Annotations(
            object
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(Value::as_object),
        )
    }

    /// The string value of annotation `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0.and_then(|m| m.get(key)).and_then(Value::as_str)
    }

    /// All keys.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.0
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
    }
}
