//! sha512, the image spec's other digest algorithm, anywhere in a manifest: an untitled layer,
//! an excluded one, an index entry for another platform do not fail a pull, and a titled
//! sha512 layer is downloaded and verified. A reference's own digest stays sha256 (issue 8).

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha512};

use crate::support::fake::{Content, FakeServer, Request};
use crate::support::push::{empty_config, OCI_INDEX, OCI_MANIFEST, OCTET_STREAM, TITLE};
use crate::support::run::{pull_plain, Output};
use crate::support::{
    assert_file, assert_no_temp_files, assert_tree, digest_of, host_architecture, random_bytes,
    TempDir,
};

const REPO: &str = "pkg/tool";

fn sha512_of(bytes: &[u8]) -> String {
    let hex: String = Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha512:{hex}")
}

/// A layer descriptor for `data` under `digest`, titled when `title` is given.
fn layer(digest: &str, data: &[u8], title: Option<&str>) -> Value {
    let mut layer = json!({ "mediaType": OCTET_STREAM, "digest": digest, "size": data.len() });
    if let Some(title) = title {
        layer["annotations"] = json!({ TITLE: title });
    }
    layer
}

fn image(layers: Vec<Value>) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": empty_config().to_json(),
        "layers": layers,
    })
}

fn start(content: Content) -> FakeServer {
    let content = Arc::new(content);
    FakeServer::start(move |req: &Request| content.serve(req))
}

fn pull(tmp: &TempDir, server: &FakeServer, flags: &[&str], tag: &str) -> Output {
    let mut all = vec!["-o", "out"];
    all.extend_from_slice(flags);
    pull_plain(
        tmp.path(),
        &all,
        &server.reference(&format!("{REPO}:{tag}")),
    )
    .run()
}

/// The digests of the blobs requested.
fn blob_gets(server: &FakeServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter_map(|r| r.path().rsplit_once("/blobs/").map(|(_, d)| d.to_string()))
        .collect()
}

#[test]
fn sha512_in_untitled_excluded_and_other_platform_entries_does_not_fail_a_pull() {
    let tool = random_bytes(20_000, 51);
    let untitled = b"an untitled sha512 layer".to_vec();
    let signature = b"an excluded sha512 layer".to_vec();
    let mut content = Content::new();
    content.add_blob(b"{}");
    let tool_digest = content.add_blob(&tool);
    content.add_blob_as(&sha512_of(&untitled), &untitled);
    content.add_blob_as(&sha512_of(&signature), &signature);
    let manifest = image(vec![
        layer(&tool_digest, &tool, Some("tool")),
        layer(&sha512_of(&untitled), &untitled, None),
        layer(&sha512_of(&signature), &signature, Some("tool.sig")),
    ]);
    let chosen = content.add_manifest(REPO, "image", OCI_MANIFEST, &manifest);
    // An index whose entry for another platform is sha512 (it need not exist).
    let elsewhere = sha512_of(b"another platform's manifest");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            { "mediaType": OCI_MANIFEST, "digest": elsewhere, "size": 500,
              "platform": { "os": "plan9", "architecture": host_architecture() } },
            { "mediaType": OCI_MANIFEST, "digest": chosen.digest, "size": chosen.size,
              "platform": { "os": "linux", "architecture": host_architecture() } },
        ],
    });
    content.add_manifest(REPO, "index", OCI_INDEX, &index);
    let server = start(content);

    for tag in ["image", "index"] {
        let tmp = TempDir::new();
        let out = pull(&tmp, &server, &["--exclude", "*.sig"], tag);
        out.assert_success().assert_stdout_empty();
        assert_file(&tmp.join("out/tool"), &tool);
        assert_tree(tmp.path(), &["out", "out/tool"]);
        // The untitled layer is noted with its sha512 digest, not fetched.
        out.assert_stderr_contains(&format!(
            "skipped layer {} ({} bytes): it has no title",
            sha512_of(&untitled),
            untitled.len()
        ));
    }
    assert!(
        blob_gets(&server).iter().all(|d| *d == tool_digest),
        "{:?}",
        blob_gets(&server)
    );
    // --list shows the sha512 layers with their whole digests.
    let tmp = TempDir::new();
    let out = pull(&tmp, &server, &["--list"], "index");
    out.assert_success();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "tool\t20000\t{tool_digest}\t{OCTET_STREAM}\ntool.sig\t{}\t{}\t{OCTET_STREAM}\n",
            signature.len(),
            sha512_of(&signature)
        )
    );
}

/// A registry whose one file, `tool`, is a sha512 layer; its blob is served as `served`.
fn sha512_package(data: &[u8], served: &[u8]) -> (FakeServer, String) {
    let digest = sha512_of(data);
    let mut content = Content::new();
    content.add_blob(b"{}");
    content.add_blob_as(&digest, served);
    let manifest = image(vec![layer(&digest, data, Some("tool"))]);
    content.add_manifest(REPO, "t", OCI_MANIFEST, &manifest);
    (start(content), digest)
}

#[test]
fn a_sha512_layer_is_downloaded_and_verified() {
    let data = random_bytes(70_000, 52);
    let (server, digest) = sha512_package(&data, &data);
    let tmp = TempDir::new();
    let out = pull(&tmp, &server, &["--json"], "t");
    out.assert_success();
    assert_file(&tmp.join("out/tool"), &data);
    assert_tree(tmp.path(), &["out", "out/tool"]);
    assert_eq!(blob_gets(&server), std::slice::from_ref(&digest));
    // The status line names the algorithm it verified with.
    let hex = &digest["sha512:".len()..];
    assert_eq!(
        out.stderr,
        format!("out/tool  68.4 KiB  sha512:{}\n", &hex[..12])
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["references"][0]["files"][0]["digest"], json!(digest));
    assert_eq!(doc["references"][0]["files"][0]["status"], json!("written"));

    // Run again: it is up to date, checked with sha512, and not fetched again.
    let again = pull(&tmp, &server, &[], "t");
    again.assert_success();
    assert_eq!(
        again.stderr,
        format!("out/tool  68.4 KiB  sha512:{}  up to date\n", &hex[..12])
    );
    assert_eq!(blob_gets(&server).len(), 1);
}

#[test]
fn a_sha512_layer_with_a_wrong_byte_fails() {
    let data = random_bytes(70_000, 53);
    for at in [0, 35_000, 69_999] {
        let mut wrong = data.clone();
        wrong[at] ^= 1;
        let (server, digest) = sha512_package(&data, &wrong);
        let tmp = TempDir::new();
        let out = pull(&tmp, &server, &["--retries", "0"], "t");
        let line = out.assert_error(1, "digest mismatch");
        assert_eq!(
            line,
            format!(
                "ocidl: {}: tool: digest mismatch: expected {digest}, got {}",
                server.reference(&format!("{REPO}:t")),
                sha512_of(&wrong)
            )
        );
        assert_tree(tmp.path(), &[]);
        assert_no_temp_files(tmp.path());
    }
}

#[test]
fn a_reference_by_sha512_is_a_usage_error() {
    let server = start(Content::new());
    let tmp = TempDir::new();
    let digest = sha512_of(b"x");
    let reference = server.reference(&format!("{REPO}@{digest}"));
    let out = pull_plain(tmp.path(), &[], &reference).run();
    let line = out.assert_error(2, "invalid reference");
    assert!(
        line.ends_with("a reference's digest is sha256 (as in distribution's grammar)"),
        "{line}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(server.connections(), 0);
    assert_tree(tmp.path(), &[]);
    // sha256 of the same content is fine as far as the grammar goes (404 here).
    let sha256 = server.reference(&format!("{REPO}@{}", digest_of(b"x")));
    pull_plain(tmp.path(), &[], &sha256)
        .run()
        .assert_error(1, "not found");
}
