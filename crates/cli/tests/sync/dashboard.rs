//! The status page in a real browser: `tether dashboard` against a live agent, loaded by headless Debian
//! `chromium`, asserted on the DOM the page rendered (the applied revision and its commit, a workload row
//! with its running image, a pending image update, and after a broken commit the error with file:line),
//! and a screenshot left under the target directory.
//!
//! Chromium runs with a proxy that refuses everything, so nothing but loopback (which Chromium never sends
//! through a proxy) can be reached: the test never touches the internet.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::api::{deployment, start};
use crate::automation::Env;
use crate::support::namespace as ns;

/// `tether dashboard` running as a child: killed on drop, its stderr printed when the test fails.
struct Dashboard {
    child: Child,
    /// Kept open, so a later write of the dashboard never meets a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
    stderr: tempfile::NamedTempFile,
    url: String,
}

impl Dashboard {
    /// Starts `tether dashboard --url <agent> --port 0` and reads the address it prints.
    fn start(e: &Env, agent: &str) -> Dashboard {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child =
            e.w.command(&["dashboard", "--url", agent, "--port", "0"])
                .stdout(Stdio::piped())
                .stderr(stderr.reopen().unwrap())
                .spawn()
                .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut d = Dashboard {
            child,
            _stdout: None,
            stderr,
            url: String::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send((line, r));
        });
        let (line, reader) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("tether dashboard printed no address within 30 s");
        d.url = line
            .trim()
            .strip_prefix("dashboard: ")
            .unwrap_or_else(|| panic!("tether dashboard printed {line:?}, not its address"))
            .to_owned();
        d._stdout = Some(reader);
        d
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
            eprintln!(
                "--- tether dashboard stderr ---\n{log}--- end of tether dashboard stderr ---"
            );
        }
    }
}

/// Runs headless chromium on `url` with `extra` flags (a fresh profile each time) and returns its stdout;
/// killed, with all it started, after 60 s.
fn chromium(extra: &[&str], url: &str) -> String {
    use std::os::unix::process::CommandExt;
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        // Anything not on loopback goes to a proxy nobody runs: no request leaves the machine.
        "--proxy-server=http://127.0.0.1:9",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(out.reopen().unwrap())
    .stderr(err.reopen().unwrap())
    .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "chromium is not installed: run scripts/setup.sh (it installs Debian's chromium package)"
        ),
        Err(e) => panic!("cannot start chromium: {e}"),
    };
    let stderr = || std::fs::read_to_string(err.path()).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "chromium failed ({status}):\n{}",
                stderr()
            );
            break;
        }
        if Instant::now() > deadline {
            // The browser and every process it started (they share its process group).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s:\n{}", stderr());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(out.path()).unwrap()
}

/// The page as the browser rendered it.
fn dom(url: &str) -> String {
    let dom = chromium(&["--dump-dom"], url);
    assert!(
        dom.contains("id=\"workloads\""),
        "not the status page:\n{dom}"
    );
    dom
}

/// From the start tag holding `needle` (an attribute, e.g. `id="errors"`) to the first `</end>` after it.
fn element<'a>(dom: &'a str, needle: &str, end: &str) -> &'a str {
    let at = dom
        .find(needle)
        .unwrap_or_else(|| panic!("no {needle} in the page:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap_or(at);
    let close = format!("</{end}>");
    let stop = dom[at..]
        .find(&close)
        .map_or(dom.len(), |i| at + i + close.len());
    &dom[start..stop]
}

/// The text of the element with `id`, up to its first child.
fn text<'a>(dom: &'a str, id: &str) -> &'a str {
    let e = element(dom, &format!("id=\"{id}\""), "");
    let rest = &e[e.find('>').map_or(0, |i| i + 1)..];
    &rest[..rest.find('<').unwrap_or(rest.len())]
}

#[test]
fn the_status_page_shows_the_sync_its_workloads_and_a_broken_commit_with_file_and_line() {
    let e = Env::new("dashboard");
    let n = e.w.n.clone();
    e.push("team/app", "1.0.0", "2024-01-01T00:00:00Z");
    e.push("team/app", "1.1.0", "2024-02-01T00:00:00Z");
    let repo = e.reg.repo("team/app");
    e.w.repo.write(&[
        ("ns.yaml", &ns(&n)),
        (
            "apps/web.yaml",
            &deployment(
                &n,
                "web",
                "    fluxcd.io/tag.app: semver:~1\n",
                &format!("{repo}:1.0.0"),
                1,
            ),
        ),
    ]);
    // Markup in a commit subject is shown as text, never parsed.
    let good = e.w.repo.commit("web <b>1.0.0</b> & friends");
    let agent = start(&e, &[]);
    let dash = Dashboard::start(&e, &agent.url);
    assert!(
        dash.url.starts_with("http://127.0.0.1:") && dash.url.ends_with('/'),
        "{}",
        dash.url
    );

    let page = dom(&dash.url);
    assert_eq!(text(&page, "revision"), &good[..12], "{page}");
    assert_eq!(
        text(&page, "commit-subject"),
        "web &lt;b&gt;1.0.0&lt;/b&gt; &amp; friends",
        "{page}"
    );
    assert!(!page.contains("<b>1.0.0</b>"), "{page}");
    assert_eq!(text(&page, "commit-author"), "Test Author", "{page}");
    assert_eq!(text(&page, "sync-result"), "ok", "{page}");
    assert!(text(&page, "refreshed").starts_with("refreshed "), "{page}");
    let workloads = element(&page, "id=\"workloads\"", "table");
    let id = format!("{n}:deployment/web");
    let row = element(workloads, &format!("data-workload=\"{id}\""), "tr");
    assert!(
        row.contains(&id) && row.contains(&format!("{repo}:1.0.0")),
        "{row}"
    );
    assert!(row.contains("tag.app=semver:~1"), "{row}");
    // Image automation: the newer tag the policy allows is pending.
    let images = element(&page, "id=\"images\"", "table");
    let pending = element(images, &format!("data-workload=\"{id}\""), "tr");
    assert!(pending.contains("→ 1.1.0"), "{pending}");
    let history = element(&page, "id=\"history\"", "table");
    assert!(history.contains(&good[..12]), "{history}");

    // A commit the API server rejects: the sync fails naming the file and line.
    let broken = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: broken\n  namespace: {n}\nspec:\n  replicas: -1\n\
         \x20 selector:\n    matchLabels: {{app: broken}}\n  template:\n    metadata:\n      labels: {{app: broken}}\n\
         \x20   spec:\n      containers:\n      - name: app\n        image: {repo}:1.0.0\n"
    );
    e.w.repo.write(&[("apps/broken.yaml", &broken)]);
    let bad = e.w.repo.commit("a broken deployment");
    let failed = e.w.tether(&["sync", "--url", &agent.url]).failed();
    assert!(failed.contains("apps/broken.yaml"), "{failed}");

    let page = dom(&dash.url);
    let errors = element(&page, "id=\"errors\"", "div");
    assert!(errors.contains("apps/broken.yaml:1"), "{errors}");
    assert!(
        errors.contains(&format!("{n}:deployment/broken")),
        "{errors}"
    );
    assert!(
        errors.contains(&bad[..12]) && errors.contains("a broken deployment"),
        "{errors}"
    );
    assert!(text(&page, "sync-result").starts_with("failed"), "{page}");
    // The cluster still runs the last good commit.
    assert_eq!(text(&page, "revision"), &good[..12], "{page}");

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,1600",
        ],
        &dash.url,
    );
    assert_png(&png);
    println!("dashboard screenshot: {}", png.display());
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("chromium left no screenshot at {}: {e}", path.display()));
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG ({} bytes)",
        path.display(),
        bytes.len()
    );
}
