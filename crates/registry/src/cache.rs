//! The on-disk metadata cache, replacing Flux v1's memcached: a restart keeps everything learned, and there is
//! no extra stateful service to run.
//!
//! Layout under `<cache dir>/registry-v1/` (plain JSON files, so a person can look inside, and no database
//! crate to keep up with; every write goes to a temporary file renamed into place, so a crash never leaves a
//! torn file, and an unreadable file is treated as missing):
//!
//! - `images/<2 hex>/<algorithm>-<hex>.<platform>.json`: what a manifest digest resolves to on a platform
//!   (build times, or why it is excluded). Digests are content addresses, so these never expire.
//! - `repos/<host>/<path>/_tags.json`: per repository, each tag's last seen digest, when it was checked and
//!   how long until it is checked again (adaptive, as Flux v1: doubled while the digest stays, halved when it
//!   changes).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::manifest::{BuildTimes, Platform};
use crate::error::Error;
use crate::reference::{validate_digest, ImageRepo};

/// What one manifest digest resolves to on one platform. Immutable, like the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// The digest a tag points to (an image manifest, or an index).
    pub digest: String,
    /// The platform this was resolved for (it matters only for indexes).
    pub platform: Platform,
    /// The platform's image manifest digest: `digest` itself unless `digest` is an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The config blob's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_digest: Option<String>,
    /// Build times from the config.
    #[serde(default)]
    pub times: BuildTimes,
    /// Why the tag cannot be a candidate (an index without the platform, an unsupported manifest), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
}

impl ImageMeta {
    /// The build time to order by; see [`BuildTimes::best`].
    pub fn created(&self) -> Option<DateTime<Utc>> {
        self.times.best()
    }
}

/// How often a cached tag is checked again for a new digest (one cheap `HEAD` request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// The first interval after a tag is seen.
    pub new_tag: Duration,
    /// The shortest interval, reached by tags whose digest keeps changing (`latest`-like tags).
    pub min: Duration,
    /// The longest interval, reached by tags that never change (release tags).
    pub max: Duration,
}

impl Default for RefreshPolicy {
    /// Flux v1's numbers: 1 hour for a new tag, between 5 minutes and 7 days.
    fn default() -> Self {
        RefreshPolicy {
            new_tag: Duration::from_secs(3600),
            min: Duration::from_secs(300),
            max: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl RefreshPolicy {
    fn clamp(&self, d: Duration) -> Duration {
        d.clamp(self.min, self.max.max(self.min))
    }

    /// The interval after the first sight of a tag.
    pub(crate) fn first(&self) -> Duration {
        self.clamp(self.new_tag)
    }

    /// The next interval after a check found the digest `unchanged` or not.
    pub(crate) fn next(&self, previous: Duration, unchanged: bool) -> Duration {
        if unchanged {
            self.clamp(previous.saturating_mul(2))
        } else {
            self.clamp(previous / 2)
        }
    }
}

/// One tag in a repository's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEntry {
    /// The digest the tag pointed to when last checked.
    pub digest: String,
    /// When that was.
    pub checked: DateTime<Utc>,
    /// How long after `checked` the tag is checked again, in seconds.
    pub interval_secs: u64,
}

impl TagEntry {
    /// Whether the tag needs no check at `now`.
    pub fn fresh(&self, now: DateTime<Utc>) -> bool {
        let end = i64::try_from(self.interval_secs)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|interval| self.checked.checked_add_signed(interval));
        // A clock that went backwards past `checked` makes the entry stale rather than fresh for long.
        now >= self.checked && end.is_some_and(|end| now < end)
    }

    /// The current interval.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
}

/// A repository's tags as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoIndex {
    /// The canonical repository name, to recognise the file.
    pub repository: String,
    /// Tag → entry.
    pub tags: BTreeMap<String, TagEntry>,
}

/// The metadata store: on disk under a directory, or in memory when there is none.
#[derive(Debug)]
pub struct MetaCache {
    dir: Option<PathBuf>,
    memory: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    metas: HashMap<(String, Platform), ImageMeta>,
    indexes: HashMap<ImageRepo, RepoIndex>,
}

impl MetaCache {
    /// A cache under `dir` (created if missing), or in memory for `None`.
    pub fn new(dir: Option<&Path>) -> Result<MetaCache, Error> {
        let dir = match dir {
            Some(d) => {
                let root = d.join("registry-v1");
                std::fs::create_dir_all(&root).map_err(|e| Error::Cache {
                    path: root.display().to_string(),
                    reason: format!("cannot create it: {e}"),
                })?;
                Some(root)
            }
            None => None,
        };
        Ok(MetaCache {
            dir,
            memory: Mutex::new(Memory::default()),
        })
    }

    /// The directory files go to (`<cache dir>/registry-v1`), if on disk.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The cached metadata of a digest on a platform.
    pub async fn meta(&self, digest: &str, platform: &Platform) -> Option<ImageMeta> {
        match self.meta_path(digest, platform) {
            Some(path) => read_json(&path)
                .await
                .filter(|m: &ImageMeta| m.digest == digest),
            None if self.dir.is_some() => None,
            None => self
                .memory()
                .metas
                .get(&(digest.to_owned(), platform.clone()))
                .cloned(),
        }
    }

    /// Stores the metadata of a digest. Failures to write are logged, not returned: a cache that cannot be
    /// written costs requests, not correctness.
    pub async fn put_meta(&self, meta: &ImageMeta) {
        match self.meta_path(&meta.digest, &meta.platform) {
            Some(path) => write_json(&path, meta).await,
            None if self.dir.is_some() => {}
            None => {
                self.memory()
                    .metas
                    .insert((meta.digest.clone(), meta.platform.clone()), meta.clone());
            }
        }
    }

    /// The repository's tag index (empty if never stored or unreadable).
    pub async fn index(&self, repo: &ImageRepo) -> RepoIndex {
        let stored = match &self.dir {
            Some(_) => read_json(&self.index_path(repo)).await,
            None => self.memory().indexes.get(repo).cloned(),
        };
        stored
            .filter(|i: &RepoIndex| i.repository == repo.to_string())
            .unwrap_or_else(|| RepoIndex {
                repository: repo.to_string(),
                tags: BTreeMap::new(),
            })
    }

    /// Stores the repository's tag index.
    pub async fn put_index(&self, repo: &ImageRepo, index: &RepoIndex) {
        match &self.dir {
            Some(_) => write_json(&self.index_path(repo), index).await,
            None => {
                self.memory().indexes.insert(repo.clone(), index.clone());
            }
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `None` in memory mode, and for a digest that is not safe as a file name (never from a registry that
    /// follows the spec; such a digest simply is not cached).
    fn meta_path(&self, digest: &str, platform: &Platform) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        validate_digest(digest).ok()?;
        let (algorithm, encoded) = digest.split_once(':')?;
        let shard: String = encoded.chars().take(2).collect();
        Some(
            dir.join("images")
                .join(shard)
                .join(format!("{algorithm}-{encoded}.{}.json", platform.key())),
        )
    }

    fn index_path(&self, repo: &ImageRepo) -> PathBuf {
        let host: String = repo
            .host()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // Path components start with [a-z0-9], so `_tags.json` never collides with a repository directory.
        let mut path = self
            .dir
            .clone()
            .unwrap_or_default()
            .join("repos")
            .join(host);
        for component in repo.path().split('/') {
            path.push(component);
        }
        path.join("_tags.json")
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read registry cache file; refetching");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable registry cache file; refetching");
            None
        }
    }
}

async fn write_json<T: Serialize>(path: &Path, value: &T) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let result = async {
        let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let tmp = path.with_extension(format!(
            "tmp.{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        tokio::fs::write(&tmp, &bytes).await?;
        if let Err(e) = tokio::fs::rename(&tmp, path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Ok::<(), std::io::Error>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write registry cache file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn meta(platform: Platform) -> ImageMeta {
        ImageMeta {
            digest: D.into(),
            platform,
            image_digest: Some(D.into()),
            config_digest: None,
            times: BuildTimes {
                created: DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123456789Z")
                    .ok()
                    .map(|t| t.with_timezone(&Utc)),
                ..BuildTimes::default()
            },
            excluded: None,
        }
    }

    #[tokio::test]
    async fn disk_round_trip_survives_a_new_cache_and_ignores_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let repo = ImageRepo::parse("127.0.0.1:5000/team/app").unwrap();
        {
            let cache = MetaCache::new(Some(dir.path())).unwrap();
            assert_eq!(cache.meta(D, &Platform::linux_amd64()).await, None);
            cache.put_meta(&meta(Platform::linux_amd64())).await;
            let mut index = cache.index(&repo).await;
            assert!(index.tags.is_empty());
            index.tags.insert(
                "v1".into(),
                TagEntry {
                    digest: D.into(),
                    checked: Utc::now(),
                    interval_secs: 60,
                },
            );
            cache.put_index(&repo, &index).await;
        }
        let cache = MetaCache::new(Some(dir.path())).unwrap();
        let m = cache.meta(D, &Platform::linux_amd64()).await.unwrap();
        assert_eq!(m, meta(Platform::linux_amd64()));
        assert_eq!(
            cache
                .meta(D, &Platform::parse("linux/arm64").unwrap())
                .await,
            None
        );
        let index = cache.index(&repo).await;
        assert!(index.tags["v1"].fresh(Utc::now()));
        let path = cache.index_path(&repo);
        assert!(
            path.ends_with("repos/127.0.0.1_5000/team/app/_tags.json"),
            "{}",
            path.display()
        );
        std::fs::write(&path, "{garbage").unwrap();
        assert!(cache.index(&repo).await.tags.is_empty());
        // Nothing but the files themselves is left behind (no temporary files).
        let leftovers: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn memory_mode_and_unsafe_digests() {
        let cache = MetaCache::new(None).unwrap();
        cache.put_meta(&meta(Platform::linux_amd64())).await;
        assert!(cache.meta(D, &Platform::linux_amd64()).await.is_some());
        let dir = tempfile::tempdir().unwrap();
        let disk = MetaCache::new(Some(dir.path())).unwrap();
        assert_eq!(
            disk.meta_path("sha256:../../etc", &Platform::linux_amd64()),
            None
        );
    }

    #[test]
    fn refresh_intervals_double_halve_and_clamp() {
        let p = RefreshPolicy::default();
        assert_eq!(p.first(), Duration::from_secs(3600));
        assert_eq!(
            p.next(Duration::from_secs(3600), true),
            Duration::from_secs(7200)
        );
        assert_eq!(
            p.next(Duration::from_secs(3600), false),
            Duration::from_secs(1800)
        );
        assert_eq!(p.next(p.max, true), p.max);
        assert_eq!(p.next(p.min, false), p.min);
        let entry = TagEntry {
            digest: D.into(),
            checked: Utc::now() - chrono::Duration::seconds(10),
            interval_secs: 5,
        };
        assert!(!entry.fresh(Utc::now()));
        assert!(!entry.fresh(entry.checked - chrono::Duration::seconds(1)));
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
