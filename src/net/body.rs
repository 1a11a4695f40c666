//! An answer and the bounds on reading it: every body is read through `Paced`, which fails
//! a transfer slower than the speed limit, and whole bodies are read only up to a size.
//! A stall is cut by `--timeout` (ureq's per-read timeout); a trickle that is never idle for
//! that long is cut here.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::{Body, BodyReader};

use crate::error::{Error, Result};
use crate::net::policy::Origin;

/// A body slower than `speed_limit` bytes a second over `speed_time` fails (and is retried
/// and resumed), as curl's `--speed-limit`/`--speed-time` do. Defaults: 1 KiB/s over 30 s.
pub const DEFAULT_SPEED_LIMIT: u64 = 1024;
pub const DEFAULT_SPEED_TIME: Duration = Duration::from_secs(30);
/// Token and error bodies are small; we never read more than this of them.
pub const SMALL_BODY: u64 = 64 << 10;

/// An answer, and where it came from after redirects: a 401 from a CDN is not the
/// registry's 401, and a relative `Link` resolves against the last hop.
pub struct Reply {
    pub response: Response<Body>,
    pub url: String,
    pub origin: Origin,
}

impl Reply {
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.response, name)
    }

    /// The body as a stream, under the speed limit.
    pub fn into_reader(self, pace: Pace) -> Paced {
        Paced {
            inner: self.response.into_body().into_reader(),
            pace,
        }
    }

    /// Reads a whole body of at most `limit` bytes; `what` names it in the error.
    pub fn read_limited(self, limit: u64, pace: Pace, what: &str) -> Result<Vec<u8>> {
        let url = self.url.clone();
        let mut body = Vec::new();
        self.into_reader(pace)
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| Error::BodyCut(format!("of {url} broke off: {e}")))?;
        if body.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: format!("{what} from {url}"),
                limit,
            });
        }
        Ok(body)
    }

    /// Reads a small unwanted body to its end (see `drain`).
    pub fn drain(self, pace: Pace) {
        drain(self.response, pace);
    }
}

/// The slowest a body may come: at least `limit` bytes a second, averaged over each window
/// of `window`.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    limit: u64,
    window: Duration,
    started: Instant,
    bytes: u64,
}

impl Pace {
    pub fn new(limit: u64, window: Duration) -> Pace {
        Pace {
            limit,
            window,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes just read; an error once a whole window went by below the limit.
    pub(crate) fn check(&mut self, n: usize) -> io::Result<()> {
        self.bytes += n as u64;
        let elapsed = self.started.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        let wanted = (self.limit as f64 * elapsed.as_secs_f64()) as u64;
        if self.bytes < wanted {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "slower than {} bytes/s for {} s (--speed-limit, --speed-time)",
                    self.limit,
                    self.window.as_secs()
                ),
            ));
        }
        (self.started, self.bytes) = (Instant::now(), 0);
        Ok(())
    }
}

/// A body under a speed limit.
pub struct Paced {
    inner: BodyReader<'static>,
    pace: Pace,
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pace.check(n)?;
        Ok(n)
    }
}

/// Reads a small unwanted body to its end (up to `SMALL_BODY`), so its connection can go
/// back to the pool; a larger or slower one is dropped with its connection.
pub(crate) fn drain(response: Response<Body>, pace: Pace) {
    let mut body = Paced {
        inner: response.into_body().into_reader(),
        pace,
    };
    let _ = io::copy(&mut (&mut body).take(SMALL_BODY), &mut io::sink());
}

pub(crate) fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)?
        .to_str()
        .ok()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickle_fails_the_pace_and_a_steady_body_does_not() {
        let window = Duration::from_millis(50);
        let mut steady = Pace::new(100, window);
        steady.check(1000).unwrap();
        std::thread::sleep(window);
        steady.check(10).unwrap(); // 1010 bytes in ~50 ms: far above 100 B/s
        let mut trickle = Pace::new(1_000_000, window);
        trickle.check(1).unwrap();
        std::thread::sleep(window);
        let e = trickle.check(1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("--speed-limit"), "{e}");
    }
}
