//! Publishes content to a registry over the distribution API, the way `oras push` does:
//! monolithic blob uploads (`POST /v2/<name>/blobs/uploads/` then `PUT <location>?digest=`)
//! and `PUT /v2/<name>/manifests/<reference>`.
//!
//! Helpers build the manifest shapes ocidl must read: pkgforge's `oras push` packages (OCI
//! image manifest, empty config, one titled layer per file), Docker schema2 manifests, OCI
//! image indexes and Docker manifest lists.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{basic_auth, digest_of};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCTET_STREAM: &str = "application/octet-stream";
pub const TITLE: &str = "org.opencontainers.image.title";

/// `oras push` (image-spec 1.1 packing) marks an artifact without `--artifact-type` so.
const ORAS_DEFAULT_ARTIFACT_TYPE: &str = "application/vnd.unknown.artifact.v1";

/// What a manifest says about a blob or a child manifest.
#[derive(Clone, Debug)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    /// `{"mediaType", "digest", "size"}`.
    pub fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// One layer to push: bytes, media type and annotations.
#[derive(Clone, Debug)]
pub struct Layer {
    pub media_type: String,
    pub data: Vec<u8>,
    pub annotations: Vec<(String, String)>,
}

impl Layer {
    /// A file as `oras push` makes it: `application/octet-stream`, titled `title`.
    pub fn file(title: &str, data: &[u8]) -> Layer {
        Layer::annotated(data, &[(TITLE, title)])
    }

    /// A layer without a title: not a file, ocidl skips it.
    pub fn untitled(data: &[u8]) -> Layer {
        Layer::annotated(data, &[])
    }

    /// A layer with exactly these annotations.
    pub fn annotated(data: &[u8], annotations: &[(&str, &str)]) -> Layer {
        Layer {
            media_type: OCTET_STREAM.into(),
            data: data.to_vec(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn with_media_type(mut self, media_type: &str) -> Layer {
        self.media_type = media_type.into();
        self
    }

    /// Computed from the bytes, as a registry would.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: digest_of(&self.data),
            size: self.data.len() as u64,
        }
    }
}

/// A pushed manifest and what it points at.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub manifest: Descriptor,
    pub config: Descriptor,
    /// In manifest order.
    pub layers: Vec<Descriptor>,
}

/// Manifest list / index flavours.
#[derive(Clone, Copy, Debug)]
pub enum IndexKind {
    Oci,
    DockerList,
}

/// A distribution API client for one registry.
pub struct Pusher {
    agent: ureq::Agent,
    base_url: String,
    authorization: Option<String>,
}

impl Pusher {
    /// `base_url` is `http(s)://127.0.0.1:PORT`; `ca_file` is the PEM CA to trust for HTTPS.
    pub fn new(
        base_url: &str,
        credentials: Option<(&str, &str)>,
        ca_file: Option<&Path>,
    ) -> Pusher {
        let mut config = ureq::Agent::config_builder()
            // Status codes are checked by hand so failures can show the registry's message.
            .http_status_as_error(false)
            // The environment's proxy settings must not apply to 127.0.0.1.
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)));
        if let Some(ca_file) = ca_file {
            let pem = std::fs::read(ca_file).unwrap();
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item.expect("parse CA PEM") {
                    ureq::tls::PemItem::Certificate(cert) => Some(cert),
                    _ => None,
                })
                .collect();
            assert!(!certs.is_empty(), "no certificate in {}", ca_file.display());
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                    .build(),
            );
        }
        Pusher {
            agent: config.build().new_agent(),
            base_url: base_url.trim_end_matches('/').to_string(),
            authorization: credentials.map(|(u, p)| basic_auth(u, p)),
        }
    }

    /// Sends `value` as `Authorization` instead (a Bearer token for a token registry).
    pub fn with_authorization(mut self, value: &str) -> Pusher {
        self.authorization = Some(value.to_string());
        self
    }

    /// Whether `GET /v2/` gets any HTTP answer at all (used to wait for startup).
    pub fn ping(&self) -> bool {
        self.agent
            .get(format!("{}/v2/", self.base_url))
            .call()
            .is_ok()
    }

    /// Uploads `data` as a blob of `repo` in one request; returns its descriptor
    /// (media type `application/octet-stream`).
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> Descriptor {
        let digest = digest_of(data);
        let start = self.with_auth(
            self.agent
                .post(format!("{}/v2/{repo}/blobs/uploads/", self.base_url)),
        );
        let mut resp = start.send_empty().expect("POST blob upload");
        assert_eq!(
            resp.status().as_u16(),
            202,
            "start upload to {repo}: {}",
            body_text(&mut resp)
        );
        let location = header(&resp, "location").expect("upload Location header");
        // distribution answers with an absolute URL; the spec also allows a path.
        let mut url = if location.starts_with('/') {
            format!("{}{location}", self.base_url)
        } else {
            location
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={}", digest.replace(':', "%3A")));
        let put = self
            .with_auth(self.agent.put(url))
            .header("Content-Type", OCTET_STREAM);
        let mut resp = put.send(data).expect("PUT blob");
        assert_eq!(
            resp.status().as_u16(),
            201,
            "finish upload to {repo}: {}",
            body_text(&mut resp)
        );
        Descriptor {
            media_type: OCTET_STREAM.into(),
            digest,
            size: data.len() as u64,
        }
    }

    /// PUTs `manifest` (serialized once; the digest covers exactly the bytes sent) under
    /// `reference` (a tag, or the manifest's own digest); panics unless the registry accepts it.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: &Value,
    ) -> Descriptor {
        let (status, body, descriptor) =
            self.try_push_manifest(repo, reference, media_type, manifest);
        assert_eq!(
            status, 201,
            "registry refused {media_type} {repo}:{reference}: {body}"
        );
        descriptor
    }

    /// Like `push_manifest` but returns the status and body instead of asserting: for finding
    /// out which shapes a registry accepts.
    pub fn try_push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: &Value,
    ) -> (u16, String, Descriptor) {
        let bytes = serde_json::to_vec_pretty(manifest).unwrap();
        let descriptor = Descriptor {
            media_type: media_type.into(),
            digest: digest_of(&bytes),
            size: bytes.len() as u64,
        };
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base_url);
        let put = self
            .with_auth(self.agent.put(url))
            .header("Content-Type", media_type);
        let mut resp = put.send(&bytes[..]).expect("PUT manifest");
        let status = resp.status().as_u16();
        if status == 201 {
            let echoed = header(&resp, "docker-content-digest");
            assert_eq!(
                echoed.as_deref(),
                Some(descriptor.digest.as_str()),
                "registry digest of {repo}:{reference}"
            );
        }
        (status, body_text(&mut resp), descriptor)
    }

    /// An OCI image manifest with an empty config (`{}`), the layers in order, and the given
    /// manifest annotations, tagged `reference`.
    pub fn push_oci_manifest(
        &self,
        repo: &str,
        reference: &str,
        layers: &[Layer],
        annotations: &[(&str, &str)],
    ) -> Pushed {
        let mut config = self.push_blob(repo, b"{}");
        config.media_type = OCI_EMPTY_CONFIG.into();
        let layer_descriptors = self.push_layers(repo, layers);
        let manifest = oci_manifest_json(layers, annotations);
        let manifest = self.push_manifest(repo, reference, OCI_MANIFEST, &manifest);
        Pushed {
            manifest,
            config,
            layers: layer_descriptors,
        }
    }

    /// A package as pkgforge publishes it with `oras push`: one `application/octet-stream`
    /// layer per `(title, bytes)` and the manifest annotations soar reads.
    pub fn push_package(&self, repo: &str, tag: &str, files: &[(&str, &[u8])]) -> Pushed {
        let layers: Vec<Layer> = files
            .iter()
            .map(|(title, data)| Layer::file(title, data))
            .collect();
        self.push_pkgforge_layers(repo, tag, &layers)
    }

    /// `push_package` with hand-made layers (untitled ones, odd titles, other media types).
    pub fn push_pkgforge_layers(&self, repo: &str, tag: &str, layers: &[Layer]) -> Pushed {
        self.push_oci_manifest(repo, tag, layers, &pkgforge_annotations(repo, tag))
    }

    /// A Docker image manifest (schema 2): a Docker image config and `layers` (give them
    /// `DOCKER_LAYER` media types to look like `docker push`; titles still come from
    /// annotations). `platform` is `os/arch[/variant]` and goes into the config.
    pub fn push_docker_schema2(
        &self,
        repo: &str,
        reference: &str,
        platform: &str,
        layers: &[Layer],
    ) -> Pushed {
        let (os, arch, variant) = split_platform(platform);
        let mut image_config = json!({
            "architecture": arch,
            "os": os,
            "rootfs": { "type": "layers", "diff_ids": [] },
            "config": {},
        });
        if let Some(variant) = variant {
            image_config["variant"] = json!(variant);
        }
        let mut config = self.push_blob(repo, &serde_json::to_vec(&image_config).unwrap());
        config.media_type = DOCKER_CONFIG.into();
        let layer_descriptors = self.push_layers(repo, layers);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config.to_json(),
            "layers": layers_json(layers),
        });
        let manifest = self.push_manifest(repo, reference, DOCKER_MANIFEST, &manifest);
        Pushed {
            manifest,
            config,
            layers: layer_descriptors,
        }
    }

    /// An OCI index or Docker manifest list tagged `tag`, one entry per `(platform, manifest)`
    /// with `platform` as `os/arch[/variant]`. The manifests must already be in `repo`
    /// (distribution refuses an index naming unknown manifests).
    pub fn push_index(
        &self,
        repo: &str,
        tag: &str,
        kind: IndexKind,
        entries: &[(&str, &Descriptor)],
    ) -> Descriptor {
        let manifests: Vec<Value> = entries
            .iter()
            .map(|(platform, descriptor)| {
                let (os, arch, variant) = split_platform(platform);
                let mut entry = descriptor.to_json();
                entry["platform"] = json!({ "os": os, "architecture": arch });
                if let Some(variant) = variant {
                    entry["platform"]["variant"] = json!(variant);
                }
                entry
            })
            .collect();
        let media_type = match kind {
            IndexKind::Oci => OCI_INDEX,
            IndexKind::DockerList => DOCKER_LIST,
        };
        let index = json!({ "schemaVersion": 2, "mediaType": media_type, "manifests": manifests });
        self.push_manifest(repo, tag, media_type, &index)
    }

    fn push_layers(&self, repo: &str, layers: &[Layer]) -> Vec<Descriptor> {
        layers
            .iter()
            .map(|layer| {
                let mut pushed = self.push_blob(repo, &layer.data);
                pushed.media_type = layer.media_type.clone();
                assert_eq!(pushed.digest, layer.descriptor().digest);
                pushed
            })
            .collect()
    }

    fn with_auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }
}

/// The annotations pkgforge puts on a package manifest (`repo`'s last component is the
/// package name).
pub fn pkgforge_annotations<'a>(repo: &'a str, tag: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("org.opencontainers.image.created", "2025-01-01T00:00:00Z"),
        ("dev.pkgforge.soar.pkg", repo.rsplit('/').next().unwrap()),
        ("dev.pkgforge.soar.version", tag),
        (
            "org.opencontainers.image.description",
            "ocidl integration test package",
        ),
    ]
}

/// The OCI image manifest `oras push` writes: schemaVersion 2, the default artifact type, the
/// 2-byte empty config, `layers` in order, and the manifest annotations (if any).
pub fn oci_manifest_json(layers: &[Layer], annotations: &[(&str, &str)]) -> Value {
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ORAS_DEFAULT_ARTIFACT_TYPE,
        "config": empty_config().to_json(),
        "layers": layers_json(layers),
    });
    if !annotations.is_empty() {
        manifest["annotations"] = annotations_json(annotations);
    }
    manifest
}

/// The descriptor of the OCI empty config: the 2 bytes `{}`.
pub fn empty_config() -> Descriptor {
    Descriptor {
        media_type: OCI_EMPTY_CONFIG.into(),
        digest: digest_of(b"{}"),
        size: 2,
    }
}

/// Layer descriptors with their annotations, for a manifest's `layers`.
pub fn layers_json(layers: &[Layer]) -> Vec<Value> {
    layers
        .iter()
        .map(|layer| {
            let mut v = layer.descriptor().to_json();
            if !layer.annotations.is_empty() {
                let pairs: Vec<(&str, &str)> = layer
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                v["annotations"] = annotations_json(&pairs);
            }
            v
        })
        .collect()
}

fn annotations_json(pairs: &[(&str, &str)]) -> Value {
    let map: Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    Value::Object(map)
}

/// `os/arch[/variant]` into its parts.
pub fn split_platform(platform: &str) -> (&str, &str, Option<&str>) {
    let parts: Vec<&str> = platform.split('/').collect();
    match parts[..] {
        [os, arch] => (os, arch, None),
        [os, arch, variant] => (os, arch, Some(variant)),
        _ => panic!("platform {platform:?} is not os/arch[/variant]"),
    }
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn body_text(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    resp.body_mut()
        .read_to_string()
        .unwrap_or_else(|e| format!("<unreadable body: {e}>"))
}
