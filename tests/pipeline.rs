//! Pipelined blob requests (issue 17), through the built binary: a package of six titled
//! files asks for every blob on one connection to the registry, and on ghcr's shape on one
//! connection to the CDN its 307s point to, all before the first answer. Scripted servers
//! (`support::pipelining`) keep their connections open, answer in order and record on which
//! connection each request came and whether it was there before any answer.
//!
//! Each fallback case (a close after one answer, `Connection: close`, a body cut off, a
//! server gone silent, an error in the middle, a trickle, an expired CDN URL, a CDN that
//! closes after one answer, a token that expired before the blobs) checks that the blobs the
//! pipeline did not deliver were fetched again one by one, and that every file holds its
//! bytes; a server that closes after every two answers gets a new pipeline for the rest.
//! Then the real path: distribution, directly and through an HTTP and a SOCKS5 proxy (and not
//! through one `NO_PROXY` names). Last, what holds one by one holds pipelined: a download an
//! earlier run left is resumed, `--include` and files already there narrow the pipeline, and
//! a blob that does not verify fails the package whole.
//!
//! No timing is asserted: what a server saw, the files and the exit status.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::support::fake::{Content, Response};
use crate::support::pipelining::{Act, Pipelining, Seen};
use crate::support::proxy::Proxy;
use crate::support::registry::{Logged, Registry};
use crate::support::run::{pull_plain, Ocidl, Output};
use crate::support::script::{cut, range_response, range_start};
use crate::support::socks::SocksProxy;
use crate::support::{
    assert_files, assert_tree, digest_of, file_len, file_refs, partial_files, partial_name,
    random_bytes, sha256_hex, write_file, TempDir,
};

const REPO: &str = "pkgforge/pipe";
const TAG: &str = "t";
/// The blob most fallback cases script: the second file, so the first is delivered by the
/// pipeline before anything goes wrong.
const SCRIPTED: usize = 1;
/// The blob the error-in-the-middle case fails.
const MIDDLE: usize = 2;
/// ghcr's anonymous token, as `--ghcr` sends it.
const GHCR_ANONYMOUS: &str = "Bearer QQ==";
/// What the token service of the challenge registry hands out.
const TOKEN: &str = "t0k";

/// A pkgforge-shaped package of six files, each with its own bytes (so its own digest).
fn files() -> Vec<(&'static str, Vec<u8>)> {
    let binary = random_bytes(256 * 1024, 1701);
    let json = br#"{"pkg":"pipe","version":"1.0"}"#.to_vec();
    let checksum = format!("{}  pipe\n", sha256_hex(&binary));
    vec![
        ("pipe", binary),
        ("pipe.part", random_bytes(24 * 1024, 1702)),
        ("pipe.json", json),
        ("CHECKSUM", checksum.into_bytes()),
        ("pipe.sig", random_bytes(566, 1703)),
        ("pipe.log", random_bytes(8 * 1024, 1704)),
    ]
}

/// The package's files, and their content as a registry serves it.
struct Package {
    files: Vec<(&'static str, Vec<u8>)>,
    content: Arc<Content>,
}

impl Package {
    fn new() -> Package {
        let files = files();
        let mut content = Content::new();
        content.add_package(REPO, TAG, &file_refs(&files));
        Package {
            files,
            content: Arc::new(content),
        }
    }

    /// The index of the file whose blob `path` names (`.../blobs/<digest>`, `/cdn/<digest>`).
    fn index(&self, path: &str) -> Option<usize> {
        self.files
            .iter()
            .position(|(_, data)| path.ends_with(&digest_of(data)))
    }

    fn titles(&self) -> Vec<&'static str> {
        self.files.iter().map(|(title, _)| *title).collect()
    }
}

/// How distribution answers `s`: the manifest, or a blob (`Range` included).
fn served(content: &Content, s: &Seen) -> Response {
    let blob = s.path().rsplit_once("/blobs/").map(|(_, digest)| digest);
    match blob.map(|digest| content.blob(digest)) {
        Some(Some(data)) => range_response(&s.request, data),
        Some(None) => Response::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
        None => content.serve(&s.request),
    }
}

/// A registry that serves the package's blobs itself. A GET of one of them is answered as
/// `script` says, given the request, the file's index and the usual answer.
fn registry(
    package: &Package,
    script: impl Fn(&Seen, usize, Response) -> Act + Send + Sync + 'static,
) -> Pipelining {
    let content = Arc::clone(&package.content);
    let digests: Vec<String> = package.files.iter().map(|(_, d)| digest_of(d)).collect();
    Pipelining::start(move |s| {
        let blob = digests.iter().position(|d| s.path().ends_with(d.as_str()));
        match blob.filter(|_| s.request.method == "GET") {
            Some(i) => script(s, i, served(&content, s)),
            None => Act::Answer(served(&content, s)),
        }
    })
}

/// `registry`'s script for a server that cooperates.
fn as_usual(_: &Seen, _: usize, usual: Response) -> Act {
    Act::Answer(usual)
}

/// How the ghcr-shaped registry authenticates.
#[derive(Clone, Copy, Debug)]
enum Auth {
    /// `--ghcr`: ghcr's anonymous `Bearer QQ==`, no token request.
    Ghcr,
    /// A bearer challenge to `/token` on the registry, which hands out `TOKEN`.
    Challenge,
}

impl Auth {
    fn authorization(self) -> String {
        match self {
            Auth::Ghcr => GHCR_ANONYMOUS.into(),
            Auth::Challenge => format!("Bearer {TOKEN}"),
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Auth::Ghcr => &["--ghcr"],
            Auth::Challenge => &[],
        }
    }
}

/// A registry shaped like ghcr.io: every request needs the token `auth` gives, and every
/// blob GET is answered 307 to `cdn` with a signed-looking query (`sig=` the registry's
/// count of GETs of that blob, so a second redirect is a fresh URL).
fn ghcr_registry(package: &Package, auth: Auth, cdn: &Pipelining) -> Pipelining {
    let content = Arc::clone(&package.content);
    let cdn = cdn.url("/cdn/");
    let accepted = auth.authorization();
    Pipelining::start(move |s| {
        if s.path() == "/token" {
            return Act::Answer(Response::json(&json!({ "token": TOKEN })));
        }
        if s.request.authorization() != Some(accepted.as_str()) {
            let scope = format!("repository:{REPO}:pull");
            return Act::Answer(Response::bearer_challenge_here(&s.request, "fake", &scope));
        }
        match s.path().rsplit_once("/blobs/") {
            Some((_, digest)) => Act::Answer(Response::redirect(
                307,
                &format!(
                    "{cdn}{digest}?se=2099-01-01T00%3A00%3A00Z&sp=r&sig={}",
                    s.attempt
                ),
            )),
            None => Act::Answer(content.serve(&s.request)),
        }
    })
}

/// A CDN serving the package's blobs at `/cdn/<digest>` to anyone (`Range` included). A
/// GET of one is answered as `script` says, given the request and the usual answer.
fn cdn(
    package: &Package,
    script: impl Fn(&Seen, Response) -> Act + Send + Sync + 'static,
) -> Pipelining {
    let content = Arc::clone(&package.content);
    Pipelining::start(move |s| {
        let digest = s.path().strip_prefix("/cdn/").unwrap_or_default();
        match content.blob(digest) {
            Some(data) => script(s, range_response(&s.request, data)),
            None => Act::Answer(Response::new(404)),
        }
    })
}

/// What a CDN answers to a signed URL that has expired.
fn expired() -> Response {
    Response::new(403)
        .header("Content-Type", "application/xml")
        .body(b"<Error><Code>AuthenticationFailed</Code></Error>")
}

/// `ocidl --plain-http --timeout 10 [flags] -o out REPO:TAG` from `host`, in `tmp`.
fn pull(tmp: &TempDir, host: &str, flags: &[&str]) -> Ocidl {
    let reference = format!("{host}/{REPO}:{TAG}");
    let mut all = vec!["--timeout", "10", "-o", "out"];
    all.extend(flags);
    pull_plain(tmp.path(), &all, &reference)
}

/// Exit 0, nothing on stdout, and `out` holds exactly the package's files, each with its
/// bytes (no temporary file left).
fn assert_pulled(tmp: &TempDir, package: &Package, out: &Output) {
    out.assert_success().assert_stdout_empty();
    assert_files(&tmp.join("out"), &package.files);
    assert_tree(&tmp.join("out"), &package.titles());
}

/// Every GET of one of the package's blobs `server` saw, in order, with the file's index.
fn blob_gets(server: &Pipelining, package: &Package) -> Vec<(usize, Seen)> {
    server
        .seen()
        .into_iter()
        .filter(|s| s.request.method == "GET")
        .filter_map(|s| Some((package.index(s.path())?, s)))
        .collect()
}

/// How many GETs each blob got, by file index.
fn counts(gets: &[(usize, Seen)], package: &Package) -> Vec<usize> {
    (0..package.files.len())
        .map(|i| gets.iter().filter(|(j, _)| *j == i).count())
        .collect()
}

/// The first GET of every blob came on one connection, in the manifest's order, and every
/// one of them was there before that connection's first answer went out: the pipeline.
/// Returns that connection.
fn assert_pipelined(gets: &[(usize, Seen)], package: &Package, what: &str) -> usize {
    let first: Vec<&Seen> = (0..package.files.len())
        .map(|i| {
            let first = gets.iter().find(|(j, _)| *j == i);
            &first
                .unwrap_or_else(|| panic!("{what}: no GET of blob {i}"))
                .1
        })
        .collect();
    let connection = first[0].connection;
    for (i, s) in first.iter().enumerate() {
        assert_eq!(
            (s.connection, s.answered_before),
            (connection, 0),
            "{what}: blob {i}'s first GET did not come on the pipeline's connection before its \
             first answer: {s:?}"
        );
        assert_eq!(s.request.header("range"), None, "{what}: blob {i}: {s:?}");
    }
    let order: Vec<usize> = first.iter().map(|s| s.nth).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{what}: not in the manifest's order: {order:?}"
    );
    // The proof that requests were pipelined: more than one there before the first answer.
    let early = gets
        .iter()
        .filter(|(_, s)| s.connection == connection && s.answered_before == 0)
        .count();
    assert!(
        early > 1,
        "{what}: {early} request(s) before the first answer"
    );
    connection
}

/// Every one of `seen` came on one connection before that connection's first answer: one
/// pipelined pass.
fn assert_one_pass(seen: &[&Seen]) {
    assert!(
        seen.iter()
            .all(|s| s.connection == seen[0].connection && s.answered_before == 0),
        "{seen:?}"
    );
}

/// The later GETs of blob `i` (after its first, the pipeline's), each on a connection other
/// than the pipeline's: the sequential path.
fn again(gets: &[(usize, Seen)], i: usize, pipeline: usize) -> Vec<Seen> {
    let mut of_i = gets.iter().filter(|(j, _)| *j == i).map(|(_, s)| s.clone());
    of_i.next();
    let later: Vec<Seen> = of_i.collect();
    for s in &later {
        assert_ne!(
            s.connection, pipeline,
            "blob {i} asked again on the pipeline's connection: {s:?}"
        );
    }
    later
}

// ---- 1. A registry that serves its blobs itself ----

#[test]
fn a_registry_that_serves_its_blobs_gets_them_all_on_one_connection_before_any_answer() {
    let tmp = TempDir::new();
    let package = Package::new();
    let registry = registry(&package, as_usual);
    let out = pull(&tmp, &registry.host(), &[]).run();
    assert_pulled(&tmp, &package, &out);
    let gets = blob_gets(&registry, &package);
    assert_eq!(counts(&gets, &package), [1; 6], "each blob asked for once");
    let connection = assert_pipelined(&gets, &package, "registry");
    assert!(gets.iter().all(|(_, s)| s.connection == connection));
    // The manifest came the usual way, before: the pipeline's connection is its own.
    let manifests = registry.gets("/manifests/");
    assert!(
        manifests.iter().all(|s| s.connection != connection),
        "{manifests:?}"
    );
}

// ---- 2. ghcr's shape: 307s to a CDN, the token never following them ----

fn assert_ghcr_shape_pipelines_both_origins(auth: Auth) {
    let what = format!("{auth:?}");
    let tmp = TempDir::new();
    let package = Package::new();
    let cdn = cdn(&package, |_, usual| Act::Answer(usual));
    let registry = ghcr_registry(&package, auth, &cdn);
    let out = pull(&tmp, &registry.host(), auth.flags()).run();
    assert_pulled(&tmp, &package, &out);

    let at_registry = blob_gets(&registry, &package);
    assert_eq!(counts(&at_registry, &package), [1; 6], "{what}");
    let connection = assert_pipelined(&at_registry, &package, &format!("{what}: registry"));
    for (i, s) in &at_registry {
        assert_eq!(s.connection, connection, "{what}: blob {i}: {s:?}");
        // There was a token to leak: the registry's requests carried it.
        assert_eq!(
            s.request.authorization(),
            Some(auth.authorization().as_str()),
            "{what}: blob {i}"
        );
    }

    let at_cdn = blob_gets(&cdn, &package);
    assert_eq!(counts(&at_cdn, &package), [1; 6], "{what}");
    let connection = assert_pipelined(&at_cdn, &package, &format!("{what}: CDN"));
    for (i, s) in &at_cdn {
        assert_eq!(s.connection, connection, "{what}: blob {i}: {s:?}");
        assert_eq!(
            s.request.query("sig").as_deref(),
            Some("1"),
            "{what}: {s:?}"
        );
    }
    // Nothing the CDN saw, on any connection, carried the registry's Authorization.
    for s in cdn.seen() {
        assert_eq!(
            s.request.authorization(),
            None,
            "{what}: Authorization reached the CDN: {s:?}"
        );
    }
    if let Auth::Challenge = auth {
        assert_eq!(registry.gets("/token").len(), 1, "{what}: one token");
    }
}

#[test]
fn ghcr_redirects_are_pipelined_to_the_cdn_without_the_anonymous_token() {
    assert_ghcr_shape_pipelines_both_origins(Auth::Ghcr);
}

#[test]
fn redirects_are_pipelined_to_the_cdn_without_a_challenge_token() {
    assert_ghcr_shape_pipelines_both_origins(Auth::Challenge);
}

// ---- 3. Servers that will not cooperate: what the pipeline missed comes one by one ----

/// Pulls from `registry` with `flags`, checks the files and the exit status, and that the
/// first GET of every blob was pipelined. Returns the blob GETs and the pipeline's
/// connection.
fn pull_through(
    package: &Package,
    registry: &Pipelining,
    flags: &[&str],
    what: &str,
) -> (Vec<(usize, Seen)>, usize) {
    let tmp = TempDir::new();
    let out = pull(&tmp, &registry.host(), flags).run();
    assert_pulled(&tmp, package, &out);
    let gets = blob_gets(registry, package);
    let connection = assert_pipelined(&gets, package, what);
    (gets, connection)
}

/// Blob 0 came by the pipeline; every other blob was asked for again, once, from its start,
/// on another connection.
fn assert_first_alone_delivered(gets: &[(usize, Seen)], package: &Package, pipeline: usize) {
    assert_eq!(counts(gets, package), [1, 2, 2, 2, 2, 2]);
    for i in 1..package.files.len() {
        let later = again(gets, i, pipeline);
        if i != SCRIPTED {
            assert_eq!(later[0].request.header("range"), None, "{:?}", later[0]);
        }
    }
}

#[test]
fn a_server_that_closes_after_its_first_answer() {
    let package = Package::new();
    // The first request on a connection, for a blob not asked for before: the pipeline's.
    let registry = registry(&package, |s, _, usual| match s.attempt == 1 && s.nth == 0 {
        true => Act::AnswerThenClose(usual),
        false => Act::Answer(usual),
    });
    let (gets, pipeline) = pull_through(&package, &registry, &[], "close after one");
    assert_first_alone_delivered(&gets, &package, pipeline);
}

#[test]
fn a_server_that_closes_after_every_two_answers_gets_a_new_pipeline_for_the_rest() {
    let package = Package::new();
    // As nginx at `keepalive_requests 2`: the second answer on a connection says
    // `Connection: close`, and the connection is closed. A server that answered two shows
    // it pipelines: what it left goes on a new connection, pipelined again.
    let registry = registry(&package, |s, _, usual| match s.nth {
        1 => Act::AnswerThenClose(usual.header("Connection", "close")),
        _ => Act::Answer(usual),
    });
    let (gets, first) = pull_through(&package, &registry, &[], "two a connection");
    assert_eq!(counts(&gets, &package), [1, 1, 2, 2, 3, 3]);
    // Each connection: the blobs not yet delivered, in order, all before its first answer.
    let mut connections: Vec<usize> = gets.iter().map(|(_, s)| s.connection).collect();
    connections.dedup();
    assert_eq!(connections.len(), 3, "{connections:?}");
    assert_eq!(connections[0], first);
    for (k, &connection) in connections.iter().enumerate() {
        let on: Vec<usize> = gets
            .iter()
            .filter(|(_, s)| s.connection == connection)
            .inspect(|(i, s)| assert_eq!(s.answered_before, 0, "blob {i}: {s:?}"))
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(on, (2 * k..6).collect::<Vec<_>>(), "connection {k}");
    }
}

#[test]
fn connection_close_on_the_first_answer_is_taken_at_its_word() {
    let package = Package::new();
    // The pipeline's first answer says `Connection: close`; the server then goes on
    // answering that connection's other requests with bytes that are not the blobs. A
    // client that read past the server's word would write them, and fail to verify them.
    let said_close = Mutex::new(HashSet::new());
    let registry = registry(&package, move |s, _, usual| {
        let mut said_close = said_close.lock().unwrap();
        if said_close.contains(&s.connection) {
            let mut body = usual.body.clone();
            body.iter_mut().for_each(|b| *b = !*b);
            return Act::Answer(usual.body(&body));
        }
        if s.attempt == 1 && s.nth == 0 {
            said_close.insert(s.connection);
            return Act::Answer(usual.header("Connection", "close"));
        }
        Act::Answer(usual)
    });
    let (gets, pipeline) = pull_through(&package, &registry, &[], "Connection: close");
    assert_first_alone_delivered(&gets, &package, pipeline);
}

#[test]
fn a_connection_dropped_in_the_middle_of_a_body_is_resumed_with_range() {
    let package = Package::new();
    let size = package.files[SCRIPTED].1.len();
    let sent = size / 3;
    let registry = registry(&package, move |s, i, usual| match (i, s.attempt) {
        // The head and a third of the body, then the connection is closed.
        (SCRIPTED, 1) => Act::AnswerThenClose(cut(usual, sent)),
        _ => Act::Answer(usual),
    });
    let (gets, pipeline) = pull_through(&package, &registry, &[], "dropped mid-body");
    assert_first_alone_delivered(&gets, &package, pipeline);
    // The sequential path went on from where the body broke off.
    let later = again(&gets, SCRIPTED, pipeline);
    let from = range_start(&later[0].request);
    assert!(
        from.is_some_and(|from| from > 0 && from <= sent),
        "want a Range from within the {sent} bytes sent: {:?}",
        later[0]
    );
}

#[test]
fn a_server_that_answers_one_request_then_goes_silent() {
    let package = Package::new();
    // The pipeline's first request is answered; its others are read, and neither answered
    // nor closed.
    let registry = registry(&package, |s, _, usual| match (s.attempt, s.nth) {
        (1, 0) => Act::Answer(usual),
        (1, _) => Act::Silent,
        _ => Act::Answer(usual),
    });
    let (gets, pipeline) = pull_through(&package, &registry, &[], "silent after one");
    assert_first_alone_delivered(&gets, &package, pipeline);
}

#[test]
fn an_error_in_the_middle_is_fetched_again_alone() {
    let package = Package::new();
    let registry = registry(&package, |s, i, usual| match (i, s.attempt) {
        (MIDDLE, 1) => Act::Answer(Response::error(500, "UNKNOWN", "try again")),
        _ => Act::Answer(usual),
    });
    let (gets, pipeline) = pull_through(&package, &registry, &[], "500 in the middle");
    // Every other blob came by the pipeline, the one that failed one by one, from its start.
    assert_eq!(counts(&gets, &package), [1, 1, 2, 1, 1, 1]);
    let later = again(&gets, MIDDLE, pipeline);
    assert_eq!(later[0].request.header("range"), None, "{:?}", later[0]);
}

#[test]
fn a_trickle_is_cut_by_the_speed_floor_and_resumed() {
    let package = Package::new();
    // 64 bytes every 50 ms, about 1.3 KB/s: far under the floor of 100 KB/s over 1 s.
    let registry = registry(&package, |s, i, usual| match (i, s.attempt) {
        (SCRIPTED, 1) => Act::Answer(usual.throttle(64, Duration::from_millis(50))),
        _ => Act::Answer(usual),
    });
    let floor = ["--speed-limit", "100000", "--speed-time", "1"];
    let (gets, pipeline) = pull_through(&package, &registry, &floor, "trickle");
    assert_first_alone_delivered(&gets, &package, pipeline);
    let later = again(&gets, SCRIPTED, pipeline);
    let size = package.files[SCRIPTED].1.len();
    assert!(
        range_start(&later[0].request).is_some_and(|from| from > 0 && from < size),
        "want a Range from the bytes the trickle gave: {:?}",
        later[0]
    );
}

#[test]
fn an_expired_cdn_url_sends_its_blob_back_to_the_registry_for_a_fresh_one() {
    let tmp = TempDir::new();
    let package = Package::new();
    let expired_digest = digest_of(&package.files[SCRIPTED].1);
    // The first URL the registry gave for one blob has expired; the second is fresh.
    let cdn = cdn(&package, move |s, usual| {
        let first_url = s.request.query("sig").as_deref() == Some("1");
        match s.path().ends_with(&expired_digest) && first_url {
            true => Act::Answer(expired()),
            false => Act::Answer(usual),
        }
    });
    let registry = ghcr_registry(&package, Auth::Ghcr, &cdn);
    let out = pull(&tmp, &registry.host(), Auth::Ghcr.flags()).run();
    assert_pulled(&tmp, &package, &out);

    let at_registry = blob_gets(&registry, &package);
    let connection = assert_pipelined(&at_registry, &package, "registry");
    assert_eq!(counts(&at_registry, &package), [1, 2, 1, 1, 1, 1]);
    again(&at_registry, SCRIPTED, connection);

    let at_cdn = blob_gets(&cdn, &package);
    let connection = assert_pipelined(&at_cdn, &package, "CDN");
    assert_eq!(counts(&at_cdn, &package), [1, 2, 1, 1, 1, 1]);
    let sigs: Vec<Option<String>> = at_cdn
        .iter()
        .filter(|(i, _)| *i == SCRIPTED)
        .map(|(_, s)| s.request.query("sig"))
        .collect();
    assert_eq!(sigs, [Some("1".into()), Some("2".into())], "a fresh URL");
    again(&at_cdn, SCRIPTED, connection);
    for s in cdn.seen() {
        assert_eq!(s.request.authorization(), None, "{s:?}");
    }
}

#[test]
fn a_cdn_that_closes_after_its_first_answer_sends_the_rest_back_to_the_registry() {
    let tmp = TempDir::new();
    let package = Package::new();
    let cdn = cdn(&package, |s, usual| match (s.nth, s.attempt) {
        (0, 1) => Act::AnswerThenClose(usual),
        _ => Act::Answer(usual),
    });
    let registry = ghcr_registry(&package, Auth::Ghcr, &cdn);
    let out = pull(&tmp, &registry.host(), Auth::Ghcr.flags()).run();
    assert_pulled(&tmp, &package, &out);
    // The registry's 307s all came by the pipeline; the CDN answered the first of its own
    // pipeline, and every other blob went back to the registry, one by one, for a new URL.
    let at_registry = blob_gets(&registry, &package);
    let connection = assert_pipelined(&at_registry, &package, "registry");
    assert_eq!(counts(&at_registry, &package), [1, 2, 2, 2, 2, 2]);
    let at_cdn = blob_gets(&cdn, &package);
    let cdn_connection = assert_pipelined(&at_cdn, &package, "CDN");
    assert_eq!(counts(&at_cdn, &package), [1, 2, 2, 2, 2, 2]);
    for i in 1..package.files.len() {
        again(&at_registry, i, connection);
        let later = again(&at_cdn, i, cdn_connection);
        assert_eq!(later[0].request.query("sig").as_deref(), Some("2"));
    }
    for s in cdn.seen() {
        assert_eq!(s.request.authorization(), None, "{s:?}");
    }
}

#[test]
fn a_token_that_expired_before_the_blobs_is_renewed_one_by_one() {
    let tmp = TempDir::new();
    let package = Package::new();
    let cdn = cdn(&package, |_, usual| Act::Answer(usual));
    let content = Arc::clone(&package.content);
    let cdn_url = cdn.url("/cdn/");
    // Each token request gets a new token, `t0k-N`; the first is good for the manifest
    // only: a blob GET that carries it is challenged again, as when a token expires.
    let issued = AtomicUsize::new(0);
    let registry = Pipelining::start(move |s| {
        if s.path() == "/token" {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            return Act::Answer(Response::json(&json!({ "token": format!("t0k-{n}") })));
        }
        let authorization = s.request.authorization().unwrap_or_default();
        let blob = s.path().rsplit_once("/blobs/").map(|(_, digest)| digest);
        let good = authorization.starts_with("Bearer t0k-")
            && !(blob.is_some() && authorization == "Bearer t0k-1");
        match blob {
            _ if !good => {
                let scope = format!("repository:{REPO}:pull");
                Act::Answer(Response::bearer_challenge_here(&s.request, "fake", &scope))
            }
            Some(digest) => Act::Answer(Response::redirect(307, &format!("{cdn_url}{digest}"))),
            None => Act::Answer(content.serve(&s.request)),
        }
    });
    let out = pull(&tmp, &registry.host(), &[]).run();
    assert_pulled(&tmp, &package, &out);
    // The pipeline carried the first token and was refused; the first blob one by one met
    // the challenge and got a second token, which every other blob then carried.
    let gets = blob_gets(&registry, &package);
    assert_pipelined(&gets, &package, "registry");
    assert_eq!(counts(&gets, &package), [3, 2, 2, 2, 2, 2]);
    let tokens: Vec<Option<&str>> = gets
        .iter()
        .map(|(_, s)| s.request.authorization())
        .collect();
    let (pipelined, one_by_one) = tokens.split_at(6);
    assert!(
        pipelined.iter().all(|t| *t == Some("Bearer t0k-1")),
        "{tokens:?}"
    );
    assert_eq!(one_by_one[0], Some("Bearer t0k-1"), "{tokens:?}");
    assert!(
        one_by_one[1..].iter().all(|t| *t == Some("Bearer t0k-2")),
        "{tokens:?}"
    );
    assert_eq!(registry.gets("/token").len(), 2);
    assert_eq!(counts(&blob_gets(&cdn, &package), &package), [1; 6]);
    for s in cdn.seen() {
        assert_eq!(s.request.authorization(), None, "{s:?}");
    }
}

// ---- 4. The real path: distribution ----

/// The GETs of the package's blobs in `logged`, each as (file index, the request).
fn logged_blob_gets<'l>(logged: &'l [Logged], package: &Package) -> Vec<(usize, &'l Logged)> {
    logged
        .iter()
        .filter(|l| l.method == "GET")
        .filter_map(|l| Some((package.index(&l.uri)?, l)))
        .collect()
}

/// Every blob asked of distribution exactly once, answered 200, all on one connection, and
/// not the one the manifest came on: the pipeline's own (one by one, the blobs would follow
/// the manifest on the connection ureq keeps).
fn assert_each_blob_once(logged: &[Logged], package: &Package) {
    let gets = logged_blob_gets(logged, package);
    let mut asked: Vec<usize> = gets.iter().map(|(i, _)| *i).collect();
    asked.sort_unstable();
    assert_eq!(asked, [0, 1, 2, 3, 4, 5], "{logged:#?}");
    assert!(gets.iter().all(|(_, l)| l.status == 200), "{logged:#?}");
    let remotes: HashSet<&str> = gets.iter().map(|(_, l)| l.remote.as_str()).collect();
    assert_eq!(
        remotes.len(),
        1,
        "one connection for the blobs: {logged:#?}"
    );
    let manifests: Vec<&Logged> = logged
        .iter()
        .filter(|l| l.uri.contains("/manifests/"))
        .collect();
    assert!(!manifests.is_empty(), "{logged:#?}");
    assert!(
        manifests
            .iter()
            .all(|m| !remotes.contains(m.remote.as_str())),
        "the blobs came on the manifest's connection: {logged:#?}"
    );
}

/// Distribution holding the package, and how many requests it had logged once it did.
fn distribution(package: &Package) -> (Registry, usize) {
    let registry = Registry::start();
    registry
        .pusher()
        .push_package(REPO, TAG, &file_refs(&package.files));
    let pushed = registry.logged().len();
    (registry, pushed)
}

#[test]
fn distribution_gets_each_blob_once_on_a_connection_of_the_pipelines_own() {
    let tmp = TempDir::new();
    let package = Package::new();
    let (registry, pushed) = distribution(&package);
    let out = pull(&tmp, &registry.host(), &[]).run();
    assert_pulled(&tmp, &package, &out);
    assert_each_blob_once(&registry.logged()[pushed..], &package);
}

// ---- 5. Through proxies ----

/// Every request distribution logged came from one of `upstreams`: a proxy's connections.
fn assert_all_through(logged: &[Logged], upstreams: &[std::net::SocketAddr], what: &str) {
    let upstreams: HashSet<String> = upstreams.iter().map(|a| a.to_string()).collect();
    assert!(!logged.is_empty(), "{what}: nothing logged");
    for l in logged {
        assert!(
            upstreams.contains(&l.remote),
            "{what}: {} {} came from {}, not through the proxy ({upstreams:?})",
            l.method,
            l.uri,
            l.remote
        );
    }
}

#[test]
fn through_an_http_proxy_to_distribution() {
    let tmp = TempDir::new();
    let package = Package::new();
    let (registry, pushed) = distribution(&package);
    let proxy = Proxy::start();
    let out = pull(&tmp, &registry.host(), &[])
        .env("HTTP_PROXY", &proxy.url())
        .run();
    assert_pulled(&tmp, &package, &out);
    let logged = registry.logged()[pushed..].to_vec();
    assert_each_blob_once(&logged, &package);
    let authorities = proxy.authorities();
    assert!(
        !authorities.is_empty() && authorities.iter().all(|a| *a == registry.host()),
        "{authorities:?}"
    );
    assert_all_through(&logged, &proxy.upstreams(), "HTTP proxy");
}

#[test]
fn through_a_socks5_proxy_to_distribution() {
    let tmp = TempDir::new();
    let package = Package::new();
    let (registry, pushed) = distribution(&package);
    let socks = SocksProxy::start();
    let out = pull(&tmp, &registry.host(), &[])
        .env("ALL_PROXY", &socks.url("socks5"))
        .run();
    assert_pulled(&tmp, &package, &out);
    let logged = registry.logged()[pushed..].to_vec();
    assert_each_blob_once(&logged, &package);
    let seen = socks.seen();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|c| c.version == "socks5" && c.target == registry.host()),
        "{seen:?}"
    );
    assert_all_through(&logged, &socks.upstreams(), "SOCKS5 proxy");
}

#[test]
fn no_proxy_sends_the_pipeline_direct() {
    let tmp = TempDir::new();
    let package = Package::new();
    let (registry, pushed) = distribution(&package);
    let proxy = Proxy::start();
    let out = pull(&tmp, &registry.host(), &[])
        .env("HTTP_PROXY", &proxy.url())
        .env("NO_PROXY", "127.0.0.1")
        .run();
    assert_pulled(&tmp, &package, &out);
    assert_each_blob_once(&registry.logged()[pushed..], &package);
    assert_eq!(proxy.connections(), 0, "{:?}", proxy.seen());
}

// ---- What holds one by one holds pipelined ----

#[test]
fn a_download_an_earlier_run_left_is_resumed_and_the_rest_pipelined() {
    let package = Package::new();
    let size = package.files[0].1.len();
    let sent = size / 3;
    // While `broken`, every body of the first file breaks off after a third.
    let broken = Arc::new(AtomicBool::new(true));
    let registry = {
        let broken = Arc::clone(&broken);
        registry(&package, move |_, i, usual| {
            match i == 0 && broken.load(Ordering::SeqCst) {
                true => Act::AnswerThenClose(cut(usual, sent)),
                false => Act::Answer(usual),
            }
        })
    };
    let tmp = TempDir::new();
    pull(&tmp, &registry.host(), &["--retries", "0"])
        .run()
        .assert_code(1);
    let kept = partial_name(package.files[0].0, &digest_of(&package.files[0].1));
    assert_eq!(partial_files(&tmp.join("out")), std::slice::from_ref(&kept));
    // The pipeline's third, then as much again from the sequential path's Range.
    let left = file_len(&tmp.join("out").join(&kept)) as usize;
    assert_eq!(left, 2 * sent);
    let first_run = blob_gets(&registry, &package).len();

    broken.store(false, Ordering::SeqCst);
    let out = pull(&tmp, &registry.host(), &[]).run();
    assert_pulled(&tmp, &package, &out);
    let second = blob_gets(&registry, &package).split_off(first_run);
    // The first file, one by one from where the first run left it; the others pipelined.
    let resumed: Vec<&Seen> = second
        .iter()
        .filter(|(i, _)| *i == 0)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(resumed.len(), 1, "{second:?}");
    assert_eq!(
        range_start(&resumed[0].request),
        Some(left),
        "{:?}",
        resumed[0]
    );
    let rest: Vec<&Seen> = second
        .iter()
        .filter(|(i, _)| *i != 0)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(rest.len(), 5, "{second:?}");
    assert_one_pass(&rest);
    assert_ne!(resumed[0].connection, rest[0].connection);
}

#[test]
fn only_the_files_include_chooses_are_pipelined() {
    let tmp = TempDir::new();
    let package = Package::new();
    let registry = registry(&package, as_usual);
    let out = pull(&tmp, &registry.host(), &["--include", "pipe*"]).run();
    out.assert_success();
    let chosen: Vec<(&str, Vec<u8>)> = package
        .files
        .iter()
        .filter(|(title, _)| title.starts_with("pipe"))
        .cloned()
        .collect();
    assert_files(&tmp.join("out"), &chosen);
    let titles: Vec<&str> = chosen.iter().map(|(title, _)| *title).collect();
    assert_tree(&tmp.join("out"), &titles);
    let gets = blob_gets(&registry, &package);
    assert_eq!(counts(&gets, &package), [1, 1, 1, 0, 1, 1]);
    assert_one_pass(&gets.iter().map(|(_, s)| s).collect::<Vec<_>>());
}

#[test]
fn files_already_there_are_not_asked_for_and_the_rest_are_pipelined() {
    let tmp = TempDir::new();
    let package = Package::new();
    for (title, data) in &package.files[..2] {
        write_file(&tmp.join("out").join(title), data);
    }
    let registry = registry(&package, as_usual);
    let out = pull(&tmp, &registry.host(), &[]).run();
    assert_pulled(&tmp, &package, &out);
    let gets = blob_gets(&registry, &package);
    assert_eq!(counts(&gets, &package), [0, 0, 1, 1, 1, 1]);
    assert_one_pass(&gets.iter().map(|(_, s)| s).collect::<Vec<_>>());
}

#[test]
fn a_blob_the_pipeline_delivers_wrong_fails_the_package_whole() {
    let tmp = TempDir::new();
    let package = Package::new();
    // The fourth file's bytes, every time, are not its digest's (same length).
    let registry = registry(&package, |_, i, usual| match i {
        3 => {
            let mut body = usual.body.clone();
            body[0] ^= 1;
            Act::Answer(usual.body(&body))
        }
        _ => Act::Answer(usual),
    });
    let out = pull(&tmp, &registry.host(), &[]).run();
    out.assert_error(1, "digest");
    // Nothing installed, nothing left behind.
    let out_dir = tmp.join("out");
    if out_dir.exists() {
        assert_tree(&out_dir, &[]);
    }
    let gets = blob_gets(&registry, &package);
    assert_pipelined(&gets, &package, "corrupt");
}
