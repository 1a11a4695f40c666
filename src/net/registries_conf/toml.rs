//! The TOML reader under `registries_conf.rs`: a cursor over the text that knows the whole
//! grammar of TOML 1.0 (and what 1.1 adds) well enough to pass over any value, and decodes the
//! strings, booleans and keys ocidl uses.

use super::{excerpt, Fail, Value};

/// A position in the text, counting lines as it goes.
pub(super) struct Cursor<'a> {
    text: &'a str,
    pub(super) pos: usize,
    /// The line `pos` is on, from 1.
    pub(super) line: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            text,
            pos: 0,
            line: 1,
        }
    }

    pub(super) fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(super) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Takes `s` (no newline in it) if the text goes on with it.
    pub(super) fn eat(&mut self, s: &str) -> bool {
        let found = self.rest().starts_with(s);
        if found {
            self.pos += s.len();
        }
        found
    }

    /// The rest of the line from byte `start`, shortened, for a message.
    pub(super) fn excerpt_from(&self, start: usize) -> String {
        let line = self.text[start..].split(['\n', '\r']).next().unwrap_or("");
        excerpt(line.trim_end())
    }

    /// Spaces and tabs.
    pub(super) fn spaces(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// A newline, `\n` or `\r\n`.
    pub(super) fn newline(&mut self) -> bool {
        match self.eat("\r\n") {
            true => {
                self.line += 1;
                true
            }
            false => self.peek() == Some('\n') && self.bump().is_some(),
        }
    }

    /// A comment up to the end of its line (not the newline).
    pub(super) fn comment(&mut self) -> std::result::Result<(), Fail> {
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
    pub(super) fn blank(&mut self) -> std::result::Result<(), Fail> {
        loop {
            self.spaces();
            self.comment()?;
            if !self.newline() {
                return Ok(());
            }
        }
    }

    /// A key, dotted or not, each part bare (`a-b_1`), `"basic"` or `'literal'`.
    pub(super) fn key(&mut self) -> std::result::Result<Vec<String>, ()> {
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
    pub(super) fn value(&mut self) -> std::result::Result<Value, Fail> {
        match self.peek() {
            Some('[' | '{') => self.pass_over_nested().map(Value::Other),
            _ => self.simple_value(),
        }
    }

    /// A string, a boolean, a number or a date.
    pub(super) fn simple_value(&mut self) -> std::result::Result<Value, Fail> {
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
    pub(super) fn scalar(&mut self) -> std::result::Result<Value, Fail> {
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
    pub(super) fn pass_over_nested(&mut self) -> std::result::Result<&'static str, Fail> {
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
    pub(super) fn basic_string(&mut self) -> std::result::Result<String, Fail> {
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
    pub(super) fn multi_line_basic_string(&mut self) -> std::result::Result<String, Fail> {
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
    pub(super) fn literal_string(&mut self) -> std::result::Result<String, Fail> {
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
    pub(super) fn multi_line_literal_string(&mut self) -> std::result::Result<String, Fail> {
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
    pub(super) fn closing_quotes(
        &mut self,
        quote: char,
    ) -> std::result::Result<Option<usize>, Fail> {
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
    pub(super) fn escape(&mut self) -> std::result::Result<char, Fail> {
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
