//! Registry credentials per host, parsed from the payloads Kubernetes and Docker keep them in:
//! `kubernetes.io/dockerconfigjson` Secrets (`{"auths": {host: …}}`), legacy `kubernetes.io/dockercfg`
//! Secrets (`{host: …}`) and a docker `config.json` (`--docker-config`).
//!
//! Parsing is pure (bytes in, credentials out) so the daemon can feed it whatever it fetched. Every credential
//! remembers where it came from, so an error about rejected credentials can name the Secret or file to fix.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::reference::normalise_host;

/// The Secret type whose `.dockerconfigjson` key holds `{"auths": {…}}`.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// The legacy Secret type whose `.dockercfg` key holds `{host: {…}}`.
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";

/// Base64 as tools write it: with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Credentials that cannot be used; names where they came from and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry credentials from {source_name}: {reason}")]
pub struct CredentialsError {
    /// Where the credentials came from, e.g. `imagePullSecret default/regcred`.
    pub source_name: String,
    /// What is wrong.
    pub reason: String,
}

/// A username and password for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
    /// Where it came from, for error messages (e.g. `imagePullSecret default/regcred`, a file path).
    pub source: String,
}

impl fmt::Debug for Credential {
    /// Never prints the password: credentials end up in logs through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// Credentials keyed by normalised registry host (see [`normalise_host`]); empty means anonymous.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    by_host: BTreeMap<String, Credential>,
}

impl Credentials {
    /// No credentials: every registry is accessed anonymously.
    pub fn anonymous() -> Self {
        Credentials::default()
    }

    /// Adds or replaces the credential for `host` (normalised).
    pub fn insert(
        &mut self,
        host: &str,
        username: impl Into<String>,
        password: impl Into<String>,
        source: impl Into<String>,
    ) -> &mut Self {
        self.by_host.insert(
            normalise_host(host),
            Credential {
                username: username.into(),
                password: password.into(),
                source: source.into(),
            },
        );
        self
    }

    /// The credential for a registry host, if any.
    pub fn for_host(&self, host: &str) -> Option<&Credential> {
        self.by_host.get(&normalise_host(host))
    }

    /// The hosts that have credentials.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.by_host.keys().map(String::as_str)
    }

    /// Whether there are no credentials at all.
    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// Adds the hosts of `other` that have no credential yet: what is already here wins. Merge the
    /// workload's own imagePullSecrets first, then its ServiceAccount's, then `--docker-config`, as Kubernetes
    /// prefers the most specific source.
    pub fn merge(&mut self, other: &Credentials) -> &mut Self {
        for (host, cred) in &other.by_host {
            self.by_host
                .entry(host.clone())
                .or_insert_with(|| cred.clone());
        }
        self
    }

    /// Parses a `kubernetes.io/dockerconfigjson` payload: `{"auths": {host: {"auth": base64(user:pass)}}}`
    /// or `{"username": …, "password": …}` entries. `source` names it in errors.
    pub fn parse_dockerconfigjson(bytes: &[u8], source: &str) -> Result<Self, CredentialsError> {
        let root = parse_object(bytes, source)?;
        match root.get("auths") {
            Some(Value::Object(auths)) => parse_entries(auths, source),
            Some(_) => Err(error(source, "\"auths\" is not an object")),
            None => Err(error(
                source,
                "no \"auths\" object: a kubernetes.io/dockerconfigjson payload looks like {\"auths\": {\"registry.example\": {\"auth\": \"<base64 user:password>\"}}}",
            )),
        }
    }

    /// Parses a legacy `kubernetes.io/dockercfg` payload: `{host: {"auth": …}}` at the top level.
    pub fn parse_dockercfg(bytes: &[u8], source: &str) -> Result<Self, CredentialsError> {
        let root = parse_object(bytes, source)?;
        parse_entries(&root, source)
    }

    /// Parses a docker `config.json`: like dockerconfigjson, but `auths` may be missing (a config without
    /// logins) and `credsStore` / `credHelpers` (which need external programs) are not supported.
    pub fn parse_docker_config(bytes: &[u8], source: &str) -> Result<Self, CredentialsError> {
        let root = parse_object(bytes, source)?;
        let creds = match root.get("auths") {
            Some(Value::Object(auths)) => parse_entries(auths, source)?,
            Some(_) => return Err(error(source, "\"auths\" is not an object")),
            None => Credentials::default(),
        };
        if creds.is_empty() && (root.contains_key("credsStore") || root.contains_key("credHelpers"))
        {
            return Err(error(
                source,
                "it only names a credential helper (credsStore/credHelpers), which tether does not run; put the logins in \"auths\" (e.g. docker login with no helper configured)",
            ));
        }
        Ok(creds)
    }

    /// Reads and parses a docker `config.json` file (`--docker-config`).
    pub fn read_docker_config(path: &Path) -> Result<Self, CredentialsError> {
        let source = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|e| error(&source, &format!("cannot read it: {e}")))?;
        Credentials::parse_docker_config(&bytes, &source)
    }

    /// Parses the data of an image pull Secret by its type (`kubernetes.io/dockerconfigjson` with key
    /// `.dockerconfigjson`, or `kubernetes.io/dockercfg` with key `.dockercfg`); `data` holds the decoded values.
    pub fn parse_secret(
        secret_type: &str,
        data: &BTreeMap<String, Vec<u8>>,
        source: &str,
    ) -> Result<Self, CredentialsError> {
        let (key, parse): (&str, Parser) =
            match secret_type {
                DOCKER_CONFIG_JSON_TYPE => (".dockerconfigjson", Self::parse_dockerconfigjson),
                DOCKERCFG_TYPE => (".dockercfg", Self::parse_dockercfg),
                other => {
                    return Err(error(
                        source,
                        &format!(
                            "type '{other}' is not an image pull secret: use {DOCKER_CONFIG_JSON_TYPE} (kubectl create secret docker-registry)"
                        ),
                    ))
                }
            };
        let bytes = data.get(key).ok_or_else(|| {
            error(
                source,
                &format!("the {secret_type} secret has no key {key}"),
            )
        })?;
        parse(bytes, source)
    }
}

/// One of the payload parsers.
type Parser = fn(&[u8], &str) -> Result<Credentials, CredentialsError>;

fn error(source: &str, reason: &str) -> CredentialsError {
    CredentialsError {
        source_name: source.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_object(
    bytes: &[u8],
    source: &str,
) -> Result<serde_json::Map<String, Value>, CredentialsError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(error(source, "it is not a JSON object")),
        Err(e) => Err(error(source, &format!("it is not valid JSON: {e}"))),
    }
}

/// One `auths` entry; unknown fields (`email`, `identitytoken`, …) are ignored.
#[derive(Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

fn parse_entries(
    entries: &serde_json::Map<String, Value>,
    source: &str,
) -> Result<Credentials, CredentialsError> {
    let mut creds = Credentials::default();
    for (key, value) in entries {
        let host = normalise_host(key);
        // serde's own error would quote a mistyped value (`invalid type: integer `12345678``): the shape is
        // checked here first, naming the field and never its value.
        let Some(fields) = value.as_object() else {
            return Err(error(
                source,
                &format!(
                    "the entry for {key} is not a credentials object (the value is not shown)"
                ),
            ));
        };
        for field in ["auth", "username", "password", "identitytoken"] {
            if fields
                .get(field)
                .is_some_and(|v| !(v.is_string() || v.is_null()))
            {
                return Err(error(
                    source,
                    &format!("the \"{field}\" of {key} is not a string; quote it (the value is not shown)"),
                ));
            }
        }
        let entry: Entry = serde_json::from_value(value.clone()).map_err(|_| {
            error(
                source,
                &format!(
                    "the entry for {key} is not a credentials object (the value is not shown)"
                ),
            )
        })?;
        let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
            (Some(auth), _, _) if !auth.is_empty() => {
                // The decoder's error names a byte of the secret.
                let decoded = BASE64.decode(auth.trim()).map_err(|_| {
                    error(
                        source,
                        &format!("the \"auth\" of {key} is not base64; it must be base64 of user:password"),
                    )
                })?;
                let text = String::from_utf8(decoded).map_err(|_| {
                    error(source, &format!("the \"auth\" of {key} does not decode to text"))
                })?;
                let (u, p) = text.split_once(':').ok_or_else(|| {
                    error(
                        source,
                        &format!("the \"auth\" of {key} decodes to no user:password pair (no ':')"),
                    )
                })?;
                (u.to_owned(), p.to_owned())
            }
            (_, Some(u), Some(p)) => (u.clone(), p.clone()),
            _ if entry.identitytoken.is_some() => {
                return Err(error(
                    source,
                    &format!(
                        "the entry for {key} has only an identitytoken (an OAuth2 refresh token), which tether cannot exchange; give a username and password or an access token as the password"
                    ),
                ))
            }
            _ => {
                return Err(error(
                    source,
                    &format!("the entry for {key} has neither \"auth\" nor \"username\" and \"password\""),
                ))
            }
        };
        creds.by_host.insert(
            host,
            Credential {
                username,
                password,
                source: source.to_owned(),
            },
        );
    }
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn dockerconfigjson_with_auth_and_with_username_password() {
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}", "email": "x@example.com"}},
                "registry.example:5000": {{"username": "bob", "password": "s3:cret"}},
                "ghcr.io": {{"auth": "{}"}}
            }}}}"#,
            b64("alice:pa:ss"),
            b64("tok:en").trim_end_matches('=')
        );
        let c = Credentials::parse_dockerconfigjson(json.as_bytes(), "secret ns/reg").unwrap();
        let hub = c.for_host("index.docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("alice", "pa:ss")
        );
        assert_eq!(hub.source, "secret ns/reg");
        assert_eq!(c.for_host("docker.io"), Some(hub));
        let reg = c.for_host("Registry.Example:5000").unwrap();
        assert_eq!(
            (reg.username.as_str(), reg.password.as_str()),
            ("bob", "s3:cret")
        );
        assert_eq!(c.for_host("ghcr.io").unwrap().password, "en");
        assert!(c.for_host("quay.io").is_none());
        assert!(
            !format!("{c:?}").contains("pa:ss"),
            "Debug leaks a password"
        );
    }

    #[test]
    fn dockercfg_is_the_top_level_host_map() {
        let json = format!(
            r#"{{"quay.io": {{"auth": "{}", "email": ""}}}}"#,
            b64("q:w")
        );
        let c = Credentials::parse_dockercfg(json.as_bytes(), "s").unwrap();
        assert_eq!(c.for_host("quay.io").unwrap().username, "q");
        let mut data = BTreeMap::new();
        data.insert(".dockercfg".to_owned(), json.into_bytes());
        let c2 = Credentials::parse_secret(DOCKERCFG_TYPE, &data, "s").unwrap();
        assert_eq!(c, c2);
        let e = Credentials::parse_secret("Opaque", &data, "s").unwrap_err();
        assert!(e.to_string().contains("not an image pull secret"), "{e}");
        let e = Credentials::parse_secret(DOCKER_CONFIG_JSON_TYPE, &data, "s").unwrap_err();
        assert!(e.to_string().contains("no key .dockerconfigjson"), "{e}");
    }

    #[test]
    fn docker_config_file_may_have_no_auths_but_not_only_helpers() {
        let c = Credentials::parse_docker_config(br#"{"experimental": "enabled"}"#, "f").unwrap();
        assert!(c.is_empty());
        let e = Credentials::parse_docker_config(br#"{"credsStore": "desktop"}"#, "f").unwrap_err();
        assert!(e.to_string().contains("credential helper"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#, b64("u:p")),
        )
        .unwrap();
        let c = Credentials::read_docker_config(&path).unwrap();
        assert_eq!(
            c.for_host("r.io").unwrap().source,
            path.display().to_string()
        );
        let e = Credentials::read_docker_config(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn bad_payloads_name_the_source_and_the_problem() {
        for (json, why) in [
            ("not json", "not valid JSON"),
            ("[]", "not a JSON object"),
            (r#"{"r.io": {}}"#, "no \"auths\""),
            (r#"{"auths": {"r.io": {"auth": "%%%"}}}"#, "not base64"),
            (r#"{"auths": {"r.io": {"auth": "bm9jb2xvbg=="}}}"#, "no ':'"),
            (
                r#"{"auths": {"r.io": {"identitytoken": "x"}}}"#,
                "identitytoken",
            ),
            (r#"{"auths": {"r.io": {"email": "x"}}}"#, "neither"),
            (r#"{"auths": {"r.io": 3}}"#, "not a credentials object"),
            (
                r#"{"auths": {"r.io": {"username": "u", "password": 98765432}}}"#,
                "the \"password\" of r.io is not a string",
            ),
            (
                r#"{"auths": {"r.io": {"auth": "c2Vj!cmV0"}}}"#,
                "not base64",
            ),
        ] {
            let e = Credentials::parse_dockerconfigjson(json.as_bytes(), "secret a/b").unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("secret a/b") && msg.contains(why),
                "{json}: {msg}"
            );
            // Never the value, nor a byte of it.
            for value in ["98765432", "33", "c2Vj"] {
                assert!(!msg.contains(value), "{json}: {msg}");
            }
        }
    }

    #[test]
    fn merge_keeps_what_is_already_there() {
        let mut pod = Credentials::anonymous();
        pod.insert("r.io", "pod", "p", "pod secret");
        let mut file = Credentials::anonymous();
        file.insert("r.io", "file", "p", "config.json").insert(
            "docker.io",
            "hub",
            "p",
            "config.json",
        );
        pod.merge(&file);
        assert_eq!(pod.for_host("r.io").unwrap().username, "pod");
        assert_eq!(pod.for_host("index.docker.io").unwrap().username, "hub");
        assert_eq!(pod.hosts().collect::<Vec<_>>(), ["docker.io", "r.io"]);
    }
}
