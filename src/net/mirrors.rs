//! Where a repository may be fetched from: its mirrors, then the registry itself, as
//! containers-registries.conf(5) v2 says (podman, skopeo, buildah and CRI-O read the same
//! files), and `--mirror`/`OCIDL_MIRROR` for one run.
//!
//! Read: `$CONTAINERS_REGISTRIES_CONF` alone when it is set; else
//! `~/.config/containers/registries.conf` (or `/etc/containers/registries.conf` when that is
//! missing) and then the drop-ins, `*.conf` in `/etc/containers/registries.conf.d/` and then
//! `~/.config/containers/registries.conf.d/`, in name order, a later `[[registry]]` replacing
//! an earlier one with the same prefix. The format itself is `registries_conf.rs`.
//!
//! Each file is read only when it is a regular file, opened without blocking, and up to
//! `MAX_CONF_SIZE` (issue 16: `/dev/zero` grew ocidl to gigabytes, a FIFO hung it). A
//! default file that is missing is no source; the file `$CONTAINERS_REGISTRIES_CONF` names
//! must exist, as in podman, so a typo cannot drop its `blocked = true` silently (`/dev/null`
//! is the usual way to say "none" and reads as empty). `main` reads none when no reference
//! names a registry: an `oci:` pull needs no registries.conf.
//!
//! `insecure = true` means plain HTTP to that location for ocidl (it does not also try TLS
//! without verification). Whatever a source serves is verified against the digests the
//! reference and manifest name, exactly as from the registry, so a mirror cannot change
//! what is installed; and each source gets only its own credentials (`policy.rs`).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::disk::fresh;
use crate::error::{Error, Result};
use crate::net::registries_conf::{self, Entry, PullFrom};
use crate::reference::{Location, Repository};

/// The most of one registries.conf or drop-in that is read: 1 MiB. The commented files
/// distributions ship are a few KiB and a `[[registry]]` with a mirror is about 100 bytes,
/// so this is room for ten thousand entries, read in a millisecond. A file past it is an
/// error naming it, not read in part: what is cut off could be a `blocked = true`.
pub const MAX_CONF_SIZE: u64 = 1 << 20;

/// One place to fetch a repository from, in the order to try them.
#[derive(Clone, Debug)]
pub struct Source {
    pub repository: Repository,
    /// A mirror, whose failure means "try the next source", not "fail".
    pub mirror: bool,
    /// It may say what a tag means. A digest is verified whoever serves it; a tag's answer
    /// from anyone but the registry cannot be, so a mirror answers tags only where the user
    /// said so (`pull-from-mirror`, `--mirror-tags`).
    pub tags: bool,
}

#[derive(Debug, Default)]
pub struct Mirrors {
    entries: Vec<Entry>,
    /// `--mirror` and `OCIDL_MIRROR`: for every reference, before any from the files.
    extra: Vec<Location>,
    /// `--mirror-tags`: the `extra` mirrors may answer tags too; by default they serve only
    /// what a digest names (manifests by digest, blobs), and tags go to the registry.
    extra_tags: bool,
}

impl Mirrors {
    /// Takes the `extra` mirrors (`--mirror`, then `OCIDL_MIRROR`; `http://` in front means
    /// plain HTTP) and reads the registries.conf `files` (see `config_files`: each with
    /// whether it must exist), in order.
    pub fn load(extra: &[String], extra_tags: bool, files: &[(PathBuf, bool)]) -> Result<Mirrors> {
        let mut mirrors = Mirrors {
            extra_tags,
            ..Mirrors::default()
        };
        for text in extra {
            mirrors.extra.push(parse_mirror_flag(text)?);
        }
        for (path, must_exist) in files {
            let Some(text) = read_conf(path, *must_exist)? else {
                continue;
            };
            for entry in registries_conf::parse(&text, path)? {
                mirrors.entries.retain(|e| e.prefix != entry.prefix);
                mirrors.entries.push(entry);
            }
        }
        Ok(mirrors)
    }

    /// The mirrors one registries.conf text gives (for the fuzz target and tests).
    pub fn from_text(text: &str, path: &Path) -> Result<Mirrors> {
        Ok(Mirrors {
            entries: registries_conf::parse(text, path)?,
            ..Mirrors::default()
        })
    }

    /// Where to fetch `repo` from, in order: `--mirror`s, the matching `[[registry]]`'s
    /// mirrors that take this kind of pull (`by_digest`, as podman's `pull-from-mirror`
    /// decides), then its location (the registry itself unless remapped). Blocked names are
    /// refused.
    pub fn sources(&self, repo: &Repository, by_digest: bool) -> Result<Vec<Source>> {
        let name = repo.name();
        let host = repo.registry().host();
        let entry = self
            .entries
            .iter()
            .filter(|e| matches(&e.prefix, &name, host))
            .max_by_key(|e| e.prefix.len());
        let rest = |prefix: &str| -> String {
            match prefix.strip_prefix("*.") {
                Some(_) => repo.path(),
                None => name[prefix.len()..].trim_start_matches('/').to_string(),
            }
        };
        let mut sources: Vec<Source> = self
            .extra
            .iter()
            .map(|location| Source {
                repository: location.repository(&repo.path()),
                mirror: true,
                tags: self.extra_tags,
            })
            .collect();
        let Some(entry) = entry else {
            sources.push(Source {
                repository: repo.clone(),
                mirror: false,
                tags: true,
            });
            return Ok(sources);
        };
        if entry.blocked {
            return Err(Error::Refused(format!(
                "{name} is blocked by {} (blocked = true)",
                entry.at
            )));
        }
        let rest = rest(&entry.prefix);
        for mirror in &entry.mirrors {
            let wanted = match mirror.pull_from {
                PullFrom::All => true,
                PullFrom::DigestOnly => by_digest,
                PullFrom::TagOnly => !by_digest,
            };
            if wanted {
                sources.push(Source {
                    repository: mirror.location.repository(&rest),
                    mirror: true,
                    tags: mirror.pull_from != PullFrom::DigestOnly,
                });
            }
        }
        sources.push(Source {
            repository: match &entry.location {
                Some(location) => location.repository(&rest),
                None => repo.clone(),
            },
            mirror: false,
            tags: true,
        });
        Ok(sources)
    }
}

/// `--mirror [http://]HOST[:PORT][/PATH]`.
fn parse_mirror_flag(text: &str) -> Result<Location> {
    let (rest, plain) = match text.strip_prefix("http://") {
        Some(rest) => (rest, true),
        None => (text.strip_prefix("https://").unwrap_or(text), false),
    };
    Location::parse(rest, plain)
        .map_err(|e| Error::Usage(format!("--mirror/OCIDL_MIRROR '{text}': {e}")))
}

/// Whether `prefix` (`host`, `host/ns...`, or `*.domain`) takes the repository `name` on
/// `host`: all of it, or up to a `/`.
fn matches(prefix: &str, name: &str, host: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        return host.ends_with(&format!(".{domain}"));
    }
    name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

/// The files to read, in order, each with whether it must exist: `named` alone
/// (`$CONTAINERS_REGISTRIES_CONF`) when given, else the user's (under `home`) or the
/// system's, then the drop-ins.
pub fn config_files(named: Option<PathBuf>, home: Option<PathBuf>) -> Vec<(PathBuf, bool)> {
    if let Some(path) = named {
        return vec![(path, true)];
    }
    let home = home.map(|h| h.join(".config/containers"));
    let system = Path::new("/etc/containers");
    let mut files = Vec::new();
    // The user's file replaces the system's when it is there at all (what it is, `read_conf`
    // judges); a dangling symlink is not there, as for podman's stat.
    let user = home.as_ref().map(|h| h.join("registries.conf"));
    match user.filter(|p| p.exists()) {
        Some(user) => files.push((user, false)),
        None => files.push((system.join("registries.conf"), false)),
    }
    for dir in [Some(system.to_path_buf()), home].into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(dir.join("registries.conf.d")) else {
            continue;
        };
        // Directories are passed over, as podman does; any other `*.conf` is read, so a FIFO
        // or device there is an error naming it rather than a silent gap.
        let mut drop_ins: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf") && !p.is_dir())
            .collect();
        drop_ins.sort();
        files.extend(drop_ins.into_iter().map(|p| (p, false)));
    }
    files
}

/// The text of one file, if it is there: a regular file of at most `MAX_CONF_SIZE` bytes of
/// UTF-8. Missing is `None` unless it `must_exist`; anything else is an error naming it.
fn read_conf(path: &Path, must_exist: bool) -> Result<Option<String>> {
    if path == Path::new("/dev/null") {
        return Ok(Some(String::new()));
    }
    let file = match fresh::open_config(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !must_exist => return Ok(None),
        Err(e) => return Err(Error::file(path)(e)),
    };
    let too_big = || Error::Config {
        path: path.to_path_buf(),
        cause: format!(
            "larger than {MAX_CONF_SIZE} bytes, the most ocidl reads of a registries.conf"
        ),
    };
    if file.metadata().map_err(Error::file(path))?.len() > MAX_CONF_SIZE {
        return Err(too_big());
    }
    // The length was checked, but a file can grow while it is read.
    let mut bytes = Vec::new();
    file.take(MAX_CONF_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::file(path))?;
    if bytes.len() as u64 > MAX_CONF_SIZE {
        return Err(too_big());
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Error::Config {
            path: path.to_path_buf(),
            cause: "not UTF-8 text, as TOML must be".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{Defaults, Reference};

    fn entries(text: &str) -> Vec<Entry> {
        registries_conf::parse(text, Path::new("registries.conf")).unwrap()
    }

    fn repo(input: &str) -> Repository {
        Reference::parse(input, Defaults::default())
            .unwrap()
            .repository()
            .unwrap()
            .clone()
    }

    fn names(mirrors: &Mirrors, input: &str, by_digest: bool) -> Vec<String> {
        mirrors
            .sources(&repo(input), by_digest)
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}{}",
                    s.repository.registry().base_url(),
                    "/".to_owned() + &s.repository.path()
                )
            })
            .collect()
    }

    const EXAMPLE: &str = r#"
# The system's search list: passed over.
unqualified-search-registries = ["docker.io",
  "quay.io"]   # an array over two lines
short-name-mode = "enforcing"

[[registry]]
prefix = "ghcr.io/pkgforge"
location = "internal.example/pkgforge"

[[registry.mirror]]
location = "127.0.0.1:5001/cache"   # a pull-through cache
insecure = true

[[registry.mirror]]
location = 'mirror.example'
pull-from-mirror = "digest-only"

[[registry]]
location = "quay.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "quay-mirror.example"

[[registry]]
prefix = "*.blocked.example"
blocked = true

[aliases]
"tool" = "ghcr.io/pkgforge/tool"
"#;

    #[test]
    fn reads_the_format_and_orders_sources() {
        let m = Mirrors {
            entries: entries(EXAMPLE),
            ..Mirrors::default()
        };
        assert_eq!(
            names(&m, "ghcr.io/pkgforge/bincache/jq:1", false),
            [
                "http://127.0.0.1:5001/cache/bincache/jq",
                "https://internal.example/pkgforge/bincache/jq"
            ]
        );
        assert_eq!(names(&m, "ghcr.io/pkgforge/bincache/jq@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", true).len(), 3);
        // Only a whole path component matches.
        assert_eq!(
            names(&m, "ghcr.io/pkgforgery/x", false),
            ["https://ghcr.io/pkgforgery/x"]
        );
        // mirror-by-digest-only: tags go to the registry alone.
        assert_eq!(names(&m, "quay.io/a/b:1", false), ["https://quay.io/a/b"]);
        assert_eq!(
            names(&m, "quay.io/a/b@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", true),
            ["https://quay-mirror.example/a/b", "https://quay.io/a/b"]
        );
        let blocked = m.sources(&repo("r.blocked.example/x"), false).unwrap_err();
        assert!(
            blocked.to_string().contains("registries.conf:25"),
            "{blocked}"
        );
        assert!(m.sources(&repo("blocked.example/x"), false).is_ok());
    }

    #[test]
    fn extra_mirrors_come_first_for_everything() {
        let m = Mirrors {
            entries: entries(EXAMPLE),
            extra: vec![parse_mirror_flag("http://127.0.0.1:6000").unwrap()],
            extra_tags: false,
        };
        assert_eq!(
            names(&m, "docker.io/debian", false),
            [
                "http://127.0.0.1:6000/library/debian",
                "https://registry-1.docker.io/library/debian"
            ]
        );
        assert!(parse_mirror_flag("not a host!").is_err());
    }
}
