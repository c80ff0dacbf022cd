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
mod scan;
mod transport;

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
use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::{Error, TransportHint};
use crate::policy::{TagInfo, TagPolicy};
use crate::reference::{normalise_host, validate_digest, ImageRepo};

#[allow(unused_imports)]
// each concern's helpers, visible to the others through `use super::*`
// The concerns share their helpers through this module: each file says `use super::*`.
use self::{auth::*, scan::*, transport::*};
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

    fn repo_lock(&self, repo: &ImageRepo) -> Arc<tokio::sync::Mutex<()>> {
        self.repo_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(repo.clone())
            .or_default()
            .clone()
    }
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
