//! Nothing waits without a bound and nothing grows without one (issue 8): a descriptor whose
//! size is not the blob's, a body that trickles, a credential helper that hangs, prints too
//! much or leaves a child behind, endless tag pages, a token that is
//! not one. Each test asserts on the exit status, the message, and how often each server
//! was asked; a run that would not end fails by the harness's timeout.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::fake::{Content, FakeServer, Request, Response};
use crate::support::push::{empty_config, Layer, OCI_MANIFEST};
use crate::support::run::{pull_plain, Ocidl, Output};
use crate::support::script::scripted;
use crate::support::{
    assert_file, assert_no_temp_files, basic_auth, digest_of, partial_files, random_bytes,
    wait_until, write_file, TempDir,
};

const REPO: &str = "x/y";
/// Long enough for any bounded run here; a run past it is one that would not end.
const BOUNDED: Duration = Duration::from_secs(25);

fn blob_gets(server: &FakeServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path().contains("/blobs/"))
        .count()
}

/// A package `REPO:t` with one file `tool` holding `data`, whose descriptor says `size`.
fn package_claiming(data: &[u8], size: u64) -> Content {
    let mut content = Content::new();
    content.add_blob(b"{}");
    let digest = content.add_blob(data);
    let mut layer = Layer::file("tool", data).descriptor().to_json();
    layer["size"] = json!(size);
    layer["annotations"] = json!({ "org.opencontainers.image.title": "tool" });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": empty_config().to_json(),
        "layers": [layer],
    });
    assert_eq!(layer["digest"], json!(digest));
    content.add_manifest(REPO, "t", OCI_MANIFEST, &manifest);
    content
}

fn pull(tmp: &TempDir, server: &FakeServer, flags: &[&str]) -> Output {
    let mut all = vec!["-o", "out"];
    all.extend(flags);
    pull_plain(tmp.path(), &all, &server.reference(&format!("{REPO}:t")))
        .timeout(BOUNDED)
        .run()
}

#[test]
fn a_descriptor_size_that_is_not_the_blobs_fails_at_once() {
    let data = random_bytes(2 << 20, 81);
    let len = data.len() as u64;
    for size in [len + 1, len + 4096, len * 2, len - 1] {
        let tmp = TempDir::new();
        let content = package_claiming(&data, size);
        let server = FakeServer::start(move |req| content.serve(req));
        let out = pull(&tmp, &server, &[]);
        out.assert_error(
            1,
            &format!("size mismatch: expected {size} bytes, got {len}"),
        );
        assert_eq!(blob_gets(&server), 1, "size {size}");
        assert!(!tmp.join("out/tool").exists());
        assert_no_temp_files(tmp.path());
    }
}

/// A server that agrees with the wrong descriptor (its Content-Length says `size`) but has
/// only the real bytes, so every body ends early: the same bytes again are no progress, and
/// `--retries` ends it.
#[test]
fn a_body_that_always_ends_short_runs_out_of_retries() {
    let data = random_bytes(2 << 20, 82);
    let len = data.len() as u64;
    for (size, retries) in [(len + 1, 2), (len + 100_000, 3)] {
        let tmp = TempDir::new();
        let content = package_claiming(&data, size);
        let blob = data.clone();
        let server = FakeServer::start(move |req: &Request| {
            if req.path().ends_with(&digest_of(&blob)) {
                return Response::ok(&blob).content_length(size);
            }
            content.serve(req)
        });
        let out = pull(&tmp, &server, &["--retries", &retries.to_string()]);
        out.assert_error(1, "the download broke off");
        assert_eq!(blob_gets(&server), retries + 1, "size {size}");
        assert!(!tmp.join("out/tool").exists());
    }
}

#[test]
fn a_trickle_is_cut_by_the_speed_limit_then_resumed() {
    let tmp = TempDir::new();
    let s = scripted(random_bytes(64 * 1024, 83), |_, data, attempt| {
        (attempt == 1).then(|| Response::ok(data).throttle(10, Duration::from_millis(100)))
    });
    let out = pull_plain(
        tmp.path(),
        &["--speed-limit", "1000", "--speed-time", "1", "-o", "out/"],
        &s.blob(),
    )
    .timeout(BOUNDED)
    .run();
    out.assert_success();
    assert!(
        out.stderr.contains("slower than 1000 bytes/s for 1 s"),
        "{}",
        out.stderr
    );
    assert_file(&tmp.join("out/y"), &s.data);
    let ranges = s.ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(
        ranges[1].as_deref().is_some_and(|r| r != "bytes=0-"),
        "{ranges:?}"
    );
}

#[test]
fn a_trickle_that_never_speeds_up_fails_and_keeps_its_bytes() {
    let tmp = TempDir::new();
    let s = scripted(random_bytes(64 * 1024, 84), |req, data, _| {
        let start = crate::support::script::range_start(req).unwrap_or(0);
        Some(
            crate::support::script::partial_content(data, start)
                .status(if start == 0 { 200 } else { 206 })
                .throttle(5, Duration::from_millis(100)),
        )
    });
    let out = pull_plain(
        tmp.path(),
        &[
            "--speed-limit",
            "500",
            "--speed-time",
            "1",
            "--retries",
            "1",
            "-o",
            "out/",
        ],
        &s.blob(),
    )
    .timeout(BOUNDED)
    .run();
    let line = out.assert_error(1, "slower than 500 bytes/s for 1 s");
    assert!(line.contains("run again to resume"), "{line}");
    assert_eq!(s.blob_gets().len(), 2);
    assert_eq!(partial_files(&tmp.join("out")).len(), 1);
}

#[test]
fn a_trickled_manifest_is_cut_too() {
    let tmp = TempDir::new();
    let mut content = Content::new();
    content.add_package(REPO, "t", &[("tool", b"bytes")]);
    let server = FakeServer::start(move |req: &Request| {
        let answer = content.serve(req);
        match req.path().contains("/manifests/") {
            true => answer.throttle(2, Duration::from_millis(200)),
            false => answer,
        }
    });
    let out = pull(
        &tmp,
        &server,
        &["--speed-limit", "100", "--speed-time", "1"],
    );
    out.assert_error(1, "slower than 100 bytes/s for 1 s");
}

/// A fake registry behind Basic auth for `u`/`p`, holding `REPO:t`.
fn basic_registry() -> FakeServer {
    let mut content = Content::new();
    content.add_package(REPO, "t", &[("tool", b"the tool")]);
    let expected = basic_auth("u", "p");
    FakeServer::start(move |req: &Request| {
        if req.authorization() != Some(expected.as_str()) {
            return Response::new(401).header("WWW-Authenticate", "Basic realm=\"x\"");
        }
        content.serve(req)
    })
}

/// A pull of `REPO:t` from `server` with `flags`, where docker's config.json names
/// `docker-credential-test` as the store, and that helper is the shell `script`.
fn pull_with_helper(tmp: &TempDir, server: &FakeServer, flags: &[&str], script: &str) -> Ocidl {
    write_file(&tmp.join("docker/config.json"), br#"{"credsStore":"test"}"#);
    let helper = tmp.join("bin/docker-credential-test");
    write_file(&helper, format!("#!/bin/sh\n{script}\n").as_bytes());
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        tmp.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut all = vec!["-o", "out"];
    all.extend(flags);
    pull_plain(tmp.path(), &all, &server.reference(&format!("{REPO}:t")))
        .env("DOCKER_CONFIG", &tmp.join("docker").display().to_string())
        .env("PATH", &path)
        .timeout(BOUNDED)
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{}", pid.trim())).exists()
}

fn read_pid(path: &Path) -> String {
    assert!(wait_until(Duration::from_secs(10), || fs::read_to_string(
        path
    )
    .is_ok_and(|p| !p.trim().is_empty())));
    fs::read_to_string(path).unwrap()
}

fn kill(pid: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status();
}

#[test]
fn a_helper_that_never_answers_is_stopped_at_the_timeout() {
    let tmp = TempDir::new();
    let server = basic_registry();
    let pidfile = tmp.join("helper.pid");
    let cmd = pull_with_helper(
        &tmp,
        &server,
        &["--timeout", "1"],
        &format!("echo $$ > '{}'\nexec sleep 300", pidfile.display()),
    );
    let out = cmd.run();
    out.assert_error(1, "credential helper docker-credential-test");
    assert!(
        out.stderr
            .contains("did not answer within 1 s (--timeout); stopped it"),
        "{}",
        out.stderr
    );
    let pid = read_pid(&pidfile);
    let gone = wait_until(Duration::from_secs(2), || !alive(&pid));
    kill(&pid);
    assert!(gone, "the helper {pid} outlived ocidl");
}

#[test]
fn a_signal_stops_the_helper_with_ocidl() {
    let tmp = TempDir::new();
    let server = basic_registry();
    let pidfile = tmp.join("helper.pid");
    let cmd = pull_with_helper(
        &tmp,
        &server,
        &[],
        &format!("echo $$ > '{}'\nexec sleep 300", pidfile.display()),
    );
    let mut running = cmd.spawn();
    let pid = read_pid(&pidfile);
    running.signal("INT");
    let out = running.finish(BOUNDED);
    out.assert_code(130);
    let gone = wait_until(Duration::from_secs(2), || !alive(&pid));
    kill(&pid);
    assert!(gone, "the helper {pid} outlived ocidl's SIGINT");
}

#[test]
fn a_helper_that_prints_too_much_is_stopped() {
    let tmp = TempDir::new();
    let server = basic_registry();
    let cmd = pull_with_helper(
        &tmp,
        &server,
        &[],
        "cat >/dev/null\nyes '{\"Username\":\"u\"}' | head -c 1000000",
    );
    let out = cmd.run();
    out.assert_error(1, "printed more than 65536 bytes");
}

#[test]
fn a_helper_whose_child_keeps_its_output_open_still_answers() {
    let tmp = TempDir::new();
    let server = basic_registry();
    let pidfile = tmp.join("grandchild.pid");
    let cmd = pull_with_helper(&tmp, &server, &[], &format!(
            "cat >/dev/null\n(sleep 300 & echo $! > '{}')\nprintf '{{\"Username\":\"u\",\"Secret\":\"p\"}}'",
            pidfile.display()
        ));
    let out = cmd.run();
    kill(&read_pid(&pidfile));
    out.assert_success();
    assert_file(&tmp.join("out/tool"), b"the tool");
}

/// A tag list of `page` on every page, each with a `Link` to the page `next` names.
fn paging(page: Vec<String>, next: fn(usize) -> usize) -> FakeServer {
    let page = Arc::new(page);
    FakeServer::start(move |req: &Request| {
        let n: usize = req.query("n").and_then(|n| n.parse().ok()).unwrap_or(0);
        Response::json(&json!({ "name": REPO, "tags": *page })).header(
            "Link",
            &format!("</v2/{REPO}/tags/list?n={}>; rel=\"next\"", next(n)),
        )
    })
}

#[test]
fn tag_pages_that_loop_end_clearly() {
    // Back to the first page, or to itself: each page is asked for once.
    for next in [|_| 0, |n| n] {
        let server = paging(vec!["a".into(), "b".into()], next);
        let tmp = TempDir::new();
        let out = pull_plain(tmp.path(), &["--tags"], &server.reference(REPO))
            .timeout(BOUNDED)
            .run();
        out.assert_error(1, "its pages loop");
        let asked = server.requests_to(&format!("/v2/{REPO}/tags/list")).len();
        assert!(asked <= 2, "{asked} requests");
        // The page is printed once: asked for again, or seen again, it is a loop.
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\n");
    }
}

#[test]
fn endless_tag_pages_stop_at_the_page_bound() {
    // A new tag on every page, so no page is one seen before.
    let server = FakeServer::start(move |req: &Request| {
        let n: usize = req.query("n").and_then(|n| n.parse().ok()).unwrap_or(0);
        Response::json(&json!({ "name": REPO, "tags": [n.to_string()] })).header(
            "Link",
            &format!("</v2/{REPO}/tags/list?n={}>; rel=\"next\"", n + 1),
        )
    });
    let tmp = TempDir::new();
    let out = pull_plain(tmp.path(), &["--tags"], &server.reference(REPO))
        .timeout(Duration::from_secs(120))
        .run();
    out.assert_error(1, "more than 10000 pages");
    assert_eq!(
        server.requests_to(&format!("/v2/{REPO}/tags/list")).len(),
        10_000
    );
    let printed: usize = (0..10_000).map(|n: usize| n.to_string().len() + 1).sum();
    assert_eq!(out.stdout.len(), printed);
}

#[test]
fn a_token_that_is_not_one_is_not_retried() {
    for answer in [
        r#"{"token":"line\nbreak"}"#,
        r#"{"token":"has space"}"#,
        r#"{"token":""}"#,
        r#"{"token":5}"#,
        "<html>not json</html>",
    ] {
        let tmp = TempDir::new();
        let server = FakeServer::start(move |req: &Request| {
            if req.path() == "/token" {
                return Response::ok(answer.as_bytes()).header("Content-Type", "application/json");
            }
            Response::bearer_challenge_here(req, "fake", "repository:x/y:pull")
        });
        let out = pull(&tmp, &server, &[]);
        out.assert_error(1, "token service:");
        assert_eq!(server.requests_to("/token").len(), 1, "{answer}");
        assert_eq!(server.requests_to("/v2/").len(), 1, "{answer}");
    }
}

/// The same page, asked for again under a URL that is the same resource (RFC 3986): each
/// `Link` adds a fragment (never sent: the request is byte for byte the first one) or `./`
/// segments. The README says "a page asked for twice ends the list as a loop"; these go on
/// to the 10,000-page bound, printing the same tags again and again (up to 4 MiB a page:
/// 40 GB of output from one page of tags).
#[test]
fn tag_pages_that_loop_under_another_spelling_end_as_a_loop() {
    type Link = fn(usize) -> String;
    let variations: [(&str, Link); 2] = [
        ("a fragment", |k| {
            format!("</v2/{REPO}/tags/list?n=2#{k}>; rel=\"next\"")
        }),
        // `./` segments, a few more each time (up to 2,000: the URL stays under 8 KiB).
        ("./ segments", |k| {
            format!(
                "</v2/{REPO}/tags/{}list?n=2>; rel=\"next\"",
                "./".repeat(k % 2000)
            )
        }),
    ];
    let mut looped = Vec::new();
    for (how, link) in variations {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        let server = FakeServer::start(move |_: &Request| {
            let k = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Response::json(&json!({ "name": REPO, "tags": ["a", "b"] })).header("Link", &link(k))
        });
        let tmp = TempDir::new();
        let out = pull_plain(tmp.path(), &["--tags"], &server.reference(REPO))
            .timeout(Duration::from_secs(120))
            .run();
        let asked = server.requests().len();
        let pages = String::from_utf8_lossy(&out.stdout)
            .matches("a\nb\n")
            .count();
        if asked > 3 || out.error_line("its pages loop").is_none() {
            looped.push(format!(
                "{how}: the page was asked for {asked} times and printed {pages} times ({})",
                out.stderr.lines().last().unwrap_or_default()
            ));
        }
    }
    assert!(looped.is_empty(), "{looped:#?}");
}
