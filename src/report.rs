//! What one reference gave, as `main` prints it: status lines went out as it happened; the
//! `Report` holds the files (written, up to date, listed, cached, checked) or the tags, for
//! `--list`, `--tags`, `--verify` and `--json`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::cli::Mode;
use crate::content::digest::Digest;
use crate::content::manifest::Descriptor;
use crate::error::Error;
use crate::progress::{human_size, Progress};
use crate::reference::Reference;
use crate::text::escape;

/// What one reference gave: its files (written, up to date, or listed) or its tags.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<File>,
    pub tags: Vec<String>,
    /// The digest of the manifest (or index) the reference resolved to: what pins it.
    pub manifest: Option<Digest>,
}

#[derive(Debug)]
pub struct File {
    /// The layer's title; `None` for a blob fetched by digest.
    pub title: Option<String>,
    /// Where it was written; `None` when listed, or written to stdout.
    pub path: Option<PathBuf>,
    pub size: u64,
    pub digest: Digest,
    pub media_type: Option<String>,
    pub status: Status,
}

/// What became of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Only named (`--list`).
    Listed,
    /// Fetched into the cache alone (`--cache-only`).
    Cached,
    Written,
    /// It already held this content; nothing was downloaded.
    UpToDate,
    /// `--verify`: the file holds the package's content, is not there, or holds other bytes.
    Intact,
    Missing,
    Different,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Listed => "listed",
            Status::Cached => "cached",
            Status::Written => "written",
            Status::UpToDate => "up to date",
            Status::Intact => "intact",
            Status::Missing => "missing",
            Status::Different => "different",
        }
    }
}

impl Report {
    /// A file delivered (written, or found up to date): its status line (on stderr: stdout
    /// is for data), and its entry.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        progress: &Progress,
        title: Option<&str>,
        path: Option<PathBuf>,
        digest: &Digest,
        media_type: Option<&String>,
        size: u64,
        status: Status,
    ) {
        let shown = match &path {
            Some(p) => p.strip_prefix(".").unwrap_or(p).display().to_string(),
            None => "(stdout)".to_string(),
        };
        let note = match status {
            Status::UpToDate => "  up to date",
            _ => "",
        };
        progress.note(format_args!(
            "{shown}  {}  {}{note}",
            human_size(size),
            digest.brief()
        ));
        self.files.push(File {
            title: title.map(str::to_string),
            path,
            size,
            digest: digest.clone(),
            media_type: media_type.cloned(),
            status,
        });
    }

    /// One reference's part of the `--json` document.
    pub fn to_json(&self, reference: &Reference, mode: Mode, error: Option<&Error>) -> Value {
        let mut doc = json!({ "reference": reference.to_string(), "name": reference.name() });
        if let Some(manifest) = &self.manifest {
            doc["manifest"] = json!(manifest.to_string());
        }
        if mode == Mode::Tags {
            doc["tags"] = json!(self.tags);
        } else {
            doc["files"] = self.files.iter().map(File::to_json).collect();
        }
        if let Some(error) = error {
            doc["error"] = json!(error.to_string());
        }
        doc
    }

    /// `--list` and `--tags` without `--json`: one record a line, tab-separated, on stdout.
    /// A tab or newline a registry put in a title, tag or media type is escaped, so it can
    /// neither add a column nor a line.
    pub fn lines(&self, mode: Mode) -> Vec<String> {
        match mode {
            Mode::Tags => self.tags.iter().map(|t| escape(t).into_owned()).collect(),
            Mode::Verify => self
                .files
                .iter()
                .map(|f| {
                    let path = f.path.as_deref().unwrap_or(Path::new("-"));
                    let shown = path.strip_prefix(".").unwrap_or(path).display().to_string();
                    format!("{}\t{}", f.status.as_str(), escape(&shown))
                })
                .collect(),
            _ => self
                .files
                .iter()
                .map(|f| {
                    let title = escape(f.title.as_deref().unwrap_or("-"));
                    let media_type = escape(f.media_type.as_deref().unwrap_or("-"));
                    format!("{title}\t{}\t{}\t{media_type}", f.size, f.digest)
                })
                .collect(),
        }
    }
}

impl File {
    /// A layer named but not written (`--list`, `--cache-only`).
    pub fn named(layer: &Descriptor, status: Status) -> File {
        File {
            title: layer.title.clone(),
            path: None,
            size: layer.size,
            digest: layer.digest.clone(),
            media_type: Some(layer.media_type.clone()),
            status,
        }
    }

    /// A blob fetched into the cache alone (`--cache-only`).
    pub fn cached(
        title: Option<&str>,
        size: u64,
        digest: &Digest,
        media_type: Option<&String>,
    ) -> File {
        File {
            title: title.map(str::to_string),
            path: None,
            size,
            digest: digest.clone(),
            media_type: media_type.cloned(),
            status: Status::Cached,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut file =
            json!({ "title": self.title, "size": self.size, "digest": self.digest.to_string() });
        if let Some(path) = &self.path {
            file["path"] = json!(path.to_string_lossy());
            file["status"] = json!(self.status.as_str());
        }
        if let Some(media_type) = &self.media_type {
            file["mediaType"] = json!(media_type);
        }
        file
    }
}
