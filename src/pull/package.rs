//! `oras pull`: a manifest becomes its files. The titled layers `--include`/`--exclude`
//! keep are planned as paths before the first blob is asked for, delivered into temporary
//! files (one by one, or all at once from a registry), and renamed into place together only
//! once every one of them verified; or, with `--list`, `--verify` and `--cache-only`, named,
//! checked on disk, or put in the cache.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::cli::{Mode, Output};
use crate::content::digest::Verifier;
use crate::content::manifest::{Descriptor, Fetched, Manifest};
use crate::deliver::{resumable, Deliver, Origin, Wanted};
use crate::disk::fresh::{self, Found};
use crate::disk::layout::SOURCE;
use crate::disk::partial::{self, Stage};
use crate::disk::paths;
use crate::error::{Error, Result};
use crate::progress::{human_size, Progress};
use crate::reference::{Reference, Target};
use crate::report::{File, Report, Status};
use crate::settings::Job;

use super::files::{into_file, open_file, stream};

/// `oras pull`: every layer with a title (that `--include`/`--exclude` keep), written under
/// that title in the output directory; or, with `--list`, only named.
/// `name`: what the cache records the manifest as.
pub(super) fn pull_package(
    d: &mut Deliver,
    reference: &Reference,
    top: &Fetched,
    name: &str,
    job: &Job,
    fallback: bool,
    report: &mut Report,
) -> Result<()> {
    report.manifest = Some(top.digest.clone());
    let mut manifest = top.manifest.clone();
    if let Manifest::Index { manifests } = &manifest {
        let chosen = job.platform.select(manifests)?.digest.to_string();
        manifest = d.manifest(&chosen)?.manifest;
    }
    let Manifest::Image { config, layers } = manifest else {
        return Err(Error::BadManifest(
            "an index whose entry is another index".into(),
        ));
    };
    let chosen = choose(&layers, job, d.progress)?;
    let root = match &job.output {
        Some(Output::Path(path)) => path.as_path(),
        _ => Path::new("."),
    };
    match job.mode {
        Mode::List => {
            // The pin is in `--json`'s document; in text, a note beside the listing.
            if !job.json && matches!(reference.target(), Target::Tag(_)) {
                let name = reference.name();
                d.progress.note(format_args!(
                    "{name} is manifest {} (pin it: {name}@{})",
                    top.digest, top.digest
                ));
            }
            report.files = chosen
                .iter()
                .map(|l| File::named(l, Status::Listed))
                .collect();
            return Ok(());
        }
        Mode::Verify => return verify(root, &chosen, report),
        Mode::Fill => {
            if let Some(config) = &config {
                d.fill(&config.digest, Some(config.size), "config")?;
            }
            for layer in chosen {
                let title = layer.title.as_deref().unwrap_or("-");
                d.fill(&layer.digest, Some(layer.size), title)?;
                d.progress.note(format_args!(
                    "{title}  {}  {}  cached",
                    human_size(layer.size),
                    layer.digest.brief()
                ));
                report.files.push(File::named(layer, Status::Cached));
            }
            return record(d, name, top, report);
        }
        Mode::Pull | Mode::Tags => {}
    }
    // A cache is a layout others read (skopeo wants the config): it gets the config too,
    // but the files do not need it, so failing to get it is only a note.
    if let (Some(config), Some(_)) = (&config, d.cache) {
        let mut quiet = Progress::silent();
        let mut fill = Deliver {
            client: &mut *d.client,
            origin: d.origin,
            cache: d.cache,
            progress: &mut quiet,
            pipeline: false,
        };
        if let Err(e) = fill.fill(&config.digest, Some(config.size), "config") {
            d.progress
                .note(format_args!("cache: the package's config: {e}"));
        }
    }
    let titles: Vec<&str> = chosen
        .iter()
        .map(|l| l.title.as_deref().unwrap_or_default())
        .collect();
    if job.output == Some(Output::Stdout) {
        let [layer] = chosen[..] else {
            return Err(Error::NotOneFile(titles.join(", ")));
        };
        paths::plain_text(titles[0])?;
        let size = stream(d, &layer.digest, Some(layer.size), titles[0], None).map_err(|e| {
            Error::Layer {
                title: titles[0].to_string(),
                source: Box::new(e),
            }
        })?;
        let title = Some(titles[0]);
        let media_type = Some(&layer.media_type);
        report.record(
            d.progress,
            title,
            None,
            &layer.digest,
            media_type,
            size,
            Status::Written,
        );
        return Ok(());
    }
    // Every path is decided before the first blob is asked for, so one bad title writes
    // nothing; every file is staged, and renamed into place only once all of them verified.
    let paths = paths::plan(root, &titles)?;
    let watch: Vec<PathBuf> = paths
        .iter()
        .zip(&chosen)
        .map(|(path, layer)| paths::partial_path(path, &layer.digest))
        .collect();
    let files: Vec<(&Path, &Descriptor, &str)> = paths
        .iter()
        .zip(&chosen)
        .zip(&titles)
        .map(|((path, layer), title)| (path.as_path(), *layer, *title))
        .collect();
    let mut stage = Stage::default();
    let delivered = match d.pipelines(files.len()) {
        true => all_at_once(d, &files, root, &watch, fallback, &mut stage),
        false => one_by_one(d, &files, root, &watch, fallback, &mut stage),
    };
    let status = match delivered {
        Ok(status) => status,
        Err((title, e)) => {
            // The files staged are kept for the next run only when it can resume them:
            // after a network failure of this, the last, source.
            if fallback || !e.is_transient() {
                stage.discard();
            }
            return Err(Error::Layer {
                title: title.to_string(),
                source: Box::new(e),
            });
        }
    };
    stage.commit()?;
    for (((path, layer), title), (size, status)) in
        paths.into_iter().zip(&chosen).zip(&titles).zip(status)
    {
        let media_type = Some(&layer.media_type);
        report.record(
            d.progress,
            Some(title),
            Some(path),
            &layer.digest,
            media_type,
            size,
            status,
        );
    }
    // The cache now holds the package whole: name it there, as skopeo's oci:DIR:NAME reads.
    if let Origin::Registry(_) = d.origin {
        record(d, name, top, report)?;
    }
    Ok(())
}

/// A package's files (path, layer, title) one after another, each staged in `stage` once
/// verified; what became of each, or the first failure and whose it was.
fn one_by_one<'t>(
    d: &mut Deliver,
    files: &[(&Path, &Descriptor, &'t str)],
    root: &Path,
    watch: &[PathBuf],
    fallback: bool,
    stage: &mut Stage,
) -> std::result::Result<Vec<(u64, Status)>, (&'t str, Error)> {
    let mut status = Vec::new();
    for &(path, layer, title) in files {
        let size = Some(layer.size);
        let root = Some(root);
        match into_file(
            d,
            path,
            root,
            &layer.digest,
            size,
            title,
            watch,
            fallback,
            stage,
        ) {
            Ok(done) => status.push(done),
            Err(e) => return Err((title, e)),
        }
    }
    Ok(status)
}

/// `one_by_one`, with every temporary file opened first and the blobs asked for all at once
/// (`Deliver::blobs`).
fn all_at_once<'t>(
    d: &mut Deliver,
    files: &[(&Path, &Descriptor, &'t str)],
    root: &Path,
    watch: &[PathBuf],
    fallback: bool,
    stage: &mut Stage,
) -> std::result::Result<Vec<(u64, Status)>, (&'t str, Error)> {
    let mut status = Vec::new();
    let mut partials = Vec::new();
    for &(path, layer, title) in files {
        let size = Some(layer.size);
        match open_file(d, path, Some(root), &layer.digest, size, watch) {
            Ok(Ok(held)) => status.push((held, Status::UpToDate)),
            Ok(Err(partial)) => {
                status.push((layer.size, Status::Written));
                partials.push((partial, layer, title));
            }
            Err(e) => {
                partials
                    .into_iter()
                    .for_each(|(p, _, _)| stage.drop_partial(p));
                return Err((title, e));
            }
        }
    }
    let mut jobs: Vec<Wanted> = partials
        .iter_mut()
        .map(|(partial, layer, title)| Wanted {
            digest: layer.digest.clone(),
            size: layer.size,
            name: title.to_string(),
            partial,
        })
        .collect();
    let delivered = d.blobs(&mut jobs);
    drop(jobs);
    let mut failed = None;
    for ((partial, _, title), delivered) in partials.into_iter().zip(delivered) {
        // A file given up goes through the stage, which removes the directories it made only
        // once no other file of the package is in them.
        let e = match delivered {
            // Not tried after a failure.
            None => {
                stage.drop_partial(partial);
                continue;
            }
            Some(Ok(_)) => match partial.finish() {
                Ok(staged) => {
                    stage.push(staged);
                    continue;
                }
                Err(e) => e,
            },
            Some(Err(e)) if !fallback && resumable(&partial, &e) => Error::Kept {
                path: partial.path().to_path_buf(),
                source: Box::new(e),
            },
            Some(Err(e)) => {
                stage.drop_partial(partial);
                e
            }
        };
        failed.get_or_insert((title, e));
    }
    match failed {
        Some(failed) => Err(failed),
        None => Ok(status),
    }
}

/// Names `top` in the cache as `name`, with the source that said what it is (`SOURCE`).
fn record(d: &mut Deliver, name: &str, top: &Fetched, report: &Report) -> Result<()> {
    let source = report.source.as_deref().unwrap_or_default();
    let source = match report.mirror_said {
        true => format!("mirror {source}"),
        false => source.to_string(),
    };
    d.record(name, top, &[(SOURCE, &source)])
}

/// `--verify`: whether each file in `root` holds its layer's content, read from the disk
/// alone (no blob is requested). Paths are planned as for a pull, whether or not `root`
/// exists, so no title leads anywhere else; what is not a regular file is `different`.
fn verify(root: &Path, chosen: &[&Descriptor], report: &mut Report) -> Result<()> {
    let titles: Vec<&str> = chosen
        .iter()
        .map(|l| l.title.as_deref().unwrap_or_default())
        .collect();
    for (path, layer) in paths::plan(root, &titles)?.into_iter().zip(chosen) {
        let status = match fresh::open_regular(&path).map_err(Error::file(&path))? {
            Found::Missing => Status::Missing,
            Found::Other => Status::Different,
            Found::File(mut file, _) => {
                let mut verifier = Verifier::new(&layer.digest, Some(layer.size));
                let fed = partial::feed(&mut file, &path, &mut verifier);
                match fed.and_then(|()| verifier.finish()) {
                    Ok(_) => Status::Intact,
                    Err(Error::File { path, cause }) => return Err(Error::File { path, cause }),
                    Err(_) => Status::Different,
                }
            }
        };
        report.files.push(File {
            path: Some(path),
            status,
            ..File::named(layer, status)
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
fn choose<'a>(
    layers: &'a [Descriptor],
    job: &Job,
    progress: &Progress,
) -> Result<Vec<&'a Descriptor>> {
    let mut chosen = Vec::new();
    let mut titles = HashSet::new();
    for layer in layers {
        let Some(title) = &layer.title else {
            if job.mode == Mode::Pull {
                progress.note(format_args!(
                    "skipped layer {} ({} bytes): it has no title",
                    layer.digest, layer.size
                ));
            }
            continue;
        };
        if !titles.insert(title.as_str()) {
            return Err(Error::DuplicateTitle(title.clone()));
        }
        if job.wants(title) {
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
