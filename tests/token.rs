//! Token auth against the fake server: ghcr's anonymous shortcut (`Bearer QQ==`, no token
//! request), the standard bearer challenge, and the fallback from one to the other.

use std::sync::Arc;

use serde_json::json;

use crate::support::fake::{Content, FakeServer, Request, Response};
use crate::support::run::{pull_plain, Ocidl};
use crate::support::{assert_files, assert_tree, basic_auth, file_refs, random_bytes, TempDir};

const REPO: &str = "pkgforge/x";
const GHCR_ANONYMOUS: &str = "Bearer QQ==";
const TOKEN: &str = "t0k";

/// Three files, so a pull makes several authorized requests.
fn package() -> (Content, Vec<(&'static str, Vec<u8>)>) {
    let files = vec![
        ("x", random_bytes(64 * 1024, 5)),
        ("x.json", b"{\"pkg\":\"x\"}".to_vec()),
        ("CHECKSUM", b"sums\n".to_vec()),
    ];
    let mut content = Content::new();
    content.add_package(REPO, "tag", &file_refs(&files));
    (content, files)
}

/// The challenge for requests without an accepted token: get one from `/token` here.
fn challenge(req: &Request) -> Response {
    Response::bearer_challenge_here(req, "fake", &format!("repository:{REPO}:pull"))
}

/// A registry whose `/token` endpoint hands out `TOKEN` (as `token_field`), and whose API
/// answers requests carrying one of `accepted` and challenges all others. The realm comes
/// from the Host header, which is this server.
fn token_registry(
    content: Content,
    accepted: &'static [&'static str],
    token_field: &'static str,
) -> FakeServer {
    let content = Arc::new(content);
    FakeServer::start(move |req: &Request| {
        if req.path() == "/token" {
            return Response::json(&json!({ token_field: TOKEN }));
        }
        match req.authorization() {
            Some(auth) if accepted.contains(&auth) => content.serve(req),
            _ => challenge(req),
        }
    })
}

/// A pull of `REPO:tag` from `server` into `tmp`, over plain HTTP, with `flags` too.
fn pull(tmp: &TempDir, server: &FakeServer, flags: &[&str]) -> Ocidl {
    pull_plain(tmp.path(), flags, &server.reference(&format!("{REPO}:tag")))
}

/// Requests to the registry API for `REPO` (manifests and blobs), leaving out `/v2/` pings.
fn api_requests(server: &FakeServer) -> Vec<Request> {
    server.requests_to(&format!("/v2/{REPO}/"))
}

#[test]
fn ghcr_shortcut_needs_no_token_request() {
    let tmp = TempDir::new();
    let (content, files) = package();
    let server = token_registry(content, &[GHCR_ANONYMOUS], "token");

    let out = pull(&tmp, &server, &["--ghcr"]).run();
    out.assert_success();
    assert_files(tmp.path(), &files);
    assert!(
        server.requests_to("/token").is_empty(),
        "token requested: {:?}",
        server.requests()
    );
    let api = api_requests(&server);
    assert!(api.len() >= 4, "manifest + 3 blobs, saw {api:?}");
    for request in &api {
        assert_eq!(
            request.authorization(),
            Some(GHCR_ANONYMOUS),
            "{} {}",
            request.method,
            request.target
        );
    }
}

#[test]
fn bearer_challenge_fetches_one_token_for_the_whole_package() {
    let tmp = TempDir::new();
    let (content, files) = package();
    let server = token_registry(content, &["Bearer t0k"], "token");

    let out = pull(&tmp, &server, &[]).run();
    out.assert_success();
    assert_files(tmp.path(), &files);
    assert_tree(tmp.path(), &["CHECKSUM", "x", "x.json"]);

    let tokens = server.requests_to("/token");
    assert_eq!(tokens.len(), 1, "token requests: {tokens:?}");
    assert_eq!(tokens[0].query("service").as_deref(), Some("fake"));
    assert_eq!(
        tokens[0].query("scope").as_deref(),
        Some(format!("repository:{REPO}:pull").as_str())
    );
    assert_eq!(
        tokens[0].authorization(),
        None,
        "anonymous token request carried credentials"
    );

    // Without --ghcr nothing is guessed: the first request is anonymous.
    let api = api_requests(&server);
    assert_eq!(api[0].authorization(), None, "first request: {:?}", api[0]);
    // Every blob was fetched with the token.
    let blobs: Vec<&Request> = api
        .iter()
        .filter(|r| r.path().contains("/blobs/"))
        .collect();
    assert!(blobs.len() >= 3, "{blobs:?}");
    assert!(
        blobs
            .iter()
            .all(|r| r.authorization() == Some("Bearer t0k")),
        "{blobs:?}"
    );
}

#[test]
fn access_token_field_is_accepted() {
    // Some token servers (Docker Hub, ACR) answer `access_token` instead of `token`.
    let tmp = TempDir::new();
    let (content, files) = package();
    let server = token_registry(content, &["Bearer t0k"], "access_token");
    pull(&tmp, &server, &[]).run().assert_success();
    assert_files(tmp.path(), &files);
}

#[test]
fn refused_ghcr_shortcut_falls_back_to_the_token_flow() {
    let tmp = TempDir::new();
    let (content, files) = package();
    // QQ== is challenged like any other credential; only the real token passes.
    let server = token_registry(content, &["Bearer t0k"], "token");

    let out = pull(&tmp, &server, &["--ghcr"]).run();
    out.assert_success();
    assert_files(tmp.path(), &files);
    let api = api_requests(&server);
    assert_eq!(
        api[0].authorization(),
        Some(GHCR_ANONYMOUS),
        "the shortcut was not tried first"
    );
    assert_eq!(
        server.requests_to("/token").len(),
        1,
        "{:?}",
        server.requests()
    );
}

#[test]
fn ghcr_shortcut_refused_with_403_falls_back_too() {
    let tmp = TempDir::new();
    let (content, files) = package();
    let content = Arc::new(content);
    let server = FakeServer::start(move |req: &Request| {
        if req.path() == "/token" {
            return Response::json(&json!({ "token": TOKEN }));
        }
        match req.authorization() {
            Some("Bearer t0k") => content.serve(req),
            Some(GHCR_ANONYMOUS) => Response::error(403, "DENIED", "denied"),
            _ => challenge(req),
        }
    });
    pull(&tmp, &server, &["--ghcr"]).run().assert_success();
    assert_files(tmp.path(), &files);
}

#[test]
fn token_request_carries_the_users_credentials() {
    let tmp = TempDir::new();
    let (content, files) = package();
    let server = token_registry(content, &["Bearer t0k"], "token");
    pull(&tmp, &server, &["-u", "bob", "--password-stdin"])
        .stdin(b"hunter2\n")
        .run()
        .assert_success();
    assert_files(tmp.path(), &files);
    let tokens = server.requests_to("/token");
    assert_eq!(tokens.len(), 1);
    let basic = basic_auth("bob", "hunter2");
    assert_eq!(tokens[0].authorization(), Some(basic.as_str()));
}

#[test]
fn token_endpoint_refusal_is_authentication_required() {
    let tmp = TempDir::new();
    let server = FakeServer::start(|req: &Request| {
        if req.path() == "/token" {
            return Response::error(401, "UNAUTHORIZED", "bad credentials");
        }
        challenge(req)
    });
    pull(&tmp, &server, &[])
        .run()
        .assert_error(1, "authentication required");
    assert_tree(tmp.path(), &[]);
    assert!(
        server.requests().len() < 20,
        "{} requests: a retry loop?",
        server.requests().len()
    );
}

#[test]
fn token_that_keeps_being_refused_is_authentication_required() {
    // The token is issued but the registry still answers 401: no endless token refreshing.
    let tmp = TempDir::new();
    let (content, _files) = package();
    let server = token_registry(content, &["Bearer never-issued"], "token");
    pull(&tmp, &server, &[])
        .run()
        .assert_error(1, "authentication required");
    assert!(
        server.requests_to("/token").len() <= 3,
        "{:?}",
        server.requests()
    );
    assert_tree(tmp.path(), &[]);
}
