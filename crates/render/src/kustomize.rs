//! Kustomize directories: a directory holding a kustomization is rendered by `kustomize build`, not file by
//! file. tether runs the `kustomize` binary: kustomize has no library outside Go, and users expect exactly
//! the output of the kustomize they run themselves.
//!
//! Safe by default: the load restrictor stays root-only, exec and container plugins and Helm stay off, and
//! remote bases are refused before kustomize runs (and cannot be fetched by it: its proxies and git's
//! protocols point nowhere) unless allowed. Every build has a deadline and an output limit. Builds are cached
//! by the hash of everything they read under the cache directory, so an unchanged kustomization is not built
//! again at the next sync, nor after a restart.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tether_core::{Provenance, Resource};

use crate::FileError;

/// The file names that make a directory a kustomization, in kustomize's order of preference.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How kustomize runs.
#[derive(Debug, Clone)]
pub struct KustomizeConfig {
    /// The `kustomize` binary (looked up on `PATH` when it has no directory part).
    pub bin: PathBuf,
    /// Allow bases and resources fetched from the network (git or HTTP URLs).
    pub allow_remote: bool,
    /// The longest one build may take.
    pub timeout: Duration,
    /// Where builds are cached (across syncs and restarts); `None` builds every time.
    pub cache_dir: Option<PathBuf>,
}

impl Default for KustomizeConfig {
    fn default() -> Self {
        KustomizeConfig {
            bin: PathBuf::from("kustomize"),
            allow_remote: false,
            timeout: Duration::from_secs(120),
            cache_dir: None,
        }
    }
}

/// The largest build output accepted.
const MAX_OUTPUT: u64 = 64 << 20;

/// Runs kustomize and remembers what it built.
#[derive(Debug, Default)]
pub(crate) struct Kustomize {
    config: KustomizeConfig,
    runs: AtomicUsize,
}

impl Kustomize {
    /// Builds with these settings.
    pub fn new(config: KustomizeConfig) -> Self {
        Kustomize {
            config,
            runs: AtomicUsize::new(0),
        }
    }

    /// How many times kustomize was actually run (cache misses).
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::Relaxed)
    }

    /// Builds the kustomization in `dir` (relative to `root`, with `/` separators) into resources. Problems
    /// are reported at the kustomization file.
    pub(crate) fn build(&self, root: &Path, dir: &str) -> Result<Vec<Resource>, Vec<FileError>> {
        let abs = root.join(dir);
        let Some(file) = kustomization_file(&abs) else {
            return Ok(Vec::new());
        };
        let at = Provenance {
            file: join(dir, file),
            line: 1,
        };
        let fail = |message: String| {
            vec![FileError {
                at: at.clone(),
                message,
            }]
        };
        let inputs = inputs(root, dir, self.config.allow_remote).map_err(fail)?;
        let key = self.key(root, &inputs);
        let text = match self.cached(&key) {
            Some(t) => t,
            None => {
                let t = self.run(root, dir).map_err(fail)?;
                self.remember(&key, &t);
                t
            }
        };
        let mut out = Vec::new();
        let mut errors = Vec::new();
        // Everything kustomize emits is an object; a document without apiVersion and kind is an error here.
        let mut not_objects = Vec::new();
        crate::yaml::parse_file(&at.file, &text, &mut out, &mut errors, &mut not_objects);
        for line in not_objects {
            errors.push(FileError {
                at: line,
                message: "object has no apiVersion and no kind".into(),
            });
        }
        // Lines of kustomize's output mean nothing to a reader of the repository: everything points at the
        // kustomization that produced it.
        for e in &mut errors {
            e.message = format!(
                "in the output of kustomize build (line {}): {}",
                e.at.line, e.message
            );
            e.at = at.clone();
        }
        for r in &mut out {
            r.source = at.clone();
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn key(&self, root: &Path, inputs: &BTreeSet<String>) -> String {
        let mut h = Sha256::new();
        h.update(self.config.bin.to_string_lossy().as_bytes());
        h.update([u8::from(self.config.allow_remote)]);
        for dir in inputs {
            for entry in walkdir::WalkDir::new(root.join(dir))
                .follow_links(false)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| e.file_name() != ".git")
                .filter_map(Result::ok)
            {
                let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
                h.update(rel.to_string_lossy().as_bytes());
                h.update([0]);
                if entry.file_type().is_file() {
                    if let Ok(bytes) = std::fs::read(entry.path()) {
                        h.update(Sha256::digest(&bytes));
                    }
                } else if entry.path_is_symlink() {
                    if let Ok(target) = std::fs::read_link(entry.path()) {
                        h.update(target.to_string_lossy().as_bytes());
                    }
                }
            }
        }
        hex::encode(h.finalize())
    }

    /// A build's output from the cache directory. Not kept in memory: outputs can be large, a long-running
    /// daemon would keep every one it ever built, and reading the file back is cheap next to a build.
    fn cached(&self, key: &str) -> Option<String> {
        let file = self.config.cache_dir.as_ref()?.join(format!("{key}.yaml"));
        std::fs::read_to_string(file).ok()
    }

    fn remember(&self, key: &str, text: &str) {
        let Some(dir) = &self.config.cache_dir else {
            return;
        };
        // A cache that cannot be written only costs a rebuild later.
        let tmp = dir.join(format!("{key}.yaml.partial"));
        let done = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, dir.join(format!("{key}.yaml"))));
        if let Err(e) = done {
            tracing::debug!(component = "render", error = %e, "cannot cache a kustomize build");
        }
    }

    /// Runs `kustomize build` in `dir` (relative to `root`) in a sandbox of flags and environment; returns its
    /// stdout.
    fn run(&self, root: &Path, rel: &str) -> Result<String, String> {
        let dir = root.join(rel);
        self.runs.fetch_add(1, Ordering::Relaxed);
        let mut cmd = Command::new(&self.config.bin);
        cmd.arg("build")
            .arg("--load-restrictor=LoadRestrictionsRootOnly")
            .arg(".")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("GIT_TERMINAL_PROMPT", "0");
        if !self.config.allow_remote {
            // Nothing can be fetched even if a remote reference slipped past the check: HTTP(S) goes to a
            // closed port, git may only read local repositories.
            for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                cmd.env(proxy, "http://127.0.0.1:9");
            }
            cmd.env("GIT_ALLOW_PROTOCOL", "file");
        }
        let shown = format!(
            "kustomize build --load-restrictor=LoadRestrictionsRootOnly {}",
            if rel.is_empty() { "." } else { rel }
        );
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot run {} for {shown}: {e}; install kustomize or point tether at it",
                self.config.bin.display()
            )
        })?;
        let stdout = child.stdout.take().map(|s| read_capped(s, MAX_OUTPUT));
        let stderr = child.stderr.take().map(|s| read_capped(s, 1 << 20));
        let deadline = Instant::now() + self.config.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{shown} did not finish within {:?}; it was stopped",
                        self.config.timeout
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("{shown}: {e}")),
            }
        };
        let out = stdout.map(join_reader).unwrap_or_default();
        let err = stderr.map(join_reader).unwrap_or_default();
        if !status.success() {
            // kustomize names files by their absolute path in the checkout: show them as in the repository.
            let tail = tail(&err, 8).replace(&format!("{}/", root.display()), "");
            return Err(format!("{shown} failed ({status}): {tail}"));
        }
        if out.len() as u64 > MAX_OUTPUT {
            return Err(format!(
                "{shown} wrote more than {} MiB; a kustomization that large is refused",
                MAX_OUTPUT >> 20
            ));
        }
        String::from_utf8(out).map_err(|_| format!("{shown} wrote output that is not UTF-8"))
    }
}

/// True when `path` names a kustomization file: objects built by kustomize carry it as their source.
pub fn is_kustomization_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    KUSTOMIZATION_FILES.contains(&name)
}

/// The kustomization file in `dir`, if it is a kustomization.
pub(crate) fn kustomization_file(dir: &Path) -> Option<&'static str> {
    KUSTOMIZATION_FILES
        .into_iter()
        .find(|f| dir.join(f).is_file())
}

/// Every directory (relative to `root`) a build of `dir` reads: `dir` and, recursively, the local
/// directories its `resources`, `bases` and `components` name. Refuses remote references unless allowed,
/// and references that leave the repository.
fn inputs(root: &Path, dir: &str, allow_remote: bool) -> Result<BTreeSet<String>, String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let Some(file) = kustomization_file(&root.join(&d)) else {
            continue;
        };
        let text = std::fs::read_to_string(root.join(&d).join(file))
            .map_err(|e| format!("cannot read {}: {e}", join(&d, file)))?;
        let doc: Value = serde_saphyr::from_str(&text)
            .map_err(|e| format!("{} is not valid YAML: {e}", join(&d, file)))?;
        for field in ["resources", "bases", "components"] {
            for entry in doc
                .get(field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let local = root.join(&d).join(entry);
                if !local.exists() && is_remote(entry) {
                    if allow_remote {
                        continue;
                    }
                    return Err(format!(
                        "{}: {field} entry '{entry}' is fetched from the network, which tether does not \
                         allow by default (most clusters cannot reach it, and it changes without a commit); \
                         vendor it into the repository",
                        join(&d, file)
                    ));
                }
                let Some(target) = normalise(&join(&d, entry)) else {
                    return Err(format!(
                        "{}: {field} entry '{entry}' points outside the repository",
                        join(&d, file)
                    ));
                };
                if root.join(&target).is_dir() {
                    todo.push(target);
                }
            }
        }
    }
    Ok(seen)
}

/// True for what kustomize would fetch (asked only of entries that are not local paths): URLs,
/// `git@host:` and `host.tld/path` references.
fn is_remote(entry: &str) -> bool {
    let first = entry.split('/').next().unwrap_or("");
    entry.contains("://")
        || entry.starts_with("git@")
        || entry.starts_with("git::")
        || entry.contains("?ref=")
        || (entry.contains('/') && first.contains('.') && !first.starts_with('.'))
}

/// `a/b/../c` → `a/c`; `None` when it climbs above the root.
fn normalise(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads up to `limit + 1` bytes on a thread, so a full pipe never blocks the child.
fn read_capped(r: impl Read + Send + 'static, limit: u64) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut r = r.take(limit + 1);
        let _ = r.read_to_end(&mut buf);
        // Drain the rest so the child can finish; it is refused for its size anyway.
        let _ = std::io::copy(&mut r.into_inner(), &mut std::io::sink());
        buf
    })
}

fn join_reader(h: std::thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    h.join().unwrap_or_default()
}

/// The last `n` non-empty lines of `bytes`, on one line.
fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(n);
    let t = lines[from..].join(" | ");
    if t.is_empty() {
        "no output on stderr".to_owned()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_references_are_told_apart_from_local_paths() {
        for remote in [
            "https://github.com/org/repo//base?ref=v1",
            "github.com/org/repo/base?ref=v1",
            "git@github.com:org/repo.git",
            "git::https://example.com/repo",
            "ssh://git@example.com/repo",
        ] {
            assert!(is_remote(remote), "{remote}");
        }
        for local in [
            "../base",
            "base",
            "deployment.yaml",
            "./v1.2/app",
            "apps/web.yaml",
            "v1/app",
        ] {
            assert!(!is_remote(local), "{local}");
        }
    }

    #[test]
    fn normalised_paths_stay_inside_the_repository() {
        assert_eq!(normalise("staging/../base").as_deref(), Some("base"));
        assert_eq!(normalise("./a/./b").as_deref(), Some("a/b"));
        assert_eq!(normalise("a/../../etc"), None);
        assert_eq!(normalise("/etc"), None);
    }

    #[test]
    fn a_stderr_tail_keeps_the_last_lines_on_one_line() {
        assert_eq!(tail(b"a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail(b"", 2), "no output on stderr");
    }
}
