//! Lists of problems in messages, bounded: a repository with a quarter of a million bad documents must not
//! produce an error of 19 MB (issue 11). The first ones are shown, then how many more there are. Also what
//! text from a repository or a server looks like in a message: control characters escaped ([`Shown`]),
//! secret values taken out ([`redact`]).

use std::fmt::{self, Display, Write as _};

/// How many items a message lists before it only counts the rest.
pub const SHOWN: usize = 100;

/// `items` as indented lines, each starting with `\n  `, at most [`SHOWN`] of them, then a line counting
/// the rest.
pub fn lines<T: Display>(items: &[T]) -> String {
    let mut out = String::new();
    for i in items.iter().take(SHOWN) {
        let _ = write!(out, "\n  {i}");
    }
    if items.len() > SHOWN {
        let _ = write!(out, "\n  … and {} more", items.len() - SHOWN);
    }
    out
}

/// Text from a repository (a file name, an object name) as a message shows it: control characters escaped
/// (`\n`, `\u{1b}`), so a name holding a newline cannot start a forged line of output, and everything else as
/// written.
pub struct Shown<'a>(pub &'a str);

impl Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_debug())?;
            } else if hides_text(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Characters that are not control characters but change what a reader sees: line and paragraph
/// separators, and the bidirectional overrides and isolates that make text read in another order than it is
/// written ("Trojan Source").
fn hides_text(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// [`lines`] as a `Display`, for `thiserror` format strings.
pub struct Lines<'a, T>(pub &'a [T]);

impl<T: Display> Display for Lines<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&lines(self.0))
    }
}

/// What a message shows instead of a secret value.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are redacted only where they stand alone (between characters that are not
/// letters or digits): a one-letter value redacted everywhere would take every such letter out of the
/// text, and `ab` inside `table` is no quote of the value.
const SHORTEST_ANYWHERE: usize = 4;

/// `text` with every one of `secrets` replaced by [`REDACTED`]; values shorter than four characters only
/// where they stand alone, so `pin 42` loses `42` but `line 420` keeps its number.
pub fn redact(text: &str, secrets: &[String]) -> String {
    // Longest first, so a value is taken out before any part of it; a value of punctuation only would take
    // that punctuation out of every message and quotes nothing.
    let mut order: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .collect();
    order.sort_by_key(|s| std::cmp::Reverse(s.len()));
    order.dedup();
    let mut out = text.to_owned();
    for s in order {
        if !out.contains(s) {
            continue;
        }
        out = if s.chars().count() >= SHORTEST_ANYWHERE {
            out.replace(s, REDACTED)
        } else {
            replace_standing_alone(&out, s)
        };
    }
    out
}

/// `text` with each occurrence of `value` that has no letter or digit right before or after it replaced.
fn replace_standing_alone(text: &str, value: &str) -> String {
    let joined = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    // A value that itself starts or ends with punctuation has its edge checked on its letters.
    let check_before = value.chars().next().is_some_and(char::is_alphanumeric);
    let check_after = value.chars().next_back().is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut from) = (0, 0);
    while let Some(found) = text[from..].find(value) {
        let at = from + found;
        let end = at + value.len();
        let touched = (check_before && joined(text[..at].chars().next_back()))
            || (check_after && joined(text[end..].chars().next()));
        if !touched {
            out.push_str(&text[copied..at]);
            out.push_str(REDACTED);
            (copied, from) = (end, end);
        } else {
            // An occurrence that does stand alone may start inside this one (`1-1` in `x1-1-1`).
            from = at + text[at..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_show_the_first_items_and_count_the_rest() {
        let items: Vec<usize> = (0..250).collect();
        let text = lines(&items);
        assert_eq!(text.lines().count(), SHOWN + 2, "{text}");
        assert!(text.ends_with("… and 150 more"), "{text}");
        assert_eq!(lines(&[1, 2]), "\n  1\n  2");
    }

    #[test]
    fn control_characters_in_names_are_escaped_and_the_rest_kept() {
        assert_eq!(
            Shown("evil\nlevel=error\t\u{1b}[31m.yaml").to_string(),
            "evil\\nlevel=error\\t\\u{1b}[31m.yaml"
        );
        assert_eq!(Shown("café/ünï.yaml").to_string(), "café/ünï.yaml");
    }

    #[test]
    fn values_are_redacted_anywhere_and_short_ones_where_they_stand_alone() {
        let secrets = ["42".to_owned(), "hunter2".to_owned(), "/".to_owned()];
        assert_eq!(
            redact("xhunter2y: pin 42 at line 420 of a/b", &secrets),
            "x[redacted]y: pin [redacted] at line 420 of a/b"
        );
        // Overlapping: the first `1-1` is joined to `x`, the one after it stands alone.
        assert_eq!(
            redact("x1-1-1 ü1-1", &["1-1".to_owned()]),
            "x1-[redacted] ü1-1"
        );
        // Any order: a value is taken out whole before a part of it.
        assert_eq!(
            redact(
                "token abcd-efgh",
                &["abcd".to_owned(), "abcd-efgh".to_owned()]
            ),
            "token [redacted]"
        );
    }

    #[test]
    fn shown_text_cannot_forge_a_line_or_reorder_what_is_read() {
        assert_eq!(
            Shown("a\nlevel=error\u{1b}[2J").to_string(),
            "a\\nlevel=error\\u{1b}[2J"
        );
        assert_eq!(
            Shown("x\u{2028}y\u{202E}z\u{2066}").to_string(),
            "x\\u{2028}y\\u{202e}z\\u{2066}"
        );
        assert_eq!(Shown("ünïcode é ✓").to_string(), "ünïcode é ✓");
    }
}
