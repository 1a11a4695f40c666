//! Failures: corrupted content, missing tags and blobs, dead registries, several references
//! with one bad, and broken HTTP from the fake server. A failed pull leaves the user's files
//! as they were and no temp files.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::fake::{Content, FakeServer, Response};
use crate::support::registry::Registry;
use crate::support::run::ocidl;
use crate::support::script::{range_response, scripted};
use crate::support::{
    assert_file, assert_files, assert_no_temp_files, assert_tree, digest_of, file_refs, free_port,
    list_tree, random_bytes, read_file, trurl_files, write_file, TempDir,
};

const REPO: &str = "pkgforge/bincache/trurl";

/// Overwrites a blob's bytes in the registry's storage, keeping the length: the registry
/// then serves content whose sha256 no longer matches its digest.
fn corrupt_blob(reg: &Registry, digest: &str) {
    let path = reg.blob_data_path(digest);
    let mut data = read_file(&path);
    let middle = data.len() / 2;
    let end = (middle + 16).min(data.len());
    for b in &mut data[middle..end] {
        *b ^= 0xff;
    }
    fs::write(&path, &data).unwrap();
}

#[test]
fn corrupted_blob_leaves_the_users_file_intact() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let files = trurl_files();
    let pushed = reg.pusher().push_package(REPO, "v1", &file_refs(&files));
    let reference = reg.reference(&format!("{REPO}:v1"));

    ocidl(tmp.path())
        .args(["--plain-http", "-o", "out", &reference])
        .run()
        .assert_success();
    assert_files(&tmp.join("out"), &files);

    corrupt_blob(&reg, &pushed.layers[0].digest);
    let older = b"trurl 0.15, the user's copy".to_vec();
    write_file(&tmp.join("out/trurl"), &older);
    let before = list_tree(tmp.path());

    let out = ocidl(tmp.path())
        .args(["--plain-http", "-o", "out", &reference])
        .run();
    let line = out.assert_error(1, "digest mismatch");
    assert!(
        line.contains(REPO),
        "error does not name the reference: {line}"
    );
    assert_file(&tmp.join("out/trurl"), &older);
    assert_eq!(list_tree(tmp.path()), before, "files appeared or vanished");
    assert_no_temp_files(tmp.path());
}

#[test]
fn corrupted_blob_fetch_leaves_the_users_file_intact() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let data = random_bytes(100 * 1024, 3);
    let blob = reg.pusher().push_blob(REPO, &data);
    corrupt_blob(&reg, &blob.digest);
    write_file(&tmp.join("bin/trurl"), b"older");

    let reference = reg.reference(&format!("{REPO}@{}", blob.digest));
    ocidl(tmp.path())
        .args(["--plain-http", "-o", "bin/", &reference])
        .run()
        .assert_error(1, "digest mismatch");
    assert_file(&tmp.join("bin/trurl"), b"older");
    assert_tree(tmp.path(), &["bin", "bin/trurl"]);

    // Into a directory that did not exist: no file, and no temp file, appears.
    ocidl(tmp.path())
        .args(["--plain-http", "-o", "fresh", &reference])
        .run()
        .assert_error(1, "digest mismatch");
    assert_no_temp_files(tmp.path());
    assert!(!tmp.join("fresh").is_file(), "a corrupt blob was written");
}

#[test]
fn missing_tag_repository_and_blob_are_not_found() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    reg.pusher().push_package(REPO, "v1", &[("trurl", b"x")]);
    let missing_blob = format!("{REPO}@{}", digest_of(b"never pushed"));
    for rest in [
        format!("{REPO}:v2"),
        "pkgforge/nothing:v1".to_string(),
        missing_blob,
    ] {
        let out = ocidl(tmp.path())
            .args(["--plain-http", &reg.reference(&rest)])
            .run();
        let line = out.assert_error(1, "not found");
        assert!(line.contains(&rest), "error does not name {rest}: {line}");
        out.assert_stdout_empty();
    }
    assert_tree(tmp.path(), &[]);
}

#[test]
fn unreachable_registry_cannot_connect() {
    let tmp = TempDir::new();
    let port = free_port();
    let started = Instant::now();
    let out = ocidl(tmp.path())
        .args(["--plain-http", &format!("127.0.0.1:{port}/a/b:t")])
        .run();
    out.assert_error(1, "cannot connect");
    assert_tree(tmp.path(), &[]);
    // Retries are fine; minutes of them are not.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn one_failing_reference_among_several() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let push = reg.pusher();
    push.push_package("pkgforge/one", "v1", &[("one", b"first")]);
    push.push_package("pkgforge/two", "v1", &[("two", b"second")]);
    let missing = reg.reference("pkgforge/three:v1");

    // The failure first, then good ones: they are still pulled, and the status is the worst.
    let out = ocidl(tmp.path())
        .args([
            "--plain-http",
            "-o",
            "out",
            &missing,
            &reg.reference("pkgforge/one:v1"),
            &reg.reference("pkgforge/two:v1"),
        ])
        .run();
    let line = out.assert_error(1, "not found");
    assert!(line.contains("pkgforge/three"), "{line}");
    assert_file(&tmp.join("out/one"), b"first");
    assert_file(&tmp.join("out/two"), b"second");

    // The failure last.
    let tmp = TempDir::new();
    let out = ocidl(tmp.path())
        .args(["--plain-http", &reg.reference("pkgforge/one:v1"), &missing])
        .run();
    out.assert_error(1, "not found");
    assert_tree(tmp.path(), &["one"]);
}

#[test]
fn several_good_references_all_land() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let push = reg.pusher();
    push.push_package("pkgforge/one", "v1", &[("one", b"first")]);
    let blob = push.push_blob("pkgforge/two", b"second");
    let out = ocidl(tmp.path())
        .args([
            "--plain-http",
            &reg.reference("pkgforge/one:v1"),
            &reg.reference(&format!("pkgforge/two@{}", blob.digest)),
        ])
        .run();
    out.assert_success();
    assert_file(&tmp.join("one"), b"first");
    assert_file(&tmp.join("two"), b"second");
    assert_tree(tmp.path(), &["one", "two"]);
}

/// The scripted blob of these tests (see `support::script`).
fn big() -> Vec<u8> {
    random_bytes(256 * 1024, 11)
}

#[test]
fn blob_longer_than_its_descriptor_is_refused() {
    let tmp = TempDir::new();
    let fake = scripted(big(), |_, data, _| {
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"trailing junk");
        Some(Response::ok(&longer))
    });
    write_file(&tmp.join("big"), b"the user's big");
    let out = ocidl(tmp.path())
        .args(["--plain-http", &fake.package()])
        .run();
    out.assert_code(1);
    assert_file(&tmp.join("big"), b"the user's big");
    assert_no_temp_files(tmp.path());
}

#[test]
fn blob_with_wrong_bytes_from_a_fake_is_a_digest_mismatch() {
    let tmp = TempDir::new();
    let fake = scripted(big(), |_, data, _| {
        let mut wrong = data.to_vec();
        wrong[0] ^= 1;
        Some(Response::ok(&wrong))
    });
    ocidl(tmp.path())
        .args(["--plain-http", &fake.package()])
        .run()
        .assert_error(1, "digest mismatch");
    assert!(!tmp.join("big").exists());
    assert_no_temp_files(tmp.path());
}

/// A body that keeps breaking off fails the run once the retries are spent, but the bytes
/// so far are kept (never under the final name) and the next run resumes from them.
#[test]
fn body_always_cut_short_keeps_the_part_for_the_next_run() {
    let tmp = TempDir::new();
    let fake = scripted(big(), |req, data, attempt| {
        // The first run's three tries each get the first half, then the link is fixed.
        Some(if attempt <= 3 {
            Response::ok(&data[..data.len() / 2]).content_length(data.len() as u64)
        } else {
            range_response(req, data)
        })
    });
    write_file(&tmp.join("big"), b"the user's big");
    let big = &fake.data;
    let out = ocidl(tmp.path())
        .args(["--plain-http", "--retries", "2", &fake.package()])
        .run();
    out.assert_error(1, "run again to resume");
    assert_file(&tmp.join("big"), b"the user's big");
    let kept: Vec<String> = list_tree(tmp.path())
        .into_iter()
        .filter(|name| name.contains("ocidl-partial"))
        .collect();
    assert_eq!(kept.len(), 1, "one partial file expected: {kept:?}");
    assert_eq!(read_file(&tmp.join(&kept[0])), &big[..big.len() / 2]);

    ocidl(tmp.path())
        .args(["--plain-http", &fake.package()])
        .run()
        .assert_success();
    assert_file(&tmp.join("big"), big);
    assert_tree(tmp.path(), &["big", "small"]);
    let ranges = fake.ranges();
    let half = big.len() / 2;
    assert_eq!(
        ranges.last().unwrap().as_deref(),
        Some(format!("bytes={half}-").as_str()),
        "the second run should resume where the first stopped: {ranges:?}"
    );
}

#[test]
fn body_cut_short_once_is_retried() {
    let tmp = TempDir::new();
    let fake = scripted(big(), |req, data, attempt| {
        if attempt == 1 {
            Some(Response::ok(&data[..data.len() / 3]).content_length(data.len() as u64))
        } else {
            Some(range_response(req, data))
        }
    });
    ocidl(tmp.path())
        .args(["--plain-http", &fake.package()])
        .run()
        .assert_success();
    assert_file(&tmp.join("big"), &fake.data);
    assert_file(&tmp.join("small"), b"small");
    assert_tree(tmp.path(), &["big", "small"]);
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    for first in [
        Response::error(500, "UNKNOWN", "boom"),
        Response::error(503, "UNAVAILABLE", "later"),
        Response::error(429, "TOOMANYREQUESTS", "slow down").header("Retry-After", "1"),
    ] {
        let tmp = TempDir::new();
        let status = first.status;
        let fake = scripted(big(), move |_, _, attempt| {
            (attempt == 1).then(|| first.clone())
        });
        ocidl(tmp.path())
            .args(["--plain-http", &fake.package()])
            .run()
            .assert_success();
        assert_file(&tmp.join("big"), &fake.data);
        assert_eq!(fake.blob_gets().len(), 2, "after a {status}");
    }
}

#[test]
fn persistent_server_errors_give_up() {
    let tmp = TempDir::new();
    let server = FakeServer::start(|_| Response::error(503, "UNAVAILABLE", "down for good"));
    let started = Instant::now();
    ocidl(tmp.path())
        .args(["--plain-http", &server.reference("x/y:t")])
        .run()
        .assert_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "took {:?}",
        started.elapsed()
    );
    let manifest_gets = server.requests_to("/v2/x/y/manifests/").len();
    assert!(
        (1..=10).contains(&manifest_gets),
        "{manifest_gets} manifest requests"
    );
    assert_tree(tmp.path(), &[]);
}

#[test]
fn oversized_manifest_is_refused() {
    let tmp = TempDir::new();
    let mut content = Content::new();
    // Valid JSON, 5 MiB: past the 4 MiB cap every client applies.
    let padding = "x".repeat(5 * 1024 * 1024);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[],"annotations":{{"pad":"{padding}"}}}}"#,
        digest_of(b"{}")
    );
    content.add_manifest_bytes(
        "x/y",
        "t",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    );
    let server = FakeServer::start(move |req| content.serve(req));
    ocidl(tmp.path())
        .args(["--plain-http", &server.reference("x/y:t")])
        .run()
        .assert_code(1);
    assert_tree(tmp.path(), &[]);
}

#[test]
fn garbage_manifest_fails_without_panicking() {
    let tmp = TempDir::new();
    let mut content = Content::new();
    content.add_manifest_bytes(
        "x/y",
        "t",
        "application/vnd.oci.image.manifest.v1+json",
        b"{\"schemaVersion\": 2, \"layers\": 7",
    );
    content.add_manifest_bytes("x/y", "u", "text/html", b"<html>not a registry</html>");
    let server = FakeServer::start(move |req| content.serve(req));
    for tag in ["t", "u"] {
        // `run` itself fails the test on a panic message.
        ocidl(tmp.path())
            .args(["--plain-http", &server.reference(&format!("x/y:{tag}"))])
            .run()
            .assert_code(1);
    }
    assert_tree(tmp.path(), &[]);
}
