//! The containers-registries.conf(5) v2 format, as much of it as ocidl reads, parsed by
//! hand: lines of `key = value` (strings, booleans, arrays) under `[[registry]]` and
//! `[[registry.mirror]]` headers; other keys and tables (`unqualified-search-registries`,
//! `[aliases]`) are passed over, and what cannot be read is an error naming the file and
//! line. Which sources a reference then gets is `mirrors.rs`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::reference::Location;

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

/// The `[[registry]]` tables of one file, `path` naming it in errors.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Vec<Entry>> {
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

    fn entries(text: &str) -> Vec<Entry> {
        parse(text, Path::new("registries.conf")).unwrap()
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
