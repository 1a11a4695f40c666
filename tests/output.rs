//! Blob fetch by digest and where `-o` sends it: the default name, a file, an existing
//! directory, a new directory (trailing '/'), and stdout.

use crate::support::registry::Registry;
use crate::support::run::{pull_plain, Output};
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
    let flags = match output {
        Some(output) => vec!["-o", output],
        None => vec![],
    };
    pull_plain(tmp.path(), &flags, reference).run()
}

/// Fetches the blob with `-o output` into a fresh directory set up by `prepare`; checks that
/// it worked, that the bytes landed at `lands`, and that the tree is `tree` after.
fn fetch_to(prepare: impl FnOnce(&TempDir), output: &str, lands: &str, tree: &[&str]) -> Output {
    let tmp = TempDir::new();
    let (_reg, data, reference) = blob_registry();
    prepare(&tmp);
    let out = fetch(&tmp, &reference, Some(output));
    out.assert_success();
    assert_file(&tmp.join(lands), &data);
    assert_tree(tmp.path(), tree);
    out
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
    fetch_to(|_| {}, "my-trurl", "my-trurl", &["my-trurl"]).assert_stdout_empty();
}

#[test]
fn blob_to_a_file_in_an_existing_directory() {
    let bin = |tmp: &TempDir| {
        tmp.mkdir("bin");
    };
    fetch_to(bin, "bin/tool", "bin/tool", &["bin", "bin/tool"]);
}

#[test]
fn blob_replaces_an_existing_file() {
    let older = |tmp: &TempDir| write_file(&tmp.join("trurl"), b"an older trurl");
    fetch_to(older, "trurl", "trurl", &["trurl"]);
}

#[test]
fn blob_into_an_existing_directory() {
    // Without a trailing slash: an existing directory still means "put it inside".
    let bin = |tmp: &TempDir| {
        tmp.mkdir("bin");
    };
    fetch_to(bin, "bin", "bin/trurl", &["bin", "bin/trurl"]);
}

#[test]
fn blob_into_a_new_directory_with_trailing_slash() {
    fetch_to(
        |_| {},
        "newdir/",
        "newdir/trurl",
        &["newdir", "newdir/trurl"],
    );
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

    let quiet = pull_plain(tmp.path(), &["-q", "-o", "-"], &reference).run();
    quiet.assert_success().assert_stderr_empty();
    assert!(quiet.stdout == data);
}

#[test]
fn blob_quiet_prints_nothing() {
    let tmp = TempDir::new();
    let (_reg, data, reference) = blob_registry();
    let out = pull_plain(tmp.path(), &["-q"], &reference).run();
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
