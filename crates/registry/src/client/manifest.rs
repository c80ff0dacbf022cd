//! Manifests (Docker v2 schema 2, OCI, Docker manifest lists and OCI indexes, legacy schema 1), platform
//! choice in an index, and the image config's build times.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Docker v2 schema 2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-arch).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-arch).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Legacy Docker v2 schema 1 manifest, signed or not.
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Signed legacy schema 1.
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What the client accepts when fetching a manifest; schema 1 is left out so registries that can convert
/// send schema 2, but it is still understood when sent.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The OCI annotation / label for the build time.
pub const LABEL_OCI_CREATED: &str = "org.opencontainers.image.created";
/// The older label-schema.org build time label, which Flux v1 also read.
pub const LABEL_SCHEMA_BUILD_DATE: &str = "org.label-schema.build-date";

/// An OS / architecture / variant, e.g. `linux/amd64` or `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// The OS, e.g. `linux`.
    pub os: String,
    /// The CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// The variant, e.g. `v8` for arm64 or `v7` for arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, what Flux v1 always chose.
    pub fn linux_amd64() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: Some(variant.to_ascii_lowercase()),
            }),
            _ => Err(format!(
                "invalid platform '{s}': expected os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8"
            )),
        }
    }

    /// A short form usable in file names: `linux-arm64-v8`.
    pub(crate) fn key(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}-{}-{v}", self.os, self.architecture),
            None => format!("{}-{}", self.os, self.architecture),
        }
    }

    /// How well an index entry's platform fits this (wanted) one: `None` if it does not, higher is better.
    /// arm64 without a variant means v8, as in containerd's matcher.
    fn fit(&self, entry: &Platform) -> Option<u8> {
        if self.os != entry.os || self.architecture != entry.architecture {
            return None;
        }
        let normal = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        match (normal(self), normal(entry)) {
            (None, None) => Some(2),
            (Some(a), Some(b)) if a == b => Some(2),
            (None, Some(_)) => Some(1),
            _ => None,
        }
    }
}

impl Default for Platform {
    fn default() -> Self {
        Platform::linux_amd64()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

/// A manifest as far as the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An image manifest (Docker schema 2 or OCI) and its config blob.
    Image {
        /// The config blob's digest.
        config_digest: String,
        /// The manifest's media type.
        media_type: String,
    },
    /// A manifest list / index: one manifest per platform.
    Index {
        /// The entries that name a platform.
        entries: Vec<IndexEntry>,
    },
    /// A legacy schema 1 manifest, which carries its config inline.
    SchemaV1 {
        /// The first `v1Compatibility` history entry, the image's config.
        config: Value,
    },
}

/// One entry of a manifest list / index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The entry's manifest digest.
    pub digest: String,
    /// Its platform.
    pub platform: Platform,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    manifests: Option<Vec<RawIndexEntry>>,
    history: Option<Vec<RawHistory>>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
}

#[derive(Deserialize)]
struct RawIndexEntry {
    digest: String,
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

#[derive(Deserialize)]
struct RawHistory {
    #[serde(rename = "v1Compatibility")]
    v1_compatibility: String,
}

impl Manifest {
    /// Parses a manifest body. The media type comes from the `Content-Type` header when it names a manifest
    /// type, else from the body's `mediaType`, else from its shape (some registries answer
    /// `application/json`, and OCI made `mediaType` optional).
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, String> {
        let raw: RawManifest = serde_json::from_slice(body)
            .map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_ascii_lowercase())
            .filter(|c| {
                [
                    DOCKER_MANIFEST,
                    DOCKER_MANIFEST_LIST,
                    OCI_MANIFEST,
                    OCI_INDEX,
                    DOCKER_MANIFEST_V1,
                    DOCKER_MANIFEST_V1_SIGNED,
                ]
                .contains(&c.as_str())
            });
        let media_type = header.or(raw.media_type.clone()).unwrap_or_else(|| {
            if raw.schema_version == Some(1) {
                DOCKER_MANIFEST_V1.to_owned()
            } else if raw.manifests.is_some() {
                OCI_INDEX.to_owned()
            } else {
                OCI_MANIFEST.to_owned()
            }
        });
        match media_type.as_str() {
            DOCKER_MANIFEST | OCI_MANIFEST => {
                let config = raw
                    .config
                    .ok_or_else(|| format!("the {media_type} manifest has no config"))?;
                Ok(Manifest::Image {
                    config_digest: config.digest,
                    media_type,
                })
            }
            DOCKER_MANIFEST_LIST | OCI_INDEX => {
                let entries = raw
                    .manifests
                    .ok_or_else(|| format!("the {media_type} has no manifests"))?
                    .into_iter()
                    .filter_map(|m| {
                        let p = m.platform?;
                        Some(IndexEntry {
                            digest: m.digest,
                            platform: Platform {
                                os: p.os?.to_ascii_lowercase(),
                                architecture: p.architecture?.to_ascii_lowercase(),
                                variant: p.variant.filter(|v| !v.is_empty()),
                            },
                        })
                    })
                    .collect();
                Ok(Manifest::Index { entries })
            }
            DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_SIGNED => {
                let first = raw
                    .history
                    .and_then(|h| h.into_iter().next())
                    .ok_or("the schema 1 manifest has no history")?;
                let config = serde_json::from_str(&first.v1_compatibility)
                    .map_err(|e| format!("the schema 1 v1Compatibility is not JSON: {e}"))?;
                Ok(Manifest::SchemaV1 { config })
            }
            other => Err(format!("unsupported manifest media type '{other}'")),
        }
    }
}

/// The index entry for `wanted`, if the index has one: an exact variant match beats an entry with a variant
/// when none was asked for; the first of equals wins.
pub fn choose_platform<'a>(entries: &'a [IndexEntry], wanted: &Platform) -> Option<&'a IndexEntry> {
    let mut best: Option<(u8, &IndexEntry)> = None;
    for entry in entries {
        if let Some(fit) = wanted.fit(&entry.platform) {
            if best.is_none_or(|(b, _)| fit > b) {
                best = Some((fit, entry));
            }
        }
    }
    best.map(|(_, e)| e)
}

/// What an image config says about when it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildTimes {
    /// The config's `created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// The `org.opencontainers.image.created` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_created: Option<DateTime<Utc>>,
    /// The `org.label-schema.build-date` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_build_date: Option<DateTime<Utc>>,
}

impl BuildTimes {
    /// Reads an image config (Docker or OCI; also a schema 1 `v1Compatibility`): `created` and the labels
    /// under `config.Labels` (or the older `container_config.Labels`). Unparsable times count as missing.
    pub fn from_config(config: &Value) -> BuildTimes {
        let time = |v: Option<&Value>| v.and_then(Value::as_str).and_then(parse_time);
        let labels = |key: &str| {
            ["config", "container_config"]
                .iter()
                .filter_map(|c| config.get(c)?.get("Labels")?.get(key))
                .find_map(|v| v.as_str().and_then(parse_time))
        };
        BuildTimes {
            created: time(config.get("created")),
            label_created: labels(LABEL_OCI_CREATED),
            label_build_date: labels(LABEL_SCHEMA_BUILD_DATE),
        }
    }

    /// The build time to order tags by: the config's `created` when it is after the Unix epoch, else the OCI
    /// label, else the label-schema one. `created` comes first because labels are inherited from base images
    /// (an image that sets none carries its base's date); the labels rescue reproducible builds, whose
    /// `created` is the epoch.
    pub fn best(&self) -> Option<DateTime<Utc>> {
        let usable = |t: &Option<DateTime<Utc>>| t.filter(|t| t.timestamp() > 0);
        usable(&self.created)
            .or_else(|| usable(&self.label_created))
            .or_else(|| usable(&self.label_build_date))
            .or(self.created)
    }
}

/// RFC 3339 (Go's RFC3339Nano, which Docker writes), tolerating a space instead of `T`.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1)))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn platforms_parse_and_print() {
        assert_eq!(p("linux/amd64"), Platform::linux_amd64());
        assert_eq!(p("Linux/ARM64/v8").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/arm/v7").key(), "linux-arm-v7");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }

    #[test]
    fn media_types_from_header_body_or_shape() {
        let image = json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {"digest": "sha256:c"}, "layers": []});
        let m = Manifest::parse(Some("application/json"), image.to_string().as_bytes()).unwrap();
        assert_eq!(
            m,
            Manifest::Image {
                config_digest: "sha256:c".into(),
                media_type: DOCKER_MANIFEST.into()
            }
        );
        let oci = json!({"schemaVersion": 2, "config": {"digest": "sha256:o"}, "layers": []});
        let m = Manifest::parse(None, oci.to_string().as_bytes()).unwrap();
        assert!(matches!(m, Manifest::Image { media_type, .. } if media_type == OCI_MANIFEST));
        let index = json!({"schemaVersion": 2, "manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:att", "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        ]});
        let m = Manifest::parse(
            Some(&format!("{OCI_INDEX}; charset=utf-8")),
            index.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(
            m,
            Manifest::Index {
                entries: vec![IndexEntry {
                    digest: "sha256:a".into(),
                    platform: Platform::linux_amd64()
                }]
            }
        );
        let v1 = json!({"schemaVersion": 1, "history": [{"v1Compatibility": "{\"created\":\"2020-01-02T03:04:05Z\"}"}]});
        let Manifest::SchemaV1 { config } =
            Manifest::parse(None, v1.to_string().as_bytes()).unwrap()
        else {
            panic!("schema 1 expected")
        };
        assert_eq!(
            BuildTimes::from_config(&config)
                .created
                .unwrap()
                .to_rfc3339(),
            "2020-01-02T03:04:05+00:00"
        );
        assert!(Manifest::parse(
            Some("application/vnd.foo"),
            br#"{"mediaType":"application/vnd.foo"}"#
        )
        .unwrap_err()
        .contains("unsupported"));
        assert!(Manifest::parse(None, b"<html>")
            .unwrap_err()
            .contains("not valid JSON"));
    }

    #[test]
    fn platform_choice() {
        let e = |d: &str, plat: &str| IndexEntry {
            digest: d.into(),
            platform: p(plat),
        };
        let entries = vec![
            e("arm7", "linux/arm/v7"),
            e("arm64", "linux/arm64"),
            e("amd64-v3", "linux/amd64/v3"),
            e("amd64", "linux/amd64"),
            e("win", "windows/amd64"),
        ];
        let pick = |w: &str| choose_platform(&entries, &p(w)).map(|e| e.digest.as_str());
        assert_eq!(pick("linux/amd64"), Some("amd64"), "exact beats a variant");
        assert_eq!(pick("linux/amd64/v3"), Some("amd64-v3"));
        assert_eq!(pick("linux/arm64/v8"), Some("arm64"), "arm64 means v8");
        assert_eq!(pick("linux/arm/v7"), Some("arm7"));
        assert_eq!(pick("linux/arm/v6"), None);
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(
            choose_platform(&entries[..3], &Platform::linux_amd64()).map(|e| e.digest.as_str()),
            Some("amd64-v3"),
            "a variant is accepted when none is asked for"
        );
    }

    #[test]
    fn build_times_prefer_config_created_then_labels() {
        let config = json!({
            "created": "2024-05-06T07:08:09.123456789Z",
            "config": {"Labels": {LABEL_OCI_CREATED: "2024-01-01T00:00:00Z", LABEL_SCHEMA_BUILD_DATE: "2023-01-01T00:00:00+02:00"}}
        });
        let t = BuildTimes::from_config(&config);
        assert_eq!(
            t.best().unwrap().to_rfc3339(),
            "2024-05-06T07:08:09.123456789+00:00"
        );
        assert_eq!(
            t.label_build_date.unwrap().to_rfc3339(),
            "2022-12-31T22:00:00+00:00"
        );

        let reproducible = json!({
            "created": "1970-01-01T00:00:00Z",
            "config": {"Labels": {LABEL_OCI_CREATED: "2024-01-01 00:00:00Z"}}
        });
        let t = BuildTimes::from_config(&reproducible);
        assert_eq!(t.best().unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");

        let old_labels = json!({"container_config": {"Labels": {LABEL_SCHEMA_BUILD_DATE: "2019-02-03T00:00:00Z"}}});
        let t = BuildTimes::from_config(&old_labels);
        assert_eq!(t.best().unwrap().to_rfc3339(), "2019-02-03T00:00:00+00:00");

        let epoch_only = json!({"created": "1970-01-01T00:00:00Z", "config": {"Labels": {LABEL_OCI_CREATED: "garbage"}}});
        let t = BuildTimes::from_config(&epoch_only);
        assert_eq!(
            t.best().unwrap().timestamp(),
            0,
            "the epoch is kept; the policy ignores it"
        );
        assert_eq!(BuildTimes::from_config(&json!({})).best(), None);
    }
}
