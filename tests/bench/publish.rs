//! Publishing the big blobs without holding them in memory: the bytes are generated in 1 MiB
//! chunks into a file (hashed on the way), then PUT from that file in one monolithic upload
//! (`POST /v2/<repo>/blobs/uploads/`, `PUT <location>&digest=`), with a Content-Length.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A published blob.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

impl Blob {
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap()
    }
}

/// Writes `size` deterministic pseudo-random bytes (xorshift64*, seeded) to `path` in 1 MiB
/// chunks and returns their digest.
pub fn generate(path: &Path, size: u64, seed: u64) -> Blob {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).expect("create blob file"));
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        hasher.update(&chunk[..n]);
        out.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Blob {
        digest: format!("sha256:{hex}"),
        size,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(900)))
        .build()
        .new_agent()
}

/// Uploads the file at `path` (whose digest is `blob.digest`) to `repo` on `base_url`.
pub fn upload_file(base_url: &str, repo: &str, path: &Path, blob: &Blob) {
    let agent = agent();
    let resp = agent
        .post(format!("{base_url}/v2/{repo}/blobs/uploads/"))
        .send_empty()
        .expect("POST blob upload");
    assert_eq!(resp.status().as_u16(), 202, "start upload to {repo}");
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("upload Location")
        .to_string();
    let mut url = if location.starts_with('/') {
        format!("{base_url}{location}")
    } else {
        location
    };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!("digest={}", blob.digest.replace(':', "%3A")));
    let file = File::open(path).expect("open blob file");
    let mut resp = agent
        .put(url)
        .header("Content-Type", "application/octet-stream")
        .send(file)
        .expect("PUT blob");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(
        status, 201,
        "finish upload of {} to {repo}: {body}",
        blob.digest
    );
}

/// Generates a blob of `size` bytes in `scratch`, uploads it, deletes the file.
pub fn publish_generated(base_url: &str, repo: &str, scratch: &Path, size: u64, seed: u64) -> Blob {
    let path = scratch.join(format!("source-{size}"));
    let blob = generate(&path, size, seed);
    upload_file(base_url, repo, &path, &blob);
    let _ = fs::remove_file(&path);
    blob
}

/// The OCI image manifest `oras push` would write for one file: empty config, one titled
/// `application/octet-stream` layer. skopeo can only copy images, so each blob is also
/// reachable through such a manifest.
pub fn single_file_manifest(title: &str, blob: &Blob) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.unknown.artifact.v1",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2
        },
        "layers": [{
            "mediaType": "application/octet-stream",
            "digest": blob.digest,
            "size": blob.size,
            "annotations": { "org.opencontainers.image.title": title }
        }]
    })
}
