//! HTTP/1.1 answers as they come off one connection (RFC 9112): the status line, the headers,
//! and where each body ends (`Content-Length`, chunked, or the close), so that the answers to
//! pipelined requests can be read one after another. ureq frames the requests it sends
//! itself; this is for `pipeline.rs`, which writes many requests before it reads.
//!
//! A server decides every byte read here, so everything is bounded (the head, each line, the
//! number of headers, a chunk-size line, the trailers, interim answers), and anything that
//! leaves doubt about where a body ends is refused rather than guessed (RFC 9112 section 6.3;
//! request smuggling lives in those doubts): two different `Content-Length` values, one beside
//! `Transfer-Encoding`, a sign, a space or an overflow in a length, a coding other than
//! chunked, a line not ended by CRLF, a folded header. A refused answer ends the connection,
//! and the caller fetches what is left another way.

use std::io::{self, Read};
use std::ops::Range;

/// The longest head (status line and headers) taken: 32 KiB. A registry's or a CDN's is under
/// 2 KiB; ureq, nginx and Go take 8 to 64 KiB.
pub const MAX_HEAD: usize = 32 << 10;
/// The most headers in one head (CDNs send about 30).
pub const MAX_HEADERS: usize = 100;
/// The longest header line, and the longest trailer line (a signed `Location` is about 1 KiB).
pub const MAX_LINE: usize = 8 << 10;
/// The longest chunk-size line: 16 hex digits and a short extension, which nobody sends.
pub const MAX_CHUNK_LINE: usize = 256;
/// The most trailer bytes after a chunked body; trailers are read and dropped.
pub const MAX_TRAILERS: usize = 8 << 10;
/// Interim (1xx) answers skipped before one final answer.
pub const MAX_INTERIM: usize = 8;

/// Where a body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// After this many bytes (`Content-Length`; 0 for 204, 304 and 1xx).
    Fixed(u64),
    /// At the last chunk (`Transfer-Encoding: chunked`).
    Chunked,
    /// When the server closes the connection: nothing can follow such an answer.
    Close,
}

/// A final answer's head: what says where it ends, and the one header the pipeline reads.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub length: Length,
    /// The server closes the connection after this answer (`Connection: close`, HTTP/1.0, or
    /// a body that runs to the close): nothing follows it.
    pub close: bool,
    /// `Location`, when it appears exactly once (two are none), invalid UTF-8 replaced.
    pub location: Option<String>,
}

fn bad(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn cut(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what)
}

/// Parses a head: the status line and the header lines, each ended by CRLF, without the empty
/// line that ends the head. Where the body ends follows RFC 9112 section 6.3.
pub fn parse_head(bytes: &[u8]) -> io::Result<Head> {
    let mut lines = bytes.split(|&b| b == b'\n');
    let mut line = || -> io::Result<Option<&[u8]>> {
        let Some(line) = lines.next() else {
            return Ok(None);
        };
        match line.split_last() {
            Some((b'\r', text)) if !text.contains(&b'\r') => Ok(Some(text)),
            None => Ok(None), // after the last CRLF
            _ => Err(bad("a line of the answer's head is not ended by CRLF")),
        }
    };
    let status_line = line()?.ok_or_else(|| bad("an empty answer head"))?;
    let (http10, code) = match status_line {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor @ (b'0' | b'1'), b' ', code @ ..] => {
            (*minor == b'0', code)
        }
        _ => return Err(bad("not an HTTP/1.x status line")),
    };
    let status = match code {
        [a @ b'1'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', rest @ ..]
            if rest.is_empty() || rest[0] == b' ' =>
        {
            (a - b'0') as u16 * 100 + (b - b'0') as u16 * 10 + (c - b'0') as u16
        }
        _ => return Err(bad("not a status code")),
    };
    let mut content_length = None;
    let (mut transfer_encoding, mut chunked) = (false, false);
    let mut close = http10;
    let mut locations = Vec::new();
    let mut count = 0;
    while let Some(line) = line()? {
        count += 1;
        if count > MAX_HEADERS {
            return Err(bad("more than 100 headers"));
        }
        if line.len() > MAX_LINE {
            return Err(bad("a header line longer than 8 KiB"));
        }
        let colon = line.iter().position(|&b| b == b':');
        let (name, value) = match colon {
            Some(at) if at > 0 => (&line[..at], trim_blanks(&line[at + 1..])),
            _ => return Err(bad("a header line without a name")),
        };
        // A blank before the colon, or a line folded onto the previous one (it starts with a
        // blank), is refused by RFC 9112 section 5: they are how headers get smuggled.
        if !name.iter().all(|&b| is_tchar(b)) {
            return Err(bad("a header name with a character it may not have"));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(bad("a header value with a control character"));
        }
        let items = value.split(|&b| b == b',').map(trim_blanks);
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted.as_bytes());
        if is("content-length") {
            for item in items {
                let n = digits(item).ok_or_else(|| bad("a Content-Length that is no number"))?;
                if content_length.is_some_and(|known| known != n) {
                    return Err(bad("two different Content-Length values"));
                }
                content_length = Some(n);
            }
        } else if is("transfer-encoding") {
            transfer_encoding = true;
            for coding in items.filter(|c| !c.is_empty()) {
                // Chunked once and last, and nothing else: we ask for no other coding, and a
                // body coded otherwise is not the blob anyway.
                if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(bad("a transfer coding other than chunked"));
                }
                chunked = true;
            }
        } else if is("connection") {
            close |= items.clone().any(|t| t.eq_ignore_ascii_case(b"close"));
        } else if is("location") {
            locations.push(value);
        }
    }
    let length = match (status, transfer_encoding, content_length) {
        (100..=199 | 204 | 304, _, _) => Length::Fixed(0),
        (_, true, Some(_)) => return Err(bad("both Content-Length and Transfer-Encoding")),
        // RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        (_, true, None) if chunked && !http10 => Length::Chunked,
        (_, true, None) => return Err(bad("Transfer-Encoding without chunked")),
        (_, false, Some(n)) => Length::Fixed(n),
        (_, false, None) => {
            close = true;
            Length::Close
        }
    };
    let location = match locations[..] {
        [one] => Some(String::from_utf8_lossy(one).into_owned()),
        _ => None,
    };
    Ok(Head {
        status,
        length,
        close,
        location,
    })
}

/// RFC 9110 section 5.6.2: the characters of a header name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_blanks(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A decimal length: digits only (no sign, no blank), no overflow.
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(digit as u64)
    })
}

/// A chunk-size line: hex digits, then nothing or an extension (`;...`, ignored).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let hex = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    // Blanks may stand before an extension (RFC 9112 section 7.1.1's BWS), not alone.
    let mut ext = &line[hex..];
    while let [b' ' | b'\t', rest @ ..] = ext {
        ext = rest;
    }
    if hex == 0 || !(line.len() == hex || ext.first() == Some(&b';')) {
        return Err(bad("not a chunk size"));
    }
    line[..hex].iter().try_fold(0u64, |size, &b| {
        let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
        size.checked_mul(16)
            .and_then(|s| s.checked_add(digit))
            .ok_or_else(|| bad("a chunk size that overflows"))
    })
}

/// Where the reader is in the stream of answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between answers: a head comes next.
    Idle,
    /// In a body with this many bytes left.
    Fixed(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// In a chunk with this many bytes left.
    Chunk(u64),
    /// Before the CRLF that ends a chunk's data.
    ChunkEnd,
    /// After the last chunk, this many trailer bytes read.
    Trailers(usize),
    /// In a body that runs to the close.
    Close,
    /// The connection is over: nothing more may be read from it.
    Done,
}

/// Answers read one after another from a connection.
pub struct Reader<R> {
    inner: R,
    /// Bytes read and not yet used, `buf[pos..end]`; one head fits whole.
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    state: State,
    /// The answer being read says nothing follows it.
    last: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Reader<R> {
        Reader {
            inner,
            buf: vec![0; MAX_HEAD].into_boxed_slice(),
            pos: 0,
            end: 0,
            state: State::Idle,
            last: false,
        }
    }

    /// The connection, to write requests on.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The next final answer's head, skipping interim (1xx) ones; `None` when the server
    /// closed the connection between answers, or the last answer said it would. The body of
    /// the previous answer must have been read to its end.
    pub fn head(&mut self) -> io::Result<Option<Head>> {
        for _ in 0..=MAX_INTERIM {
            match self.state {
                State::Idle => {}
                State::Done => return Ok(None),
                _ => {
                    return Err(io::Error::other(
                        "the previous body was not read to its end",
                    ))
                }
            }
            let mut scanned = 0;
            let len = loop {
                let unread = &self.buf[self.pos + scanned..self.end];
                if let Some(at) = unread.windows(4).position(|w| w == b"\r\n\r\n") {
                    break scanned + at + 4;
                }
                // The terminator may straddle what is read next.
                scanned = (self.end - self.pos).saturating_sub(3);
                if self.end - self.pos >= MAX_HEAD {
                    return Err(bad("an answer head larger than 32 KiB"));
                }
                if self.fill()? == 0 {
                    if self.pos == self.end {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    return Err(cut("the connection closed in the middle of an answer head"));
                }
            };
            let head = parse_head(&self.buf[self.pos..self.pos + len - 2])?;
            self.pos += len;
            match head.status {
                101 => return Err(bad("101 Switching Protocols to a GET")),
                100..=199 => continue,
                _ => {}
            }
            self.last = head.close;
            self.state = match head.length {
                Length::Fixed(0) => self.after_body(),
                Length::Fixed(n) => State::Fixed(n),
                Length::Chunked => State::ChunkSize,
                Length::Close => State::Close,
            };
            return Ok(Some(head));
        }
        Err(bad("more than 8 interim answers"))
    }

    /// Reads the current answer's body; `Ok(0)` at its end (and for an empty `out`). A
    /// connection that closes before the end is an error.
    pub fn read_body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Idle | State::Done => return Ok(0),
                State::Fixed(left) | State::Chunk(left) => {
                    let n = self.data(out, left)?;
                    if n == 0 {
                        return Err(cut("the connection closed in the middle of a body"));
                    }
                    let left = left - n as u64;
                    self.state = match (self.state, left) {
                        (State::Fixed(_), 0) => self.after_body(),
                        (State::Fixed(_), _) => State::Fixed(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::Chunk(left),
                    };
                    return Ok(n);
                }
                State::Close => {
                    let n = self.data(out, u64::MAX)?;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    return Ok(n);
                }
                State::ChunkEnd => match self.line(MAX_CHUNK_LINE) {
                    Ok(line) if line.is_empty() => self.state = State::ChunkSize,
                    Err(e) if e.kind() != io::ErrorKind::InvalidData => return Err(e),
                    _ => return Err(bad("chunk data not followed by CRLF")),
                },
                State::ChunkSize => {
                    let line = self.line(MAX_CHUNK_LINE)?;
                    self.state = match chunk_size(&self.buf[line])? {
                        0 => State::Trailers(0),
                        n => State::Chunk(n),
                    };
                }
                State::Trailers(read) => {
                    let line = self.line(MAX_LINE)?;
                    let read = read + line.len() + 2;
                    self.state = match line.is_empty() {
                        true => self.after_body(),
                        false if read > MAX_TRAILERS => {
                            return Err(bad("trailers larger than 8 KiB"))
                        }
                        false => State::Trailers(read),
                    };
                }
            }
        }
    }

    /// Reads and drops at most `limit` bytes of the current body: `Ok(true)` when it ended
    /// within them, so the next answer can be read.
    pub fn skip_body(&mut self, mut limit: u64) -> io::Result<bool> {
        let mut scratch = [0; 4096];
        while !self.at_boundary() {
            if limit == 0 {
                return Ok(false);
            }
            let take = scratch.len().min(limit.try_into().unwrap_or(usize::MAX));
            limit -= self.read_body(&mut scratch[..take])? as u64;
        }
        Ok(true)
    }

    /// Whether the connection is over: the server closed it, or said it would after the
    /// answer just read.
    pub fn closed(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the current body has been read to its end.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Idle | State::Done)
    }

    fn after_body(&self) -> State {
        match self.last {
            true => State::Done,
            false => State::Idle,
        }
    }

    /// Up to `limit` body bytes into `out`: what is buffered first, else straight from the
    /// connection, never past `limit` (the next answer's bytes stay unread).
    fn data(&mut self, out: &mut [u8], limit: u64) -> io::Result<usize> {
        let want = out.len().min(limit.try_into().unwrap_or(usize::MAX));
        if self.pos < self.end {
            let n = want.min(self.end - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        read(&mut self.inner, &mut out[..want])
    }

    /// The next line, at most `max` bytes and without its CRLF, as a range of `buf`.
    fn line(&mut self, max: usize) -> io::Result<Range<usize>> {
        let mut scanned = 0;
        loop {
            let unread = &self.buf[self.pos + scanned..self.end];
            if let Some(at) = unread.iter().position(|&b| b == b'\n') {
                let newline = self.pos + scanned + at;
                if newline == self.pos || self.buf[newline - 1] != b'\r' {
                    return Err(bad("a line of a chunked body is not ended by CRLF"));
                }
                let line = self.pos..newline - 1;
                if line.len() > max {
                    return Err(bad("a line of a chunked body is too long"));
                }
                self.pos = newline + 1;
                return Ok(line);
            }
            scanned = self.end - self.pos;
            if scanned > max + 1 {
                return Err(bad("a line of a chunked body is too long"));
            }
            if self.fill()? == 0 {
                return Err(cut("the connection closed in the middle of a chunked body"));
            }
        }
    }

    /// Reads more into `buf`, moving what is unread to its start when the end is reached.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.end {
            (self.pos, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.pos..self.end, 0);
            (self.pos, self.end) = (0, self.end - self.pos);
        }
        let n = read(&mut self.inner, &mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

fn read(inner: &mut impl Read, out: &mut [u8]) -> io::Result<usize> {
    loop {
        match inner.read(out) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests;
