//! Downloads that survive real networks: a blob streams through the verifier into its
//! destination, and a body that breaks off is continued with `Range` where it stopped.
//!
//! Request-level trouble (refused connections, 429, 5xx) is retried inside `registry.rs`;
//! this loop handles what happens after the first byte: resets, stalls, short bodies, and
//! servers that ignore `Range`. The digest is always checked over the whole content.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::content::digest::{Digest, Verifier};
use crate::disk::paths;
use crate::disk::store::{self, Partial, BUFFER};
use crate::error::{Error, Result};
use crate::net::registry::Client;
use crate::net::retry::Backoff;
use crate::progress::{self, Progress};
use crate::reference::Repository;

/// Progress that earns a download its retry budget back after a break.
const PROGRESS: u64 = 1 << 20;

pub use crate::disk::store::Outcome;

/// One blob to fetch.
pub struct Job<'a> {
    pub repo: &'a Repository,
    pub digest: &'a Digest,
    /// From the descriptor; a blob fetched by digest alone learns it from Content-Length.
    pub size: Option<u64>,
    pub quiet: bool,
}

/// Writes the blob to `target`: through a `Partial` for a regular file, straight in for a
/// FIFO or device. A file that already holds the content is left alone.
pub fn to_path(
    client: &mut Client,
    job: &Job,
    target: &Path,
    progress: &mut Progress,
) -> Result<Outcome> {
    if paths::is_special(target) {
        let mut file = OpenOptions::new()
            .write(true)
            .open(target)
            .map_err(Error::file(target))?;
        return fetch(
            client,
            job,
            &mut Stream {
                out: &mut file,
                path: target,
                written: 0,
            },
            progress,
        )
        .map(Outcome::Written);
    }
    // Checked before anything is created (a read-only directory with the right file in
    // it is fine), and again under the lock if another ocidl changed the file meanwhile.
    let stamp = || {
        fs::metadata(target)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let before = stamp();
    if let Some(size) = store::holds(target, job.digest, job.size)? {
        return Ok(Outcome::UpToDate(size));
    }
    let mut partial = Partial::open(target, job.digest, job.quiet, client.timeout())?;
    if stamp() != before {
        if let Some(size) = store::holds(target, job.digest, job.size)? {
            partial.discard();
            return Ok(Outcome::UpToDate(size));
        }
    }
    match fetch(client, job, &mut partial, progress) {
        Ok(n) => {
            partial.commit()?;
            Ok(Outcome::Written(n))
        }
        // The bytes so far are good as far as we know: keep them for the next run.
        Err(e) if e.is_transient() && partial.written() > 0 => Err(Error::Kept {
            path: partial.path().to_path_buf(),
            source: Box::new(e),
        }),
        Err(e) => {
            partial.discard();
            Err(e)
        }
    }
}

/// Writes the blob to standard output. The bytes reach the reader before the check ends,
/// so a mismatch is reported by the exit status: pipelines must look at it. A reader that
/// goes away early (`| head -c 10`) did not get the blob, and that is a failure too.
pub fn to_stdout(client: &mut Client, job: &Job, progress: &mut Progress) -> Result<u64> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut stream = Stream {
        out: &mut out,
        path: Path::new("-"),
        written: 0,
    };
    let result = fetch(client, job, &mut stream, progress)
        .and_then(|n| stream.flush().map(|()| n).map_err(|e| stream.error(e)));
    match result {
        Err(Error::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => Err(Error::ReaderGone {
            written: stream.written,
        }),
        other => other,
    }
}

/// Where verified bytes go while they stream.
trait Sink: Write {
    /// Feeds what is already there (an earlier run's bytes) to the verifier; `size` is
    /// the blob's, when known.
    fn resume(&mut self, _verifier: &mut Verifier, _size: Option<u64>) -> Result<u64> {
        Ok(0)
    }
    /// Forgets what was written; false when that cannot be done (a pipe, a device).
    fn restart(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// Names the destination in errors.
    fn error(&self, e: io::Error) -> Error;
}

impl Sink for Partial {
    fn resume(&mut self, verifier: &mut Verifier, size: Option<u64>) -> Result<u64> {
        // Complete but not renamed (so not verified), or longer than the blob: whatever it
        // holds is not worth hashing; start afresh.
        if size.is_some_and(|size| self.written() >= size) {
            Partial::restart(self)?;
            return Ok(0);
        }
        Partial::resume(self, verifier)
    }
    fn restart(&mut self) -> Result<bool> {
        Partial::restart(self).map(|()| true)
    }
    fn error(&self, cause: io::Error) -> Error {
        Error::File {
            path: self.path().to_path_buf(),
            cause,
        }
    }
}

/// Standard output, or a FIFO or device: written once, front to back.
struct Stream<'a, W: Write> {
    out: &'a mut W,
    path: &'a Path,
    /// Bytes the reader has taken.
    written: u64,
}

impl<W: Write> Write for Stream<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Sink for Stream<'_, W> {
    fn error(&self, cause: io::Error) -> Error {
        match self.path == Path::new("-") {
            true => Error::Stdout(cause),
            false => Error::File {
                path: self.path.to_path_buf(),
                cause,
            },
        }
    }
}

/// The download loop: request from where we are, stream, and on a break wait and resume.
fn fetch(
    client: &mut Client,
    job: &Job,
    sink: &mut dyn Sink,
    progress: &mut Progress,
) -> Result<u64> {
    let mut verifier = Verifier::new(job.digest, job.size);
    let mut have = sink.resume(&mut verifier, job.size)?;
    let resumed = have > 0;
    progress.advance(have);
    let mut etag: Option<String> = None;
    let mut backoff = Backoff::new(client.retries());
    // The furthest any body got: only bytes past it earn the retry budget back, so a
    // server that sends the same bytes again and again cannot keep a run going for ever.
    let mut furthest = have;
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let mut blob = client.blob(job.repo, job.digest, have, etag.as_deref())?;
        // A blob of another size than the descriptor's can never verify: fail now, not
        // after fetching it whole again on every retry.
        if blob.start == 0 {
            verifier.expect_size(blob.len)?;
            progress.expect(verifier.size());
        }
        verifier.expect_size(blob.total)?;
        etag = blob.etag.take().or(etag);
        let mut skip = 0;
        if blob.start != have {
            // The server sent the blob from its start. A file starts again; a stream cannot
            // take bytes back, so the ones it already has are read past.
            if sink.restart()? {
                verifier = Verifier::new(job.digest, job.size);
                verifier.expect_size(blob.len)?;
                progress.rewind();
            } else {
                skip = have;
            }
        }
        match copy(
            &mut blob.reader,
            sink,
            &mut verifier,
            &mut buffer,
            skip,
            progress,
        ) {
            Ok(()) => break,
            Err(e) if e.is_transient() => {
                have = verifier.seen();
                if have >= furthest + PROGRESS {
                    backoff.reset();
                }
                furthest = furthest.max(have);
                let Some(delay) = backoff.next_delay(None) else {
                    return Err(e);
                };
                if !job.quiet {
                    let (n, of) = backoff.used();
                    progress::note(format_args!(
                        "retry {n} of {of} in {:.1} s: {e} after {have} bytes; resuming",
                        delay.as_secs_f64()
                    ));
                }
                std::thread::sleep(delay);
            }
            Err(e) => return Err(e),
        }
    }
    match verifier.finish() {
        // What an earlier run left may have been wrong: one more try from zero.
        Err(Error::DigestMismatch { .. }) if resumed && sink.restart()? => {
            if !job.quiet {
                progress::note(format_args!(
                    "the resumed download of {} did not verify; downloading it again",
                    job.digest
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
            progress.rewind();
            fetch(client, job, sink, progress)
        }
        result => result,
    }
}

/// Streams `body` into `sink` through the verifier, after reading past `skip` bytes of it.
/// A read error is the network's (transient); a write error is the destination's.
fn copy(
    body: &mut impl Read,
    sink: &mut dyn Sink,
    verifier: &mut Verifier,
    buffer: &mut [u8],
    mut skip: u64,
    progress: &mut Progress,
) -> Result<()> {
    loop {
        let n = match body.read(buffer) {
            Ok(0) if verifier.complete() => return Ok(()),
            Ok(0) => return Err(Error::BodyCut("ended early".into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::BodyCut(format!("broke off: {e}"))),
        };
        let fresh = &buffer[n.min(skip as usize)..n];
        skip -= (n - fresh.len()) as u64;
        verifier.update(fresh)?;
        sink.write_all(fresh).map_err(|e| sink.error(e))?;
        progress.advance(fresh.len() as u64);
    }
}
