//! The agent kept running (the watch-driven daemon) on N objects, on a control plane of its own: a
//! one-object commit (push to live, and the requests it cost), the periodic sync of an unchanged head, hand
//! edits set back, the requests of an idle hour, and the agent's memory. Requests are counted from the API
//! server's audit log by tether's User-Agent (`tether/<version>`); times are wall clock on this machine.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use serde::Serialize;

use crate::cluster::Target;
use crate::latency::{free_port, git, webhook, Agent, SECRET};
use crate::workload::{Kind, Workload};

const SYNC_NAME: &str = "warm";

/// What one warm run measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Warm {
    /// Objects in Git.
    pub objects: usize,
    /// The first sync, as the agent logged it.
    pub first_sync_s: f64,
    /// One-object commits: push (webhook sent) to the change being live, ms.
    pub commit_ms: Vec<f64>,
    /// The agent's fetch within each of those, ms (from its stage log).
    pub fetch_ms: Vec<f64>,
    /// Requests tether sent to the API server per one-object commit, by `verb resource`.
    pub commit_requests: BTreeMap<String, usize>,
    /// One-object commits measured.
    pub commits: usize,
    /// Periodic syncs of the unchanged head: wall time each, ms.
    pub resync_ms: Vec<f64>,
    /// Hand edits: edit to set back, ms.
    pub drift_ms: Vec<f64>,
    /// Seconds the agent was left idle (periodic syncs only).
    pub idle_s: f64,
    /// Requests tether sent while idle, by `verb resource`.
    pub idle_requests: BTreeMap<String, usize>,
    /// Resident memory after the first sync and at the end, and the peak, MB.
    pub rss_after_first_mb: f64,
    /// At the end of the run.
    pub rss_end_mb: f64,
    /// Peak (VmHWM).
    pub rss_peak_mb: f64,
}

/// `VmRSS` and `VmHWM` of a process, MB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1000.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The agent's log lines containing `needle`.
fn log_lines(log: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// The value of `key=` in a logfmt line.
fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_owned())
}

fn wait_lines(log: &Path, needle: &str, count: usize, limit: Duration) -> Result<Vec<String>> {
    let deadline = Instant::now() + limit;
    loop {
        let lines = log_lines(log, needle);
        if lines.len() >= count {
            return Ok(lines);
        }
        if Instant::now() > deadline {
            bail!(
                "no {count}th '{needle}' in the agent's log within {limit:?} (see {})",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Requests by tether (its User-Agent) logged since `mark`, by `verb resource`.
fn requests(audit: &Path, mark: u64) -> Result<BTreeMap<String, usize>> {
    // The server logs a request as it answers it; let the last ones land.
    std::thread::sleep(Duration::from_millis(300));
    let mut f = std::fs::File::open(audit).with_context(|| format!("open {}", audit.display()))?;
    f.seek(SeekFrom::Start(mark))?;
    let mut out = BTreeMap::new();
    for line in BufReader::new(f).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line?) else {
            continue;
        };
        let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).unwrap_or("");
        if !s("/userAgent").starts_with("tether/") {
            continue;
        }
        let dry = if s("/requestURI").contains("dryRun=") {
            " (dry-run)"
        } else {
            ""
        };
        *out.entry(format!("{} {}{dry}", s("/verb"), s("/objectRef/resource")))
            .or_default() += 1;
    }
    Ok(out)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Runs the warm scenarios on `n` objects: `commits` one-object commits, `edits` hand edits, `idle` seconds
/// idle with a periodic sync every 5 s.
pub fn run(
    rt: &tokio::runtime::Runtime,
    tether: &Path,
    work: &Path,
    n: usize,
    (commits, edits, idle): (usize, usize, Duration),
) -> Result<Warm> {
    let dir = work.join(format!("warm-{n}"));
    std::fs::create_dir_all(&dir)?;
    let target = Target::start(&dir)?;
    let audit: PathBuf = target.audit_log.clone().context("the plane's audit log")?;
    let client = rt.block_on(target.client())?;
    let bare = dir.join("remote.git");
    let wt = dir.join("wt");
    let path = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    git(&dir, &["init", "-q", "--bare", "-b", "main", &path(&bare)])?;
    git(&dir, &["clone", "-q", &path(&bare), &path(&wt)])?;
    git(&wt, &["config", "user.name", "bench"])?;
    git(&wt, &["config", "user.email", "bench@localhost"])?;
    let mut workload = Workload::generate(n, "w", "warm");
    workload.write(&wt)?;
    git(&wt, &["add", "-A"])?;
    git(&wt, &["commit", "-q", "-m", "first"])?;
    git(&wt, &["push", "-q", "origin", "HEAD:main"])?;

    let secret = dir.join("webhook-secret");
    std::fs::write(&secret, SECRET)?;
    let url = format!("file://{}", bare.display());
    let api = format!("127.0.0.1:{}", free_port()?);
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let log = dir.join("agent.log");
    let agent = Agent(
        Command::new(tether)
            .args(["daemon", "--git-url", &url, "--git-poll-interval", "1h"])
            .args(["--sync-interval", "5s"])
            .args(["--listen", &api, "--listen-metrics", &metrics])
            .args(["--registry-disable-scanning", "--sync-name", SYNC_NAME])
            .args(["--namespace", "default"])
            .arg("--webhook-secret-file")
            .arg(&secret)
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .env("KUBECONFIG", &target.kubeconfig)
            .env("RUST_LOG", "info,tether_daemon::sync=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start tether daemon")?,
    );
    let pid = agent.0.id();
    let mut warm = Warm {
        objects: n,
        commits,
        ..Warm::default()
    };
    let first = wait_lines(
        &log,
        "message=\"sync complete\"",
        1,
        Duration::from_secs(900),
    )?;
    warm.first_sync_s = field(&first[0], "duration_ms")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1000.0;
    std::thread::sleep(Duration::from_secs(3));
    warm.rss_after_first_mb = memory(pid).0;

    // One-object commits, each to another ConfigMap.
    let configmaps: Vec<usize> = (0..workload.objects.len())
        .filter(|&i| workload.objects[i].kind == Kind::ConfigMap)
        .collect();
    if configmaps.len() < commits.max(edits) {
        bail!("{n} objects hold too few ConfigMaps for the warm scenarios");
    }
    let mut per_commit: Vec<BTreeMap<String, usize>> = Vec::new();
    for (k, &i) in configmaps.iter().take(commits).enumerate() {
        let value = format!("commit-{k}");
        workload.objects[i].body["data"]["LOG_LEVEL"] = value.clone().into();
        let o = workload.objects[i].clone();
        let files = workload.files()?;
        std::fs::write(wt.join(&o.file), &files[&o.file])?;
        git(&wt, &["commit", "-q", "-am", &format!("one object {k}")])?;
        git(&wt, &["push", "-q", "origin", "HEAD:main"])?;
        let before = log_lines(&log, "message=\"sync complete\"").len();
        let mark = size(&audit);
        let cms: kube::Api<ConfigMap> =
            kube::Api::namespaced(client.clone(), o.namespace.as_deref().unwrap_or("default"));
        let t0 = Instant::now();
        webhook(&api, &url)?;
        until_value(rt, &cms, &o.name, &value, Duration::from_secs(120))
            .with_context(|| format!("commit {k} (see {})", log.display()))?;
        warm.commit_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        wait_lines(
            &log,
            "message=\"sync complete\"",
            before + 1,
            Duration::from_secs(120),
        )?;
        if let Some(stage) = log_lines(&log, "message=\"time per stage\"").last() {
            if let Some(ms) = field(stage, "stages")
                .and_then(|s| {
                    s.split(' ')
                        .find_map(|p| p.strip_prefix("fetch=").map(str::to_owned))
                })
                .and_then(|v| v.split("ms").next().and_then(|x| x.parse::<f64>().ok()))
            {
                warm.fetch_ms.push(ms);
            }
        }
        // The requests the GETs above made are the bench's own (another User-Agent).
        per_commit.push(requests(&audit, mark)?);
    }
    warm.commit_requests = median_counts(&per_commit);

    // Hand edits, each to another ConfigMap (so no breaker trips), set back by the watch.
    let patch = PatchParams::default();
    for &i in configmaps.iter().rev().take(edits) {
        let o = &workload.objects[i];
        let cms: kube::Api<ConfigMap> =
            kube::Api::namespaced(client.clone(), o.namespace.as_deref().unwrap_or("default"));
        let want = o.body["data"]["LOG_LEVEL"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let edit = serde_json::json!({"data": {"LOG_LEVEL": "edited-by-hand"}});
        rt.block_on(cms.patch(&o.name, &patch, &Patch::Merge(&edit)))
            .with_context(|| format!("edit {}", o.id()))?;
        let t0 = Instant::now();
        until_value(rt, &cms, &o.name, &want, Duration::from_secs(60))
            .with_context(|| format!("the edit of {} set back (see {})", o.id(), log.display()))?;
        warm.drift_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(200));
    }

    // Idle: periodic syncs of the unchanged head every 5 s, and nothing else to do.
    let resyncs_before = log_lines(&log, "periodic sync from the watch cache").len();
    let mark = size(&audit);
    let t0 = Instant::now();
    std::thread::sleep(idle);
    warm.idle_s = t0.elapsed().as_secs_f64();
    warm.idle_requests = requests(&audit, mark)?;
    warm.resync_ms = log_lines(&log, "periodic sync from the watch cache")
        .iter()
        .skip(resyncs_before)
        .filter_map(|l| field(l, "duration_ms")?.parse::<f64>().ok())
        .collect();
    let (rss, peak) = memory(pid);
    warm.rss_end_mb = rss;
    warm.rss_peak_mb = peak;
    drop(agent);
    drop(target);
    Ok(warm)
}

/// Polls a ConfigMap every 5 ms until its `LOG_LEVEL` is `want`.
fn until_value(
    rt: &tokio::runtime::Runtime,
    cms: &kube::Api<ConfigMap>,
    name: &str,
    want: &str,
    limit: Duration,
) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let got = rt.block_on(cms.get_opt(name)).ok().flatten();
        if got
            .and_then(|c| c.data)
            .and_then(|d| d.get("LOG_LEVEL").cloned())
            .as_deref()
            == Some(want)
        {
            return Ok(());
        }
        if t0.elapsed() > limit {
            bail!("{name} is not {want} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Per `verb resource`, the median count over the commits.
fn median_counts(per: &[BTreeMap<String, usize>]) -> BTreeMap<String, usize> {
    let keys: std::collections::BTreeSet<&String> = per.iter().flat_map(|m| m.keys()).collect();
    keys.into_iter()
        .map(|k| {
            let mut v: Vec<usize> = per.iter().map(|m| m.get(k).copied().unwrap_or(0)).collect();
            v.sort_unstable();
            (k.clone(), v[v.len() / 2])
        })
        .filter(|(_, c)| *c > 0)
        .collect()
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[(((s.len() - 1) as f64) * p).round() as usize]
}

fn counts(m: &BTreeMap<String, usize>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The section of the report.
pub fn markdown(runs: &[Warm]) -> String {
    let mut md = String::from(
        "\n## The agent kept running (watch-driven)\n\nOne daemon per size on a control plane of its own, \
         left running between the scenarios: one-object commits announced by a signed webhook (push to the \
         change being live), hand edits set back by the watch (edit to set back), and an idle stretch with a \
         periodic sync every 5 s. Requests are tether's own, from the API server's audit log.\n\n\
         | what | objects | figure |\n|---|---|---|\n",
    );
    for w in runs {
        let total: usize = w.commit_requests.values().sum();
        let _ = writeln!(
            md,
            "| first sync | {} | {:.1} s |",
            w.objects, w.first_sync_s
        );
        let _ = writeln!(
            md,
            "| one-object commit, push to live ({} commits) | {} | p50 {:.0} ms, p95 {:.0} ms; of which fetch p50 {:.0} ms; {} request(s): {} |",
            w.commits,
            w.objects,
            percentile(&w.commit_ms, 0.5),
            percentile(&w.commit_ms, 0.95),
            percentile(&w.fetch_ms, 0.5),
            total,
            counts(&w.commit_requests)
        );
        let _ = writeln!(
            md,
            "| periodic sync of an unchanged head ({} syncs) | {} | p50 {:.1} ms, max {:.1} ms |",
            w.resync_ms.len(),
            w.objects,
            percentile(&w.resync_ms, 0.5),
            percentile(&w.resync_ms, 1.0)
        );
        let _ = writeln!(
            md,
            "| hand edit set back ({} edits) | {} | p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms |",
            w.drift_ms.len(),
            w.objects,
            percentile(&w.drift_ms, 0.5),
            percentile(&w.drift_ms, 0.95),
            percentile(&w.drift_ms, 1.0)
        );
        let idle_total: usize = w.idle_requests.values().sum();
        let _ = writeln!(
            md,
            "| idle for {:.0} s | {} | {} request(s) ({}), {:.0} per hour |",
            w.idle_s,
            w.objects,
            idle_total,
            counts(&w.idle_requests),
            idle_total as f64 * 3600.0 / w.idle_s.max(1.0)
        );
        let _ = writeln!(
            md,
            "| agent memory | {} | {:.0} MB after the first sync, {:.0} MB at the end, peak {:.0} MB |",
            w.objects, w.rss_after_first_mb, w.rss_end_mb, w.rss_peak_mb
        );
    }
    md
}
