//! Where one try takes a reference's content from: a registry's repository, through the
//! cache (`--cache`) when there is one, or an OCI image layout (`oci:PATH`). Every manifest
//! and blob is verified on the way, whichever it comes from.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::content::digest::Digest;
use crate::content::manifest::Fetched;
use crate::disk::layout::Layout;
use crate::disk::paths;
use crate::download::{self, Job, Outcome};
use crate::error::{Error, Result};
use crate::net::registry::Client;
use crate::progress::Progress;
use crate::reference::Repository;

/// Where one try takes the content from.
#[derive(Clone, Copy)]
pub(crate) enum From<'a> {
    Registry(&'a Repository),
    Layout(&'a Layout),
}

/// Manifests and blobs from one source, through the cache when there is one.
pub(crate) struct Fetch<'a, 'b> {
    pub client: &'b mut Client,
    pub from: From<'a>,
    pub cache: Option<&'a Layout>,
}

impl Fetch<'_, '_> {
    /// A manifest by tag or digest, verified, and kept in the cache.
    pub fn manifest(&mut self, reference: &str) -> Result<Fetched> {
        let fetched = match self.from {
            From::Registry(repo) => self.client.manifest(repo, reference)?,
            From::Layout(layout) => layout.manifest(reference)?,
        };
        if let Some(cache) = self.cache {
            cache.keep_manifest(&fetched)?;
        }
        Ok(fetched)
    }

    /// One blob to `target` (stdout when `None`), verified: copied out of a layout or the
    /// cache when it holds it, else downloaded (into the cache first, when there is one).
    pub fn blob(
        &mut self,
        digest: &Digest,
        size: Option<u64>,
        target: Option<&Path>,
        quiet: bool,
        progress: &mut Progress,
    ) -> Result<Outcome> {
        let patience = self.client.timeout();
        let held = match (self.from, self.cache) {
            (From::Layout(layout), _) => Some(layout),
            (From::Registry(_), cache) => cache,
        };
        let repo = match self.from {
            From::Registry(repo) => repo,
            From::Layout(layout) => {
                return match copy_out(layout, digest, size, target, quiet, patience)? {
                    Some(outcome) => Ok(outcome),
                    None => Err(Error::NotFound(format!(
                        "blob {digest} in the layout {}",
                        layout.root().display()
                    ))),
                };
            }
        };
        let job = Job {
            repo,
            digest,
            size,
            quiet,
        };
        let Some(cache) = held else {
            return match target {
                Some(path) => download::to_path(self.client, &job, path, progress),
                None => download::to_stdout(self.client, &job, progress).map(Outcome::Written),
            };
        };
        if let Some(outcome) = copy_out(cache, digest, size, target, quiet, patience)? {
            return Ok(outcome);
        }
        download::to_path(self.client, &job, &cache.blob_path(digest), progress)?;
        copy_out(cache, digest, size, target, quiet, patience)?
            .ok_or_else(|| Error::BadManifest(format!("the cache lost {digest} as it was written")))
    }
}

impl Fetch<'_, '_> {
    /// `--cache-only`: makes sure the cache holds the blob, downloading it when it does not;
    /// its size.
    pub fn fill(
        &mut self,
        digest: &Digest,
        size: Option<u64>,
        quiet: bool,
        progress: &mut Progress,
    ) -> Result<u64> {
        let (From::Registry(repo), Some(cache)) = (self.from, self.cache) else {
            return Err(Error::Usage(
                "--cache-only fills a --cache from a registry".into(),
            ));
        };
        let job = Job {
            repo,
            digest,
            size,
            quiet,
        };
        progress.start(&digest.to_string(), size);
        let outcome = download::to_path(self.client, &job, &cache.blob_path(digest), progress);
        let n = match outcome? {
            Outcome::Written(n) => {
                progress.end(n);
                n
            }
            Outcome::UpToDate(n) => {
                progress.end(0);
                n
            }
        };
        Ok(n)
    }
}

/// `Layout::copy_out` to a file, `Layout::stream_out` to stdout.
fn copy_out(
    layout: &Layout,
    digest: &Digest,
    size: Option<u64>,
    target: Option<&Path>,
    quiet: bool,
    patience: Duration,
) -> Result<Option<Outcome>> {
    match target {
        Some(path) if !paths::is_special(path) => {
            layout.copy_out(digest, size, path, quiet, patience)
        }
        Some(path) => {
            let mut out = fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(Error::file(path))?;
            Ok(layout
                .stream_out(digest, size, &mut out)?
                .map(Outcome::Written))
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            Ok(layout
                .stream_out(digest, size, &mut out)?
                .map(Outcome::Written))
        }
    }
}
