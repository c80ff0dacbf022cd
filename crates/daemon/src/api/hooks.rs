//! Webhook receivers on the API listener: Git hosts' push events start a fetch and sync at once, registries'
//! push events a scan of that image repository. They carry no bearer token; each is verified against
//! `--webhook-secret-file` (an HMAC of the body, or the shared token GitLab and registries send), compared in
//! constant time. A push for another branch or repository is acknowledged and ignored. Floods coalesce: the
//! loops keep at most one run queued behind the one in progress.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tether_registry::ImageRepo;
use tracing::{debug, info, warn};

use super::{ApiError, ApiState};

/// Who sent a Git push event, as its headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `X-Hub-Signature-256: sha256=<hex>` with `X-GitHub-Event`.
    GitHub,
    /// `X-Gitlab-Token: <secret>`.
    GitLab,
    /// `X-Gitea-Signature` / `X-Forgejo-Signature: <hex>`.
    Gitea,
    /// `X-Hub-Signature: sha256=<hex>` with `X-Event-Key`.
    Bitbucket,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Whether `hex_sig` is the HMAC-SHA256 of `body` under `secret` (constant time).
fn hmac_ok(secret: &[u8], body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Whether `given` is the secret, in constant time: digests are compared, so not even the secret's
/// length shows in the time taken (a slice comparison returns at once on a length mismatch).
fn token_ok(secret: &[u8], given: &str) -> bool {
    use sha2::Digest as _;
    let (a, b) = (Sha256::digest(secret), Sha256::digest(given.as_bytes()));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// The headers a Git host's event proves itself with ([`verify_git`] reads each).
const GIT_SIGNATURES: [&str; 5] = [
    "x-hub-signature-256",
    "x-gitlab-token",
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-hub-signature",
];
const NO_GIT_SIGNATURE: &str =
    "no signature: send X-Hub-Signature-256 (GitHub), X-Gitlab-Token (GitLab), \
     X-Gitea-Signature (Gitea/Forgejo) or X-Hub-Signature (Bitbucket) made with the agent's \
     --webhook-secret-file";
/// The headers a registry's event proves itself with ([`verify_registry`] reads each), besides `?token=`.
const REGISTRY_SIGNATURES: [&str; 2] = ["x-hub-signature-256", "authorization"];
const NO_REGISTRY_SIGNATURE: &str =
    "no signature: send X-Hub-Signature-256, `Authorization: <secret>` or \
     ?token=<secret> from --webhook-secret-file";

/// Why a hook to `path` is refused before its body is read, if it carries no signature at all: such a
/// request never holds one of the few places for hooks.
fn unsigned(path: &str, h: &HeaderMap, query: Option<&str>) -> Option<&'static str> {
    if path == tether_api::paths::HOOK_GIT {
        (!GIT_SIGNATURES.iter().any(|n| h.contains_key(*n))).then_some(NO_GIT_SIGNATURE)
    } else {
        let token = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
        (!token && !REGISTRY_SIGNATURES.iter().any(|n| h.contains_key(*n)))
            .then_some(NO_REGISTRY_SIGNATURE)
    }
}

/// Verifies a Git host's event; the provider, or why it is refused (401).
pub fn verify_git(h: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<Provider, String> {
    let sha256 = |v: &str| v.strip_prefix("sha256=").map(str::to_owned);
    let (provider, ok) = if let Some(sig) = header(h, "x-hub-signature-256") {
        (
            Provider::GitHub,
            sha256(sig).is_some_and(|s| hmac_ok(secret, body, &s)),
        )
    } else if let Some(token) = header(h, "x-gitlab-token") {
        (Provider::GitLab, token_ok(secret, token))
    } else if let Some(sig) =
        header(h, "x-gitea-signature").or_else(|| header(h, "x-forgejo-signature"))
    {
        (Provider::Gitea, hmac_ok(secret, body, sig))
    } else if let Some(sig) = header(h, "x-hub-signature") {
        (
            Provider::Bitbucket,
            sha256(sig).is_some_and(|s| hmac_ok(secret, body, &s)),
        )
    } else {
        return Err(NO_GIT_SIGNATURE.to_owned());
    };
    if ok {
        Ok(provider)
    } else {
        Err(format!(
            "the {provider:?} signature does not match the agent's --webhook-secret-file"
        ))
    }
}

/// What a push event says: the repository (every URL the payload gives for it) and the branches pushed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Push {
    /// Clone URLs and web URLs of the repository.
    pub urls: Vec<String>,
    /// Branch names (without `refs/heads/`).
    pub branches: Vec<String>,
}

/// The push in a verified event; `None` for other events (pings, tags, issues).
pub fn parse_git(provider: Provider, h: &HeaderMap, body: &[u8]) -> Result<Option<Push>, String> {
    let event = match provider {
        Provider::GitHub => header(h, "x-github-event"),
        Provider::GitLab => header(h, "x-gitlab-event"),
        Provider::Gitea => header(h, "x-gitea-event").or_else(|| header(h, "x-forgejo-event")),
        Provider::Bitbucket => header(h, "x-event-key"),
    };
    let is_push = match provider {
        Provider::GitLab => event.is_none_or(|e| e.eq_ignore_ascii_case("Push Hook")),
        Provider::Bitbucket => event.is_none_or(|e| e == "repo:push" || e == "repo:refs_changed"),
        _ => event.is_none_or(|e| e == "push"),
    };
    if !is_push {
        return Ok(None);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let mut push = Push::default();
    let strs = |v: &Value, keys: &[&str]| -> Vec<String> {
        keys.iter()
            .filter_map(|k| v.pointer(k).and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    match provider {
        Provider::Bitbucket => {
            push.urls = strs(
                &v,
                &["/repository/links/html/href", "/repository/full_name"],
            );
            if let Some(links) = v
                .pointer("/repository/links/clone")
                .and_then(Value::as_array)
            {
                push.urls.extend(
                    links
                        .iter()
                        .filter_map(|l| l.get("href").and_then(Value::as_str).map(str::to_owned)),
                );
            }
            let changes = v
                .pointer("/push/changes")
                .or_else(|| v.get("changes"))
                .and_then(Value::as_array);
            for c in changes.into_iter().flatten() {
                // Cloud: changes[].new.{type,name}; Server: changes[].ref.{type,displayId}.
                let (kind, name) = match (c.get("new"), c.get("ref")) {
                    (Some(n), _) if !n.is_null() => (n.get("type"), n.get("name")),
                    (_, Some(r)) => (r.get("type"), r.get("displayId")),
                    _ => (None, None),
                };
                if kind
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.eq_ignore_ascii_case("branch"))
                {
                    push.branches
                        .extend(name.and_then(Value::as_str).map(str::to_owned));
                }
            }
        }
        _ => {
            push.urls = strs(
                &v,
                &[
                    "/repository/clone_url",
                    "/repository/ssh_url",
                    "/repository/git_url",
                    "/repository/html_url",
                    "/repository/git_http_url",
                    "/repository/git_ssh_url",
                    "/repository/url",
                    "/project/git_http_url",
                    "/project/git_ssh_url",
                    "/project/web_url",
                ],
            );
            if let Some(b) = v
                .get("ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("refs/heads/"))
            {
                push.branches.push(b.to_owned());
            }
        }
    }
    Ok(Some(push))
}

/// A repository URL reduced to `host/path` (no scheme, user, port, `.git` or case), so the forms a host
/// lists (`https://h/o/r`, `git@h:o/r.git`, `ssh://git@h:22/o/r`) compare equal to the one the agent syncs.
pub fn repo_key(url: &str) -> String {
    let mut s = url.trim().to_ascii_lowercase();
    if let Some((_, rest)) = s.split_once("://") {
        s = rest.to_owned();
    } else if let Some((host, path)) = s.split_once(':') {
        // scp-like `user@host:path`
        if !host.contains('/') {
            s = format!("{host}/{path}");
        }
    }
    if let Some((_, rest)) = s.split_once('@') {
        s = rest.to_owned();
    }
    let (host, path) = s.split_once('/').unwrap_or((&s, ""));
    let host = host.split(':').next().unwrap_or(host);
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!("{host}/{path}")
}

/// Verifies a registry's event: an HMAC like GitHub's, the shared token in `Authorization` (what Docker
/// distribution's notification headers and Harbor's auth header can send), or `?token=` in the URL (Docker
/// Hub can neither sign nor add headers).
pub fn verify_registry(
    h: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    secret: &[u8],
) -> Result<(), String> {
    if let Some(sig) = header(h, "x-hub-signature-256") {
        let ok = sig
            .strip_prefix("sha256=")
            .is_some_and(|s| hmac_ok(secret, body, s));
        return ok.then_some(()).ok_or_else(|| {
            "the signature does not match the agent's --webhook-secret-file".to_owned()
        });
    }
    if let Some(auth) = header(h, "authorization") {
        let token = auth.strip_prefix("Bearer ").unwrap_or(auth).trim();
        return token_ok(secret, token).then_some(()).ok_or_else(|| {
            "the Authorization token is not the agent's --webhook-secret-file".to_owned()
        });
    }
    let token = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("token="));
    if let Some(token) = token {
        return token_ok(secret, token)
            .then_some(())
            .ok_or_else(|| "the ?token= is not the agent's --webhook-secret-file".to_owned());
    }
    Err(NO_REGISTRY_SIGNATURE.to_owned())
}

/// The image repositories a registry event says were pushed to (Docker distribution, Docker Hub, Harbor).
pub fn parse_registry(body: &[u8]) -> Result<Vec<ImageRepo>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let mut names: Vec<String> = Vec::new();
    if let Some(events) = v.get("events").and_then(Value::as_array) {
        // Docker distribution: {events: [{action: push, target: {repository}, request: {host}}]}
        for e in events {
            if e.get("action").and_then(Value::as_str) != Some("push") {
                continue;
            }
            let repo = e.pointer("/target/repository").and_then(Value::as_str);
            let host = e.pointer("/request/host").and_then(Value::as_str);
            if let Some(repo) = repo {
                names.push(host.map_or(repo.to_owned(), |h| format!("{h}/{repo}")));
            }
        }
    } else if let Some(name) = v.pointer("/repository/repo_name").and_then(Value::as_str) {
        // Docker Hub: {push_data: {tag}, repository: {repo_name: "user/app"}}
        names.push(format!("docker.io/{name}"));
    } else if let Some(resources) = v.pointer("/event_data/resources").and_then(Value::as_array) {
        // Harbor: {type: PUSH_ARTIFACT, event_data: {resources: [{resource_url: "host/p/app:tag"}]}}; pulls,
        // deletions and scans are other types.
        let push = v.get("type").and_then(Value::as_str).is_some_and(|t| {
            t.eq_ignore_ascii_case("PUSH_ARTIFACT") || t.eq_ignore_ascii_case("pushImage")
        });
        for r in resources.iter().filter(|_| push) {
            if let Some(url) = r.get("resource_url").and_then(Value::as_str) {
                let name = tether_automation::run::split_tag(url).0;
                names.push(name.to_owned());
            }
        }
    }
    let mut repos = Vec::new();
    for n in names {
        let repo = ImageRepo::parse(&n).map_err(|e| format!("repository {n}: {e}"))?;
        if !repos.contains(&repo) {
            repos.push(repo);
        }
    }
    Ok(repos)
}

/// Hooks read at once; more are answered 429, so bodies not yet verified (up to 25 MB each) cannot fill
/// memory.
const HOOKS_IN_FLIGHT: usize = 16;
static IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HOOKS_IN_FLIGHT);
/// How long one hook may take to arrive and be answered: GitHub itself gives a delivery 10 s, so a slower one
/// is nobody's but a client holding a place on purpose.
const HOOK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Bounds webhook requests: off without a secret (404), refused unsigned (401) before the body is read,
/// then at most [`HOOKS_IN_FLIGHT`] at once, each within [`HOOK_DEADLINE`].
pub async fn bounded(
    State(s): State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Err(off) = secret(&s) {
        return off.into_response();
    }
    if let Some(why) = unsigned(req.uri().path(), req.headers(), req.uri().query()) {
        // Not warned about one by one, as a signed hook that fails is: anyone can send these.
        debug!(component = "webhook", "unsigned webhook refused");
        return ApiError(StatusCode::UNAUTHORIZED, why.to_owned()).into_response();
    }
    let Ok(_permit) = IN_FLIGHT.try_acquire() else {
        return ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many webhooks at once; retry".to_owned(),
        )
        .into_response();
    };
    match tokio::time::timeout(HOOK_DEADLINE, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the hook did not arrive within {} s",
                HOOK_DEADLINE.as_secs()
            ),
        )
        .into_response(),
    }
}

fn secret(s: &ApiState) -> Result<&[u8], ApiError> {
    s.webhook_secret.as_deref().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "webhooks are off: start the agent with --webhook-secret-file".to_owned(),
        )
    })
}

fn refused(m: String) -> ApiError {
    warn!(component = "webhook", reason = %m, "webhook refused");
    ApiError(StatusCode::UNAUTHORIZED, m)
}

/// `POST /hooks/git`.
pub async fn git(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let provider = verify_git(&headers, &body, secret(&s)?).map_err(refused)?;
    let push =
        parse_git(provider, &headers, &body).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let Some(push) = push else {
        return Ok((StatusCode::OK, Json(json!({"ignored": "not a push event"}))));
    };
    let ours = repo_key(&s.source);
    if !push.urls.iter().any(|u| repo_key(u) == ours) {
        return Ok((
            StatusCode::OK,
            Json(json!({"ignored": "a push to another repository"})),
        ));
    }
    if !push.branches.iter().any(|b| b == &s.branch) {
        return Ok((
            StatusCode::OK,
            Json(json!({"ignored": format!("not a push to {}", s.branch)})),
        ));
    }
    info!(component = "webhook", provider = ?provider, "push to the synced branch: syncing now");
    s.control.poke();
    Ok((StatusCode::ACCEPTED, Json(json!({"triggered": "sync"}))))
}

/// `POST /hooks/registry`.
pub async fn registry(
    State(s): State<Arc<ApiState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    verify_registry(&headers, uri.query(), &body, secret(&s)?).map_err(refused)?;
    let repos = parse_registry(&body).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    if repos.is_empty() {
        return Ok((
            StatusCode::OK,
            Json(json!({"ignored": "no push in the event"})),
        ));
    }
    if s.automation.is_none() {
        return Ok((
            StatusCode::OK,
            Json(json!({"ignored": "image automation is off"})),
        ));
    }
    let names: Vec<String> = repos.iter().map(ToString::to_string).collect();
    info!(component = "webhook", repositories = %names.join(","), "image pushed: scanning");
    s.control.scan(repos);
    Ok((StatusCode::ACCEPTED, Json(json!({"triggered": names}))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn signed(name: &'static str, value: String) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(&value).unwrap());
        h
    }

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn each_host_is_verified_its_own_way_and_a_wrong_secret_is_refused() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = signed(
            "x-hub-signature-256",
            format!("sha256={}", sign(b"s3", body)),
        );
        assert_eq!(verify_git(&good, body, b"s3"), Ok(Provider::GitHub));
        assert!(verify_git(&good, body, b"other").is_err());
        assert!(verify_git(&good, b"{\"ref\":\"refs/heads/evil\"}", b"s3").is_err());
        let gitea = signed("x-gitea-signature", sign(b"s3", body));
        assert_eq!(verify_git(&gitea, body, b"s3"), Ok(Provider::Gitea));
        let gitlab = signed("x-gitlab-token", "s3".into());
        assert_eq!(verify_git(&gitlab, body, b"s3"), Ok(Provider::GitLab));
        assert!(verify_git(&signed("x-gitlab-token", "s4".into()), body, b"s3").is_err());
        let bb = signed("x-hub-signature", format!("sha256={}", sign(b"s3", body)));
        assert_eq!(verify_git(&bb, body, b"s3"), Ok(Provider::Bitbucket));
        let none = verify_git(&HeaderMap::new(), body, b"s3").unwrap_err();
        assert!(none.contains("X-Hub-Signature-256"), "{none}");
    }

    #[test]
    fn pushes_name_their_repository_and_branch_and_pings_are_not_pushes() {
        let gh = br#"{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/o/r.git","ssh_url":"git@github.com:o/r.git"}}"#;
        let mut h = HeaderMap::new();
        h.insert("x-github-event", HeaderValue::from_static("push"));
        let push = parse_git(Provider::GitHub, &h, gh).unwrap().unwrap();
        assert_eq!(push.branches, ["main"]);
        assert!(push
            .urls
            .iter()
            .any(|u| repo_key(u) == repo_key("ssh://git@github.com:22/O/r")));
        h.insert("x-github-event", HeaderValue::from_static("ping"));
        assert_eq!(parse_git(Provider::GitHub, &h, gh).unwrap(), None);
        let bb = br#"{"repository":{"links":{"html":{"href":"https://bitbucket.org/o/r"}}},"push":{"changes":[{"new":{"type":"branch","name":"main"}}]}}"#;
        let push = parse_git(Provider::Bitbucket, &HeaderMap::new(), bb)
            .unwrap()
            .unwrap();
        assert_eq!(push.branches, ["main"]);
        assert_eq!(repo_key(&push.urls[0]), "bitbucket.org/o/r");
    }

    #[test]
    fn repository_urls_compare_across_their_spellings() {
        let k = repo_key("git@github.com:org/config.git");
        assert_eq!(k, "github.com/org/config");
        assert_eq!(repo_key("https://github.com/org/config"), k);
        assert_eq!(repo_key("ssh://git@github.com:22/org/config.git"), k);
        assert_ne!(repo_key("https://github.com/org/other"), k);
    }

    #[test]
    fn registry_events_of_each_kind_name_the_pushed_repository() {
        let dist = br#"{"events":[{"action":"push","target":{"repository":"team/app","tag":"1.2"},"request":{"host":"127.0.0.1:5000"}},{"action":"pull","target":{"repository":"x"}}]}"#;
        let repos = parse_registry(dist).unwrap();
        assert_eq!(
            repos,
            [ImageRepo::parse("127.0.0.1:5000/team/app").unwrap()]
        );
        let hub = br#"{"push_data":{"tag":"1"},"repository":{"repo_name":"alice/app"}}"#;
        assert_eq!(
            parse_registry(hub).unwrap(),
            [ImageRepo::parse("alice/app").unwrap()]
        );
        let harbor = br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"resource_url":"harbor.example/lib/app:1.0"}]}}"#;
        assert_eq!(
            parse_registry(harbor).unwrap(),
            [ImageRepo::parse("harbor.example/lib/app").unwrap()]
        );
        let token = signed("authorization", "Bearer s3".into());
        assert!(verify_registry(&token, None, b"{}", b"s3").is_ok());
        assert!(verify_registry(&token, None, b"{}", b"nope").is_err());
        let none = HeaderMap::new();
        assert!(verify_registry(&none, Some("a=1&token=s3"), b"{}", b"s3").is_ok());
        assert!(verify_registry(&none, Some("token=s4"), b"{}", b"s3").is_err());
        assert!(verify_registry(&none, None, b"{}", b"s3").is_err());
        let pull = br#"{"type":"PULL_ARTIFACT","event_data":{"resources":[{"resource_url":"harbor.example/lib/app:1.0"}]}}"#;
        assert!(parse_registry(pull).unwrap().is_empty());
    }

    #[test]
    fn the_early_refusal_knows_every_signature_the_verifiers_read() {
        let with = |name: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "sha256=00".parse().unwrap(),
            );
            h
        };
        for name in GIT_SIGNATURES {
            assert_eq!(
                unsigned(tether_api::paths::HOOK_GIT, &with(name), None),
                None
            );
            assert_ne!(
                verify_git(&with(name), b"{}", b"k").unwrap_err(),
                NO_GIT_SIGNATURE
            );
        }
        for name in REGISTRY_SIGNATURES {
            assert_eq!(
                unsigned(tether_api::paths::HOOK_REGISTRY, &with(name), None),
                None
            );
            assert_ne!(
                verify_registry(&with(name), None, b"{}", b"k").unwrap_err(),
                NO_REGISTRY_SIGNATURE
            );
        }
        let none = HeaderMap::new();
        assert_eq!(
            unsigned(tether_api::paths::HOOK_REGISTRY, &none, Some("a=1&token=x")),
            None
        );
        assert_eq!(
            unsigned(tether_api::paths::HOOK_GIT, &none, None),
            Some(NO_GIT_SIGNATURE)
        );
        assert_eq!(
            verify_git(&none, b"{}", b"k").unwrap_err(),
            NO_GIT_SIGNATURE
        );
        assert_eq!(
            unsigned(tether_api::paths::HOOK_REGISTRY, &none, None),
            Some(NO_REGISTRY_SIGNATURE)
        );
    }
}
