//! A fake registry whose one interesting blob answers as a test scripts it, attempt by
//! attempt: the tool for rate limits, broken bodies, servers that mangle `Range`.
//!
//! The registry serves the package `x/y:t` (files `big`, the scripted blob, and `small`) and
//! the blob itself as `x/y@<digest>`; anything the script leaves alone is answered like
//! distribution would, `Range` included.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::digest_of;
use super::fake::{Content, FakeServer, Request, Response};

pub const REPO: &str = "x/y";
/// The title of the scripted blob in the package.
pub const BIG: &str = "big";
/// The other file of the package, served normally.
pub const SMALL: &[u8] = b"small";

/// The running fake and what it serves.
pub struct Scripted {
    pub server: FakeServer,
    /// The scripted blob's bytes.
    pub data: Vec<u8>,
    /// `sha256:<hex>` of `data`.
    pub digest: String,
}

/// Starts a fake whose GETs of `data`'s blob go to `script(request, data, attempt)` first
/// (`attempt` counts those GETs from 1); `None` means "answer normally" (`range_response`).
pub fn scripted(
    data: Vec<u8>,
    script: impl Fn(&Request, &[u8], usize) -> Option<Response> + Send + Sync + 'static,
) -> Scripted {
    let mut content = Content::new();
    content.add_package(REPO, "t", &[(BIG, &data), ("small", SMALL)]);
    let digest = digest_of(&data);
    let attempts = Arc::new(AtomicUsize::new(0));
    let served = data.clone();
    let wanted = digest.clone();
    let server = FakeServer::start(move |req| {
        if req.method == "GET" && req.path().ends_with(&wanted) {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            return script(req, &served, attempt).unwrap_or_else(|| range_response(req, &served));
        }
        content.serve(req)
    });
    Scripted {
        server,
        data,
        digest,
    }
}

impl Scripted {
    /// The package reference, `127.0.0.1:PORT/x/y:t`.
    pub fn package(&self) -> String {
        self.server.reference(&format!("{REPO}:t"))
    }

    /// The blob reference, `127.0.0.1:PORT/x/y@sha256:...`.
    pub fn blob(&self) -> String {
        self.server.reference(&format!("{REPO}@{}", self.digest))
    }

    /// Every GET of the scripted blob so far.
    pub fn blob_gets(&self) -> Vec<Request> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path().ends_with(&self.digest))
            .collect()
    }

    /// The `Range` header of each GET of the scripted blob, in order.
    pub fn ranges(&self) -> Vec<Option<String>> {
        self.blob_gets()
            .iter()
            .map(|r| r.header("range").map(str::to_string))
            .collect()
    }

    /// The `If-Range` header of each GET of the scripted blob, in order.
    pub fn if_ranges(&self) -> Vec<Option<String>> {
        self.blob_gets()
            .iter()
            .map(|r| r.header("if-range").map(str::to_string))
            .collect()
    }

    /// GETs of any blob (layers and config), to see that nothing was downloaded.
    pub fn all_blob_gets(&self) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path().contains("/blobs/"))
            .count()
    }
}

/// The first byte a `Range: bytes=N-` asks for.
pub fn range_start(req: &Request) -> Option<usize> {
    req.header("range")?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

/// `data` as distribution serves it: 206 from `Range: bytes=N-` when N is inside the blob,
/// 416 when it is not, 200 without a Range.
pub fn range_response(req: &Request, data: &[u8]) -> Response {
    match range_start(req) {
        Some(start) if start < data.len() => partial_content(data, start),
        Some(_) => Response::new(416).header("Content-Range", &format!("bytes */{}", data.len())),
        None => Response::ok(data),
    }
}

/// 206 with `data[start..]` and its `Content-Range`.
pub fn partial_content(data: &[u8], start: usize) -> Response {
    Response::new(206).body(&data[start..]).header(
        "Content-Range",
        &format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
    )
}

/// `response` with only its first `n` body bytes sent, though its Content-Length announces
/// them all: the connection closes early.
pub fn cut(response: Response, n: usize) -> Response {
    let announced = response.body.len() as u64;
    let mut body = response.body.clone();
    body.truncate(n);
    response.body(&body).content_length(announced)
}
