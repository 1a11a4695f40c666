//! Where verified bytes go: a file in the making (a `Partial`: an output's staged file, or a
//! cache entry), or a stream (standard output, or a FIFO or device the user named), which
//! takes bytes once, front to back, and cannot give them back.

use std::io::{self, Write};
use std::path::Path;

use crate::content::digest::Verifier;
use crate::disk::partial::Partial;
use crate::error::{Error, Result};

pub enum Sink<'a> {
    File(&'a mut Partial),
    Stream(Stream<'a>),
}

/// Standard output, or a FIFO or device: written once, front to back.
pub struct Stream<'a> {
    out: &'a mut dyn Write,
    /// "standard output", or the path, for messages.
    name: String,
    stdout: bool,
    /// Bytes the reader has taken.
    pub written: u64,
}

impl<'a> Stream<'a> {
    pub fn stdout(out: &'a mut dyn Write) -> Stream<'a> {
        Stream {
            out,
            name: "standard output".into(),
            stdout: true,
            written: 0,
        }
    }

    pub fn named(out: &'a mut dyn Write, path: &Path) -> Stream<'a> {
        Stream {
            out,
            name: path.display().to_string(),
            stdout: false,
            written: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A write error, as the user should read it: a reader that went away did not get the
    /// blob, on every source alike.
    fn error(&self, cause: io::Error) -> Error {
        match (cause.kind(), self.stdout) {
            (io::ErrorKind::BrokenPipe, _) => Error::ReaderGone {
                to: self.name.clone(),
                written: self.written,
            },
            (_, true) => Error::Stdout(cause),
            (_, false) => Error::File {
                path: self.name.clone().into(),
                cause,
            },
        }
    }
}

impl Sink<'_> {
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Sink::File(partial) => partial
                .write_all(bytes)
                .map_err(|e| Error::file(partial.path())(e)),
            Sink::Stream(stream) => {
                // Counted as the reader takes them, so a closed reader's count is exact.
                let mut rest = bytes;
                while !rest.is_empty() {
                    match stream.out.write(rest) {
                        Ok(0) => return Err(stream.error(io::ErrorKind::WriteZero.into())),
                        Ok(n) => {
                            stream.written += n as u64;
                            rest = &rest[n..];
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(stream.error(e)),
                    }
                }
                Ok(())
            }
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        match self {
            Sink::File(_) => Ok(()),
            Sink::Stream(stream) => stream.out.flush().map_err(|e| stream.error(e)),
        }
    }

    /// Feeds what an earlier run left (a partial file's bytes) to the verifier; their count.
    /// One longer than the blob holds nothing worth hashing and starts afresh.
    pub fn resume(&mut self, verifier: &mut Verifier, size: Option<u64>) -> Result<u64> {
        match self {
            Sink::File(partial) if size.is_some_and(|size| partial.written() > size) => {
                partial.restart()?;
                Ok(0)
            }
            Sink::File(partial) => partial.resume(verifier),
            Sink::Stream(_) => Ok(0),
        }
    }

    /// Forgets what was written; false when that cannot be done (a stream).
    pub fn restart(&mut self) -> Result<bool> {
        match self {
            Sink::File(partial) => partial.restart().map(|()| true),
            Sink::Stream(_) => Ok(false),
        }
    }

    /// The stream's name and the bytes it took, when this is a stream that took some.
    pub fn streamed(&self) -> Option<(&str, u64)> {
        match self {
            Sink::Stream(stream) if stream.written > 0 => Some((stream.name(), stream.written)),
            _ => None,
        }
    }
}
