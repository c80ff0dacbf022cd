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
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
    pub(crate) fn build(
        &self,
        checkout: &crate::checkout::Checkout<'_>,
        dir: &str,
    ) -> Result<Vec<Resource>, Vec<FileError>> {
        let root = checkout.root;
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
        let reads = tree(root, dir, self.config.allow_remote).map_err(fail)?;
        let inputs: BTreeSet<String> = reads.iter().map(|k| k.dir.clone()).collect();
        let key = self.key(root, &inputs);
        let text = match self.cached(&key) {
            Some(t) => t,
            None => {
                let t = self.run(root, dir).map_err(|e| {
                    fail(tether_core::report::redact(
                        &e,
                        &generator_secrets(checkout, &reads),
                    ))
                })?;
                self.remember(&key, &t);
                t
            }
        };
        crate::yaml::parse_output(&at, "kustomize build", &text)
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
        let home =
            tempfile::tempdir().map_err(|e| format!("cannot make a HOME for kustomize: {e}"))?;
        let mut cmd = crate::process::sandboxed(&self.config.bin, &dir, None, home.path());
        cmd.arg("build")
            .arg("--load-restrictor=LoadRestrictionsRootOnly")
            .arg(".");
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
        let run = crate::process::Run {
            shown: shown.clone(),
            root: root.to_path_buf(),
            timeout: self.config.timeout,
        };
        let out = run.output(cmd).map_err(|e| {
            if e.starts_with("cannot run") {
                format!(
                    "{e} ({}); install kustomize or point tether at it",
                    self.config.bin.display()
                )
            } else {
                e
            }
        })?;
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

/// What the secretGenerators of these kustomizations hold, in the forms kustomize's errors quote: each
/// literal whole and its value, each line of an env file and its value. Taken out of build errors, which
/// go to Events and notifications.
fn generator_secrets(checkout: &crate::checkout::Checkout<'_>, reads: &[Read]) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |entry: &str| {
        out.push(entry.trim().to_owned());
        if let Some((_, value)) = entry.split_once('=') {
            let value = value.trim();
            out.push(value.to_owned());
            // kustomize takes the quotes off `key="value"`.
            for q in ['"', '\''] {
                if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
                    out.push(inner.to_owned());
                }
            }
        }
    };
    let strings = |v: &Value, field: &str| -> Vec<String> {
        match v.get(field) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    for k in reads {
        let generators = k.doc.get("secretGenerator").and_then(Value::as_array);
        for generator in generators.into_iter().flatten() {
            for literal in strings(generator, "literals") {
                add(&literal);
            }
            // `env` is kustomize's older spelling of `envs`.
            let files = strings(generator, "envs")
                .into_iter()
                .chain(strings(generator, "env"));
            for file in files {
                // A file that cannot be read is kustomize's to complain about.
                let Some(bytes) =
                    normalise(&join(&k.dir, &file)).and_then(|p| checkout.read_bytes(&p).ok())
                else {
                    continue;
                };
                // A hostile repository's env file of millions of lines would make the redaction of one
                // error cost minutes: the first lines are looked at, kustomize stops at the first bad one.
                for line in bytes.split(|&b| b == b'\n').take(MAX_ENV_LINES) {
                    // Go's line reader drops the `\r` of a CRLF line before kustomize quotes it.
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    let text = String::from_utf8_lossy(line);
                    if text.trim().is_empty() || text.trim_start().starts_with('#') {
                        continue;
                    }
                    add(&text);
                    // A line that is not UTF-8 is quoted by kustomize as its bytes, `[88 61 ...]`, too.
                    if std::str::from_utf8(line).is_err() {
                        let numbers: Vec<String> = line.iter().map(u8::to_string).collect();
                        add(&numbers.join(" "));
                    }
                }
            }
        }
    }
    out.retain(|v| !v.is_empty());
    out.sort();
    out.dedup();
    out
}

/// Lines of one env file whose values are taken out of a failed build's error.
const MAX_ENV_LINES: usize = 10_000;

/// One kustomization a build reads.
struct Read {
    /// Its directory, relative to the root.
    dir: String,
    /// Its file, relative to the root.
    file: String,
    doc: Value,
}

/// The kustomization in `dir` and every local one it reaches through `resources`, `bases` and
/// `components`, `dir`'s first, then breadth first (nearest first).
fn tree(root: &Path, dir: &str, allow_remote: bool) -> Result<Vec<Read>, String> {
    // kustomize follows links: none of the directories it reads may lead out of the checkout.
    let checkout = crate::checkout::Checkout::new(root, 0)?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut todo = std::collections::VecDeque::from([dir.to_owned()]);
    while let Some(d) = todo.pop_front() {
        if !seen.insert(d.clone()) {
            continue;
        }
        checkout
            .resolve(&d)
            .and_then(|_| checkout.no_links_out(&d))
            .map_err(|e| format!("{}: {e}", if d.is_empty() { "." } else { &d }))?;
        let Some(file) = kustomization_file(&root.join(&d)) else {
            out.push(Read {
                file: String::new(),
                dir: d,
                doc: Value::Null,
            });
            continue;
        };
        let text = std::fs::read_to_string(root.join(&d).join(file))
            .map_err(|e| format!("cannot read {}: {e}", join(&d, file)))?;
        let doc: Value = crate::yaml::from_str(&text)
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
                    todo.push_back(target);
                }
            }
        }
        out.push(Read {
            file: join(&d, file),
            dir: d,
            doc,
        });
    }
    Ok(out)
}

/// An `images:` entry of a kustomization: kustomize sets every container image named `name` to
/// `newName`/`newTag`/`digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// The kustomization file, relative to the repository root.
    pub file: String,
    /// Its index in `images:`.
    pub index: usize,
    /// `name`: the image it replaces.
    pub name: String,
    /// `newName`.
    pub new_name: Option<String>,
    /// `newTag`.
    pub new_tag: Option<String>,
    /// `digest`.
    pub digest: Option<String>,
}

impl ImageEntry {
    /// The image repository containers end up with: `newName`, else `name`.
    pub fn produces(&self) -> &str {
        self.new_name.as_deref().unwrap_or(&self.name)
    }
}

/// The `images:` entries of the kustomization in `dir` and of the local kustomizations it builds on,
/// `dir`'s own first: kustomize applies an overlay's entries last, so the first entry that produces an image
/// is the one that decides it.
pub fn image_entries(root: &Path, dir: &str) -> Result<Vec<ImageEntry>, String> {
    let mut out = Vec::new();
    for k in tree(root, dir, true)? {
        for (index, entry) in k
            .doc
            .get("images")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let field = |f: &str| entry.get(f).and_then(Value::as_str).map(str::to_owned);
            let Some(name) = field("name") else {
                continue;
            };
            out.push(ImageEntry {
                file: k.file.clone(),
                index,
                name,
                new_name: field("newName"),
                new_tag: field("newTag").or_else(|| {
                    // `newTag: 1.4` is a number to YAML; kustomize reads it as the tag.
                    entry
                        .get("newTag")
                        .filter(|v| v.is_number())
                        .map(ToString::to_string)
                }),
                digest: field("digest"),
            });
        }
    }
    Ok(out)
}

/// What a local file is to a kustomization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Listed in `resources` (or `bases`): it defines objects.
    Resource,
    /// Listed in `patchesStrategicMerge` or as a `patches` entry's `path`: it changes them.
    Patch,
}

/// A local file a build of the kustomization in `dir` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// The file, relative to the repository root.
    pub file: String,
    /// How kustomize uses it.
    pub role: Role,
    /// Read by `dir`'s own kustomization, not through a base (which other overlays may share).
    pub own: bool,
}

/// The local files the kustomization in `dir` and the ones it builds on read as resources or patches,
/// `dir`'s own first.
pub fn local_files(root: &Path, dir: &str) -> Result<Vec<LocalFile>, String> {
    let mut out = Vec::new();
    for k in tree(root, dir, true)? {
        let own = k.dir == dir;
        let mut push = |entry: &str, role: Role| {
            if let Some(file) = normalise(&join(&k.dir, entry)) {
                if root.join(&file).is_file() {
                    out.push(LocalFile { file, role, own });
                }
            }
        };
        let strings = |field: &str| -> Vec<String> {
            k.doc
                .get(field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        for entry in strings("resources").iter().chain(&strings("bases")) {
            push(entry, Role::Resource);
        }
        for entry in strings("patchesStrategicMerge") {
            push(&entry, Role::Patch);
        }
        for path in k
            .doc
            .get("patches")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("path").and_then(Value::as_str))
        {
            push(path, Role::Patch);
        }
    }
    Ok(out)
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
pub(crate) fn normalise(path: &str) -> Option<String> {
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

pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
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
}
