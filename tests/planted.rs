//! Names someone else put there (issue 15): every name ocidl writes, in the output directory
//! and in a shared cache, with a symlink, a hard link or a FIFO planted under it first, and
//! cache entries that are not what they should be. What is planted is removed or replaced,
//! never written through; what did not verify never reaches a reader.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::support::fifo::{mkfifo, FifoReader};
use crate::support::registry::Registry;
use crate::support::run::pull_plain;
use crate::support::{
    assert_file, assert_files, assert_no_temp_files, digest_of, file_refs, partial_name,
    random_bytes, sha256_hex, TempDir,
};

const REPO: &str = "pkgforge/bincache/tool";
const MINE: &[u8] = b"#!/bin/sh\necho the user's own file\n";

/// A script (it gets made executable) and a data file.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    let mut tool = b"#!/bin/sh\necho tool\n".to_vec();
    tool.extend(random_bytes(200 * 1024, 151));
    vec![("tool", tool), ("tool.json", br#"{"pkg":"tool"}"#.to_vec())]
}

fn registry() -> Registry {
    let reg = Registry::start();
    reg.pusher().push_package(REPO, "v1", &file_refs(&files()));
    reg
}

/// A file of the user's outside everything ocidl writes: it must stay as it is.
fn victim(tmp: &TempDir, name: &str) -> std::path::PathBuf {
    let path = tmp.join(name);
    fs::write(&path, MINE).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn assert_untouched(victim: &Path) {
    assert_file(victim, MINE);
    let mode = fs::metadata(victim).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "{} changed mode", victim.display());
}

#[test]
fn names_planted_in_the_output_directory_are_never_written_through() {
    let reg = registry();
    let reference = reg.reference(&format!("{REPO}:v1"));
    let (tool, data) = (&files()[0].1, &files()[1].1);
    type Plant = fn(&Path, &Path);
    let plants: [(&str, Plant); 3] = [
        ("symlink", |victim, at| symlink(victim, at).unwrap()),
        ("hard link", |victim, at| fs::hard_link(victim, at).unwrap()),
        ("dangling symlink", |victim, at| {
            symlink(victim.with_extension("nowhere"), at).unwrap()
        }),
    ];
    for (what, plant) in plants {
        let tmp = TempDir::new();
        let out = tmp.join("out");
        fs::create_dir(&out).unwrap();
        let victims = [victim(&tmp, "victim-tool"), victim(&tmp, "victim-data")];
        plant(
            &victims[0],
            &out.join(partial_name("tool", &digest_of(tool))),
        );
        plant(
            &victims[1],
            &out.join(partial_name("tool.json", &digest_of(data))),
        );
        pull_plain(tmp.path(), &["-o", "out"], &reference)
            .run()
            .assert_success();
        victims.iter().for_each(|v| assert_untouched(v));
        assert!(
            !victims[0].with_extension("nowhere").exists(),
            "{what}: a file was made where a dangling symlink pointed"
        );
        assert_files(&out, &files());
        assert_no_temp_files(tmp.path());
        let mode = fs::metadata(out.join("tool")).unwrap().permissions().mode();
        assert_ne!(mode & 0o100, 0, "{what}: the script is not executable");
    }
}

#[test]
fn a_fifo_planted_at_a_temporary_name_is_removed_not_opened() {
    let reg = registry();
    let tmp = TempDir::new();
    let out = tmp.join("out");
    fs::create_dir(&out).unwrap();
    let fifo = out.join(partial_name("tool", &digest_of(&files()[0].1)));
    mkfifo(&fifo);
    let reader = FifoReader::start(&fifo);
    pull_plain(
        tmp.path(),
        &["-o", "out"],
        &reg.reference(&format!("{REPO}:v1")),
    )
    .timeout(Duration::from_secs(30))
    .run()
    .assert_success();
    assert!(reader.finish().is_empty(), "bytes went into the FIFO");
    assert_files(&out, &files());
    assert_no_temp_files(tmp.path());
}

#[test]
fn names_planted_in_a_shared_cache_are_replaced_never_followed() {
    let reg = registry();
    let reference = reg.reference(&format!("{REPO}:v1"));
    let tmp = TempDir::new();
    // A cache someone else can write into, as a shared one is.
    pull_plain(
        tmp.path(),
        &["--cache", "cache", "--cache-only"],
        &reference,
    )
    .run()
    .assert_success();
    let blobs = tmp.join("cache/blobs/sha256");
    let tool = &files()[0].1;
    let hex = sha256_hex(tool);
    fs::remove_file(blobs.join(&hex)).unwrap();
    let victims = [victim(&tmp, "v1"), victim(&tmp, "v2")];
    symlink(
        &victims[0],
        blobs.join(partial_name(&hex, &digest_of(tool))),
    )
    .unwrap();
    fs::remove_file(tmp.join("cache/index.json.lock")).ok();
    symlink(&victims[1], tmp.join("cache/index.json.lock")).unwrap();

    pull_plain(tmp.path(), &["--cache", "cache", "-o", "out"], &reference)
        .run()
        .assert_success();
    victims.iter().for_each(|v| assert_untouched(v));
    assert_files(&tmp.join("out"), &files());
    let entry = fs::symlink_metadata(blobs.join(&hex)).unwrap();
    assert!(entry.is_file(), "the cache entry is not a regular file");
    assert_file(&blobs.join(&hex), tool);
    let lock = fs::symlink_metadata(tmp.join("cache/index.json.lock")).unwrap();
    assert!(lock.is_file(), "the lock is still a symlink");
    assert_no_temp_files(tmp.path());
}

#[test]
fn cache_only_never_writes_into_what_an_entry_points_to() {
    let reg = registry();
    let reference = reg.reference(&format!("{REPO}:v1"));
    let tmp = TempDir::new();
    let blobs = tmp.join("cache/blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(
        tmp.join("cache/oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let fifo = tmp.join("fifo");
    mkfifo(&fifo);
    let reader = FifoReader::start(&fifo);
    let victim = victim(&tmp, "victim");
    let (tool, data) = (&files()[0].1, &files()[1].1);
    symlink(&fifo, blobs.join(sha256_hex(tool))).unwrap();
    symlink(&victim, blobs.join(sha256_hex(data))).unwrap();

    let out = pull_plain(
        tmp.path(),
        &["--cache", "cache", "--cache-only"],
        &reference,
    )
    .timeout(Duration::from_secs(30))
    .run();
    out.assert_success();
    assert!(reader.finish().is_empty(), "bytes went into the FIFO");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert_untouched(&victim);
    for data in [tool, data] {
        let entry = blobs.join(sha256_hex(data));
        assert!(fs::symlink_metadata(&entry).unwrap().is_file());
        assert_file(&entry, data);
    }
}

#[test]
fn a_wrong_cache_entry_never_reaches_a_stream() {
    let reg = registry();
    let tool = &files()[0].1;
    let blob = reg.reference(&format!("{REPO}@{}", digest_of(tool)));
    let tmp = TempDir::new();
    pull_plain(tmp.path(), &["--cache", "cache", "--cache-only"], &blob)
        .run()
        .assert_success();
    let entry = tmp.join("cache/blobs/sha256").join(sha256_hex(tool));
    // The right size, the wrong bytes: only the digest can tell.
    let mut wrong = tool.clone();
    wrong[..9].copy_from_slice(b"#!evil\n\n\n");
    let before = reg.blob_gets();
    for target in ["-", "fifo"] {
        fs::write(&entry, &wrong).unwrap();
        let reader = (target == "fifo").then(|| {
            mkfifo(&tmp.join("fifo"));
            FifoReader::start(&tmp.join("fifo"))
        });
        let out = pull_plain(tmp.path(), &["--cache", "cache", "-o", target], &blob)
            .timeout(Duration::from_secs(30))
            .run();
        out.assert_success();
        let got = match reader {
            Some(reader) => reader.finish(),
            None => out.stdout.clone(),
        };
        assert!(got == *tool, "{target}: the reader got other bytes");
        assert!(
            out.stderr.contains("is not what it should be"),
            "{}",
            out.stderr
        );
        assert_file(&entry, tool);
    }
    assert_eq!(
        reg.blob_gets(),
        before + 2,
        "the registry was not asked again"
    );
}
