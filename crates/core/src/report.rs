//! Lists of problems in messages, bounded: a repository with a quarter of a million bad documents must not
//! produce an error of 19 MB (issue 11). The first ones are shown, then how many more there are.

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
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// [`lines`] as a `Display`, for `thiserror` format strings.
pub struct Lines<'a, T>(pub &'a [T]);

impl<T: Display> Display for Lines<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&lines(self.0))
    }
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
}
