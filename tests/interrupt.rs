//! Runs cut short by signals and by a second ocidl, and destinations that fail (issue 3).
//!
//! The signal tests run a real ocidl process against a fake registry that trickles the blob
//! out (16 KiB every 50 ms), wait until its `.ocidl-partial` file has bytes, signal it, and
//! check what is left on disk; then run the same command again against an unthrottled
//! server and check that it resumed (`Range`) and that the file is right. `Running` kills
//! the process if a test fails first, so none outlives its test.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::fake::{Content, FakeServer, Response};
use crate::support::fifo::{mkfifo, FifoReader};
use crate::support::run::{ocidl, Output};
use crate::support::script::{cut, scripted, Scripted, BIG, REPO, SMALL};
use crate::support::{
    assert_file, assert_no_temp_files, assert_tree, digest_of, file_len, partial_name,
    random_bytes, read_file, wait_until, write_file, TempDir,
};

const STOPPED: &str = "ocidl: stopped by a signal; what was downloaded is kept in \
                       .*.ocidl-partial files, and the same command resumes it";

/// How long a signalled ocidl may take to exit: "at once", with room for a busy machine.
const EXIT_AFTER_SIGNAL: Duration = Duration::from_secs(2);

const CHUNK: usize = 16 * 1024;
const EVERY: Duration = Duration::from_millis(50);

/// A 2 MiB blob whose first GET trickles out (about 6 s in all, far longer than a test
/// waits); later GETs are answered at once, honouring Range.
fn slow_first_time() -> Scripted {
    scripted(random_bytes(2 << 20, 99), |_, data, attempt| {
        (attempt == 1).then(|| Response::ok(data).throttle(CHUNK, EVERY))
    })
}

/// Waits until `partial` holds some bytes (the download is under way).
fn wait_for_bytes(partial: &Path) {
    assert!(
        wait_until(Duration::from_secs(20), || file_len(partial) > 0),
        "{} never got any bytes",
        partial.display()
    );
}

/// After the interrupted run: the part holds a proper prefix of the blob. Returns its length.
fn kept_prefix(partial: &Path, data: &[u8]) -> usize {
    let kept = read_file(partial);
    assert!(
        !kept.is_empty() && kept.len() < data.len(),
        "{} bytes kept of {}",
        kept.len(),
        data.len()
    );
    assert!(
        kept == data[..kept.len()],
        "the part kept is not the blob's first bytes"
    );
    kept.len()
}

/// The second run asked for exactly the bytes after the kept ones.
fn assert_resumed_from(fake: &Scripted, kept: usize) {
    assert_eq!(
        fake.ranges(),
        [None, Some(format!("bytes={kept}-"))],
        "the second run should resume where the first was stopped"
    );
}

fn package_pull(dir: &Path, fake: &Scripted) -> crate::support::run::Ocidl {
    ocidl(dir).args(["--plain-http", &fake.package()])
}

#[test]
fn sigint_keeps_the_part_and_the_users_file_and_the_next_run_resumes() {
    let tmp = TempDir::new();
    let fake = slow_first_time();
    let older = b"trurl 0.15, the user's copy".to_vec();
    write_file(&tmp.join(BIG), &older);
    let partial_rel = partial_name(BIG, &fake.digest);
    let partial = tmp.join(&partial_rel);

    let mut running = package_pull(tmp.path(), &fake).spawn();
    wait_for_bytes(&partial);
    running.signal("INT");
    let out = running.finish(EXIT_AFTER_SIGNAL);
    out.assert_code(130);
    out.assert_stderr_contains(STOPPED);
    let kept = kept_prefix(&partial, &fake.data);
    assert_file(&tmp.join(BIG), &older);
    assert_tree(tmp.path(), &[BIG, &partial_rel]);

    package_pull(tmp.path(), &fake).run().assert_success();
    assert_resumed_from(&fake, kept);
    assert_file(&tmp.join(BIG), &fake.data);
    assert_file(&tmp.join("small"), SMALL);
    assert_tree(tmp.path(), &[BIG, "small"]);
}

#[test]
fn sigterm_leaves_no_file_under_the_final_name_and_the_next_run_resumes() {
    let tmp = TempDir::new();
    let fake = slow_first_time();
    let fetch = || ocidl(tmp.path()).args(["--plain-http", "-o", "out/tool", &fake.blob()]);
    let partial_rel = format!("out/{}", partial_name("tool", &fake.digest));
    let partial = tmp.join(&partial_rel);

    let mut running = fetch().spawn();
    wait_for_bytes(&partial);
    running.signal("TERM");
    let out = running.finish(EXIT_AFTER_SIGNAL);
    out.assert_code(143);
    out.assert_stderr_contains(STOPPED);
    let kept = kept_prefix(&partial, &fake.data);
    assert_tree(tmp.path(), &["out", &partial_rel]);

    fetch().run().assert_success();
    assert_resumed_from(&fake, kept);
    assert_file(&tmp.join("out/tool"), &fake.data);
    assert_tree(tmp.path(), &["out", "out/tool"]);
}

#[test]
fn sigkill_leaves_only_the_part_and_the_next_run_resumes() {
    let tmp = TempDir::new();
    let fake = slow_first_time();
    let partial_rel = partial_name(BIG, &fake.digest);
    let partial = tmp.join(&partial_rel);

    let mut running = package_pull(tmp.path(), &fake).spawn();
    wait_for_bytes(&partial);
    running.signal("KILL");
    let out = running.finish(EXIT_AFTER_SIGNAL);
    assert_eq!(out.signal, Some(9), "not killed by SIGKILL");
    let kept = kept_prefix(&partial, &fake.data);
    assert_tree(tmp.path(), &[&partial_rel]);

    // The lock died with the process: the next run takes the part over at once.
    let out = package_pull(tmp.path(), &fake).run();
    out.assert_success();
    assert!(
        !out.stderr.contains("waiting for another ocidl"),
        "{}",
        out.stderr
    );
    assert_resumed_from(&fake, kept);
    assert_file(&tmp.join(BIG), &fake.data);
    assert_tree(tmp.path(), &[BIG, "small"]);
}

#[test]
fn signal_during_a_retry_wait_stops_at_once() {
    let tmp = TempDir::new();
    let fake = scripted(random_bytes(1000, 98), |_, _, attempt| {
        (attempt == 1)
            .then(|| Response::error(429, "TOOMANYREQUESTS", "later").header("Retry-After", "30"))
    });
    let mut running = package_pull(tmp.path(), &fake).spawn();
    running.wait_for_stderr("retry 1 of 5 in 30.0 s", Duration::from_secs(10));
    running.signal("INT");
    let out = running.finish(EXIT_AFTER_SIGNAL);
    out.assert_code(130);
    out.assert_stderr_contains(STOPPED);
    assert_eq!(fake.blob_gets().len(), 1);
    assert!(!tmp.join(BIG).exists());

    // Nothing had arrived, so there is nothing to resume: the next run starts at zero.
    package_pull(tmp.path(), &fake).run().assert_success();
    assert_eq!(fake.ranges(), [None, None]);
    assert_file(&tmp.join(BIG), &fake.data);
    assert_tree(tmp.path(), &[BIG, "small"]);
}

#[test]
fn two_runs_on_one_directory_take_turns() {
    let tmp = TempDir::new();
    let release = Arc::new(AtomicBool::new(false));
    let fake = {
        let release = Arc::clone(&release);
        // 2 MiB at 16 KiB every 100 ms: some 13 s unless released, so the first run is
        // still writing when the second arrives, however slow the machine.
        scripted(random_bytes(2 << 20, 97), move |_, data, attempt| {
            let every = Duration::from_millis(100);
            (attempt == 1).then(|| Response::ok(data).throttle_until(CHUNK, every, &release))
        })
    };
    let run = || ocidl(tmp.path()).args(["--plain-http", "-o", "out", &fake.package()]);
    let partial = tmp.join("out").join(partial_name(BIG, &fake.digest));

    let first = run().spawn();
    wait_for_bytes(&partial);
    let mut second = run().spawn();
    second.wait_for_stderr(
        "waiting for another ocidl writing out/big",
        Duration::from_secs(10),
    );
    // The second waits; let the first finish quickly now.
    release.store(true, Ordering::SeqCst);
    let first = first.finish(Duration::from_secs(30));
    let second = second.finish(Duration::from_secs(30));
    first.assert_success();
    second.assert_success();

    assert_file(&tmp.join("out/big"), &fake.data);
    assert_file(&tmp.join("out/small"), SMALL);
    assert_tree(tmp.path(), &["out", "out/big", "out/small"]);
    assert_eq!(fake.blob_gets().len(), 1, "the blob was downloaded twice");
    assert!(
        second
            .stderr
            .lines()
            .any(|l| l.starts_with("out/big  ") && l.ends_with("  up to date")),
        "the second run should find out/big up to date:\n{}",
        second.stderr
    );
}

// ---- destinations that are not regular files, or cannot be written -------------------

#[test]
fn fifo_target_is_written_straight_into_and_stays_a_fifo() {
    let tmp = TempDir::new();
    // The body breaks off once: a FIFO cannot start again, so the rest is appended (206).
    let fake = scripted(random_bytes(300 * 1024, 96), |_, data, attempt| {
        (attempt == 1).then(|| cut(Response::ok(data), 100_000))
    });
    let fifo = tmp.join("fifo");
    mkfifo(&fifo);
    let reader = FifoReader::start(&fifo);
    let out = ocidl(tmp.path())
        .args(["--plain-http", "-o", "fifo", &fake.blob()])
        .run();
    let got = reader.finish();
    out.assert_success();
    assert!(
        got == fake.data,
        "the reader got {} bytes, want the blob's {}",
        got.len(),
        fake.data.len()
    );
    assert_eq!(fake.ranges(), [None, Some("bytes=100000-".to_string())]);
    assert!(
        fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
        "the FIFO was replaced"
    );
    assert_tree(tmp.path(), &["fifo"]);
}

fn error_lines(out: &Output) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("ocidl: "))
        .collect()
}

/// A character device node at `path` (`mknod path c major minor`): the tests' own
/// `/dev/null` and `/dev/full`, so that an ocidl that wrongly renamed a temporary file over
/// its target would replace a node in the test's directory, not the machine's.
fn mknod(path: &Path, major: u32, minor: u32) {
    let status = Command::new("mknod")
        .arg(path)
        .args(["c", &major.to_string(), &minor.to_string()])
        .status()
        .expect("run mknod");
    assert!(
        status.success(),
        "mknod {} (the tests run as root)",
        path.display()
    );
}

fn is_char_device(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

#[test]
fn devices_are_written_straight_into() {
    let tmp = TempDir::new();
    let fake = scripted(random_bytes(300 * 1024, 95), |_, _, _| None);

    // A /dev/null.
    mknod(&tmp.join("null"), 1, 3);
    ocidl(tmp.path())
        .args(["--plain-http", "-o", "null", &fake.blob()])
        .run()
        .assert_success();
    assert!(is_char_device(&tmp.join("null")), "the device was replaced");

    // A /dev/stdout: a link to the process's stdout, which is our pipe.
    std::os::unix::fs::symlink("/proc/self/fd/1", tmp.join("stdout")).unwrap();
    let out = ocidl(tmp.path())
        .args(["--plain-http", "-o", "stdout", &fake.blob()])
        .run();
    out.assert_success();
    assert!(
        out.stdout == fake.data,
        "stdout has {} bytes",
        out.stdout.len()
    );
    assert!(fs::symlink_metadata(tmp.join("stdout"))
        .unwrap()
        .file_type()
        .is_symlink());

    assert_tree(tmp.path(), &["null", "stdout"]);
}

#[test]
fn full_device_is_one_clear_error() {
    let tmp = TempDir::new();
    let fake = scripted(random_bytes(300 * 1024, 94), |_, _, _| None);
    // A /dev/full: every write fails with ENOSPC.
    mknod(&tmp.join("full"), 1, 7);
    let out = ocidl(tmp.path())
        .args(["--plain-http", "-o", "full", &fake.blob()])
        .run();
    out.assert_error(1, "No space left on device");
    assert_eq!(error_lines(&out).len(), 1, "{}", out.stderr);
    assert!(
        !out.stderr.contains("retry "),
        "a full disk is not retried:\n{}",
        out.stderr
    );
    assert_eq!(fake.blob_gets().len(), 1);
    assert!(is_char_device(&tmp.join("full")), "the device was replaced");
    // No temporary file beside it (there is none for a device).
    assert_tree(tmp.path(), &["full"]);
}

#[test]
fn impossible_output_directory_is_one_clear_error() {
    let tmp = TempDir::new();
    let fake = scripted(random_bytes(1000, 93), |_, _, _| None);
    write_file(&tmp.join("plain"), b"a file, not a directory");

    // Blob fetches: /proc takes no new entries (even from root), and a file is no directory.
    for (output, names) in [
        (
            "/proc/ocidl-cannot-be-here/tool",
            "/proc/ocidl-cannot-be-here",
        ),
        ("plain/tool", "plain"),
        ("plain/sub/tool", "plain"),
    ] {
        let out = ocidl(tmp.path())
            .args(["--plain-http", "-o", output, &fake.blob()])
            .run();
        let line = out.assert_error(1, names);
        assert_eq!(error_lines(&out).len(), 1, "{}", out.stderr);
        assert!(!out.stderr.contains("retry "), "{line}");
    }
    // A package into a directory below a file.
    let out = ocidl(tmp.path())
        .args(["--plain-http", "-o", "plain/sub", &fake.package()])
        .run();
    out.assert_error(1, "plain");
    assert_eq!(error_lines(&out).len(), 1, "{}", out.stderr);

    assert_eq!(
        fake.all_blob_gets(),
        0,
        "nothing should be downloaded with nowhere to put it"
    );
    assert!(!Path::new("/proc/ocidl-cannot-be-here").exists());
    assert_file(&tmp.join("plain"), b"a file, not a directory");
    assert_tree(tmp.path(), &["plain"]);
    assert_no_temp_files(tmp.path());
}

// ---- another ocidl holding a temporary file -------------------------------------------

/// A package of `tool` (`data`) and `tool.json`, served at once.
fn two_files(data: &[u8]) -> (FakeServer, String) {
    let mut content = Content::new();
    content.add_package(REPO, "t", &[("tool", data), ("tool.json", b"{}")]);
    let server = FakeServer::start(move |req| content.serve(req));
    let reference = server.reference(&format!("{REPO}:t"));
    (server, reference)
}

/// Locks `name`'s temporary file in `dir`, as another ocidl writing it would.
fn hold_lock(dir: &Path, name: &str, data: &[u8]) -> (fs::File, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let path = dir.join(partial_name(name, &digest_of(data)));
    let file = fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    file.lock().unwrap();
    (file, path)
}

fn blob_gets(server: &FakeServer) -> usize {
    server.requests_to(&format!("/v2/{REPO}/blobs/")).len()
}

#[test]
fn a_lock_held_without_progress_is_given_up() {
    let tmp = TempDir::new();
    let data = b"the tool".to_vec();
    let (server, reference) = two_files(&data);
    let (_held, path) = hold_lock(&tmp.join("out"), "tool", &data);
    let out = ocidl(tmp.path())
        .args(["--plain-http", "-o", "out", "--timeout", "1", &reference])
        .run();
    assert!(
        out.stderr
            .contains("waiting for another ocidl writing out/tool"),
        "{}",
        out.stderr
    );
    let line = out.assert_error(
        1,
        "another ocidl holds this file and made no progress for 1 s",
    );
    assert!(
        line.contains(&path.file_name().unwrap().to_string_lossy().to_string()),
        "{line}"
    );
    assert_eq!(blob_gets(&server), 0);
}

#[test]
fn a_lock_held_by_one_that_makes_progress_is_waited_for() {
    let data = b"the tool".to_vec();
    // The holder writes the locked file itself, or another file of the package (as an ocidl
    // staging the package does: its first file done and locked, its second one growing).
    for grows in ["tool", "tool.json"] {
        let tmp = TempDir::new();
        let (_server, reference) = two_files(&data);
        let (held, path) = hold_lock(&tmp.join("out"), "tool", &data);
        let growing = tmp.join("out").join(partial_name(
            grows,
            &digest_of(match grows {
                "tool" => &data[..],
                _ => b"{}",
            }),
        ));
        // Longer than --timeout, but writing all the while; then done, as an ocidl that
        // renamed its files away would be.
        let holder = thread::spawn(move || {
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&growing)
                .unwrap();
            let until = Instant::now() + Duration::from_millis(2500);
            while Instant::now() < until {
                file.write_all(b".").unwrap();
                thread::sleep(Duration::from_millis(200));
            }
            let _ = fs::remove_file(&growing);
            let _ = fs::remove_file(&path);
            drop(held);
        });
        let out = ocidl(tmp.path())
            .args(["--plain-http", "-o", "out", "--timeout", "1", &reference])
            .run();
        holder.join().unwrap();
        assert!(
            out.stderr.contains("waiting for another ocidl"),
            "{grows}: {}",
            out.stderr
        );
        out.assert_success();
        assert_file(&tmp.join("out/tool"), &data);
    }
}

/// Waiting on a lock lasts as long as "something it is writing moves": any of the package's
/// temporary names appearing, going, growing or shrinking. Neither who holds the lock nor who
/// moves those names is asked. A temporary file is made with the umask's mode (0644), so any
/// local user can open the one an interrupted run kept, read-only, and lock it; one who can
/// also write into the output directory (the threat the issue names) makes and removes
/// another temporary name of the package now and then, and the next run waits for ever:
/// `--timeout 1` bounds nothing.
#[test]
fn a_stranger_holding_a_lock_and_touching_names_cannot_keep_ocidl_waiting_for_ever() {
    let tmp = TempDir::new();
    let fake = slow_first_time();
    let run = || {
        ocidl(tmp.path()).args([
            "--plain-http",
            "-o",
            "out",
            "--timeout",
            "1",
            &fake.package(),
        ])
    };
    let out = tmp.join("out");
    let kept = out.join(partial_name(BIG, &fake.digest));
    // A run stopped halfway keeps its part, as the README promises.
    let mut first = run().spawn();
    wait_for_bytes(&kept);
    first.signal("INT");
    first.finish(EXIT_AFTER_SIGNAL).assert_code(130);

    // Another user locks it, through a read-only descriptor, when they can open it.
    let mut stranger = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["flock", "--close", "-x"])
        .arg(&kept)
        .args(["sleep", "60"])
        .spawn()
        .expect("run setpriv flock");
    let probe = fs::File::open(&kept).unwrap();
    wait_until(Duration::from_secs(5), || match probe.try_lock() {
        Ok(()) => probe.unlock().is_err(),
        Err(e) => matches!(e, fs::TryLockError::WouldBlock),
    });
    drop(probe);
    // And touches another temporary name of the package now and then.
    let stop = Arc::new(AtomicBool::new(false));
    let toucher = {
        let stop = Arc::clone(&stop);
        let other = out.join(partial_name("small", &digest_of(SMALL)));
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let _ = fs::write(&other, b"");
                thread::sleep(Duration::from_millis(300));
                let _ = fs::remove_file(&other);
                thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut second = run().spawn();
    // --timeout 1: a bounded wait is over long before this.
    let ended = second.wait_timeout(Duration::from_secs(20)).is_some();
    stop.store(true, Ordering::SeqCst);
    toucher.join().unwrap();
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(
        ended,
        "ocidl still waits after 20 s with --timeout 1, on a lock a stranger holds; \
         stderr:\n{}",
        second.stderr_so_far()
    );
}

/// "Nothing waits without a bound": a FIFO target is opened for writing with a plain
/// `open`, which waits for a reader for ever, before any request. `-o FIFO` with no one
/// reading hangs, `--timeout` or not; so does an installer's `ocidl REF@sha256:...` when
/// someone planted a FIFO at the name the blob takes (the repository's last segment, in the
/// working directory), since a special file there is written into, not replaced.
#[test]
fn a_fifo_target_without_a_reader_is_not_waited_on_for_ever() {
    let tmp = TempDir::new();
    let fake = scripted(random_bytes(1000, 92), |_, _, _| None);
    mkfifo(&tmp.join("fifo"));
    let mut running = ocidl(tmp.path())
        .args(["--plain-http", "--timeout", "1", "-o", "fifo", &fake.blob()])
        .spawn();
    let ended = running.wait_timeout(Duration::from_secs(20)).is_some();
    assert!(
        ended,
        "ocidl still waits for a reader of its FIFO target after 20 s with --timeout 1; \
         stderr:\n{}",
        running.stderr_so_far()
    );
}
