//! What one reference gave, as `main` prints it: status lines went out as it happened; the
//! `Report` holds the files (written, up to date, listed, cached, checked), for `--list`,
//! `--verify` and `--json`; the `Printer` writes stdout, `--tags` pages as they arrive.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::cli::Mode;
use crate::content::digest::Digest;
use crate::content::manifest::Descriptor;
use crate::error::{Error, Result};
use crate::progress::{human_size, Progress};
use crate::reference::Reference;
use crate::text::{escape, escape_json};

/// What one reference gave: its files (written, up to date, or listed) or its tags.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<File>,
    /// The digest of the manifest (or index) the reference resolved to: what pins it.
    pub manifest: Option<Digest>,
    /// Who said what the manifest is: the registry's repository, a mirror's, or `oci:PATH`.
    pub source: Option<String>,
    /// A mirror said what the reference's tag means (which cannot be verified).
    pub mirror_said: bool,
    /// Where the files came from when that is not the reference's own repository (a mirror,
    /// a remapped location): said on every status line.
    pub via: Option<String>,
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
        let note = match (status, &self.via) {
            (Status::UpToDate, _) => "  up to date".to_string(),
            (_, Some(via)) => format!("  from {via}"),
            (_, None) => String::new(),
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
        if let Some(source) = &self.source {
            doc["source"] = json!(source);
        }
        if mode == Mode::Tags {
            doc["tags"] = json!([]);
        } else {
            doc["files"] = self.files.iter().map(File::to_json).collect();
        }
        if let Some(error) = error {
            doc["error"] = json!(error.to_string());
        }
        doc
    }

    /// `--list` and `--verify` without `--json`: one record a line, tab-separated, on stdout.
    /// A tab or newline a registry put in a title or media type is escaped, so it can neither
    /// add a column nor a line.
    pub fn lines(&self, mode: Mode) -> Vec<String> {
        match mode {
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

/// Standard output: a listing's lines, or `--json`'s one document, written as each reference
/// is done and, for `--tags`, as each page arrives, so memory holds one page of a tag list
/// whatever its length. A reader that has gone (`| head`) is `main`'s to forgive; any other
/// failure (`> /dev/full`) is an error.
pub struct Printer {
    json: bool,
    mode: Mode,
    /// A write failed: nothing more is written, and the failure is said once.
    failed: bool,
    /// References written into the JSON document so far.
    written: usize,
    /// The JSON document of the reference whose tags are being written is open.
    open: bool,
}

impl Printer {
    pub fn new(json: bool, mode: Mode) -> Printer {
        Printer {
            json,
            mode,
            failed: false,
            written: 0,
            open: false,
        }
    }

    /// A page of `reference`'s tags, as `source` listed it.
    pub fn tags(&mut self, reference: &Reference, source: &str, page: &[String]) -> Result<()> {
        if !self.json {
            let lines: Vec<String> = page.iter().map(|t| escape(t).into_owned()).collect();
            return self.write(&lines.join("\n"), true);
        }
        if page.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        if !self.open {
            let doc = json!({ "reference": reference.to_string(), "name": reference.name(), "source": source });
            let mut doc = doc.to_string();
            doc.pop();
            text = format!("{}{doc},\"tags\":[", self.separator());
        } else {
            text.push(',');
        }
        self.open = true;
        let page = serde_json::to_string(page).unwrap_or_default();
        text.push_str(&page[1..page.len() - 1]);
        self.write(&escape_json(&text), false)
    }

    /// One reference is done: its record (lines, or its part of the document).
    pub fn done(
        &mut self,
        reference: &Reference,
        report: &Report,
        error: Option<&Error>,
    ) -> Result<()> {
        if !self.json {
            return match self.mode {
                Mode::List | Mode::Verify => {
                    let lines = report.lines(self.mode).join("\n");
                    self.write(&lines, true)
                }
                _ => Ok(()),
            };
        }
        let text = match std::mem::take(&mut self.open) {
            true => match error {
                Some(e) => format!("],\"error\":{}}}", json!(e.to_string())),
                None => "]}".to_string(),
            },
            false => {
                let doc = report.to_json(reference, self.mode, error).to_string();
                format!("{}{doc}", self.separator())
            }
        };
        self.write(&escape_json(&text), false)
    }

    /// The end of the run: the document closed.
    pub fn finish(&mut self) -> Result<()> {
        if !self.json {
            return Ok(());
        }
        let opening = match self.written {
            0 => "{\"references\":[",
            _ => "",
        };
        self.write(&format!("{opening}]}}"), true)
    }

    /// `text` on stdout, and a newline when `line` (an empty line is not printed).
    fn write(&mut self, text: &str, line: bool) -> Result<()> {
        if text.is_empty() || self.failed {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        let written = out
            .write_all(text.as_bytes())
            .and_then(|()| if line { out.write_all(b"\n") } else { Ok(()) })
            .and_then(|()| out.flush());
        self.failed = written.is_err();
        written.map_err(Error::Stdout)
    }

    /// What comes before the next reference's document: the document's start, or a comma.
    fn separator(&mut self) -> &'static str {
        self.written += 1;
        match self.written {
            1 => "{\"references\":[",
            _ => ",",
        }
    }
}
