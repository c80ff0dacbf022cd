//! The scan API: tag lists (all pages), and for each tag its manifest, platform and build time, served from
//! the metadata cache where it is fresh.

use super::*;

impl RegistryClient {
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
        let mut refused = 0usize;
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
                // A tag goes into manifests and commit messages: one the distribution spec does not allow
                // (`1.0\n\nSigned-off-by: …`) can only come from a broken or hostile registry.
                if let Err(why) = crate::reference::validate_tag(&tag) {
                    refused += 1;
                    if refused == 1 {
                        tracing::warn!(component = "registry", repo = %repo, reason = %tether_core::report::Shown(&why),
                            "the registry lists a tag that is not valid; ignoring it and any others like it");
                    }
                    continue;
                }
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
    pub(super) async fn resolve_tag(
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
    pub(super) async fn meta_for_digest(
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
    pub(super) async fn get_manifest(
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
    pub(super) async fn head_manifest(
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
    pub(super) async fn get_blob(
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
}

#[derive(Deserialize)]
pub(super) struct TagPage {
    tags: Option<Vec<String>>,
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
