//! The OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`): ocidl's cache
//! (`--cache`), and a source that needs no network (`oci:PATH[:REF]`). skopeo's `oci:`
//! transport and oras's `--oci-layout` read and write the same directories.
//!
//! Nothing in a layout is trusted more than a registry: every manifest and blob read from one
//! is verified against its digest (`deliver`), and every path in it is looked at without
//! following symlinks: in a cache, what is not a regular file is removed, never followed. What
//! ocidl writes there it makes fresh: a blob through a locked `Partial` and a rename, a
//! manifest and `index.json` through a new temporary file and a rename; `index.json` is
//! rewritten under a lock, keeping whatever ocidl does not know in it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::content::digest::Digest;
use crate::content::manifest::{self, Fetched};
use crate::disk::fresh::{self, Found};
use crate::error::{Error, Result};
use crate::sys;

/// The annotation naming a manifest in `index.json` (skopeo's `oci:DIR:NAME`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation beside a name ocidl records: who said what it means, the registry's
/// repository, or `mirror NAME` when a mirror answered a tag (which cannot be verified).
pub const SOURCE: &str = "dev.ocidl.source";
const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX: &str = "index.json";
/// `index.json` is read up to this, like a manifest; ocidl keeps its own under it by
/// forgetting the oldest names first.
const INDEX_MAX: u64 = manifest::MAX_SIZE;

pub struct Layout {
    root: PathBuf,
    /// A cache, which ocidl may repair; a layout it only reads from (`oci:PATH`) is left as
    /// it is, wrong entries and all.
    writable: bool,
}

/// A blob a layout holds: a regular file, open, and its length.
pub struct Entry {
    pub file: File,
    pub len: u64,
    pub path: PathBuf,
}

impl Layout {
    /// A layout to read from: it must be one.
    pub fn open(root: &Path) -> Result<Layout> {
        match fresh::open_regular(&root.join(LAYOUT_FILE)) {
            Ok(Found::File(..)) => Ok(Layout {
                root: root.to_path_buf(),
                writable: false,
            }),
            _ => Err(Error::File {
                path: root.to_path_buf(),
                cause: io::Error::other("not an OCI image layout (no oci-layout file)"),
            }),
        }
    }

    /// A layout to fill (the cache), made when missing. A directory that holds something
    /// else is not taken over: it is refused. Several ocidl may make one at once: another's
    /// temporary `oci-layout` is not something else.
    pub fn create(root: &Path) -> Result<Layout> {
        let layout = Layout {
            root: root.to_path_buf(),
            writable: true,
        };
        let marker = root.join(LAYOUT_FILE);
        match fresh::open_regular(&marker).map_err(Error::file(&marker))? {
            Found::File(..) => return Ok(layout),
            Found::Other => {
                return Err(Error::File {
                    path: marker,
                    cause: io::Error::other("not a regular file"),
                })
            }
            Found::Missing => {}
        }
        // Before its `oci-layout`, another ocidl making the layout leaves only that file's
        // temporary one.
        let ours = |name: &str| {
            name == LAYOUT_FILE || (name.starts_with(".oci-layout.") && name.ends_with(".tmp"))
        };
        let foreign = fs::read_dir(root).ok().and_then(|mut entries| {
            entries.find(|e| {
                e.as_ref()
                    .is_ok_and(|e| !ours(&e.file_name().to_string_lossy()))
            })
        });
        if foreign.is_some() {
            return Err(Error::File {
                path: root.to_path_buf(),
                cause: io::Error::other(
                    "not an OCI image layout (no oci-layout file) and not empty",
                ),
            });
        }
        fs::create_dir_all(root).map_err(Error::file(root))?;
        layout.publish(&marker, LAYOUT.as_bytes())?;
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn writable(&self) -> bool {
        self.writable
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
            Err(_) => {
                let (digest, media_type, _) = self.resolve(reference)?;
                (digest, media_type)
            }
        };
        let path = self.blob_path(&digest);
        let bytes = fresh::read_capped(&path, manifest::MAX_SIZE, "the manifest")?
            .ok_or_else(|| Error::NotFound(format!("manifest {digest} in the layout")))?;
        let actual = digest.algorithm().of(&bytes);
        if actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest,
                actual,
            });
        }
        Fetched::parse(media_type.as_deref(), bytes, digest)
    }

    /// The mirror that said what `name` means, when a mirror did (see `SOURCE`).
    pub fn said_by_mirror(&self, name: &str) -> Option<String> {
        let (_, _, source) = self.resolve(name).ok()?;
        source?.strip_prefix("mirror ").map(str::to_string)
    }

    /// The names recorded in `index.json`, for `--tags`.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self
            .manifests()?
            .iter()
            .filter_map(|m| ref_name(m).map(str::to_string))
            .collect())
    }

    /// The blob `digest` when the layout holds it as a regular file. In a cache, anything
    /// else under its name (a symlink, a FIFO, a directory) is removed and the blob counts as
    /// missing; a layout ocidl only reads says what is wrong.
    pub fn entry(&self, digest: &Digest) -> Result<Option<Entry>> {
        let path = self.blob_path(digest);
        match fresh::open_regular(&path).map_err(Error::file(&path))? {
            Found::File(file, meta) => Ok(Some(Entry {
                file,
                len: meta.len(),
                path,
            })),
            Found::Missing => Ok(None),
            // Removed when it can be (something that will not go, a full directory, is a
            // miss all the same: the blob is fetched, and writing it there fails as a note).
            Found::Other if self.writable => {
                self.forget(digest);
                Ok(None)
            }
            Found::Other => Err(Error::File {
                path,
                cause: io::Error::other("not a regular file"),
            }),
        }
    }

    /// Removes a cache's blob that did not verify, so the next run fetches it again; never
    /// through a directory that leads out of the layout.
    pub fn forget(&self, digest: &Digest) {
        let path = self.blob_path(digest);
        let dir = path.parent().unwrap_or(&self.root);
        if self.writable && self.inside(dir).is_ok() {
            let _ = fresh::clear(&path);
        }
    }

    /// Keeps a verified manifest, so the layout holds what its files came from; a copy that
    /// is there with other bytes is replaced.
    pub fn keep_manifest(&self, fetched: &Fetched) -> Result<()> {
        let path = self.blob_path(&fetched.digest);
        let limit = fetched.bytes.len() as u64;
        if fresh::read_capped(&path, limit, "the manifest")
            .is_ok_and(|held| held.as_ref() == Some(&fetched.bytes))
        {
            return Ok(());
        }
        self.write_atomically(&path, &fetched.bytes)
    }

    /// Records `name` in `index.json` as the manifest `fetched`, replacing what the name
    /// meant before, with `annotations` beside the name. Read, changed and written back under
    /// a lock, by rename; another process's hold on the lock is waited out for `patience` at
    /// most. An `index.json` that cannot be read is left alone, and the name not recorded
    /// (said in the returned note); one that would pass `INDEX_MAX` loses its oldest names.
    pub fn record(
        &self,
        name: &str,
        fetched: &Fetched,
        annotations: &[(&str, &str)],
        patience: Duration,
    ) -> Result<Option<String>> {
        let _lock = self.lock(patience)?;
        // One that cannot be read (half written by another tool, past the bound) is left as
        // it is, and the name not recorded: what others recorded there is not lost.
        let mut index = match self.index() {
            Ok(Some(index)) => index,
            Ok(None) => Map::new(),
            Err(e) => return Ok(Some(format!("{e}; {name} is not recorded in it"))),
        };
        let mut manifests = match index.remove("manifests") {
            Some(Value::Array(manifests)) => manifests,
            _ => Vec::new(),
        };
        manifests.retain(|m| ref_name(m) != Some(name));
        let mut names = Map::new();
        names.insert(REF_NAME.into(), name.into());
        for (key, value) in annotations {
            names.insert(key.to_string(), json!(value));
        }
        manifests.push(json!({
            "mediaType": fetched.media_type,
            "digest": fetched.digest.to_string(),
            "size": fetched.bytes.len(),
            "annotations": names,
        }));
        // The oldest names go first when the index would pass what a reader takes.
        let rest = serde_json::to_vec(&index).map_or(0, |v| v.len());
        let mut room = (INDEX_MAX as usize).saturating_sub(1024 + rest);
        let sizes: Vec<usize> = manifests
            .iter()
            .map(|m| serde_json::to_vec_pretty(m).map_or(0, |v| v.len() + 8))
            .collect();
        let mut keep = manifests.len();
        for size in sizes.iter().rev() {
            if *size > room {
                break;
            }
            room -= size;
            keep -= 1;
        }
        manifests.drain(..keep);
        index.insert("schemaVersion".into(), json!(2));
        index
            .entry("mediaType")
            .or_insert_with(|| json!(manifest::OCI_INDEX));
        index.insert("manifests".into(), Value::Array(manifests));
        let path = self.root.join(INDEX);
        let text = serde_json::to_vec_pretty(&index).map_err(|e| Error::file(&path)(e.into()))?;
        self.write_atomically(&path, &text)?;
        Ok(None)
    }

    /// Takes `index.json.lock`, waiting `patience` at most for another process to let go.
    fn lock(&self, patience: Duration) -> Result<File> {
        let path = self.root.join("index.json.lock");
        // Not `create_new`: a lock is one inode every ocidl sharing the cache opens, so an
        // existing one is used. It is never written, only locked, and what is there is
        // opened without following a symlink or waiting on a FIFO, then checked.
        let open = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(sys::O_NOFOLLOW | sys::O_NONBLOCK)
                .open(&path)
        };
        // Whatever is not a regular file there (a symlink, a FIFO) is removed, not used.
        let lock = match open() {
            Ok(file) if file.metadata().is_ok_and(|m| m.is_file()) => file,
            _ => {
                fresh::clear(&path).map_err(Error::file(&path))?;
                open().map_err(Error::file(&path))?
            }
        };
        let until = Instant::now() + patience;
        loop {
            match lock.try_lock() {
                Ok(()) => return Ok(lock),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::File {
                        path,
                        cause: io::Error::other(format!(
                            "another process has held it for {} s; giving up",
                            patience.as_secs()
                        )),
                    })
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::file(&path)(e)),
            }
        }
    }

    /// `index.json` as a JSON object, when there is one.
    fn index(&self) -> Result<Option<Map<String, Value>>> {
        let path = self.root.join(INDEX);
        let Some(bytes) = fresh::read_capped(&path, INDEX_MAX, "the layout's index")? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(index)) => Ok(Some(index)),
            _ => Err(Error::Config {
                path,
                cause: "not a JSON object".into(),
            }),
        }
    }

    /// `index.json`'s manifests (none when there is no index yet).
    fn manifests(&self) -> Result<Vec<Value>> {
        let path = self.root.join(INDEX);
        match self
            .index()?
            .and_then(|mut index| index.remove("manifests"))
        {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(manifests)) => Ok(manifests),
            Some(_) => Err(Error::Config {
                path,
                cause: "'manifests' is not a list".into(),
            }),
        }
    }

    /// The digest, media type and `SOURCE` that `index.json` gives `name`.
    fn resolve(&self, name: &str) -> Result<(Digest, Option<String>, Option<String>)> {
        let manifests = self.manifests()?;
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
        let text = |v: &Value| v.as_str().map(str::to_string);
        Ok((
            digest,
            text(&found["mediaType"]),
            text(&found["annotations"][SOURCE]),
        ))
    }

    /// Writes `bytes` to `path` through a new temporary file beside it and a rename.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.write_file(path, bytes, true)
    }

    /// Writes `bytes` to `path` unless something is there already (another ocidl's).
    fn publish(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.write_file(path, bytes, false)
    }

    /// Writes `bytes` into a new temporary file beside `path`, then renames it over `path`
    /// (`replace`) or links it there, which leaves what is already there alone. The
    /// directory must be a real one inside the layout, not a symlink leading elsewhere.
    fn write_file(&self, path: &Path, bytes: &[u8], replace: bool) -> Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = path.parent().unwrap_or(&self.root);
        self.inside(dir)?;
        fs::create_dir_all(dir).map_err(Error::file(dir))?;
        self.inside(dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let mut made = None;
        for _ in 0..100 {
            let temp = dir.join(format!(
                ".{name}.{}.{}.tmp",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match fresh::create(&temp) {
                Ok(file) => {
                    made = Some((temp, file));
                    break;
                }
                // Someone put something there: another name, never theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::file(&temp)(e)),
            }
        }
        let Some((temp, mut file)) = made else {
            return Err(Error::File {
                path: path.to_path_buf(),
                cause: io::Error::other("no temporary name beside it is free"),
            });
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| fresh::publish(&file, false))
            .and_then(|()| file.sync_all())
            .and_then(|()| match replace {
                true => fs::rename(&temp, path),
                false => match fs::hard_link(&temp, path) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                    _ => fs::remove_file(&temp),
                },
            });
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map_err(Error::file(path))
    }

    /// Refuses a directory of the layout that leads elsewhere (`blobs/sha256` swapped for a
    /// symlink): nothing is made, written or removed through it. For one not there yet, the
    /// part of it that is.
    fn inside(&self, dir: &Path) -> Result<()> {
        let real = |p: &Path| p.canonicalize().map_err(Error::file(p));
        let there = dir
            .ancestors()
            .find(|a| fs::symlink_metadata(a).is_ok())
            .unwrap_or(&self.root);
        if real(there)?.starts_with(real(&self.root)?) {
            return Ok(());
        }
        Err(Error::File {
            path: dir.to_path_buf(),
            cause: io::Error::other("leads outside the layout"),
        })
    }
}

fn ref_name(manifest: &Value) -> Option<&str> {
    manifest["annotations"][REF_NAME].as_str()
}
