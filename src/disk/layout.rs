//! The OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`): ocidl's cache
//! (`--cache`), and a source that needs no network (`oci:PATH[:REF]`). skopeo's `oci:`
//! transport and oras's `--oci-layout` read and write the same directories.
//!
//! Nothing in a layout is trusted more than a registry: every manifest and blob read from one
//! is verified against its digest, and a cache entry that does not verify is removed and
//! fetched again, never installed. Writers never corrupt it for each other: a blob arrives
//! through a locked temporary file and a rename (`store::Partial`), a manifest through a
//! temporary file and a rename, and `index.json` is rewritten under a lock, whole, by rename.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::content::digest::{Digest, Verifier};
use crate::content::manifest::{self, Fetched};
use crate::disk::store::{self, Outcome, Partial};
use crate::error::{Error, Result};
use crate::sys;

/// The annotation naming a manifest in `index.json` (skopeo's `oci:DIR:NAME`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

pub struct Layout {
    root: PathBuf,
    /// A cache, which ocidl may repair; a layout it only reads from (`oci:PATH`) is left as
    /// it is, wrong entries and all.
    writable: bool,
}

impl Layout {
    /// A layout to read from: it must be one.
    pub fn open(root: &Path) -> Result<Layout> {
        if !root.join(LAYOUT_FILE).is_file() {
            return Err(Error::File {
                path: root.to_path_buf(),
                cause: io::Error::other("not an OCI image layout (no oci-layout file)"),
            });
        }
        Ok(Layout {
            root: root.to_path_buf(),
            writable: false,
        })
    }

    /// A layout to fill (the cache), made when missing.
    pub fn create(root: &Path) -> Result<Layout> {
        let blobs = root.join("blobs");
        fs::create_dir_all(&blobs).map_err(Error::file(&blobs))?;
        let layout = Layout {
            root: root.to_path_buf(),
            writable: true,
        };
        if !root.join(LAYOUT_FILE).is_file() {
            layout.write_atomically(&root.join(LAYOUT_FILE), LAYOUT.as_bytes())?;
        }
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// The manifest `reference` names: a digest, a name recorded in `index.json` (exactly,
    /// or as the tag of one recorded full name), or, when empty, the layout's only manifest.
    /// Its bytes are verified.
    pub fn manifest(&self, reference: &str) -> Result<Fetched> {
        let (digest, media_type) = match reference.parse::<Digest>() {
            Ok(digest) => (digest, None),
            Err(_) => self.resolve(reference)?,
        };
        let path = self.blob_path(&digest);
        let bytes = read_capped(&path, manifest::MAX_SIZE)?;
        let actual = digest.algorithm().of(&bytes);
        if actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest,
                actual,
            });
        }
        Fetched::parse(media_type.as_deref(), bytes, digest)
    }

    /// The names recorded in `index.json`, for `--tags`.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self
            .index()?
            .iter()
            .filter_map(|m| ref_name(m).map(str::to_string))
            .collect())
    }

    /// Keeps a verified manifest, so the layout holds what its files came from; a copy that
    /// is there with other bytes is replaced.
    pub fn keep_manifest(&self, fetched: &Fetched) -> Result<()> {
        let path = self.blob_path(&fetched.digest);
        let limit = fetched.bytes.len() as u64;
        if read_capped(&path, limit).is_ok_and(|held| held == fetched.bytes) {
            return Ok(());
        }
        self.write_atomically(&path, &fetched.bytes)
    }

    /// Records `name` in `index.json` as the manifest `fetched`, replacing what the name
    /// meant before. Read, changed and written back under a lock, by rename; another
    /// process's hold on the lock is waited out for `patience` at most.
    pub fn record(&self, name: &str, fetched: &Fetched, patience: Duration) -> Result<()> {
        let lock_path = self.root.join("index.json.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::file(&lock_path))?;
        let until = Instant::now() + patience;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::File {
                        path: lock_path,
                        cause: io::Error::other(format!(
                            "another process has held it for {} s; giving up",
                            patience.as_secs()
                        )),
                    })
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::file(&lock_path)(e)),
            }
        }
        let mut manifests = self.index()?;
        manifests.retain(|m| ref_name(m) != Some(name));
        manifests.push(json!({
            "mediaType": fetched.media_type,
            "digest": fetched.digest.to_string(),
            "size": fetched.bytes.len(),
            "annotations": { REF_NAME: name },
        }));
        let index = json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_INDEX,
            "manifests": manifests,
        });
        let text = serde_json::to_vec_pretty(&index).map_err(io::Error::other);
        let text = text.map_err(Error::file(self.root.join("index.json")))?;
        self.write_atomically(&self.root.join("index.json"), &text)
    }

    /// Copies the blob to `target` (the kernel makes it a reflink where the file system
    /// can) through a temporary file, verifies the copy and renames it into place. `None`
    /// when the layout does not hold the blob, or held a wrong one (which a cache then
    /// removes). A blob of another size than the descriptor says is not this content, but
    /// not removed either: the descriptor may be the wrong one.
    pub fn copy_out(
        &self,
        digest: &Digest,
        size: Option<u64>,
        target: &Path,
        quiet: bool,
        patience: Duration,
    ) -> Result<Option<Outcome>> {
        let Some((mut source, len)) = self.open_blob(digest)? else {
            return Ok(None);
        };
        if size.is_some_and(|s| s != len) {
            return Ok(None);
        }
        let size = Some(len);
        if let Some(n) = store::holds(target, digest, size)? {
            return Ok(Some(Outcome::UpToDate(n)));
        }
        let mut partial = Partial::open(target, digest, quiet, patience)?;
        if let Err(e) = partial.fill_from(&mut source) {
            partial.discard();
            return Err(e);
        }
        let mut verifier = Verifier::new(digest, size);
        partial.resume(&mut verifier)?;
        match verifier.finish() {
            Ok(n) => {
                partial.commit()?;
                Ok(Some(Outcome::Written(n)))
            }
            Err(_) => {
                partial.discard();
                self.forget(digest);
                Ok(None)
            }
        }
    }

    /// Streams the blob into `out` (stdout, a FIFO) through the verifier. Bytes reach the
    /// reader before the check ends, as from a registry; `None` when the blob is not here.
    pub fn stream_out(
        &self,
        digest: &Digest,
        size: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<Option<u64>> {
        let Some((mut file, len)) = self.open_blob(digest)? else {
            return Ok(None);
        };
        // The file's own size bounds the stream when no descriptor gave one.
        let mut verifier = Verifier::new(digest, Some(size.unwrap_or(len)));
        let mut buffer = vec![0u8; store::BUFFER];
        loop {
            let n = match io::Read::read(&mut file, &mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::file(self.blob_path(digest))(e)),
            };
            verifier.update(&buffer[..n])?;
            out.write_all(&buffer[..n]).map_err(Error::Stdout)?;
        }
        out.flush().map_err(Error::Stdout)?;
        verifier.finish().map(Some)
    }

    /// The blob's file and its length, `None` when it is not there. What is there must be a
    /// regular file: a FIFO would block, a device never end. In a cache such an entry is
    /// removed; in a layout only read from, it is an error.
    fn open_blob(&self, digest: &Digest) -> Result<Option<(fs::File, u64)>> {
        let path = self.blob_path(digest);
        match sys::open_regular(&path) {
            Ok(file) => {
                let len = file.metadata().map_err(Error::file(&path))?.len();
                Ok(Some((file, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) if self.writable => {
                self.forget(digest);
                Ok(None)
            }
            Err(e) => Err(Error::File { path, cause: e }),
        }
    }

    /// Removes a cache's blob that did not verify, so the next run fetches it again.
    fn forget(&self, digest: &Digest) {
        if self.writable {
            let _ = fs::remove_file(self.blob_path(digest));
        }
    }

    /// `index.json`'s manifests (none when there is no index yet).
    fn index(&self) -> Result<Vec<Value>> {
        let path = self.root.join("index.json");
        let bytes = match fs::symlink_metadata(&path) {
            Ok(_) => read_capped(&path, manifest::MAX_SIZE)?,
            Err(_) => return Ok(Vec::new()),
        };
        let bad = |cause: &str| Error::Config {
            path: path.clone(),
            cause: cause.to_string(),
        };
        let index: Value = serde_json::from_slice(&bytes).map_err(|_| bad("not JSON"))?;
        match &index["manifests"] {
            Value::Array(manifests) => Ok(manifests.clone()),
            Value::Null => Ok(Vec::new()),
            _ => Err(bad("'manifests' is not a list")),
        }
    }

    /// The digest and media type `index.json` gives `name`.
    fn resolve(&self, name: &str) -> Result<(Digest, Option<String>)> {
        let manifests = self.index()?;
        let exact: Vec<&Value> = manifests
            .iter()
            .filter(|m| ref_name(m) == Some(name))
            .collect();
        let by_tag: Vec<&Value> = manifests
            .iter()
            .filter(|m| ref_name(m).is_some_and(|n| n.ends_with(&format!(":{name}"))))
            .collect();
        let found = match (name, exact.as_slice(), by_tag.as_slice()) {
            ("", _, _) if manifests.len() == 1 => &manifests[0],
            ("", _, _) => {
                return Err(Error::NotFound(format!(
                    "the layout {} holds {} manifests: name one (oci:PATH:NAME; --tags lists them)",
                    self.root.display(),
                    manifests.len()
                )))
            }
            (_, [one, ..], _) => *one,
            (_, [], [one]) => *one,
            _ => {
                return Err(Error::NotFound(format!(
                    "no manifest named {name:?} in the layout {} (--tags lists them)",
                    self.root.display()
                )))
            }
        };
        let digest = found["digest"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| {
                Error::BadManifest(format!("the index entry for {name:?} has no digest"))
            })?;
        Ok((digest, found["mediaType"].as_str().map(str::to_string)))
    }

    /// Writes `bytes` to `path` through a temporary file beside it and a rename.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(Error::file(dir))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let temp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = fs::File::create(&temp)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .and_then(|()| fs::rename(&temp, path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map_err(Error::file(path))
    }
}

fn ref_name(manifest: &Value) -> Option<&str> {
    manifest["annotations"][REF_NAME].as_str()
}

/// A whole regular file of at most `limit` bytes.
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = sys::open_regular(path).map_err(Error::file(path))?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, limit + 1), &mut bytes)
        .map_err(Error::file(path))?;
    if bytes.len() as u64 > limit {
        return Err(Error::BadManifest(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}
