//! The registry client, and the only module that speaks HTTP.
//!
//! One `ureq::Agent` (plus one trusting `--ca-file`) serves the whole run, so connections are
//! kept alive and reused. Redirects and authentication are handled here rather than by ureq,
//! because only here do we know which hop may see the `Authorization` header: the registry's
//! own origin (scheme, host and port), never a storage host it redirects to. Every request
//! is retried here on dropped connections, timeouts, 408, 429 and 5xx (see `retry.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ureq::http::{Response, StatusCode, Uri};
use ureq::tls::{PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body, BodyReader};

use crate::auth::{self, Challenge, Credentials, GHCR_ANONYMOUS};
use crate::credentials::Sources;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{self, Manifest};
use crate::progress;
use crate::reference::Repository;
use crate::retry::{self, Backoff};

/// Redirects followed for one request. ghcr and Docker Hub use one (to their CDN).
pub const MAX_REDIRECTS: usize = 10;
/// Defaults to 30 s: to connect, for a reply, and between two reads of a body (`--timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pages of a tag list followed before giving up on a registry that never stops.
const MAX_PAGES: usize = 10_000;
/// Token and error bodies are small; we never read more than this of them.
const SMALL_BODY: u64 = 64 << 10;

/// How the client behaves, from the command line.
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
    /// Where each registry's credentials come from (see `credentials.rs`).
    pub credentials: Sources,
    /// Tries after the first, per request (`--retries`).
    pub retries: u32,
    /// Connect, reply and idle-read timeout (`--timeout`).
    pub timeout: Duration,
    /// Skip TLS verification (`--insecure`).
    pub insecure: bool,
    /// No notices about retries.
    pub quiet: bool,
}

pub struct Client {
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
    /// `Authorization` values that worked, by registry host and scope: one token per run.
    auth: HashMap<(String, String), String>,
    /// Credentials found for each registry host and repository (auth.json may hold one
    /// per namespace), looked up when a registry first asks.
    credentials: HashMap<(String, String), Option<Credentials>>,
}

/// A blob's body, ready to stream.
pub struct Blob {
    pub reader: BodyReader<'static>,
    /// Content-Length, when the server sent one.
    pub len: Option<u64>,
    /// The offset in the blob where this body begins: where we asked, or 0 when the server
    /// sent it whole (it ignored our Range, or the ETag changed).
    pub start: u64,
    /// The blob's ETag, for `If-Range` when resuming.
    pub etag: Option<String>,
}

impl Client {
    pub fn new(options: Options) -> Result<Client> {
        let mut extra = Vec::new();
        for path in &options.ca_files {
            extra.extend(read_certificates(path)?);
        }
        Ok(Client {
            agents: HashMap::new(),
            extra,
            env_read: false,
            extra_roots: None,
            options,
            auth: HashMap::new(),
            credentials: HashMap::new(),
        })
    }

    pub fn retries(&self) -> u32 {
        self.options.retries
    }

    /// Fetches and parses a manifest by tag or digest.
    /// The body is checked against `Docker-Content-Digest` when the registry sends one,
    /// and against the digest asked for when there is one.
    pub fn manifest(&mut self, repo: &Repository, reference: &str) -> Result<Manifest> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            repo.registry().base_url(),
            repo.path()
        );
        let response = self.get(repo, &url, &[("Accept", manifest::ACCEPT)])?;
        let separator = if reference.contains(':') { '@' } else { ':' };
        let mut response = check_status(response, &url, || {
            format!("manifest {}{separator}{reference}", repo.name())
        })?;
        let content_type = header(&response, "content-type");
        let sent_digest = header(&response, "docker-content-digest");
        let body = read_json_body(&mut response, &url)?;
        let actual = Digest::of(&body);
        let expected = reference
            .parse::<Digest>()
            .ok()
            .or_else(|| sent_digest?.parse().ok());
        if let Some(expected) = expected {
            if expected != actual {
                return Err(Error::DigestMismatch { expected, actual });
            }
        }
        Manifest::parse(content_type.as_deref(), &body)
    }

    /// Starts downloading a blob from byte `from` (0: all of it); the caller streams and
    /// verifies it, and looks at `Blob::start` to see what it got.
    pub fn blob(
        &mut self,
        repo: &Repository,
        digest: &Digest,
        from: u64,
        etag: Option<&str>,
    ) -> Result<Blob> {
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            repo.registry().base_url(),
            repo.path()
        );
        let range = format!("bytes={from}-");
        let mut headers = Vec::new();
        if from > 0 {
            headers.push(("Range", range.as_str()));
            // If the content behind the URL changed, the server sends it whole (200).
            headers.extend(etag.map(|etag| ("If-Range", etag)));
        }
        let mut response = self.get(repo, &url, &headers)?;
        let mut start = 0;
        if from > 0 {
            let range = header(&response, "content-range").and_then(|v| parse_content_range(&v));
            match (response.status().as_u16(), range) {
                (206, Some(range)) if range.start == from => start = from,
                // 416, or a range we did not ask for: take the whole blob instead.
                (206 | 416, _) => {
                    drain(response);
                    response = self.get(repo, &url, &[])?;
                }
                _ => {}
            }
        }
        let response = check_status(response, &url, || format!("blob {}@{digest}", repo.name()))?;
        let etag = header(&response, "etag");
        let len = response.body().content_length();
        Ok(Blob {
            reader: response.into_body().into_reader(),
            len,
            start,
            etag,
        })
    }

    /// Lists a repository's tags, following `Link: <...>; rel="next"` pagination.
    pub fn tags(&mut self, repo: &Repository) -> Result<Vec<String>> {
        let mut url = format!(
            "{}/v2/{}/tags/list",
            repo.registry().base_url(),
            repo.path()
        );
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self.get(repo, &url, &[("Accept", "application/json")])?;
            let mut response =
                check_status(response, &url, || format!("repository {}", repo.name()))?;
            let next = header(&response, "link").and_then(|link| next_link(&link));
            let body = read_json_body(&mut response, &url)?;
            let bad = || {
                Error::BadManifest(format!(
                    "the tag list from {url} is not {{\"tags\": [...]}}"
                ))
            };
            let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| bad())?;
            match json.get("tags") {
                // distribution answers `null` for a repository without tags.
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::Array(page)) => tags.extend(
                    page.iter()
                        .map(|t| t.as_str().map(str::to_string).ok_or_else(bad))
                        .collect::<Result<Vec<_>>>()?,
                ),
                Some(_) => return Err(bad()),
            }
            match next {
                Some(next) => url = resolve(&url, &next)?,
                None => return Ok(tags),
            }
        }
        Err(Error::BadManifest(format!(
            "more than {MAX_PAGES} pages of tags"
        )))
    }

    /// GET with authentication: ghcr's anonymous token or a cached one first, then what a
    /// 401 challenge asks for, once. Returns whatever the registry finally answers.
    fn get(
        &mut self,
        repo: &Repository,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response<Body>> {
        let registry = repo.registry();
        let key = (
            registry.host().to_string(),
            format!("repository:{}:pull", repo.path()),
        );
        let mut authorization = self.auth.get(&key).cloned();
        if authorization.is_none() && registry.is_ghcr() {
            authorization = Some(GHCR_ANONYMOUS.to_string());
        }
        let mut answered_challenge = false;
        loop {
            let response = self.follow(url, headers, authorization.as_deref())?;
            let status = response.status().as_u16();
            let shortcut_refused =
                status == 403 && authorization.as_deref() == Some(GHCR_ANONYMOUS);
            if status != 401 && !shortcut_refused {
                return Ok(response);
            }
            if answered_challenge {
                return Err(if status == 403 {
                    Error::Denied
                } else {
                    Error::AuthRequired
                });
            }
            let challenge = header(&response, "www-authenticate")
                .as_deref()
                .and_then(Challenge::parse);
            drain(response);
            let next = match challenge {
                // A refused shortcut may come without a challenge: ask again with nothing.
                None if authorization.is_some() => None,
                None => return Err(Error::AuthRequired),
                Some(Challenge::Basic) => match self.credentials(repo)? {
                    Some(c) if c.identity_token.is_none() => Some(c.basic()),
                    _ => return Err(Error::AuthRequired),
                },
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => {
                    let credentials = self.credentials(repo)?;
                    Some(self.token(
                        &realm,
                        service.as_deref(),
                        scope.as_deref().unwrap_or(&key.1),
                        credentials,
                    )?)
                }
            };
            if let Some(value) = &next {
                self.auth.insert(key.clone(), value.clone());
                answered_challenge = true;
            }
            authorization = next;
        }
    }

    /// The repository's credentials, from the first source that has some; looked up once.
    fn credentials(&mut self, repo: &Repository) -> Result<Option<Credentials>> {
        let key = (repo.registry().host().to_string(), repo.path());
        if let Some(found) = self.credentials.get(&key) {
            return Ok(found.clone());
        }
        let found = self.options.credentials.lookup(&key.0, &key.1)?;
        self.credentials.insert(key, found.clone());
        Ok(found)
    }

    /// Asks a token service for a pull token: anonymously, with Basic credentials, or by
    /// trading an identity token (OAuth2 refresh token, as docker does).
    fn token(
        &mut self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: Option<Credentials>,
    ) -> Result<String> {
        let mut response = match credentials
            .as_ref()
            .and_then(|c| c.identity_token.as_deref())
        {
            Some(refresh) => self.refresh_token(realm, service, scope, refresh)?,
            None => {
                let url = auth::token_url(realm, service, scope);
                let basic = credentials.as_ref().map(Credentials::basic);
                self.follow(&url, &[], basic.as_deref())?
            }
        };
        match response.status().as_u16() {
            200 => {}
            401 | 403 => return Err(Error::AuthRequired),
            status => {
                return Err(Error::Status {
                    status: status_text(status),
                    url: realm.to_string(),
                })
            }
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(SMALL_BODY)
            .read_to_vec();
        let token = body.ok().as_deref().and_then(auth::parse_token);
        let token =
            token.ok_or_else(|| Error::Network(format!("no token in the answer of {realm}")))?;
        Ok(format!("Bearer {token}"))
    }

    /// POSTs an OAuth2 `refresh_token` grant to the realm. Not retried: a POST that failed
    /// half-way is not ours to repeat blindly, and the realm answers at once anyway.
    fn refresh_token(
        &mut self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        refresh: &str,
    ) -> Result<Response<Body>> {
        let form = auth::refresh_form(service, scope, refresh);
        self.agent(realm, false)
            .post(realm)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form.as_bytes())
            .map_err(|e| transport(realm, e))
    }

    /// Sends a GET and follows redirects, giving `authorization` only to hops on the
    /// original URL's origin (GHSA-g5v4-5x39-vwhx is what happens otherwise).
    fn follow(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Result<Response<Body>> {
        let origin = Origin::of(url)?;
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let same_origin = Origin::of(&url)? == origin;
            let response = self.send(&url, headers, authorization.filter(|_| same_origin))?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = header(&response, "location").ok_or_else(|| {
                Error::Redirect(format!(
                    "{} without a Location from {url}",
                    response.status()
                ))
            })?;
            drain(response);
            url = resolve(&url, &location)?;
        }
        Err(Error::Redirect(format!(
            "more than {MAX_REDIRECTS} redirects, last to {url}"
        )))
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
                drain(response);
            }
            if !self.options.quiet {
                let (n, of) = backoff.used();
                progress::note(format_args!(
                    "retry {n} of {of} in {:.1} s: {why}",
                    delay.as_secs_f64()
                ));
            }
            std::thread::sleep(delay);
        }
    }

    /// With extra certificates, their agent goes first and the bundled roots are the
    /// fallback: ureq's root store replaces rather than extends, and "also trust" is what
    /// users of `--ca-file` expect (a registry on a private CA, a CDN on a public one).
    fn send_once(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Result<Response<Body>> {
        let call = |agent: &Agent| {
            let mut request = agent.get(url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(authorization) = authorization {
                request = request.header("Authorization", authorization);
            }
            request.call().map_err(|e| transport(url, e))
        };
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

/// Proxies as curl reads them: `https_proxy` for https URLs and `http_proxy` for http ones
/// (either case), `all_proxy` for both when those are unset, and `no_proxy` for the hosts
/// that go direct (`*`, a host, or a domain suffix such as `.internal` or `internal`).
#[derive(Clone, Debug, Default)]
pub struct Proxies {
    http: Option<ureq::Proxy>,
    https: Option<ureq::Proxy>,
    no_proxy: Vec<String>,
}

impl Proxies {
    pub fn from_env() -> Result<Proxies> {
        let var = |name: &str| {
            [name.to_ascii_lowercase(), name.to_string()]
                .iter()
                .find_map(|n| {
                    std::env::var(n)
                        .ok()
                        .filter(|v| !v.is_empty())
                        .map(|v| (n.clone(), v))
                })
        };
        let proxy = |found: Option<(String, String)>| -> Result<Option<ureq::Proxy>> {
            match found {
                None => Ok(None),
                Some((name, url)) => ureq::Proxy::new(&url)
                    .map(Some)
                    .map_err(|_| Error::Usage(format!("{name}: not a proxy URL: {url}"))),
            }
        };
        let all = var("ALL_PROXY");
        Ok(Proxies {
            http: proxy(var("HTTP_PROXY").or_else(|| all.clone()))?,
            https: proxy(var("HTTPS_PROXY").or(all))?,
            no_proxy: var("NO_PROXY")
                .map(|(_, v)| {
                    v.split(',')
                        .map(|h| h.trim().to_ascii_lowercase())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    fn for_url(&self, url: &str) -> Option<ureq::Proxy> {
        let uri = Uri::try_from(url).ok()?;
        let host = uri.host()?.to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let direct = self.no_proxy.iter().any(|entry| {
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            // A port on an entry is ignored; `[v6]` loses its brackets, a bare v6 keeps its colons.
            let entry = match entry.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(v6),
                None if entry.matches(':').count() == 1 => entry.split(':').next().unwrap_or(entry),
                None => entry,
            };
            // Addresses match whole; names also match as a domain suffix.
            let is_address = host.parse::<std::net::IpAddr>().is_ok();
            entry == "*"
                || host == entry
                || (!is_address
                    && host
                        .strip_suffix(entry)
                        .is_some_and(|rest| rest.ends_with('.')))
        });
        if direct {
            return None;
        }
        match uri.scheme_str() {
            Some("https") => self.https.clone(),
            _ => self.http.clone(),
        }
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
        // Redirects are followed in `follow`, which knows who may see credentials.
        .max_redirects(0)
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        // Idle time between reads, not the whole body: a 1 GiB blob may take minutes.
        .timeout_per_read(Some(timeout))
        .user_agent(concat!("ocidl/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        // Not ureq's reading of the environment: `Proxies` reads it as curl does.
        .proxy(proxy)
        .build()
        .new_agent()
}

fn read_certificates(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(path).map_err(Error::file(path))?;
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

/// Maps the statuses that have a meaning for the user; lets 2xx through.
fn check_status(
    response: Response<Body>,
    url: &str,
    what: impl Fn() -> String,
) -> Result<Response<Body>> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    drain(response);
    Err(match status {
        404 => Error::NotFound(what()),
        401 => Error::AuthRequired,
        403 => Error::Denied,
        status => Error::Status {
            status: status_text(status),
            url: url.to_string(),
        },
    })
}

/// "503 Service Unavailable": the number for scripts, the words for people.
fn status_text(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_string()
}

/// The first byte of a `Content-Range: bytes <first>-<last>/<total or *>` answer, and the rest.
#[derive(Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: Option<u64>,
}

pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let (first_last, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = first_last.split_once('-')?;
    let number = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let range = ContentRange {
        start: number(first)?,
        end: number(last)?,
        total: if total == "*" {
            None
        } else {
            Some(number(total)?)
        },
    };
    let fits = range.start <= range.end && range.total.is_none_or(|t| range.end < t);
    fits.then_some(range)
}

/// A manifest or tag list: read whole, up to `manifest::MAX_SIZE`.
fn read_json_body(response: &mut Response<Body>, url: &str) -> Result<Vec<u8>> {
    response
        .body_mut()
        .with_config()
        .limit(manifest::MAX_SIZE)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => {
                Error::BadManifest(format!("{url} is larger than {} bytes", manifest::MAX_SIZE))
            }
            e => transport(url, e),
        })
}

fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)?
        .to_str()
        .ok()
        .map(str::to_string)
}

/// Reads a small unwanted body to its end, so its connection goes back to the pool.
fn drain(mut response: Response<Body>) {
    let _ = response
        .body_mut()
        .with_config()
        .limit(SMALL_BODY)
        .read_to_vec();
}

fn transport(url: &str, e: ureq::Error) -> Error {
    let host = Uri::try_from(url)
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    match e {
        ureq::Error::HostNotFound => Error::Connect {
            host,
            cause: "host not found".into(),
        },
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
            if io.kind() == std::io::ErrorKind::InvalidData && url.starts_with("https:") =>
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

fn is_connect_failure(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
    )
}

/// Scheme, host and port: what must match for a hop to see our credentials.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &str) -> Result<Origin> {
        let bad = || Error::Redirect(format!("unusable URL {url}"));
        let uri = Uri::try_from(url).map_err(|_| bad())?;
        let scheme = uri.scheme_str().ok_or_else(bad)?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return Err(bad()),
        };
        Ok(Origin {
            host: uri.host().ok_or_else(bad)?.to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(default_port),
            scheme,
        })
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288): `<url>; rel="next"`.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = params.split(';').any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p == "rel=\"next\"" || p == "rel=next"
        });
        next.then(|| target.to_string())
    })
}

/// Resolves a Location header against the URL that sent it (RFC 9110 allows relative ones).
fn resolve(base: &str, location: &str) -> Result<String> {
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
    fn origins_compare_scheme_host_and_port() {
        let o = |u: &str| Origin::of(u).unwrap();
        assert_eq!(o("https://ghcr.io/v2/x"), o("https://GHCR.io:443/token"));
        assert_ne!(o("https://ghcr.io/v2/x"), o("http://ghcr.io/v2/x"));
        assert_ne!(o("http://127.0.0.1:5000/a"), o("http://127.0.0.1:5001/a"));
        assert_ne!(
            o("https://ghcr.io/a"),
            o("https://pkg-containers.githubusercontent.com/a")
        );
        assert!(Origin::of("ftp://x/y").is_err());
        assert!(Origin::of("/relative").is_err());
    }

    #[test]
    fn reads_content_ranges() {
        let r = |s: &str| parse_content_range(s);
        assert_eq!(
            r("bytes 100-199/200"),
            Some(ContentRange {
                start: 100,
                end: 199,
                total: Some(200)
            })
        );
        assert_eq!(
            r("bytes 0-0/*"),
            Some(ContentRange {
                start: 0,
                end: 0,
                total: None
            })
        );
        for bad in [
            "",
            "bytes",
            "bytes */200",
            "bytes 5-4/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes +1-2/3",
            "bytes 1-2/3/4",
            "bytes 99999999999999999999-1/2",
        ] {
            assert_eq!(r(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn proxies_by_scheme_and_no_proxy() {
        let proxy = |url: &str| ureq::Proxy::new(url).ok();
        let proxies = Proxies {
            http: proxy("http://127.0.0.1:3128"),
            https: proxy("http://127.0.0.1:3129"),
            no_proxy: vec![
                "internal".into(),
                ".corp.example".into(),
                "10.0.0.1".into(),
                "[::1]".into(),
            ],
        };
        let port = |url: &str| proxies.for_url(url).map(|p| p.port());
        assert_eq!(port("https://ghcr.io/v2/"), Some(3129));
        assert_eq!(port("http://127.0.0.1:5000/v2/"), Some(3128));
        assert_eq!(port("https://registry.internal/v2/"), None);
        assert_eq!(port("https://internal/v2/"), None);
        assert_eq!(port("https://a.corp.example:5000/v2/"), None);
        assert_eq!(port("http://10.0.0.1/v2/"), None);
        assert_eq!(port("http://[::1]:5000/v2/"), None);
        assert_eq!(port("https://notinternal/v2/"), Some(3129));
        let partial = Proxies {
            no_proxy: vec!["0.0.1".into()],
            ..proxies.clone()
        };
        assert_eq!(
            partial.for_url("http://127.0.0.1/").map(|p| p.port()),
            Some(3128)
        );
        let all = Proxies {
            no_proxy: vec!["*".into()],
            ..proxies.clone()
        };
        assert_eq!(all.for_url("https://ghcr.io/").map(|p| p.port()), None);
    }

    #[test]
    fn reads_link_headers() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(
            next_link(r#"<https://x/p1>; rel="prev", <https://x/p3>; rel=next"#).as_deref(),
            Some("https://x/p3")
        );
        for none in [
            "",
            "<x>",
            "<x>; rel=\"prev\"",
            "x; rel=\"next\"",
            "<x; rel=\"next\"",
        ] {
            assert_eq!(next_link(none), None, "{none:?}");
        }
    }

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
}
