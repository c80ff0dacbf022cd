//! A small YAML writer for JSON values, with `# comment` lines placed above chosen nodes: the install output
//! explains each RBAC rule and setting in place, which no JSON object and no serde YAML serializer can carry.
//!
//! Only what manifests need: block mappings and sequences (kubectl's layout), literal blocks for multi-line
//! strings, and quoting for every string a YAML 1.1 or 1.2 reader could take for something else.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Comments by JSON pointer of the node they stand above (`""` is the document's head).
pub(crate) type Comments = BTreeMap<String, String>;

/// One document, without the `---` separator.
pub(crate) fn document(value: &Value, comments: &Comments) -> String {
    let mut out = String::new();
    comment(&mut out, 0, comments.get(""));
    match value {
        Value::Object(m) if !m.is_empty() => mapping(&mut out, m, 0, "", comments, false),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// The JSON pointer of `key` under `parent`.
pub(crate) fn pointer(parent: &str, key: &str) -> String {
    format!("{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn comment(out: &mut String, indent: usize, text: Option<&String>) {
    for line in text.into_iter().flat_map(|t| t.lines()) {
        pad(out, indent);
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// Keys in the order people read manifests in; the rest alphabetically (serde_json's maps are sorted).
fn ordered(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    const FIRST: [&str; 5] = ["apiVersion", "kind", "metadata", "name", "namespace"];
    let mut entries: Vec<_> = m.iter().collect();
    // The well-known keys first, then the rest by name, whatever order the map keeps.
    entries.sort_by(|(a, _), (b, _)| {
        let rank = |k: &str| FIRST.iter().position(|f| *f == k).unwrap_or(FIRST.len());
        (rank(a), *a).cmp(&(rank(b), *b))
    });
    entries
}

/// A mapping at `indent`; with `inline`, its first key continues the `- ` already written.
fn mapping(
    out: &mut String,
    m: &Map<String, Value>,
    indent: usize,
    path: &str,
    comments: &Comments,
    inline: bool,
) {
    for (i, (k, v)) in ordered(m).into_iter().enumerate() {
        let p = pointer(path, k);
        if !(inline && i == 0) {
            comment(out, indent, comments.get(&p));
            pad(out, indent);
        }
        out.push_str(&string(k));
        out.push(':');
        node(out, v, indent, &p, comments, true);
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize, path: &str, comments: &Comments) {
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}/{i}");
        comment(out, indent, comments.get(&p));
        pad(out, indent);
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                // A comment on the item's first key cannot sit between `- ` and the key.
                let first = ordered(m).first().map(|(k, _)| pointer(&p, k));
                if first.is_some_and(|f| comments.contains_key(&f)) {
                    out.push('\n');
                    mapping(out, m, indent + 2, &p, comments, false);
                } else {
                    out.push(' ');
                    mapping(out, m, indent + 2, &p, comments, true);
                }
            }
            other => node(out, other, indent, &p, comments, false),
        }
    }
}

/// The value after `key:` or `-`; nested blocks go one level deeper (sequences under a key stay at the
/// key's indentation, as kubectl writes them).
fn node(out: &mut String, v: &Value, indent: usize, path: &str, comments: &Comments, in_map: bool) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            mapping(out, m, indent + 2, path, comments, false);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            sequence(
                out,
                a,
                if in_map { indent } else { indent + 2 },
                path,
                comments,
            );
        }
        Value::String(s) if literal_block(s) => {
            let body = s.trim_end_matches('\n');
            out.push_str(match s.len() - body.len() {
                0 => " |-\n",
                1 => " |\n",
                _ => " |+\n",
            });
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                if !line.is_empty() {
                    pad(out, indent + 2);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// Multi-line text reads best as a literal block, when YAML can hold it there unchanged.
fn literal_block(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && s.chars().all(|c| c == '\n' || !c.is_control())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// A string plain when no YAML reader could mistake it, else double-quoted (JSON escapes are valid YAML).
pub(crate) fn string(s: &str) -> String {
    if plain(s) {
        s.to_owned()
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

fn plain(s: &str) -> bool {
    // YAML 1.1 (which kubectl's parser follows) reads these as booleans or null.
    const WORDS: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let starts_well = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        || (s.starts_with("--") && s[2..].starts_with(|c: char| c.is_ascii_alphabetic()));
    starts_well
        && !WORDS.iter().any(|w| w.eq_ignore_ascii_case(s))
        && !s.ends_with(':')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/=@:,+-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn manifests_read_as_kubectl_writes_them_with_comments_in_place() {
        let v = json!({"kind": "Role", "apiVersion": "v1", "metadata": {"name": "x"},
            "rules": [{"verbs": ["get"], "apiGroups": [""]}, {"verbs": ["*"]}], "empty": {}, "none": []});
        let mut c = Comments::new();
        c.insert(String::new(), "head".into());
        c.insert("/rules/0".into(), "first\nsecond".into());
        c.insert("/rules/1/verbs".into(), "on the first key".into());
        assert_eq!(
            document(&v, &c),
            "# head\napiVersion: v1\nkind: Role\nmetadata:\n  name: x\nempty: {}\nnone: []\nrules:\n\
             # first\n# second\n- apiGroups:\n  - \"\"\n  verbs:\n  - get\n-\n  # on the first key\n  verbs:\n  - \"*\"\n"
        );
    }

    #[test]
    fn strings_a_reader_could_mistake_are_quoted() {
        for s in [
            "",
            "yes",
            "No",
            "on",
            "null",
            "true",
            "3030",
            "50m",
            "0.0.0.0:3031",
            "-x",
            "* *",
            "a: b",
            "a #b",
            "~",
            "key:",
            "@x",
            "1e3",
            ".inf",
        ] {
            assert_eq!(string(s), Value::String(s.into()).to_string(), "{s}");
        }
        for s in [
            "tether",
            "--git-url=file:///srv/repo",
            "apps/v1",
            "app.kubernetes.io/name",
            "ALL",
        ] {
            assert_eq!(string(s), s);
        }
    }

    #[test]
    fn multi_line_strings_become_literal_blocks_that_keep_their_newlines() {
        let v = json!({"a": "x\ny\n", "b": "x\n\ny", "c": "x\n\n", " lead": " x\ny"});
        assert_eq!(
            document(&v, &Comments::new()),
            "\" lead\": \" x\\ny\"\na: |\n  x\n  y\nb: |-\n  x\n\n  y\nc: |+\n  x\n\n"
        );
    }
}
