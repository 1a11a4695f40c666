//! Manifests and indexes: the JSON a registry returns for a tag, read into descriptors.
//!
//! Only serde_json's `Value` is used (no derive), so a field of the wrong type is a clear
//! `unusable manifest` error instead of a panic, and unknown fields are ignored.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::content::digest::Digest;
use crate::error::{Error, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";

/// Every kind we can read. Without the index types ghcr refuses a multi-arch tag, and
/// without any Accept some registries fall back to Docker's schema1.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.artifact.manifest.v1+json";

/// Manifests are read into memory; the distribution spec has registries accept at least
/// 4 MiB, and oras and skopeo stop there too.
pub const MAX_SIZE: u64 = 4 << 20;

/// The annotation that names a layer's file (what `oras push` sets).
pub const TITLE: &str = "org.opencontainers.image.title";

/// A pointer to content: a layer, or a manifest inside an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub title: Option<String>,
    pub platform: Option<Platform>,
}

/// A manifest as fetched: parsed, and the bytes and digest it came as (what a cache stores
/// and a user pins).
#[derive(Debug)]
pub struct Fetched {
    pub manifest: Manifest,
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Fetched {
    /// Parses `bytes`, already checked against `digest`.
    pub fn parse(content_type: Option<&str>, bytes: Vec<u8>, digest: Digest) -> Result<Fetched> {
        let (manifest, media_type) = Manifest::parse_typed(content_type, &bytes)?;
        Ok(Fetched {
            manifest,
            digest,
            media_type,
            bytes,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Manifest {
    /// An image or artifact manifest: its layers are the files; the config is kept only
    /// in a cache, so that the layout is whole.
    Image {
        config: Option<Descriptor>,
        layers: Vec<Descriptor>,
    },
    /// An image index or Docker manifest list: one manifest per platform.
    Index { manifests: Vec<Descriptor> },
}

impl Manifest {
    /// `content_type` is the response's Content-Type, used when the body has no `mediaType`.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Manifest> {
        Manifest::parse_typed(content_type, body).map(|(manifest, _)| manifest)
    }

    /// `parse`, and the media type it was read as.
    pub fn parse_typed(content_type: Option<&str>, body: &[u8]) -> Result<(Manifest, String)> {
        let json: Value = serde_json::from_slice(body)
            .map_err(|e| Error::BadManifest(format!("not JSON: {e}")))?;
        if !json.is_object() {
            return Err(Error::BadManifest("not a JSON object".into()));
        }
        let declared = json.get("mediaType").and_then(Value::as_str);
        let header = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
        let media_type = match (declared, header) {
            (Some(m), _) => m,
            (None, Some(h)) if h != "application/json" && !h.is_empty() => h,
            // Neither says: an OCI manifest may omit mediaType, so go by its shape.
            _ if json.get("manifests").is_some() => OCI_INDEX,
            _ => OCI_MANIFEST,
        };
        let manifest = match media_type {
            OCI_MANIFEST | DOCKER_MANIFEST => Manifest::Image {
                config: json
                    .get("config")
                    .map(|c| descriptor(c, 0, "config"))
                    .transpose()?,
                layers: descriptors(&json, "layers")?,
            },
            OCI_ARTIFACT => Manifest::Image {
                config: None,
                layers: descriptors(&json, "blobs")?,
            },
            OCI_INDEX | DOCKER_LIST => Manifest::Index {
                manifests: descriptors(&json, "manifests")?,
            },
            other => {
                return Err(Error::BadManifest(format!(
                    "unsupported media type {other}"
                )))
            }
        };
        Ok((manifest, media_type.to_string()))
    }
}

fn descriptors(json: &Value, field: &str) -> Result<Vec<Descriptor>> {
    let bad = |what: String| Error::BadManifest(format!("{field}: {what}"));
    let items = match json.get(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad("not a list".into())),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| descriptor(item, i, field))
        .collect()
}

/// Entry `i` of `field`.
fn descriptor(item: &Value, i: usize, field: &str) -> Result<Descriptor> {
    let bad = |what: String| Error::BadManifest(format!("{field}: {what}"));
    let digest = item
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("entry {i} has no digest")))?
        .parse::<Digest>()
        .map_err(|e| bad(format!("entry {i}: {e}")))?;
    let size = item
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(format!("entry {i} has no size")))?;
    let media_type = item
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let title = match item.get("annotations").and_then(|a| a.get(TITLE)) {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(bad(format!("entry {i} has a title that is not a string"))),
    };
    let platform = item.get("platform").and_then(Platform::from_json);
    Ok(Descriptor {
        media_type,
        digest,
        size,
        title,
        platform,
    })
}

/// `os/architecture[/variant]`, as in `--platform linux/arm64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The machine ocidl runs on, in OCI's words (Go's GOOS/GOARCH names).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            other => other,
        };
        let variant = (architecture == "arm").then(|| "v7".to_string());
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant,
        }
    }

    fn from_json(json: &Value) -> Option<Platform> {
        Some(Platform {
            os: json.get("os")?.as_str()?.to_string(),
            architecture: json.get("architecture")?.as_str()?.to_string(),
            variant: json
                .get("variant")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// arm64 images often leave out their only variant, v8.
    fn normal_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            (_, v) => v,
        }
    }

    /// Picks the index entry for this platform. Without a variant asked for, an entry with
    /// the default variant is preferred, then any variant.
    pub fn select<'a>(&self, manifests: &'a [Descriptor]) -> Result<&'a Descriptor> {
        let same_arch = |d: &&Descriptor| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == self.os && p.architecture == self.architecture)
        };
        let same_variant = |d: &&Descriptor| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.normal_variant() == self.normal_variant())
        };
        let exact = manifests.iter().filter(same_arch).find(same_variant);
        let found = match (exact, &self.variant) {
            (Some(d), _) => Some(d),
            (None, None) => manifests.iter().find(same_arch),
            (None, Some(_)) => None,
        };
        found.ok_or_else(|| Error::NoPlatform {
            wanted: self.to_string(),
            available: manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                // Attestation manifests carry unknown/unknown; they are not a choice.
                .filter(|p| p.os != "unknown")
                .map(Platform::to_string)
                .collect(),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = (2..=3).contains(&parts.len())
            && parts.iter().all(|p| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        if !ok {
            return Err(format!(
                "invalid platform '{s}' (expected OS/ARCH[/VARIANT], e.g. linux/arm64)"
            ));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn reads_a_pkgforge_manifest() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(0), "size": 2},
            "layers": [
                {"mediaType": "application/octet-stream", "digest": digest(1), "size": 10,
                 "annotations": {TITLE: "trurl"}},
                {"mediaType": "application/octet-stream", "digest": digest(2), "size": 0}
            ],
            "annotations": {"dev.pkgforge.soar.version": "8.11.1"}
        });
        let Manifest::Image { layers, .. } =
            Manifest::parse(None, body.to_string().as_bytes()).unwrap()
        else {
            panic!("not an image")
        };
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].title.as_deref(), Some("trurl"));
        assert_eq!(layers[0].size, 10);
        assert_eq!(layers[1].title, None);
    }

    #[test]
    fn media_type_from_header_or_shape() {
        let list = format!(r#"{{"manifests":[{{"digest":"{}","size":5}}]}}"#, digest(3));
        assert!(matches!(
            Manifest::parse(None, list.as_bytes()),
            Ok(Manifest::Index { .. })
        ));
        assert!(matches!(
            Manifest::parse(
                Some("application/vnd.docker.distribution.manifest.list.v2+json; x=y"),
                list.as_bytes()
            ),
            Ok(Manifest::Index { .. })
        ));
        let schema1 = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(
            matches!(Manifest::parse(None, schema1.as_bytes()), Err(Error::BadManifest(m)) if m.contains("unsupported"))
        );
    }

    #[test]
    fn refuses_malformed_without_panicking() {
        for body in [
            "",
            "[]",
            "null",
            r#"{"layers": 3}"#,
            r#"{"layers": [{}]}"#,
            r#"{"layers": [{"digest": "sha256:00", "size": 1}]}"#,
            r#"{"layers": [{"digest": "sha512:00", "size": 1}]}"#,
            r#"{"layers": [{"digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "size": -1}]}"#,
            r#"{"layers": [{"digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "size": 1, "annotations": {"org.opencontainers.image.title": 5}}]}"#,
        ] {
            assert!(
                Manifest::parse(None, body.as_bytes()).is_err(),
                "{body:?} accepted"
            );
        }
    }

    fn entry(n: u8, platform: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest(n).parse().unwrap(),
            size: 1,
            title: None,
            platform: Some(platform.parse().unwrap()),
        }
    }

    #[test]
    fn selects_platforms() {
        let index = [
            entry(1, "linux/amd64"),
            entry(2, "linux/arm/v6"),
            entry(3, "linux/arm/v7"),
            entry(4, "linux/arm64/v8"),
            entry(5, "unknown/unknown"),
        ];
        let pick = |p: &str| {
            p.parse::<Platform>()
                .unwrap()
                .select(&index)
                .map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/amd64").unwrap(), index[0].digest);
        assert_eq!(pick("linux/arm/v7").unwrap(), index[2].digest);
        assert_eq!(pick("linux/arm").unwrap(), index[1].digest);
        assert_eq!(pick("linux/arm64").unwrap(), index[3].digest);
        match pick("linux/s390x") {
            Err(Error::NoPlatform { available, .. }) => {
                assert_eq!(
                    available,
                    [
                        "linux/amd64",
                        "linux/arm/v6",
                        "linux/arm/v7",
                        "linux/arm64/v8"
                    ]
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(pick("linux/arm/v5").is_err());
    }

    #[test]
    fn parses_platform_flags() {
        assert_eq!(
            "linux/arm64".parse::<Platform>().unwrap().to_string(),
            "linux/arm64"
        );
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
        assert_eq!(Platform::host().os, std::env::consts::OS);
    }
}
