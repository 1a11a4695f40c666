//! The command line: every flag parsed into one plain `Args`, validated before any
//! network traffic, so a usage error can exit 2 having sent nothing. `settings.rs` joins it
//! with the environment.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

use crate::content::manifest::Platform;
use crate::error::{Error, Result};
use crate::glob::Glob;
use crate::net::retry::DEFAULT_RETRIES;
use crate::net::transport::{
    DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME, DEFAULT_TIMEOUT, MAX_SECONDS,
};
use crate::reference::{Defaults, Reference, Target};

pub const HELP: &str = "\
ocidl: download files from OCI registries (ghcr.io and any distribution-spec registry),
verified against their digests.

USAGE:
    ocidl [OPTIONS] REFERENCE...

REFERENCE:
    [https://|http://]REGISTRY/PATH[:TAG]         a package: every file (titled layer) of it
    [https://|http://]REGISTRY/PATH:TAG@sha256:HEX
                                                  the package whose manifest has that digest
    [https://|http://]REGISTRY/PATH@sha256:HEX    one blob (a package's manifest with --manifest)
    oci:DIR[:NAME], oci:DIR@sha256:HEX            the same from an OCI image layout, offline
    No tag means 'latest'. Without a registry the path is on Docker Hub, or on ghcr.io
    with --ghcr. Several references are pulled in order.

OUTPUT:
    -o, --output PATH     package: the directory to write into, created when missing [default: .]
                          blob: the file to write; a directory when it exists or ends in '/';
                          '-' is standard output (a package too, once narrowed to one file)
                          [default: the last path segment]
    -q, --quiet           no status lines or progress on stderr
        --json            print what was done (or listed) as one JSON document on stdout

CHOOSING:
        --include GLOB    only the package's files whose title matches (repeatable; * ? [...])
        --exclude GLOB    not the files whose title matches (repeatable; wins over --include)
        --list            print the package's files (title, size, digest, media type) and
                          download nothing
        --tags            print the repository's tags and download nothing
        --cache DIR       keep every manifest and blob fetched in DIR, an OCI image layout
                          (also OCIDL_CACHE); blobs already there are copied out, verified
        --cache-only      fetch into the --cache and write no other file (fill a layout to
                          carry to an offline machine)
        --verify          check the files already in the output directory against the
                          package: 'intact', 'missing' or 'different', one line each; exit 0
                          only when all are intact (reads the manifest, downloads no blob)

REGISTRY:
        --ghcr            the input is a ghcr.io path: prefix ghcr.io/ when it names no registry,
                          and use ghcr's anonymous token (automatic for ghcr.io references)
        --manifest        REGISTRY/PATH@sha256:HEX names a package's manifest, not a blob
        --platform OS/ARCH[/VARIANT]
                          which manifest of a multi-platform index [default: this machine's]
        --plain-http      HTTP instead of HTTPS (local registries); same as an http:// prefix
        --ca-file PATH    also trust the PEM certificates in PATH (as do $SSL_CERT_FILE and
                          the certificates in $SSL_CERT_DIR)
        --insecure        do not verify TLS certificates (says so on every run)
        --mirror [http://]HOST[:PORT][/PATH]
                          try this mirror first, for every reference (repeatable; also
                          OCIDL_MIRROR, comma-separated); registries.conf mirrors come next.
                          It serves what a digest names; tags are asked of the registry
        --mirror-tags     let --mirror mirrors say what a tag means too (also
                          OCIDL_MIRROR_TAGS=1): their answer cannot be verified
    -u, --username USER   log in as USER; the password (or token) is read from stdin
        --password-stdin  read the password from standard input (needs --username)

NETWORK:
        --retries N       tries after the first on dropped connections, timeouts, 408, 429
                          and 5xx, with backoff and the server's Retry-After [default: 5]
        --timeout SECONDS to connect, for a reply, between two reads of a body, for a
                          credential helper, and for another ocidl's lock to move [default: 30]
        --speed-limit BYTES, --speed-time SECONDS
                          a body slower than BYTES a second over SECONDS fails, and is retried
                          and resumed [default: 1024 over 30]

    -h, --help            this help
    -V, --version         the version

FILES AND VARIABLES:
    Credentials, first found wins: --username; OCIDL_USERNAME and OCIDL_PASSWORD; docker's
    $DOCKER_CONFIG/config.json or ~/.docker/config.json (auths, credHelpers, credsStore);
    podman's $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json or
    ~/.config/containers/auth.json. Proxies: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY
    (either case; http:// and socks5:// proxies). Credentials go only to the registry and
    the token service it names, never after a redirect; text a registry sent is escaped.
    Files starting with an ELF header or '#!' are made executable.

EXIT STATUS:
    0  every reference was written and verified
    1  a download failed (network, registry, verification, file system)
    2  usage error (bad flag or reference), found before anything was sent
    130, 143  stopped by SIGINT, SIGTERM; what was downloaded is kept, and rerunning resumes

EXAMPLES:
    ocidl ghcr.io/pkgforge/bincache/curl/stunnel/trurl:8.11.1-x86_64-linux -o trurl/
    ocidl ghcr.io/pkgforge/bincache/curl/stunnel/trurl@sha256:<hex> -o /usr/local/bin/trurl
    ocidl ghcr.io/pkgforge/bincache/curl/stunnel/trurl:8.11.1-x86_64-linux --include trurl -o - > trurl
    ocidl ghcr.io/pkgforge/bincache/curl/stunnel/trurl --tags
";

/// Where files go: a path (file or directory, depending on what is pulled) or stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Path(PathBuf),
}

/// Everything the command line says, validated.
#[derive(Debug)]
pub struct Args {
    pub references: Vec<Reference>,
    pub output: Option<Output>,
    pub platform: Platform,
    pub ca_file: Option<PathBuf>,
    /// Set with `--password-stdin`; the password itself is read by `main`.
    pub username: Option<String>,
    pub retries: u32,
    pub timeout: Duration,
    pub speed_limit: u64,
    pub speed_time: Duration,
    pub insecure: bool,
    pub quiet: bool,
    pub json: bool,
    pub mode: Mode,
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
    /// `--mirror`: tried before the registry for every reference.
    pub mirrors: Vec<String>,
    /// `--mirror-tags`: those mirrors may answer tags too.
    pub mirror_tags: bool,
    /// `--cache`: an OCI image layout that keeps what is fetched.
    pub cache: Option<PathBuf>,
}

/// Download, or only look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pull,
    List,
    Tags,
    /// Check the files already written against the package; download nothing.
    Verify,
    /// Fetch into the cache only (`--cache-only`), writing no file anywhere else.
    Fill,
}

/// What the user asked for: a run, or one of the flags that only print.
// Made once per run; boxing `Args` would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Command {
    Run(Args),
    Help,
    Version,
}

/// `ocidl --version` (or `-V`) alone, answered before the full parse: it is how start-up
/// cost gets measured, and building and dropping `Args` touches enough scattered code to
/// cost a third of its memory (measured by `make bench`). `parse_args` still handles the
/// flag anywhere else on a command line.
pub fn lone_version(mut args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let first = args.nth(1);
    args.next().is_none() && first.is_some_and(|a| a == "--version" || a == "-V")
}

pub fn parse_args(mut parser: lexopt::Parser) -> Result<Command> {
    let mut inputs: Vec<String> = Vec::new();
    let mut output = None;
    let mut platform = None;
    let mut ca_file = None;
    let mut username = None;
    let mut password_stdin = false;
    let mut quiet = false;
    let mut retries = DEFAULT_RETRIES;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut speed_limit = DEFAULT_SPEED_LIMIT;
    let mut speed_time = DEFAULT_SPEED_TIME;
    let mut insecure = false;
    let mut json = false;
    let mut modes = Vec::new();
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    let mut defaults = Defaults::default();
    let mut mirrors = Vec::new();
    let mut mirror_tags = false;
    let mut cache = None;

    while let Some(arg) = parser.next()? {
        match arg {
            Short('o') | Long("output") => {
                let value = parser.value()?;
                output = Some(if value == "-" {
                    Output::Stdout
                } else {
                    Output::Path(value.into())
                });
            }
            Long("platform") => platform = Some(parser.value()?.parse::<Platform>()?),
            Long("ghcr") => defaults.ghcr = true,
            Long("plain-http") => defaults.plain_http = true,
            Long("manifest") => defaults.manifest = true,
            Long("ca-file") => ca_file = Some(PathBuf::from(parser.value()?)),
            Short('u') | Long("username") => username = Some(utf8(parser.value()?, "--username")?),
            Long("password-stdin") => password_stdin = true,
            Long("retries") => retries = number(&mut parser, "--retries")?,
            Long("timeout") => timeout = seconds(&mut parser, "--timeout")?,
            Long("speed-time") => speed_time = seconds(&mut parser, "--speed-time")?,
            Long("speed-limit") => speed_limit = number(&mut parser, "--speed-limit")?,
            Long("insecure") => insecure = true,
            Long("mirror") => mirrors.push(utf8(parser.value()?, "--mirror")?),
            Long("mirror-tags") => mirror_tags = true,
            Short('q') | Long("quiet") => quiet = true,
            Long("json") => json = true,
            Long("list") => modes.push(Mode::List),
            Long("tags") => modes.push(Mode::Tags),
            Long("verify") => modes.push(Mode::Verify),
            Long("cache") => cache = Some(PathBuf::from(parser.value()?)),
            Long("cache-only") => modes.push(Mode::Fill),
            Long("include") => include.push(glob(&mut parser, "--include")?),
            Long("exclude") => exclude.push(glob(&mut parser, "--exclude")?),
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Value(value) => inputs.push(utf8(value, "reference")?),
            _ => return Err(arg.unexpected().into()),
        }
    }

    if inputs.is_empty() {
        return Err(Error::Usage("missing REFERENCE".into()));
    }
    match (&username, password_stdin) {
        (Some(_), false) => return Err(Error::Usage("--username needs --password-stdin".into())),
        (None, true) => return Err(Error::Usage("--password-stdin needs --username".into())),
        _ => {}
    }
    // --ghcr and --plain-http may come after the references, so these are parsed last.
    let references = inputs
        .iter()
        .map(|input| Reference::parse(input, defaults))
        .collect::<Result<Vec<_>>>()?;
    let mode = match modes.as_slice() {
        [] => Mode::Pull,
        [one] => *one,
        _ => {
            return Err(Error::Usage(
                "--list, --tags, --verify and --cache-only go alone".into(),
            ))
        }
    };
    if let Mode::List | Mode::Verify = mode {
        let flag = if mode == Mode::List {
            "--list"
        } else {
            "--verify"
        };
        if let Some(r) = references
            .iter()
            .find(|r| matches!(r.target(), Target::Blob(_)))
        {
            return Err(Error::Usage(format!(
                "{flag} is for a package's files, but {r} is a blob"
            )));
        }
        if output == Some(Output::Stdout) {
            return Err(Error::Usage(format!(
                "{flag} writes no file: '-o -' has no use"
            )));
        }
    }
    if output == Some(Output::Stdout) {
        if json {
            return Err(Error::Usage(
                "--json and '-o -' both want standard output".into(),
            ));
        }
        if references.len() > 1 {
            return Err(Error::Usage("'-o -' takes one reference".into()));
        }
        let narrowed = !include.is_empty() || !exclude.is_empty();
        if let Some(r) = references
            .iter()
            .find(|r| !matches!(r.target(), Target::Blob(_)) && !narrowed)
        {
            return Err(Error::Usage(format!(
                "'-o -' writes one file to stdout, but {r} is a package: pick its file with --include"
            )));
        }
    }
    Ok(Command::Run(Args {
        references,
        output,
        platform: platform.unwrap_or_else(Platform::host),
        ca_file,
        username,
        retries,
        timeout,
        speed_limit,
        speed_time,
        insecure,
        quiet,
        json,
        mode,
        include,
        exclude,
        mirrors,
        mirror_tags,
        cache,
    }))
}

fn number<T: std::str::FromStr>(parser: &mut lexopt::Parser, flag: &str) -> Result<T> {
    let value = parser.value()?;
    let value = value.to_string_lossy();
    value
        .parse()
        .map_err(|_| Error::Usage(format!("{flag} takes a whole number, not '{value}'")))
}

/// A number of seconds from 1 to `MAX_SECONDS`.
fn seconds(parser: &mut lexopt::Parser, flag: &str) -> Result<Duration> {
    let seconds: u64 = number(parser, flag)?;
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(Error::Usage(format!(
            "{flag} takes 1 to {MAX_SECONDS} seconds, not {seconds}"
        )));
    }
    Ok(Duration::from_secs(seconds))
}

fn glob(parser: &mut lexopt::Parser, flag: &str) -> Result<Glob> {
    let value = utf8(parser.value()?, flag)?;
    value
        .parse()
        .map_err(|e| Error::Usage(format!("{flag}: {e}")))
}

fn utf8(value: OsString, what: &str) -> Result<String> {
    value.into_string().map_err(|v| {
        Error::Usage(format!(
            "{what} is not valid UTF-8: {}",
            v.to_string_lossy()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command> {
        parse_args(lexopt::Parser::from_args(args.iter().copied()))
    }

    fn run(args: &[&str]) -> Args {
        match parse(args) {
            Ok(Command::Run(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn flags_anywhere_apply_to_every_reference() {
        let a = run(&[
            "a.io/x",
            "-o",
            "out",
            "b/c:1",
            "--ghcr",
            "--platform",
            "linux/arm64",
            "-q",
        ]);
        assert_eq!(a.references.len(), 2);
        assert_eq!(a.references[1].name(), "ghcr.io/b/c:1");
        assert_eq!(a.output, Some(Output::Path("out".into())));
        assert_eq!(a.platform.to_string(), "linux/arm64");
        assert!(a.quiet);
        let a = run(&[
            "--output=-",
            "x.io/y@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ]);
        assert_eq!(a.output, Some(Output::Stdout));
        assert_eq!(
            run(&["-u", "me", "--password-stdin", "x.io/y"])
                .username
                .as_deref(),
            Some("me")
        );
        assert_eq!(run(&["x.io/y"]).platform, Platform::host());
        let a = run(&[
            "--include",
            "trurl*",
            "--exclude",
            "*.sig",
            "-o",
            "-",
            "x.io/y:t",
        ]);
        assert_eq!((a.include.len(), a.exclude.len()), (1, 1));
        assert_eq!(run(&["--tags", "x.io/y"]).mode, Mode::Tags);
        assert_eq!(run(&["--list", "--json", "x.io/y"]).mode, Mode::List);
        let a = run(&["--retries", "0", "--timeout", "2", "x.io/y"]);
        assert_eq!((a.retries, a.timeout), (0, Duration::from_secs(2)));
        let a = run(&["--speed-limit", "0", "--speed-time", "86400", "x.io/y"]);
        assert_eq!(
            (a.speed_limit, a.speed_time),
            (0, Duration::from_secs(86_400))
        );
    }

    #[test]
    fn lone_version_is_answered_early() {
        let os = |args: &[&str]| {
            args.iter()
                .map(std::ffi::OsString::from)
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert!(lone_version(os(&["ocidl", "--version"])));
        assert!(lone_version(os(&["ocidl", "-V"])));
        assert!(!lone_version(os(&["ocidl"])));
        assert!(!lone_version(os(&["ocidl", "--version", "x"])));
        assert!(!lone_version(os(&["ocidl", "--versions"])));
    }

    #[test]
    fn help_and_version_win() {
        assert!(matches!(parse(&["x.io/y", "--help"]), Ok(Command::Help)));
        assert!(matches!(parse(&["-V"]), Ok(Command::Version)));
    }

    #[test]
    fn usage_errors() {
        for (args, says) in [
            (&[][..], "missing REFERENCE"),
            (&["--bogus", "x.io/y"], "--bogus"),
            (&["x.io/y", "-o"], "missing argument"),
            (&["x.io/y", "--platform", "linux"], "invalid platform"),
            (&["x.io/Y"], "invalid reference"),
            (&["-u", "me", "x.io/y"], "--password-stdin"),
            (&["--password-stdin", "x.io/y"], "--username"),
            (&["-o", "-", "x.io/y:tag"], "is a package"),
            (&["-o", "-", "--json", "--include", "a", "x.io/y:tag"], "--json"),
            (&["--list", "--tags", "x.io/y"], "go alone"),
            (&["--verify", "--list", "x.io/y"], "go alone"),
            (&["--verify", "-o", "-", "--include", "a", "x.io/y"], "no use"),
            (&["--list", "x.io/y@sha256:0000000000000000000000000000000000000000000000000000000000000000"], "is a blob"),
            (&["--include", "[a", "x.io/y"], "unclosed"),
            (&["--retries", "-1", "x.io/y"], "--retries"),
            (&["--timeout", "0", "x.io/y"], "--timeout"),
            (&["--timeout", "soon", "x.io/y"], "--timeout"),
            (&["--timeout", "18446744073709551615", "x.io/y"], "1 to 86400"),
            (&["--timeout", "18446744073709551616", "x.io/y"], "whole number"),
            (&["--timeout", "86401", "x.io/y"], "1 to 86400"),
            (&["--speed-time", "0", "x.io/y"], "--speed-time"),
            (&["--speed-limit", "-5", "x.io/y"], "--speed-limit"),
            (&["--retries", "4294967296", "x.io/y"], "--retries"),
        ] {
            match parse(args) {
                Err(e) => {
                    assert!(e.is_usage(), "{args:?}: {e}");
                    assert!(e.to_string().contains(says), "{args:?}: {e}");
                }
                Ok(c) => panic!("{args:?} accepted: {c:?}"),
            }
        }
    }
}
