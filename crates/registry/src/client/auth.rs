//! Registry authentication: parsing `WWW-Authenticate` challenges and the bearer-token exchange's response.

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
#[derive(Debug, Deserialize)]
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
