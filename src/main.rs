//! ocidl: download files from OCI registries, verified, as a tiny static binary.
//!
//! The modules live in the library (`lib.rs`) so the fuzz targets can reach the parsers;
//! `main` parses the command line, runs each reference in order, prints what `--list`,
//! `--tags` and `--json` ask for, and is the one place that prints errors and decides the
//! exit status.

#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

use ocidl::cli::{self, Command, Mode};
use ocidl::deliver::Cache;
use ocidl::disk::layout::Layout;
use ocidl::error::{Error, Result};
use ocidl::net::mirrors::Mirrors;
use ocidl::net::registry::Client;
use ocidl::net::transport::Transport;
use ocidl::progress::{self, Progress};
use ocidl::pull::{Puller, Report};
use ocidl::reference::{Reference, Target};
use ocidl::report::Printer;
use ocidl::settings::Settings;
use ocidl::sys;

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

const VERSION: &str = concat!("ocidl ", env!("CARGO_PKG_VERSION"));

fn main() -> ExitCode {
    if cli::lone_version(std::env::args_os()) {
        return printed(VERSION);
    }
    let args = match cli::parse_args(lexopt::Parser::from_env()) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => return printed(cli::HELP.trim_end()),
        Ok(Command::Version) => return printed(VERSION),
        Err(e) => return ExitCode::from(report(None, &e)),
    };
    let password = match args.username.is_some().then(read_password).transpose() {
        Ok(password) => password,
        Err(e) => return ExitCode::from(report(None, &e)),
    };
    let settings = match Settings::new(args, password, |name| std::env::var_os(name)) {
        Ok(settings) => settings,
        Err(e) => return ExitCode::from(report(None, &e)),
    };
    sys::stop_on_signals();
    match run(settings) {
        Ok(status) => ExitCode::from(status),
        Err(e) => ExitCode::from(report(None, &e)),
    }
}

/// Every reference in order; the worst exit status of them.
fn run(settings: Settings) -> Result<u8> {
    let Settings {
        references,
        job,
        quiet,
        insecure,
        transport,
        credentials,
        mirrors,
        cache,
    } = settings;
    if insecure {
        // Digests still protect each blob, but not which manifest a tag names.
        progress::note(format_args!("ocidl: warning: --insecure: TLS certificates are not verified; whoever is on the path can serve other content under a tag"));
    }
    let mut client = Client::new(Transport::new(transport)?, credentials);
    // An `oci:` pull asks no registry, so it needs no registries.conf.
    let mirrors = match references.iter().any(|r| r.repository().is_some()) {
        true => Mirrors::load(&mirrors.extra, mirrors.extra_tags, &mirrors.files)?,
        false => Mirrors::default(),
    };
    let mut progress = Progress::new(quiet);
    let required = job.mode == Mode::Fill;
    let cache = match cache.as_deref().map(Layout::create).transpose() {
        Ok(layout) => layout.map(|layout| Cache::new(layout, required)),
        Err(e) if required => return Err(e),
        // The cache is an optimisation: without it the pull goes on from its source.
        Err(e) => {
            progress.note(format_args!("cache: {e}; going on without it"));
            None
        }
    };
    let mut printer = Printer::new(job.json, job.mode);
    let mut puller = Puller::new(&mut client, cache.as_ref(), &job, &mut progress);
    let mut worst = 0;
    for reference in &references {
        let by_digest = !matches!(reference.target(), Target::Tag(_));
        let sources = match reference.repository() {
            Some(repository) => mirrors.sources(repository, by_digest),
            None => Ok(Vec::new()),
        };
        let (done, result) = match sources {
            Ok(sources) => {
                let mut tags =
                    |source: &str, page: &[String]| printer.tags(reference, source, page);
                puller.run(reference, &sources, &mut tags)
            }
            Err(e) => (Report::default(), Err(e)),
        };
        if let Err(e) = &result {
            // A listing that could not be written is not about the reference listed.
            let about = match (e, job.mode) {
                (Error::Stdout(_), Mode::Tags) => None,
                _ => Some(reference),
            };
            worst = worst.max(report(about, e));
            // Standard output is gone: nothing more can be said on it.
            if let Error::Stdout(_) = e {
                return Ok(worst);
            }
        }
        if let Err(e) = printer.done(reference, &done, result.as_ref().err()) {
            return Ok(worst.max(report(None, &e)));
        }
    }
    if let Err(e) = printer.finish() {
        return Ok(worst.max(report(None, &e)));
    }
    progress.summary();
    Ok(worst)
}

/// Prints lines of output to stdout. A reader that has gone (`| head`) is its own business;
/// any other failure (`> /dev/full`) is an error.
fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(Error::Stdout)
}

/// `--help` and `--version`: printed, and an error when they could not be.
fn printed(text: &str) -> ExitCode {
    match print(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(report(None, &e)),
    }
}

/// `--password-stdin`: the whole of stdin, less one trailing newline (`echo $TOKEN |`).
fn read_password() -> Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| Error::Usage(format!("--password-stdin: cannot read stdin: {e}")))?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(Error::Usage("--password-stdin: stdin is empty".into()));
    }
    Ok(password.to_string())
}

/// Prints an error as one line and returns its exit status. What a server sent may be in
/// it (a URL, a media type, a realm), so it is escaped first.
fn report(reference: Option<&Reference>, e: &Error) -> u8 {
    if e.is_broken_pipe() {
        return 0;
    }
    let line = match reference {
        Some(reference) => format!("ocidl: {reference}: {e}"),
        None => format!("ocidl: {e}"),
    };
    progress::note(format_args!("{line}"));
    if e.is_usage() {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}
