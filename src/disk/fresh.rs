//! How ocidl opens files, in one place. What it writes it makes fresh (`O_CREAT|O_EXCL`,
//! never through a name someone else could have put there, a symlink least of all), and
//! what it reads is a regular file, opened without waiting on a FIFO and read up to a
//! bound: without following a symlink where ocidl itself writes (outputs, the cache), and
//! through one for a file the user named (a registries.conf). `stat`, `File::create` and `create(true)` on a predictable name
//! are the bugs this module exists to avoid (see the README's "When things fail").

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::sys;

/// What is at a name ocidl is about to read or reuse.
pub enum Found {
    /// Nothing.
    Missing,
    /// A regular file, open for reading, and its metadata.
    File(File, Metadata),
    /// A symlink, directory, FIFO, socket or device: never opened.
    Other,
}

/// Opens `path` for reading when it is a regular file. A symlink is not followed and a FIFO
/// is not waited on (`O_NONBLOCK` changes nothing for a regular file).
pub fn open_regular(path: &Path) -> io::Result<Found> {
    open(path, OpenOptions::new().read(true))
}

/// Opens an earlier run's temporary file for reading and writing, when it is one ocidl may
/// resume: a regular file with one link (no hard link to a file elsewhere), owned by the user
/// running ocidl. Anything else there is `Other`.
pub fn open_ours(path: &Path) -> io::Result<Found> {
    match open(path, OpenOptions::new().read(true).write(true))? {
        Found::File(file, meta) if meta.nlink() == 1 && meta.uid() == sys::uid() => {
            Ok(Found::File(file, meta))
        }
        Found::File(..) => Ok(Found::Other),
        found => Ok(found),
    }
}

fn open(path: &Path, options: &mut OpenOptions) -> io::Result<Found> {
    let opened = options
        .custom_flags(sys::O_NOFOLLOW | sys::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        // ELOOP (a symlink), ENXIO (a FIFO without a reader), EISDIR: something else is there.
        Err(e) if fs::symlink_metadata(path).is_ok() => {
            let _ = e;
            return Ok(Found::Other);
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    match meta.is_file() {
        true => Ok(Found::File(file, meta)),
        false => Ok(Found::Other),
    }
}

/// Opens a file the user named (a registries.conf, perhaps a symlink to where it is kept)
/// for reading, only when it is a regular file: a FIFO would wait for ever and a device
/// (`/dev/zero`) never end. What is there is looked at before it is opened, so a device's
/// open cannot act; `O_NONBLOCK` keeps what was swapped in since from waiting for a writer,
/// and the opened file is checked again.
pub fn open_config(path: &Path) -> io::Result<File> {
    let not_regular = || io::Error::other("not a regular file");
    if !fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(sys::O_NONBLOCK)
        .open(path)?;
    match file.metadata()?.is_file() {
        true => Ok(file),
        false => Err(not_regular()),
    }
}

/// Makes a new file at `path` for writing (and reading back); fails when anything, even a
/// dangling symlink, is already there. It is the user's alone (0600) until `publish` gives
/// it its mode: no one else can open it meanwhile, to read it, write it or hold its lock.
pub fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(sys::O_NOFOLLOW)
        .open(path)
}

/// Gives a file ocidl made the mode a new file gets (0666 less the umask), executable
/// where readable when it is a program, before it is renamed into place.
pub fn publish(file: &File, program: bool) -> io::Result<()> {
    let mode = sys::file_mode();
    let mode = match program {
        true => mode | (mode & 0o444) >> 2,
        false => mode,
    };
    file.set_permissions(fs::Permissions::from_mode(mode))
}

/// Removes what is at `path` when it is not a regular file ocidl could use: the name itself
/// (a symlink is removed, never what it points to), or an empty directory.
pub fn clear(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The whole of a regular file of at most `limit` bytes; `None` when nothing is there.
/// `what` names the file in errors.
pub fn read_capped(path: &Path, limit: u64, what: &str) -> Result<Option<Vec<u8>>> {
    let file = match open_regular(path).map_err(Error::file(path))? {
        Found::Missing => return Ok(None),
        Found::File(file, _) => file,
        Found::Other => {
            return Err(Error::File {
                path: path.to_path_buf(),
                cause: io::Error::other("not a regular file"),
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::file(path))?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge {
            what: format!("{what} {}", path.display()),
            limit,
        });
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn what_is_not_a_regular_file_is_never_opened() {
        let dir = std::env::temp_dir().join(format!("ocidl-fresh-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        fs::write(&victim, b"mine").unwrap();
        symlink(&victim, dir.join("link")).unwrap();
        symlink(dir.join("nowhere"), dir.join("dangling")).unwrap();
        fs::hard_link(&victim, dir.join("hard")).unwrap();

        assert!(matches!(
            open_regular(&dir.join("link")).unwrap(),
            Found::Other
        ));
        assert!(matches!(open_regular(&dir).unwrap(), Found::Other));
        assert!(matches!(
            open_regular(&dir.join("none")).unwrap(),
            Found::Missing
        ));
        assert!(matches!(open_regular(&victim).unwrap(), Found::File(..)));
        // Two links: someone else's file could be the other one.
        assert!(matches!(open_ours(&victim).unwrap(), Found::Other));
        for name in ["link", "dangling", "victim"] {
            assert_eq!(
                create(&dir.join(name)).unwrap_err().kind(),
                io::ErrorKind::AlreadyExists,
                "{name}"
            );
        }
        assert!(!dir.join("nowhere").exists());
        clear(&dir.join("link")).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"mine");
        assert!(create(&dir.join("link")).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
