//! The registry protocol: manifests, blobs and tag lists, and the authentication that gets
//! them. HTTP itself (agents, retries, redirects, bounds) is `transport.rs`; which request
//! may carry which secret is `policy.rs`, and every request here goes through both.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use serde_json::Value;

use crate::content::digest::Digest;
use crate::content::manifest::{self, Fetched};
use crate::error::{Error, Result};
use crate::net::auth::{self, Challenge, Credentials, GHCR_ANONYMOUS};
use crate::net::credentials::Sources;
use crate::net::pipeline::Pipeline;
use crate::net::policy::{self, Origin, Secret};
use crate::net::transport::{resolve, status_text, Paced, Reply, Transport, SMALL_BODY};
use crate::reference::Repository;

/// Pages of a tag list followed before giving up on a registry that never stops.
pub const MAX_PAGES: usize = 10_000;

pub struct Client {
    transport: Transport,
    sources: Sources,
    /// The `Authorization` that worked, by registry (scheme, host and port) and scope: one
    /// token per run.
    auth: HashMap<(String, String), Secret>,
    /// Credentials found for each registry (scheme, host and port) and repository
    /// (auth.json may hold one per namespace), looked up when a registry first asks.
    credentials: HashMap<(String, String), Option<Credentials>>,
}

/// A blob's body, ready to stream.
pub struct Blob {
    pub reader: Paced,
    /// Content-Length, when the server sent one.
    pub len: Option<u64>,
    /// The offset in the blob where this body begins: where we asked, or 0 when the server
    /// sent it whole (it ignored our Range, or the ETag changed).
    pub start: u64,
    /// The blob's whole size, as a `Content-Range` said it.
    pub total: Option<u64>,
    /// The blob's ETag, for `If-Range` when resuming.
    pub etag: Option<String>,
}

impl Client {
    pub fn new(transport: Transport, sources: Sources) -> Client {
        Client {
            transport,
            sources,
            auth: HashMap::new(),
            credentials: HashMap::new(),
        }
    }

    pub fn retries(&self) -> u32 {
        self.transport.retries()
    }

    /// Tries after the first for what follows, requests and bodies alike.
    pub fn set_retries(&mut self, retries: u32) {
        self.transport.set_retries(retries)
    }

    pub fn timeout(&self) -> std::time::Duration {
        self.transport.timeout()
    }

    /// Fetches and parses a manifest by tag or digest.
    /// The body is checked against the digest asked for when there is one, else against
    /// `Docker-Content-Digest` when the registry sends one.
    pub fn manifest(&mut self, repo: &Repository, reference: &str) -> Result<Fetched> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            repo.registry().base_url(),
            repo.path()
        );
        let reply = self.get(repo, &url, &[("Accept", manifest::ACCEPT)])?;
        let separator = if reference.contains(':') { '@' } else { ':' };
        let reply = self.check_status(reply, || {
            format!("manifest {}{separator}{reference}", repo.name())
        })?;
        let content_type = reply.header("content-type");
        let sent_digest = reply.header("docker-content-digest");
        let body = reply.read_limited(manifest::MAX_SIZE, self.transport.pace(), "the manifest")?;
        let expected = reference
            .parse::<Digest>()
            .ok()
            .or_else(|| sent_digest?.parse().ok());
        let digest = match expected {
            Some(expected) => {
                let actual = expected.algorithm().of(&body);
                if expected != actual {
                    return Err(Error::DigestMismatch { expected, actual });
                }
                actual
            }
            None => Digest::of(&body),
        };
        Fetched::parse(content_type.as_deref(), body, digest)
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
        let url = blob_url(repo, digest);
        let range = format!("bytes={from}-");
        let mut headers = Vec::new();
        if from > 0 {
            headers.push(("Range", range.as_str()));
            // If the content behind the URL changed, the server sends it whole (200).
            headers.extend(etag.map(|etag| ("If-Range", etag)));
        }
        let mut reply = self.get(repo, &url, &headers)?;
        let mut start = 0;
        let mut total = None;
        if from > 0 {
            let range = reply
                .header("content-range")
                .and_then(|v| parse_content_range(&v));
            match (reply.status(), range) {
                (206, Some(range)) if range.start == from => {
                    start = from;
                    total = range.total;
                }
                // 416, or a range we did not ask for: take the whole blob instead.
                (206 | 416, _) => {
                    reply.drain(self.transport.pace());
                    reply = self.get(repo, &url, &[])?;
                }
                _ => {}
            }
        }
        let reply = self.check_status(reply, || format!("blob {}@{digest}", repo.name()))?;
        let etag = reply.header("etag");
        let len = reply.response.body().content_length();
        Ok(Blob {
            reader: reply.into_reader(self.transport.pace()),
            len,
            start,
            total,
            etag,
        })
    }

    /// Pipelined GETs of `blobs` (digest and descriptor size) from `repo`, in one thread at
    /// the speed of the link: see `pipeline.rs`. `Pipeline::next` yields each blob whose answer
    /// is its body (200 with its size), by index in `blobs`, and `Pipeline::missed` lists the
    /// rest for `blob`, one by one. Carries the `Authorization` this client already holds for
    /// `repo` (a token from an earlier challenge, or ghcr's anonymous one) and never answers a
    /// challenge itself: a blob refused is missed, and `blob` meets the challenge.
    pub fn pipeline<'c>(&'c mut self, repo: &Repository, blobs: &[(Digest, u64)]) -> Pipeline<'c> {
        let secret = self.auth.get(&auth_key(repo)).cloned().or_else(|| {
            let origin = Origin::of(&repo.registry().base_url()).ok()?;
            let shortcut = GHCR_ANONYMOUS.to_string();
            let ghcr = repo.registry().is_ghcr();
            ghcr.then(|| Secret::for_registry(shortcut, &origin))
        });
        let urls = blobs
            .iter()
            .map(|(digest, size)| (blob_url(repo, digest), *size))
            .collect();
        Pipeline::new(&mut self.transport, urls, secret)
    }

    /// Lists a repository's tags page by page, following `Link: <...>; rel="next"` on the
    /// registry's own origin, and hands each page to `page` as it arrives (it returns whether
    /// to go on): memory holds one page, however many there are. A page asked for twice (its
    /// URL spelt another way, or the same tags again), or more than `MAX_PAGES` pages, ends
    /// the list with an error.
    pub fn tags(
        &mut self,
        repo: &Repository,
        mut page: impl FnMut(Vec<String>) -> Result<bool>,
    ) -> Result<()> {
        let registry = Origin::of(&repo.registry().base_url())?;
        let mut url = format!(
            "{}/v2/{}/tags/list",
            repo.registry().base_url(),
            repo.path()
        );
        // Hashes, not the URLs and pages themselves: a registry chooses their length.
        let (state, mut seen) = (RandomState::new(), HashSet::new());
        for _ in 0..MAX_PAGES {
            if !seen.insert(state.hash_one(("url", page_key(&url)))) {
                return Err(Error::BadTags(format!("its pages loop: {url} came twice")));
            }
            let reply = self.get(repo, &url, &[("Accept", "application/json")])?;
            let reply = self.check_status(reply, || format!("repository {}", repo.name()))?;
            let next = reply.header("link").and_then(|link| next_link(&link));
            let page_url = reply.url.clone();
            let body =
                reply.read_limited(manifest::MAX_SIZE, self.transport.pace(), "a tag list")?;
            let tags = tag_page(&body, &page_url)?;
            if !tags.is_empty() && !seen.insert(state.hash_one(("tags", &tags))) {
                return Err(Error::BadTags(format!(
                    "its pages loop: {page_url} gave a page it gave before"
                )));
            }
            if !page(tags)? {
                return Ok(());
            }
            match next {
                Some(next) => {
                    url = resolve(&page_url, &next)?;
                    policy::next_page(&registry, &url)?;
                }
                None => return Ok(()),
            }
        }
        Err(Error::BadTags(format!("more than {MAX_PAGES} pages")))
    }

    /// GET with authentication: ghcr's anonymous token or a cached one first, then what a
    /// 401 challenge asks for, once. Returns whatever the registry finally answers.
    fn get(&mut self, repo: &Repository, url: &str, headers: &[(&str, &str)]) -> Result<Reply> {
        let registry = repo.registry();
        let origin = Origin::of(&registry.base_url())?;
        let key = auth_key(repo);
        let shortcut = Secret::for_registry(GHCR_ANONYMOUS.to_string(), &origin);
        let mut secret = match self.auth.get(&key) {
            Some(known) => Some(known.clone()),
            None => registry.is_ghcr().then(|| shortcut.clone()),
        };
        let mut answered_challenge = false;
        loop {
            let reply = self.transport.get(url, headers, secret.as_ref())?;
            let status = reply.status();
            // ghcr refuses its shortcut with 403 for a private package; a CDN's 403 (an
            // expired signed URL) is not that, and is the caller's to report.
            let shortcut_refused = status == 403
                && reply.origin == origin
                && secret.as_ref().and_then(|s| s.to(&origin)) == Some(GHCR_ANONYMOUS);
            if status != 401 && !shortcut_refused {
                return Ok(reply);
            }
            policy::challenge(&origin, &reply.origin)?;
            if answered_challenge {
                return Err(if status == 403 {
                    Error::Denied
                } else {
                    Error::AuthRequired
                });
            }
            let challenge = reply
                .header("www-authenticate")
                .as_deref()
                .and_then(Challenge::parse);
            reply.drain(self.transport.pace());
            let next = match challenge {
                // A refused shortcut may come without a challenge: ask again with nothing.
                None if secret.is_some() => None,
                None => return Err(Error::AuthRequired),
                Some(Challenge::Basic) => match self.credentials(repo)? {
                    Some(c) if c.identity_token.is_none() => {
                        Some(Secret::for_registry(c.basic(), &origin))
                    }
                    _ => return Err(Error::AuthRequired),
                },
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => {
                    let credentials = self.credentials(repo)?;
                    let scope = scope.as_deref().unwrap_or(&key.1);
                    Some(self.token(&origin, &realm, service.as_deref(), scope, credentials)?)
                }
            };
            if let Some(value) = &next {
                self.auth.insert(key.clone(), value.clone());
                answered_challenge = true;
            }
            secret = next;
        }
    }

    /// The repository's credentials, from the first source that has some; looked up once.
    fn credentials(&mut self, repo: &Repository) -> Result<Option<Credentials>> {
        // By scheme too: the same host over plain HTTP (a mirror) is not the same place.
        let registry = repo.registry();
        let key = (registry.base_url(), repo.path());
        if let Some(found) = self.credentials.get(&key) {
            return Ok(found.clone());
        }
        let plain = key.0.starts_with("http://");
        let found = self.sources.lookup(registry.host(), plain, &key.1)?;
        self.credentials.insert(key, found.clone());
        Ok(found)
    }

    /// Asks the token service that `registry`'s challenge named for a pull token:
    /// anonymously, with Basic credentials, or by trading an identity token (an OAuth2
    /// refresh token, as docker does). The credentials go there only if `policy` allows it.
    fn token(
        &mut self,
        registry: &Origin,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: Option<Credentials>,
    ) -> Result<Secret> {
        let url = auth::token_url(realm, service, scope);
        let reply = match &credentials {
            Some(Credentials {
                identity_token: Some(refresh),
                ..
            }) => {
                let secret = Secret::for_realm(refresh.clone(), registry, realm)?;
                self.transport.post_form(realm, &secret, |refresh| {
                    auth::refresh_form(service, scope, refresh)
                })?
            }
            Some(c) => {
                let secret = Secret::for_realm(c.basic(), registry, realm)?;
                self.transport.get(&url, &[], Some(&secret))?
            }
            None => {
                Origin::of(realm).map_err(|_| {
                    Error::Token(format!("the token realm {realm} is not an http(s) URL"))
                })?;
                self.transport.get(&url, &[], None)?
            }
        };
        match reply.status() {
            200 => {}
            401 | 403 => return Err(Error::AuthRequired),
            status => {
                return Err(Error::Status {
                    status: status_text(status),
                    url: realm.to_string(),
                })
            }
        }
        let body = reply.read_limited(SMALL_BODY, self.transport.pace(), "the token answer")?;
        let token = auth::parse_token(&body)
            .ok_or_else(|| Error::Token(format!("{realm} answered without a usable token")))?;
        Ok(Secret::for_registry(format!("Bearer {token}"), registry))
    }

    /// Maps the statuses that have a meaning for the user; lets 2xx through.
    fn check_status(&self, reply: Reply, what: impl Fn() -> String) -> Result<Reply> {
        let status = reply.status();
        if (200..300).contains(&status) {
            return Ok(reply);
        }
        let url = reply.url.clone();
        reply.drain(self.transport.pace());
        Err(match status {
            404 => Error::NotFound(what()),
            401 => Error::AuthRequired,
            403 => Error::Denied,
            status => Error::Status {
                status: status_text(status),
                url,
            },
        })
    }
}

/// Where a blob is asked for.
fn blob_url(repo: &Repository, digest: &Digest) -> String {
    let base = repo.registry().base_url();
    format!("{base}/v2/{}/blobs/{digest}", repo.path())
}

/// The registry (scheme, host and port) and pull scope an `Authorization` is kept under:
/// one token per run.
fn auth_key(repo: &Repository) -> (String, String) {
    let scope = format!("repository:{}:pull", repo.path());
    (repo.registry().base_url(), scope)
}

/// A page's URL as a server reads it: without its fragment, and with `.` and `..` path
/// segments resolved, so that spelling a page another way does not make it another page.
fn page_key(url: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    format!("{}?{query}", segments.join("/"))
}

/// One page of `{"tags": [...]}`.
fn tag_page(body: &[u8], url: &str) -> Result<Vec<String>> {
    let bad = || Error::BadTags(format!("the page from {url} is not {{\"tags\": [...]}}"));
    let json: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    match json.get("tags") {
        // distribution answers `null` for a repository without tags.
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(page)) => page
            .iter()
            .map(|t| t.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn reads_tag_pages() {
        assert_eq!(tag_page(br#"{"tags":["a","b"]}"#, "u").unwrap(), ["a", "b"]);
        assert!(tag_page(br#"{"name":"x","tags":null}"#, "u")
            .unwrap()
            .is_empty());
        for bad in [&b"nope"[..], br#"{"tags":[1]}"#, br#"{"tags":"a"}"#] {
            assert!(tag_page(bad, "u").is_err());
        }
    }
}
