//! A scripted HTTP/1.1 server on 127.0.0.1 for what a real registry can't be made to do:
//! ghcr's anonymous shortcut, bearer-token challenges, redirects to another host, broken
//! bodies. A test passes a closure from `Request` to `Response`; the server records every
//! request so the test can assert on what the client sent (and did not send).
//!
//! Every response carries `Connection: close` and the connection is closed after it: the
//! simplest correct HTTP/1.1, and one the client must handle anyway.
//!
//! A response can also misbehave the way real networks do (see `Delivery`): arrive late,
//! trickle in (throttled), stall with the socket open, or end with a TCP reset.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::digest_of;
use super::http::{find_header, read_head, Acceptor};
use super::push::{oci_manifest_json, pkgforge_annotations, Descriptor, Layer, OCI_MANIFEST};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target: path and query, e.g. `/token?scope=...` (for `CONNECT`, `host:port`).
    pub target: String,
    /// In arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request head had been read.
    pub at: Instant,
}

impl Request {
    /// The first header called `name`, ignoring ASCII case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }

    /// The query parameter `name`, percent-decoded (`+` counts as a space).
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }
}

/// What the handler answers.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Announce this `Content-Length` instead of the body's real length: more than the body
    /// makes a truncated response (the connection closes early).
    pub content_length: Option<u64>,
    /// Wait this long before sending anything (a server slow to answer).
    pub delay: Duration,
    /// How the body goes out.
    pub delivery: Delivery,
}

/// How a response's body is sent.
#[derive(Clone, Debug, Default)]
pub enum Delivery {
    /// All at once (the kernel and the client's reads decide the pieces).
    #[default]
    AtOnce,
    /// `chunk` bytes every `every`: a slow link. Once `release` (if any) is set, the rest
    /// goes at once.
    Throttled {
        chunk: usize,
        every: Duration,
        release: Option<Arc<AtomicBool>>,
    },
    /// The first `after` bytes of the body, then nothing for `stall` with the connection
    /// open, then the connection is closed.
    Stall { after: usize, stall: Duration },
    /// The head and the first `after` bytes of the body, then a TCP reset (RST).
    ResetAfter { after: usize },
    /// No answer at all: the connection is reset as soon as the request is read.
    Reset,
    /// The head without a `Content-Length` (the body ends when the connection does), then
    /// the body over and over until the client goes away or the server stops: a body that
    /// never ends.
    Endless,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            content_length: None,
            delay: Duration::ZERO,
            delivery: Delivery::AtOnce,
        }
    }

    /// Not an HTTP answer: the server resets the connection after reading the request.
    pub fn reset() -> Response {
        Response::new(0).delivery(Delivery::Reset)
    }

    /// 200 with `body`.
    pub fn ok(body: &[u8]) -> Response {
        Response::new(200).body(body)
    }

    /// 200 with a JSON body.
    pub fn json(value: &Value) -> Response {
        Response::ok(&serde_json::to_vec(value).unwrap()).header("Content-Type", "application/json")
    }

    /// A distribution-style error: `{"errors":[{"code":..,"message":..}]}`.
    pub fn error(status: u16, code: &str, message: &str) -> Response {
        let body = json!({ "errors": [{ "code": code, "message": message }] });
        Response::json(&body).status(status)
    }

    pub fn not_found() -> Response {
        Response::error(404, "MANIFEST_UNKNOWN", "manifest unknown")
    }

    /// 401 with a bearer challenge pointing at `realm`.
    pub fn bearer_challenge(realm: &str, service: &str, scope: &str) -> Response {
        Response::error(401, "UNAUTHORIZED", "authentication required").header(
            "WWW-Authenticate",
            &format!("Bearer realm=\"{realm}\",service=\"{service}\",scope=\"{scope}\""),
        )
    }

    /// 401 with a bearer challenge whose realm is `/token` on the server that got `req` (the
    /// Host header names it), as a registry with its own token endpoint answers.
    pub fn bearer_challenge_here(req: &Request, service: &str, scope: &str) -> Response {
        let realm = format!("http://{}/token", req.header("host").unwrap_or_default());
        Response::bearer_challenge(&realm, service, scope)
    }

    /// A redirect (`status` 301/302/303/307/308) to `location`.
    pub fn redirect(status: u16, location: &str) -> Response {
        Response::new(status).header("Location", location)
    }

    pub fn status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: &[u8]) -> Response {
        self.body = body.to_vec();
        self
    }

    pub fn content_length(mut self, len: u64) -> Response {
        self.content_length = Some(len);
        self
    }

    /// Answer only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Response {
        self.delay = delay;
        self
    }

    pub fn delivery(mut self, delivery: Delivery) -> Response {
        self.delivery = delivery;
        self
    }

    /// `chunk` bytes every `every`.
    pub fn throttle(self, chunk: usize, every: Duration) -> Response {
        self.delivery(Delivery::Throttled {
            chunk,
            every,
            release: None,
        })
    }

    /// `throttle` until `release` is set, then the rest at once.
    pub fn throttle_until(
        self,
        chunk: usize,
        every: Duration,
        release: &Arc<AtomicBool>,
    ) -> Response {
        self.delivery(Delivery::Throttled {
            chunk,
            every,
            release: Some(Arc::clone(release)),
        })
    }

    /// The first `after` body bytes, then silence for `stall` (connection open), then close.
    pub fn stall_after(self, after: usize, stall: Duration) -> Response {
        self.delivery(Delivery::Stall { after, stall })
    }

    /// The head and the first `after` body bytes, then a TCP reset.
    pub fn reset_after(self, after: usize) -> Response {
        self.delivery(Delivery::ResetAfter { after })
    }

    /// No `Content-Length`, and the body repeated for as long as the client reads.
    pub fn endless(self) -> Response {
        self.delivery(Delivery::Endless)
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

/// Every request parsed so far, in arrival order.
type Requests = Mutex<Vec<Request>>;

/// The running server; stops accepting on drop.
pub struct FakeServer {
    requests: Arc<Requests>,
    acceptor: Acceptor,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> FakeServer {
        let requests = Arc::new(Requests::default());
        let acceptor = {
            let requests = Arc::clone(&requests);
            Acceptor::start(move |stream, stop| serve_connection(stream, &requests, &handler, stop))
        };
        FakeServer { requests, acceptor }
    }

    pub fn port(&self) -> u16 {
        self.acceptor.port()
    }

    /// `127.0.0.1:PORT`: the registry part of a reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// `127.0.0.1:PORT/<rest>`.
    pub fn reference(&self, rest: &str) -> String {
        format!("{}/{rest}", self.host())
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    /// Every request parsed so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path().starts_with(prefix))
            .collect()
    }

    /// TCP connections accepted so far, including ones that never sent a parseable request
    /// (a TLS handshake, say).
    pub fn connections(&self) -> usize {
        self.acceptor.connections()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // A failing test shows what the fake was asked. (The acceptor stops after this.)
        if thread::panicking() {
            eprintln!("--- requests to fake server {} ---", self.host());
            for r in self.requests() {
                eprintln!("{} {} auth={:?}", r.method, r.target, r.authorization());
            }
        }
    }
}

fn serve_connection(stream: TcpStream, requests: &Requests, handler: &Handler, stop: &AtomicBool) {
    // A client that stops talking must not keep the thread forever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let Some(request) = read_request(&mut reader) else {
        // What a plain HTTP server says to a TLS client; the client sees a protocol error
        // (not a dropped connection it might retry).
        let _ = (&stream).write_all(
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        );
        return;
    };
    requests.lock().unwrap().push(request.clone());
    let response = handler(&request);
    if !pause(response.delay, stop) {
        return;
    }
    match write_response(&stream, &request, &response, stop) {
        // Closing both handles with a zero linger time sends RST instead of FIN.
        Ok(Ending::Reset) => {
            set_linger_zero(&stream);
            drop(reader);
            drop(stream);
        }
        _ => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Sleeps `duration` in small steps, giving up (false) when the server is being stopped,
/// so a stalled or throttled response does not keep its thread long after the test.
pub fn pause(duration: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + duration;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

/// How a response ended.
enum Ending {
    Close,
    Reset,
}

/// `SO_LINGER` with a zero timeout: `close` then aborts the connection with a reset. std has
/// no stable API for it (`set_linger` is unstable), hence the one libc call.
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    use std::os::raw::{c_int, c_void};

    #[repr(C)]
    struct Linger {
        l_onoff: c_int,
        l_linger: c_int,
    }
    // Linux values on x86_64 and aarch64 (generic socket ABI).
    const SOL_SOCKET: c_int = 1;
    const SO_LINGER: c_int = 13;
    extern "C" {
        fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
    }
    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor owned by `stream`, and a pointer to a live `linger`
    // with its exact size.
    let rc = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            (&linger as *const Linger).cast(),
            std::mem::size_of::<Linger>() as u32,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        std::io::Error::last_os_error()
    );
}

/// Parses one request; `None` for anything that is not HTTP/1.x (or is cut short).
fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    // A TLS ClientHello (first byte 0x16) has no line end to wait for: answer it at once
    // instead of waiting for the read timeout.
    if !reader.fill_buf().ok()?.first()?.is_ascii_uppercase() {
        return None;
    }
    let head = read_head(reader)?;
    let mut request = Request {
        method: head.method,
        target: head.target,
        headers: head.headers,
        body: Vec::new(),
        at: Instant::now(),
    };
    if let Some(len) = request
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        reader.take(len).read_to_end(&mut request.body).ok()?;
    }
    Some(request)
}

fn write_response(
    mut stream: &TcpStream,
    request: &Request,
    response: &Response,
    stop: &AtomicBool,
) -> std::io::Result<Ending> {
    if let Delivery::Reset = response.delivery {
        return Ok(Ending::Reset);
    }
    let length = response
        .content_length
        .unwrap_or(response.body.len() as u64);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let endless = matches!(response.delivery, Delivery::Endless);
    if !endless {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if request.method == "HEAD" {
        stream.flush()?;
        return Ok(Ending::Close);
    }
    let body = &response.body;
    match &response.delivery {
        Delivery::AtOnce | Delivery::Reset => stream.write_all(body)?,
        Delivery::Throttled {
            chunk,
            every,
            release,
        } => {
            let released = || release.as_ref().is_some_and(|r| r.load(Ordering::SeqCst));
            let mut sent = 0;
            while sent < body.len() {
                let end = if released() {
                    body.len()
                } else {
                    (sent + chunk).min(body.len())
                };
                stream.write_all(&body[sent..end])?;
                stream.flush()?;
                sent = end;
                if sent < body.len() && !released() && !pause(*every, stop) {
                    return Ok(Ending::Close);
                }
            }
        }
        Delivery::Stall { after, stall } => {
            stream.write_all(&body[..(*after).min(body.len())])?;
            stream.flush()?;
            pause(*stall, stop);
        }
        Delivery::ResetAfter { after } => {
            stream.write_all(&body[..(*after).min(body.len())])?;
            stream.flush()?;
            // Give the bytes time to reach the client before the reset overtakes them
            // (an RST discards what the peer has not read yet on some stacks).
            thread::sleep(Duration::from_millis(50));
            return Ok(Ending::Reset);
        }
        Delivery::Endless => {
            let piece: &[u8] = if body.is_empty() { b"endless " } else { body };
            // Ends with an error once the client closes its end (or after the write
            // timeout, when it stops reading).
            while !stop.load(Ordering::SeqCst) {
                stream.write_all(piece)?;
            }
        }
    }
    stream.flush()?;
    Ok(Ending::Close)
}

/// The reason phrase of `status` in a status line.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A "CDN" on its own port serving `content`'s blobs at `/blob/<digest>` to anyone: where
/// registries like ghcr.io and Docker Hub redirect blob requests.
pub fn cdn(content: Arc<Content>) -> FakeServer {
    FakeServer::start(move |req: &Request| {
        let digest = req.path().strip_prefix("/blob/").unwrap_or_default();
        match content.blob(digest) {
            Some(bytes) => Response::ok(bytes),
            None => Response::new(404),
        }
    })
}

/// Registry content served from memory: what a handler hands to when the request is allowed.
/// Answers `GET`/`HEAD` for `/v2/`, `/v2/<name>/manifests/<tag or digest>` and
/// `/v2/<name>/blobs/<digest>` like distribution does; 404 otherwise.
#[derive(Default)]
pub struct Content {
    /// (repository, tag or digest) -> (media type, bytes)
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    /// digest -> bytes, shared by all repositories
    blobs: HashMap<String, Vec<u8>>,
}

impl Content {
    pub fn new() -> Content {
        Content::default()
    }

    pub fn add_blob(&mut self, data: &[u8]) -> String {
        let digest = digest_of(data);
        self.blobs.insert(digest.clone(), data.to_vec());
        digest
    }

    /// Stores `manifest` under `repo:tag` and under its digest.
    pub fn add_manifest(
        &mut self,
        repo: &str,
        tag: &str,
        media_type: &str,
        manifest: &Value,
    ) -> Descriptor {
        let bytes = serde_json::to_vec_pretty(manifest).unwrap();
        self.add_manifest_bytes(repo, tag, media_type, &bytes)
    }

    /// Like `add_manifest`, for bytes that need not be JSON (or sane).
    pub fn add_manifest_bytes(
        &mut self,
        repo: &str,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Descriptor {
        let descriptor = Descriptor {
            media_type: media_type.into(),
            digest: digest_of(bytes),
            size: bytes.len() as u64,
        };
        for reference in [tag, descriptor.digest.as_str()] {
            self.manifests.insert(
                (repo.into(), reference.into()),
                (media_type.into(), bytes.to_vec()),
            );
        }
        descriptor
    }

    /// A pkgforge-shaped package (same shape as `Pusher::push_package`).
    pub fn add_package(&mut self, repo: &str, tag: &str, files: &[(&str, &[u8])]) -> Descriptor {
        let layers: Vec<Layer> = files
            .iter()
            .map(|(title, data)| Layer::file(title, data))
            .collect();
        self.add_blob(b"{}");
        for layer in &layers {
            self.add_blob(&layer.data);
        }
        let manifest = oci_manifest_json(&layers, &pkgforge_annotations(repo, tag));
        self.add_manifest(repo, tag, OCI_MANIFEST, &manifest)
    }

    /// Serves `data` as the blob `digest`, whatever its bytes hash to: a sha512 digest, or
    /// content that does not match its digest.
    pub fn add_blob_as(&mut self, digest: &str, data: &[u8]) {
        self.blobs.insert(digest.to_string(), data.to_vec());
    }

    pub fn blob(&self, digest: &str) -> Option<&[u8]> {
        self.blobs.get(digest).map(Vec::as_slice)
    }

    /// The registry's answer to `request`, without any auth checks.
    pub fn serve(&self, request: &Request) -> Response {
        if request.method != "GET" && request.method != "HEAD" {
            return Response::error(405, "UNSUPPORTED", "method not allowed");
        }
        let path = request.path();
        if path == "/v2/" || path == "/v2" {
            return Response::json(&json!({}));
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return Response::not_found();
        };
        if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
            return match self
                .manifests
                .get(&(repo.to_string(), reference.to_string()))
            {
                Some((media_type, bytes)) => Response::ok(bytes)
                    .header("Content-Type", media_type)
                    .header("Docker-Content-Digest", &digest_of(bytes)),
                None => Response::not_found(),
            };
        }
        if let Some((_repo, digest)) = rest.rsplit_once("/blobs/") {
            return match self.blobs.get(digest) {
                Some(bytes) => Response::ok(bytes)
                    .header("Content-Type", "application/octet-stream")
                    .header("Docker-Content-Digest", digest),
                None => Response::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
            };
        }
        Response::not_found()
    }
}
