//! A blob from a registry or mirror, into a sink: a body that breaks off is continued with
//! `Range` where it stopped, and one that a server restarts is taken from its beginning.
//!
//! Request-level trouble (refused connections, 429, 5xx) is retried inside `net/transport.rs`;
//! this loop handles what happens after the first byte: resets, stalls, short bodies, and
//! servers that ignore `Range`. The digest is always checked over the whole content.

use std::io::{self, Read};
use std::time::Duration;

use crate::content::digest::{Digest, Verifier};
use crate::deliver::sink::Sink;
use crate::disk::partial::BUFFER;
use crate::error::{Error, Result};
use crate::net::registry::Client;
use crate::net::retry::Backoff;
use crate::progress::Progress;
use crate::reference::Repository;

/// Progress that earns a download its retry budget back after a break.
const PROGRESS: u64 = 1 << 20;

/// Resumes what the sink holds, downloads the rest, and checks the whole. A whole blob an
/// earlier run left needs no request; one that does not verify is downloaded again from zero.
pub fn fetch(
    client: &mut Client,
    repo: &Repository,
    digest: &Digest,
    size: Option<u64>,
    sink: &mut Sink,
    progress: &mut Progress,
) -> Result<u64> {
    let mut verifier = Verifier::new(digest, size);
    let have = sink.resume(&mut verifier, size)?;
    progress.advance(have);
    if size != Some(have) || have == 0 {
        receive(client, repo, digest, have, sink, &mut verifier, progress)?;
    }
    match verifier.finish() {
        // What an earlier run left may have been wrong: one more try from zero.
        Err(Error::DigestMismatch { .. }) if have > 0 && sink.restart()? => {
            progress.note(format_args!(
                "the resumed download of {digest} did not verify; downloading it again"
            ));
            std::thread::sleep(Duration::from_millis(100));
            progress.rewind();
            fetch(client, repo, digest, size, sink, progress)
        }
        result => result,
    }
}

/// The download loop: request from where we are, stream, and on a break wait and resume.
fn receive(
    client: &mut Client,
    repo: &Repository,
    digest: &Digest,
    mut have: u64,
    sink: &mut Sink,
    verifier: &mut Verifier,
    progress: &mut Progress,
) -> Result<()> {
    let size = verifier.size();
    let mut etag: Option<String> = None;
    let mut backoff = Backoff::new(client.retries());
    // The furthest any body got: only bytes past it earn the retry budget back, so a
    // server that sends the same bytes again and again cannot keep a run going for ever.
    let mut furthest = have;
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let mut blob = client.blob(repo, digest, have, etag.as_deref())?;
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
                *verifier = Verifier::new(digest, size);
                verifier.expect_size(blob.len)?;
                progress.rewind();
            } else {
                skip = have;
            }
        }
        match copy(
            &mut blob.reader,
            sink,
            verifier,
            &mut buffer,
            skip,
            progress,
        ) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => {
                have = verifier.seen();
                if have >= furthest + PROGRESS {
                    backoff.reset();
                }
                furthest = furthest.max(have);
                let Some(delay) = backoff.next_delay(None) else {
                    return Err(e);
                };
                let (n, of) = backoff.used();
                progress.note(format_args!(
                    "retry {n} of {of} in {} s: {e} after {have} bytes; resuming",
                    crate::progress::seconds(delay)
                ));
                std::thread::sleep(delay);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Streams `body` into `sink` through the verifier, after reading past `skip` bytes of it.
/// A read error is the network's (transient); a write error is the destination's.
pub fn copy(
    body: &mut impl Read,
    sink: &mut Sink,
    verifier: &mut Verifier,
    buffer: &mut [u8],
    mut skip: u64,
    progress: &mut Progress,
) -> Result<()> {
    loop {
        let n = match body.read(buffer) {
            Ok(0) if verifier.complete() => return sink.flush(),
            Ok(0) => return Err(Error::BodyCut("ended early".into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::BodyCut(format!("broke off: {e}"))),
        };
        let fresh = &buffer[skip.min(n as u64) as usize..n];
        skip -= (n - fresh.len()) as u64;
        verifier.update(fresh)?;
        sink.write(fresh)?;
        progress.advance(fresh.len() as u64);
    }
}
