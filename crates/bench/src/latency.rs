//! Commit to applied: how long after `git push` a change is live, with a signed webhook (the agent's poll
//! interval an hour away) against polling (the reference, measured in the same run on the same plane). The
//! agent runs as a daemon against a file:// repository; "applied" is the first GET of the ConfigMap that
//! shows the new value (polled every 10 ms through one kube client).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;
use sha2::Sha256;

use crate::cluster::Target;

/// One way of learning about a commit.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `webhook` or `polling every 5 s`.
    pub mode: String,
    /// Commits measured.
    pub commits: usize,
    /// Median, push to applied.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

const NS: &str = "latency";
/// The webhook secret of the agents the harness runs (this section and the warm one).
pub(crate) const SECRET: &str = "bench-webhook-secret";
/// The polling reference's interval (tether's default is 1 minute, Flux v1's 5 minutes).
const POLL: &str = "5s";
const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Runs git in `dir`, failing with its stderr.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("run git")?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn commit(wt: &Path, value: usize) -> Result<()> {
    std::fs::write(
        wt.join("cm.yaml"),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {NS}\ndata:\n  v: \"{value}\"\n"
        ),
    )?;
    git(wt, &["add", "-A"])?;
    git(wt, &["commit", "-q", "-m", &format!("value {value}")])?;
    git(wt, &["push", "-q", "origin", "HEAD:main"])
}

/// A free loopback port.
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Sends a GitHub-style signed push event.
pub(crate) fn webhook(api: &str, repo_url: &str) -> Result<()> {
    use std::io::{Read, Write};
    let body = format!(r#"{{"ref":"refs/heads/main","repository":{{"clone_url":"{repo_url}"}}}}"#);
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes())?;
    mac.update(body.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let mut s = std::net::TcpStream::connect(api)?;
    write!(
        s,
        "POST /hooks/git HTTP/1.1\r\nHost: {api}\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256={sig}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    if !answer.starts_with("HTTP/1.1 202") {
        bail!("the webhook was not accepted: {answer}");
    }
    Ok(())
}

/// A running agent, killed when dropped.
pub(crate) struct Agent(pub(crate) Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Measures `commits` commits with a webhook, then with polling, on a control plane of its own.
pub fn run(
    rt: &tokio::runtime::Runtime,
    tether: &Path,
    work: &Path,
    commits: usize,
) -> Result<Vec<Row>> {
    let dir = work.join("latency");
    std::fs::create_dir_all(&dir)?;
    let target = Target::start(&dir)?;
    let client = rt.block_on(target.client())?;
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(client, NS);
    let bare = dir.join("remote.git");
    let wt = dir.join("wt");
    git(
        &dir,
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            bare.to_str().unwrap_or_default(),
        ],
    )?;
    git(
        &dir,
        &[
            "clone",
            "-q",
            bare.to_str().unwrap_or_default(),
            wt.to_str().unwrap_or_default(),
        ],
    )?;
    git(&wt, &["config", "user.name", "bench"])?;
    git(&wt, &["config", "user.email", "bench@localhost"])?;
    let secret = dir.join("webhook-secret");
    std::fs::write(&secret, SECRET)?;
    let url = format!("file://{}", bare.display());
    let mut value = 0;
    commit(&wt, value)?;
    let mut rows = Vec::new();
    for webhooks in [true, false] {
        let api = format!("127.0.0.1:{}", free_port()?);
        let metrics = format!("127.0.0.1:{}", free_port()?);
        let cache = tempfile::tempdir_in(&dir)?;
        let poll = if webhooks { "1h" } else { POLL };
        let log =
            std::fs::File::create(dir.join(if webhooks { "webhook.log" } else { "poll.log" }))?;
        let _agent = Agent(
            Command::new(tether)
                .args([
                    "daemon",
                    "--git-url",
                    &url,
                    "--git-poll-interval",
                    poll,
                    "--sync-interval",
                    "1h",
                ])
                .args([
                    "--listen",
                    &api,
                    "--listen-metrics",
                    &metrics,
                    "--registry-disable-scanning",
                ])
                .args(["--sync-name", "latency", "--namespace", "default"])
                .arg("--webhook-secret-file")
                .arg(&secret)
                .arg("--cache-dir")
                .arg(cache.path())
                .env("KUBECONFIG", &target.kubeconfig)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("start tether daemon")?,
        );
        let applied = |v: usize, limit: Duration| -> Result<()> {
            let deadline = Instant::now() + limit;
            loop {
                let got = rt.block_on(cms.get_opt("c")).ok().flatten();
                if got.and_then(|c| c.data).and_then(|d| d.get("v").cloned()) == Some(v.to_string())
                {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!("value {v} not applied within {limit:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        applied(value, Duration::from_secs(60)).context("the first sync")?;
        let mut times = Vec::new();
        for i in 0..commits {
            // Each commit lands at another phase of the poll cycle (spread evenly over one interval), as
            // pushes do in life; right after an apply they would all wait a whole interval.
            std::thread::sleep(POLL_INTERVAL.mul_f64(i as f64 / commits as f64));
            value += 1;
            commit(&wt, value)?;
            let pushed = Instant::now();
            if webhooks {
                webhook(&api, &url)?;
            }
            applied(value, Duration::from_secs(60))?;
            times.push(pushed.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        rows.push(Row {
            mode: if webhooks {
                "signed webhook (poll interval 1 h)".to_owned()
            } else {
                format!("polling every {POLL} (reference)")
            },
            commits,
            p50_ms: percentile(&times, 0.5),
            p95_ms: percentile(&times, 0.95),
            max_ms: times.last().copied().unwrap_or(0.0),
        });
    }
    drop(target);
    Ok(rows)
}

/// The section of the report.
pub fn markdown(rows: &[Row]) -> String {
    let mut md = String::from(
        "\n## Commit to applied: webhook against polling\n\nOne ConfigMap changed per commit, pushed to a \
         file:// repository the agent syncs; time from `git push` returning to the first GET that shows the \
         new value (one control plane, the agent as a daemon).\n\n\
         | how the agent learns of the commit | commits | p50 | p95 | max |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
            r.mode, r.commits, r.p50_ms, r.p95_ms, r.max_ms
        );
    }
    if let [hook, poll] = rows {
        if hook.p50_ms > 0.0 {
            let _ = writeln!(
                md,
                "\nMedian: the webhook is {:.1}x faster than polling every {POLL}.",
                poll.p50_ms / hook.p50_ms
            );
        }
    }
    md
}
