//! Image references (`host[:port]/path[:tag][@digest]`) normalised the way Docker does it, so that `nginx`,
//! `docker.io/library/nginx` and `index.docker.io/library/nginx` name one repository, one cache entry and one
//! set of credentials.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The canonical name of Docker Hub, as references and credentials are keyed by it.
pub const DOCKER_HUB: &str = "docker.io";

/// The host that actually serves Docker Hub's Registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Other names Docker Hub goes by, all normalised to [`DOCKER_HUB`].
const DOCKER_HUB_ALIASES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// The registry's own limit on a repository name (host included).
const MAX_NAME_LEN: usize = 255;

/// A reference that cannot be used; it names the reference and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference '{reference}': {reason}")]
pub struct ReferenceError {
    /// The reference as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: String,
}

/// An image repository: a registry host and a path within it, e.g. `docker.io` + `library/nginx`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageRepo {
    host: String,
    path: String,
}

impl ImageRepo {
    /// Parses a repository name without tag or digest (`nginx`, `ghcr.io/org/app`, `127.0.0.1:5000/app`).
    pub fn parse(name: &str) -> Result<ImageRepo, ReferenceError> {
        let r = ImageRef::parse(name)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(err(name, "expected a repository without a tag or digest"));
        }
        Ok(r.repo)
    }

    /// A repository from a host and a path, both normalised as in [`ImageRepo::parse`].
    pub fn new(host: &str, path: &str) -> Result<ImageRepo, ReferenceError> {
        ImageRepo::parse(&format!("{host}/{path}"))
    }

    /// The normalised registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The path within the registry (`library/nginx`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The host that serves the Registry API for this repository (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.host
        }
    }

    /// This repository with a tag.
    pub fn tagged(&self, tag: &str) -> ImageRef {
        ImageRef {
            repo: self.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        }
    }
}

impl fmt::Display for ImageRepo {
    /// The canonical name, `host/path`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

impl FromStr for ImageRepo {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRepo::parse(s)
    }
}

/// A full image reference: repository, optional tag and optional digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    /// The repository.
    pub repo: ImageRepo,
    /// The tag, e.g. `1.4.2`.
    pub tag: Option<String>,
    /// The digest, e.g. `sha256:…`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `[host[:port]/]path[:tag][@digest]`, normalising like Docker: no host (the first component has
    /// no `.` or `:` and is not `localhost`) means Docker Hub, Docker Hub's aliases become `docker.io`, and
    /// a single-component Docker Hub path gets `library/`.
    pub fn parse(reference: &str) -> Result<ImageRef, ReferenceError> {
        let s = reference.trim();
        if s.is_empty() {
            return Err(err(reference, "it is empty"));
        }
        let (rest, digest) = match s.rsplit_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|reason| err(reference, &reason))?;
                (rest, Some(digest.to_owned()))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to the host's port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                validate_tag(tag).map_err(|reason| err(reference, &reason))?;
                (&rest[..last_slash + i], Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        let (host, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (normalise_host(first), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        validate_host(&host).map_err(|reason| err(reference, &reason))?;
        let path = if host == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        validate_path(&path).map_err(|reason| err(reference, &reason))?;
        if host.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(err(
                reference,
                &format!("the name is longer than {MAX_NAME_LEN} characters"),
            ));
        }
        Ok(ImageRef {
            repo: ImageRepo { host, path },
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    /// The canonical form, `host/path[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repo)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Normalises a registry host as written in a reference or a credentials file: scheme and path dropped
/// (`https://index.docker.io/v1/` is how `docker login` keys Docker Hub), lowercased, Docker Hub's aliases
/// mapped to `docker.io`.
pub fn normalise_host(host: &str) -> String {
    let h = host.trim();
    let h = h
        .strip_prefix("https://")
        .or_else(|| h.strip_prefix("http://"))
        .unwrap_or(h);
    let h = h.split('/').next().unwrap_or(h).to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&h.as_str()) {
        DOCKER_HUB.to_owned()
    } else {
        h
    }
}

fn err(reference: &str, reason: &str) -> ReferenceError {
    ReferenceError {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal: [::1]:5000.
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("host '{host}' has an unclosed '['"))?;
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("host '{host}' is not a valid IPv6 address"));
        }
        (None, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        let ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("host '{host}' is not a valid host name"));
        }
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("host '{host}' has an invalid port"));
        }
    }
    Ok(())
}

/// Path components are lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn validate_path(path: &str) -> Result<(), String> {
    for component in path.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes
                .iter()
                .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
            && !component.contains("..")
            && !component.contains("___")
            && !component.contains("._")
            && !component.contains("_.");
        if !ok {
            let hint = if component.chars().any(|c| c.is_ascii_uppercase()) {
                " (repository names must be lowercase)"
            } else {
                ""
            };
            return Err(format!("path component '{component}' is not valid{hint}"));
        }
    }
    Ok(())
}

/// Tags are `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&tag.len())
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag '{tag}' is not valid (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        ))
    }
}

/// Digests are `algorithm:encoded`; sha256 and sha512 are checked for their exact hex length.
pub(crate) fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(format!(
            "digest '{digest}' has no algorithm (e.g. sha256:…)"
        ));
    };
    let hex_len = match algorithm {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    let ok = !algorithm.is_empty()
        && algorithm.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'_' | b'-')
        })
        && match hex_len {
            Some(n) => {
                encoded.len() == n
                    && encoded
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
            None => {
                encoded.len() >= 32
                    && encoded
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
            }
        };
    if ok {
        Ok(())
    } else {
        Err(format!("digest '{digest}' is not valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = ImageRef::parse(s).unwrap();
        (r.repo.host, r.repo.path, r.tag, r.digest)
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_hub_short_names_get_library_and_docker_io() {
        assert_eq!(
            parse("nginx"),
            ("docker.io".into(), "library/nginx".into(), None, None)
        );
        assert_eq!(
            parse("nginx:1.25"),
            (
                "docker.io".into(),
                "library/nginx".into(),
                Some("1.25".into()),
                None
            )
        );
        assert_eq!(parse("fluxcd/flux:1.21.0").1, "fluxcd/flux");
        for alias in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "Index.Docker.IO",
        ] {
            let r = ImageRef::parse(&format!("{alias}/nginx")).unwrap();
            assert_eq!(r.repo.to_string(), "docker.io/library/nginx", "{alias}");
            assert_eq!(r.repo.api_host(), DOCKER_HUB_API);
        }
    }

    #[test]
    fn hosts_ports_tags_and_digests() {
        assert_eq!(
            parse("127.0.0.1:5000/team/app:v1.2"),
            (
                "127.0.0.1:5000".into(),
                "team/app".into(),
                Some("v1.2".into()),
                None
            )
        );
        assert_eq!(
            parse("localhost/app"),
            ("localhost".into(), "app".into(), None, None)
        );
        assert_eq!(
            parse(&format!("ghcr.io/o/a:1@{D}")),
            (
                "ghcr.io".into(),
                "o/a".into(),
                Some("1".into()),
                Some(D.into())
            )
        );
        assert_eq!(parse(&format!("ghcr.io/o/a@{D}")).3.as_deref(), Some(D));
        assert_eq!(parse("[::1]:5000/app:t").0, "[::1]:5000");
        // A port without a tag is not a tag.
        assert_eq!(parse("reg.example:5000/app").2, None);
        let r = ImageRef::parse(&format!("quay.io/o/a:1@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("quay.io/o/a:1@{D}"));
        assert_eq!(
            ImageRepo::new("index.docker.io", "busybox")
                .unwrap()
                .to_string(),
            "docker.io/library/busybox"
        );
    }

    #[test]
    fn invalid_references_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("Nginx", "lowercase"),
            ("ghcr.io/Org/app", "lowercase"),
            ("app:", "tag"),
            ("app:-x", "tag"),
            ("app@sha256:abc", "digest"),
            ("app@nodigest", "algorithm"),
            ("a//b", "path component"),
            ("host:99999/app", "port"),
            ("bad_host.io:1/app", "host"),
        ] {
            let e = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(ImageRepo::parse("nginx:1").is_err());
    }

    #[test]
    fn hosts_from_credential_keys() {
        assert_eq!(normalise_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(
            normalise_host("http://Reg.Example:5000/v2/"),
            "reg.example:5000"
        );
        assert_eq!(normalise_host("ghcr.io"), "ghcr.io");
    }
}
