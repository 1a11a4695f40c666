//! Counting what a client asked: from distribution's own log (one `response completed` line
//! per request at log level info, with the client's address and port, so distinct ports are
//! distinct TCP connections), and from the fake server's record.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::support::fake::{Content, FakeServer, Request, Response};

/// One request as distribution logged it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub uri: String,
    pub remote: String,
    pub status: u16,
}

/// The value of `key=` in a logrus text line: quoted (with `\"` escapes) or up to a space.
fn field(line: &str, key: &str) -> Option<String> {
    let pattern = format!(" {key}=");
    let start = line.find(&pattern)? + pattern.len();
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    } else {
        Some(rest.split(' ').next().unwrap_or("").to_string())
    }
}

/// Every request in a stretch of the registry's log.
pub fn parse_log(log: &str) -> Vec<Logged> {
    log.lines()
        .filter(|l| l.contains("msg=\"response completed"))
        .filter_map(|l| {
            Some(Logged {
                method: field(l, "http.request.method")?,
                uri: field(l, "http.request.uri")?,
                remote: field(l, "http.request.remoteaddr")?,
                status: field(l, "http.response.status")?.parse().ok()?,
            })
        })
        .collect()
}

/// Requests by kind, and connections.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub total: usize,
    pub ping: usize,
    pub manifest_get: usize,
    pub manifest_head: usize,
    pub blob_get: usize,
    pub blob_head: usize,
    pub token: usize,
    pub other: usize,
    pub status_401: usize,
    pub connections: usize,
}

impl Tally {
    fn add(&mut self, method: &str, path: &str) {
        self.total += 1;
        let path = path.split('?').next().unwrap_or(path);
        if path == "/v2/" || path == "/v2" {
            self.ping += 1;
        } else if path.contains("/manifests/") && method == "GET" {
            self.manifest_get += 1;
        } else if path.contains("/manifests/") && method == "HEAD" {
            self.manifest_head += 1;
        } else if path.contains("/blobs/") && method == "GET" {
            self.blob_get += 1;
        } else if path.contains("/blobs/") && method == "HEAD" {
            self.blob_head += 1;
        } else if path.starts_with("/token") {
            self.token += 1;
        } else {
            self.other += 1;
        }
    }

    pub fn from_log(entries: &[Logged]) -> Tally {
        let mut t = Tally::default();
        for e in entries {
            t.add(&e.method, &e.uri);
            if e.status == 401 {
                t.status_401 += 1;
            }
        }
        t.connections = entries
            .iter()
            .map(|e| e.remote.as_str())
            .collect::<BTreeSet<_>>()
            .len();
        t
    }

    pub fn from_fake(requests: &[Request], challenges: usize, connections: usize) -> Tally {
        let mut t = Tally::default();
        for r in requests {
            t.add(&r.method, r.path());
        }
        t.status_401 = challenges;
        t.connections = connections;
        t
    }

    /// `1 manifest GET + 100 blob GETs`-style breakdown, leaving out zeros.
    pub fn breakdown(&self) -> String {
        let parts = [
            (self.ping, "`/v2/` ping"),
            (self.manifest_get, "manifest GET"),
            (self.manifest_head, "manifest HEAD"),
            (self.blob_get, "blob GET"),
            (self.blob_head, "blob HEAD"),
            (self.token, "token GET"),
            (self.other, "other"),
        ];
        let shown: Vec<String> = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if shown.is_empty() {
            "none".into()
        } else {
            shown.join(" + ")
        }
    }
}

pub const GHCR_ANONYMOUS: &str = "Bearer QQ==";
pub const TOKEN: &str = "bench-token";

/// A fake with ghcr's behaviour for public packages: `Bearer QQ==` is accepted, anything else
/// gets a Bearer challenge (and a token endpoint that works, to see whether it is used).
pub fn ghcr_like(content: Content, scope_repo: &str) -> (FakeServer, Arc<AtomicUsize>) {
    auth_fake(content, scope_repo, &[GHCR_ANONYMOUS])
}

/// A fake registry with the standard token flow: API requests without `Bearer <TOKEN>` get a
/// 401 Bearer challenge whose realm is this server's `/token`, which hands out `TOKEN`.
pub fn token_registry(content: Content, scope_repo: &str) -> (FakeServer, Arc<AtomicUsize>) {
    auth_fake(content, scope_repo, &[])
}

fn auth_fake(
    content: Content,
    scope_repo: &str,
    also_accepted: &'static [&'static str],
) -> (FakeServer, Arc<AtomicUsize>) {
    let challenges = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&challenges);
    let scope_repo = scope_repo.to_string();
    let server = FakeServer::start(move |req: &Request| {
        if req.path() == "/token" {
            return Response::json(&json!({ "token": TOKEN }));
        }
        let bearer = format!("Bearer {TOKEN}");
        match req.authorization() {
            Some(a) if a == bearer || also_accepted.contains(&a) => content.serve(req),
            _ => {
                counter.fetch_add(1, Ordering::SeqCst);
                let realm = format!("http://{}/token", req.header("host").unwrap_or_default());
                // The scope names the repository asked for, as distribution's token auth does.
                let repo = req
                    .path()
                    .strip_prefix("/v2/")
                    .and_then(|p| {
                        p.rsplit_once("/manifests/")
                            .or_else(|| p.rsplit_once("/blobs/"))
                    })
                    .map(|(r, _)| r.to_string())
                    .unwrap_or_else(|| scope_repo.clone());
                Response::bearer_challenge(&realm, "bench", &format!("repository:{repo}:pull"))
            }
        }
    });
    (server, challenges)
}
