//! Transport: one paced request with bounded retries, response bodies read within a size limit, and HTTP
//! failures turned into typed errors that name the host.

use super::*;

impl RegistryClient {
    /// Sends one request to `host` with pacing and bounded retries, but no authentication handling.
    pub(super) async fn send(
        &self,
        host: &str,
        method: &Method,
        url: &Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let mut attempts: u32 = 0;
        let mut last_retry_after = None;
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(DEFAULT_BACKOFF)
            .with_max_delay(DEFAULT_BACKOFF * 64)
            .without_max_times()
            .build();
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
            let backoff = delays.next().unwrap_or(DEFAULT_BACKOFF);
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
                Err(e) => return Err(transport_error(host, url, e, self.is_insecure(host))),
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

    pub(super) fn url(&self, repo: &ImageRepo, suffix: &str) -> Result<Url, Error> {
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

    pub(super) fn is_insecure(&self, host: &str) -> bool {
        self.insecure.contains(&normalise_host(host))
    }

    /// Reads a body of at most `limit` bytes.
    pub(super) async fn read_body(
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
                        e,
                        self.is_insecure(repo.api_host()),
                    ))
                }
            }
        }
    }

    pub(super) async fn status_error(
        &self,
        repo: &ImageRepo,
        method: &Method,
        url: &Url,
        resp: reqwest::Response,
    ) -> Error {
        let status = resp.status().as_u16();
        let body = error_body(resp).await;
        Error::Http {
            host: repo.host().to_owned(),
            method: method.to_string(),
            url: url.to_string(),
            status,
            detail: registry_error_detail(&body),
        }
    }

    pub(super) fn invalid(&self, repo: &ImageRepo, url: &Url, reason: &str) -> Error {
        Error::InvalidResponse {
            host: repo.host().to_owned(),
            url: url.to_string(),
            reason: reason.to_owned(),
        }
    }
}

pub(super) fn transport_error(host: &str, url: &Url, e: reqwest::Error, insecure: bool) -> Error {
    let reason = error_chain(&e);
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
        Some(TransportHint::MaybePlainHttp)
    } else if e.is_timeout() {
        Some(TransportHint::Timeout)
    } else {
        None
    };
    Error::Transport {
        host: host.to_owned(),
        url: url.to_string(),
        reason,
        hint,
        source: e,
    }
}

/// Whether a failed request may succeed when repeated: timeouts and dropped or refused connections, not
/// TLS or protocol errors (a plain-HTTP registry answering HTTPS fails the same way every time).
pub(super) fn transient(e: &reqwest::Error) -> bool {
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
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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

pub(super) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
}

pub(super) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => String::new(),
    }
}

/// The most of an error answer's body that is read: a registry may send an error of any size, and only its
/// first few messages are shown.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Errors of one answer that are shown, and the characters shown of each.
const ERRORS_SHOWN: usize = 3;
const ERROR_CHARS: usize = 300;

/// The start of an error answer's body, at most [`MAX_ERROR_BODY`] bytes; what cannot be read is left.
pub(super) async fn error_body(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ERROR_BODY - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    out
}

/// `: CODE: message` from a registry error body (`{"errors": [{"code", "message"}]}`), or empty: the first
/// [`ERRORS_SHOWN`], each cut at [`ERROR_CHARS`] characters, control characters escaped.
pub(super) fn registry_error_detail(body: &[u8]) -> String {
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
        .map(|s| {
            let shown = tether_core::report::Shown(&s).to_string();
            match shown.char_indices().nth(ERROR_CHARS) {
                Some((cut, _)) => format!("{}…", &shown[..cut]),
                None => shown,
            }
        })
        .collect();
    let more = parts.len().saturating_sub(ERRORS_SHOWN);
    let mut out = parts
        .into_iter()
        .take(ERRORS_SHOWN)
        .collect::<Vec<_>>()
        .join("; ");
    if more > 0 {
        out.push_str(&format!("; … and {more} more"));
    }
    if out.is_empty() {
        out
    } else {
        format!(": {out}")
    }
}
