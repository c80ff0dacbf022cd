//! Output like kubectl's: aligned columns with an upper-case header (`--no-headers` drops it), or JSON.

use clap::ValueEnum;

/// Output format of the list commands.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// A table for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// Rows as columns two spaces apart, each as wide as its widest cell; the last column is not padded.
pub fn render(headers: &[&str], rows: &[Vec<String>], no_headers: bool) -> String {
    let mut all: Vec<Vec<String>> = Vec::new();
    if !no_headers {
        all.push(headers.iter().map(|h| (*h).to_owned()).collect());
    }
    // Cells come from Git and from registries (lock messages, tags, errors): a newline or an escape
    // sequence in one must not forge a row or redraw the terminal.
    all.extend(rows.iter().map(|row| {
        row.iter()
            .map(|c| tether_core::report::Shown(c).to_string())
            .collect()
    }));
    // As many columns as the widest row: a row may carry more cells than there are headers.
    let columns = all.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in &all {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &all {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints `value` as pretty JSON, or says why it cannot.
pub fn print_json<T: serde::Serialize>(value: &T) -> std::process::ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            crate::out::outln!("{s}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether: cannot write JSON: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_headers_can_be_dropped() {
        let rows = vec![
            vec![
                "demo:deployment/a".to_owned(),
                "web".to_owned(),
                "x".to_owned(),
            ],
            vec!["demo:cronjob/b".to_owned(), "job".to_owned(), String::new()],
        ];
        let t = render(&["WORKLOAD", "CONTAINER", "POLICY"], &rows, false);
        assert_eq!(
            t,
            "WORKLOAD           CONTAINER  POLICY\n\
             demo:deployment/a  web        x\n\
             demo:cronjob/b     job\n"
        );
        assert!(!render(&["A"], &rows, true).contains("WORKLOAD"));
    }

    #[test]
    fn a_cell_from_git_cannot_forge_a_row() {
        let rows = vec![vec![
            "demo:deployment/a".to_owned(),
            "locked: a\ndemo:deployment/b  evil\u{1b}[2J".to_owned(),
        ]];
        let t = render(&["WORKLOAD", "POLICY"], &rows, true);
        assert_eq!(t.lines().count(), 1, "{t}");
        assert!(!t.contains('\u{1b}'), "{t}");
    }
}
