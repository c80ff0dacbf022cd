//! A small run of the benchmark harness, so it cannot rot: N = 30, one repetition, against the test cluster
//! (`Cluster::shared()`: its own control plane, or the one named by `TETHER_TEST_KUBECONFIG` and
//! `TETHER_TEST_AUDIT_LOG`). It checks the harness's output, not speed: no timed assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::process::Command;

use tether_testenv::Cluster;

const TOOLS: [&str; 3] = ["tether", "kubectl-client", "kubectl-server"];
const SCENARIOS: [&str; 5] = [
    "first-sync",
    "noop-resync",
    "one-change",
    "drift-repair",
    "gc",
];

/// Splits one CSV line (the harness quotes fields that hold commas or quotes).
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

#[test]
fn harness_reports_every_scenario_and_tether_noop_writes_nothing() {
    let cluster = Cluster::shared();
    let audit = cluster.audit_log.as_ref().expect(
        "the smoke run counts writes: set TETHER_TEST_AUDIT_LOG to the API server's audit log",
    );
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args([
            "--sizes",
            "30",
            "--reps",
            "1",
            "--sweep",
            "8,32",
            "--latency-commits",
            "2",
            "--warm-objects",
            "120",
            "--warm-changes",
            "2",
            "--warm-idle",
            "2",
        ])
        .args(["--timeout", "120"])
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .arg("--audit-log")
        .arg(audit)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run tether-bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "tether-bench failed ({}):\n{stdout}\n{stderr}",
        run.status
    );

    // The printed table has a row for every tool × scenario.
    for tool in [
        "tether daemon --once",
        "kubectl apply (client-side)",
        "kubectl apply --server-side",
    ] {
        for sc in SCENARIOS {
            assert!(
                stdout.contains(&format!("| {tool} | {sc} |")),
                "no table row for {tool} {sc}:\n{stdout}"
            );
        }
    }
    assert!(stdout.contains("| raw SSA client (ceiling) c="), "{stdout}");
    assert!(
        stdout.contains("| raw SSA, dry-run first (validated ceiling) c="),
        "{stdout}"
    );
    // Commit to applied, with a webhook and with polling, each over the commits asked for.
    assert!(
        stdout.contains("| signed webhook (poll interval 1 h) | 2 |")
            && stdout.contains("| polling every 5s (reference) | 2 |"),
        "{stdout}"
    );

    // The agent kept running: a commit is a dry-run and a write of its one object, and nothing is listed.
    let commit_row = stdout
        .lines()
        .find(|l| l.starts_with("| one-object commit, push to live (2 commits) | 120 |"))
        .unwrap_or_else(|| panic!("no warm commit row:\n{stdout}"));
    assert!(
        commit_row.contains("1 patch configmaps (dry-run)")
            && commit_row.contains("1 patch configmaps,")
            && !commit_row.contains("list "),
        "{commit_row}"
    );
    assert!(
        stdout.contains("| hand edit set back (2 edits) | 120 |"),
        "{stdout}"
    );

    // The CSV too, with the values the harness must get right.
    let csv = std::fs::read_to_string(out.path().join("results.csv")).unwrap();
    let mut lines = csv.lines();
    let header = fields(lines.next().unwrap());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: HashMap<(String, String), Vec<String>> = lines
        .map(fields)
        .map(|f| ((f[col("tool")].clone(), f[col("scenario")].clone()), f))
        .collect();
    for tool in TOOLS {
        for sc in SCENARIOS {
            let row = rows
                .get(&(tool.to_owned(), sc.to_owned()))
                .unwrap_or_else(|| panic!("no CSV row for {tool} {sc}:\n{csv}"));
            assert_eq!(row[col("n")], "30");
            let status = &row[col("status")];
            assert!(
                status == "ok" || status.starts_with("n/a"),
                "{tool} {sc}: {status}"
            );
            if status == "ok" {
                assert!(!row[col("median_s")].is_empty(), "{tool} {sc} has no time");
                assert!(
                    !row[col("writes")].is_empty(),
                    "{tool} {sc} has no write count"
                );
            }
        }
    }
    let raw = &rows[&("raw-ssa".to_owned(), "first-sync".to_owned())];
    assert_eq!(raw[col("status")], "ok");
    assert_eq!(
        raw[col("writes")],
        "30",
        "the ceiling client applies each object once"
    );
    // The validated ceiling dry-runs each object once, then writes it once.
    let validated = &rows[&("raw-ssa-validated".to_owned(), "first-sync".to_owned())];
    assert_eq!(validated[col("status")], "ok");
    assert_eq!(
        (
            validated[col("dry_runs")].as_str(),
            validated[col("writes")].as_str()
        ),
        ("30", "30"),
        "{csv}"
    );

    let tether = |sc: &str| &rows[&("tether".to_owned(), sc.to_owned())];
    assert_eq!(tether("first-sync")[col("status")], "ok");
    assert_eq!(
        tether("noop-resync")[col("writes")],
        "0",
        "tether wrote on a no-op resync:\n{csv}"
    );
    assert_eq!(tether("noop-resync")[col("status")], "ok");
    assert!(
        tether("gc")[col("status")] == "ok"
            || tether("gc")[col("status")].starts_with("n/a (GC not available"),
        "{csv}"
    );
    // kubectl --server-side sends a write per object even when nothing changed: the harness must see them.
    assert_eq!(
        rows[&("kubectl-server".to_owned(), "noop-resync".to_owned())][col("writes")],
        "30"
    );

    // Kustomize: built once, then not again for the same tree (also after a restart), rebuilt on a change.
    for (step, runs) in [
        ("first build", 1),
        ("same tree, same process", 0),
        ("same tree, after a restart (disk cache)", 0),
        ("one file of the base changed", 1),
    ] {
        assert!(
            stdout.contains(&format!("| 30 | {step} |")) && {
                let line = stdout
                    .lines()
                    .find(|l| l.starts_with(&format!("| 30 | {step} |")))
                    .unwrap_or_default();
                line.ends_with(&format!("| {runs} |"))
            },
            "kustomize row '{step}' should show {runs} run(s):\n{stdout}"
        );
    }

    assert!(
        stdout.contains("## Image edit in a large file")
            && stdout.contains("| one image edit (tether) |"),
        "no image-edit section:\n{stdout}"
    );

    for f in ["report.md", "samples.csv", "results.json", "chart.svg"] {
        assert!(out.path().join(f).exists(), "{f} missing");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(json["samples"].as_array().unwrap().len() >= 16);
}

#[test]
fn write_repo_writes_the_repository_the_harness_syncs() {
    // What a profile by hand syncs must be the benchmark's repository: every object once, in the files
    // the harness writes (namespaces first, then one file per app).
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args(["write-repo", "--size", "30", "--run", "probe", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut dirs = vec![dir.path().to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines().filter(|l| l.starts_with("kind: ")) {
                *kinds.entry(line[6..].to_owned()).or_default() += 1;
            }
            assert_eq!(
                text.matches("bench.tether.dev/run: probe").count(),
                text.lines().filter(|l| l.starts_with("kind: ")).count(),
                "{text}"
            );
        }
    }
    assert_eq!(kinds.values().sum::<usize>(), 30, "{kinds:?}");
    assert_eq!(kinds.get("Namespace"), Some(&1), "{kinds:?}");
    assert!(dir.path().join("namespaces/team-00.yaml").is_file());
}
