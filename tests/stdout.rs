//! Standard output that fails: a write to `/dev/full` in any mode (`--list`, `--tags`,
//! `--json`, `--help`, `--version`, `-o -`) is an error, exit 1, with one line saying so; a
//! reader of a listing that stops early (`| head -1`) is its own business and ocidl stays
//! quiet; a reader of a blob on `-o -` that stops early did not get the blob, which is a
//! failure (issue 8).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use serde_json::json;

use crate::support::fake::{Content, FakeServer, Request, Response};
use crate::support::push::{empty_config, OCI_MANIFEST, TITLE};
use crate::support::run::SCRUBBED_ENV;
use crate::support::{digest_of, list_tree, random_bytes, wait_until, TempDir};

const REPO: &str = "pkg/tool";
const FULL: &str = "standard output: No space left on device (os error 28)";

/// `ocidl ARGS` in `cwd` with the harness's clean environment and stderr captured; stdout
/// is the caller's to set.
fn command(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocidl"));
    command.args(args).current_dir(cwd);
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    let no_home = cwd.join(".no-such-home");
    command
        .env("HOME", &no_home)
        .env("DOCKER_CONFIG", no_home.join(".docker"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` and returns its exit code and stderr (checked for panics).
fn finish(mut child: Child, shown: &str) -> (i32, String) {
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    eprintln!("$ ocidl {shown}\n[{status}]\n{stderr}");
    assert!(!stderr.contains("panicked"), "{shown} panicked: {stderr}");
    (status.code().unwrap_or(-1), stderr)
}

/// A registry holding the package `REPO:t` (files `tool`, 1 MiB, and `tool.json`), the
/// 1 MiB blob by digest, and a tag list of `tags`.
fn registry(tags: usize) -> (FakeServer, Vec<u8>) {
    let tool = random_bytes(1 << 20, 61);
    let mut content = Content::new();
    content.add_package(REPO, "t", &[("tool", &tool), ("tool.json", b"{}")]);
    let content = Arc::new(content);
    let tags: Vec<String> = (0..tags).map(|i| format!("tag-{i:05}")).collect();
    let server = FakeServer::start(move |req: &Request| {
        if req.path() == format!("/v2/{REPO}/tags/list") {
            return Response::json(&json!({ "name": REPO, "tags": tags }));
        }
        content.serve(req)
    });
    (server, tool)
}

#[test]
fn a_failed_write_to_stdout_is_an_error_in_every_mode() {
    let (server, tool) = registry(3);
    let package = server.reference(&format!("{REPO}:t"));
    let repo = server.reference(REPO);
    let blob = server.reference(&format!("{REPO}@{}", digest_of(&tool)));
    for (args, line) in [
        (vec!["--list", &package], format!("ocidl: {FULL}")),
        (vec!["--tags", &repo], format!("ocidl: {FULL}")),
        (vec!["--list", "--json", &package], format!("ocidl: {FULL}")),
        (vec!["--tags", "--json", &repo], format!("ocidl: {FULL}")),
        (
            vec!["--json", "-o", "out", &package],
            format!("ocidl: {FULL}"),
        ),
        (vec!["--help"], format!("ocidl: {FULL}")),
        (vec!["-h"], format!("ocidl: {FULL}")),
        (vec!["--version"], format!("ocidl: {FULL}")),
        (vec!["-V"], format!("ocidl: {FULL}")),
        (vec!["-q", "--version", &repo], format!("ocidl: {FULL}")),
        (vec!["-o", "-", &blob], format!("ocidl: {blob}: {FULL}")),
        (
            vec!["-o", "-", "--include", "tool", &package],
            format!("ocidl: {package}: tool: {FULL}"),
        ),
    ] {
        let tmp = TempDir::new();
        let mut all = vec!["--plain-http"];
        all.extend_from_slice(&args);
        let full = File::options().write(true).open("/dev/full").unwrap();
        let child = command(tmp.path(), &all).stdout(full).spawn().unwrap();
        let (code, stderr) = finish(child, &all.join(" "));
        assert_eq!(code, 1, "{args:?}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("ocidl: "))
            .collect();
        assert_eq!(errors, [line.as_str()], "{args:?}");
        // Only the pull writes files, and it wrote them all before the document failed.
        let tree = list_tree(tmp.path());
        match args[0] {
            "--json" => assert_eq!(tree, ["out", "out/tool", "out/tool.json"], "{args:?}"),
            _ => assert_eq!(tree, Vec::<String>::new(), "{args:?}"),
        }
    }
}

/// Runs `ocidl ARGS` with stdout on a pipe that is closed once `take` has read what it wants.
fn closed_early(
    tmp: &TempDir,
    args: &[&str],
    take: impl FnOnce(&mut BufReader<std::process::ChildStdout>) -> Vec<u8>,
) -> (i32, String, Vec<u8>) {
    let mut child = command(tmp.path(), args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let got = take(&mut reader);
    drop(reader);
    let (code, stderr) = finish(child, &args.join(" "));
    (code, stderr, got)
}

#[test]
fn a_blob_whose_reader_stops_early_is_a_failure() {
    let (server, tool) = registry(0);
    let package = server.reference(&format!("{REPO}:t"));
    let blob = server.reference(&format!("{REPO}@{}", digest_of(&tool)));
    for (args, prefix) in [
        (
            vec!["--plain-http", "-o", "-", &blob],
            format!("ocidl: {blob}: "),
        ),
        (
            vec!["--plain-http", "-o", "-", "--include", "tool", &package],
            format!("ocidl: {package}: tool: "),
        ),
    ] {
        let tmp = TempDir::new();
        // `| head -c 10`
        let (code, stderr, got) = closed_early(&tmp, &args, |reader| {
            let mut ten = vec![0; 10];
            reader.read_exact(&mut ten).unwrap();
            ten
        });
        assert_eq!(got, tool[..10], "{args:?}");
        assert_eq!(code, 1, "{args:?}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("ocidl: "))
            .unwrap_or_else(|| panic!("{args:?}: no error line: {stderr}"));
        let rest = line
            .strip_prefix(&*prefix)
            .and_then(|l| l.strip_prefix("standard output was closed after "))
            .and_then(|l| l.strip_suffix(" bytes: the blob was not delivered whole"))
            .unwrap_or_else(|| panic!("{args:?}: {line}"));
        let written: usize = rest.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            (10..tool.len()).contains(&written),
            "{args:?}: {written} bytes"
        );
        assert_eq!(list_tree(tmp.path()), Vec::<String>::new());
    }
}

#[test]
fn a_closed_reader_is_one_error_from_every_source() {
    let (server, tool) = registry(0);
    let blob = server.reference(&format!("{REPO}@{}", digest_of(&tool)));
    let tmp = TempDir::new();
    let (code, stderr) = finish(
        command(
            tmp.path(),
            &["--plain-http", "--cache", "c", "--cache-only", &blob],
        )
        .spawn()
        .unwrap(),
        "--cache-only",
    );
    assert_eq!(code, 0, "{stderr}");
    let layout = format!("oci:c@{}", digest_of(&tool));
    let asked = server.requests().len();
    for args in [
        vec!["--plain-http", "--cache", "c", "-o", "-", &blob],
        vec!["-o", "-", &layout],
    ] {
        let (code, stderr, got) = closed_early(&tmp, &args, |reader| {
            let mut ten = vec![0; 10];
            reader.read_exact(&mut ten).unwrap();
            ten
        });
        assert_eq!(got, tool[..10], "{args:?}");
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        let reference = args.last().unwrap();
        let line = stderr.lines().next().unwrap();
        let prefix = format!("ocidl: {reference}: standard output was closed after ");
        assert!(line.starts_with(&prefix), "{args:?}: {line}");
        assert!(
            line.ends_with(" bytes: the blob was not delivered whole"),
            "{line}"
        );
    }
    assert_eq!(server.requests().len(), asked, "the cache did not serve");
}

#[test]
fn a_fifo_whose_reader_stops_early_is_named_in_the_error() {
    let (server, tool) = registry(0);
    let blob = server.reference(&format!("{REPO}@{}", digest_of(&tool)));
    let tmp = TempDir::new();
    let fifo = tmp.path().join("fifo");
    crate::support::fifo::mkfifo(&fifo);
    // `cat fifo | head -c 10`: opens, reads ten bytes, goes away.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut ten = vec![0; 10];
            File::open(&fifo).unwrap().read_exact(&mut ten).unwrap();
            ten
        })
    };
    let (code, stderr) = finish(
        command(tmp.path(), &["--plain-http", "-o", "fifo", &blob])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        "-o fifo",
    );
    assert_eq!(reader.join().unwrap(), tool[..10]);
    assert_eq!(code, 1, "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("ocidl: ")).unwrap();
    assert!(
        line.starts_with(&format!("ocidl: {blob}: fifo was closed after ")),
        "{line}"
    );
}

#[test]
fn a_long_tag_list_is_printed_page_by_page() {
    // 60 pages of 38,000 tags: 2.28 million, once past a memory cap. Each page is served only
    // once the one before it came out on stdout, so nothing waits for the whole list.
    const PAGES: usize = 60;
    const PER_PAGE: usize = 38_000;
    let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server = {
        let read = Arc::clone(&read);
        FakeServer::start(move |req: &Request| {
            let n: usize = req.query("n").and_then(|n| n.parse().ok()).unwrap_or(0);
            let printed = wait_until(std::time::Duration::from_secs(30), || {
                read.load(std::sync::atomic::Ordering::SeqCst) >= n * PER_PAGE
            });
            if !printed {
                return Response::error(500, "SLOW", "the last page was not printed");
            }
            let tags: Vec<String> = (0..PER_PAGE).map(|i| format!("{n}-{i}")).collect();
            let mut page = Response::json(&json!({ "name": REPO, "tags": tags }));
            if n + 1 < PAGES {
                let next = format!("</v2/{REPO}/tags/list?n={}>; rel=\"next\"", n + 1);
                page = page.header("Link", &next);
            }
            page
        })
    };
    let tmp = TempDir::new();
    let mut child = command(
        tmp.path(),
        &["--plain-http", "--tags", &server.reference(REPO)],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let counter = Arc::clone(&read);
    let reader = std::thread::spawn(move || {
        let mut last = String::new();
        for line in BufReader::new(stdout).lines() {
            last = line.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        last
    });
    let (code, stderr) = finish(child, "--tags");
    let last = reader.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        read.load(std::sync::atomic::Ordering::SeqCst),
        PAGES * PER_PAGE
    );
    assert_eq!(last, format!("{}-{}", PAGES - 1, PER_PAGE - 1));
}

/// A registry with a package of `n` files (listed, never fetched), more than a pipe holds.
fn big_listing(n: usize) -> FakeServer {
    let layers: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "mediaType": "application/octet-stream",
                "digest": digest_of(format!("file {i}").as_bytes()),
                "size": i,
                "annotations": { TITLE: format!("file-{i:05}") },
            })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": empty_config().to_json(),
        "layers": layers,
    });
    let mut content = Content::new();
    content.add_manifest(REPO, "t", OCI_MANIFEST, &manifest);
    let content = Arc::new(content);
    let tags: Vec<String> = (0..n * 10).map(|i| format!("tag-{i:06}")).collect();
    FakeServer::start(move |req: &Request| {
        if req.path() == format!("/v2/{REPO}/tags/list") {
            return Response::json(&json!({ "name": REPO, "tags": tags }));
        }
        content.serve(req)
    })
}

#[test]
fn a_listing_whose_reader_stops_early_is_quiet() {
    // 3000 lines of about 110 bytes, 30000 tags: far more than a pipe holds, so ocidl is
    // still writing when the reader goes.
    let server = big_listing(3000);
    let package = server.reference(&format!("{REPO}:t"));
    let repo = server.reference(REPO);
    for (args, first) in [
        (
            vec!["--list", &package],
            format!(
                "file-00000\t0\t{}\tapplication/octet-stream\n",
                digest_of(b"file 0")
            ),
        ),
        (vec!["--tags", &repo], "tag-000000\n".to_string()),
        (
            vec!["--list", "--json", &package],
            "{\"references\":[{".to_string(),
        ),
        (
            vec!["--tags", "--json", &repo],
            "{\"references\":[{".to_string(),
        ),
    ] {
        let tmp = TempDir::new();
        let mut all = vec!["--plain-http"];
        all.extend_from_slice(&args);
        // `| head -1`, or the first few bytes of the one JSON line.
        let want = first.len();
        let (code, stderr, got) = closed_early(&tmp, &all, |reader| {
            let mut got = Vec::new();
            if first.ends_with('\n') {
                reader.read_until(b'\n', &mut got).unwrap();
            } else {
                got.resize(want, 0);
                reader.read_exact(&mut got).unwrap();
            }
            got
        });
        assert_eq!(String::from_utf8_lossy(&got), first, "{args:?}");
        // Quiet but for the note `--list` gives of the manifest a tag is.
        let noise: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains(" is manifest sha256:"))
            .collect();
        assert_eq!((code, noise), (0, Vec::<&str>::new()), "{args:?}");
    }
}
