//! The job itself, top to bottom: a reference becomes a manifest, the manifest becomes
//! descriptors, the descriptors become verified files. Each try takes one source (a mirror,
//! the registry, or an `oci:` layout); every byte goes through `deliver`. A package's files
//! are staged, and renamed into place only when all of them verified from that one source.
//! What a pull did is its returned `Report` (`report.rs`), which `main` prints.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::{Mode, Output};
use crate::content::digest::{Digest, Verifier};
use crate::content::manifest::{Descriptor, Fetched, Manifest};
use crate::deliver::{settle, Cache, Deliver, Origin, Sink, Stream, Wanted};
use crate::disk::fresh::{self, Found};
use crate::disk::layout::Layout;
use crate::disk::partial::{self, Partial, Stage};
use crate::disk::paths;
use crate::error::{Error, Result};
use crate::net::mirrors::Source;
use crate::net::registry::Client;
use crate::progress::{human_size, Progress};
use crate::reference::{Place, Reference, Repository, Target, DEFAULT_TAG};
use crate::settings::Job;
use crate::sys;

pub use crate::report::{File, Report, Status};

/// One run of ocidl: what every reference shares.
pub struct Puller<'a> {
    pub client: &'a mut Client,
    pub cache: Option<&'a Cache>,
    pub job: &'a Job,
    pub progress: &'a mut Progress,
    /// The user's `--retries`; a mirror gets none.
    retries: u32,
    /// Mirrors that could not be reached or served what did not verify: not asked again in
    /// this run, so each costs at most one `--timeout` whatever the number of references.
    dead: HashSet<String>,
}

/// Where tag pages go as they arrive (`--tags`): printed, so memory holds one page.
pub type Tags<'t> = &'t mut dyn FnMut(&[String]) -> Result<()>;

impl<'a> Puller<'a> {
    pub fn new(
        client: &'a mut Client,
        cache: Option<&'a Cache>,
        job: &'a Job,
        progress: &'a mut Progress,
    ) -> Puller<'a> {
        let retries = client.retries();
        Puller {
            client,
            cache,
            job,
            progress,
            retries,
            dead: HashSet::new(),
        }
    }

    /// Does what the job asks for one reference, from its `sources` (mirrors, then the
    /// registry, see `net/mirrors.rs`), or from the `oci:` layout it names. A tag is asked
    /// of the sources that may answer it (see `resolve`); the content then comes from the
    /// first source that can serve it, every byte verified. A mirror that fails in a way that
    /// is about what it served (`Error::is_source_failure`) is noted, everything it left is
    /// removed, and the next source is tried; the last source's failure is the result.
    pub fn run(
        &mut self,
        reference: &Reference,
        sources: &[Source],
        tags: Tags,
    ) -> (Report, Result<()>) {
        if let Place::Layout(path) = reference.place() {
            let layout = match Layout::open(path) {
                Ok(layout) => layout,
                Err(e) => return (Report::default(), Err(e)),
            };
            let mut d = Deliver {
                client: &mut *self.client,
                origin: Origin::Layout(&layout),
                cache: None,
                progress: &mut *self.progress,
            };
            if self.job.mode == Mode::Tags {
                let names = layout.names();
                return (Report::default(), names.and_then(|names| tags(&names)));
            }
            return attempt(&mut d, reference, self.job, false, None);
        }
        let alive: Vec<&Source> = sources
            .iter()
            .filter(|s| !self.dead.contains(&key(s)))
            .collect();
        let by_tag: Vec<&Source> = alive.iter().copied().filter(|s| s.tags).collect();
        let tag = match (self.job.mode, reference.target()) {
            (Mode::Tags, _) => return (Report::default(), self.list_tags(&by_tag, tags)),
            (_, Target::Tag(tag)) => tag,
            _ => return self.content(reference, sources, None),
        };
        // Each source that may say what the tag means is asked in turn; the content of the
        // manifest it names then comes from the first source that has it. When none has, a
        // mirror's answer is dropped and the next source asked.
        for (i, source) in by_tag.iter().enumerate() {
            if self.dead.contains(&key(source)) {
                continue;
            }
            let next = by_tag.get(i + 1).filter(|_| source.mirror);
            let top = match (self.with(source, |d, _| d.manifest(tag)), next) {
                (Ok(top), _) => top,
                (Err(e), Some(next)) if e.is_source_failure() => {
                    self.skip(source, next, &e);
                    continue;
                }
                (Err(Error::NotFound(what)), None) if reference.tag_defaulted() => {
                    let e = no_default_tag(self.client, &source.repository, what);
                    return (Report::default(), Err(e));
                }
                (Err(e), _) => return (Report::default(), Err(e)),
            };
            let by = source.repository.name();
            if source.mirror {
                self.progress.note(format_args!(
                    "{by}:{tag} is manifest {} as mirror {} says: a mirror's answer for a tag cannot be verified",
                    top.digest,
                    source.repository.registry().host()
                ));
            }
            let (report, result) = self.content(reference, sources, Some((&top, source)));
            match (result, next) {
                (Err(e), Some(next)) if e.is_source_failure() => self.progress.note(format_args!(
                    "the manifest mirror {by} gave for {tag}: {e}; asking {} what {tag} means",
                    next.repository.name()
                )),
                (result, _) => return (report, result),
            }
        }
        (
            Report::default(),
            Err(Error::Usage("no source to ask what the tag means".into())),
        )
    }

    /// The content `top` (or the reference's digest) names, from the first of `sources` that
    /// serves it whole.
    fn content(
        &mut self,
        reference: &Reference,
        sources: &[Source],
        top: Option<(&Fetched, &Source)>,
    ) -> (Report, Result<()>) {
        let alive: Vec<&Source> = sources
            .iter()
            .filter(|s| !self.dead.contains(&key(s)))
            .collect();
        for (i, source) in alive.iter().enumerate() {
            let next = alive.get(i + 1).filter(|_| source.mirror);
            let (report, result) = self.with(source, |d, job| {
                attempt(d, reference, job, next.is_some(), top)
            });
            match (result, next) {
                (Err(e), Some(next)) if e.is_source_failure() => self.skip(source, next, &e),
                (result, _) => return (report, result),
            }
        }
        (
            Report::default(),
            Err(Error::Usage("no source to fetch from".into())),
        )
    }

    /// `f` with a `Deliver` from `source`: a mirror gets one try at each request (it is
    /// not the registry, and another source comes after it).
    fn with<T>(&mut self, source: &Source, f: impl FnOnce(&mut Deliver, &Job) -> T) -> T {
        self.client
            .set_retries(if source.mirror { 0 } else { self.retries });
        let mut d = Deliver {
            client: &mut *self.client,
            origin: Origin::Registry(&source.repository),
            cache: self.cache,
            progress: &mut *self.progress,
        };
        let done = f(&mut d, self.job);
        self.client.set_retries(self.retries);
        done
    }

    /// Notes a mirror's failure before `next` is tried, and remembers a mirror that could
    /// not be reached or served what did not verify.
    fn skip(&mut self, source: &Source, next: &Source, e: &Error) {
        if e.is_dead_source() {
            self.dead.insert(key(source));
        }
        self.progress.note(format_args!(
            "mirror {}: {e}; trying {}",
            source.repository.name(),
            next.repository.name()
        ));
    }

    /// `--tags`: each page handed on as it arrives. Once one is, the list cannot be taken
    /// back, so no other source is tried after it.
    fn list_tags(&mut self, sources: &[&Source], tags: Tags) -> Result<()> {
        for (i, source) in sources.iter().enumerate() {
            let mut printed = false;
            let listed = self.with(source, |d, _| {
                d.client.tags(&source.repository, |page| {
                    printed = true;
                    tags(&page).map(|()| true)
                })
            });
            match (listed, sources.get(i + 1).filter(|_| source.mirror)) {
                (Err(e), Some(next)) if !printed && e.is_source_failure() => {
                    self.skip(source, next, &e)
                }
                (listed, _) => return listed,
            }
        }
        Err(Error::Usage("no source to list tags from".into()))
    }
}

/// A mirror's identity for `Puller::dead`: where it is, not which repository.
fn key(source: &Source) -> String {
    source.repository.registry().base_url()
}

/// `run` for one source. `fallback`: another source comes after this one, so a failure that
/// is this source's leaves nothing of it behind. `top`: the manifest a tag resolved to, and
/// the source that said so, when the reference is a tag.
fn attempt(
    d: &mut Deliver,
    reference: &Reference,
    job: &Job,
    fallback: bool,
    top: Option<(&Fetched, &Source)>,
) -> (Report, Result<()>) {
    let mut report = Report {
        via: reference
            .repository()
            .map(Repository::name)
            .filter(|own| *own != d.origin.name())
            .map(|_| d.origin.name()),
        ..Report::default()
    };
    // The name the cache records the manifest under: the reference's own, unless a mirror
    // said what its tag means; then the mirror's, for that is whose answer it is.
    let mut name = reference.name();
    let result = match (reference.target(), top) {
        (Target::Blob(digest), _) => {
            report.source = Some(d.origin.name());
            fetch_blob(d, reference, digest, job, fallback, &mut report)
        }
        (Target::Tag(tag), Some((top, by))) => {
            report.source = Some(by.repository.name());
            if by.mirror {
                name = format!("{}:{tag}", by.repository.name());
            }
            pull_package(d, reference, top, &name, job, fallback, &mut report)
        }
        // A digest, verified whoever serves it; or a name an `oci:` layout's index gives.
        (Target::Manifest(digest), _) => {
            report.source = Some(d.origin.name());
            d.manifest(&digest.to_string())
                .and_then(|top| pull_package(d, reference, &top, &name, job, fallback, &mut report))
        }
        (Target::Tag(tag), None) => {
            report.source = Some(d.origin.name());
            d.manifest(tag)
                .and_then(|top| pull_package(d, reference, &top, &name, job, fallback, &mut report))
        }
    };
    (report, result)
}

/// A reference without a tag (pkgforge's `ghcr_url`) found no `latest`: say so, and which
/// tags there are (the first few), rather than a bare 404.
fn no_default_tag(client: &mut Client, repo: &Repository, what: String) -> Error {
    const FEW: usize = 10;
    let mut first = Vec::new();
    let listed = client.tags(repo, |page| {
        first.extend(page.into_iter().take(FEW + 1 - first.len()));
        Ok(first.len() <= FEW)
    });
    let hint = match listed {
        Ok(()) if first.is_empty() => "it has no tags".to_string(),
        Ok(()) if first.len() <= FEW => format!("its tags: {}", first.join(", ")),
        Ok(()) => format!("its tags include {}, ...", first[..FEW].join(", ")),
        Err(_) => "its tags could not be listed".to_string(),
    };
    Error::NotFound(format!(
        "{what} (no tag was given, so '{DEFAULT_TAG}' was tried; {hint}; \
         'ocidl --tags {}' lists them)",
        repo.name()
    ))
}

/// `oras blob fetch`: one blob, to a file named after the reference, or as `-o` says.
fn fetch_blob(
    d: &mut Deliver,
    reference: &Reference,
    digest: &Digest,
    job: &Job,
    fallback: bool,
    report: &mut Report,
) -> Result<()> {
    let name = reference.file_name();
    if job.mode == Mode::Fill {
        let size = d.fill(digest, None, &name)?;
        report.files.push(File::cached(None, size, digest, None));
        return Ok(());
    }
    // The path, and the directory it must stay in when ocidl chose its name.
    let target = match &job.output {
        Some(Output::Stdout) => None,
        Some(Output::Path(dir)) if paths::names_directory(dir) => {
            Some((dir.join(&name), Some(dir.as_path())))
        }
        Some(Output::Path(path)) => Some((path.clone(), None)),
        None => Some((PathBuf::from(&name), Some(Path::new(".")))),
    };
    let (size, status) = match &target {
        None => (stream(d, digest, None, &name, None)?, Status::Written),
        // A FIFO, a device, `/dev/stdout` the user named with `-o`: written into, never
        // replaced. Under a name ocidl chose, whatever is there is replaced, not fed.
        Some((path, None)) if paths::is_special(path) => {
            (stream(d, digest, None, &name, Some(path))?, Status::Written)
        }
        Some((path, root)) => {
            let mut stage = Stage::default();
            let into = into_file(
                d,
                path,
                *root,
                digest,
                None,
                &name,
                &[],
                fallback,
                &mut stage,
            );
            let status = into?;
            stage.commit()?;
            status
        }
    };
    let target = target.map(|(path, _)| path);
    report.record(d.progress, None, target, digest, None, size, status);
    Ok(())
}

/// One blob to a stream: standard output, or the FIFO or device at `path`.
fn stream(
    d: &mut Deliver,
    digest: &Digest,
    size: Option<u64>,
    name: &str,
    path: Option<&Path>,
) -> Result<u64> {
    let Some(path) = path else {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        let mut sink = Sink::Stream(Stream::stdout(&mut out));
        return d.blob(digest, size, name, &mut sink);
    };
    let mut out = open_stream(path, d.patience())?;
    let mut sink = Sink::Stream(Stream::named(&mut out, path));
    d.blob(digest, size, name, &mut sink)
}

/// Opens the FIFO or device at `path` for writing, waiting for a FIFO's reader `patience` at
/// most (an open that blocks would wait for ever), and only when it is still not a regular
/// file once open.
fn open_stream(path: &Path, patience: Duration) -> Result<fs::File> {
    const ENXIO: i32 = 6;
    let until = Instant::now() + patience;
    let file = loop {
        let opened = fs::OpenOptions::new()
            .write(true)
            .custom_flags(sys::O_NONBLOCK)
            .open(path);
        match opened {
            Ok(file) => break file,
            // A FIFO no one reads yet.
            Err(e) if e.raw_os_error() == Some(ENXIO) && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) if e.raw_os_error() == Some(ENXIO) => {
                return Err(Error::File {
                    path: path.to_path_buf(),
                    cause: io::Error::other(format!("no one read it for {} s", patience.as_secs())),
                })
            }
            Err(e) => return Err(Error::file(path)(e)),
        }
    };
    if file.metadata().map_err(Error::file(path))?.is_file() {
        return Err(Error::File {
            path: path.to_path_buf(),
            cause: io::Error::other("became a regular file"),
        });
    }
    sys::set_nonblocking(&file, false).map_err(Error::file(path))?;
    Ok(file)
}

/// The temporary file for a blob at `path`, or the size of what is there when it already
/// holds the blob. `root`: the directory it must stay inside, when ocidl chose the name.
/// `watch`: the package's other temporary files, which another ocidl may be filling (see
/// `Partial::open`).
fn open_file(
    d: &mut Deliver,
    path: &Path,
    root: Option<&Path>,
    digest: &Digest,
    size: Option<u64>,
    watch: &[PathBuf],
) -> Result<std::result::Result<u64, Partial>> {
    // Checked before anything is created (a read-only directory with the right file in it
    // is fine), and again once the temporary file is ours: another ocidl may have finished
    // it while we waited.
    if let Some(n) = partial::holds(path, digest, size)? {
        return Ok(Ok(n));
    }
    let partial = Partial::open(path, digest, root, watch, d.patience(), d.progress)?;
    if let Some(n) = partial::holds(path, digest, size)? {
        partial.discard();
        return Ok(Ok(n));
    }
    Ok(Err(partial))
}

/// One blob into a file at `path` (`open_file`, which says what `watch` is), delivered into
/// its temporary file and staged in `stage`. `fallback`: another source comes next, so a
/// failed file is not kept for a later run.
#[allow(clippy::too_many_arguments)]
fn into_file(
    d: &mut Deliver,
    path: &Path,
    root: Option<&Path>,
    digest: &Digest,
    size: Option<u64>,
    name: &str,
    watch: &[PathBuf],
    fallback: bool,
    stage: &mut Stage,
) -> Result<(u64, Status)> {
    let mut partial = match open_file(d, path, root, digest, size, watch)? {
        Ok(n) => return Ok((n, Status::UpToDate)),
        Err(partial) => partial,
    };
    let delivered = d.blob(digest, size, name, &mut Sink::File(&mut partial));
    let settled = match delivered {
        Err(e) if fallback => {
            partial.discard();
            Err(e)
        }
        delivered => settle(partial, delivered),
    };
    let (staged, n) = settled?;
    stage.push(staged);
    Ok((n, Status::Written))
}

/// `oras pull`: every layer with a title (that `--include`/`--exclude` keep), written under
/// that title in the output directory; or, with `--list`, only named.
/// `name`: what the cache records the manifest as.
fn pull_package(
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
        let settled = match delivered {
            // Not tried after a failure.
            None => {
                stage.drop_partial(partial);
                continue;
            }
            // Another source comes next: nothing of this one is kept.
            Some(Err(e)) if fallback => {
                stage.drop_partial(partial);
                Err(e)
            }
            Some(delivered) => settle(partial, delivered),
        };
        match settled {
            Ok((staged, _)) => stage.push(staged),
            Err(e) if failed.is_none() => failed = Some((title, e)),
            Err(_) => {}
        }
    }
    match failed {
        Some(failed) => Err(failed),
        None => Ok(status),
    }
}

/// Names `top` in the cache as `name`, with the source that said what it is.
fn record(d: &mut Deliver, name: &str, top: &Fetched, report: &Report) -> Result<()> {
    let source = report.source.as_deref().unwrap_or_default();
    d.record(name, top, &[(SOURCE, source)])
}

/// The annotation beside a name in the cache's `index.json`: who said what it means.
pub const SOURCE: &str = "dev.ocidl.source";

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
