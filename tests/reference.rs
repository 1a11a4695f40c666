//! Reference parsing as seen from the command line: malformed input is a usage error (exit 2)
//! decided before any connection; well-formed references reach the URLs they name.

use std::fs;

use serde_json::Value;

use crate::support::fake::{FakeServer, Response};
use crate::support::run::ocidl;
use crate::support::{digest_of, TempDir};

/// distribution's reference test table turned into data, shared with the src unit tests
/// (see tests/data/README.md).
const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/reference-vectors.json"
);

/// A server that answers every request 404 and records it; used both as the registry a
/// reference names and as an HTTP proxy that catches any connection an invalid reference
/// should never have made.
fn trap() -> FakeServer {
    FakeServer::start(|_| Response::not_found())
}

#[test]
fn invalid_conformance_vectors_exit_2_without_connecting() {
    let text = fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("read {VECTORS}: {e}"));
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    let invalid: Vec<&str> = vectors
        .iter()
        .filter(|v| v["ocidl"] == "invalid")
        .map(|v| v["input"].as_str().unwrap())
        .collect();
    assert!(
        invalid.len() >= 20,
        "the table lost its invalid entries? {}",
        invalid.len()
    );

    let tmp = TempDir::new();
    // Some inputs name Docker Hub or a routable address; if ocidl wrongly accepted one, the
    // proxy (honoured by ureq's default config) keeps the attempt on 127.0.0.1 and counts it.
    let proxy = trap();
    let mut failures = Vec::new();
    for input in &invalid {
        // `--` so inputs such as `-docker` are references, not flags.
        let out = ocidl(tmp.path())
            .args(["--plain-http", "--", input])
            .env("ALL_PROXY", &proxy.url(""))
            .run();
        if out.code != 2 {
            failures.push(format!(
                "{input:?}: exit {} (want 2): {}",
                out.code,
                out.stderr.trim()
            ));
        } else if out.error_line("invalid reference").is_none() {
            failures.push(format!(
                "{input:?}: no 'ocidl: ... invalid reference' line: {}",
                out.stderr.trim()
            ));
        } else if !out.stdout.is_empty() {
            failures.push(format!("{input:?}: wrote to stdout"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid references mishandled:\n{}",
        failures.len(),
        invalid.len(),
        failures.join("\n")
    );
    assert_eq!(
        proxy.connections(),
        0,
        "an invalid reference made a connection: {:?}",
        proxy.requests()
    );
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "files written for invalid references"
    );
}

#[test]
fn malformed_local_references_exit_2_without_connecting() {
    let tmp = TempDir::new();
    let server = trap();
    let host = server.host();
    let hex = "a".repeat(64);
    let cases = [
        format!("{host}/"),
        format!("{host}//a"),
        format!("{host}/a//b"),
        format!("{host}/a/B"),
        format!("{host}/a/b:"),
        format!("{host}/a/b:-tag"),
        format!("{host}/a/b:t!g"),
        format!("{host}/a/b:{}", "t".repeat(129)),
        format!("{host}/a/b@"),
        format!("{host}/a/b@sha256:"),
        format!("{host}/a/b@sha256:{}", &hex[..63]),
        format!("{host}/a/b@sha256:{hex}a"),
        format!("{host}/a/b@sha256:{}", hex.to_uppercase()),
        format!("{host}/a/b@sha256:{}", "g".repeat(64)),
        format!("{host}/a/b@md5:{}", &hex[..32]),
        format!("{host}/a/b@sha256:{hex}@sha256:{hex}"),
        format!("ftp://{host}/a/b"),
        format!("http:/{host}/a/b"),
        format!("{host}/a b"),
        format!("{host}/a/b:t\n"),
    ];
    for input in &cases {
        let out = ocidl(tmp.path()).args(["--plain-http", "--", input]).run();
        out.assert_error(2, "invalid reference");
        out.assert_stdout_empty();
    }
    assert_eq!(
        server.connections(),
        0,
        "a malformed reference reached the server: {:?}",
        server.requests()
    );
}

#[test]
fn usage_errors_exit_2_without_connecting() {
    let tmp = TempDir::new();
    let server = trap();
    let good = server.reference("a/b:t");
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--plain-http"],
        vec!["--frobnicate", "--plain-http", &good],
        vec!["-Z", "--plain-http", &good],
        vec!["--plain-http", &good, "-o"],
        vec!["--plain-http", "--password-stdin", &good],
        vec!["--plain-http", "-u"],
        vec!["--plain-http", "--ca-file"],
        vec!["--plain-http", "--platform"],
    ];
    for args in &cases {
        let out = ocidl(tmp.path()).args(args).stdin(b"secret\n").run();
        out.assert_code(2);
        assert!(
            out.stderr.starts_with("ocidl: ") || out.stderr.contains("\nocidl: "),
            "no ocidl: line for {args:?}"
        );
        out.assert_stdout_empty();
    }
    assert_eq!(
        server.connections(),
        0,
        "a usage error reached the server: {:?}",
        server.requests()
    );
}

#[test]
fn malformed_platform_is_a_usage_error() {
    let tmp = TempDir::new();
    let server = trap();
    for platform in ["linux", "linux/", "/amd64", "linux/arm/v7/extra", ""] {
        ocidl(tmp.path())
            .args([
                "--plain-http",
                "--platform",
                platform,
                &server.reference("a/b:t"),
            ])
            .run()
            .assert_code(2);
    }
    assert_eq!(server.connections(), 0);
}

#[test]
fn invalid_reference_among_valid_ones_stops_before_any_traffic() {
    let tmp = TempDir::new();
    let server = trap();
    let out = ocidl(tmp.path())
        .args([
            "--plain-http",
            &server.reference("a/b:t"),
            &server.reference("a/B:t"),
        ])
        .run();
    out.assert_error(2, "invalid reference");
    assert_eq!(server.connections(), 0, "{:?}", server.requests());
}

#[test]
fn help_and_version_exit_0() {
    let tmp = TempDir::new();
    for flag in ["-h", "--help"] {
        let out = ocidl(tmp.path()).arg(flag).run();
        out.assert_success();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("--output") && text.contains("--plain-http"),
            "{flag}: help text:\n{text}"
        );
    }
    for flag in ["-V", "--version"] {
        let out = ocidl(tmp.path()).arg(flag).run();
        out.assert_success();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{flag}: {text}");
    }
}

/// The request a reference turned into: the first one for repository `a/b` (a client may
/// ping `/v2/` first).
fn first_repo_request(server: &FakeServer) -> crate::support::fake::Request {
    server
        .requests_to("/v2/a/b/")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no request for a/b; server saw {:?}", server.requests()))
}

#[test]
fn reference_forms_reach_the_urls_they_name() {
    let tmp = TempDir::new();
    let hex = "0123456789abcdef".repeat(4);
    let digest_form = format!("{{host}}/a/b@sha256:{hex}");
    // (arguments, expected request path); `{host}` becomes the server's 127.0.0.1:PORT.
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--plain-http", "{host}/a/b"],
            "/v2/a/b/manifests/latest".into(),
        ),
        (
            vec!["--plain-http", "{host}/a/b:v1.2_x-y"],
            "/v2/a/b/manifests/v1.2_x-y".into(),
        ),
        (
            vec!["--plain-http", &digest_form],
            format!("/v2/a/b/blobs/sha256:{hex}"),
        ),
        (vec!["http://{host}/a/b:t"], "/v2/a/b/manifests/t".into()),
        (
            vec!["--plain-http", "http://{host}/a/b:t"],
            "/v2/a/b/manifests/t".into(),
        ),
        (
            vec!["--ghcr", "--plain-http", "{host}/a/b:t"],
            "/v2/a/b/manifests/t".into(),
        ),
    ];
    for (args, want_path) in cases {
        let server = trap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{host}", &server.host()))
            .collect();
        let out = ocidl(tmp.path()).args(&args).run();
        out.assert_error(1, "not found");
        let request = first_repo_request(&server);
        assert_eq!(request.path(), want_path, "for {args:?}");
        assert!(
            request.method == "GET" || request.method == "HEAD",
            "{args:?}: {}",
            request.method
        );
    }
}

#[test]
fn manifest_requests_accept_every_manifest_type() {
    let tmp = TempDir::new();
    let server = trap();
    ocidl(tmp.path())
        .args(["--plain-http", &server.reference("a/b:t")])
        .run()
        .assert_code(1);
    let request = first_repo_request(&server);
    let accept = request.header("accept").unwrap_or_default().to_string();
    for media_type in [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ] {
        assert!(
            accept.contains(media_type),
            "Accept lacks {media_type}: {accept:?}"
        );
    }
}

#[test]
fn https_prefix_speaks_tls() {
    let tmp = TempDir::new();
    let server = trap();
    // The fake speaks only plain HTTP, so a TLS client shows up as a connection that never
    // sends an HTTP request.
    let out = ocidl(tmp.path())
        .arg(format!("https://{}/a/b:t", server.host()))
        .run();
    out.assert_code(1);
    assert!(server.connections() >= 1, "no connection at all");
    assert!(
        server.requests().is_empty(),
        "plain HTTP sent despite https://: {:?}",
        server.requests()
    );
}

#[test]
fn digest_reference_does_not_fetch_a_manifest() {
    let tmp = TempDir::new();
    let server = trap();
    let digest = digest_of(b"anything");
    ocidl(tmp.path())
        .args(["--plain-http", &server.reference(&format!("a/b@{digest}"))])
        .run()
        .assert_error(1, "not found");
    assert!(
        server.requests_to("/v2/a/b/manifests/").is_empty(),
        "{:?}",
        server.requests()
    );
}

#[test]
fn ghcr_flag_prefixes_ghcr_io_to_a_bare_path() {
    let tmp = TempDir::new();
    // Offline, the only way to see where `--ghcr pkgforge/x` goes is a proxy on 127.0.0.1:
    // ocidl's HTTP client honours ALL_PROXY. First make sure it does, with a loopback target
    // that is harmless if it doesn't.
    // It accepts a CONNECT and then answers the TLS handshake with plain text: the client
    // fails on a protocol error at once, rather than retrying a refused tunnel for seconds.
    let proxy = FakeServer::start(|_| Response::ok(b"HTTP/1.1 400 Bad Request\r\n\r\n"));
    ocidl(tmp.path())
        .args(["--plain-http", "127.0.0.2:9/a/b:t"])
        .env("ALL_PROXY", &proxy.url(""))
        .run()
        .assert_code(1);
    assert!(
        !proxy.requests().is_empty(),
        "ocidl ignored ALL_PROXY, so the ghcr.io prefix cannot be checked without the internet"
    );
    let before = proxy.requests().len();

    ocidl(tmp.path())
        .args(["--ghcr", "pkgforge/bincache/trurl:v1"])
        .env("ALL_PROXY", &proxy.url(""))
        .run()
        .assert_code(1);
    let requests = proxy.requests();
    let asked: Vec<&str> = requests[before..]
        .iter()
        .map(|r| r.target.as_str())
        .collect();
    assert!(
        requests[before..]
            .iter()
            .any(|r| r.method == "CONNECT" && r.target == "ghcr.io:443"),
        "no CONNECT ghcr.io:443 through the proxy; saw {asked:?}"
    );
}
