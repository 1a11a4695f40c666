//! The temporary files every blob is written into (which paths may be written is `paths.rs`).
//!
//! A file appears under its final name only once every byte has been checked: bytes go into
//! a `Partial`, `.NAME.<12 hex>.ocidl-partial` beside the target, which becomes `Staged` once
//! the verifier has passed it, and is renamed over the target by `Staged::commit` (at once for
//! one file, or for a package only when all its files are staged: `Stage`).
//!
//! A `Partial` is made fresh (`fresh::create`); an earlier run's is resumed only when it is a
//! regular file with one link owned by the user running ocidl, and anything else under that
//! name is removed, never written through. It is locked from open to commit, so two ocidl
//! processes writing the same file take turns instead of interleaving; it outlives a failed or
//! interrupted run so the next run can resume it; and only the file ocidl opened (the same
//! device and inode) is ever renamed into place or removed.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::content::digest::{Digest, Verifier};
use crate::disk::fresh::{self, Found};
use crate::disk::paths::partial_name;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sys;

/// The copy buffer: large enough that read and write calls cost little next to hashing,
/// small enough that memory stays flat for any blob size.
pub const BUFFER: usize = 256 << 10;

/// Bytes written between two requests for early writeback (see `sys::start_writeback`).
const WRITEBACK: u64 = 8 << 20;

/// Tries at making the temporary file when something keeps appearing under its name.
const TRIES: usize = 8;

/// The size of `path` when it is a regular file (not a symlink) that already holds exactly
/// this content.
pub fn holds(path: &Path, digest: &Digest, size: Option<u64>) -> Result<Option<u64>> {
    let mut file = match fresh::open_regular(path).map_err(Error::file(path))? {
        Found::File(file, meta) if size.is_none_or(|s| s == meta.len()) => file,
        _ => return Ok(None),
    };
    let mut verifier = Verifier::new(digest, size);
    feed(&mut file, path, &mut verifier)?;
    Ok(verifier.finish().ok())
}

/// Reads all of `file` into `verifier`.
pub fn feed(file: &mut File, path: &Path, verifier: &mut Verifier) -> Result<()> {
    let mut buffer = vec![0u8; BUFFER];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => verifier.update(&buffer[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::file(path)(e)),
        }
    }
}

/// A file's identity: what is renamed or removed must still be the file ocidl made.
fn identity(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Whether `path` still names the file `file` is open on.
fn still_names(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(now), Ok(ours)) => now.is_file() && identity(&now) == identity(&ours),
        _ => false,
    }
}

/// How much the files in `watch` hold, for telling whether another ocidl is making progress:
/// only the temporary files of ocidl's user count, so that no one else can make a wait last
/// by touching names there.
fn footprint(watch: &[PathBuf]) -> Vec<Option<u64>> {
    let ours = |m: &fs::Metadata| m.is_file() && m.uid() == sys::uid() && m.nlink() == 1;
    watch
        .iter()
        .map(|p| fs::symlink_metadata(p).ok().filter(ours).map(|m| m.len()))
        .collect()
}

/// Polls a lock another process holds, as long as something it is writing moves: any of the
/// `watch` files (the temporary files of the package, which the other process may be filling
/// one after another) grows, shrinks, appears or goes. Gives up after `patience` without.
fn wait_for_lock(file: &File, path: &Path, watch: &[PathBuf], patience: Duration) -> Result<()> {
    let mut seen = footprint(watch);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(Error::file(path)(e)),
        }
        let now = footprint(watch);
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= patience {
            return Err(Error::File {
                path: path.to_path_buf(),
                cause: io::Error::other(format!(
                    "another ocidl holds this file and made no progress for {} s; giving up",
                    patience.as_secs()
                )),
            });
        }
    }
}

/// The temporary file a target is written into, locked, open for reading and writing.
pub struct Partial {
    file: File,
    /// Where the next write lands, and where the last writeback request ended.
    position: u64,
    flushed: u64,
    path: PathBuf,
    target: PathBuf,
    /// The directories this file's opening made, removed again with it.
    made: Vec<PathBuf>,
    /// Where the target must stay (the output directory, really): checked again just
    /// before the file is made and before it is renamed.
    inside: Option<PathBuf>,
}

impl Partial {
    /// Opens the target's temporary file (creating the target's directory when missing): an
    /// earlier run's when it may be resumed, else a fresh one. While another ocidl holds it,
    /// waits as long as that one makes progress on any of `watch` (see `wait_for_lock`).
    /// `root`: the directory the target must stay inside (its title was planned there), in
    /// case a directory on the way was swapped for a symlink since.
    pub fn open(
        target: &Path,
        digest: &Digest,
        root: Option<&Path>,
        watch: &[PathBuf],
        patience: Duration,
        progress: &Progress,
    ) -> Result<Partial> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let made = make_dir(dir)?;
        let inside = match root {
            Some(root) => Some(root.canonicalize().map_err(Error::file(root))?),
            None => None,
        };
        if let Err(e) = stays_inside(dir, inside.as_deref()) {
            remove_dirs(&made);
            return Err(e);
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let path = dir.join(partial_name(&name, digest));
        let watch: Vec<PathBuf> = watch.iter().chain([&path]).cloned().collect();
        for _ in 0..TRIES {
            let file = match fresh::open_ours(&path).map_err(Error::file(&path))? {
                // An older run's may be readable by others: ours alone again (see `create`).
                Found::File(file, meta) if meta.mode() & 0o077 != 0 => {
                    file.set_permissions(fs::Permissions::from_mode(0o600))
                        .map_err(Error::file(&path))?;
                    file
                }
                Found::File(file, _) => file,
                Found::Missing => match fresh::create(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(Error::file(&path)(e)),
                },
                // A symlink, a FIFO, someone else's file: not ours to resume or write through.
                Found::Other => {
                    fresh::clear(&path).map_err(Error::file(&path))?;
                    continue;
                }
            };
            if let Err(fs::TryLockError::WouldBlock) = file.try_lock() {
                progress.note(format_args!(
                    "waiting for another ocidl writing {} (it holds {}; giving up after {} s without progress)",
                    target.display(),
                    path.display(),
                    patience.as_secs()
                ));
                wait_for_lock(&file, &path, &watch, patience)?;
            }
            // The other ocidl may have renamed or removed the file we waited on: then our
            // handle is no longer the temporary file, and we open it again.
            if still_names(&path, &file) {
                return Ok(Partial {
                    file,
                    position: 0,
                    flushed: 0,
                    path,
                    target: target.to_path_buf(),
                    made,
                    inside,
                });
            }
        }
        remove_dirs(&made);
        Err(Error::File {
            path,
            cause: io::Error::other("something else keeps appearing under this name"),
        })
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

    /// Forgets everything written, for a server that sent the blob from its beginning.
    pub fn restart(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(Error::file(&self.path))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(Error::file(&self.path))?;
        (self.position, self.flushed) = (0, 0);
        Ok(())
    }

    /// The file once verified: given the mode a new file gets, a program (ELF or `#!`) made
    /// executable where readable, as installers want, and its data on disk, so that a power
    /// cut after the rename cannot leave the final name with missing contents. It stays
    /// locked until committed.
    pub fn finish(self) -> Result<Staged> {
        let mut head = [0u8; 4];
        let done = self
            .file
            .read_at(&mut head, 0)
            .and_then(|n| {
                let program = head[..n].starts_with(b"\x7fELF") || head[..n].starts_with(b"#!");
                fresh::publish(&self.file, program)
            })
            .and_then(|()| self.file.sync_all());
        match done {
            Ok(()) => Ok(Staged {
                file: self.file,
                path: self.path,
                target: self.target,
                made: self.made,
                inside: self.inside,
            }),
            Err(e) => {
                let path = self.path.clone();
                self.discard();
                Err(Error::file(path)(e))
            }
        }
    }

    /// Removes the temporary file, and the directories its opening made when they are
    /// empty: its content is wrong, or the target is already right.
    pub fn discard(self) {
        remove_if_ours(&self.path, &self.file);
        remove_dirs(&self.made);
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

/// A verified temporary file, still locked, waiting to be renamed over its target.
pub struct Staged {
    file: File,
    path: PathBuf,
    target: PathBuf,
    made: Vec<PathBuf>,
    inside: Option<PathBuf>,
}

impl Staged {
    /// Whether the file can be renamed over its target: it is still the file ocidl made
    /// and verified (a name swapped meanwhile is refused rather than installed), its
    /// directory is still where it was planned, and no directory stands at the target.
    fn ready(&self) -> Result<()> {
        if !still_names(&self.path, &self.file) {
            return Err(Error::File {
                path: self.path.clone(),
                cause: io::Error::other("replaced by something else after it was verified"),
            });
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        stays_inside(dir, self.inside.as_deref())?;
        match fs::symlink_metadata(&self.target) {
            Ok(meta) if meta.is_dir() => Err(Error::File {
                path: self.target.clone(),
                cause: io::Error::other("a directory is there now"),
            }),
            _ => Ok(()),
        }
    }

    /// Renames the file over its target, once `ready`.
    pub fn commit(self) -> Result<()> {
        self.ready()?;
        fs::rename(&self.path, &self.target).map_err(Error::file(&self.target))
    }

    /// Removes the file (and the directories its opening made, when empty): its package
    /// will not be installed.
    pub fn discard(self) {
        remove_if_ours(&self.path, &self.file);
        remove_dirs(&self.made);
    }
}

fn remove_if_ours(path: &Path, file: &File) {
    if still_names(path, file) {
        let _ = fs::remove_file(path);
    }
}

/// Makes `dir` and its parents; the ones it made, top first. A file in the way is said
/// (mkdir only says "File exists" for `-o plain/tool` with `plain` a file).
fn make_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_err())
        .collect();
    let mut made = Vec::new();
    for level in missing.into_iter().rev() {
        match fs::create_dir(level) {
            Ok(()) => made.push(level.to_path_buf()),
            // Another ocidl made it meanwhile: not ours to remove.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && level.is_dir() => {}
            Err(e) => {
                remove_dirs(&made);
                let in_the_way = dir.ancestors().any(Path::is_file);
                return Err(Error::File {
                    path: dir.to_path_buf(),
                    cause: match in_the_way {
                        true => io::Error::other("a file is in the way of this directory"),
                        false => e,
                    },
                });
            }
        }
    }
    Ok(made)
}

/// Removes the directories in `made` (top first) that are empty, deepest first.
fn remove_dirs(made: &[PathBuf]) {
    for dir in made.iter().rev() {
        let _ = fs::remove_dir(dir);
    }
}

/// Refuses a directory that no longer leads inside `inside` (the real output directory):
/// one on its way was swapped for a symlink since its title was planned.
fn stays_inside(dir: &Path, inside: Option<&Path>) -> Result<()> {
    let Some(inside) = inside else {
        return Ok(());
    };
    match dir.canonicalize() {
        Ok(real) if real.starts_with(inside) => Ok(()),
        _ => Err(Error::File {
            path: dir.to_path_buf(),
            cause: io::Error::other(format!(
                "no longer inside {} (a directory on the way was replaced)",
                inside.display()
            )),
        }),
    }
}

/// A package's files, staged one by one and renamed into place together once every one of
/// them has been delivered and verified: a package is installed whole or not at all.
#[derive(Default)]
pub struct Stage {
    files: Vec<Staged>,
    /// Directories made for files of the package that were given up: removed with the
    /// rest, deepest first, when they are left empty.
    made: Vec<PathBuf>,
}

impl Stage {
    pub fn push(&mut self, staged: Staged) {
        self.files.push(staged);
    }

    /// Removes a temporary file of the package that will not be staged; its directories go
    /// when the package is committed or discarded, once nothing else of it is in them.
    pub fn drop_partial(&mut self, partial: Partial) {
        remove_if_ours(&partial.path, &partial.file);
        self.made.extend(partial.made);
    }

    /// Renames every staged file into place, once every one of them is `ready`, with Ctrl-C
    /// held off until the last rename: the package is installed whole or not at all. (A
    /// rename that fails once all were ready, an I/O error, leaves the ones before it in
    /// place; the error says which file.)
    pub fn commit(self) -> Result<()> {
        if let Err(e) = self.files.iter().try_for_each(Staged::ready) {
            self.discard();
            return Err(e);
        }
        let made = self.made;
        let committed = sys::uninterrupted(|| self.files.into_iter().try_for_each(Staged::commit));
        remove_all(made);
        committed
    }

    /// Removes every staged file, then the directories they made that are left empty.
    pub fn discard(self) {
        let mut made = self.made;
        for staged in self.files {
            remove_if_ours(&staged.path, &staged.file);
            made.extend(staged.made);
        }
        remove_all(made);
    }
}

/// Removes the directories in `made` that are empty, deepest first.
fn remove_all(mut made: Vec<PathBuf>) {
    made.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    made.iter().for_each(|d| {
        let _ = fs::remove_dir(d);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ocidl-partial-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn open(target: &Path, digest: &Digest) -> Partial {
        Partial::open(
            target,
            digest,
            None,
            &[],
            Duration::from_secs(1),
            &Progress::silent(),
        )
        .unwrap()
    }

    #[test]
    fn partial_resumes_restarts_and_commits() {
        let dir = temp_dir("partial");
        let target = dir.join("sub/file");
        let content = b"the real bytes";
        let digest = Digest::of(content);

        let mut p = open(&target, &digest);
        p.write_all(b"the re").unwrap();
        drop(p); // an interrupted run

        let mut p = open(&target, &digest);
        let mut v = Verifier::new(&digest, Some(14));
        assert_eq!(p.resume(&mut v).unwrap(), 6);
        p.write_all(b"al bytes").unwrap();
        v.update(b"al bytes").unwrap();
        v.finish().unwrap();
        p.finish().unwrap().commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), content);
        assert_eq!(holds(&target, &digest, Some(14)).unwrap(), Some(14));
        assert_eq!(holds(&target, &digest, None).unwrap(), Some(14));
        assert_eq!(holds(&target, &digest, Some(15)).unwrap(), None);
        assert_eq!(holds(&target, &Digest::of(b"x"), None).unwrap(), None);

        let mut p = open(&target, &digest);
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
    fn a_planted_name_is_removed_never_written_through() {
        let dir = temp_dir("planted");
        let victim = dir.join("victim");
        fs::write(&victim, b"#!/bin/sh\necho mine\n").unwrap();
        let content = b"#!/bin/sh\necho theirs\n";
        let digest = Digest::of(content);
        let target = dir.join("tool");
        let partial = dir.join(partial_name("tool", &digest));
        for plant in [
            |v: &Path, p: &Path| symlink(v, p).unwrap(),
            |v: &Path, p: &Path| fs::hard_link(v, p).unwrap(),
        ] {
            plant(&victim, &partial);
            let mut p = open(&target, &digest);
            p.write_all(content).unwrap();
            p.finish().unwrap().commit().unwrap();
            assert_eq!(fs::read(&victim).unwrap(), b"#!/bin/sh\necho mine\n");
            let mode = fs::metadata(&victim).unwrap().permissions().mode();
            assert_eq!(mode & 0o111, 0, "the victim was made executable");
            assert_eq!(fs::read(&target).unwrap(), content);
            fs::remove_file(&target).unwrap();
        }
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
            let mut p = open(&target, &digest);
            p.write_all(content).unwrap();
            p.finish().unwrap().commit().unwrap();
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
