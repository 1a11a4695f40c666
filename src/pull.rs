//! The job itself, top to bottom: a reference becomes a manifest, the manifest becomes
//! descriptors, the descriptors become verified files. What was done is recorded in a
//! `Report` that `main` prints (as text or JSON).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::cli::{Args, Mode, Output};
use crate::digest::Digest;
use crate::download::{self, Job, Outcome};
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, Manifest};
use crate::progress::{self, human_size, Progress};
use crate::reference::{Reference, Repository, Target};
use crate::registry::Client;
use crate::store;
use crate::text::escape;

/// What one reference gave: its files (written, up to date, or listed) or its tags.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<File>,
    pub tags: Vec<String>,
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
    pub up_to_date: bool,
}

impl Report {
    /// One reference's part of the `--json` document.
    pub fn to_json(&self, reference: &Reference, mode: Mode, error: Option<&Error>) -> Value {
        let mut doc = json!({ "reference": reference.to_string(), "name": reference.name() });
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
    fn to_json(&self) -> Value {
        let mut file =
            json!({ "title": self.title, "size": self.size, "digest": self.digest.to_string() });
        if let Some(path) = &self.path {
            file["path"] = json!(path.to_string_lossy());
            file["status"] = json!(if self.up_to_date {
                "up to date"
            } else {
                "written"
            });
        }
        if let Some(media_type) = &self.media_type {
            file["mediaType"] = json!(media_type);
        }
        file
    }
}

pub fn run(
    client: &mut Client,
    reference: &Reference,
    args: &Args,
    progress: &mut Progress,
    report: &mut Report,
) -> Result<()> {
    let repo = reference.repository();
    match (args.mode, reference.target()) {
        (Mode::Tags, _) => {
            report.tags = client.tags(repo)?;
            Ok(())
        }
        (_, Target::Blob(digest)) => fetch_blob(client, repo, digest, args, progress, report),
        (_, Target::Tag(tag)) => pull_package(client, repo, tag, args, progress, report),
    }
}

/// `oras blob fetch`: one blob, to a file named after the repository, or as `-o` says.
fn fetch_blob(
    client: &mut Client,
    repo: &Repository,
    digest: &Digest,
    args: &Args,
    progress: &mut Progress,
    report: &mut Report,
) -> Result<()> {
    let job = Job {
        repo,
        digest,
        size: None,
        quiet: args.quiet,
    };
    let target = match &args.output {
        Some(Output::Stdout) => None,
        Some(Output::Path(path)) if store::names_directory(path) => {
            Some(path.join(repo.last_segment()))
        }
        Some(Output::Path(path)) => Some(path.clone()),
        None => Some(PathBuf::from(repo.last_segment())),
    };
    let outcome = write(
        client,
        &job,
        target.as_deref(),
        repo.last_segment(),
        progress,
    )?;
    record(args, report, None, target, &job, None, outcome);
    Ok(())
}

/// `oras pull`: every layer with a title (that `--include`/`--exclude` keep), written under
/// that title in the output directory; or, with `--list`, only named.
fn pull_package(
    client: &mut Client,
    repo: &Repository,
    tag: &str,
    args: &Args,
    progress: &mut Progress,
    report: &mut Report,
) -> Result<()> {
    let mut manifest = client.manifest(repo, tag)?;
    if let Manifest::Index { manifests } = &manifest {
        let chosen = args.platform.select(manifests)?.digest.to_string();
        manifest = client.manifest(repo, &chosen)?;
    }
    let Manifest::Image { layers } = manifest else {
        return Err(Error::BadManifest(
            "an index whose entry is another index".into(),
        ));
    };
    let chosen = choose(&layers, args)?;

    if args.mode == Mode::List {
        for layer in chosen {
            report.files.push(File {
                title: layer.title.clone(),
                path: None,
                size: layer.size,
                digest: layer.digest.clone(),
                media_type: Some(layer.media_type.clone()),
                up_to_date: false,
            });
        }
        return Ok(());
    }

    let root = match &args.output {
        Some(Output::Path(path)) => path.as_path(),
        _ => Path::new("."),
    };
    if args.output == Some(Output::Stdout) && chosen.len() != 1 {
        let titles: Vec<&str> = chosen.iter().filter_map(|l| l.title.as_deref()).collect();
        return Err(Error::NotOneFile(titles.join(", ")));
    }
    // Every path is decided before the first download, so one bad title writes nothing.
    if args.output != Some(Output::Stdout) {
        fs::create_dir_all(root).map_err(Error::file(root))?;
    }
    let titles: Vec<&str> = chosen
        .iter()
        .map(|l| l.title.as_deref().unwrap_or_default())
        .collect();
    let paths: Vec<Option<PathBuf>> = match args.output {
        Some(Output::Stdout) => {
            titles
                .iter()
                .try_for_each(|title| store::plain_text(title))?;
            vec![None; chosen.len()]
        }
        _ => store::plan(root, &titles)?.into_iter().map(Some).collect(),
    };
    for ((path, layer), title) in paths.into_iter().zip(chosen).zip(titles) {
        let job = Job {
            repo,
            digest: &layer.digest,
            size: Some(layer.size),
            quiet: args.quiet,
        };
        let outcome =
            write(client, &job, path.as_deref(), title, progress).map_err(|e| Error::Layer {
                title: title.to_string(),
                source: Box::new(e),
            })?;
        record(
            args,
            report,
            Some(title),
            path,
            &job,
            Some(&layer.media_type),
            outcome,
        );
    }
    Ok(())
}

/// The titled layers that `--include` and `--exclude` keep; untitled ones are noted.
fn choose<'a>(layers: &'a [Descriptor], args: &Args) -> Result<Vec<&'a Descriptor>> {
    let mut chosen = Vec::new();
    let mut titles = HashSet::new();
    for layer in layers {
        let Some(title) = &layer.title else {
            if !args.quiet && args.mode == Mode::Pull {
                progress::note(format_args!(
                    "skipped layer {} ({} bytes): it has no title",
                    layer.digest, layer.size
                ));
            }
            continue;
        };
        if !titles.insert(title.as_str()) {
            return Err(Error::DuplicateTitle(title.clone()));
        }
        if args.wants(title) {
            chosen.push(layer);
        }
    }
    if titles.is_empty() {
        return Err(Error::BadManifest(
            "no layer has an org.opencontainers.image.title: there is no file to write".into(),
        ));
    }
    if chosen.is_empty() {
        let mut all: Vec<&str> = titles.into_iter().collect();
        all.sort_unstable();
        return Err(Error::NoMatch(all.join(", ")));
    }
    Ok(chosen)
}

/// Downloads one blob to `target`, or to stdout when there is none, with progress.
fn write(
    client: &mut Client,
    job: &Job,
    target: Option<&Path>,
    name: &str,
    progress: &mut Progress,
) -> Result<Outcome> {
    progress.start(name, job.size);
    let outcome = match target {
        Some(path) => download::to_path(client, job, path, progress),
        None => download::to_stdout(client, job, progress).map(Outcome::Written),
    };
    let bytes = match &outcome {
        Ok(Outcome::Written(n)) => *n,
        _ => 0,
    };
    progress.end(bytes);
    outcome
}

/// Prints the status line (on stderr: stdout is for data) and adds the file to the report.
fn record(
    args: &Args,
    report: &mut Report,
    title: Option<&str>,
    path: Option<PathBuf>,
    job: &Job,
    media_type: Option<&String>,
    outcome: Outcome,
) {
    let (size, up_to_date) = match outcome {
        Outcome::Written(n) => (n, false),
        Outcome::UpToDate(n) => (n, true),
    };
    if !args.quiet {
        let shown = match &path {
            Some(p) => p.strip_prefix(".").unwrap_or(p).display().to_string(),
            None => "(stdout)".to_string(),
        };
        let note = if up_to_date { "  up to date" } else { "" };
        // `sha256:<12 hex>`, or `sha512:` for a layer a manifest names so.
        let digest = job.digest.to_string();
        let algorithm = digest.split(':').next().unwrap_or_default();
        progress::note(format_args!(
            "{shown}  {}  {algorithm}:{}{note}",
            human_size(size),
            job.digest.short()
        ));
    }
    report.files.push(File {
        title: title.map(str::to_string),
        path,
        size,
        digest: job.digest.clone(),
        media_type: media_type.cloned(),
        up_to_date,
    });
}
