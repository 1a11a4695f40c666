//! ocidl: download files from OCI registries, verified, as a tiny static binary.
//!
//! The modules live in the library (`lib.rs`) so the fuzz targets can reach the parsers;
//! `main` parses the command line, runs each reference in order, prints what `--list`,
//! `--tags` and `--json` ask for, and is the one place that prints errors and decides the
//! exit status.

#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use ocidl::cli::{self, Args, Command, Mode};
use ocidl::disk::layout::Layout;
use ocidl::error::{Error, Result};
use ocidl::net::auth::Credentials;
use ocidl::net::credentials;
use ocidl::net::mirrors::Mirrors;
use ocidl::net::registry::Client;
use ocidl::net::transport::{self, Transport};
use ocidl::progress::{self, Progress};
use ocidl::pull::{self, Report};
use ocidl::reference::{Reference, Target};
use ocidl::{sys, text};

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
    sys::stop_on_signals();
    if args.insecure {
        // Digests still protect each blob, but not which manifest a tag names.
        eprintln!("ocidl: warning: --insecure: TLS certificates are not verified; whoever is on the path can serve other content under a tag");
    }
    let mut client = match client(&args) {
        Ok(client) => client,
        Err(e) => return ExitCode::from(report(None, &e)),
    };
    let mirrors = match Mirrors::load(&args.mirrors, &args.references) {
        Ok(mirrors) => mirrors,
        Err(e) => return ExitCode::from(report(None, &e)),
    };
    let cache = match args.cache.as_deref().map(Layout::create).transpose() {
        Ok(cache) => cache,
        Err(e) => return ExitCode::from(report(None, &e)),
    };
    let mut progress = Progress::new(args.quiet);
    let mut documents = Vec::new();
    let mut worst = 0;
    for reference in &args.references {
        let mut done = Report::default();
        let by_digest = !matches!(reference.target(), Target::Tag(_));
        let sources = match reference.repository() {
            Some(repository) => mirrors.sources(repository, by_digest),
            None => Ok(Vec::new()),
        };
        let result = sources.and_then(|sources| {
            let cache = cache.as_ref();
            pull::run(
                &mut client,
                reference,
                &sources,
                cache,
                &args,
                &mut progress,
                &mut done,
            )
        });
        if let Err(e) = &result {
            worst = worst.max(report(Some(reference), e));
        }
        if args.json {
            documents.push(done.to_json(reference, args.mode, result.as_ref().err()));
        } else if let Mode::List | Mode::Tags | Mode::Verify = args.mode {
            if let Err(e) = print(&done.lines(args.mode).join("\n")) {
                return ExitCode::from(worst.max(report(None, &e)));
            }
        }
    }
    if args.json {
        let json = serde_json::json!({ "references": documents }).to_string();
        if let Err(e) = print(&text::escape_json(&json)) {
            return ExitCode::from(worst.max(report(None, &e)));
        }
    }
    progress.summary();
    ExitCode::from(worst)
}

/// Prints lines of output to stdout. A reader that has gone (`| head`) is its own business;
/// any other failure (`> /dev/full`) is an error.
fn print(text: &str) -> Result<()> {
    if text.is_empty() {
        return Ok(());
    }
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

fn client(args: &Args) -> Result<Client> {
    let explicit = match &args.username {
        Some(username) => Some(Credentials::basic_pair(username.clone(), read_password()?)),
        None => None,
    };
    let env_path = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let transport = Transport::new(transport::Options {
        ca_files: args.ca_file.iter().cloned().collect(),
        env_ca_files: env_path("SSL_CERT_FILE").into_iter().collect(),
        env_ca_dirs: env_path("SSL_CERT_DIR")
            .map(|dirs| std::env::split_paths(&dirs).collect())
            .unwrap_or_default(),
        proxies: transport::Proxies::from_env()?,
        retries: args.retries,
        timeout: args.timeout,
        speed_limit: args.speed_limit,
        speed_time: args.speed_time,
        insecure: args.insecure,
        quiet: args.quiet,
    })?;
    let hosts = args
        .references
        .iter()
        .filter_map(|r| r.repository())
        .map(|r| r.registry().host().to_string())
        .collect();
    let sources = credentials::Sources::from_env(explicit, hosts, args.timeout)?;
    Ok(Client::new(transport, sources))
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
