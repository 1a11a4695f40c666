//! Output paths and verified writes.
//!
//! A file appears under its final name only once every byte has been checked: bodies
//! stream through a fixed buffer into a temporary file beside the target, are hashed and
//! counted on the way, and the temporary file is renamed over the target only when size
//! and digest match. On any failure it is removed, and what the user had is untouched.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::digest::{Digest, Verifier};
use crate::error::{Error, Result};

/// The copy buffer: large enough that the read and write calls cost little next to
/// hashing, small enough that memory stays flat for any blob size.
const BUFFER: usize = 256 << 10;

/// Joins an untrusted layer title to the output directory, or refuses it. Only plain
/// relative names are taken, and no part of the result that already exists may be a
/// symlink leading outside `root` (oras's advisory GHSA-wmcq-w8p3-ch5w; soar-dl once
/// joined titles unchecked).
pub fn safe_path(root: &Path, title: &str) -> Result<PathBuf> {
    let refuse = |reason| Err(Error::UnsafeTitle { title: title.to_string(), reason });
    if title.is_empty() {
        return refuse("empty");
    }
    if title.contains('\0') {
        return refuse("contains a NUL byte");
    }
    let relative = Path::new(title);
    if relative.is_absolute() {
        return refuse("absolute path");
    }
    for component in relative.components() {
        match component {
            Component::Normal(_) => {}
            Component::ParentDir => return refuse("contains '..'"),
            _ => return refuse("not a plain relative path"),
        }
    }
    let real_root = root.canonicalize().map_err(Error::file(root))?;
    let mut path = root.to_path_buf();
    for component in relative.components() {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => match path.canonicalize() {
                Ok(real) if real.starts_with(&real_root) => {}
                Ok(_) => return refuse("a symlink on its path leads outside the output directory"),
                Err(_) => return refuse("a symlink on its path leads nowhere"),
            },
            Ok(_) => {}
            // Not there yet: everything below it will be created by us, inside root.
            Err(_) => break,
        }
    }
    Ok(root.join(relative))
}

/// Streams `body` into `target`, verified, through a temporary file beside it.
/// Returns the number of bytes written.
pub fn write_file(target: &Path, body: &mut impl Read, digest: &Digest, size: Option<u64>) -> Result<u64> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(Error::file(dir))?;
    let name = target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    // Named by target and digest, so a second ocidl writing the same file finds it locked.
    let temp = dir.join(format!(".{name}.{}.ocidl-partial", digest.short()));
    let mut file = OpenOptions::new().create(true).write(true).truncate(false).open(&temp).map_err(Error::file(&temp))?;
    if let Err(e) = file.try_lock() {
        return Err(match e {
            fs::TryLockError::WouldBlock => {
                Error::File { path: target.to_path_buf(), cause: io::Error::other("another ocidl is writing it") }
            }
            fs::TryLockError::Error(e) => Error::File { path: temp, cause: e },
        });
    }
    let written = file
        .set_len(0)
        .map_err(Error::file(&temp))
        .and_then(|()| copy_verified(body, &mut file, &temp, Verifier::new(digest, size)))
        // The data reaches the disk before the rename does, so a power cut cannot leave a
        // renamed file with missing contents.
        .and_then(|n| file.sync_all().map(|()| n).map_err(Error::file(&temp)))
        .and_then(|n| fs::rename(&temp, target).map(|()| n).map_err(Error::file(target)));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Streams `body` to standard output, verified. Bytes reach the reader before the check
/// ends, so a mismatch is reported by the exit status: pipelines must look at it.
pub fn write_stdout(body: &mut impl Read, digest: &Digest, size: Option<u64>) -> Result<u64> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let n = copy_verified(body, &mut out, Path::new("-"), Verifier::new(digest, size))?;
    out.flush().map_err(Error::Stdout)?;
    Ok(n)
}

fn copy_verified(body: &mut impl Read, out: &mut impl Write, path: &Path, mut verifier: Verifier) -> Result<u64> {
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Network(format!("reading the body: {e}"))),
        };
        verifier.update(&buffer[..n])?;
        out.write_all(&buffer[..n]).map_err(|e| match path == Path::new("-") {
            true => Error::Stdout(e),
            false => Error::File { path: path.to_path_buf(), cause: e },
        })?;
    }
    verifier.finish()
}

/// Whether `-o PATH` names a directory for a blob: it exists as one, or ends in '/'.
pub fn names_directory(path: &Path) -> bool {
    path.as_os_str().as_encoded_bytes().ends_with(b"/") || path.is_dir()
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
            assert_eq!(safe_path(&root, title).unwrap(), root.join(expected), "{title}");
        }
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn traversal_titles() {
        let root = temp_dir("traversal");
        for title in ["", "/etc/passwd", "..", "../x", "a/../../b", "a/..", ".", "./x", "a\0b"] {
            assert!(matches!(safe_path(&root, title), Err(Error::UnsafeTitle { .. })), "{title:?}");
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
            assert!(matches!(safe_path(&root, title), Err(Error::UnsafeTitle { .. })), "{title:?}");
        }
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn writes_only_verified_content() {
        let dir = temp_dir("write");
        let target = dir.join("sub/file");
        let good = b"the real bytes";
        let digest = Digest::of(good);
        assert_eq!(write_file(&target, &mut &good[..], &digest, Some(14)).unwrap(), 14);
        assert_eq!(fs::read(&target).unwrap(), good);

        // Wrong bytes, too few, too many: the earlier file stays, no temporary is left.
        for (body, size) in [(&b"the fake bytes"[..], Some(14)), (b"the real", Some(14)), (b"the real bytes!", Some(14)), (b"the real bytes!", None)] {
            assert!(write_file(&target, &mut &body[..], &digest, size).is_err());
            assert_eq!(fs::read(&target).unwrap(), good);
            let names: Vec<_> = fs::read_dir(dir.join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["file"]);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directory_outputs() {
        assert!(names_directory(Path::new("new/")));
        assert!(names_directory(Path::new("/")));
        assert!(names_directory(&std::env::temp_dir()));
        assert!(!names_directory(Path::new("no-such-file")));
    }
}
