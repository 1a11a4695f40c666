//! Which paths ocidl may write: an untrusted layer title becomes a path inside the output
//! directory or is refused, and a package's paths are all decided, against each other and
//! against what exists, before its first byte is fetched.

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::content::digest::Digest;
use crate::error::{Error, Result};
use crate::text;

/// The suffix of ocidl's temporary files; no title may end with it, so no layer can name
/// another's temporary file.
pub const PARTIAL_SUFFIX: &str = ".ocidl-partial";
/// The longest file name Linux file systems take (ext4, xfs, btrfs, tmpfs: NAME_MAX).
pub(crate) const NAME_MAX: usize = 255;
/// The longest path a system call takes, its final NUL included (Linux's PATH_MAX).
const PATH_MAX: usize = 4096;
/// The digest characters a temporary file's name carries.
const SHORT_DIGEST: usize = 12;

/// `.NAME.<12 hex>.ocidl-partial`, the temporary file beside `NAME`, with NAME cut short (at
/// a character boundary) where the whole would pass the file system's limit: any name a
/// title may have gets a temporary file. Two cut names can only meet for the same digest.
pub fn partial_name(name: &str, digest: &Digest) -> String {
    let end = partial_room(name);
    format!(".{}.{}{PARTIAL_SUFFIX}", &name[..end], digest.short())
}

/// The temporary file beside `target` (see `partial_name`).
pub fn partial_path(target: &Path, digest: &Digest) -> PathBuf {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    target.with_file_name(partial_name(&name, digest))
}

/// How much of `name` its temporary file's name keeps.
fn partial_room(name: &str) -> usize {
    let room = NAME_MAX - (2 + SHORT_DIGEST + PARTIAL_SUFFIX.len());
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Refuses a path the kernel would refuse, or its temporary file's: PATH_MAX counts what a
/// system call is given, so a relative path counts as written.
fn within_path_max(path: &Path) -> std::result::Result<(), String> {
    let name = path.file_name().unwrap_or_default();
    let dir = path.as_os_str().len() - name.len();
    let temporary = 2 + partial_room(&name.to_string_lossy()) + SHORT_DIGEST + PARTIAL_SUFFIX.len();
    let longest = dir + name.len().max(temporary);
    match longest < PATH_MAX {
        true => Ok(()),
        false => Err(format!(
            "makes a path of {longest} bytes, past the system's limit of {}",
            PATH_MAX - 1
        )),
    }
}

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
    let joined = relative
        .components()
        .fold(root.to_path_buf(), |p, c| p.join(c));
    if let Err(reason) = within_path_max(&joined) {
        return refuse(reason);
    }
    // A directory that is not there yet has nothing in it that could lead elsewhere.
    let real_root = match root.canonicalize() {
        Ok(real) => real,
        Err(_) if fs::symlink_metadata(root).is_err() => return Ok(joined),
        Err(e) => return Err(Error::file(root)(e)),
    };
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
    Ok(joined)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ocidl-paths-{name}-{}", std::process::id()));
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
    fn special_and_directory_outputs() {
        assert!(names_directory(Path::new("new/")));
        assert!(names_directory(&std::env::temp_dir()));
        assert!(!names_directory(Path::new("no-such-file")));
        assert!(is_special(Path::new("/dev/null")));
        assert!(!is_special(&std::env::temp_dir()));
        assert!(!is_special(Path::new("no-such-file")));
    }
}
