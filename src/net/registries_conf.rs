//! The containers-registries.conf(5) v2 format, parsed by hand: a TOML reader that knows the
//! whole grammar of TOML 1.0 well enough to pass over any of it, and decodes only what ocidl
//! uses. Which sources a reference then gets is `mirrors.rs`.
//!
//! Read: `[[registry]]` tables (`prefix`, `location`, `insecure`, `blocked`,
//! `mirror-by-digest-only`) and `[[registry.mirror]]` tables (`location`, `insecure`,
//! `pull-from-mirror`). Their strings may be any TOML string (`"..."` with every escape,
//! `'...'`, `"""..."""`, `'''...'''`), checked strictly: the wrong type, a key set twice, or a
//! misspelt table of ours is an error naming the file and line, since silently dropping a
//! `blocked = true` would let through what the user refused.
//!
//! Passed over, wherever they stand (issue 16): every other key and table
//! (`unqualified-search-registries`, `[aliases]`, `[[anything.else]]`), with any value TOML
//! has: numbers (`num_locks = 2048`, `0x1F`, `1e3`, `inf`), dates and times
//! (`1979-05-27 07:32:00Z`), arrays over many lines (holding strings with `]` or `#`, and
//! comments), inline tables `{ a = 1 }`, dotted and quoted keys. What TOML 1.1 adds (`\e`,
//! `\xHH`, inline tables over lines) is taken too. Arrays and inline tables are passed over
//! with a stack, not recursion, so no depth of nesting can exhaust ours.
//!
//! Refused, as podman would read them differently: `registry` or `registries` written other
//! than as ocidl's two table headers (`registry = [{ ... }]`, version 1's `[registries.block]`),
//! and `mirror` as a key inside `[[registry]]`. Malformed TOML (an unterminated string, an
//! unknown escape, an array never closed) is an error naming its line.

use std::path::Path;

use crate::error::{Error, Result};
use crate::reference::Location;

mod toml;

use toml::Cursor;

/// Which pulls may use a mirror (`pull-from-mirror`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullFrom {
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Clone, Debug)]
pub(crate) struct Mirror {
    pub location: Location,
    pub pull_from: PullFrom,
}

/// One `[[registry]]` table.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub prefix: String,
    pub location: Option<Location>,
    pub blocked: bool,
    pub mirrors: Vec<Mirror>,
    /// `file:line` of its header, for messages.
    pub at: String,
}

/// A value as ocidl sees it.
#[derive(Debug, PartialEq)]
enum Value {
    Text(String),
    Bool(bool),
    /// Valid TOML that ocidl does not read (a number, a date, an array, an inline table),
    /// named for messages.
    Other(&'static str),
}

/// Which table the lines belong to.
enum Table {
    Top,
    Registry,
    Mirror,
    /// One ocidl does not use (`[aliases]`, podman's other tables).
    Other,
}

/// A failure: the line it is on, and what is wrong.
type Fail = (usize, String);

/// One `[[registry]]` as written; `None` is a key not given.
#[derive(Default)]
struct RawRegistry {
    prefix: Option<String>,
    location: Option<String>,
    insecure: Option<bool>,
    blocked: Option<bool>,
    by_digest_only: Option<bool>,
    mirrors: Vec<RawMirror>,
    line: usize,
}

#[derive(Default)]
struct RawMirror {
    location: Option<String>,
    insecure: Option<bool>,
    pull_from: Option<PullFrom>,
    line: usize,
}

/// The `[[registry]]` tables of one file, `path` naming it in errors.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Vec<Entry>> {
    let fail = |(line, what): Fail| Error::Config {
        path: path.to_path_buf(),
        cause: format!("line {line}: {what}"),
    };
    let raws = read_tables(text).map_err(fail)?;
    raws.into_iter()
        .map(|raw| entry(raw, path).map_err(fail))
        .collect()
}

/// Walks the whole text as TOML, keeping the keys of ocidl's two tables.
fn read_tables(text: &str) -> std::result::Result<Vec<RawRegistry>, Fail> {
    let mut raws: Vec<RawRegistry> = Vec::new();
    let mut table = Table::Top;
    // A byte order mark is not TOML, but editors on some systems write one.
    let mut c = Cursor::new(text.strip_prefix('\u{feff}').unwrap_or(text));
    loop {
        c.spaces();
        let line = c.line;
        match c.peek() {
            None => break,
            Some('#' | '\n' | '\r') => {}
            Some('[') => table = header(&mut c, &mut raws)?,
            Some(_) => {
                let start = c.pos;
                let key = c
                    .key()
                    .and_then(|key| {
                        c.spaces();
                        c.eat("=").then_some(key).ok_or(())
                    })
                    .map_err(|()| {
                        (
                            line,
                            format!("expected key = value, found {}", c.excerpt_from(start)),
                        )
                    })?;
                c.spaces();
                let name = key.join(".");
                let value = c.value().map_err(|(l, e)| (l, format!("{name}: {e}")))?;
                keep(&table, &mut raws, &key, value).map_err(|e| (line, e))?;
            }
        }
        c.spaces();
        c.comment()?;
        if c.peek().is_some() && !c.newline() {
            return Err((c.line, format!("unexpected {}", c.excerpt_from(c.pos))));
        }
    }
    Ok(raws)
}

/// A table header, the cursor on its `[`: which table the keys below belong to.
fn header(c: &mut Cursor, raws: &mut Vec<RawRegistry>) -> std::result::Result<Table, Fail> {
    let (line, start) = (c.line, c.pos);
    c.bump();
    let array = c.eat("[");
    let key = c.key().ok().filter(|_| {
        c.spaces();
        c.eat("]") && (!array || c.eat("]"))
    });
    let shown = || c.excerpt_from(start);
    let Some(key) = key else {
        return Err((line, format!("unreadable table header {}", shown())));
    };
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    Ok(match (array, key.as_slice()) {
        (true, ["registry"]) => {
            raws.push(RawRegistry {
                line,
                ..RawRegistry::default()
            });
            Table::Registry
        }
        (true, ["registry", "mirror"]) => {
            let raw = raws
                .last_mut()
                .ok_or_else(|| (line, "[[registry.mirror]] before any [[registry]]".into()))?;
            raw.mirrors.push(RawMirror {
                line,
                ..RawMirror::default()
            });
            Table::Mirror
        }
        // A table of ours misspelt would otherwise drop a `blocked` silently.
        (_, ["registry", ..]) => {
            return Err((
                line,
                format!(
                    "unknown table {} (ocidl reads [[registry]] and [[registry.mirror]])",
                    shown()
                ),
            ))
        }
        // Version 1 (`[registries.block]`): podman still honours it, so ignoring it could
        // pull what the file blocks.
        (_, ["registries", ..]) => {
            return Err((
                line,
                format!(
                    "{} is version 1 of the format, which ocidl does not read: write [[registry]] tables",
                    shown()
                ),
            ))
        }
        _ => Table::Other,
    })
}

/// Records `key = value` where ocidl uses it, checking its type; passes over the rest.
fn keep(
    table: &Table,
    raws: &mut [RawRegistry],
    key: &[String],
    value: Value,
) -> std::result::Result<(), String> {
    let name = key.join(".");
    let first = key[0].as_str();
    let dotted = key.len() > 1;
    let plain_only = || format!("{name}: ocidl reads {first} only as a plain key");
    match (table, raws.last_mut()) {
        (Table::Top, _) if first == "registry" || first == "registries" => Err(format!(
            "{name}: ocidl reads registries only from [[registry]] tables"
        )),
        (Table::Registry, Some(raw)) => match first {
            "mirror" => Err(format!(
                "{name}: ocidl reads mirrors only from [[registry.mirror]] tables"
            )),
            "prefix" | "location" | "insecure" | "blocked" | "mirror-by-digest-only" if dotted => {
                Err(plain_only())
            }
            "prefix" => set(&mut raw.prefix, text(first, value)?, first),
            "location" => set(&mut raw.location, text(first, value)?, first),
            "insecure" => set(&mut raw.insecure, flag(first, value)?, first),
            "blocked" => set(&mut raw.blocked, flag(first, value)?, first),
            "mirror-by-digest-only" => set(&mut raw.by_digest_only, flag(first, value)?, first),
            _ => Ok(()),
        },
        (Table::Mirror, Some(raw)) => {
            let Some(mirror) = raw.mirrors.last_mut() else {
                return Ok(());
            };
            match first {
                "location" | "insecure" | "pull-from-mirror" if dotted => Err(plain_only()),
                "location" => set(&mut mirror.location, text(first, value)?, first),
                "insecure" => set(&mut mirror.insecure, flag(first, value)?, first),
                "pull-from-mirror" => {
                    let pull_from = match text(first, value)?.as_str() {
                        "all" | "" => PullFrom::All,
                        "digest-only" => PullFrom::DigestOnly,
                        "tag-only" => PullFrom::TagOnly,
                        other => {
                            return Err(format!(
                                "pull-from-mirror is all, digest-only or tag-only, not {:?}",
                                excerpt(other)
                            ))
                        }
                    };
                    set(&mut mirror.pull_from, pull_from, first)
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// TOML forbids defining a key twice; which one podman would take is not worth guessing.
fn set<T>(slot: &mut Option<T>, value: T, key: &str) -> std::result::Result<(), String> {
    match slot {
        Some(_) => Err(format!("{key} is set twice in one table")),
        None => {
            *slot = Some(value);
            Ok(())
        }
    }
}

fn text(key: &str, value: Value) -> std::result::Result<String, String> {
    match value {
        Value::Text(t) => Ok(t),
        Value::Bool(_) => Err(format!("{key} takes a string, not true or false")),
        Value::Other(what) => Err(format!("{key} takes a string, not {what}")),
    }
}

fn flag(key: &str, value: Value) -> std::result::Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(b),
        Value::Text(_) => Err(format!("{key} takes true or false, not a string")),
        Value::Other(what) => Err(format!("{key} takes true or false, not {what}")),
    }
}

/// One `[[registry]]` as ocidl uses it, its locations checked.
fn entry(raw: RawRegistry, path: &Path) -> std::result::Result<Entry, Fail> {
    let at = format!("{}:{}", path.display(), raw.line);
    let location = |text: &str, insecure: bool, line: usize| {
        Location::parse(text, insecure)
            .map_err(|e| (line, format!("location {:?}: {e}", excerpt(text))))
    };
    let insecure = raw.insecure.unwrap_or(false);
    let prefix = match (&raw.prefix, &raw.location) {
        (Some(p), _) => p.trim_end_matches('/').to_string(),
        (None, Some(l)) => l.trim_end_matches('/').to_string(),
        (None, None) => {
            return Err((raw.line, "[[registry]] without prefix or location".into()));
        }
    };
    if prefix.starts_with("*.") && raw.location.is_some() {
        return Err((raw.line, "a wildcard prefix takes no location".into()));
    }
    let own = match &raw.location {
        Some(l) => Some(location(l, insecure, raw.line)?),
        // `insecure` alone still changes how the registry itself is reached.
        None if insecure && !prefix.starts_with("*.") => Some(location(&prefix, true, raw.line)?),
        None => None,
    };
    let mirrors = raw
        .mirrors
        .iter()
        .map(|m| {
            let text = m
                .location
                .as_deref()
                .ok_or_else(|| (m.line, "[[registry.mirror]] without location".to_string()))?;
            Ok(Mirror {
                location: location(text, m.insecure.unwrap_or(false), m.line)?,
                pull_from: match raw.by_digest_only {
                    Some(true) => PullFrom::DigestOnly,
                    _ => m.pull_from.unwrap_or(PullFrom::All),
                },
            })
        })
        .collect::<std::result::Result<Vec<_>, Fail>>()?;
    Ok(Entry {
        prefix,
        location: own,
        blocked: raw.blocked.unwrap_or(false),
        mirrors,
        at,
    })
}

/// At most 60 characters of `text`, for a message: a value can be a megabyte long.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests;
