//! The temporary files downloads go through (which paths may be written is `paths.rs`).
//!
//! A file appears under its final name only once every byte has been checked: bodies go
//! into a `Partial` beside the target, which is renamed over the target only after
//! `download.rs` has verified size and digest. A `Partial` outlives a failed or interrupted
//! run so the next run can resume it, and is locked while in use, so two ocidl processes
//! writing the same file take turns instead of interleaving.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use crate::disk::paths::NAME_MAX;
pub use crate::disk::paths::{
    is_special, names_directory, plain_text, plan, safe_path, PARTIAL_SUFFIX,
};

use crate::content::digest::{Digest, Verifier};
use crate::error::{Error, Result};
use crate::progress;
use crate::sys;

/// The copy buffer: large enough that read and write calls cost little next to hashing,
/// small enough that memory stays flat for any blob size.
pub const BUFFER: usize = 256 << 10;

/// What delivering a file did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Downloaded (or copied out of a layout) and verified; this many bytes.
    Written(u64),
    /// The target already held exactly this content; nothing was fetched.
    UpToDate(u64),
}

/// The size of `path` when it is a regular file that already holds exactly this content.
pub fn holds(path: &Path, digest: &Digest, size: Option<u64>) -> Result<Option<u64>> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() && size.is_none_or(|s| s == meta.len()) => {}
        _ => return Ok(None),
    }
    let mut verifier = Verifier::new(digest, size);
    let mut file = File::open(path).map_err(Error::file(path))?;
    feed(&mut file, path, &mut verifier)?;
    Ok(verifier.finish().ok())
}

/// Reads all of `file` into `verifier`.
fn feed(file: &mut File, path: &Path, verifier: &mut Verifier) -> Result<()> {
    let mut buffer = vec![0u8; BUFFER];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => verifier.update(&buffer[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::File {
                    path: path.to_path_buf(),
                    cause: e,
                })
            }
        }
    }
}

/// `.NAME.<12 hex>.ocidl-partial`, with NAME cut short (at a character boundary) where the
/// whole would pass the file system's limit: any name a title may have gets a temporary file.
/// Two cut names can only meet for the same digest, that is the same content.
fn partial_name(name: &str, digest: &Digest) -> String {
    let room = NAME_MAX - (2 + digest.short().len() + PARTIAL_SUFFIX.len());
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.{}{PARTIAL_SUFFIX}", &name[..end], digest.short())
}

/// Polls a lock another process holds, as long as the file it guards keeps growing.
fn wait_for_lock(file: &File, path: &Path, patience: Duration) -> Result<()> {
    let mut size = file.metadata().map_or(0, |m| m.len());
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(Error::file(path)(e)),
        }
        let now = file.metadata().map_or(0, |m| m.len());
        if now != size {
            (size, since) = (now, Instant::now());
        } else if since.elapsed() >= patience {
            return Err(Error::File {
                path: path.to_path_buf(),
                cause: io::Error::other(format!(
                    "another ocidl holds this file and wrote nothing to it for {} s; giving up",
                    patience.as_secs()
                )),
            });
        }
    }
}

/// Bytes written between two requests for early writeback (see `sys::start_writeback`).
const WRITEBACK: u64 = 8 << 20;

/// The temporary file a target is downloaded into: `.NAME.<digest>.ocidl-partial` beside it.
pub struct Partial {
    file: File,
    /// Where the next write lands, and where the last writeback request ended.
    position: u64,
    flushed: u64,
    path: PathBuf,
    target: PathBuf,
}

impl Partial {
    /// Opens the target's temporary file, creating it (and the target's directory) when
    /// missing. While another ocidl holds it, waits as long as that one makes progress: it
    /// gives up once the file has not grown for `patience`.
    pub fn open(
        target: &Path,
        digest: &Digest,
        quiet: bool,
        patience: Duration,
    ) -> Result<Partial> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir).map_err(|e| {
            match dir.is_file() || dir.ancestors().any(Path::is_file) {
                // create_dir_all says "File exists" for `-o plain/tool` with `plain` a file.
                true => Error::File {
                    path: dir.to_path_buf(),
                    cause: io::Error::other("a file is in the way of this directory"),
                },
                false => Error::File {
                    path: dir.to_path_buf(),
                    cause: e,
                },
            }
        })?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let path = dir.join(partial_name(&name, digest));
        loop {
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(false)
                .open(&path)
                .map_err(Error::file(&path))?;
            if let Err(fs::TryLockError::WouldBlock) = file.try_lock() {
                if !quiet {
                    progress::note(format_args!(
                        "waiting for another ocidl writing {} (it holds {}; giving up after {} s without progress)",
                        target.display(),
                        path.display(),
                        patience.as_secs()
                    ));
                }
                wait_for_lock(&file, &path, patience)?;
            }
            // The other ocidl may have renamed or removed the file we waited on: then our
            // handle is no longer the temporary file, and we open it again.
            let ours = file.metadata().map_err(Error::file(&path))?;
            if fs::metadata(&path)
                .is_ok_and(|now| now.ino() == ours.ino() && now.dev() == ours.dev())
            {
                return Ok(Partial {
                    file,
                    position: 0,
                    flushed: 0,
                    path,
                    target: target.to_path_buf(),
                });
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }

    /// Feeds what an earlier run left into `verifier` and returns its length; writing
    /// continues after it.
    pub fn resume(&mut self, verifier: &mut Verifier) -> Result<u64> {
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(Error::file(&self.path))?;
        feed(&mut self.file, &self.path, verifier)?;
        self.position = verifier.seen();
        self.flushed = self.position;
        Ok(self.position)
    }

    /// Replaces what the file holds with all of `source` (a layout's blob), copied by the
    /// kernel (a reflink where the file system can) into this file, whose mode stays ours:
    /// never the source's, which could be setuid or world-writable.
    pub fn fill_from(&mut self, source: &mut File) -> Result<u64> {
        self.restart()?;
        let n = io::copy(source, &mut self.file).map_err(Error::file(&self.path))?;
        (self.position, self.flushed) = (n, n);
        Ok(n)
    }

    /// Forgets everything written, for a server that sent the blob from its beginning.
    pub fn restart(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(Error::file(&self.path))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(Error::file(&self.path))?;
        (self.position, self.flushed) = (0, 0);
        Ok(())
    }

    /// Puts the verified file in place. Its data reaches the disk before the rename does,
    /// so a power cut cannot leave the final name with missing contents.
    /// A program (ELF or `#!`) is made executable first, as installers want.
    pub fn commit(self) -> Result<()> {
        self.make_executable_if_program()?;
        self.file.sync_all().map_err(Error::file(&self.path))?;
        fs::rename(&self.path, &self.target).map_err(Error::file(&self.target))
    }

    /// Gives execute permission wherever the file is readable: the file was created with the
    /// umask applied (0644 under the usual 022), so this gives 0755 less the umask without
    /// asking for the umask, which std cannot read.
    fn make_executable_if_program(&self) -> Result<()> {
        let mut head = [0u8; 4];
        let n = self
            .file
            .read_at(&mut head, 0)
            .map_err(Error::file(&self.path))?;
        if !(head[..n].starts_with(b"\x7fELF") || head[..n].starts_with(b"#!")) {
            return Ok(());
        }
        let meta = self.file.metadata().map_err(Error::file(&self.path))?;
        let mode = meta.permissions().mode();
        let executable = mode | (mode & 0o444) >> 2;
        self.file
            .set_permissions(fs::Permissions::from_mode(executable))
            .map_err(Error::file(&self.path))
    }

    /// Removes the temporary file: its content is wrong, or the target is already right.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Write for Partial {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.position += n as u64;
        if self.position - self.flushed >= WRITEBACK {
            sys::start_writeback(&self.file, self.flushed, self.position - self.flushed);
            self.flushed = self.position;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ocidl-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn partial_resumes_restarts_and_commits() {
        let dir = temp_dir("partial");
        let target = dir.join("sub/file");
        let content = b"the real bytes";
        let digest = Digest::of(content);

        let mut p = Partial::open(&target, &digest, true, Duration::from_secs(1)).unwrap();
        p.write_all(b"the re").unwrap();
        drop(p); // an interrupted run

        let mut p = Partial::open(&target, &digest, true, Duration::from_secs(1)).unwrap();
        let mut v = Verifier::new(&digest, Some(14));
        assert_eq!(p.resume(&mut v).unwrap(), 6);
        p.write_all(b"al bytes").unwrap();
        v.update(b"al bytes").unwrap();
        v.finish().unwrap();
        p.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), content);
        assert_eq!(holds(&target, &digest, Some(14)).unwrap(), Some(14));
        assert_eq!(holds(&target, &digest, None).unwrap(), Some(14));
        assert_eq!(holds(&target, &digest, Some(15)).unwrap(), None);
        assert_eq!(holds(&target, &Digest::of(b"x"), None).unwrap(), None);

        let mut p = Partial::open(&target, &digest, true, Duration::from_secs(1)).unwrap();
        p.write_all(b"junk").unwrap();
        p.restart().unwrap();
        assert_eq!(p.resume(&mut Verifier::new(&digest, None)).unwrap(), 0);
        p.discard();
        let names: Vec<_> = fs::read_dir(dir.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn programs_become_executable() {
        let dir = temp_dir("exec");
        for (name, content, executable) in [
            ("elf", &b"\x7fELF\x02\x01"[..], true),
            ("script", b"#!/bin/sh\necho hi\n", true),
            ("data", b"{\"a\":1}", false),
            ("tiny", b"#", false),
            ("empty", b"", false),
        ] {
            let target = dir.join(name);
            let digest = Digest::of(content);
            let mut p = Partial::open(&target, &digest, true, Duration::from_secs(1)).unwrap();
            p.write_all(content).unwrap();
            p.commit().unwrap();
            let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o100 != 0, executable, "{name}: {mode:o}");
            if executable {
                // Readable means executable too, and nothing else changes.
                assert_eq!(mode, mode | (mode & 0o444) >> 2, "{name}: {mode:o}");
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
