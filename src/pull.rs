//! The job itself, top to bottom: a reference becomes a manifest, the manifest becomes
//! descriptors, the descriptors become verified files. What was done is recorded in a
//! `Report` (`report.rs`) that `main` prints (as text or JSON); where the bytes come from is
//! `fetch.rs`.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::cli::{Args, Mode, Output};
use crate::content::digest::Digest;
use crate::content::manifest::{Descriptor, Manifest};
use crate::disk::layout::Layout;
use crate::disk::paths;
use crate::disk::store::{self, Outcome};
use crate::error::{Error, Result};
use crate::fetch::{Fetch, From};
use crate::net::mirrors::Source;
use crate::net::registry::Client;
use crate::progress::{self, human_size, Progress};
use crate::reference::{Place, Reference, Repository, Target, DEFAULT_TAG};

pub use crate::report::{File, Report, Status};

/// Does what `args` asks for one reference, from the first of its sources (mirrors, then
/// the registry, see `mirrors.rs`) that can. A mirror that fails in any way that is about
/// what it served (unreachable, 404, 5xx, a wrong byte) is noted and the next source tried;
/// the registry's own failure is the result. Bytes already on stdout cannot be taken back,
/// so once a blob streams there, its failure is final. `cache`, when given, keeps every
/// manifest and blob verified, and serves blobs it already holds.
pub fn run(
    client: &mut Client,
    reference: &Reference,
    sources: &[Source],
    cache: Option<&Layout>,
    args: &Args,
    progress: &mut Progress,
    report: &mut Report,
) -> Result<()> {
    if let Place::Layout(path) = reference.place() {
        let layout = Layout::open(path)?;
        return run_from(
            client,
            reference,
            From::Layout(&layout),
            None,
            args,
            progress,
            report,
        );
    }
    for (i, source) in sources.iter().enumerate() {
        *report = Report::default();
        let from = From::Registry(&source.repository);
        let result = run_from(client, reference, from, cache, args, progress, report);
        match result {
            Err(e)
                if source.mirror
                    && i + 1 < sources.len()
                    && e.is_source_failure()
                    && !report.streamed =>
            {
                if !args.quiet {
                    progress::note(format_args!(
                        "mirror {}: {e}; trying {}",
                        source.repository.name(),
                        sources[i + 1].repository.name()
                    ));
                }
            }
            result => return result,
        }
    }
    Err(Error::Usage("no source to fetch from".into()))
}

/// `run` for one source.
fn run_from(
    client: &mut Client,
    reference: &Reference,
    from: From,
    cache: Option<&Layout>,
    args: &Args,
    progress: &mut Progress,
    report: &mut Report,
) -> Result<()> {
    let name = reference.file_name();
    let mut fetch = Fetch {
        client,
        from,
        cache,
    };
    match (args.mode, reference.target()) {
        (Mode::Tags, _) => {
            report.tags = match from {
                From::Registry(repo) => fetch.client.tags(repo)?,
                From::Layout(layout) => layout.names()?,
            };
            Ok(())
        }
        (_, Target::Blob(digest)) => fetch_blob(&mut fetch, &name, digest, args, progress, report),
        (_, Target::Tag(tag)) => {
            match pull_package(&mut fetch, reference, tag, args, progress, report) {
                Err(Error::NotFound(what)) if reference.tag_defaulted() => match from {
                    From::Registry(repo) => Err(no_default_tag(fetch.client, repo, what)),
                    From::Layout(_) => Err(Error::NotFound(what)),
                },
                other => other,
            }
        }
        (_, Target::Manifest(digest)) => pull_package(
            &mut fetch,
            reference,
            &digest.to_string(),
            args,
            progress,
            report,
        ),
    }
}

/// A reference without a tag (pkgforge's `ghcr_url`) found no `latest`: say so, and which
/// tags there are when they are few, rather than a bare 404.
fn no_default_tag(client: &mut Client, repo: &Repository, what: String) -> Error {
    const FEW: usize = 10;
    let hint = match client.tags(repo) {
        Ok(tags) if tags.is_empty() => "it has no tags".to_string(),
        Ok(tags) if tags.len() <= FEW => format!("its tags: {}", tags.join(", ")),
        Ok(tags) => format!(
            "it has {} tags: {}, ...",
            tags.len(),
            tags[..FEW].join(", ")
        ),
        Err(_) => "its tags could not be listed".to_string(),
    };
    Error::NotFound(format!(
        "{what} (no tag was given, so '{DEFAULT_TAG}' was tried; {hint}; \
         'ocidl --tags {}' lists them)",
        repo.name()
    ))
}

/// `oras blob fetch`: one blob, to a file named after the reference (`name`), or as `-o`
/// says.
fn fetch_blob(
    fetch: &mut Fetch,
    name: &str,
    digest: &Digest,
    args: &Args,
    progress: &mut Progress,
    report: &mut Report,
) -> Result<()> {
    let target = match &args.output {
        Some(Output::Stdout) => None,
        Some(Output::Path(path)) if paths::names_directory(path) => Some(path.join(name)),
        Some(Output::Path(path)) => Some(path.clone()),
        None => Some(PathBuf::from(name)),
    };
    if args.mode == Mode::Fill {
        let size = fetch.fill(digest, None, args.quiet, progress)?;
        report.files.push(File {
            title: None,
            path: None,
            size,
            digest: digest.clone(),
            media_type: None,
            status: Status::Cached,
        });
        return Ok(());
    }
    report.streamed = target.is_none();
    let outcome = write(fetch, digest, None, target.as_deref(), name, args, progress)?;
    record(args, report, None, target, digest, None, outcome);
    Ok(())
}

/// `oras pull`: every layer with a title (that `--include`/`--exclude` keep), written under
/// that title in the output directory; or, with `--list`, only named.
fn pull_package(
    fetch: &mut Fetch,
    reference: &Reference,
    tag: &str,
    args: &Args,
    progress: &mut Progress,
    report: &mut Report,
) -> Result<()> {
    let top = fetch.manifest(tag)?;
    report.manifest = Some(top.digest.clone());
    let mut manifest = top.manifest.clone();
    if let Manifest::Index { manifests } = &manifest {
        let chosen = args.platform.select(manifests)?.digest.to_string();
        manifest = fetch.manifest(&chosen)?.manifest;
    }
    let Manifest::Image { config, layers } = manifest else {
        return Err(Error::BadManifest(
            "an index whose entry is another index".into(),
        ));
    };
    let chosen = choose(&layers, args)?;

    if args.mode == Mode::List {
        // The pin is in `--json`'s document; in text, a note beside the listing.
        if !args.quiet && !args.json && tag.parse::<Digest>().is_err() {
            let name = reference.name();
            progress::note(format_args!(
                "{name} is manifest {} (pin it: {name}@{})",
                top.digest, top.digest
            ));
        }
        for layer in chosen {
            report.files.push(File::named(layer, Status::Listed));
        }
        return Ok(());
    }

    // A cache is a layout others read (skopeo wants the config): it gets the config too.
    if let (Some(config), Some(_), From::Registry(_), Mode::Pull | Mode::Fill) =
        (&config, fetch.cache, fetch.from, args.mode)
    {
        fetch.fill(
            &config.digest,
            Some(config.size),
            true,
            &mut Progress::with(false),
        )?;
    }
    if args.mode == Mode::Fill {
        for layer in chosen {
            fetch.fill(&layer.digest, Some(layer.size), args.quiet, progress)?;
            if !args.quiet {
                progress::note(format_args!(
                    "{}  {}  {}  cached",
                    layer.title.as_deref().unwrap_or("-"),
                    human_size(layer.size),
                    layer.digest.brief()
                ));
            }
            report.files.push(File::named(layer, Status::Cached));
        }
        if let Some(cache) = fetch.cache {
            cache.record(&reference.name(), &top, fetch.client.timeout())?;
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
    if args.mode == Mode::Verify {
        return verify(root, &chosen, report);
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
                .try_for_each(|title| paths::plain_text(title))?;
            vec![None; chosen.len()]
        }
        _ => paths::plan(root, &titles)?.into_iter().map(Some).collect(),
    };
    report.streamed = args.output == Some(Output::Stdout);
    for ((path, layer), title) in paths.into_iter().zip(chosen).zip(titles) {
        let size = Some(layer.size);
        let outcome = write(
            fetch,
            &layer.digest,
            size,
            path.as_deref(),
            title,
            args,
            progress,
        )
        .map_err(|e| Error::Layer {
            title: title.to_string(),
            source: Box::new(e),
        })?;
        record(
            args,
            report,
            Some(title),
            path,
            &layer.digest,
            Some(&layer.media_type),
            outcome,
        );
    }
    // The cache now holds the package whole: name it there, as skopeo's oci:DIR:NAME reads.
    if let (Some(cache), From::Registry(_)) = (fetch.cache, fetch.from) {
        cache.record(&reference.name(), &top, fetch.client.timeout())?;
    }
    Ok(())
}

/// `--verify`: whether each file in `root` holds its layer's content, read from the disk
/// alone (no blob is requested). Any file that is not intact makes it a failure.
fn verify(root: &Path, chosen: &[&Descriptor], report: &mut Report) -> Result<()> {
    let titles: Vec<&str> = chosen
        .iter()
        .map(|l| l.title.as_deref().unwrap_or_default())
        .collect();
    // A directory that is not there holds nothing: every file is missing.
    let paths = match root.is_dir() {
        true => paths::plan(root, &titles)?,
        false => titles.iter().map(|t| root.join(t)).collect(),
    };
    for (path, layer) in paths.into_iter().zip(chosen) {
        let status = match store::holds(&path, &layer.digest, Some(layer.size))? {
            Some(_) => Status::Intact,
            None if fs::symlink_metadata(&path).is_ok() => Status::Different,
            None => Status::Missing,
        };
        report.files.push(File {
            title: layer.title.clone(),
            path: Some(path),
            size: layer.size,
            digest: layer.digest.clone(),
            media_type: Some(layer.media_type.clone()),
            status,
        });
    }
    let bad = report
        .files
        .iter()
        .filter(|f| f.status != Status::Intact)
        .count();
    match bad {
        0 => Ok(()),
        bad => Err(Error::NotIntact {
            bad,
            of: report.files.len(),
        }),
    }
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

/// Delivers one blob to `target`, or to stdout when there is none, with progress.
fn write(
    fetch: &mut Fetch,
    digest: &Digest,
    size: Option<u64>,
    target: Option<&Path>,
    name: &str,
    args: &Args,
    progress: &mut Progress,
) -> Result<Outcome> {
    progress.start(name, size);
    let outcome = fetch.blob(digest, size, target, args.quiet, progress);
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
    digest: &Digest,
    media_type: Option<&String>,
    outcome: Outcome,
) {
    let (size, up_to_date) = match outcome {
        Outcome::Written(n) => (n, false),
        Outcome::UpToDate(n) => (n, true),
    };
    let status = match up_to_date {
        true => Status::UpToDate,
        false => Status::Written,
    };
    if !args.quiet {
        let shown = match &path {
            Some(p) => p.strip_prefix(".").unwrap_or(p).display().to_string(),
            None => "(stdout)".to_string(),
        };
        let note = if up_to_date { "  up to date" } else { "" };
        progress::note(format_args!(
            "{shown}  {}  {}{note}",
            human_size(size),
            digest.brief()
        ));
    }
    report.files.push(File {
        title: title.map(str::to_string),
        path,
        size,
        digest: digest.clone(),
        media_type: media_type.cloned(),
        status,
    });
}
