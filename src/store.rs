//! Output paths and the temporary files downloads go through.
//!
//! A file appears under its final name only once every byte has been checked: bodies go
//! into a `Partial` beside the target, which is renamed over the target only after
//! `download.rs` has verified size and digest. A `Partial` outlives a failed or interrupted
//! run so the next run can resume it, and is locked while in use, so two ocidl processes
//! writing the same file take turns instead of interleaving.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::digest::{Digest, Verifier};
use crate::error::{Error, Result};
use crate::progress;
use crate::sys;
use crate::text;

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

/// The suffix of ocidl's temporary files; no title may end with it, so no layer can name
/// another's temporary file.
pub const PARTIAL_SUFFIX: &str = ".ocidl-partial";
/// The longest file name Linux file systems take (ext4, xfs, btrfs, tmpfs: NAME_MAX).
const NAME_MAX: usize = 255;

/// Joins an untrusted layer title to the output directory, or refuses it. Only plain
/// relative names are taken, and no part of the result that already exists may be a
/// symlink leading outside `root` (oras's advisory GHSA-wmcq-w8p3-ch5w; soar-dl once
/// joined titles unchecked). `a//b` and `a/./b` mean `a/b`.
pub fn safe_path(root: &Path, title: &str) -> Result<PathBuf> {
    let refuse = |reason: String| {
        Err(Error::UnsafeTitle {
            title: title.to_string(),
            reason,
        })
    };
    if title.is_empty() {
        return refuse("empty".into());
    }
    plain_text(title)?;
    if title.ends_with('/') {
        return refuse("ends in '/', so it names a directory, not a file".into());
    }
    let relative = Path::new(title);
    if relative.is_absolute() {
        return refuse("absolute path".into());
    }
    for component in relative.components() {
        match component {
            Component::Normal(name) if name.len() > NAME_MAX => {
                return refuse(format!("has a name longer than {NAME_MAX} bytes"))
            }
            Component::Normal(_) => {}
            Component::ParentDir => return refuse("contains '..'".into()),
            _ => return refuse("not a plain relative path".into()),
        }
    }
    if title.ends_with(PARTIAL_SUFFIX) {
        return refuse(format!(
            "ends in {PARTIAL_SUFFIX}, the suffix of ocidl's temporary files"
        ));
    }
    let real_root = root.canonicalize().map_err(Error::file(root))?;
    let mut path = root.to_path_buf();
    for component in relative.components() {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => match path.canonicalize() {
                Ok(real) if real.starts_with(&real_root) => {}
                Ok(_) => {
                    return refuse(
                        "a symlink on its path leads outside the output directory".into(),
                    )
                }
                Err(_) => return refuse("a symlink on its path leads nowhere".into()),
            },
            Ok(_) => {}
            // Not there yet: everything below it will be created by us, inside root.
            Err(_) => break,
        }
    }
    Ok(relative
        .components()
        .fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// Refuses a title with a control or bidirectional character, wherever its file goes (a
/// path, or standard output with `-o -`): no file name needs one, and a terminal would act
/// on it.
pub fn plain_text(title: &str) -> Result<()> {
    match title.chars().find(|&c| text::is_unsafe(c)) {
        None => Ok(()),
        Some(c) => Err(Error::UnsafeTitle {
            title: title.to_string(),
            reason: format!(
                "contains the control or bidirectional character U+{:04X}",
                c as u32
            ),
        }),
    }
}

/// Decides every file's path before the first byte is fetched, so that a package either
/// can be written whole or writes nothing: each title is safe (`safe_path`), and no two name
/// the same file, none names the directory of another, and none names what exists as a
/// directory (or runs through what exists as a file).
pub fn plan(root: &Path, titles: &[&str]) -> Result<Vec<PathBuf>> {
    let clash = |title: &str, reason: String| Error::UnsafeTitle {
        title: title.to_string(),
        reason,
    };
    let paths = titles
        .iter()
        .map(|title| safe_path(root, title))
        .collect::<Result<Vec<_>>>()?;
    // Compared where they really are: `bin/x` and `lib/x` are one file when `lib` is a
    // symlink to `bin`.
    let places: Vec<PathBuf> = paths.iter().map(|p| real_place(p)).collect();
    let mut taken: HashMap<&Path, &str> = HashMap::new();
    for (place, title) in places.iter().zip(titles) {
        if let Some(other) = taken.insert(place, title) {
            return Err(clash(title, format!("names the same file as '{other}'")));
        }
    }
    for ((path, place), title) in paths.iter().zip(&places).zip(titles) {
        if let Some(other) = place.ancestors().skip(1).find_map(|a| taken.get(a)) {
            return Err(clash(
                title,
                format!("needs '{other}', a file of the package, to be a directory"),
            ));
        }
        for ancestor in path.ancestors().skip(1).take_while(|a| *a != root) {
            if fs::symlink_metadata(ancestor).is_ok_and(|m| m.is_file()) {
                return Err(clash(
                    title,
                    format!("the file {} is in the way", ancestor.display()),
                ));
            }
        }
        if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(clash(title, format!("{} is a directory", path.display())));
        }
    }
    Ok(paths)
}

/// Where the file at `path` really goes: the part of its directory that exists, with its
/// symlinks resolved (`safe_path` made sure they stay inside the output directory), then the
/// rest. Its own name is kept as it is: a symlink there is replaced, not written through.
fn real_place(path: &Path) -> PathBuf {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_path_buf();
    };
    let mut below = vec![name];
    let mut existing = dir;
    loop {
        if let Ok(real) = existing.canonicalize() {
            return below.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(up), Some(n)) => {
                below.push(n);
                existing = up;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Whether `-o PATH` names a directory for a blob: it exists as one, or ends in '/'.
pub fn names_directory(path: &Path) -> bool {
    path.as_os_str().as_encoded_bytes().ends_with(b"/") || path.is_dir()
}

/// A FIFO, a device, `/dev/stdout`: written straight into, since renaming a file over it
/// would replace it rather than feed it.
pub fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
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
    use std::os::unix::fs::symlink;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ocidl-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn safe_titles() {
        let root = temp_dir("safe");
        fs::create_dir(root.join("inside")).unwrap();
        symlink(root.join("inside"), root.join("link-in")).unwrap();
        for (title, expected) in [
            ("trurl", "trurl"),
            ("trurl.json", "trurl.json"),
            ("bin/tool", "bin/tool"),
            ("a/./b", "a/b"),
            ("link-in/x", "link-in/x"),
            ("..x", "..x"),
        ] {
            assert_eq!(
                safe_path(&root, title).unwrap(),
                root.join(expected),
                "{title}"
            );
        }
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn traversal_titles() {
        let root = temp_dir("traversal");
        for title in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../../b",
            "a/..",
            ".",
            "./x",
            "a\0b",
        ] {
            assert!(
                matches!(safe_path(&root, title), Err(Error::UnsafeTitle { .. })),
                "{title:?}"
            );
        }
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn symlink_titles() {
        let root = temp_dir("symlink");
        let outside = temp_dir("symlink-outside");
        symlink(&outside, root.join("out")).unwrap();
        symlink(root.join("missing"), root.join("dangling")).unwrap();
        symlink(outside.join("f"), root.join("file-out")).unwrap();
        for title in ["out/x", "out/deeper/x", "dangling/x", "file-out"] {
            assert!(
                matches!(safe_path(&root, title), Err(Error::UnsafeTitle { .. })),
                "{title:?}"
            );
        }
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn plan_compares_where_titles_really_go() {
        let root = temp_dir("plan");
        fs::create_dir(root.join("bin")).unwrap();
        symlink("bin", root.join("lib")).unwrap();
        for titles in [
            &["a/b", "a//b"][..],
            &["a/b", "a/./b"],
            &["bin/x", "lib/x"],
            &["bin/new/x", "lib/new/x"],
            &["x", "x/y"],
            &["bin/x", "lib/x/y"],
        ] {
            assert!(
                matches!(plan(&root, titles), Err(Error::UnsafeTitle { .. })),
                "{titles:?}"
            );
        }
        let paths = plan(&root, &["lib/x", "bin/y", "x"]).unwrap();
        assert_eq!(
            paths,
            [root.join("lib/x"), root.join("bin/y"), root.join("x")]
        );
        fs::remove_dir_all(&root).unwrap();
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

    #[test]
    fn special_and_directory_outputs() {
        assert!(names_directory(Path::new("new/")));
        assert!(names_directory(&std::env::temp_dir()));
        assert!(!names_directory(Path::new("no-such-file")));
        assert!(is_special(Path::new("/dev/null")));
        assert!(!is_special(&std::env::temp_dir()));
        assert!(!is_special(Path::new("no-such-file")));
    }
}
