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

use ocidl::auth::Credentials;
use ocidl::cli::{self, Args, Command, Mode};
use ocidl::credentials;
use ocidl::error::{Error, Result};
use ocidl::progress::Progress;
use ocidl::pull::{self, Report};
use ocidl::reference::Reference;
use ocidl::registry::{self, Client};
use ocidl::sys;

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

const VERSION: &str = concat!("ocidl ", env!("CARGO_PKG_VERSION"));

fn main() -> ExitCode {
    if cli::lone_version(std::env::args_os()) {
        print(VERSION);
        return ExitCode::SUCCESS;
    }
    let args = match cli::parse_args(lexopt::Parser::from_env()) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print(cli::HELP.trim_end());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            print(VERSION);
            return ExitCode::SUCCESS;
        }
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
    let mut progress = Progress::new(args.quiet);
    let mut documents = Vec::new();
    let mut worst = 0;
    for reference in &args.references {
        let mut done = Report::default();
        let result = pull::run(&mut client, reference, &args, &mut progress, &mut done);
        if let Err(e) = &result {
            worst = worst.max(report(Some(reference), e));
        }
        if args.json {
            documents.push(done.to_json(reference, args.mode, result.as_ref().err()));
        } else if args.mode != Mode::Pull && !print(&done.lines(args.mode).join("\n")) {
            return ExitCode::SUCCESS;
        }
    }
    if args.json {
        print(&serde_json::json!({ "references": documents }).to_string());
    }
    progress.summary();
    ExitCode::from(worst)
}

/// Prints lines of output to stdout; false when the reader has gone (`| head`).
fn print(text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .is_ok()
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
    Client::new(registry::Options {
        ca_files: args.ca_file.iter().cloned().collect(),
        env_ca_files: env_path("SSL_CERT_FILE").into_iter().collect(),
        env_ca_dirs: env_path("SSL_CERT_DIR")
            .map(|dirs| std::env::split_paths(&dirs).collect())
            .unwrap_or_default(),
        proxies: registry::Proxies::from_env()?,
        credentials: credentials::Sources::from_env(explicit)?,
        retries: args.retries,
        timeout: args.timeout,
        insecure: args.insecure,
        quiet: args.quiet,
    })
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

/// Prints an error as one line and returns its exit status.
fn report(reference: Option<&Reference>, e: &Error) -> u8 {
    if e.is_broken_pipe() {
        return 0;
    }
    match reference {
        Some(reference) => eprintln!("ocidl: {reference}: {e}"),
        None => eprintln!("ocidl: {e}"),
    }
    if e.is_usage() {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}
