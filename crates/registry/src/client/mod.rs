//! A Docker Registry HTTP API v2 / OCI distribution client for image automation: tag lists, manifests and
//! config blobs, with per-host rate limiting and an on-disk metadata cache.
//!
//! Why a small client on `reqwest` instead of `oci-client` 0.18: image scanning is where Flux v1 hurt most
//! (rate limits, quota bans), so the request layer is the product here. We need control that oci-client does
//! not give: following `Link` pagination, per-host token buckets that a 429 blocks for `Retry-After`,
//! bounded retries with a typed error, `HEAD` refreshes instead of full pulls, digest-keyed caching, and
//! error messages naming the imagePullSecret to fix. The protocol subset we need (token auth, tags, manifests,
//! one blob) is a few hundred lines; wrapping oci-client would still mean reimplementing most of it around
//! its calls. reqwest is built with rustls and ring, like kube, so there is no OpenSSL and one crypto stack.
//!
//! Entry points: [`RegistryClient::candidates`] for the automation loop (tags a policy allows, with build
//! times where the policy needs them) and [`RegistryClient::newest`] for `list-images`.

pub mod auth;
pub mod manifest;
pub mod ratelimit;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use reqwest::header::{
    HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LINK, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::cache::{ImageMeta, MetaCache, RefreshPolicy, TagEntry};
use crate::credentials::{Credential, Credentials};
use crate::error::Error;
use crate::policy::{TagInfo, TagPolicy};
use crate::reference::{normalise_host, validate_digest, ImageRepo};

use auth::{parse_www_authenticate, Challenge, TokenResponse};
use manifest::{choose_platform, BuildTimes, Manifest, Platform, MANIFEST_ACCEPT};
use ratelimit::{parse_retry_after, HostLimiter, RateLimit};

/// The largest manifest or config accepted (the OCI distribution spec's suggested manifest limit).
const MAX_DOCUMENT: usize = 4 << 20;
/// The largest tag-list page accepted.
const MAX_TAG_PAGE: usize = 16 << 20;
/// A tag list with more pages than this is treated as a misbehaving registry.
const MAX_TAG_PAGES: usize = 10_000;
/// The backoff for a 429 without `Retry-After`, doubled per attempt.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// Settings of a [`RegistryClient`]; `Default` is what the daemon uses without flags.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Per-host token bucket (`--registry-rps`, `--registry-burst`).
    pub rate_limit: RateLimit,
    /// Hosts spoken to over plain HTTP (`--registry-insecure-host`), as in image references.
    pub insecure_hosts: Vec<String>,
    /// The platform chosen from manifest lists and indexes.
    pub platform: Platform,
    /// Where metadata is cached (`--cache-dir`); `None` keeps it in memory only.
    pub cache_dir: Option<PathBuf>,
    /// How often cached tags are checked for a new digest.
    pub refresh: RefreshPolicy,
    /// Timeout of one HTTP request, body included.
    pub timeout: Duration,
    /// How many times one request is retried after 429, 502, 503, 504 or a connection failure.
    pub max_retries: u32,
    /// The longest the client waits for a throttled host before failing with [`Error::RateLimited`]; a
    /// longer `Retry-After` (Docker Hub says hours) fails the call at once and keeps the host backed off.
    pub max_retry_wait: Duration,
    /// How many tags of one repository are resolved at once (the rate limit still applies).
    pub concurrency: usize,
    /// The `n` sent with tag-list requests; `None` lets the registry choose its page size.
    pub page_size: Option<u32>,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            rate_limit: RateLimit::default(),
            insecure_hosts: Vec::new(),
            platform: Platform::linux_amd64(),
            cache_dir: None,
            refresh: RefreshPolicy::default(),
            timeout: Duration::from_secs(60),
            max_retries: 4,
            max_retry_wait: Duration::from_secs(60),
            concurrency: 4,
            page_size: None,
            user_agent: concat!("tether/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// One tag of a scan, with what was learned about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDetail {
    /// The tag.
    pub tag: String,
    /// Its manifest digest, when the policy needed metadata.
    pub digest: Option<String>,
    /// Its metadata, when the policy needed it.
    pub meta: Option<ImageMeta>,
}

impl TagDetail {
    /// The build time to order by, if known.
    pub fn created(&self) -> Option<DateTime<Utc>> {
        self.meta.as_ref().and_then(ImageMeta::created)
    }

    /// Why the tag cannot be a candidate, if so.
    pub fn excluded(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.excluded.as_deref())
    }

    /// The tag as the policy module sees it.
    pub fn info(&self) -> TagInfo {
        TagInfo::new(self.tag.clone(), self.created())
    }
}

/// The authentication learned for one repository and credential.
#[derive(Debug, Clone)]
enum RepoAuth {
    Basic,
    Bearer { token: String, expires: Instant },
}

/// A registry client. Cheap to share (`Arc`); all state (buckets, tokens, cache) is inside.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    config: ClientConfig,
    insecure: HashSet<String>,
    limiter: HostLimiter,
    auth: Mutex<HashMap<AuthKey, RepoAuth>>,
    cache: MetaCache,
    /// One scan per repository at a time, so two workloads on one image share the work and the index file.
    repo_locks: Mutex<HashMap<ImageRepo, Arc<tokio::sync::Mutex<()>>>>,
}

/// API host, repository path, and who asks (user name and a hash of the password), so a token obtained with
/// one workload's credentials is never used for another's.
type AuthKey = (String, String, Option<(String, String)>);

impl RegistryClient {
    /// A client with these settings; fails if the cache directory cannot be created or TLS cannot be set up.
    pub fn new(config: ClientConfig) -> Result<RegistryClient, Error> {
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(15)))
            // Blob downloads redirect to storage (S3, GCS); reqwest drops Authorization on a host change.
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| Error::Client(error_chain(&e)))?;
        let cache = MetaCache::new(config.cache_dir.as_deref())?;
        Ok(RegistryClient {
            http,
            insecure: config
                .insecure_hosts
                .iter()
                .map(|h| normalise_host(h))
                .collect(),
            limiter: HostLimiter::new(config.rate_limit),
            auth: Mutex::new(HashMap::new()),
            cache,
            repo_locks: Mutex::new(HashMap::new()),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The tags `policy` allows, with `created` filled when the policy orders by build time. Tags whose
    /// image has no manifest for the platform are left out, as are tags that vanished during the scan.
    ///
    /// Cost: the tag list (all pages); then, only if [`TagPolicy::needs_timestamps`], for each allowed tag
    /// not in the cache a manifest and a config blob GET (two more for an index), and for a cached tag past its
    /// refresh time one `HEAD`. Cached, fresh tags cost nothing, also after a restart.
    pub async fn candidates(
        &self,
        repo: &ImageRepo,
        policy: &TagPolicy,
        creds: &Credentials,
    ) -> Result<Vec<TagInfo>, Error> {
        Ok(self
            .scan(repo, policy, creds)
            .await?
            .iter()
            .filter(|d| d.excluded().is_none())
            .map(TagDetail::info)
            .collect())
    }

    /// The newest `limit` candidates, newest first by the policy's order, with digests and build times, for
    /// `list-images`.
    pub async fn newest(
        &self,
        repo: &ImageRepo,
        policy: &TagPolicy,
        creds: &Credentials,
        limit: usize,
    ) -> Result<Vec<TagDetail>, Error> {
        let details: Vec<TagDetail> = self
            .scan(repo, policy, creds)
            .await?
            .into_iter()
            .filter(|d| d.excluded().is_none())
            .collect();
        let infos: Vec<TagInfo> = details.iter().map(TagDetail::info).collect();
        let by_tag: HashMap<&str, &TagDetail> =
            details.iter().map(|d| (d.tag.as_str(), d)).collect();
        Ok(policy
            .sorted(&infos)
            .into_iter()
            .take(limit)
            .filter_map(|i| by_tag.get(i.tag.as_str()).map(|d| (*d).clone()))
            .collect())
    }

    /// Every tag `policy` allows, in the registry's order, with metadata when the policy needs build times
    /// (including tags excluded for lack of the platform, see [`TagDetail::excluded`]).
    pub async fn scan(
        &self,
        repo: &ImageRepo,
        policy: &TagPolicy,
        creds: &Credentials,
    ) -> Result<Vec<TagDetail>, Error> {
        let tags = self.list_tags(repo, creds).await?;
        let allowed: Vec<String> = tags.iter().filter(|t| policy.matches(t)).cloned().collect();
        if !policy.needs_timestamps() {
            return Ok(allowed
                .into_iter()
                .map(|tag| TagDetail {
                    tag,
                    digest: None,
                    meta: None,
                })
                .collect());
        }

        let lock = self.repo_lock(repo);
        let _guard = lock.lock().await;
        let mut index = self.cache.index(repo).await;
        let before = index.clone();
        // Forget tags the registry no longer has, so the index does not grow forever.
        let present: HashSet<&str> = tags.iter().map(String::as_str).collect();
        index.tags.retain(|t, _| present.contains(t.as_str()));

        let failed = AtomicBool::new(false);
        let index_ref = &index;
        let failed_ref = &failed;
        // `None`: not attempted, because another tag already failed the scan.
        type Outcome = Option<Result<Option<(TagEntry, ImageMeta)>, Error>>;
        // Owned tags: a closure over `&String` makes the future not provably `Send` (a higher-ranked
        // lifetime limitation), and the daemon spawns scans on the runtime.
        let results: Vec<(String, Outcome)> = futures::stream::iter(allowed.iter().cloned())
            .map(|tag: String| async move {
                if failed_ref.load(Ordering::Relaxed) {
                    // The scan fails as a whole, so spend no more requests on it.
                    return (tag, None);
                }
                let result = self
                    .resolve_tag(repo, &tag, index_ref.tags.get(&tag), creds)
                    .await;
                if result.is_err() {
                    failed_ref.store(true, Ordering::Relaxed);
                }
                (tag, Some(result))
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;

        let mut first_error = None;
        let mut resolved: HashMap<String, (TagEntry, ImageMeta)> = HashMap::new();
        for (tag, outcome) in results {
            match outcome {
                Some(Ok(Some(found))) => {
                    resolved.insert(tag, found);
                }
                // Vanished between the tag list and the manifest request.
                Some(Ok(None)) => {
                    index.tags.remove(&tag);
                }
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => {}
            }
        }
        for (tag, (entry, _)) in &resolved {
            index.tags.insert(tag.clone(), entry.clone());
        }
        // Progress is kept even when the scan fails, so the next one resumes instead of starting over.
        if index != before {
            self.cache.put_index(repo, &index).await;
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(allowed
            .into_iter()
            .filter_map(|tag| {
                let (entry, meta) = resolved.remove(&tag)?;
                Some(TagDetail {
                    tag,
                    digest: Some(entry.digest),
                    meta: Some(meta),
                })
            })
            .collect())
    }

    /// All tags of a repository, following `Link` pagination to the end.
    pub async fn list_tags(
        &self,
        repo: &ImageRepo,
        creds: &Credentials,
    ) -> Result<Vec<String>, Error> {
        let mut url = self.url(repo, "tags/list")?;
        if let Some(n) = self.config.page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut tags = Vec::new();
        let mut seen = HashSet::new();
        let mut visited = HashSet::new();
        loop {
            if !visited.insert(url.clone()) || visited.len() > MAX_TAG_PAGES {
                return Err(self.invalid(
                    repo,
                    &url,
                    "the tag list's Link pagination loops or never ends",
                ));
            }
            let resp = self
                .request(repo, creds, Method::GET, &url, Some("application/json"))
                .await?;
            let status = resp.status();
            if status == StatusCode::NOT_FOUND {
                return Err(Error::RepositoryNotFound {
                    host: repo.host().to_owned(),
                    repository: repo.to_string(),
                });
            }
            if !status.is_success() {
                return Err(self.status_error(repo, &Method::GET, &url, resp).await);
            }
            let next = resp
                .headers()
                .get_all(LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_link_next);
            let body = self.read_body(repo, &url, resp, MAX_TAG_PAGE).await?;
            let page: TagPage = serde_json::from_slice(&body).map_err(|e| {
                self.invalid(repo, &url, &format!("the tag list is not valid JSON: {e}"))
            })?;
            for tag in page.tags.unwrap_or_default() {
                if seen.insert(tag.clone()) {
                    tags.push(tag);
                }
            }
            let Some(next) = next else { break };
            let next = url
                .join(&next)
                .map_err(|e| self.invalid(repo, &url, &format!("bad Link header '{next}': {e}")))?;
            // Credentials and tokens must not follow a link to somewhere else.
            if next.origin() != url.origin() {
                return Err(self.invalid(
                    repo,
                    &url,
                    &format!("the tag list's next page is on another host ({next})"),
                ));
            }
            url = next;
        }
        Ok(tags)
    }

    /// The metadata of one tag or digest: its digest, the platform's image and its build times. Uses and
    /// fills the digest cache (but not the tag index: a direct lookup always asks the registry for the tag).
    pub async fn image_meta(
        &self,
        repo: &ImageRepo,
        reference: &str,
        creds: &Credentials,
    ) -> Result<Option<ImageMeta>, Error> {
        if validate_digest(reference).is_ok() {
            return self.meta_for_digest(repo, reference, None, creds).await;
        }
        match self.get_manifest(repo, reference, creds).await? {
            Some((digest, manifest)) => {
                self.meta_for_digest(repo, &digest, Some(manifest), creds)
                    .await
            }
            None => Ok(None),
        }
    }

    /// One tag: from the index while fresh, by `HEAD` when due, by `GET` when new. `None`: it vanished.
    async fn resolve_tag(
        &self,
        repo: &ImageRepo,
        tag: &str,
        entry: Option<&TagEntry>,
        creds: &Credentials,
    ) -> Result<Option<(TagEntry, ImageMeta)>, Error> {
        let now = Utc::now();
        let refresh = self.config.refresh;
        if let Some(entry) = entry {
            if entry.fresh(now) {
                return Ok(self
                    .meta_for_digest(repo, &entry.digest, None, creds)
                    .await?
                    .map(|meta| (entry.clone(), meta)));
            }
            match self.head_manifest(repo, tag, creds).await? {
                None => return Ok(None),
                Some(Some(digest)) => {
                    let unchanged = digest == entry.digest;
                    let next = TagEntry {
                        digest: digest.clone(),
                        checked: now,
                        interval_secs: refresh.next(entry.interval(), unchanged).as_secs(),
                    };
                    return Ok(self
                        .meta_for_digest(repo, &digest, None, creds)
                        .await?
                        .map(|meta| (next, meta)));
                }
                // No digest in the HEAD answer: fall through to a GET.
                Some(None) => {}
            }
        }
        let Some((digest, manifest)) = self.get_manifest(repo, tag, creds).await? else {
            return Ok(None);
        };
        let interval = match entry {
            Some(e) => refresh.next(e.interval(), e.digest == digest),
            None => refresh.first(),
        };
        let next = TagEntry {
            digest: digest.clone(),
            checked: now,
            interval_secs: interval.as_secs(),
        };
        Ok(self
            .meta_for_digest(repo, &digest, Some(manifest), creds)
            .await?
            .map(|meta| (next, meta)))
    }

    /// The metadata of a digest: from the cache, else from the registry (and then cached). `manifest` is the
    /// already fetched manifest of `digest`, if any. `None`: the manifest or config vanished.
    async fn meta_for_digest(
        &self,
        repo: &ImageRepo,
        digest: &str,
        manifest: Option<Result<Manifest, String>>,
        creds: &Credentials,
    ) -> Result<Option<ImageMeta>, Error> {
        let platform = &self.config.platform;
        if let Some(meta) = self.cache.meta(digest, platform).await {
            return Ok(Some(meta));
        }
        let manifest = match manifest {
            Some(m) => m,
            None => match self.get_manifest(repo, digest, creds).await? {
                Some((_, m)) => m,
                None => return Ok(None),
            },
        };
        let mut meta = ImageMeta {
            digest: digest.to_owned(),
            platform: platform.clone(),
            image_digest: Some(digest.to_owned()),
            config_digest: None,
            times: BuildTimes::default(),
            excluded: None,
        };
        let manifest = match manifest {
            Ok(Manifest::Index { entries }) => match choose_platform(&entries, platform) {
                Some(entry) => {
                    meta.image_digest = Some(entry.digest.clone());
                    match self.get_manifest(repo, &entry.digest, creds).await? {
                        Some((_, Ok(Manifest::Index { .. }))) => {
                            Err("the index entry for the platform is itself an index".to_owned())
                        }
                        Some((_, m)) => m,
                        None => return Ok(None),
                    }
                }
                None => {
                    let available: BTreeSet<String> =
                        entries.iter().map(|e| e.platform.to_string()).collect();
                    Err(format!(
                        "no image for {platform} in the index (it has: {})",
                        available.into_iter().collect::<Vec<_>>().join(", ")
                    ))
                }
            },
            other => other,
        };
        match manifest {
            Ok(Manifest::Image { config_digest, .. }) => {
                let Some(config) = self.get_blob(repo, &config_digest, creds).await? else {
                    tracing::warn!(repository = %repo, %digest, config = %config_digest,
                        "image config blob is missing from the registry; leaving the tag out");
                    return Ok(None);
                };
                meta.config_digest = Some(config_digest);
                match serde_json::from_slice::<Value>(&config) {
                    Ok(v) => meta.times = BuildTimes::from_config(&v),
                    Err(e) => {
                        meta.excluded = Some(format!("the image config is not valid JSON: {e}"))
                    }
                }
            }
            Ok(Manifest::SchemaV1 { config }) => meta.times = BuildTimes::from_config(&config),
            Ok(Manifest::Index { .. }) => {
                meta.excluded = Some("nested index".to_owned());
            }
            Err(reason) => meta.excluded = Some(reason),
        }
        if let Some(reason) = &meta.excluded {
            tracing::debug!(repository = %repo, %digest, %reason, "image excluded from candidates");
        }
        self.cache.put_meta(&meta).await;
        Ok(Some(meta))
    }

    /// `GET` a manifest by tag or digest: its digest and the parsed manifest (or why it cannot be used).
    /// `None` on 404.
    async fn get_manifest(
        &self,
        repo: &ImageRepo,
        reference: &str,
        creds: &Credentials,
    ) -> Result<Option<(String, Result<Manifest, String>)>, Error> {
        let url = self.url(repo, &format!("manifests/{reference}"))?;
        let resp = self
            .request(repo, creds, Method::GET, &url, Some(MANIFEST_ACCEPT))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.status_error(repo, &Method::GET, &url, resp).await);
        }
        let header_digest = header_str(resp.headers(), "docker-content-digest");
        let content_type = header_str(resp.headers(), CONTENT_TYPE.as_str());
        let body = self.read_body(repo, &url, resp, MAX_DOCUMENT).await?;
        let computed = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        let digest = if validate_digest(reference).is_ok() {
            if reference.starts_with("sha256:") && computed != reference {
                return Err(self.invalid(
                    repo,
                    &url,
                    &format!("the manifest's content has digest {computed}, not the requested one"),
                ));
            }
            reference.to_owned()
        } else {
            header_digest
                .filter(|d| validate_digest(d).is_ok())
                .unwrap_or(computed)
        };
        Ok(Some((
            digest,
            Manifest::parse(content_type.as_deref(), &body),
        )))
    }

    /// `HEAD` a manifest: `None` on 404, `Some(None)` when the registry sends no digest header.
    async fn head_manifest(
        &self,
        repo: &ImageRepo,
        tag: &str,
        creds: &Credentials,
    ) -> Result<Option<Option<String>>, Error> {
        let url = self.url(repo, &format!("manifests/{tag}"))?;
        let resp = self
            .request(repo, creds, Method::HEAD, &url, Some(MANIFEST_ACCEPT))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.status_error(repo, &Method::HEAD, &url, resp).await);
        }
        Ok(Some(
            header_str(resp.headers(), "docker-content-digest")
                .filter(|d| validate_digest(d).is_ok()),
        ))
    }

    /// `GET` a blob, verifying its sha256 digest. `None` on 404.
    async fn get_blob(
        &self,
        repo: &ImageRepo,
        digest: &str,
        creds: &Credentials,
    ) -> Result<Option<Vec<u8>>, Error> {
        let url = self.url(repo, &format!("blobs/{digest}"))?;
        if validate_digest(digest).is_err() {
            return Err(self.invalid(repo, &url, &format!("invalid config digest '{digest}'")));
        }
        let resp = self.request(repo, creds, Method::GET, &url, None).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.status_error(repo, &Method::GET, &url, resp).await);
        }
        let body = self.read_body(repo, &url, resp, MAX_DOCUMENT).await?;
        if let Some(hex) = digest.strip_prefix("sha256:") {
            if hex::encode(Sha256::digest(&body)) != hex {
                return Err(self.invalid(
                    repo,
                    &url,
                    "the blob's content does not match its digest",
                ));
            }
        }
        Ok(Some(body))
    }

    /// Sends a request to the repository's registry: paced by the host's bucket, authenticated (learning
    /// the scheme from a 401 challenge once), retried on 429/5xx/connection failures within the bounds.
    async fn request(
        &self,
        repo: &ImageRepo,
        creds: &Credentials,
        method: Method,
        url: &Url,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, Error> {
        let credential = creds.for_host(repo.host());
        let key = auth_key(repo, credential);
        let mut authenticated = false;
        loop {
            let auth_header = self.auth_header(&key, credential);
            let resp = self
                .send(repo.api_host(), &method, url, |req| {
                    let req = match accept {
                        Some(a) => req.header(ACCEPT, a),
                        None => req,
                    };
                    match &auth_header {
                        Some(h) => req.header(AUTHORIZATION, h),
                        None => req,
                    }
                })
                .await?;
            let status = resp.status();
            if status != StatusCode::UNAUTHORIZED {
                if status == StatusCode::FORBIDDEN {
                    let detail = registry_error_detail(&resp.bytes().await.unwrap_or_default());
                    return Err(unauthorized(repo, credential, 403, detail));
                }
                return Ok(resp);
            }
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_www_authenticate)
                .collect();
            let detail = registry_error_detail(&resp.bytes().await.unwrap_or_default());
            if authenticated {
                return Err(unauthorized(repo, credential, 401, detail));
            }
            authenticated = true;
            self.authenticate(repo, credential, &key, &challenges, detail)
                .await?;
        }
    }

    /// Answers a 401 challenge: fetches a bearer token, or switches to basic auth.
    async fn authenticate(
        &self,
        repo: &ImageRepo,
        credential: Option<&Credential>,
        key: &AuthKey,
        challenges: &[Challenge],
        detail: String,
    ) -> Result<(), Error> {
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token_url = self.token_url(repo, bearer)?;
            let token_host = host_of(&token_url);
            let resp = self
                .send(
                    &token_host,
                    &Method::GET,
                    &token_url,
                    |req| match credential {
                        Some(c) => req.basic_auth(&c.username, Some(&c.password)),
                        None => req,
                    },
                )
                .await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let detail = registry_error_detail(&resp.bytes().await.unwrap_or_default());
                return Err(unauthorized(repo, credential, status.as_u16(), detail));
            }
            if !status.is_success() {
                return Err(self
                    .status_error(repo, &Method::GET, &token_url, resp)
                    .await);
            }
            let body = self.read_body(repo, &token_url, resp, MAX_DOCUMENT).await?;
            let (token, lifetime) = serde_json::from_slice::<TokenResponse>(&body)
                .ok()
                .and_then(TokenResponse::into_token)
                .ok_or_else(|| self.invalid(repo, &token_url, "the token service sent no token"))?;
            self.auth_map().insert(
                key.clone(),
                RepoAuth::Bearer {
                    token,
                    expires: Instant::now() + lifetime,
                },
            );
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            if credential.is_none() {
                return Err(unauthorized(repo, None, 401, detail));
            }
            self.auth_map().insert(key.clone(), RepoAuth::Basic);
            return Ok(());
        }
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        Err(Error::Unauthorized {
            host: repo.host().to_owned(),
            repository: repo.to_string(),
            status: 401,
            detail,
            hint: if schemes.is_empty() {
                "the registry sent no WWW-Authenticate challenge".to_owned()
            } else {
                format!(
                    "the registry asks for {} authentication, which tether does not support (only bearer and basic)",
                    schemes.join(", ")
                )
            },
        })
    }

    /// The token request URL: the challenge's realm with its service and scope (by default, pull access to
    /// this repository).
    fn token_url(&self, repo: &ImageRepo, bearer: &Challenge) -> Result<Url, Error> {
        let base = self.url(repo, "")?;
        let realm = bearer
            .param("realm")
            .ok_or_else(|| self.invalid(repo, &base, "a Bearer challenge without a realm"))?;
        let mut url = Url::parse(realm)
            .map_err(|e| self.invalid(repo, &base, &format!("bad token realm '{realm}': {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.invalid(repo, &base, &format!("bad token realm '{realm}'")));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = bearer.param("service") {
                q.append_pair("service", service);
            }
            let default_scope = format!("repository:{}:pull", repo.path());
            for scope in bearer.param("scope").unwrap_or(&default_scope).split(' ') {
                if !scope.is_empty() {
                    q.append_pair("scope", scope);
                }
            }
        }
        Ok(url)
    }

    fn auth_header(&self, key: &AuthKey, credential: Option<&Credential>) -> Option<String> {
        match self.auth_map().get(key)? {
            RepoAuth::Bearer { token, expires } if *expires > Instant::now() => {
                Some(format!("Bearer {token}"))
            }
            RepoAuth::Bearer { .. } => None,
            RepoAuth::Basic => credential.map(|c| {
                let pair = format!("{}:{}", c.username, c.password);
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }),
        }
    }

    /// Sends one request to `host` with pacing and bounded retries, but no authentication handling.
    async fn send(
        &self,
        host: &str,
        method: &Method,
        url: &Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let mut attempts: u32 = 0;
        let mut last_retry_after = None;
        loop {
            if let Err(blocked) = self.limiter.acquire(host, self.config.max_retry_wait).await {
                return Err(Error::RateLimited {
                    host: host.to_owned(),
                    attempts,
                    retry_after: last_retry_after.or(Some(blocked.wait)),
                });
            }
            attempts += 1;
            let retries_left = attempts <= self.config.max_retries;
            let backoff = DEFAULT_BACKOFF.saturating_mul(1 << (attempts - 1).min(6));
            let result = build(self.http.request(method.clone(), url.clone()))
                .send()
                .await;
            let resp = match result {
                Ok(resp) => resp,
                Err(e) if retries_left && transient(&e) => {
                    tracing::debug!(%host, %url, error = %error_chain(&e), "registry request failed; retrying");
                    tokio::time::sleep(backoff / 2).await;
                    continue;
                }
                Err(e) => return Err(transport_error(host, url, &e, self.is_insecure(host))),
            };
            let status = resp.status();
            let retry_after = header_str(resp.headers(), RETRY_AFTER.as_str())
                .and_then(|v| parse_retry_after(&v, SystemTime::now()));
            let throttled = status == StatusCode::TOO_MANY_REQUESTS
                || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some());
            if throttled {
                let wait = retry_after.unwrap_or(backoff);
                last_retry_after = retry_after;
                tracing::warn!(%host, %url, status = status.as_u16(), wait_secs = wait.as_secs_f64(), attempts,
                    "registry is rate limiting; backing off this host");
                self.limiter.throttled(host, wait);
                if !retries_left {
                    return Err(Error::RateLimited {
                        host: host.to_owned(),
                        attempts,
                        retry_after,
                    });
                }
                continue;
            }
            if retries_left
                && matches!(
                    status,
                    StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                )
            {
                tracing::debug!(%host, %url, status = status.as_u16(), "registry unavailable; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
            if status.is_success() {
                self.limiter.succeeded(host);
            }
            return Ok(resp);
        }
    }

    fn url(&self, repo: &ImageRepo, suffix: &str) -> Result<Url, Error> {
        let scheme = if self.is_insecure(repo.host()) || self.is_insecure(repo.api_host()) {
            "http"
        } else {
            "https"
        };
        let text = format!("{scheme}://{}/v2/{}/{suffix}", repo.api_host(), repo.path());
        Url::parse(&text).map_err(|e| Error::InvalidResponse {
            host: repo.host().to_owned(),
            url: text.clone(),
            reason: format!("cannot build the URL: {e}"),
        })
    }

    fn is_insecure(&self, host: &str) -> bool {
        self.insecure.contains(&normalise_host(host))
    }

    /// Reads a body of at most `limit` bytes.
    async fn read_body(
        &self,
        repo: &ImageRepo,
        url: &Url,
        mut resp: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, Error> {
        let too_big = || {
            self.invalid(
                repo,
                url,
                &format!("the response is larger than {limit} bytes"),
            )
        };
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(too_big());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(transport_error(
                        repo.api_host(),
                        url,
                        &e,
                        self.is_insecure(repo.api_host()),
                    ))
                }
            }
        }
    }

    async fn status_error(
        &self,
        repo: &ImageRepo,
        method: &Method,
        url: &Url,
        resp: reqwest::Response,
    ) -> Error {
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        Error::Http {
            host: repo.host().to_owned(),
            method: method.to_string(),
            url: url.to_string(),
            status,
            detail: registry_error_detail(&body),
        }
    }

    fn invalid(&self, repo: &ImageRepo, url: &Url, reason: &str) -> Error {
        Error::InvalidResponse {
            host: repo.host().to_owned(),
            url: url.to_string(),
            reason: reason.to_owned(),
        }
    }

    fn auth_map(&self) -> std::sync::MutexGuard<'_, HashMap<AuthKey, RepoAuth>> {
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn repo_lock(&self, repo: &ImageRepo) -> Arc<tokio::sync::Mutex<()>> {
        self.repo_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(repo.clone())
            .or_default()
            .clone()
    }
}

#[derive(Deserialize)]
struct TagPage {
    tags: Option<Vec<String>>,
}

fn auth_key(repo: &ImageRepo, credential: Option<&Credential>) -> AuthKey {
    (
        repo.api_host().to_owned(),
        repo.path().to_owned(),
        credential.map(|c| {
            (
                c.username.clone(),
                hex::encode(&Sha256::digest(c.password.as_bytes())[..8]),
            )
        }),
    )
}

fn unauthorized(
    repo: &ImageRepo,
    credential: Option<&Credential>,
    status: u16,
    detail: String,
) -> Error {
    let host = repo.host();
    let hint = match (credential, status) {
        (None, _) => format!(
            "no credentials for {host}: if {repo} is private, give the workload or its ServiceAccount an imagePullSecret (type kubernetes.io/dockerconfigjson) with an entry for {host}, or add one to --docker-config; otherwise check that the repository exists"
        ),
        (Some(c), 403) => format!(
            "user '{}' (credentials from {}) may not pull {repo}: grant it pull access, or use other credentials",
            c.username, c.source
        ),
        (Some(c), _) => format!(
            "the credentials for {host} from {} (user '{}') were rejected: fix the username and password (or token) in {}",
            c.source, c.username, c.source
        ),
    };
    Error::Unauthorized {
        host: host.to_owned(),
        repository: repo.to_string(),
        status,
        detail,
        hint,
    }
}

fn transport_error(host: &str, url: &Url, e: &reqwest::Error, insecure: bool) -> Error {
    let reason = error_chain(e);
    let lower = reason.to_ascii_lowercase();
    // rustls's error types are not reachable through reqwest's API, so the TLS failure is recognised by its
    // text: a plain-HTTP server answering a TLS hello gives "corrupt message of type InvalidContentType".
    let tls_failure = [
        "certificate",
        "tls",
        "handshake",
        "corrupt message",
        "invalidcontenttype",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let hint = if url.scheme() == "https" && !insecure && tls_failure {
        format!("; if {host} serves plain HTTP, list it in --registry-insecure-host")
    } else if e.is_timeout() {
        "; the registry did not answer in time".to_owned()
    } else {
        String::new()
    };
    Error::Transport {
        host: host.to_owned(),
        url: url.to_string(),
        reason,
        hint,
    }
}

/// Whether a failed request may succeed when repeated: timeouts and dropped or refused connections, not
/// TLS or protocol errors (a plain-HTTP registry answering HTTPS fails the same way every time).
fn transient(e: &reqwest::Error) -> bool {
    if e.is_timeout() {
        return true;
    }
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::TimedOut
            );
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// An error with its causes, which reqwest keeps out of its own message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
}

fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => String::new(),
    }
}

/// `: CODE: message` from a registry error body (`{"errors": [{"code", "message"}]}`), or empty.
fn registry_error_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<RegistryError>,
    }
    #[derive(Deserialize)]
    struct RegistryError {
        code: Option<String>,
        message: Option<String>,
    }
    let Ok(parsed) = serde_json::from_slice::<Errors>(body) else {
        return String::new();
    };
    let parts: Vec<String> = parsed
        .errors
        .into_iter()
        .map(|e| match (e.code, e.message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c,
            (None, Some(m)) => m,
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    }
}

/// The `rel="next"` target of a `Link` header value (`<url>; rel="next"`, possibly among others).
pub fn parse_link_next(value: &str) -> Option<String> {
    value.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = params.split(';').any(|p| {
            p.trim().split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split(' ')
                        .any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        next.then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            parse_link_next(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(
            parse_link_next(r#"<https://x/prev>; rel="prev", <https://x/next>; rel=next"#)
                .as_deref(),
            Some("https://x/next")
        );
        assert_eq!(parse_link_next(r#"<https://x/p>; rel="prev""#), None);
        assert_eq!(parse_link_next("garbage"), None);
    }

    #[test]
    fn registry_error_bodies() {
        assert_eq!(
            registry_error_detail(br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#),
            ": UNAUTHORIZED: authentication required"
        );
        assert_eq!(registry_error_detail(b"<html>"), "");
    }

    #[test]
    fn unauthorized_errors_say_what_to_fix() {
        let repo = ImageRepo::parse("reg.example:5000/team/app").unwrap();
        let none = unauthorized(&repo, None, 401, String::new()).to_string();
        assert!(
            none.contains("registry reg.example:5000") && none.contains("imagePullSecret"),
            "{none}"
        );
        let cred = Credential {
            username: "bob".into(),
            password: "secret".into(),
            source: "imagePullSecret apps/regcred".into(),
        };
        let wrong = unauthorized(&repo, Some(&cred), 401, ": UNAUTHORIZED: x".into()).to_string();
        assert!(
            wrong.contains("imagePullSecret apps/regcred")
                && wrong.contains("'bob'")
                && wrong.contains("rejected"),
            "{wrong}"
        );
        assert!(!wrong.contains("secret\""), "{wrong}");
        let denied = unauthorized(&repo, Some(&cred), 403, String::new()).to_string();
        assert!(denied.contains("may not pull"), "{denied}");
    }

    #[test]
    fn token_urls_carry_service_and_scope() {
        let client = RegistryClient::new(ClientConfig::default()).unwrap();
        let repo = ImageRepo::parse("nginx").unwrap();
        let c = &parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
        )[0];
        assert_eq!(
            client.token_url(&repo, c).unwrap().as_str(),
            "https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Fnginx%3Apull"
        );
        let c = &parse_www_authenticate(r#"Bearer realm="file:///etc/passwd""#)[0];
        assert!(client.token_url(&repo, c).is_err());
        assert_eq!(
            client.url(&repo, "tags/list").unwrap().as_str(),
            "https://registry-1.docker.io/v2/library/nginx/tags/list"
        );
    }
}
