//! Blob fetch by digest and where `-o` sends it: the default name, a file, an existing
//! directory, a new directory (trailing '/'), and stdout.

use crate::support::registry::Registry;
use crate::support::run::{ocidl, Output};
use crate::support::{assert_file, assert_tree, random_bytes, write_file, TempDir};

const REPO: &str = "pkgforge/bincache/trurl";

/// A registry holding one 300 KiB blob in `REPO`; returns it, the bytes, and the reference.
fn blob_registry() -> (Registry, Vec<u8>, String) {
    let reg = Registry::start();
    let data = random_bytes(300 * 1024, 7);
    let blob = reg.pusher().push_blob(REPO, &data);
    let reference = reg.reference(&format!("{REPO}@{}", blob.digest));
    (reg, data, reference)
}

fn fetch(tmp: &TempDir, reference: &str, output: Option<&str>) -> Output {
    let mut cmd = ocidl(tmp.path()).arg("--plain-http");
    if let Some(output) = output {
        cmd = cmd.args(["-o", output]);
    }
    cmd.arg(reference).run()
}

#[test]
fn blob_default_name_is_the_repository_basename() {
    let tmp = TempDir::new();
    let (_reg, data, reference) = blob_registry();
    let out = fetch(&tmp, &reference, None);
    out.assert_success()
        .assert_stdout_empty()
        .assert_stderr_contains("trurl");
    assert_file(&tmp.join("trurl"), &data);
    assert_tree(tmp.path(), &["trurl"]);
}

#[test]
fn blob_to_a_named_file() {
    let tmp = TempDir::new();
    let (_reg, data, reference) = blob_registry();
    fetch(&tmp, &reference, Some("my-trurl"))
        .assert_success()
        .assert_stdout_empty();
    assert_file(&tmp.join("my-trurl"), &data);
    assert_tree(tmp.path(), &["my-trurl"]);
}

#[test]
fn blob_to_a_file_in_an_existing_directory() {
    let tmp = TempDir::new();
    let (_reg, data, reference) = blob_registry();
    tmp.mkdir("bin");
    fetch(&tmp, &reference, Some("bin/tool")).assert_success();
    assert_file(&tmp.join("bin/tool"), &data);
    assert_tree(tmp.path(), &["bin", "bin/tool"]);
}

#[test]
fn blob_replaces_an_existing_file() {
    let tmp = TempDir::new();
    let (_reg, data, reference) = blob_registry();
    write_file(&tmp.join("trurl"), b"an older trurl");
    fetch(&tmp, &reference, Some("trurl")).assert_success();
    assert_file(&tmp.join("trurl"), &data);
    assert_tree(tmp.path(), &["trurl"]);
}

#[test]
fn blob_into_an_existing_directory() {
    let tmp = TempDir::new();
    let (_reg, data, reference) = blob_registry();
    tmp.mkdir("bin");
    // Without a trailing slash: an existing directory still means "put it inside".
    fetch(&tmp, &reference, Some("bin")).assert_success();
    assert_file(&tmp.join("bin/trurl"), &data);
    assert_tree(tmp.path(), &["bin", "bin/trurl"]);
}

#[test]
fn blob_into_a_new_directory_with_trailing_slash() {
    let tmp = TempDir::new();
    let (_reg, data, reference) = blob_registry();
    fetch(&tmp, &reference, Some("newdir/")).assert_success();
    assert_file(&tmp.join("newdir/trurl"), &data);
    assert_tree(tmp.path(), &["newdir", "newdir/trurl"]);
}

#[test]
fn blob_to_stdout() {
    let tmp = TempDir::new();
    let (_reg, data, reference) = blob_registry();
    let out = fetch(&tmp, &reference, Some("-"));
    out.assert_success();
    assert!(
        out.stdout == data,
        "stdout is not the blob: {} bytes, want {}",
        out.stdout.len(),
        data.len()
    );
    assert_tree(tmp.path(), &[]);

    let quiet = ocidl(tmp.path())
        .args(["--plain-http", "-q", "-o", "-", &reference])
        .run();
    quiet.assert_success().assert_stderr_empty();
    assert!(quiet.stdout == data);
}

#[test]
fn blob_quiet_prints_nothing() {
    let tmp = TempDir::new();
    let (_reg, data, reference) = blob_registry();
    let out = ocidl(tmp.path())
        .args(["--plain-http", "-q", &reference])
        .run();
    out.assert_success()
        .assert_stderr_empty()
        .assert_stdout_empty();
    assert_file(&tmp.join("trurl"), &data);
}

#[test]
fn blob_that_is_not_a_file_title_keeps_the_repo_name() {
    // The blob of a pushed package is fetched by digest: the name comes from the repository,
    // not from the title inside the manifest (a blob fetch reads no manifest).
    let tmp = TempDir::new();
    let reg = Registry::start();
    let pushed = reg
        .pusher()
        .push_package(REPO, "v1", &[("trurl-x86_64", b"elf bytes")]);
    let reference = reg.reference(&format!("{REPO}@{}", pushed.layers[0].digest));
    fetch(&tmp, &reference, None).assert_success();
    assert_file(&tmp.join("trurl"), b"elf bytes");
    assert_tree(tmp.path(), &["trurl"]);
}
