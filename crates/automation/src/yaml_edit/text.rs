//! Byte-level helpers over the original text: lines, indentation, flow brackets and scalar rendering.
//! Every position is a byte offset; columns are only ever computed over indentation, which is ASCII.

use super::tree::{Kind, Node};

/// Offset of the first byte of the line containing `pos`.
pub(crate) fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind('\n').map_or(0, |i| i + 1)
}

/// Offset just past the line break of the line containing `pos` (or the end of the text).
pub(crate) fn line_end(text: &str, pos: usize) -> usize {
    text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1)
}

/// Offset of the line break (`\r\n` or `\n`) ending the line containing `pos`, or the end of the text.
pub(crate) fn line_break(text: &str, pos: usize) -> usize {
    match text[pos..].find('\n') {
        Some(i) if i > 0 && text.as_bytes()[pos + i - 1] == b'\r' => pos + i - 1,
        Some(i) => pos + i,
        None => text.len(),
    }
}

/// 1-based line number of `pos`, for error messages.
pub(crate) fn line_number(text: &str, pos: usize) -> usize {
    text[..pos].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The indentation of the key at `pos`, if only spaces precede it on its line.
pub(crate) fn indent_of(text: &str, pos: usize) -> Option<usize> {
    let prefix = &text[line_start(text, pos)..pos];
    prefix.bytes().all(|b| b == b' ').then_some(prefix.len())
}

/// The line break style of the line containing `pos`, so inserted lines match the file.
pub(crate) fn eol_at(text: &str, pos: usize) -> &'static str {
    let brk = line_break(text, pos);
    if text[brk..].starts_with("\r\n") {
        "\r\n"
    } else if brk < text.len() {
        "\n"
    } else if text.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

/// Offset just past the last line of the block-mapping entry whose key is `key` (indented `indent`).
///
/// The entry runs on while lines are indented deeper than its key (or are `- ` items at the key's own
/// indentation). Trailing blank and comment lines are not part of it, so an insertion lands right after the
/// entry's last content line and comments stay where they were.
pub(crate) fn block_entry_end(text: &str, key: &Node, value: &Node, indent: usize) -> usize {
    let mut end = line_end(text, key.start);
    if value.is_scalar() && value.end > value.start {
        // A block scalar's extent runs into the next line's indentation; a multi-line scalar may hold lines
        // that look like comments. Its last non-blank byte is certainly inside the entry.
        let scalar = &text[value.start..value.end];
        if let Some(last) = scalar.rfind(|c: char| !c.is_whitespace()) {
            end = end.max(line_end(text, value.start + last));
        }
    } else if matches!(text.as_bytes().get(value.start), Some(b'{' | b'[')) {
        if let Some(close) = flow_close(text, value.start) {
            end = end.max(line_end(text, close));
        }
    }
    let mut pos = end;
    while pos < text.len() {
        let next = line_end(text, pos);
        let content = text[pos..next].trim_end_matches(['\n', '\r']);
        let stripped = content.trim_start_matches(' ');
        let depth = content.len() - stripped.len();
        if stripped.trim().is_empty() {
            pos = next;
            continue;
        }
        let item = stripped == "-" || stripped.starts_with("- ") || stripped.starts_with("-\t");
        if depth < indent || (depth == indent && !item) {
            break;
        }
        if !stripped.starts_with('#') {
            end = next;
        }
        pos = next;
    }
    end
}

/// Offset of the bracket closing the flow collection that opens at `open`.
pub(crate) fn flow_close(text: &str, open: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    // A quote opens a quoted scalar only where a scalar can start; `it's` is a plain scalar.
    let mut scalar_start = true;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => {
                depth += 1;
                scalar_start = true;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
                scalar_start = false;
            }
            b',' | b':' => scalar_start = true,
            b'"' if scalar_start => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                scalar_start = false;
            }
            b'\'' if scalar_start => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
                scalar_start = false;
            }
            b'#' if i > 0 && bytes[i - 1].is_ascii_whitespace() => {
                i = line_break(text, i);
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => scalar_start = false,
        }
        i += 1;
    }
    None
}

/// Whether the collection node is written in flow style (`{…}` / `[…]`).
pub(crate) fn is_flow(text: &str, node: &Node) -> bool {
    matches!(text.as_bytes().get(node.start), Some(b'{' | b'['))
}

/// Checks what stands between a key and its value, so that a block scalar, an anchor or anything
/// unexpected is refused instead of mis-edited. Tags (`!!str`), comments and a list's `-` are fine.
pub(crate) fn check_between(text: &str, key: &Node, value: &Node) -> Result<(), String> {
    if value.start < key.end {
        return Err("the value does not follow its key".to_owned());
    }
    let between = text[key.end..value.start].trim_start();
    let Some(mut rest) = between.strip_prefix(':') else {
        return Err("the key is not followed by ':'".to_owned());
    };
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(());
        }
        if rest.starts_with('#') {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
            continue;
        }
        let token_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..token_len];
        match token.as_bytes()[0] {
            b'&' => {
                return Err(format!(
                    "it carries the YAML anchor {token}, so other places may share it through *{}; \
                     write the value out where it is used instead",
                    &token[1..]
                ))
            }
            b'|' | b'>' => {
                return Err(format!(
                    "it is a block scalar ({token}); write it as a one-line value"
                ))
            }
            // A tag; or the `-` of a list written at its key's indentation (the list starts at its item).
            _ if token.starts_with('!') || token == "-" => rest = &rest[token_len..],
            _ => return Err(format!("unexpected '{token}' before the value")),
        }
    }
}

/// How a scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    Single,
    Double,
}

/// The style of the scalar node in the text.
pub(crate) fn style_of(text: &str, node: &Node) -> Style {
    match text.as_bytes().get(node.start) {
        Some(b'\'') => Style::Single,
        Some(b'"') => Style::Double,
        _ => Style::Plain,
    }
}

/// Checks that the bytes of a string scalar look like its value, guarding the splice against any surprise
/// in the parser's positions.
pub(crate) fn check_scalar_bytes(text: &str, node: &Node) -> Result<(), String> {
    let bytes = &text[node.start..node.end];
    let ok = match (style_of(text, node), &node.kind) {
        (Style::Single, _) => bytes.len() >= 2 && bytes.ends_with('\''),
        (Style::Double, _) => bytes.len() >= 2 && bytes.ends_with('"'),
        (Style::Plain, Kind::Str(s)) => bytes == s || (bytes.contains('\n') && !s.contains('\n')),
        (Style::Plain, Kind::Null | Kind::Other) => !bytes.contains('\n'),
        (Style::Plain, _) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("its text '{bytes}' does not look like a scalar"))
    }
}

/// Writes `value` as a scalar in `style` if that style can hold it, else double-quoted. `flow` is true
/// inside `{…}`/`[…]`, where `,[]{}` end a plain scalar.
pub(crate) fn render(value: &str, style: Style, flow: bool) -> String {
    match style {
        Style::Plain if plain_safe(value, flow) => value.to_owned(),
        Style::Single if !value.chars().any(needs_escape) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        _ => double_quoted(value),
    }
}

/// A key for a new entry: plain when it reads back as the same string, else double-quoted.
pub(crate) fn render_key(key: &str, flow: bool) -> String {
    render(key, Style::Plain, flow)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// A double-quoted scalar; YAML's escapes are a superset of the ones used here.
pub(crate) fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `value` written plain reads back as the same string, for YAML 1.2 readers and for the YAML 1.1
/// ones Kubernetes tooling still uses (where `yes`, `on` and `1:20` are not strings).
pub(crate) fn plain_safe(value: &str, flow: bool) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    if value.trim() != value
        || value.chars().any(|c| needs_escape(c) || c == '\t')
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || value.contains(": ")
        || value.contains(" #")
        || value.ends_with(':')
        || (flow && value.contains([',', '[', ']', '{', '}']))
    {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~" | ".inf" | ".nan"
    ) {
        return false;
    }
    // Anything made of digits and number punctuation may read as a number, a date or a sexagesimal.
    let body = value.trim_start_matches(['-', '+', '.']);
    let numeric = body.starts_with(|c: char| c.is_ascii_digit())
        && (body
            .chars()
            .all(|c| c.is_ascii_digit() || "_.:eE+-".contains(c))
            || lower.trim_start_matches(['-', '+']).starts_with("0x")
            || lower.trim_start_matches(['-', '+']).starts_with("0o")
            || lower.trim_start_matches(['-', '+']).starts_with("0b"));
    !numeric && !lower.trim_start_matches(['-', '+']).starts_with(".inf")
}
