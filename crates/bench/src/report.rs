//! Aggregation over repetitions (median, min–max), the targets, and the outputs: a Markdown table on
//! stdout and in `report.md`, `results.csv` (one row per size × tool × scenario), `samples.csv` (every
//! measurement), `results.json` (everything) and `chart.svg` (time against N per tool).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::session::{Sample, Scenario, Status, Tool};

/// Where and on what the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Physical memory, GiB.
    pub memory_gib: f64,
    /// `uname -r`.
    pub kernel: String,
    /// kube-apiserver version.
    pub api_server: String,
    /// kubectl client version.
    pub kubectl: String,
    /// tether version, commit and whether the tree was dirty.
    pub tether: String,
    /// Load average (1 min) before the run started.
    pub load_at_start: f64,
    /// CPU other processes used during the measurements.
    pub other_cpu: Option<OtherCpu>,
}

/// How much of the machine other processes took while tools were measured.
#[derive(Debug, Clone, Serialize)]
pub struct OtherCpu {
    /// Median share of the machine over all measurements.
    pub median: f64,
    /// Highest share.
    pub max: f64,
    /// Above this share a session was repeated.
    pub threshold: f64,
    /// Sessions repeated because of it.
    pub repeated: usize,
    /// Measurements kept although above the threshold (retries exhausted).
    pub noisy: usize,
}

/// One row of the table: a tool's scenario at one size, over its repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Objects.
    pub n: usize,
    /// Tool key.
    pub tool: Tool,
    /// Scenario key.
    pub scenario: Scenario,
    /// `ok`, `n/a (...)`, `WRONG: ...`, `FAILED: ...` (the worst over repetitions).
    pub status: String,
    /// Repetitions measured.
    pub reps: usize,
    /// Concurrency (raw client).
    pub concurrency: Option<usize>,
    /// Median wall time, s.
    pub median_s: Option<f64>,
    /// Fastest repetition, s.
    pub min_s: Option<f64>,
    /// Slowest repetition, s.
    pub max_s: Option<f64>,
    /// This tool's median divided by tether's (same size and scenario): > 1 means tether is faster.
    pub ratio_vs_tether: Option<f64>,
    /// Median persisted write requests.
    pub writes: Option<u64>,
    /// Median dry-run write requests.
    pub dry_runs: Option<u64>,
    /// Median GET + LIST requests.
    pub reads: Option<u64>,
    /// Median CPU seconds of the tool.
    pub cpu_s: Option<f64>,
    /// Highest peak RSS over repetitions, MB.
    pub peak_rss_mb: Option<f64>,
    /// Median CPU seconds of etcd + kube-apiserver.
    pub server_cpu_s: Option<f64>,
}

/// A target from the issue and how this run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Objects.
    pub n: usize,
    /// The target.
    pub what: String,
    /// The measured value.
    pub measured: String,
    /// Whether it was met (None: a figure without a target).
    pub met: Option<bool>,
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn median_u(v: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    let mut xs: Vec<f64> = v.flatten().map(|x| x as f64).collect();
    median(&mut xs).map(|m| m.round() as u64)
}

fn median_f(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut xs: Vec<f64> = v.flatten().collect();
    median(&mut xs)
}

/// Aggregates the repetitions (sweep samples excluded) into rows, in table order.
pub fn rows(samples: &[Sample]) -> Vec<Row> {
    let mut groups: BTreeMap<(usize, Tool, Scenario), Vec<&Sample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.rep.is_some()) {
        groups.entry((s.n, s.tool, s.scenario)).or_default().push(s);
    }
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|((n, tool, scenario), ss)| {
            let measured: Vec<&&Sample> = ss.iter().filter(|s| s.status.measured()).collect();
            let mut walls: Vec<f64> = measured.iter().map(|s| s.wall_s).collect();
            let worst = ss
                .iter()
                .map(|s| &s.status)
                .max_by_key(|st| match st {
                    Status::Ok => 0,
                    Status::NotAvailable(_) => 1,
                    Status::Wrong(_) => 2,
                    Status::Failed(_) => 3,
                })
                .map(Status::text)
                .unwrap_or_default();
            Row {
                n,
                tool,
                scenario,
                status: worst,
                reps: measured.len(),
                concurrency: ss.iter().find_map(|s| s.concurrency),
                min_s: walls.iter().copied().reduce(f64::min),
                max_s: walls.iter().copied().reduce(f64::max),
                median_s: median(&mut walls),
                ratio_vs_tether: None,
                writes: median_u(measured.iter().map(|s| s.writes)),
                dry_runs: median_u(measured.iter().map(|s| s.dry_runs)),
                reads: median_u(measured.iter().map(|s| s.reads)),
                cpu_s: median_f(measured.iter().map(|s| Some(s.cpu_s))),
                peak_rss_mb: measured.iter().map(|s| s.peak_rss_mb).reduce(f64::max),
                server_cpu_s: median_f(measured.iter().map(|s| s.server_cpu_s)),
            }
        })
        .collect();
    let tether: BTreeMap<(usize, Scenario), f64> = rows
        .iter()
        .filter(|r| r.tool == Tool::Tether)
        .filter_map(|r| Some(((r.n, r.scenario), r.median_s?)))
        .collect();
    for r in &mut rows {
        if let (Some(m), Some(t)) = (r.median_s, tether.get(&(r.n, r.scenario))) {
            if *t > 0.0 {
                r.ratio_vs_tether = Some(m / t);
            }
        }
    }
    rows
}

fn row(rows: &[Row], n: usize, tool: Tool, sc: Scenario) -> Option<&Row> {
    rows.iter()
        .find(|r| r.n == n && r.tool == tool && r.scenario == sc)
}

/// The issue's targets, evaluated per size.
pub fn targets(rows: &[Row], sizes: &[usize]) -> Vec<Target> {
    let mut out = Vec::new();
    for &n in sizes {
        let med = |tool, sc| row(rows, n, tool, sc).and_then(|r| r.median_s);
        let tether_first = med(Tool::Tether, Scenario::FirstSync);
        for (tool, factor) in [(Tool::KubectlClient, 5.0), (Tool::KubectlServer, 3.0)] {
            if let (Some(t), Some(k)) = (tether_first, med(tool, Scenario::FirstSync)) {
                out.push(Target {
                    n,
                    what: format!("first sync ≥ {factor}× faster than {}", tool.label()),
                    measured: format!("{:.1}× ({k:.2} s vs {t:.2} s)", k / t),
                    met: Some(k / t >= factor),
                });
            }
        }
        if let Some(r) = row(rows, n, Tool::Tether, Scenario::Noop) {
            if let Some(w) = r.writes {
                out.push(Target {
                    n,
                    what: "no-op resync: zero writes".into(),
                    measured: format!("{w} writes, {} dry-runs", r.dry_runs.unwrap_or(0)),
                    met: Some(w == 0),
                });
            }
            if let (Some(noop), Some(first)) = (r.median_s, tether_first) {
                out.push(Target {
                    n,
                    what: "no-op resync under 10% of the first sync".into(),
                    measured: format!("{:.1}% ({noop:.2} s of {first:.2} s)", 100.0 * noop / first),
                    met: Some(noop < 0.1 * first),
                });
            }
        }
        if let (Some(t), Some(raw)) = (tether_first, med(Tool::RawSsa, Scenario::FirstSync)) {
            out.push(Target {
                n,
                what: "first sync within 1.5× of the raw server-side-apply ceiling".into(),
                measured: format!("{:.2}× ({t:.2} s vs {raw:.2} s)", t / raw),
                met: Some(t / raw <= 1.5),
            });
        }
        if let (Some(t), Some(raw)) = (tether_first, med(Tool::RawValidated, Scenario::FirstSync)) {
            // No target: a reference sending only the requests of a sync that validates every write first.
            out.push(Target {
                n,
                what:
                    "first sync against the validated ceiling (every object dry-run, then written)"
                        .into(),
                measured: format!("{:.2}× ({t:.2} s vs {raw:.2} s)", t / raw),
                met: None,
            });
        }
        let rss = rows
            .iter()
            .filter(|r| r.n == n && r.tool == Tool::Tether)
            .filter_map(|r| r.peak_rss_mb)
            .reduce(f64::max);
        if let Some(rss) = rss {
            out.push(Target {
                n,
                what: if n >= 5000 {
                    "tether peak RSS under 100 MB (the target is set at N = 5000)".into()
                } else {
                    "tether peak RSS under 100 MB (informative below N = 5000)".into()
                },
                measured: format!("{rss:.0} MB"),
                met: Some(rss < 100.0),
            });
        }
    }
    out
}

fn secs(v: Option<f64>) -> String {
    v.map(|v| {
        if v < 10.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.1}")
        }
    })
    .unwrap_or("–".into())
}

/// A status for a table cell: the last line that says something, at most 160 characters, no pipes.
fn cell(status: &str) -> String {
    let line = status
        .lines()
        .rev()
        .find(|l| l.trim().starts_with("error") || l.contains("FAILED") || l.contains("WRONG"))
        .or_else(|| status.lines().next())
        .unwrap_or("");
    let mut s: String = line.replace('|', "/").chars().take(160).collect();
    if status.lines().count() > 1 && !status.starts_with(line) {
        s = format!("{}: {s}", status.split(':').next().unwrap_or(""));
    }
    s
}

fn int(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or("–".into())
}

/// The repetition of `tool`'s `scenario` at `n` whose time is the median (the lower middle one).
fn median_sample(samples: &[Sample], n: usize, tool: Tool, scenario: Scenario) -> Option<&Sample> {
    let mut v: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.n == n
                && s.tool == tool
                && s.scenario == scenario
                && s.rep.is_some()
                && s.status.measured()
        })
        .collect();
    v.sort_by(|a, b| a.wall_s.total_cmp(&b.wall_s));
    let mid = v.len().checked_sub(1)? / 2;
    v.get(mid).copied()
}

/// Markdown table of the writes of one run, grouped and timed by the API server.
fn phases_table(s: &Sample) -> String {
    let mut out = format!(
        "{} {}, repetition {} ({:.2} s wall, {:.2} s tool CPU, {} server CPU):\n\n\
         | writes (audit log) | requests | first received → last answered (s after start) | mean server latency ms |\n\
         |---|--:|--:|--:|\n",
        s.tool.label(),
        s.scenario.key(),
        s.rep.unwrap_or(0),
        s.wall_s,
        s.cpu_s,
        s.server_cpu_s
            .map(|c| format!("{c:.2} s"))
            .unwrap_or("?".into()),
    );
    for p in &s.phases {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} → {:.2} | {:.1} |",
            p.what, p.count, p.start_s, p.end_s, p.mean_latency_ms
        );
    }
    out
}

/// The Markdown report: per size a table of every tool × scenario, then the targets and the sweep.
#[allow(clippy::too_many_arguments)]
pub fn markdown(
    rows: &[Row],
    targets: &[Target],
    samples: &[Sample],
    sweep: &[Sample],
    machine: &Machine,
    command: &str,
    sizes: &[usize],
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Machine: {} ({} cores), {:.0} GiB RAM, Linux {}; kube-apiserver {}; kubectl {}; {}.",
        machine.cpu,
        machine.cores,
        machine.memory_gib,
        machine.kernel,
        machine.api_server,
        machine.kubectl,
        machine.tether
    );
    let _ = write!(
        s,
        "Load average before the run {:.2}. ",
        machine.load_at_start
    );
    match &machine.other_cpu {
        Some(o) => {
            let _ = writeln!(
                s,
                "CPU taken by other processes during the measurements: median {:.0}%, at most {:.0}% of the \
                 machine; {} session(s) were repeated because others took more than {:.0}%, {} measurement(s) \
                 above that were kept after the retries.\n",
                100.0 * o.median,
                100.0 * o.max,
                o.repeated,
                100.0 * o.threshold,
                o.noisy
            );
        }
        None => s.push_str("\n\n"),
    }
    let _ = writeln!(s, "Command: `{command}`\n");
    for &n in sizes {
        let _ = writeln!(s, "### N = {n}\n");
        let _ = writeln!(
            s,
            "| tool | scenario | median s | min–max s | vs tether | writes | dry-runs | reads | tool CPU s | peak RSS MB | server CPU s | status |"
        );
        let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
        for sc in Scenario::ALL {
            for tool in [
                Tool::Tether,
                Tool::KubectlClient,
                Tool::KubectlServer,
                Tool::RawSsa,
                Tool::RawValidated,
            ] {
                let Some(r) = row(rows, n, tool, sc) else {
                    continue;
                };
                let ceiling = tool.is_ceiling();
                if ceiling && sc != Scenario::FirstSync {
                    continue;
                }
                let label = match r.concurrency {
                    Some(c) if ceiling => format!("{} c={c}", tool.label()),
                    _ => tool.label().to_owned(),
                };
                let ratio = match (tool, r.ratio_vs_tether) {
                    (Tool::Tether, Some(_)) => "1.00×".to_owned(),
                    (_, Some(x)) => format!("{x:.2}×"),
                    _ => "–".into(),
                };
                let range = match (r.min_s, r.max_s) {
                    (Some(a), Some(b)) => format!("{}–{}", secs(Some(a)), secs(Some(b))),
                    _ => "–".into(),
                };
                let _ =
                    writeln!(
                    s,
                    "| {label} | {} | {} | {range} | {ratio} | {} | {} | {} | {} | {} | {} | {} |",
                    sc.key(),
                    secs(r.median_s),
                    int(r.writes),
                    int(r.dry_runs),
                    int(r.reads),
                    secs(r.cpu_s),
                    r.peak_rss_mb.map(|m| format!("{m:.0}")).unwrap_or("–".into()),
                    secs(r.server_cpu_s),
                    cell(&r.status),
                );
            }
        }
        s.push('\n');
        let ts: Vec<&Target> = targets.iter().filter(|t| t.n == n).collect();
        if !ts.is_empty() {
            let _ = writeln!(s, "Targets at N = {n}:\n");
            for t in ts {
                let mark = match t.met {
                    Some(true) => "met",
                    Some(false) => "**missed**",
                    None => "informative, no target",
                };
                let _ = writeln!(s, "- {}: {} — {mark}", t.what, t.measured);
            }
            s.push('\n');
        }
        for ceiling in Tool::CEILINGS {
            let sw: Vec<&Sample> = sweep
                .iter()
                .filter(|x| x.n == n && x.tool == ceiling)
                .collect();
            if sw.is_empty() {
                continue;
            }
            let cells: Vec<String> = sw
                .iter()
                .map(|x| {
                    format!(
                        "c={}: {}",
                        x.concurrency.unwrap_or(0),
                        if x.status.measured() {
                            format!("{:.2} s", x.wall_s)
                        } else {
                            x.status.text()
                        }
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "Concurrency sweep of the {} at N = {n} (one run each, fresh state): {}\n",
                ceiling.label(),
                cells.join(", ")
            );
        }
        let timed: Vec<&Sample> = [Tool::Tether, Tool::RawSsa, Tool::RawValidated]
            .into_iter()
            .filter_map(|t| median_sample(samples, n, t, Scenario::FirstSync))
            .filter(|x| !x.phases.is_empty())
            .collect();
        if !timed.is_empty() {
            let _ = writeln!(
                s,
                "Where the first sync's time goes at N = {n} (median repetition):\n"
            );
            for x in timed {
                let _ = writeln!(s, "{}", phases_table(x));
            }
        }
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn f3(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_default()
}

/// `results.csv`: one row per size × tool × scenario.
pub fn rows_csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "n,tool,scenario,status,reps,concurrency,median_s,min_s,max_s,ratio_vs_tether,writes,dry_runs,reads,cpu_s,peak_rss_mb,server_cpu_s\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.n,
            r.tool.key(),
            r.scenario.key(),
            csv_field(&r.status),
            r.reps,
            opt(r.concurrency),
            f3(r.median_s),
            f3(r.min_s),
            f3(r.max_s),
            f3(r.ratio_vs_tether),
            opt(r.writes),
            opt(r.dry_runs),
            opt(r.reads),
            f3(r.cpu_s),
            r.peak_rss_mb.map(|m| format!("{m:.1}")).unwrap_or_default(),
            f3(r.server_cpu_s),
        );
    }
    s
}

/// `samples.csv`: every measurement, sweep included.
pub fn samples_csv(samples: &[Sample]) -> String {
    let mut s = String::from(
        "n,tool,scenario,rep,concurrency,status,wall_s,cpu_s,peak_rss_mb,writes,dry_runs,requests,reads,server_cpu_s,other_cpu_s,load_before,summary\n",
    );
    for x in samples {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{:.3},{:.3},{:.1},{},{},{},{},{},{},{:.2},{}",
            x.n,
            x.tool.key(),
            x.scenario.key(),
            x.rep.map(|r| r.to_string()).unwrap_or("sweep".into()),
            opt(x.concurrency),
            csv_field(&x.status.text()),
            x.wall_s,
            x.cpu_s,
            x.peak_rss_mb,
            opt(x.writes),
            opt(x.dry_runs),
            opt(x.requests),
            opt(x.reads),
            f3(x.server_cpu_s),
            f3(x.other_cpu_s),
            x.load_before,
            csv_field(&x.summary),
        );
    }
    s
}

/// `chart.svg`: median wall time against N, one line per tool, first sync and no-op resync side by side.
pub fn svg(rows: &[Row], sizes: &[usize]) -> String {
    let tools = [
        (Tool::Tether, "#1b7f3b"),
        (Tool::KubectlClient, "#c0392b"),
        (Tool::KubectlServer, "#d68910"),
        (Tool::RawSsa, "#2e5fa8"),
        (Tool::RawValidated, "#7d3c98"),
    ];
    let panels = [
        (Scenario::FirstSync, "first sync"),
        (Scenario::Noop, "no-op resync"),
    ];
    let (pw, ph, ml, mt, mb) = (380.0, 260.0, 55.0, 40.0, 45.0);
    let width = ml + 2.0 * (pw + ml) + 20.0;
    let height = mt + ph + mb + 30.0 + 18.0 * tools.len() as f64;
    let max_n = sizes.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    for (p, (sc, title)) in panels.iter().enumerate() {
        let x0 = ml + p as f64 * (pw + ml);
        let max_t = rows
            .iter()
            .filter(|r| r.scenario == *sc)
            .filter_map(|r| r.max_s)
            .fold(0.0f64, f64::max)
            .max(0.1);
        let ty = nice(max_t);
        let xp = |n: f64| x0 + n / max_n * pw;
        let yp = |t: f64| mt + ph - t / ty * ph;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{title}: median wall time (s) vs N</text>"#,
            x0 + pw / 2.0,
            mt - 15.0
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
        );
        for k in 0..=4 {
            let t = ty * k as f64 / 4.0;
            let y = yp(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                x0 + pw,
                x0 - 5.0,
                y + 4.0,
                trim(t)
            );
        }
        for &n in sizes {
            let x = xp(n as f64);
            let _ = writeln!(
                s,
                r#"<text x="{x}" y="{}" text-anchor="middle">{n}</text>"#,
                mt + ph + 16.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">N (objects)</text>"#,
            x0 + pw / 2.0,
            mt + ph + 34.0
        );
        for (tool, color) in tools {
            let mut pts: Vec<(f64, f64, f64, f64)> = rows
                .iter()
                .filter(|r| r.tool == tool && r.scenario == *sc)
                .filter_map(|r| Some((xp(r.n as f64), yp(r.median_s?), yp(r.min_s?), yp(r.max_s?))))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if pts.len() > 1 {
                let line: Vec<String> = pts
                    .iter()
                    .map(|p| format!("{:.1},{:.1}", p.0, p.1))
                    .collect();
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                    line.join(" ")
                );
            }
            for (x, y, lo, hi) in pts {
                let _ = writeln!(
                    s,
                    r#"<line x1="{x:.1}" y1="{lo:.1}" x2="{x:.1}" y2="{hi:.1}" stroke="{color}"/><circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"/>"#
                );
            }
        }
    }
    let ly = mt + ph + mb + 10.0;
    for (i, (tool, color)) in tools.iter().enumerate() {
        let y = ly + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{ml}" y="{}" width="14" height="4" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            y - 4.0,
            ml + 20.0,
            y,
            tool.label()
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}">bars: min–max over repetitions</text>"#,
        ml + pw + ml,
        ly
    );
    s.push_str("</svg>\n");
    s
}

/// A round axis maximum at or above `v`.
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Writes every output file under `out`.
pub fn write_all(
    out: &Path,
    markdown: &str,
    rows: &[Row],
    samples: &[Sample],
    json: &serde_json::Value,
    sizes: &[usize],
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("mkdir {}", out.display()))?;
    let w = |name: &str, content: &str| {
        let p = out.join(name);
        std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))
    };
    w("report.md", markdown)?;
    w("results.csv", &rows_csv(rows))?;
    w("samples.csv", &samples_csv(samples))?;
    w("results.json", &serde_json::to_string_pretty(json)?)?;
    w("chart.svg", &svg(rows, sizes))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    fn first_sync(tool: Tool, median_s: f64) -> Row {
        Row {
            n: 1000,
            tool,
            scenario: Scenario::FirstSync,
            status: "ok".into(),
            reps: 3,
            concurrency: Some(64),
            median_s: Some(median_s),
            min_s: Some(median_s),
            max_s: Some(median_s),
            ratio_vs_tether: None,
            writes: None,
            dry_runs: None,
            reads: None,
            cpu_s: None,
            peak_rss_mb: None,
            server_cpu_s: None,
        }
    }

    #[test]
    fn the_first_sync_is_held_against_both_ceilings() {
        let rows = [
            first_sync(Tool::Tether, 3.0),
            first_sync(Tool::RawSsa, 1.5),
            first_sync(Tool::RawValidated, 2.4),
        ];
        let t = targets(&rows, &[1000]);
        let find = |what: &str| t.iter().find(|t| t.what.contains(what));
        let plain = find("raw server-side-apply ceiling").map(|t| (&t.measured, t.met));
        assert_eq!(
            plain,
            Some((&"2.00× (3.00 s vs 1.50 s)".to_owned(), Some(false)))
        );
        let validated = find("validated ceiling").map(|t| (&t.measured, t.met));
        assert_eq!(
            validated,
            Some((&"1.25× (3.00 s vs 2.40 s)".to_owned(), None))
        );
        // Without the validated ceiling measured, there is no line for it.
        assert!(targets(&rows[..2], &[1000])
            .iter()
            .all(|t| !t.what.contains("validated")));
    }

    #[test]
    fn nice_axis() {
        assert_eq!(nice(0.7), 0.8);
        assert_eq!(nice(7.5), 8.0);
        assert_eq!(nice(42.0), 50.0);
        assert_eq!(nice(26.0), 30.0);
    }
}
