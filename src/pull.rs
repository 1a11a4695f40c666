//! The job itself, top to bottom: a reference becomes a manifest, the manifest becomes
//! descriptors, the descriptors become verified files. This file chooses the source (a
//! mirror, the registry, or an `oci:` layout) and who may say what a tag means; `package.rs`
//! turns a manifest into its files, staged and renamed into place only when all of them
//! verified from one source; `files.rs` puts one blob into one file or stream. Every byte
//! goes through `deliver`. What a pull did is its returned `Report` (`report.rs`), which
//! `main` prints.

mod files;
mod package;

use std::collections::HashSet;

use crate::cli::Mode;
use crate::content::manifest::Fetched;
use crate::deliver::{Cache, Deliver, Origin};
use crate::disk::layout::Layout;
use crate::error::{Error, Result};
use crate::net::mirrors::Source;
use crate::net::registry::Client;
use crate::progress::Progress;
use crate::reference::{Place, Reference, Repository, Target, DEFAULT_TAG};
use crate::settings::Job;

use files::fetch_blob;
use package::pull_package;

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
/// Each page comes with the name of the source that listed it (a mirror's list is its own).
pub type Tags<'t> = &'t mut dyn FnMut(&str, &[String]) -> Result<()>;

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
                pipeline: false,
            };
            if self.job.mode == Mode::Tags {
                let names = layout.names();
                let source = format!("oci:{}", path.display());
                return (
                    Report::default(),
                    names.and_then(|names| tags(&source, &names)),
                );
            }
            return attempt(&mut d, reference, self.job, false, None);
        }
        let alive: Vec<&Source> = sources.iter().filter(|s| !self.is_dead(s)).collect();
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
            if self.is_dead(source) {
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
        let alive: Vec<&Source> = sources.iter().filter(|s| !self.is_dead(s)).collect();
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
            pipeline: !source.mirror,
        };
        let done = f(&mut d, self.job);
        self.client.set_retries(self.retries);
        done
    }

    /// A mirror that failed earlier in the run. The registry itself is always asked, even
    /// on the host of a mirror that failed.
    fn is_dead(&self, source: &Source) -> bool {
        source.mirror && self.dead.contains(&key(source))
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
            let name = source.repository.name();
            let listed = self.with(source, |d, _| {
                d.client.tags(&source.repository, |page| {
                    if !printed && source.mirror {
                        d.progress.note(format_args!(
                            "the tags of {name} as mirror {} lists them: a mirror's list cannot be verified",
                            source.repository.registry().host()
                        ));
                    }
                    printed = true;
                    tags(&name, &page).map(|()| true)
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
                report.mirror_said = true;
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
            // An `oci:` layout: what a mirror said a tag means, recorded there, is said again.
            if let Origin::Layout(layout) = d.origin {
                if let Some(mirror) = layout.said_by_mirror(tag) {
                    d.progress.note(format_args!(
                        "{reference} is what mirror {mirror} said: a mirror's answer for a tag cannot be verified"
                    ));
                    report.source = Some(mirror);
                    report.mirror_said = true;
                }
            }
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
