//! The one path every byte takes, whichever source it comes from and sink it goes to:
//!
//! ```text
//!   sources                                          sinks
//!   a registry or mirror (remote.rs)  --.        .-- a file staged beside its target
//!   the --cache (a layout, local)     ---+- Verifier -+-- a cache entry
//!   an oci: layout (local)            --'        '-- a stream: stdout, a FIFO, a device
//! ```
//!
//! `Deliver::blob` alone decides, for every pair:
//! - the order of sources: the cache when it holds the blob, then the origin (through the
//!   cache when there is one, so the cache fills as it serves);
//! - when a byte may reach a stream: from a local source only once the whole file verified,
//!   so a bad entry never reaches a reader; from the network as it arrives, and then a
//!   failure says how many bytes went out (`Error::Streamed`), and no other source is tried;
//! - what a reader that went away means: `Error::ReaderGone`, exit 1, from every source;
//! - what becomes of a local entry that does not verify: a cache's is removed and the next
//!   source asked; a layout's is an error;
//! - that the cache is an optimisation: failing to read or write it is a note, and the
//!   delivery goes on from the origin (`--cache-only` excepted: there the cache is the output);
//! - what progress shows.
//!
//! What becomes of a file after its delivery (staged, kept for the next run, removed) is
//! `settle`; when staged files are renamed into place is the caller's (`pull.rs`).

pub mod remote;
pub mod sink;

use std::cell::Cell;
use std::io::{Read, Seek};
use std::time::Duration;

use crate::content::digest::{Digest, Verifier};
use crate::content::manifest::Fetched;
use crate::disk::layout::Layout;
use crate::disk::partial::{self, Partial, Staged, BUFFER};
use crate::error::{Error, Result};
use crate::net::registry::Client;
use crate::progress::Progress;
use crate::reference::Repository;
use crate::sys;

pub use sink::{Sink, Stream};

/// Where a try takes a reference's content from.
#[derive(Clone, Copy)]
pub enum Origin<'a> {
    Registry(&'a Repository),
    Layout(&'a Layout),
}

impl Origin<'_> {
    /// The repository's name, or `oci:PATH`: who served a manifest.
    pub fn name(&self) -> String {
        match self {
            Origin::Registry(repo) => repo.name(),
            Origin::Layout(layout) => format!("oci:{}", layout.root().display()),
        }
    }
}

/// The `--cache`: a layout that keeps what is fetched and serves what it holds.
pub struct Cache {
    layout: Layout,
    /// `--cache-only`: the cache is the output, so its failures are failures.
    required: bool,
    /// Set once writing to it failed: the rest of the run only reads from it.
    failed: Cell<bool>,
}

impl Cache {
    pub fn new(layout: Layout, required: bool) -> Cache {
        Cache {
            layout,
            required,
            failed: Cell::new(false),
        }
    }

    fn writable(&self) -> bool {
        self.layout.writable() && !self.failed.get()
    }

    /// A failure to use the cache: said once, and the run goes on without writing to it.
    fn fail(&self, e: Error, progress: &Progress) -> Result<()> {
        if self.required {
            return Err(e);
        }
        if !self.failed.replace(true) {
            progress.note(format_args!(
                "cache {}: {e}; going on without writing to it",
                self.layout.root().display()
            ));
        }
        Ok(())
    }
}

/// Manifests and blobs from one origin, through the cache when there is one.
pub struct Deliver<'a, 'b> {
    pub client: &'b mut Client,
    pub origin: Origin<'a>,
    pub cache: Option<&'a Cache>,
    pub progress: &'b mut Progress,
    /// Whether a package may be asked for all at once (`blobs`): not of a mirror, which
    /// gets one try, and whose silence must cost one `--timeout`, not two.
    pub pipeline: bool,
}

/// What a local file gave.
enum Local {
    Delivered(u64),
    Missing,
    /// Another size than the descriptor's: not this content, but the descriptor may be the
    /// wrong one (another source's), so the entry is not removed.
    WrongSize(Error),
    /// It is there but is not this content, or could change while it is read.
    Unverified(Error),
    /// It could not be read.
    Unreadable(Error),
}

impl Deliver<'_, '_> {
    /// How long to wait for another ocidl's lock to move (`--timeout`).
    pub fn patience(&self) -> Duration {
        self.client.timeout()
    }

    /// A manifest by tag or digest from the origin, verified, and kept in the cache.
    pub fn manifest(&mut self, reference: &str) -> Result<Fetched> {
        let fetched = match self.origin {
            Origin::Registry(repo) => self.client.manifest(repo, reference)?,
            Origin::Layout(layout) => layout.manifest(reference)?,
        };
        if let Some(cache) = self.cache.filter(|c| c.writable()) {
            if let Err(e) = cache.layout.keep_manifest(&fetched) {
                cache.fail(e, self.progress)?;
            }
        }
        Ok(fetched)
    }

    /// Names `top` in the cache's `index.json` as `name`, with `annotations`.
    pub fn record(
        &mut self,
        name: &str,
        top: &Fetched,
        annotations: &[(&str, &str)],
    ) -> Result<()> {
        let Some(cache) = self.cache.filter(|c| c.writable()) else {
            return Ok(());
        };
        match cache.layout.record(name, top, annotations, self.patience()) {
            Ok(None) => Ok(()),
            Ok(Some(note)) => {
                self.progress.note(format_args!(
                    "cache {}: {note}",
                    cache.layout.root().display()
                ));
                Ok(())
            }
            Err(e) => cache.fail(e, self.progress),
        }
    }

    /// One blob into `sink`, verified, from the first source that has it; `name` is what
    /// progress shows. Its size in bytes.
    pub fn blob(
        &mut self,
        digest: &Digest,
        size: Option<u64>,
        name: &str,
        sink: &mut Sink,
    ) -> Result<u64> {
        self.progress.start(name, size);
        let result = self.try_sources(digest, size, sink);
        self.progress.end(*result.as_ref().unwrap_or(&0));
        result.map_err(|e| match (sink.streamed(), e) {
            (_, e @ (Error::ReaderGone { .. } | Error::Stdout(_))) => e,
            (Some((to, written)), e) => Error::Streamed {
                to: to.to_string(),
                written,
                source: Box::new(e),
            },
            (None, e) => e,
        })
    }

    fn try_sources(&mut self, digest: &Digest, size: Option<u64>, sink: &mut Sink) -> Result<u64> {
        if let Some(cache) = self.cache {
            match from_local(&cache.layout, digest, size, sink, self.progress)? {
                Local::Delivered(n) => return Ok(n),
                Local::Missing | Local::WrongSize(_) => {}
                Local::Unverified(e) => {
                    self.progress.note(format_args!(
                        "cache {}: {digest}: {e}; fetching it again",
                        cache.layout.root().display()
                    ));
                    cache.layout.forget(digest);
                }
                Local::Unreadable(e) => cache.fail(e, self.progress)?,
            }
        }
        let repo = match self.origin {
            Origin::Layout(layout) => {
                return match from_local(layout, digest, size, sink, self.progress)? {
                    Local::Delivered(n) => Ok(n),
                    Local::Missing => Err(Error::NotFound(format!(
                        "blob {digest} in the layout {}",
                        layout.root().display()
                    ))),
                    Local::WrongSize(e) | Local::Unverified(e) | Local::Unreadable(e) => Err(e),
                };
            }
            Origin::Registry(repo) => repo,
        };
        if let Some(cache) = self.cache.filter(|c| c.writable()) {
            // Into the cache first, then out of it like any cached blob.
            match self.download_to_cache(cache, repo, digest, size) {
                Ok(()) => {
                    self.progress.rewind();
                    match from_local(&cache.layout, digest, size, sink, self.progress)? {
                        Local::Delivered(n) => return Ok(n),
                        Local::Missing => cache.fail(
                            Error::NotFound(format!("{digest} once written")),
                            self.progress,
                        )?,
                        Local::WrongSize(e) | Local::Unverified(e) | Local::Unreadable(e) => {
                            cache.fail(e, self.progress)?
                        }
                    }
                }
                // The cache's own file failed (a read-only or full disk, a lock that never
                // moved): the network's failures are the origin's, and final.
                Err(e @ Error::File { .. }) => cache.fail(e, self.progress)?,
                Err(e) => return Err(e),
            }
            self.progress.rewind();
        }
        remote::fetch(self.client, repo, digest, size, sink, self.progress)
    }

    /// Whether `blobs` may ask for a package of `files` files all at once: from a registry,
    /// with no cache to fill, and enough of them (`PIPELINE`).
    pub fn pipelines(&self, files: usize) -> bool {
        let cache = self.cache.filter(|c| c.writable());
        let registry = matches!(self.origin, Origin::Registry(_));
        self.pipeline && registry && cache.is_none() && files >= PIPELINE
    }

    /// A package's blobs, each into its own file: from the registry all at once when there
    /// are `PIPELINE` or more (pipelined: one request each on one connection per origin, the
    /// answers read in order, see `net/pipeline.rs`), each body through its verifier; then
    /// whatever that did not deliver (a server that answered once and closed, an error, a
    /// body cut off) through `blob`, one by one, with its retries and resume, until one fails
    /// for good. A blob the cache holds, or one an earlier run began (it resumes with
    /// `Range`), is not pipelined; nor is anything when a writable cache is to fill. The
    /// result of each, or `None` for those not tried after a failure.
    pub fn blobs(&mut self, jobs: &mut [Wanted]) -> Vec<Option<Result<u64>>> {
        let mut done: Vec<Option<Result<u64>>> = jobs.iter().map(|_| None).collect();
        if let (Origin::Registry(repo), None) = (self.origin, self.cache.filter(|c| c.writable())) {
            let held = |digest: &Digest| {
                self.cache
                    .is_some_and(|c| c.layout.blob_path(digest).exists())
            };
            let wanted: Vec<usize> = (0..jobs.len())
                .filter(|&i| jobs[i].partial.written() == 0 && !held(&jobs[i].digest))
                .collect();
            if wanted.len() >= PIPELINE {
                self.pipelined(repo, jobs, &wanted, &mut done);
            }
        }
        for (job, done) in jobs.iter_mut().zip(&mut done) {
            if done.is_none() {
                let mut sink = Sink::File(&mut *job.partial);
                let delivered = self.blob(&job.digest, Some(job.size), &job.name, &mut sink);
                let failed = delivered.is_err();
                *done = Some(delivered);
                if failed {
                    break;
                }
            }
        }
        done
    }

    /// The pipelined pass of `blobs`, over the jobs `wanted` names. A body that broke off
    /// leaves its bytes in its file and is left to `blob`, which resumes it; a body that
    /// arrived whole but did not verify is a failure, as it would be one by one.
    fn pipelined(
        &mut self,
        repo: &Repository,
        jobs: &mut [Wanted],
        wanted: &[usize],
        done: &mut [Option<Result<u64>>],
    ) {
        let blobs: Vec<(Digest, u64)> = wanted
            .iter()
            .map(|&i| (jobs[i].digest.clone(), jobs[i].size))
            .collect();
        let mut buffer = vec![0u8; BUFFER];
        let mut pipeline = self.client.pipeline(repo, &blobs);
        while let Some((k, mut body)) = pipeline.next() {
            let job = &mut jobs[wanted[k]];
            self.progress.start(&job.name, Some(job.size));
            let mut verifier = Verifier::new(&job.digest, Some(job.size));
            let mut sink = Sink::File(&mut *job.partial);
            let copied = remote::copy(
                &mut body,
                &mut sink,
                &mut verifier,
                &mut buffer,
                0,
                self.progress,
            );
            let delivered = copied.and_then(|()| verifier.finish());
            self.progress.end(*delivered.as_ref().unwrap_or(&0));
            match delivered {
                Err(e) if e.is_transient() => {}
                delivered => done[wanted[k]] = Some(delivered),
            }
        }
    }

    /// `--cache-only`, and a package's config: makes sure the cache holds the blob, fetching
    /// it when it does not; its size.
    pub fn fill(&mut self, digest: &Digest, size: Option<u64>, name: &str) -> Result<u64> {
        let (Origin::Registry(repo), Some(cache)) = (self.origin, self.cache) else {
            return Err(Error::Usage(
                "--cache-only fills a --cache from a registry".into(),
            ));
        };
        let path = cache.layout.blob_path(digest);
        if let Some(n) = partial::holds(&path, digest, size)? {
            return Ok(n);
        }
        self.progress.start(name, size);
        let result = self.download_to_cache(cache, repo, digest, size);
        self.progress.end(0);
        result?;
        partial::holds(&path, digest, size)?
            .ok_or_else(|| Error::NotFound(format!("{digest} in the cache, once written")))
    }

    /// Downloads a blob into its cache entry.
    fn download_to_cache(
        &mut self,
        cache: &Cache,
        repo: &Repository,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<()> {
        let path = cache.layout.blob_path(digest);
        let root = Some(cache.layout.root());
        let mut partial = Partial::open(&path, digest, root, &[], self.patience(), self.progress)?;
        let delivered = remote::fetch(
            self.client,
            repo,
            digest,
            size,
            &mut Sink::File(&mut partial),
            self.progress,
        );
        settle(partial, delivered)?.0.commit()
    }
}

/// Blobs worth a pipeline: it opens connections of its own (a handshake each) where one by
/// one they would go over the connection the manifest came on, so for two it gains nothing.
const PIPELINE: usize = 3;

/// One blob of a package for `Deliver::blobs`: what it is, the name progress shows, and the
/// file it goes into.
pub struct Wanted<'p> {
    pub digest: Digest,
    pub size: u64,
    pub name: String,
    pub partial: &'p mut Partial,
}

/// Whether what `partial` holds is kept for the next run to resume after `e`: the network
/// failed after some bytes.
pub fn resumable(partial: &Partial, e: &Error) -> bool {
    e.is_transient() && partial.written() > 0
}

/// What becomes of a partial file after a delivery into it: staged when it verified; kept
/// for the next run to resume when the network failed after some bytes; removed otherwise.
pub fn settle(partial: Partial, delivered: Result<u64>) -> Result<(Staged, u64)> {
    match delivered {
        Ok(n) => Ok((partial.finish()?, n)),
        Err(e) if resumable(&partial, &e) => Err(Error::Kept {
            path: partial.path().to_path_buf(),
            source: Box::new(e),
        }),
        Err(e) => {
            partial.discard();
            Err(e)
        }
    }
}

/// Copies the layout's blob into `sink`, verified on the way. A stream gets it only after a
/// first pass verified the whole file, so a wrong entry never reaches a reader, and only
/// from a file no one else can change between the passes; a blob of unknown size gets the
/// same first pass, so that a huge entry is not copied whole before it fails. Once bytes
/// went out, a failure is final. A file sink that did not get the blob is emptied for the
/// next source.
fn from_local(
    layout: &Layout,
    digest: &Digest,
    size: Option<u64>,
    sink: &mut Sink,
    progress: &mut Progress,
) -> Result<Local> {
    match copy_local(layout, digest, size, sink, progress)? {
        Local::Unverified(e) | Local::Unreadable(e) if sink.streamed().is_some() => Err(e),
        local @ (Local::Unverified(_) | Local::Unreadable(_)) => {
            sink.restart()?;
            Ok(local)
        }
        local => Ok(local),
    }
}

fn copy_local(
    layout: &Layout,
    digest: &Digest,
    size: Option<u64>,
    sink: &mut Sink,
    progress: &mut Progress,
) -> Result<Local> {
    let mut entry = match layout.entry(digest) {
        Ok(Some(entry)) => entry,
        Ok(None) => return Ok(Local::Missing),
        Err(e) => return Ok(Local::Unreadable(e)),
    };
    if let Some(size) = size.filter(|&s| s != entry.len) {
        return Ok(Local::WrongSize(Error::SizeMismatch {
            expected: size,
            actual: entry.len,
        }));
    }
    let path = entry.path.clone();
    let unreadable = |cause| {
        Local::Unreadable(Error::File {
            path: path.clone(),
            cause,
        })
    };
    let stream = matches!(sink, Sink::Stream(_));
    if stream && !steady(&entry.file) {
        return Ok(Local::Unverified(Error::File {
            path: path.clone(),
            cause: std::io::Error::other(
                "others may change it while it is read: not streamed unverified",
            ),
        }));
    }
    if stream || size.is_none() {
        let mut first = Verifier::new(digest, Some(entry.len));
        if let Err(e) = partial::feed(&mut entry.file, &entry.path, &mut first) {
            return Ok(Local::Unreadable(e));
        }
        if let Err(e) = first.finish() {
            return Ok(Local::Unverified(e));
        }
        if let Err(e) = entry.file.rewind() {
            return Ok(unreadable(e));
        }
    }
    if !stream {
        // What an earlier run left there is of no use: the whole blob is here.
        sink.restart()?;
    }
    let mut verifier = Verifier::new(digest, Some(entry.len));
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let n = match entry.file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok(unreadable(e)),
        };
        if let Err(e) = verifier.update(&buffer[..n]) {
            return Ok(Local::Unverified(e));
        }
        sink.write(&buffer[..n])?;
        progress.advance(n as u64);
    }
    sink.flush()?;
    Ok(match verifier.finish() {
        Ok(n) => Local::Delivered(n),
        Err(e) => Local::Unverified(e),
    })
}

/// Whether no one but ocidl's user (or root) can change the file while it is read: it is
/// theirs, has one link, and no one else may write it.
fn steady(file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| {
        (m.uid() == sys::uid() || m.uid() == 0) && m.nlink() == 1 && m.mode() & 0o022 == 0
    })
}
