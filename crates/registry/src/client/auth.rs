//! Registry authentication: parsing `WWW-Authenticate` challenges and the bearer-token exchange's response,
//! and the client's state machine around them (a request that meets a 401 authenticates and is retried once
//! per credential; tokens are kept per repository and credential until they expire).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// One challenge from a `WWW-Authenticate` header, e.g. `Bearer realm="…",service="…",scope="…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// The auth-params, names lowercased.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lowercase) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges (RFC 7235: several challenges may share one
/// header, and quoted values may contain commas, as Docker's `scope="repository:a:pull,push"` does).
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut challenges: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            break;
        }
        let token_end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..token_end];
        let after = rest[token_end..].trim_start_matches([' ', '\t']);
        if let Some(value_start) = after.strip_prefix('=').filter(|_| !challenges.is_empty()) {
            // name=value, belonging to the current challenge. A token68 (`Basic abc==`) would also contain
            // '=', but registries do not send those, and parameters are what we need.
            let value_start = value_start.trim_start_matches([' ', '\t']);
            let (value, remaining) = if let Some(quoted) = value_start.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        other => value.push(other),
                    }
                }
                (value, &quoted[end..])
            } else {
                let end = value_start.find(',').unwrap_or(value_start.len());
                (value_start[..end].trim().to_owned(), &value_start[end..])
            };
            if let Some(current) = challenges.last_mut() {
                current.params.insert(token.to_ascii_lowercase(), value);
            }
            rest = remaining;
        } else if token.is_empty() {
            // A stray '=' or similar: skip one character so the loop always advances.
            rest = &rest[rest.chars().next().map_or(1, char::len_utf8)..];
        } else {
            challenges.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            rest = after;
        }
    }
    challenges
}

/// The token endpoint's answer (Docker's token spec; OAuth2 servers say `access_token`).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and how long it may be used. Docker's spec says a missing `expires_in` means 60 seconds;
    /// a margin is kept so a token never expires between being checked and being used.
    pub(crate) fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = self.expires_in.unwrap_or(60).max(60);
        Some((token, Duration::from_secs(lifetime.saturating_sub(10))))
    }
}

// ---- the authentication state machine of a RegistryClient -----------------------------------------

use super::*;

impl RegistryClient {
    /// Sends a request to the repository's registry: paced by the host's bucket, authenticated (learning
    /// the scheme from a 401 challenge once), retried on 429/5xx/connection failures within the bounds.
    pub(super) async fn request(
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
                    let detail = registry_error_detail(&super::transport::error_body(resp).await);
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
            let detail = registry_error_detail(&super::transport::error_body(resp).await);
            if authenticated {
                return Err(unauthorized(repo, credential, 401, detail));
            }
            authenticated = true;
            self.authenticate(repo, credential, &key, &challenges, detail)
                .await?;
        }
    }

    /// Answers a 401 challenge: fetches a bearer token, or switches to basic auth.
    pub(super) async fn authenticate(
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
                let detail = registry_error_detail(&super::transport::error_body(resp).await);
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
            anonymous: credential.is_none(),
        })
    }

    /// The token request URL: the challenge's realm with its service and scope (by default, pull access to
    /// this repository).
    pub(super) fn token_url(&self, repo: &ImageRepo, bearer: &Challenge) -> Result<Url, Error> {
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

    pub(super) fn auth_header(
        &self,
        key: &AuthKey,
        credential: Option<&Credential>,
    ) -> Option<String> {
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

    pub(super) fn auth_map(&self) -> std::sync::MutexGuard<'_, HashMap<AuthKey, RepoAuth>> {
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(super) fn auth_key(repo: &ImageRepo, credential: Option<&Credential>) -> AuthKey {
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

pub(super) fn unauthorized(
    repo: &ImageRepo,
    credential: Option<&Credential>,
    status: u16,
    detail: String,
) -> Error {
    let host = repo.host();
    let hint = match (credential, status) {
        (None, _) => format!(
            "no credentials for {host}: if {repo} is private, give the workload or its ServiceAccount an imagePullSecret (type kubernetes.io/dockerconfigjson) with an entry for {host}, or add one to the docker config file tether reads; otherwise check that the repository exists"
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
        anonymous: credential.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer_challenge_with_commas_in_the_scope() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn basic_unquoted_escaped_and_several_challenges() {
        let c = parse_www_authenticate(r#"Basic realm="tether test""#);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("tether test"));

        let c = parse_www_authenticate(
            r#"Basic realm=simple, Bearer Realm = "https://a/t" , error="insufficient_scope", x="q\"uote""#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].param("realm"), Some("simple"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("https://a/t"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        assert_eq!(c[1].param("x"), Some("q\"uote"));

        assert!(parse_www_authenticate("").is_empty());
        assert_eq!(parse_www_authenticate("Negotiate")[0].scheme, "negotiate");
        // Garbage never loops or panics.
        let _ = parse_www_authenticate(r#"=,="",Bearer realm="unterminated"#);
    }

    #[test]
    fn token_responses() {
        let t: TokenResponse = serde_json::from_str(r#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(
            t.into_token(),
            Some(("abc".into(), Duration::from_secs(290)))
        );
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(
            t.into_token(),
            Some(("xyz".into(), Duration::from_secs(50)))
        );
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(t.into_token(), None);
    }
}
