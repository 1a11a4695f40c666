//! Package pulls from the real registry: every titled layer lands under the output directory
//! with exact bytes; untitled layers are skipped; unsafe titles are refused.

use std::os::unix::fs::symlink;

use crate::support::push::Layer;
use crate::support::registry::Registry;
use crate::support::run::{pull_plain, Output};
use crate::support::{
    assert_file, assert_files, assert_no_temp_files, assert_tree, file_refs, list_tree,
    trurl_files, write_file, TempDir,
};

const REPO: &str = "pkgforge/bincache/trurl";

/// Pulls `rest` (a reference without the registry) from `reg` into `tmp`, with `flags`.
fn pull(tmp: &TempDir, reg: &Registry, flags: &[&str], rest: &str) -> Output {
    pull_plain(tmp.path(), flags, &reg.reference(rest)).run()
}

#[test]
fn package_lands_in_a_new_output_directory() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let files = trurl_files();
    reg.pusher()
        .push_package(REPO, "0.16-x86_64-linux", &file_refs(&files));

    let out = pull(
        &tmp,
        &reg,
        &["-o", "out/trurl"],
        &format!("{REPO}:0.16-x86_64-linux"),
    );
    out.assert_success().assert_stdout_empty();
    assert_files(&tmp.join("out/trurl"), &files);
    assert_tree(
        tmp.path(),
        &[
            "out",
            "out/trurl",
            "out/trurl/CHECKSUM",
            "out/trurl/trurl",
            "out/trurl/trurl.json",
            "out/trurl/trurl.sig",
        ],
    );
    // One status line per file written, naming it.
    for (title, _) in &files {
        assert!(
            out.stderr.lines().any(|line| line.contains(title)),
            "no status line for {title}:\n{}",
            out.stderr
        );
    }
}

#[test]
fn package_lands_in_the_working_directory_by_default() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let files = trurl_files();
    reg.pusher().push_package(REPO, "v1", &file_refs(&files));

    pull(&tmp, &reg, &[], &format!("{REPO}:v1")).assert_success();
    assert_files(tmp.path(), &files);
    assert_tree(
        tmp.path(),
        &["CHECKSUM", "trurl", "trurl.json", "trurl.sig"],
    );
}

#[test]
fn package_without_tag_is_latest() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let push = reg.pusher();
    push.push_package(REPO, "v1", &[("trurl", b"old")]);
    push.push_package(REPO, "latest", &[("trurl", b"newest")]);

    pull(&tmp, &reg, &[], REPO).assert_success();
    assert_file(&tmp.join("trurl"), b"newest");
}

#[test]
fn successful_pull_replaces_an_older_file() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    reg.pusher()
        .push_package(REPO, "v2", &[("trurl", b"version 2")]);
    write_file(&tmp.join("out/trurl"), b"version 1, longer than version 2");

    pull(&tmp, &reg, &["-o", "out"], &format!("{REPO}:v2")).assert_success();
    assert_file(&tmp.join("out/trurl"), b"version 2");
    assert_tree(tmp.path(), &["out", "out/trurl"]);
}

#[test]
fn nested_titles_create_subdirectories() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let files = vec![
        ("bin/tool", b"#!/bin/sh\necho tool\n".to_vec()),
        ("share/doc/tool/README", b"read me\n".to_vec()),
        ("tool.json", b"{}".to_vec()),
    ];
    reg.pusher()
        .push_package("pkgforge/tool", "v1", &file_refs(&files));

    let out = pull(&tmp, &reg, &["-o", "pkg"], "pkgforge/tool:v1");
    out.assert_success();
    assert_files(&tmp.join("pkg"), &files);
    assert_tree(
        tmp.path(),
        &[
            "pkg",
            "pkg/bin",
            "pkg/bin/tool",
            "pkg/share",
            "pkg/share/doc",
            "pkg/share/doc/tool",
            "pkg/share/doc/tool/README",
            "pkg/tool.json",
        ],
    );
    out.assert_stderr_contains("bin/tool")
        .assert_stderr_contains("share/doc/tool/README");
}

#[test]
fn untitled_layers_are_skipped_with_a_note() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let layers = [
        Layer::file("trurl", b"binary"),
        Layer::untitled(b"no title here"),
        Layer::annotated(b"other annotations only", &[("org.example.note", "x")]),
        Layer::file("trurl.json", b"{}"),
    ];
    reg.pusher().push_pkgforge_layers(REPO, "v1", &layers);

    let out = pull(&tmp, &reg, &[], &format!("{REPO}:v1"));
    out.assert_success().assert_stderr_contains("skipped");
    assert_tree(tmp.path(), &["trurl", "trurl.json"]);
    assert_file(&tmp.join("trurl"), b"binary");
}

#[test]
fn quiet_pull_prints_nothing() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let files = trurl_files();
    reg.pusher().push_package(REPO, "v1", &file_refs(&files));

    for quiet in ["-q", "--quiet"] {
        let dir = format!("out{quiet}");
        let out = pull(&tmp, &reg, &[quiet, "-o", &dir], &format!("{REPO}:v1"));
        out.assert_success()
            .assert_stderr_empty()
            .assert_stdout_empty();
        assert_files(&tmp.join(&dir), &files);
    }
}

#[test]
fn package_to_stdout_is_refused() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    reg.pusher()
        .push_package(REPO, "v1", &[("trurl", b"binary")]);

    let out = pull(&tmp, &reg, &["-o", "-"], &format!("{REPO}:v1"));
    assert_ne!(out.code, 0, "a package written to stdout");
    assert!(
        out.stderr.contains("ocidl: "),
        "no error message:\n{}",
        out.stderr
    );
    out.assert_stdout_empty();
    assert_tree(tmp.path(), &[]);
}

/// Pushes a one-file package titled `title` and pulls it into `<tmp>/work/out`; returns the
/// run's output. Escapes would land in `<tmp>/work` or `<tmp>/outside`, all inside `tmp`.
fn pull_title(tmp: &TempDir, reg: &Registry, title: &str) -> Output {
    let repo = "pkgforge/evil";
    reg.pusher()
        .push_pkgforge_layers(repo, "v1", &[Layer::file(title, b"pwned")]);
    pull_plain(
        &tmp.join("work"),
        &["-o", "out"],
        &reg.reference(&format!("{repo}:v1")),
    )
    .run()
}

/// `pull_title` of `title` through a symlink the test planted under `tmp/work/out`: refused
/// as unsafe, leaving the tree `tree`.
fn assert_refused_through_symlink(tmp: &TempDir, title: &str, tree: &[&str]) {
    let reg = Registry::start();
    pull_title(tmp, &reg, title).assert_error(1, "unsafe title");
    assert_tree(tmp.path(), tree);
}

#[test]
fn unsafe_titles_are_refused() {
    let reg = Registry::start();
    // Absolute titles point into the test's own temp dir rather than /etc: if ocidl wrote
    // one, the damage stays in the test.
    let probe = TempDir::new();
    let absolute = probe
        .join("outside/abs-target")
        .to_string_lossy()
        .into_owned();
    for title in [
        "../evil",
        "a/../../b",
        "../../outside/x",
        "..",
        "bin/../../evil",
        absolute.as_str(),
        "/",
    ] {
        let tmp = TempDir::new();
        tmp.mkdir("work/out");
        tmp.mkdir("outside");
        let out = pull_title(&tmp, &reg, title);
        let line = out.assert_error(1, "unsafe title");
        assert!(
            line.contains("pkgforge/evil"),
            "error does not name the reference: {line}"
        );
        // Nothing outside the output dir; and the refused title wrote nothing inside it.
        assert_tree(tmp.path(), &["outside", "work", "work/out"]);
        assert!(
            !probe.join("outside").exists(),
            "absolute title {absolute} written"
        );
    }
}

#[test]
fn symlink_parent_escaping_the_output_dir_is_refused() {
    let tmp = TempDir::new();
    tmp.mkdir("work/out");
    tmp.mkdir("outside");
    symlink(tmp.join("outside"), tmp.join("work/out/link")).unwrap();
    let tree = ["outside", "work", "work/out", "work/out/link"];
    assert_refused_through_symlink(&tmp, "link/payload", &tree);
}

#[test]
fn symlink_deeper_in_the_title_is_refused() {
    let tmp = TempDir::new();
    tmp.mkdir("work/out/bin");
    tmp.mkdir("outside");
    symlink("../../../outside", tmp.join("work/out/bin/lib")).unwrap();
    assert_refused_through_symlink(
        &tmp,
        "bin/lib/payload",
        &[
            "outside",
            "work",
            "work/out",
            "work/out/bin",
            "work/out/bin/lib",
        ],
    );
}

#[test]
fn symlink_at_the_target_never_writes_through() {
    // A symlink at the file's own path: refusing it or replacing the link are both safe;
    // writing through it to the file outside is not.
    let tmp = TempDir::new();
    let reg = Registry::start();
    tmp.mkdir("work/out");
    write_file(&tmp.join("outside/victim"), b"precious");
    symlink(tmp.join("outside/victim"), tmp.join("work/out/payload")).unwrap();

    let out = pull_title(&tmp, &reg, "payload");
    assert!(out.code == 0 || out.code == 1, "exit {}", out.code);
    assert_file(&tmp.join("outside/victim"), b"precious");
    assert_no_temp_files(tmp.path());
    if out.code == 0 {
        assert_file(&tmp.join("work/out/payload"), b"pwned");
    }
    assert_eq!(list_tree(&tmp.join("outside")), vec!["victim"]);
}
