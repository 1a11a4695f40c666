//! HTTP itself: agents, trusted roots, retries, redirects, and the bounds on how long
//! anything may wait. With `body.rs` (reading answers) and `proxy.rs` (choosing a proxy)
//! beside it, the only code that sends requests with ureq.
//!
//! One `ureq::Agent` per route serves the whole run, so connections are kept alive and
//! reused. Redirects are followed here rather than by ureq, hop by hop, so that each hop gets
//! only what `policy.rs` lets it see. Every request is retried here on dropped connections,
//! timeouts, 408, 429 and 5xx (see `retry.rs`), and every body is read through `Paced`, which
//! fails a transfer slower than the speed limit: a stall is cut by `--timeout`, a trickle by
//! `--speed-limit`/`--speed-time`, so no answer can hold a run for ever.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ureq::http::{Response, StatusCode, Uri};
use ureq::tls::{PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body};

use crate::error::{Error, Result};
use crate::net::policy::{self, Origin, Secret};
use crate::net::retry::{self, Backoff};
use crate::progress;

use crate::net::body::{drain, header};
pub use crate::net::body::{
    Pace, Paced, Reply, DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME, SMALL_BODY,
};
pub use crate::net::proxy::Proxies;

/// What every request says it is, ureq's and `pipeline.rs`'s alike.
pub const USER_AGENT: &str = concat!("ocidl/", env!("CARGO_PKG_VERSION"));
/// Redirects followed for one request. ghcr and Docker Hub use one (to their CDN).
pub const MAX_REDIRECTS: usize = 10;
/// Defaults to 30 s: to connect, for a reply, and between two reads of a body (`--timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `--timeout` (and `--speed-time`) taken: a day. Larger numbers are typing
/// mistakes, and would overflow the clock arithmetic they feed.
pub const MAX_SECONDS: u64 = 86_400;
/// How requests are made, from the command line and the environment.
pub struct Options {
    /// PEM files whose certificates are trusted besides the bundled roots (`--ca-file`):
    /// read at once, so a bad one is a usage error before anything is sent.
    pub ca_files: Vec<PathBuf>,
    /// The same from the environment (`$SSL_CERT_FILE`, `$SSL_CERT_DIR`), often set to the
    /// whole system bundle: read only when an https request first needs them, and like
    /// OpenSSL, what does not parse is passed over.
    pub env_ca_files: Vec<PathBuf>,
    pub env_ca_dirs: Vec<PathBuf>,
    pub proxies: Proxies,
    /// Tries after the first, per request (`--retries`).
    pub retries: u32,
    /// Connect, reply and idle-read timeout (`--timeout`).
    pub timeout: Duration,
    /// The slowest body taken, in bytes a second, averaged over `speed_time`.
    pub speed_limit: u64,
    pub speed_time: Duration,
    /// Skip TLS verification (`--insecure`).
    pub insecure: bool,
    /// No notices about retries.
    pub quiet: bool,
}

pub struct Transport {
    /// One agent per route (direct, or which proxy) and trust (bundled roots, or the extra
    /// certificates), made when first needed and then reused, connections and all. ureq
    /// bypasses an agent's pool for a request whose proxy differs from the agent's, so the
    /// route is chosen by picking the agent rather than per request.
    agents: HashMap<(Option<String>, bool), Agent>,
    /// `--ca-file`'s certificates, then the environment's once read (see `extra_roots`).
    extra: Vec<ureq::tls::Certificate<'static>>,
    env_read: bool,
    extra_roots: Option<RootCerts>,
    options: Options,
}

impl Transport {
    pub fn new(options: Options) -> Result<Transport> {
        let mut extra = Vec::new();
        for path in &options.ca_files {
            extra.extend(
                read_certificates(path).map_err(|e| Error::Usage(format!("--ca-file {e}")))?,
            );
        }
        Ok(Transport {
            agents: HashMap::new(),
            extra,
            env_read: false,
            extra_roots: None,
            options,
        })
    }

    pub fn retries(&self) -> u32 {
        self.options.retries
    }

    /// Sets the tries after the first, for the requests that follow (a mirror gets none).
    pub fn set_retries(&mut self, retries: u32) {
        self.options.retries = retries;
    }

    /// `--timeout`: also how long to wait on what is not a request (another process's lock).
    pub fn timeout(&self) -> Duration {
        self.options.timeout
    }

    /// The speed limit for one body.
    pub fn pace(&self) -> Pace {
        Pace::new(self.options.speed_limit, self.options.speed_time)
    }

    /// Sends a GET and follows redirects. `secret` goes only to hops on its own origin
    /// (GHSA-g5v4-5x39-vwhx is what happens otherwise), and no hop may leave TLS.
    pub fn get(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        secret: Option<&Secret>,
    ) -> Result<Reply> {
        let mut url = url.to_string();
        let mut origin = Origin::of(&url)?;
        for _ in 0..=MAX_REDIRECTS {
            let authorization = secret.and_then(|s| s.to(&origin));
            let response = self.send(&url, headers, authorization)?;
            if !response.status().is_redirection() {
                return Ok(Reply {
                    response,
                    url,
                    origin,
                });
            }
            let location = header(&response, "location").ok_or_else(|| {
                Error::Redirect(format!(
                    "{} without a Location from {url}",
                    response.status()
                ))
            })?;
            drain(response, self.pace());
            let next = resolve(&url, &location)?;
            let next_origin = Origin::of(&next)?;
            policy::redirect(&origin, &next_origin, &next)?;
            (url, origin) = (next, next_origin);
        }
        Err(Error::Redirect(format!(
            "more than {MAX_REDIRECTS} redirects, last to {url}"
        )))
    }

    /// POSTs a form that carries `secret` (an OAuth2 refresh-token grant) to `url`, which
    /// must be the secret's own origin. Not retried, and no redirect is followed: a POST
    /// that failed half-way is not ours to repeat blindly, and the realm answers at once.
    pub fn post_form(
        &mut self,
        url: &str,
        secret: &Secret,
        form: impl FnOnce(&str) -> String,
    ) -> Result<Reply> {
        let origin = Origin::of(url)?;
        let Some(value) = secret.to(&origin) else {
            return Err(Error::Refused(format!(
                "{url} is not where this token may go ({})",
                secret.origin()
            )));
        };
        let body = form(value);
        let call = |agent: &Agent| {
            agent
                .post(url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .send(body.as_bytes())
                .map_err(|e| transport(url, e))
        };
        let response = self.with_roots(url, call)?;
        Ok(Reply {
            response,
            url: url.to_string(),
            origin,
        })
    }

    /// One request, tried again on what is worth trying again: dropped or refused
    /// connections, timeouts, 408, 429 and 5xx, after the server's `Retry-After` or a backoff.
    fn send(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Result<Response<Body>> {
        let mut backoff = Backoff::new(self.options.retries);
        loop {
            let result = self.send_once(url, headers, authorization);
            let (why, retry_after) = match &result {
                Ok(response) if retry::retryable(response.status().as_u16()) => (
                    status_text(response.status().as_u16()),
                    header(response, "retry-after")
                        .and_then(|v| retry::parse_retry_after(&v, SystemTime::now())),
                ),
                Err(e) if e.is_transient() => (e.to_string(), None),
                _ => return result,
            };
            let Some(delay) = backoff.next_delay(retry_after) else {
                return result;
            };
            if let Ok(response) = result {
                drain(response, self.pace());
            }
            if !self.options.quiet {
                let (n, of) = backoff.used();
                progress::note(format_args!(
                    "retry {n} of {of} in {} s: {why}",
                    crate::progress::seconds(delay)
                ));
            }
            std::thread::sleep(delay);
        }
    }

    fn send_once(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Result<Response<Body>> {
        self.with_roots(url, |agent| {
            let mut request = agent.get(url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(authorization) = authorization {
                request = request.header("Authorization", authorization);
            }
            request.call().map_err(|e| transport(url, e))
        })
    }

    /// Runs `connect` with the configuration of the agent a request to `url` would use (its
    /// proxy, its roots, `--insecure`), the extra roots first as for any request: for
    /// `pipeline.rs`, which opens its connections through ureq's connector chain and writes
    /// its own requests on them.
    pub(crate) fn with_config<T>(
        &mut self,
        url: &str,
        connect: impl Fn(&ureq::config::Config) -> Result<T>,
    ) -> Result<T> {
        self.with_roots(url, |agent| connect(agent.config()))
    }

    /// Makes `call` with the agent `url` needs. With extra certificates, their agent goes
    /// first and the bundled roots are the fallback: ureq's root store replaces rather than
    /// extends, and "also trust" is what users of `--ca-file` expect (a registry on a private
    /// CA, a CDN on a public one). A failed handshake sent nothing, so the second try is safe
    /// for a POST too.
    fn with_roots<T>(&mut self, url: &str, call: impl Fn(&Agent) -> Result<T>) -> Result<T> {
        let bundled = self.agent(url, false);
        if !url.starts_with("https:") || self.extra_roots().is_none() {
            return call(&bundled);
        }
        match call(&self.agent(url, true)) {
            Err(Error::Tls { .. }) => call(&bundled),
            other => other,
        }
    }

    /// The extra certificates as a root store, the environment's read on first use.
    fn extra_roots(&mut self) -> Option<RootCerts> {
        if !self.env_read {
            self.env_read = true;
            let files = self.options.env_ca_files.clone();
            let dirs = self
                .options
                .env_ca_dirs
                .iter()
                .filter_map(|d| std::fs::read_dir(d).ok());
            let in_dirs = dirs.flat_map(|entries| entries.flatten().map(|e| e.path()));
            for path in files.into_iter().chain(in_dirs) {
                for certificate in read_certificates(&path).unwrap_or_default() {
                    // A system's directory holds each certificate twice or more (file, hash
                    // link, bundle): keep one of each.
                    if !self.extra.iter().any(|c| c.der() == certificate.der()) {
                        self.extra.push(certificate);
                    }
                }
            }
            self.extra_roots =
                (!self.extra.is_empty()).then(|| RootCerts::Specific(self.extra.clone().into()));
        }
        self.extra_roots.clone()
    }

    /// The agent for `url`'s route, trusting the bundled roots or the extra certificates.
    fn agent(&mut self, url: &str, extra_roots: bool) -> Agent {
        let proxy = self.options.proxies.for_url(url);
        let key = (proxy.as_ref().map(|p| p.uri().to_string()), extra_roots);
        let roots = match extra_roots {
            true => self.extra_roots().unwrap_or(RootCerts::WebPki),
            false => RootCerts::WebPki,
        };
        let options = &self.options;
        self.agents
            .entry(key)
            .or_insert_with(|| agent(roots, proxy, options))
            .clone()
    }
}

fn agent(roots: RootCerts, proxy: Option<ureq::Proxy>, options: &Options) -> Agent {
    let timeout = options.timeout;
    let tls = TlsConfig::builder()
        .root_certs(roots)
        .disable_verification(options.insecure)
        .build();
    Agent::config_builder()
        // We read every status ourselves: a 401's challenge, a 404's meaning.
        .http_status_as_error(false)
        // Redirects are followed in `get`, which knows who may see credentials.
        .max_redirects(0)
        .timeout_connect(Some(timeout))
        // The whole response head, however slowly it comes.
        .timeout_recv_response(Some(timeout))
        // Idle time between reads, not the whole body: a 1 GiB blob may take minutes.
        // A trickle that is never idle for that long is `Paced`'s to cut.
        .timeout_per_read(Some(timeout))
        .user_agent(USER_AGENT)
        .tls_config(tls)
        // Not ureq's reading of the environment: `Proxies` reads it as curl does.
        .proxy(proxy)
        .build()
        .new_agent()
}

fn read_certificates(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certificates.push(c),
            Ok(_) => {}
            Err(e) => return Err(Error::Usage(format!("{}: {e}", path.display()))),
        }
    }
    if certificates.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certificates)
}

/// "503 Service Unavailable": the number for scripts, the words for people.
pub fn status_text(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_string()
}

pub(crate) fn transport(url: &str, e: ureq::Error) -> Error {
    let host = Uri::try_from(url)
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let not_found = || Error::Connect {
        host: host.clone(),
        cause: HOST_NOT_FOUND.into(),
    };
    match e {
        ureq::Error::HostNotFound => not_found(),
        ureq::Error::Io(io) if is_unknown_host(&io) => not_found(),
        ureq::Error::ConnectionFailed => Error::Connect {
            host,
            cause: "connection failed".into(),
        },
        ureq::Error::Io(io) if is_connect_failure(&io) => Error::Connect {
            host,
            cause: io.to_string(),
        },
        // rustls reports handshake failures (an untrusted certificate, a plain HTTP server
        // on the other end) as invalid data on the socket.
        ureq::Error::Io(io)
            if io.kind() == io::ErrorKind::InvalidData && url.starts_with("https:") =>
        {
            Error::Tls {
                host,
                cause: io.to_string(),
            }
        }
        ureq::Error::Rustls(tls) => Error::Tls {
            host,
            cause: tls.to_string(),
        },
        ureq::Error::Tls(tls) => Error::Tls {
            host,
            cause: tls.to_string(),
        },
        ureq::Error::Timeout(t) => Error::Network(format!("{host}: timed out ({t})")),
        e => Error::Network(format!("{host}: {e}")),
    }
}

/// What `Error::Connect` says for a name that does not resolve: not worth a retry.
pub const HOST_NOT_FOUND: &str = "host not found";

/// getaddrinfo's answer for a name that does not exist, as std reports it (no error kind
/// says so). A temporary resolver failure (EAI_AGAIN) is not this, and stays retryable.
fn is_unknown_host(e: &io::Error) -> bool {
    let text = e.to_string();
    text.contains("failed to lookup address information")
        && (text.contains("Name or service not known")
            || text.contains("No address associated with hostname")
            || text.contains("Name does not resolve"))
}

fn is_connect_failure(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
    )
}

/// Resolves a Location header against the URL that sent it (RFC 9110 allows relative ones).
pub fn resolve(base: &str, location: &str) -> Result<String> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    let uri = Uri::try_from(base).map_err(|_| Error::Redirect(format!("unusable URL {base}")))?;
    let scheme = uri.scheme_str().unwrap_or("https");
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    Ok(if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let dir = uri
            .path()
            .rsplit_once('/')
            .map(|(dir, _)| dir)
            .unwrap_or("");
        format!("{scheme}://{authority}{dir}/{location}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations() {
        let base = "http://127.0.0.1:5000/v2/a/blobs/sha256:00?x=1";
        assert_eq!(
            resolve(base, "https://cdn.example/b?sig=1").unwrap(),
            "https://cdn.example/b?sig=1"
        );
        assert_eq!(
            resolve(base, "//cdn.example/b").unwrap(),
            "http://cdn.example/b"
        );
        assert_eq!(
            resolve(base, "/other/path").unwrap(),
            "http://127.0.0.1:5000/other/path"
        );
        assert_eq!(
            resolve(base, "sibling").unwrap(),
            "http://127.0.0.1:5000/v2/a/blobs/sibling"
        );
    }

    #[test]
    fn unknown_hosts_are_told_from_resolver_trouble() {
        let io = |text: &str| io::Error::other(text.to_string());
        assert!(is_unknown_host(&io(
            "failed to lookup address information: Name or service not known"
        )));
        assert!(is_unknown_host(&io(
            "failed to lookup address information: Name does not resolve"
        )));
        assert!(!is_unknown_host(&io(
            "failed to lookup address information: Temporary failure in name resolution"
        )));
        assert!(!is_unknown_host(&io("connection reset by peer")));
        let e = transport(
            "https://no.such.host/v2/",
            ureq::Error::Io(io(
                "failed to lookup address information: Name or service not known",
            )),
        );
        assert!(!e.is_transient(), "{e}");
    }
}
