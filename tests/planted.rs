//! Names someone else put there (issue 15): every name ocidl writes, in the output directory
//! and in a shared cache, with a symlink, a hard link or a FIFO planted under it first, and
//! cache entries that are not what they should be. What is planted is removed or replaced,
//! never written through; what did not verify never reaches a reader.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::support::fake::{Content, FakeServer};
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

/// `cache/` beside the test's files, filled by a `--cache-only` run of `reference`.
fn fill_cache(tmp: &TempDir, reference: &str) {
    pull_plain(tmp.path(), &["--cache", "cache", "--cache-only"], reference)
        .run()
        .assert_success();
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
    fill_cache(&tmp, &reference);
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
fn a_fifo_planted_as_the_cache_lock_is_replaced_not_waited_on() {
    let reg = registry();
    let reference = reg.reference(&format!("{REPO}:v1"));
    let tmp = TempDir::new();
    fill_cache(&tmp, &reference);
    let lock = tmp.join("cache/index.json.lock");
    fs::remove_file(&lock).ok();
    // No reader: an open that waited for one would hang here until the timeout.
    mkfifo(&lock);

    pull_plain(tmp.path(), &["--cache", "cache", "-o", "out"], &reference)
        .timeout(Duration::from_secs(30))
        .run()
        .assert_success();
    assert_files(&tmp.join("out"), &files());
    let kind = fs::symlink_metadata(&lock).unwrap().file_type();
    assert!(kind.is_file(), "the lock is still a FIFO: {kind:?}");
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
    fill_cache(&tmp, &blob);
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
        assert!(out.stderr.contains("; fetching it again"), "{}", out.stderr);
        assert_file(&entry, tool);
    }
    assert_eq!(
        reg.blob_gets(),
        before + 2,
        "the registry was not asked again"
    );
}

// ---- found by the attack review of issue 15's change ------------------------------------

/// A package of `a` (served at once) and `bin/tool` from a scripted registry in memory.
fn nested_package() -> (FakeServer, String, Vec<(&'static str, Vec<u8>)>) {
    let files = vec![
        ("a", b"the first file of the package".to_vec()),
        ("bin/tool", b"#!/bin/sh\necho tool\n".to_vec()),
    ];
    let mut content = Content::new();
    content.add_package(REPO, "v1", &file_refs(&files));
    let server = FakeServer::start(move |req| content.serve(req));
    let reference = server.reference(&format!("{REPO}:v1"));
    (server, reference, files)
}

/// Holds the lock on `name`'s temporary file in `dir`, as another ocidl writing it would:
/// the run under test stops there, after it planned its paths, until the lock is let go.
fn hold_partial(dir: &Path, name: &str, data: &[u8]) -> fs::File {
    let file = fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(dir.join(partial_name(name, &digest_of(data))))
        .unwrap();
    file.lock().unwrap();
    file
}

/// The directory of a nested title is checked when paths are planned, but the file is made
/// (and later renamed) through the path again, following whatever `bin` is by then. Someone
/// who can write into the output directory swaps `bin` for a symlink while the package's
/// first file downloads (here: while ocidl waits on that file's lock, to make it certain),
/// and ocidl, as root, writes `bin/tool` into a directory of their choosing.
#[test]
fn a_directory_swapped_for_a_symlink_after_planning_is_never_written_through() {
    let tmp = TempDir::new();
    let (_server, reference, files) = nested_package();
    let out = tmp.mkdir("out");
    fs::create_dir(out.join("bin")).unwrap();
    let outside = tmp.mkdir("outside");
    let held = hold_partial(&out, "a", &files[0].1);

    let mut running = pull_plain(tmp.path(), &["-o", "out", "--timeout", "10"], &reference)
        .timeout(Duration::from_secs(60))
        .spawn();
    running.wait_for_stderr("waiting for another ocidl", Duration::from_secs(20));
    // Planned; now the directory is not what was planned.
    fs::remove_dir(out.join("bin")).unwrap();
    symlink(&outside, out.join("bin")).unwrap();
    drop(held);
    let _ = running.finish(Duration::from_secs(60));

    let written = crate::support::list_tree(&outside);
    assert!(
        written.is_empty(),
        "ocidl wrote outside the output directory, through the swapped directory: {written:?}"
    );
}

/// A blob fetched by digest lands under the repository's last segment (`tool`), in the
/// working directory or in `-o DIR/`: a name the user did not give. `is_special` follows a
/// symlink planted there, so a symlink to a FIFO, a device or `/dev/...` is opened and
/// written into: a planted `tool -> /dev/sda` would be the disk. The name should be replaced
/// like any other planted name, not followed.
#[test]
fn a_symlink_at_a_blobs_own_name_is_replaced_not_written_through() {
    let reg = registry();
    let tool = &files()[0].1;
    let blob = reg.reference(&format!("{REPO}@{}", digest_of(tool)));
    for flags in [&[][..], &["-o", "dir/"][..]] {
        let tmp = TempDir::new();
        let work = tmp.mkdir("work");
        let at = match flags.is_empty() {
            true => work.join("tool"),
            false => tmp.mkdir("work/dir").join("tool"),
        };
        // Someone else's FIFO (it could as well be a device), and a symlink to it where
        // ocidl will put the blob.
        let fifo = tmp.join("theirs");
        mkfifo(&fifo);
        let reader = FifoReader::start(&fifo);
        symlink(&fifo, &at).unwrap();
        let out = pull_plain(&work, flags, &blob)
            .timeout(Duration::from_secs(30))
            .run();
        let got = reader.finish();
        assert!(
            got.is_empty(),
            "{flags:?}: {} bytes went through the planted symlink into someone else's FIFO \
             (exit {})",
            got.len(),
            out.code
        );
        let meta = fs::symlink_metadata(&at).unwrap();
        assert!(
            meta.is_file(),
            "{flags:?}: {} is not the blob",
            at.display()
        );
        assert_file(&at, tool);
    }
}

/// "Inside the cache every path is looked at with lstat, never stat": the entries are, but
/// the directories they are in are not. Someone who can write into a shared cache replaces
/// `blobs/sha256` (or `blobs`) with a symlink to a directory of their choosing, and ocidl, as
/// root, makes its temporary files there and renames blobs and manifests into it.
#[test]
fn a_cache_directory_swapped_for_a_symlink_is_never_written_through() {
    let reg = registry();
    let reference = reg.reference(&format!("{REPO}:v1"));
    for swapped in ["blobs/sha256", "blobs"] {
        let tmp = TempDir::new();
        fill_cache(&tmp, &reference);
        let outside = tmp.mkdir("outside");
        let dir = tmp.join("cache").join(swapped);
        fs::remove_dir_all(&dir).unwrap();
        symlink(&outside, &dir).unwrap();

        let out = pull_plain(tmp.path(), &["--cache", "cache", "-o", "out"], &reference).run();
        out.assert_success();
        assert_files(&tmp.join("out"), &files());
        let written = crate::support::list_tree(&outside);
        assert!(
            written.is_empty(),
            "{swapped}: ocidl wrote outside the cache, through a symlink: {written:?}"
        );
    }
}

/// The file descriptor `pid` has open on `path`, and its offset, from /proc.
fn offset_on(pid: u32, path: &Path) -> Option<u64> {
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if fs::read_link(fd.path()).ok().as_deref() != Some(path) {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .ok()?;
        let pos = info.lines().find_map(|l| l.strip_prefix("pos:"))?;
        return pos.trim().parse().ok();
    }
    None
}

/// "From a local source: only once the whole file is verified, so a bad entry never reaches
/// a reader." The entry is verified by a first read, then read again and streamed: two reads
/// of a file ocidl does not own. A cache entry may be anyone's regular file (only its bytes
/// are checked, not its owner), so whoever planted one with the genuine bytes rewrites its
/// head once the first read has passed it; the second read streams the new head to the
/// reader (`-o - | sh` runs it), and the mismatch is found only at the end.
#[test]
fn a_cache_entry_rewritten_between_the_check_and_the_copy_never_reaches_a_stream() {
    use std::os::unix::fs::FileExt;
    let reg = Registry::start();
    let mut genuine = b"#!/bin/sh\necho genuine\n".to_vec();
    genuine.extend(random_bytes(24 << 20, 153));
    let digest = reg.pusher().push_blob(REPO, &genuine).digest;
    let blob = reg.reference(&format!("{REPO}@{digest}"));
    let tmp = TempDir::new();
    fill_cache(&tmp, &blob);
    let entry = tmp
        .join("cache/blobs/sha256")
        .join(sha256_hex(&genuine))
        .canonicalize()
        .unwrap();
    // The genuine bytes, in a file of someone else's (the blob is public; they put it there).
    crate::support::chown_nobody(&entry);

    // Their own file, which they keep open for writing.
    let theirs = fs::OpenOptions::new().write(true).open(&entry).unwrap();

    let running = pull_plain(tmp.path(), &["--cache", "cache", "-o", "-"], &blob)
        .timeout(Duration::from_secs(120))
        .spawn();
    let pid = running.pid();
    let attacker = {
        let entry = entry.clone();
        std::thread::spawn(move || {
            // Once the first read is 4 MiB in, its head has been hashed: rewrite it. Polled
            // often, so a fast (release) build's first read is caught too.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let seen = loop {
                if offset_on(pid, &entry).is_some_and(|pos| pos >= 4 << 20) {
                    break true;
                }
                if std::time::Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            if seen {
                theirs.write_all_at(b"#!/bin/sh\necho evil #\n", 0).unwrap();
            }
            seen
        })
    };
    let out = running.finish(Duration::from_secs(120));
    assert!(
        attacker.join().unwrap(),
        "the entry was never read: the test tests nothing"
    );
    let n = out.stdout.len().min(genuine.len());
    assert!(
        out.stdout.len() <= genuine.len() && out.stdout[..] == genuine[..n],
        "the reader got bytes that are not the blob's: {:?} (exit {})",
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(24)]),
        out.code
    );
}

/// "Rename them into place only when every file of the manifest has been delivered and
/// verified": `Stage::commit` renames one file after another and stops at the first that
/// fails, so the files before it are installed, the ones after it stay as temporary files,
/// and the run says it wrote nothing (exit 1, no status line, `--json` lists no file). Here
/// the second target has become a directory since the paths were planned.
#[test]
fn a_package_whose_last_rename_fails_is_not_installed_in_part() {
    let tmp = TempDir::new();
    let (_server, reference, files) = nested_package();
    let out = tmp.mkdir("out");
    let held = hold_partial(&out, "a", &files[0].1);
    let mut running = pull_plain(tmp.path(), &["-o", "out", "--timeout", "10"], &reference)
        .timeout(Duration::from_secs(60))
        .spawn();
    running.wait_for_stderr("waiting for another ocidl", Duration::from_secs(20));
    fs::create_dir_all(out.join("bin/tool/in-the-way")).unwrap();
    drop(held);
    let result = running.finish(Duration::from_secs(60));
    result.assert_code(1);
    let tree = crate::support::list_tree(&out);
    assert!(
        !tree.contains(&"a".to_string()),
        "the pull failed, but the package's first file was installed: {tree:?}"
    );
    assert_no_temp_files(&out);
}
