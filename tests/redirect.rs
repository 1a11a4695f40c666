//! Blob redirects, as ghcr.io and Docker Hub answer with a CDN URL: followed, bounded, and
//! never carrying the registry's `Authorization` to another origin.

use std::sync::Arc;

use crate::support::fake::{cdn, Content, FakeServer, Request, Response};
use crate::support::run::{pull_plain, Ocidl};
use crate::support::{assert_files, assert_tree, digest_of, file_refs, random_bytes, TempDir};

const REPO: &str = "pkgforge/x";

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("x", random_bytes(100 * 1024, 9)),
        ("x.json", b"{}".to_vec()),
    ]
}

/// A registry that requires ghcr's `Bearer QQ==` (so the client holds an Authorization
/// value worth leaking) and answers blob GETs via `redirect(digest)`.
fn redirecting_registry(
    content: Arc<Content>,
    redirect: impl Fn(&str) -> Response + Send + Sync + 'static,
) -> FakeServer {
    FakeServer::start(move |req: &Request| {
        if req.authorization() != Some("Bearer QQ==") {
            return Response::error(401, "UNAUTHORIZED", "ghcr shortcut expected");
        }
        if let Some((_, digest)) = req.path().rsplit_once("/blobs/") {
            return redirect(digest);
        }
        content.serve(req)
    })
}

fn package_content(files: &[(&'static str, Vec<u8>)]) -> Arc<Content> {
    let mut content = Content::new();
    content.add_package(REPO, "tag", &file_refs(files));
    Arc::new(content)
}

/// A pull of `REPO:tag` from `server` into `tmp`, over plain HTTP, with `flags` too.
fn pull(tmp: &TempDir, server: &FakeServer, flags: &[&str]) -> Ocidl {
    pull_plain(tmp.path(), flags, &server.reference(&format!("{REPO}:tag")))
}

#[test]
fn blob_redirect_to_another_port_drops_authorization() {
    for status in [307, 302, 301, 308, 303] {
        let tmp = TempDir::new();
        let files = files();
        let content = package_content(&files);
        let cdn = cdn(Arc::clone(&content));
        let cdn_url = cdn.url("/blob/");
        let registry = redirecting_registry(content, move |digest| {
            Response::redirect(status, &format!("{cdn_url}{digest}?sig=abc"))
        });

        let out = pull(&tmp, &registry, &["--ghcr"]).run();
        out.assert_success();
        assert_files(tmp.path(), &files);
        let seen = cdn.requests();
        assert!(seen.len() >= 2, "{status}: the CDN saw {seen:?}");
        for request in &seen {
            assert_eq!(
                request.authorization(),
                None,
                "{status}: Authorization leaked to the CDN: {request:?}"
            );
            assert_eq!(
                request.query("sig").as_deref(),
                Some("abc"),
                "{status}: query lost"
            );
        }
    }
}

#[test]
fn relative_redirect_on_the_same_registry_is_followed() {
    let tmp = TempDir::new();
    let files = files();
    let content = package_content(&files);
    let served = Arc::clone(&content);
    let registry = FakeServer::start(move |req: &Request| {
        if let Some(digest) = req.path().strip_prefix("/storage/") {
            return Response::ok(served.blob(digest).unwrap_or_default());
        }
        if req.authorization() != Some("Bearer QQ==") {
            return Response::error(401, "UNAUTHORIZED", "ghcr shortcut expected");
        }
        match req.path().rsplit_once("/blobs/") {
            Some((_, digest)) => Response::redirect(307, &format!("/storage/{digest}")),
            None => served.serve(req),
        }
    });
    pull(&tmp, &registry, &["--ghcr"]).run().assert_success();
    assert_files(tmp.path(), &files);
}

#[test]
fn redirect_loop_fails_instead_of_hanging() {
    let tmp = TempDir::new();
    let files = files();
    let content = package_content(&files);
    // Every blob URL redirects to a fresh URL on the same server, forever.
    let registry = FakeServer::start(move |req: &Request| {
        if req.path().contains("/blobs/") || req.path().starts_with("/loop/") {
            let n: u64 = req.query("n").and_then(|n| n.parse().ok()).unwrap_or(0);
            return Response::redirect(302, &format!("/loop/{}?n={}", digest_of(b"loop"), n + 1));
        }
        content.serve(req)
    });
    let out = pull(&tmp, &registry, &[]).run();
    out.assert_code(1);
    let hops = registry.requests_to("/loop/").len();
    assert!(hops < 100, "{hops} redirects followed");
    assert_tree(tmp.path(), &[]);
}

#[test]
fn redirect_ping_pong_between_servers_fails() {
    let tmp = TempDir::new();
    let files = files();
    let content = package_content(&files);
    // B sends everything back to A's blob URL, and A redirects blobs to B.
    let a_port = Arc::new(std::sync::OnceLock::<u16>::new());
    let a_port_for_b = Arc::clone(&a_port);
    let b = FakeServer::start(move |req: &Request| {
        let a = a_port_for_b.get().copied().unwrap_or_default();
        Response::redirect(
            307,
            &format!(
                "http://127.0.0.1:{a}/v2/{REPO}/blobs/{}",
                req.path().rsplit('/').next().unwrap()
            ),
        )
    });
    let b_url = b.url("/bounce/");
    let a = FakeServer::start(
        move |req: &Request| match req.path().rsplit_once("/blobs/") {
            Some((_, digest)) => Response::redirect(307, &format!("{b_url}{digest}")),
            None => content.serve(req),
        },
    );
    a_port.set(a.port()).unwrap();
    pull(&tmp, &a, &[]).run().assert_code(1);
    assert!(b.requests().len() < 100, "{} bounces", b.requests().len());
    assert_tree(tmp.path(), &[]);
}
