//! Where a repository may be fetched from: its mirrors, then the registry itself, as
//! containers-registries.conf(5) v2 says (podman, skopeo, buildah and CRI-O read the same
//! files), and `--mirror`/`OCIDL_MIRROR` for one run.
//!
//! Read: `$CONTAINERS_REGISTRIES_CONF` alone when it is set; else
//! `~/.config/containers/registries.conf` (or `/etc/containers/registries.conf` when that is
//! missing) and then the drop-ins, `*.conf` in `/etc/containers/registries.conf.d/` and then
//! `~/.config/containers/registries.conf.d/`, in name order, a later `[[registry]]` replacing
//! an earlier one with the same prefix. Of the format, what ocidl needs: `[[registry]]`
//! (`prefix`, `location`, `insecure`, `blocked`, `mirror-by-digest-only`) and
//! `[[registry.mirror]]` (`location`, `insecure`, `pull-from-mirror`); other keys and tables
//! (`unqualified-search-registries`, `[aliases]`, ...) are passed over. It is parsed by hand:
//! the TOML this takes is lines of `key = value`, with strings, booleans and arrays.
//!
//! `insecure = true` means plain HTTP to that location for ocidl (it does not also try TLS
//! without verification). Whatever a source serves is verified against the digests the
//! reference and manifest name, exactly as from the registry, so a mirror cannot change
//! what is installed; and each source gets only its own credentials (`policy.rs`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::reference::{Location, Repository};

/// Which pulls may use a mirror (`pull-from-mirror`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullFrom {
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Clone, Debug)]
struct Mirror {
    location: Location,
    pull_from: PullFrom,
}

/// One `[[registry]]` table.
#[derive(Clone, Debug)]
struct Entry {
    prefix: String,
    location: Option<Location>,
    blocked: bool,
    mirrors: Vec<Mirror>,
    /// `file:line` of its header, for messages.
    at: String,
}

/// One place to fetch a repository from, in the order to try them.
#[derive(Clone, Debug)]
pub struct Source {
    pub repository: Repository,
    /// A mirror, whose failure means "try the next source", not "fail".
    pub mirror: bool,
}

#[derive(Debug, Default)]
pub struct Mirrors {
    entries: Vec<Entry>,
    /// `--mirror` and `OCIDL_MIRROR`: for every reference, before any from the files.
    extra: Vec<Location>,
}

impl Mirrors {
    /// Reads the files the environment names, and takes `extra` mirrors (`--mirror`, then
    /// `OCIDL_MIRROR`, comma-separated; `http://` in front means plain HTTP).
    pub fn load(extra: &[String]) -> Result<Mirrors> {
        let mut mirrors = Mirrors::default();
        let from_env = std::env::var("OCIDL_MIRROR").unwrap_or_default();
        let named = extra
            .iter()
            .map(String::as_str)
            .chain(from_env.split(',').map(str::trim))
            .filter(|m| !m.is_empty());
        for text in named {
            mirrors.extra.push(parse_mirror_flag(text)?);
        }
        for path in config_files() {
            let text = std::fs::read_to_string(&path).map_err(Error::file(&path))?;
            for entry in parse(&text, &path)? {
                mirrors.entries.retain(|e| e.prefix != entry.prefix);
                mirrors.entries.push(entry);
            }
        }
        Ok(mirrors)
    }

    /// The mirrors one registries.conf text gives (for the fuzz target and tests).
    pub fn from_text(text: &str, path: &Path) -> Result<Mirrors> {
        Ok(Mirrors {
            entries: parse(text, path)?,
            extra: Vec::new(),
        })
    }

    /// Where to fetch `repo` from, in order: `--mirror`s, the matching `[[registry]]`'s
    /// mirrors that take this kind of pull (`by_digest`), then its location (the registry
    /// itself unless remapped). Blocked names are refused.
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
            })
            .collect();
        let Some(entry) = entry else {
            sources.push(Source {
                repository: repo.clone(),
                mirror: false,
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
                });
            }
        }
        sources.push(Source {
            repository: match &entry.location {
                Some(location) => location.repository(&rest),
                None => repo.clone(),
            },
            mirror: false,
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

/// The files to read, in order.
fn config_files() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(path)];
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config/containers"));
    let system = Path::new("/etc/containers");
    let mut files = Vec::new();
    let user = home.as_ref().map(|h| h.join("registries.conf"));
    match user.filter(|p| p.is_file()) {
        Some(user) => files.push(user),
        None if system.join("registries.conf").is_file() => {
            files.push(system.join("registries.conf"))
        }
        None => {}
    }
    for dir in [Some(system.to_path_buf()), home].into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(dir.join("registries.conf.d")) else {
            continue;
        };
        let mut drop_ins: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
            .collect();
        drop_ins.sort();
        files.extend(drop_ins);
    }
    files
}

/// A value of the TOML subset.
#[derive(Debug, PartialEq)]
enum Value {
    Text(String),
    Bool(bool),
    /// Arrays are read only to be passed over.
    Array,
}

/// Which table the lines belong to.
enum Table {
    Top,
    Registry,
    Mirror,
    /// One ocidl does not use (`[aliases]`, version 1's `[registries.search]`).
    Other,
}

fn parse(text: &str, path: &Path) -> Result<Vec<Entry>> {
    struct Raw {
        prefix: Option<String>,
        location: Option<String>,
        insecure: bool,
        blocked: bool,
        by_digest_only: bool,
        mirrors: Vec<(Option<String>, bool, PullFrom, usize)>,
        line: usize,
    }
    let fail = |line: usize, what: String| Error::Config {
        path: path.to_path_buf(),
        cause: format!("line {line}: {what}"),
    };
    let mut raws: Vec<Raw> = Vec::new();
    let mut table = Table::Top;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, line)) = lines.next() {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            // TOML allows spaces inside the brackets and around the dot: `[[ registry ]]`.
            let header: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            table = match header.as_str() {
                "[[registry]]" => {
                    raws.push(Raw {
                        prefix: None,
                        location: None,
                        insecure: false,
                        blocked: false,
                        by_digest_only: false,
                        mirrors: Vec::new(),
                        line: n,
                    });
                    Table::Registry
                }
                "[[registry.mirror]]" => {
                    let raw = raws.last_mut().ok_or_else(|| {
                        fail(n, "[[registry.mirror]] before any [[registry]]".into())
                    })?;
                    raw.mirrors.push((None, false, PullFrom::All, n));
                    Table::Mirror
                }
                // A table of ours misspelt would otherwise drop a `blocked` silently.
                _ if header.trim_matches(['[', ']']).starts_with("registry") => {
                    return Err(fail(
                        n,
                        format!(
                        "unknown table {line} (ocidl reads [[registry]] and [[registry.mirror]])"
                    ),
                    ))
                }
                _ if header.ends_with(']') => Table::Other,
                _ => return Err(fail(n, format!("unreadable table header {line}"))),
            };
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| fail(n, format!("expected key = value, found {line}")))?;
        let key = key.trim().trim_matches('"');
        let mut value = value.trim().to_string();
        // An array may go on over lines; it is only passed over.
        if value.starts_with('[') {
            while !array_closed(&value) {
                let (_, more) = lines
                    .next()
                    .ok_or_else(|| fail(n, format!("the array of {key} is not closed")))?;
                value.push_str(strip_comment(more));
            }
        }
        let value = parse_value(&value).map_err(|e| fail(n, format!("{key}: {e}")))?;
        let text = |v: &Value| match v {
            Value::Text(t) => Ok(t.clone()),
            _ => Err(fail(n, format!("{key} takes a string"))),
        };
        let flag = |v: &Value| match v {
            Value::Bool(b) => Ok(*b),
            _ => Err(fail(n, format!("{key} takes true or false"))),
        };
        match (&table, raws.last_mut()) {
            (Table::Registry, Some(raw)) => match key {
                "prefix" => raw.prefix = Some(text(&value)?),
                "location" => raw.location = Some(text(&value)?),
                "insecure" => raw.insecure = flag(&value)?,
                "blocked" => raw.blocked = flag(&value)?,
                "mirror-by-digest-only" => raw.by_digest_only = flag(&value)?,
                _ => {}
            },
            (Table::Mirror, Some(raw)) => {
                let Some(mirror) = raw.mirrors.last_mut() else {
                    continue;
                };
                match key {
                    "location" => mirror.0 = Some(text(&value)?),
                    "insecure" => mirror.1 = flag(&value)?,
                    "pull-from-mirror" => {
                        mirror.2 = match text(&value)?.as_str() {
                            "all" | "" => PullFrom::All,
                            "digest-only" => PullFrom::DigestOnly,
                            "tag-only" => PullFrom::TagOnly,
                            other => {
                                return Err(fail(
                                    n,
                                    format!(
                                "pull-from-mirror is all, digest-only or tag-only, not {other:?}"
                            ),
                                ))
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    raws.into_iter()
        .map(|raw| {
            let at = format!("{}:{}", path.display(), raw.line);
            let location = |text: &str, insecure: bool, line: usize| {
                Location::parse(text, insecure)
                    .map_err(|e| fail(line, format!("location {text:?}: {e}")))
            };
            let prefix = match (&raw.prefix, &raw.location) {
                (Some(p), _) => p.trim_end_matches('/').to_string(),
                (None, Some(l)) => l.trim_end_matches('/').to_string(),
                (None, None) => {
                    return Err(fail(
                        raw.line,
                        "[[registry]] without prefix or location".into(),
                    ))
                }
            };
            if prefix.starts_with("*.") && raw.location.is_some() {
                return Err(fail(raw.line, "a wildcard prefix takes no location".into()));
            }
            let own = match &raw.location {
                Some(l) => Some(location(l, raw.insecure, raw.line)?),
                // `insecure` alone still changes how the registry itself is reached.
                None if raw.insecure && !prefix.starts_with("*.") => {
                    Some(location(&prefix, true, raw.line)?)
                }
                None => None,
            };
            let mirrors = raw
                .mirrors
                .iter()
                .map(|(text, insecure, pull_from, line)| {
                    let text = text.as_deref().ok_or_else(|| {
                        fail(*line, "[[registry.mirror]] without location".into())
                    })?;
                    Ok(Mirror {
                        location: location(text, *insecure, *line)?,
                        pull_from: match raw.by_digest_only {
                            true => PullFrom::DigestOnly,
                            false => *pull_from,
                        },
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Entry {
                prefix,
                location: own,
                blocked: raw.blocked,
                mirrors,
                at,
            })
        })
        .collect()
}

/// The line up to a `#` that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => return &line[..i],
            _ => {}
        }
        escaped = false;
    }
    line
}

fn array_closed(value: &str) -> bool {
    let mut depth = 0i32;
    let mut quote = None;
    for c in value.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    depth <= 0
}

fn parse_value(value: &str) -> std::result::Result<Value, String> {
    match value {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if value.starts_with('[') {
        return Ok(Value::Array);
    }
    if let Some(literal) = value.strip_prefix('\'') {
        return literal
            .strip_suffix('\'')
            .filter(|t| !t.contains('\''))
            .map(|t| Value::Text(t.to_string()))
            .ok_or_else(|| "unterminated string".to_string());
    }
    let Some(quoted) = value.strip_prefix('"') else {
        return Err(format!(
            "expected a string, true, false or an array, not {value}"
        ));
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return match chars.as_str().trim() {
                    "" => Ok(Value::Text(out)),
                    extra => Err(format!("unexpected {extra} after the string")),
                }
            }
            '\\' => match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                other => return Err(format!("unsupported escape \\{}", other.unwrap_or(' '))),
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{Defaults, Reference};

    fn entries(text: &str) -> Vec<Entry> {
        parse(text, Path::new("registries.conf")).unwrap()
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
            extra: Vec::new(),
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

    #[test]
    fn errors_name_the_line() {
        for (text, line, says) in [
            ("[[registry.mirror]]\nlocation = \"a.io\"", 1, "before any"),
            ("[[registry]]\nprefix = \"a.io\"\nblocked = \"yes\"", 3, "true or false"),
            ("[[registry]]\nprefix = a.io", 2, "expected a string"),
            ("[[registry]]\nprefix = \"a.io", 2, "unterminated"),
            ("[[registry]]\nlocation = \"Not Valid\"", 1, "location"),
            ("[[registry]]\ninsecure = true", 1, "without prefix or location"),
            ("[[registry]]\nprefix = \"a.io\"\n[[registry.mirror]]\ninsecure = true", 3, "without location"),
            ("[[registry]]\nprefix = \"a.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"some\"", 5, "pull-from-mirror"),
            ("just words", 1, "key = value"),
            ("[broken", 1, "table header"),
            ("[registry]\nprefix = \"a.io\"", 1, "unknown table"),
            ("[[registry.mirrors]]", 1, "unknown table"),
            ("x = [1,\n2", 1, "not closed"),
        ] {
            match parse(text, Path::new("r.conf")) {
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(&format!("r.conf: line {line}:")), "{text:?}: {e}");
                    assert!(e.contains(says), "{text:?}: {e}");
                }
                Ok(_) => panic!("{text:?} was accepted"),
            }
        }
    }

    #[test]
    fn headers_may_have_spaces() {
        let e = entries("[[ registry ]]\nprefix = \"a.io\"\nblocked = true\n[[ registry . mirror ]]\nlocation = \"m.io\"");
        assert_eq!(e.len(), 1);
        assert!(e[0].blocked);
        assert_eq!(e[0].mirrors.len(), 1);
    }

    #[test]
    fn comments_and_strings() {
        assert_eq!(strip_comment(r#"a = "x#y" # c"#), r#"a = "x#y" "#);
        assert_eq!(strip_comment(r##"a = "q\"#" # c"##), r##"a = "q\"#" "##);
        assert_eq!(parse_value(r#""a\"b""#), Ok(Value::Text("a\"b".into())));
        assert_eq!(parse_value("'lit'"), Ok(Value::Text("lit".into())));
        assert!(parse_value(r#""a" b"#).is_err());
    }
}
