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

/// A position in the text, counting lines as it goes.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    /// The line `pos` is on, from 1.
    line: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            text,
            pos: 0,
            line: 1,
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Takes `s` (no newline in it) if the text goes on with it.
    fn eat(&mut self, s: &str) -> bool {
        let found = self.rest().starts_with(s);
        if found {
            self.pos += s.len();
        }
        found
    }

    /// The rest of the line from byte `start`, shortened, for a message.
    fn excerpt_from(&self, start: usize) -> String {
        let line = self.text[start..].split(['\n', '\r']).next().unwrap_or("");
        excerpt(line.trim_end())
    }

    /// Spaces and tabs.
    fn spaces(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// A newline, `\n` or `\r\n`.
    fn newline(&mut self) -> bool {
        match self.eat("\r\n") {
            true => {
                self.line += 1;
                true
            }
            false => self.peek() == Some('\n') && self.bump().is_some(),
        }
    }

    /// A comment up to the end of its line (not the newline).
    fn comment(&mut self) -> std::result::Result<(), Fail> {
        if self.peek() != Some('#') {
            return Ok(());
        }
        let end = self.rest().find('\n').unwrap_or(self.rest().len());
        let comment = self.rest()[..end]
            .strip_suffix('\r')
            .unwrap_or(&self.rest()[..end]);
        if comment
            .chars()
            .any(|c| c != '\t' && c.is_control() && (c as u32) < 0x80)
        {
            return Err((self.line, "a control character in a comment".into()));
        }
        self.pos += comment.len();
        Ok(())
    }

    /// Spaces, comments and newlines: what may stand between the items of an array.
    fn blank(&mut self) -> std::result::Result<(), Fail> {
        loop {
            self.spaces();
            self.comment()?;
            if !self.newline() {
                return Ok(());
            }
        }
    }

    /// A key, dotted or not, each part bare (`a-b_1`), `"basic"` or `'literal'`.
    fn key(&mut self) -> std::result::Result<Vec<String>, ()> {
        let mut parts = Vec::new();
        loop {
            self.spaces();
            let part = match self.peek() {
                Some('"') if !self.rest().starts_with("\"\"\"") => {
                    self.basic_string().map_err(|_| ())?
                }
                Some('\'') if !self.rest().starts_with("'''") => {
                    self.literal_string().map_err(|_| ())?
                }
                Some(c) if is_bare(c) => {
                    let start = self.pos;
                    while self.peek().is_some_and(is_bare) {
                        self.bump();
                    }
                    self.text[start..self.pos].to_string()
                }
                _ => return Err(()),
            };
            parts.push(part);
            self.spaces();
            if !self.eat(".") {
                return Ok(parts);
            }
        }
    }

    /// Any value, the cursor on its first character.
    fn value(&mut self) -> std::result::Result<Value, Fail> {
        match self.peek() {
            Some('[' | '{') => self.pass_over_nested().map(Value::Other),
            _ => self.simple_value(),
        }
    }

    /// A string, a boolean, a number or a date.
    fn simple_value(&mut self) -> std::result::Result<Value, Fail> {
        let rest = self.rest();
        let text = match self.peek() {
            Some('"') if rest.starts_with("\"\"\"") => self.multi_line_basic_string()?,
            Some('"') => self.basic_string()?,
            Some('\'') if rest.starts_with("'''") => self.multi_line_literal_string()?,
            Some('\'') => self.literal_string()?,
            _ => return self.scalar(),
        };
        Ok(Value::Text(text))
    }

    /// `true`, `false`, or a number or date, which are passed over: a run of the characters
    /// they are made of (digits, signs, `_`, `.`, `:`, letters for hex, exponents, `T`, `Z`,
    /// `inf`, `nan`), and a date's time after a space.
    fn scalar(&mut self) -> std::result::Result<Value, Fail> {
        let token_char =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '.' | ':');
        let start = self.pos;
        while self.peek().is_some_and(token_char) {
            self.bump();
        }
        // `1979-05-27 07:32:00`: TOML allows a space between the date and the time.
        let token = &self.text[start..self.pos];
        let b = self.rest().as_bytes();
        let is_date =
            token.len() == 10 && token.as_bytes()[4] == b'-' && token.as_bytes()[7] == b'-';
        if is_date
            && b.len() >= 4
            && b[0] == b' '
            && b[1..3].iter().all(u8::is_ascii_digit)
            && b[3] == b':'
        {
            self.bump();
            while self.peek().is_some_and(token_char) {
                self.bump();
            }
        }
        let token = &self.text[start..self.pos];
        match token {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "inf" | "nan" => Ok(Value::Other("a number")),
            t if t.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-') => {
                Ok(Value::Other("a number or date"))
            }
            _ => Err((
                self.line,
                format!(
                    "expected a string, true, false, a number, a date, an array or an inline table, not {}",
                    match token {
                        "" => Some(self.excerpt_from(self.pos))
                            .filter(|rest| !rest.is_empty())
                            .unwrap_or_else(|| "nothing".into()),
                        t => excerpt(t),
                    }
                ),
            )),
        }
    }

    /// An array or inline table, the cursor on its `[` or `{`, however deep, checked for
    /// its shape and passed over. A stack of what is open, not recursion.
    fn pass_over_nested(&mut self) -> std::result::Result<&'static str, Fail> {
        /// One open `[` or `{`: what closes it, the line it opened on, and whether an item
        /// (a value, or in a table `key = value`) or a comma comes next.
        struct Open {
            close: char,
            line: usize,
            item_next: bool,
        }
        let name = |close: char| match close {
            ']' => "an array",
            _ => "an inline table",
        };
        let open = |c: &mut Cursor, stack: &mut Vec<Open>| {
            let close = match c.bump() {
                Some('[') => ']',
                _ => '}',
            };
            stack.push(Open {
                close,
                line: c.line,
                item_next: true,
            });
        };
        let what = name(if self.peek() == Some('[') { ']' } else { '}' });
        let mut stack = Vec::new();
        open(self, &mut stack);
        while let Some(top) = stack.last_mut() {
            // Newlines and comments may stand in arrays (TOML 1.0) and inline tables (1.1).
            self.blank()?;
            let (close, line) = (top.close, top.line);
            let Some(next) = self.peek() else {
                return Err((line, format!("{} is not closed", name(close))));
            };
            if next == close {
                self.bump();
                stack.pop();
                continue;
            }
            if !top.item_next {
                if next != ',' {
                    return Err((
                        self.line,
                        format!(
                            "expected , or {close} in {}, found {}",
                            name(close),
                            self.excerpt_from(self.pos)
                        ),
                    ));
                }
                self.bump();
                top.item_next = true;
                continue;
            }
            top.item_next = false;
            if close == '}' {
                let start = self.pos;
                let key = self.key().ok().filter(|_| {
                    self.spaces();
                    self.eat("=")
                });
                if key.is_none() {
                    return Err((
                        self.line,
                        format!(
                            "expected key = value in an inline table, found {}",
                            self.excerpt_from(start)
                        ),
                    ));
                }
                self.spaces();
            }
            match self.peek() {
                Some('[' | '{') => open(self, &mut stack),
                _ => {
                    self.simple_value()?;
                }
            }
        }
        Ok(what)
    }

    /// `"..."`, escapes decoded.
    fn basic_string(&mut self) -> std::result::Result<String, Fail> {
        let line = self.line;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err((line, "unterminated string".into())),
                Some('"') => return Ok(out),
                Some('\\') => out.push(self.escape()?),
                Some(c) if forbidden(c) => return Err((self.line, control(c))),
                Some(c) => out.push(c),
            }
        }
    }

    /// `"""..."""`: a newline right after the opening quotes is not part of it, a `\` at
    /// the end of a line takes the line break and the blanks after it, escapes decoded.
    fn multi_line_basic_string(&mut self) -> std::result::Result<String, Fail> {
        let line = self.line;
        self.pos += 3;
        self.newline();
        let mut out = String::new();
        loop {
            if let Some(quotes) = self.closing_quotes('"')? {
                out.extend(std::iter::repeat_n('"', quotes - 3));
                return Ok(out);
            }
            match self.bump() {
                None => return Err((line, "unterminated string".into())),
                Some('\\') => {
                    let after = self.rest().trim_start_matches([' ', '\t']);
                    if after.starts_with('\n') || after.starts_with("\r\n") {
                        loop {
                            self.spaces();
                            if !self.newline() {
                                break;
                            }
                        }
                    } else {
                        out.push(self.escape()?);
                    }
                }
                Some('\r') if self.peek() == Some('\n') => {}
                Some(c) if c != '\n' && forbidden(c) => return Err((self.line, control(c))),
                Some(c) => out.push(c),
            }
        }
    }

    /// `'...'`: no escapes.
    fn literal_string(&mut self) -> std::result::Result<String, Fail> {
        let line = self.line;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err((line, "unterminated string".into())),
                Some('\'') => return Ok(out),
                Some(c) if forbidden(c) => return Err((self.line, control(c))),
                Some(c) => out.push(c),
            }
        }
    }

    /// `'''...'''`: no escapes; a newline right after the opening quotes is not part of it.
    fn multi_line_literal_string(&mut self) -> std::result::Result<String, Fail> {
        let line = self.line;
        self.pos += 3;
        self.newline();
        let mut out = String::new();
        loop {
            if let Some(quotes) = self.closing_quotes('\'')? {
                out.extend(std::iter::repeat_n('\'', quotes - 3));
                return Ok(out);
            }
            match self.bump() {
                None => return Err((line, "unterminated string".into())),
                Some('\r') if self.peek() == Some('\n') => {}
                Some(c) if c != '\n' && forbidden(c) => return Err((self.line, control(c))),
                Some(c) => out.push(c),
            }
        }
    }

    /// At three to five `quote`s (the last three close a multi-line string, one or two
    /// before them belong to it), takes them and says how many. Six or more cannot be
    /// written unescaped.
    fn closing_quotes(&mut self, quote: char) -> std::result::Result<Option<usize>, Fail> {
        let n = self
            .rest()
            .chars()
            .take(6)
            .take_while(|&c| c == quote)
            .count();
        match n {
            0..=2 => Ok(None),
            3..=5 => {
                self.pos += n;
                Ok(Some(n))
            }
            _ => Err((
                self.line,
                "six quotes in a row in a multi-line string".into(),
            )),
        }
    }

    /// What follows a `\` in a basic string: `\b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX`, and
    /// TOML 1.1's `\e` and `\xHH`: a reader that accepts more than podman's costs nothing,
    /// one that accepts less fails every run (issue 16).
    fn escape(&mut self) -> std::result::Result<char, Fail> {
        let line = self.line;
        let c = self.bump();
        let hex = |c: &mut Cursor, escape: char, digits: usize| {
            let code = c
                .rest()
                .get(..digits)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
            let decoded = code
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32);
            match decoded {
                Some(ch) => {
                    c.pos += digits;
                    Ok(ch)
                }
                None => Err((
                    line,
                    format!("\\{escape} takes {digits} hex digits of a Unicode scalar value"),
                )),
            }
        };
        match c {
            Some('b') => Ok('\u{8}'),
            Some('t') => Ok('\t'),
            Some('n') => Ok('\n'),
            Some('f') => Ok('\u{c}'),
            Some('r') => Ok('\r'),
            Some('"') => Ok('"'),
            Some('\\') => Ok('\\'),
            Some('e') => Ok('\u{1b}'),
            Some('x') => hex(self, 'x', 2),
            Some('u') => hex(self, 'u', 4),
            Some('U') => hex(self, 'U', 8),
            Some(c) if !c.is_control() => Err((line, format!("unknown escape \\{c}"))),
            _ => Err((line, "unknown escape \\".into())),
        }
    }
}

fn is_bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The control characters TOML allows in no string: all but tab (and newlines, in
/// multi-line strings, which their readers let through).
fn forbidden(c: char) -> bool {
    (c < ' ' && c != '\t') || c == '\u{7f}'
}

fn control(c: char) -> String {
    format!("a control character (U+{:04X}) in a string", c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<Entry> {
        parse(text, Path::new("registries.conf")).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// The one string value `key = ...` decodes to.
    fn string(value: &str) -> std::result::Result<String, Fail> {
        let mut c = Cursor::new(value);
        match c.value()? {
            Value::Text(t) if c.rest().is_empty() => Ok(t),
            other => panic!("{value:?}: {other:?}, left {:?}", c.rest()),
        }
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

    /// Every kind of TOML value, as a line `x = VALUE` (with what follows on later lines).
    const VALUES: &[&str] = &[
        // Integers (issue 16: `num_locks = 2048`).
        "2048",
        "+99",
        "-17",
        "0",
        "1_000",
        "0xDEADBEEF",
        "0xdead_beef",
        "0o755",
        "0b1101",
        // Floats.
        "3.1415",
        "-0.01",
        "5e+22",
        "1e06",
        "-2E-2",
        "6.626e-34",
        "224_617.445_991",
        "inf",
        "+inf",
        "-inf",
        "nan",
        "+nan",
        // Dates and times.
        "1979-05-27T07:32:00Z",
        "1979-05-27T00:32:00.999999-07:00",
        "1979-05-27 07:32:00Z",
        "1979-05-27T07:32:00",
        "1979-05-27",
        "07:32:00",
        "00:32:00.999999",
        // Booleans.
        "true",
        "false",
        // Basic strings and their escapes (issue 16: `\u0078`).
        r#""\u0078""#,
        r#""\U0001F600 \b\t\n\f\r\" \\""#,
        r#""a # not a comment, ] not a close""#,
        // Literal strings.
        r"'C:\Users\nodejs\templates'",
        r"'<\i\c*\s*>'",
        // Multi-line basic strings (issue 16: `"""`).
        "\"\"\"\nRoses are red\nViolets are blue\"\"\"",
        "\"\"\"\\\n  The quick brown \\\n\n  fox.\\\n  \"\"\"",
        "\"\"\"Here are two quotation marks: \"\". Simple enough.\"\"\"",
        "\"\"\"Here are fifteen: \"\"\\\"\"\"\\\"\"\"\\\"\"\"\\\"\"\"\\\".\"\"\"",
        "\"\"\"\"This,\" she said, \"is just a pointless statement.\"\"\"\"",
        "\"\"\"\n[[registry]]\nprefix = \"evil.io\"\nblocked = true\n\"\"\"",
        // Multi-line literal strings.
        "'''\nThe first newline is\ntrimmed in raw strings.\n   # and this is no comment\n'''",
        "''''That,' she said, 'is still pointless.''''",
        "'''I [dw]on't need \\d{2} apples'''",
        // Arrays: nested, mixed, over lines, with comments and trailing commas, holding
        // strings with `]`, `#` and `"`.
        "[ 1, 2, 3 ]",
        "[]",
        "[ [ 1, 2 ], [\"a\", 'b', \"\"\"c]\"\"\"], [[[]]] ]",
        "[\n  \"docker.io\", # a comment, with ] and \"\n  'quay.io]',\n  \"#\",\n]",
        "[ 0.1, 0.2, 1979-05-27, { x = 1 }, ]",
        "[\n\n]",
        // Inline tables, nested, with dotted and quoted keys.
        "{ first = \"Tom\", last = \"Preston-Werner\" }",
        "{}",
        "{ x = 1, y = { z = [ 1, { w = \"}\" } ] } }",
        "{ type.name = \"pug\", \"quoted key\" = 'v', 'lit' = 1 }",
        "{\n  a = 1, # TOML 1.1 allows lines here\n  b = 2,\n}",
    ];

    #[test]
    fn every_toml_value_is_passed_over_in_any_table() {
        for value in VALUES {
            for (before, after) in [
                // The top, before any table.
                ("", ""),
                // A table ocidl ignores, and an array of tables it ignores.
                ("[engine]\n", ""),
                ("[[engine.helper]]\n", ""),
                // ocidl's own tables, as a key it does not use.
                ("[[registry]]\nprefix = \"a.io\"\n", "blocked = true\n"),
                (
                    "[[registry]]\nprefix = \"a.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\n",
                    "insecure = true\n",
                ),
            ] {
                for key in [
                    "x",
                    "num_locks",
                    "a.b.c",
                    "\"quoted key\"",
                    "'lit'.bare",
                    "x . \"y\"",
                ] {
                    let text = format!("{before}{key} = {value}   # trailing comment\n{after}");
                    let e = entries(&text);
                    if before.starts_with("[[registry]]") {
                        assert_eq!(e.len(), 1, "{text}");
                        assert_eq!(e[0].prefix, "a.io");
                        if before.contains("mirror") {
                            assert_eq!(e[0].mirrors.len(), 1, "{text}");
                            assert_eq!(e[0].mirrors[0].location.to_string(), "http://m.io");
                        } else {
                            assert!(e[0].blocked, "{text}");
                        }
                    } else {
                        assert!(e.is_empty(), "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn strings_are_decoded_where_ocidl_uses_them() {
        for (written, decoded) in [
            (r#""127.0.0.1:5000""#, "127.0.0.1:5000"),
            (r#""e\u0078ample.io""#, "example.io"),
            (r#""e\U00000078ample.io""#, "example.io"),
            (r#""ex\u0061mple.io/a\\b""#, "example.io/a\\b"),
            ("\"x\\t\\\"y\\\"\"", "x\t\"y\""),
            ("'example.io/\\u0078'", "example.io/\\u0078"),
            ("\"\"\"example.io\"\"\"", "example.io"),
            ("\"\"\"\nexample.io\"\"\"", "example.io"),
            ("\"\"\"\r\nexample.io\"\"\"", "example.io"),
            ("\"\"\"exam\\\n    ple.io\"\"\"", "example.io"),
            ("\"\"\"exam\\   \r\n\n  ple.io\"\"\"", "example.io"),
            ("'''\nexample.io'''", "example.io"),
            ("'''a\\u0078'''", "a\\u0078"),
            ("\"\"\"a\"\"\"\"", "a\""),
            ("'''a'''''", "a''"),
            ("\"\"\"a\nb\"\"\"", "a\nb"),
            ("\"\"\"a\r\nb\"\"\"", "a\nb"),
            ("'''a\r\nb'''", "a\nb"),
            ("\"snow \u{2603}\"", "snow \u{2603}"),
            // TOML 1.1.
            (r#""\x41\e""#, "A\u{1b}"),
        ] {
            assert_eq!(string(written), Ok(decoded.to_string()), "{written}");
        }
        // In the keys ocidl reads, from every form.
        let e = entries(concat!(
            "[[registry]]\n",
            "prefix = \"\"\"\n",
            "ghcr.io/pkgforg\\u0065\"\"\"\n",
            "location = '''internal.example/'''\n",
            "[[registry.mirror]]\n",
            "\"location\" = \"127.0.0.1:5000/c\\u0061che\"\n",
            "'insecure' = true\n",
            "\"pull-from\\u002dmirror\" = \"digest-only\"\n",
        ));
        assert_eq!(e[0].prefix, "ghcr.io/pkgforge");
        assert_eq!(
            e[0].location.as_ref().unwrap().to_string(),
            "internal.example"
        );
        assert_eq!(
            e[0].mirrors[0].location.to_string(),
            "http://127.0.0.1:5000/cache"
        );
        assert_eq!(e[0].mirrors[0].pull_from, PullFrom::DigestOnly);
    }

    #[test]
    fn malformed_strings_and_values_are_errors() {
        for (value, says) in [
            (r#""\q""#, "unknown escape \\q"),
            (r#""\x4""#, "2 hex digits"),
            (r#""\u00""#, "4 hex digits"),
            (r#""\u+041""#, "4 hex digits"),
            (r#""\uD800""#, "4 hex digits"),
            (r#""\U00110000""#, "8 hex digits"),
            ("\"a\u{1}b\"", "control character"),
            ("\"\"\"a", "unterminated"),
            ("'''a''", "unterminated"),
            ("'a", "unterminated"),
            ("\"a\nb\"", "unterminated"),
            ("maybe", "expected a string, true, false"),
            ("", "or an inline table, not nothing"),
            ("[1 2]", "expected , or ]"),
            ("[1,,2]", "expected a string"),
            ("[1}", "expected , or ]"),
            ("{ a }", "key = value in an inline table"),
            ("{ a = 1 b = 2 }", "expected , or }"),
            ("[[[[[[[[", "not closed"),
        ] {
            let mut c = Cursor::new(value);
            match c.value() {
                Err((_, e)) => assert!(e.contains(says), "{value:?}: {e}"),
                Ok(v) => panic!("{value:?} gave {v:?}"),
            }
        }
        for (text, line, says) in [
            ("x = 1 2", 1, "unexpected 2"),
            ("x = \"a\" \"b\"", 1, "unexpected \"b\""),
            ("a\n\nx = \"\"\"\nlong\n", 1, "key = value"),
            ("x = 1\ny = \"\"\"\nlong\n", 2, "unterminated"),
            ("x = [\n1,\n2\n\"a\"]", 4, "expected , or ]"),
            ("x = 1 # a \u{1b} in a comment", 1, "control character"),
            ("x = 1\r", 1, "unexpected"),
            (
                "[[registry]]\nprefix = \"a.io\"\nprefix = \"b.io\"",
                3,
                "set twice",
            ),
            (
                "[[registry]]\nprefix = \"a.io\"\nlocation.host = \"b.io\"",
                3,
                "only as a plain key",
            ),
            (
                "[[registry]]\nprefix = \"a.io\"\nmirror = [{ location = \"m.io\" }]",
                3,
                "[[registry.mirror]] tables",
            ),
            (
                "[[registry]]\nprefix = \"a.io\"\nblocked = 1",
                3,
                "true or false, not a number",
            ),
            (
                "[[registry]]\nprefix = [\"a.io\"]",
                2,
                "takes a string, not an array",
            ),
            (
                "[[registry]]\nprefix = { host = \"a.io\" }",
                2,
                "not an inline table",
            ),
            (
                "registry = [{ prefix = \"a.io\", blocked = true }]",
                1,
                "[[registry]] tables",
            ),
            ("registry.prefix = \"a.io\"", 1, "[[registry]] tables"),
            (
                "[registries.block]\nregistries = [\"a.io\"]",
                1,
                "version 1",
            ),
            ("[\"registry\"]", 1, "unknown table"),
            ("[ [registry]]", 1, "table header"),
            ("[[registry] ]", 1, "table header"),
            ("x = 1\n[a\nb]", 2, "table header"),
        ] {
            match parse(text, Path::new("r.conf")) {
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(&format!("r.conf: line {line}:")),
                        "{text:?}: {e}"
                    );
                    assert!(e.contains(says), "{text:?}: {e}");
                }
                Ok(_) => panic!("{text:?} was accepted"),
            }
        }
    }

    #[test]
    fn deep_nesting_is_passed_over_without_recursion() {
        let deep = format!("x = {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
        assert!(entries(&deep).is_empty());
        let deep = format!("x = {}1{}\n", "{a=".repeat(100_000), "}".repeat(100_000));
        assert!(entries(&deep).is_empty());
    }

    #[test]
    fn what_looks_like_our_tables_inside_values_is_not_read() {
        let e = entries(concat!(
            "note = \"\"\"\n[[registry]]\nprefix = \"x.io\"\nblocked = true\n\"\"\"\n",
            "list = [\n  \"]\", # ]\n  '''\n[[registry]]\n''',\n]\n",
            "[[registry]]\nprefix = \"a.io\" # [[registry]]\n",
        ));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].prefix, "a.io");
        assert!(!e[0].blocked);
    }

    #[test]
    fn crlf_and_a_byte_order_mark_are_read() {
        let e = entries("\u{feff}# c\r\n[[registry]]\r\nprefix = \"a.io\"\r\nblocked = true\r\nx = [\r\n 1,\r\n]\r\n");
        assert!(e[0].blocked);
    }
}
