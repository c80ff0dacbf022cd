//! What is special about Secrets: their values must never reach a message. The API server's own answers
//! quote what it could not take (`.data: expected map, got &{[c2VjcmV0]}`), and an admission webhook may
//! quote anything, so a Secret's shape is checked here before any request, and whatever the server says
//! about a Secret has its values taken out before anyone sees it.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::kinds::Kind;

pub use tether_core::report::{redact, REDACTED};

/// True for the core `Secret` kind.
pub fn is_secret(kind: &Kind) -> bool {
    kind.group.is_empty() && kind.kind == "Secret"
}

/// Why the manifest of a Secret cannot be sent, if it cannot: `data` and `stringData` must map keys to
/// strings. The server would refuse any other shape too, quoting the value in its answer. Names the key,
/// never the value.
pub fn problem(object: &Value) -> Option<String> {
    for field in ["data", "stringData"] {
        let Some(v) = object.get(field) else {
            continue;
        };
        let Some(map) = v.as_object() else {
            if v.is_null() {
                continue;
            }
            return Some(format!(
                "Secret {field} is {}, not a mapping of keys to values; write it as `{field}:` followed by \
                 `key: value` lines (the value is not shown)",
                what(v)
            ));
        };
        for (key, value) in map {
            let key = tether_core::report::Shown(key);
            if !(value.is_string() || value.is_null()) {
                return Some(format!(
                    "Secret {field}.{key} is {}, not a string; quote the value (the value is not shown)",
                    what(value)
                ));
            }
            if field == "data" && value.as_str().is_some_and(|v| !is_base64(v)) {
                return Some(format!(
                    "Secret data.{key} is not base64; encode it (`base64 -w0`) or move it under \
                     stringData, which takes plain text (the value is not shown)"
                ));
            }
        }
    }
    None
}

/// Whether the API server can decode `text` as a Secret's `data` value.
fn is_base64(text: &str) -> bool {
    decode(text).is_some()
}

/// A Secret's `data` value decoded as the API server does: padded standard base64, line breaks ignored
/// (`base64` wraps at 76 columns), and, as Go's decoder, any trailing bits; so nothing the server takes is
/// refused here, and a wrapped key's decoded form is redacted too.
fn decode(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let joined: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    LENIENT.decode(joined).ok()
}

fn what(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Every value of a Secret's manifest in each form a server may quote it in: as written, decoded from
/// base64 (`data`, also line by line), encoded to it (`stringData`).
pub fn values(body: &Value) -> Vec<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    let strings = |field: &str| -> Vec<String> {
        body.get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(Map::values)
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    for v in strings("data") {
        if let Some(text) = decode(&v).and_then(|b| String::from_utf8(b).ok()) {
            // A PEM key is quoted line by line as often as whole; short lines (`}`, `a`) are no secret and
            // would be taken out of every message.
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= 8)
                    .map(str::to_owned),
            );
            out.push(text);
        }
        out.push(v);
    }
    for v in strings("stringData") {
        out.push(engine.encode(&v));
        out.push(v);
    }
    // Quoted by the server (Go's `%q`) or a webhook (JSON), a value with `"`, `\` or a line break reads
    // escaped: `p\"w`. Both escape those the same way.
    let escaped: Vec<String> = out
        .iter()
        .filter_map(|v| {
            let quoted = serde_json::to_string(v).ok()?;
            let inner = quoted.get(1..quoted.len().saturating_sub(1))?;
            (inner != v).then(|| inner.to_owned())
        })
        .collect();
    out.extend(escaped);
    // `redact` orders them and passes over values of punctuation only.
    out.sort();
    out.dedup();
    out
}

/// A Secret's body as the server stores it: `stringData` folded into `data`, base64-encoded (the server
/// never returns `stringData`, so comparing it as written would see drift at every resync).
pub(crate) fn fold_string_data(body: &mut Value) {
    let Some(map) = body.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let text = v.as_str().unwrap_or_default();
            data.insert(
                k,
                Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_secret_of_the_wrong_shape_is_named_by_key_and_its_value_never_shown() {
        for (body, expect) in [
            (
                json!({"data": ["c2VjcmV0LXZhbHVl"]}),
                "Secret data is a list",
            ),
            (
                json!({"stringData": {"password": ["hunter2-value"]}}),
                "Secret stringData.password is a list",
            ),
            (
                json!({"stringData": {"pin": 987654321}}),
                "Secret stringData.pin is a number",
            ),
        ] {
            let p = problem(&body).expect("refused");
            assert!(p.starts_with(expect), "{p}");
            for value in ["c2VjcmV0LXZhbHVl", "hunter2-value", "987654321"] {
                assert!(!p.contains(value), "{p}");
            }
        }
        assert_eq!(
            problem(
                &json!({"data": {"a": "eA==", "b": "eB==", "c": "", "d": "YWJj\nZGVm\r\n"},
                            "stringData": {"b": "x", "c": null}})
            ),
            None
        );
        for bad in ["not base64!", "eA", "eA=", "e A=="] {
            let p = problem(&json!({"data": {"password": bad}})).expect("refused");
            assert!(p.starts_with("Secret data.password is not base64;"), "{p}");
            assert!(!p.contains(bad), "{p}");
        }
    }

    #[test]
    fn a_message_quoting_a_secret_value_in_any_form_has_it_taken_out() {
        let body = json!({
            "data": {"password": "aHVudGVyMi1zZWNyZXQ=", "short": "YWI="},
            "stringData": {"token": "tok-12345"}
        });
        let secrets = values(&body);
        let message =
            "denied: password aHVudGVyMi1zZWNyZXQ= decodes to hunter2-secret; token tok-12345 \
                       (dG9rLTEyMzQ1); ab was quoted, table and abc stay";
        let shown = redact(message, &secrets);
        for value in [
            "aHVudGVyMi1zZWNyZXQ=",
            "hunter2-secret",
            "tok-12345",
            "dG9rLTEyMzQ1",
        ] {
            assert!(!shown.contains(value), "{shown}");
        }
        assert!(
            shown.ends_with("; [redacted] was quoted, table and abc stay"),
            "{shown}"
        );
        assert_eq!(shown.matches(REDACTED).count(), 5, "{shown}");
    }

    #[test]
    fn a_value_quoted_with_escapes_is_taken_out_too() {
        let secrets = values(&json!({"stringData": {"pw": "p\"w\\x\nyz"}}));
        // As Go's %q and JSON write it.
        assert_eq!(
            redact(r#"denied: "p\"w\\x\nyz" is weak"#, &secrets),
            r#"denied: "[redacted]" is weak"#
        );
    }

    #[test]
    fn a_short_value_is_taken_out_only_where_it_stands_alone() {
        let secrets = values(&json!({"stringData": {"pin": "42", "dot": ".", "x": "-x"}}));
        assert_eq!(
            redact("pin 42 refused (\"42\"), see line 420 of 142.yaml: -x a-x", &secrets),
            "pin [redacted] refused (\"[redacted]\"), see line 420 of 142.yaml: [redacted] a[redacted]"
        );
        // A wrapped value (as `base64` writes keys) is decoded too, and redacted whole and line by line.
        let key = "line one of a key\nline two of a key\n";
        let wrapped = base64::engine::general_purpose::STANDARD.encode(key);
        let wrapped = format!("{}\n{}", &wrapped[..20], &wrapped[20..]);
        let secrets = values(&json!({"data": {"key": wrapped}}));
        assert_eq!(
            redact("refused: line two of a key", &secrets),
            "refused: [redacted]"
        );
    }
}
