//! Basic auth against a real htpasswd registry: `-u USER --password-stdin`.

use crate::support::registry::Registry;
use crate::support::run::{pull_plain, Output};
use crate::support::{assert_file, assert_files, assert_tree, file_refs, trurl_files, TempDir};

const REPO: &str = "private/trurl";

fn auth_registry() -> Registry {
    let reg = Registry::start_with_auth("ocidl", "s3cret pass");
    reg.pusher()
        .push_package(REPO, "v1", &file_refs(&trurl_files()));
    reg
}

/// A pull of `rest` from `reg` as `user`, the password (`stdin`) fed to `--password-stdin`.
fn pull_as(tmp: &TempDir, reg: &Registry, user: &str, stdin: &[u8], rest: &str) -> Output {
    pull_plain(
        tmp.path(),
        &["-u", user, "--password-stdin"],
        &reg.reference(rest),
    )
    .stdin(stdin)
    .run()
}

#[test]
fn right_credentials_pull_the_package() {
    let reg = auth_registry();
    // With and without the trailing newline `echo` adds.
    for stdin in [&b"s3cret pass\n"[..], b"s3cret pass"] {
        let tmp = TempDir::new();
        let out = pull_as(&tmp, &reg, "ocidl", stdin, &format!("{REPO}:v1"));
        out.assert_success().assert_stdout_empty();
        assert_files(tmp.path(), &trurl_files());
        // The password never shows up in messages.
        assert!(
            !out.stderr.contains("s3cret"),
            "password in stderr:\n{}",
            out.stderr
        );
    }
}

#[test]
fn right_credentials_fetch_a_blob() {
    let tmp = TempDir::new();
    let reg = Registry::start_with_auth("ocidl", "pw");
    let blob = reg.pusher().push_blob(REPO, b"private bytes");
    let reference = reg.reference(&format!("{REPO}@{}", blob.digest));
    let out = pull_plain(
        tmp.path(),
        &["--username", "ocidl", "--password-stdin", "-o", "-"],
        &reference,
    )
    .stdin(b"pw\n")
    .run();
    out.assert_success();
    assert_eq!(out.stdout, b"private bytes");
    pull_as(
        &tmp,
        &reg,
        "ocidl",
        b"pw\n",
        &format!("{REPO}@{}", blob.digest),
    )
    .assert_success();
    assert_file(&tmp.join("trurl"), b"private bytes");
}

#[test]
fn wrong_password_is_authentication_required() {
    let tmp = TempDir::new();
    let reg = auth_registry();
    let out = pull_as(&tmp, &reg, "ocidl", b"wrong\n", &format!("{REPO}:v1"));
    let line = out.assert_error(1, "authentication required");
    assert!(
        line.contains(REPO),
        "error does not name the reference: {line}"
    );
    assert!(
        !out.stderr.contains("wrong"),
        "password in stderr:\n{}",
        out.stderr
    );
    assert_tree(tmp.path(), &[]);
}

#[test]
fn wrong_user_is_authentication_required() {
    let tmp = TempDir::new();
    let reg = auth_registry();
    pull_as(
        &tmp,
        &reg,
        "nobody",
        b"s3cret pass\n",
        &format!("{REPO}:v1"),
    )
    .assert_error(1, "authentication required");
    assert_tree(tmp.path(), &[]);
}

#[test]
fn no_credentials_is_authentication_required() {
    let tmp = TempDir::new();
    let reg = auth_registry();
    for rest in [format!("{REPO}:v1"), format!("{REPO}:missing-tag")] {
        pull_plain(tmp.path(), &[], &reg.reference(&rest))
            .run()
            .assert_error(1, "authentication required");
    }
    assert_tree(tmp.path(), &[]);
}

#[test]
fn password_stdin_without_username_is_a_usage_error() {
    let tmp = TempDir::new();
    let reg = auth_registry();
    let out = pull_plain(
        tmp.path(),
        &["--password-stdin"],
        &reg.reference(&format!("{REPO}:v1")),
    )
    .stdin(b"s3cret pass\n")
    .run();
    out.assert_code(2);
    assert!(out.stderr.starts_with("ocidl: "), "{}", out.stderr);
    assert_tree(tmp.path(), &[]);
}
