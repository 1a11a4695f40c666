//! ocidl: download files from OCI registries, verified, as a tiny static binary.
//!
//! The modules live in the library (`lib.rs`) so the fuzz targets can reach the parsers;
//! `main` parses the command line, pulls each reference in order, and is the one place
//! that prints errors and decides the exit status.

#![deny(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;

use ocidl::auth::Credentials;
use ocidl::cli::{self, Args, Command};
use ocidl::error::{Error, Result};
use ocidl::pull;
use ocidl::reference::Reference;
use ocidl::registry::{self, Client};
use ocidl::signal;

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    signal::install();
    let args = match cli::parse_args(lexopt::Parser::from_env()) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("ocidl {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => return ExitCode::from(report(None, &e)),
    };
    let mut client = match client(&args) {
        Ok(client) => client,
        Err(e) => return ExitCode::from(report(None, &e)),
    };
    let mut worst = 0;
    for reference in &args.references {
        if let Err(e) = pull::pull(&mut client, reference, &args) {
            worst = worst.max(report(Some(reference), &e));
        }
    }
    ExitCode::from(worst)
}

fn client(args: &Args) -> Result<Client> {
    let credentials = match &args.username {
        Some(username) => Some(Credentials { username: username.clone(), password: read_password()? }),
        None => None,
    };
    Client::new(registry::Options {
        ca_file: args.ca_file.clone(),
        credentials,
        retries: args.retries,
        timeout: args.timeout,
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
