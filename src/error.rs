//! The one error type. Every failure ends up here, is printed once by `main` as
//! `ocidl: <what failed>: <cause>`, and `main` alone turns it into an exit code.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::content::digest::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// The command line is wrong: unknown flag, missing value, flags that don't go together.
    Usage(String),
    /// A reference does not follow the grammar (see `reference.rs`).
    InvalidReference { input: String, reason: String },
    /// The registry could not be reached at all (DNS, refused, reset before any answer).
    Connect { host: String, cause: String },
    /// The TLS handshake failed, most often an untrusted certificate.
    Tls { host: String, cause: String },
    /// Any other transport failure while talking to a registry.
    Network(String),
    /// A body stopped before its end: the connection broke, stalled, or closed early.
    BodyCut(String),
    /// 404 for a manifest or a blob.
    NotFound(String),
    /// 401 after every credential we could offer.
    AuthRequired,
    /// 403: the credentials were accepted but do not grant pull.
    Denied,
    /// A status we have no better word for ("503 Service Unavailable").
    Status { status: String, url: String },
    /// More redirects than `transport::MAX_REDIRECTS`, or a redirect without a usable Location.
    Redirect(String),
    /// A request `policy.rs` does not allow: credentials to another origin or in clear, a
    /// redirect from https to http, a tag list continued on another server.
    Refused(String),
    /// A token service answered something that is not a usable token.
    Token(String),
    /// A manifest or index is not something we can use (bad JSON, schema1, missing fields).
    BadManifest(String),
    /// A tag list is not `{"tags": [...]}`, or its pages do not end.
    BadTags(String),
    /// A body or file is larger than we read of its kind (a manifest, a token answer, a
    /// tag page, a layout's `index.json`); `what` names it.
    TooLarge { what: String, limit: u64 },
    /// Content hashed to another digest than the one it was asked for by.
    DigestMismatch { expected: Digest, actual: Digest },
    /// Content was shorter or longer than its descriptor said.
    SizeMismatch { expected: u64, actual: u64 },
    /// A layer title that would write outside the output directory, is not a plain file name
    /// (control characters, too long), or names the same path as another title.
    UnsafeTitle { title: String, reason: String },
    /// `--include`/`--exclude` left no file of the package.
    NoMatch(String),
    /// `-o -` with a package whose `--include`/`--exclude` kept more than one file.
    NotOneFile(String),
    /// Two layers carry the same title.
    DuplicateTitle(String),
    /// An image index has no manifest for the platform asked for.
    NoPlatform {
        wanted: String,
        available: Vec<String>,
    },
    /// A credentials file (docker's config.json, podman's auth.json) could not be used.
    Config { path: PathBuf, cause: String },
    /// A docker credential helper is missing or failed.
    Helper {
        program: String,
        config: PathBuf,
        cause: String,
    },
    /// A local file could not be read or written.
    File { path: PathBuf, cause: io::Error },
    /// A download failed on the network; its bytes so far are kept for the next run.
    Kept { path: PathBuf, source: Box<Error> },
    /// One file of a package failed; says which.
    Layer { title: String, source: Box<Error> },
    /// Writing to standard output failed (a listing's closed pipe is not reported, see `main`).
    Stdout(io::Error),
    /// The reader of a blob on a stream (standard output, a FIFO: `to` names it) went away
    /// before it had all of it.
    ReaderGone { to: String, written: u64 },
    /// A blob failed after some of its bytes had reached a stream, which cannot take them
    /// back: no other source is tried.
    Streamed {
        to: String,
        written: u64,
        source: Box<Error>,
    },
    /// `--verify` found files missing or different.
    NotIntact { bad: usize, of: usize },
}

impl Error {
    pub fn file(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |cause| Error::File { path, cause }
    }

    /// Usage errors are the user's to fix before anything is sent; they get exit status 2.
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Usage(_) | Error::InvalidReference { .. })
    }

    /// Failures that another try may not meet: the network, not the content or the user.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { cause, .. } => cause != crate::net::transport::HOST_NOT_FOUND,
            Error::Network(_) | Error::BodyCut(_) => true,
            _ => false,
        }
    }

    /// Whether another source (the next mirror, then the registry) may do better: a failure
    /// about what this source served or whether it could be reached. Not the user's input,
    /// the local disk, or a stream that already took bytes. Decided variant by variant.
    pub fn is_source_failure(&self) -> bool {
        match self {
            Error::Kept { source, .. } | Error::Layer { source, .. } => source.is_source_failure(),
            Error::Connect { .. }
            | Error::Tls { .. }
            | Error::Network(_)
            | Error::BodyCut(_)
            | Error::NotFound(_)
            | Error::AuthRequired
            | Error::Denied
            | Error::Status { .. }
            | Error::Redirect(_)
            | Error::Refused(_)
            | Error::Token(_)
            | Error::BadManifest(_)
            | Error::BadTags(_)
            | Error::TooLarge { .. }
            | Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            // A title or a platform comes with the manifest this source resolved.
            | Error::UnsafeTitle { .. }
            | Error::NoMatch(_)
            | Error::NotOneFile(_)
            | Error::DuplicateTitle(_)
            | Error::NoPlatform { .. } => true,
            Error::Usage(_)
            | Error::InvalidReference { .. }
            | Error::Config { .. }
            | Error::Helper { .. }
            | Error::File { .. }
            | Error::Stdout(_)
            | Error::ReaderGone { .. }
            | Error::Streamed { .. }
            | Error::NotIntact { .. } => false,
        }
    }

    /// A source that failed this way will fail again in this run: it could not be reached,
    /// answered as a broken server does, or served what did not verify. A mirror that did
    /// is not asked again (a 404 or a refusal is about one repository, not the mirror).
    pub fn is_dead_source(&self) -> bool {
        match self {
            Error::Kept { source, .. } | Error::Layer { source, .. } => source.is_dead_source(),
            Error::Connect { .. }
            | Error::Tls { .. }
            | Error::Network(_)
            | Error::BodyCut(_)
            | Error::Redirect(_)
            | Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. } => true,
            Error::Status { status, .. } => status.starts_with('5'),
            _ => false,
        }
    }

    /// A closed stdout (`ocidl ... -o - | head -c1`) is the reader's choice, not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Stdout(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg} (see 'ocidl --help')"),
            Error::InvalidReference { input, reason } => {
                write!(f, "invalid reference '{input}': {reason}")
            }
            Error::Connect { host, cause } => write!(f, "cannot connect to {host}: {cause}"),
            Error::Tls { host, cause } => write!(
                f,
                "TLS with {host} failed: {cause} (a private CA needs --ca-file; \
                 a plain HTTP registry needs --plain-http)"
            ),
            Error::Network(cause) => write!(f, "network error: {cause}"),
            Error::BodyCut(what) => write!(f, "the download {what}"),
            Error::NotFound(what) => write!(f, "not found: {what}"),
            Error::AuthRequired => write!(
                f,
                "authentication required (credentials missing or refused; see --username)"
            ),
            Error::Denied => write!(f, "access denied"),
            Error::Status { status, url } => write!(f, "HTTP {status} from {url}"),
            Error::Redirect(msg) => write!(f, "redirect failed: {msg}"),
            Error::Refused(msg) => write!(f, "refused: {msg}"),
            Error::Token(msg) => write!(f, "token service: {msg}"),
            Error::BadManifest(msg) => write!(f, "unusable manifest: {msg}"),
            Error::BadTags(msg) => write!(f, "unusable tag list: {msg}"),
            Error::TooLarge { what, limit } => write!(f, "{what} is larger than {limit} bytes"),
            Error::DigestMismatch { expected, actual } => {
                write!(f, "digest mismatch: expected {expected}, got {actual}")
            }
            Error::SizeMismatch { expected, actual } => {
                write!(f, "size mismatch: expected {expected} bytes, got {actual}")
            }
            Error::UnsafeTitle { title, reason } => {
                write!(f, "unsafe title '{title}': {reason}; nothing was written")
            }
            Error::NoMatch(titles) => write!(
                f,
                "no file matches --include/--exclude (the package has: {titles})"
            ),
            Error::NotOneFile(titles) => {
                write!(
                    f,
                    "'-o -' writes one file, but --include/--exclude kept several: {titles}"
                )
            }
            Error::DuplicateTitle(title) => write!(f, "two layers are titled '{title}'"),
            Error::NoPlatform { wanted, available } => write!(
                f,
                "no manifest for platform {wanted} (available: {}); choose one with --platform",
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            ),
            Error::Config { path, cause } => write!(f, "{}: {cause}", path.display()),
            Error::Helper {
                program,
                config,
                cause,
            } => {
                write!(
                    f,
                    "credential helper {program} (named in {}): {cause}",
                    config.display()
                )
            }
            Error::File { path, cause } => write!(f, "{}: {cause}", path.display()),
            Error::Kept { path, source } => {
                write!(
                    f,
                    "{source} (the part downloaded is kept in {}; run again to resume)",
                    path.display()
                )
            }
            Error::Layer { title, source } => write!(f, "{title}: {source}"),
            Error::Stdout(cause) => write!(f, "standard output: {cause}"),
            Error::NotIntact { bad, of } => {
                write!(
                    f,
                    "{bad} of {of} files are not intact (missing or different)"
                )
            }
            Error::ReaderGone { to, written } => write!(
                f,
                "{to} was closed after {written} bytes: the blob was not delivered whole"
            ),
            Error::Streamed {
                to,
                written,
                source,
            } => write!(f, "{source} (after {written} bytes went to {to})"),
        }
    }
}

impl std::error::Error for Error {}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Error {
        Error::Usage(e.to_string())
    }
}
