//! What a person at a terminal sees: a progress line per file on stderr (name, bytes, rate,
//! and time left when the size is known), redrawn in place with `\r` and `ESC[K` at most ten
//! times a second, then the file's status line, and a summary at the end. None of it on a
//! pipe, none of it with `-q`, never any of it on stdout.
//!
//! ocidl runs in a real pseudo-terminal (`support::pty`), and the blob it downloads trickles
//! in from the fake server, so the line is redrawn several times.

use std::sync::Arc;
use std::time::Duration;

use crate::support::fake::{Content, FakeServer, Request, Response};
use crate::support::pty::{ocidl_in_terminal, ShellOutput, Streams};
use crate::support::run::ocidl;
use crate::support::script::{cut, range_response};
use crate::support::{assert_files, digest_of, file_refs, random_bytes, TempDir};

const REPO: &str = "pkg/tool";
/// Sent 2 KiB every 10 ms: about half a second, so several redraws.
const SLOW_SIZE: usize = 96 * 1024;

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("tool", random_bytes(SLOW_SIZE, 81)),
        ("tool.json", br#"{"pkg":"tool"}"#.to_vec()),
    ]
}

/// A registry holding `REPO:t` (files `tool` and `tool.json`); GETs of `tool`'s blob go to
/// `slow(request, data, attempt)`, attempts counted from 1.
fn registry_with(
    slow: impl Fn(&Request, &[u8], usize) -> Response + Send + Sync + 'static,
) -> FakeServer {
    let files = files();
    let mut content = Content::new();
    content.add_package(REPO, "t", &file_refs(&files));
    let content = Arc::new(content);
    let data = files[0].1.clone();
    let digest = digest_of(&data);
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    FakeServer::start(move |req: &Request| {
        if req.method == "GET" && req.path().ends_with(&digest) {
            let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            return slow(req, &data, attempt);
        }
        content.serve(req)
    })
}

fn throttled(response: Response) -> Response {
    response.throttle(2048, Duration::from_millis(10))
}

fn slow_registry() -> FakeServer {
    registry_with(|req, data, _| throttled(range_response(req, data)))
}

/// The package, `REPO:t`.
fn package(server: &FakeServer) -> String {
    server.reference(&format!("{REPO}:t"))
}

/// What was drawn after each `\r ESC[K`, up to the next `\r` or `\n`.
fn drawn(terminal: &str) -> Vec<&str> {
    terminal
        .split("\r\x1b[K")
        .skip(1)
        .map(|s| s.split(['\r', '\n']).next().unwrap())
        .collect()
}

/// The progress lines drawn for `name` (status lines start with the output directory).
fn progress_lines<'a>(terminal: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}  ");
    drawn(terminal)
        .into_iter()
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

/// A progress line stays on its row: nothing after it ends the line before the next redraw
/// or the clearing that precedes the status line.
fn assert_redrawn_in_place(terminal: &str, name: &str) {
    let prefix = format!("{name}  ");
    for segment in terminal.split("\r\x1b[K").skip(1) {
        if segment.starts_with(&prefix) {
            assert!(
                !segment.contains('\n'),
                "a progress line ends with a newline instead of being redrawn: {segment:?}"
            );
        }
    }
}

/// The last line of `terminal`, which must be the summary: returns its N, X and Z.
fn summary(terminal: &str) -> (u64, String, String) {
    let last = terminal.trim_end_matches('\n').rsplit('\n').next().unwrap();
    parse_summary(last).unwrap_or_else(|| panic!("last line is not a summary: {last:?}"))
}

/// `N file(s), X in Y s (Z/s)`: returns N, X and Z.
fn parse_summary(line: &str) -> Option<(u64, String, String)> {
    let (count, rest) = line.split_once(' ')?;
    let rest = rest
        .strip_prefix("files, ")
        .or_else(|| rest.strip_prefix("file, "))?;
    let (size, rest) = rest.split_once(" in ")?;
    let (seconds, rest) = rest.split_once(" s (")?;
    seconds.parse::<f64>().ok()?;
    let rate = rest.strip_suffix("/s)")?;
    Some((count.parse().ok()?, size.to_string(), rate.to_string()))
}

/// The status line of `path` is on a line of its own: cleared first if a progress line was
/// on screen, ending with a newline.
fn assert_status_line(terminal: &str, line_start: &str) {
    let at = terminal
        .find(line_start)
        .unwrap_or_else(|| panic!("no status line {line_start:?} in {terminal:?}"));
    let before = &terminal[..at];
    assert!(
        before.is_empty() || before.ends_with('\n') || before.ends_with("\r\x1b[K"),
        "status line {line_start:?} does not start a clean line: {:?}",
        &before[before.len().saturating_sub(80)..]
    );
    assert!(terminal[at..].contains('\n'), "status line not ended");
}

fn assert_nothing_drawn(text: &str, what: &str) {
    for bad in ["\r", "\x1b", "/s", " left", " files, ", " file, "] {
        assert!(!text.contains(bad), "{what} has {bad:?}: {text:?}");
    }
}

fn assert_clean_stdout(out: &ShellOutput) {
    assert!(
        out.stdout.is_empty(),
        "stdout got {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn terminal_shows_progress_redrawn_in_place_and_a_summary() {
    let server = slow_registry();
    let tmp = TempDir::new();
    let out = ocidl_in_terminal(tmp.path())
        .args(["--plain-http", "-o", "out", &package(&server)])
        .run();
    out.assert_success();
    assert_clean_stdout(&out);
    assert_files(&tmp.join("out"), &files());
    let terminal = out.terminal_text();

    // The line is redrawn in place, several times, with size, rate and time left.
    let progress = progress_lines(&terminal, "tool");
    let full: Vec<&&str> = progress
        .iter()
        .filter(|l| l.contains(" / 96.0 KiB") && l.contains("/s") && l.ends_with(" left"))
        .collect();
    assert!(
        full.len() >= 2,
        "fewer than two redraws with bytes, rate and time left: {progress:?}"
    );
    assert_redrawn_in_place(&terminal, "tool");
    // At most ten a second (with one for the start and some slack for the clock).
    let limit = (out.elapsed.as_secs_f64() * 10.0).ceil() as usize + 3;
    assert!(
        progress.len() <= limit,
        "{} draws in {:?}: more than ten a second: {progress:?}",
        progress.len(),
        out.elapsed
    );
    // Bytes only grow.
    let percents: Vec<u32> = progress
        .iter()
        .filter_map(|l| l.split_once(" (")?.1.split_once("%)")?.0.parse().ok())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");

    // Each file's status line replaces its progress line.
    assert_status_line(&terminal, "out/tool  96.0 KiB  sha256:");
    assert_status_line(&terminal, "out/tool.json  14 B  sha256:");

    // The summary is the last line, once.
    assert!(terminal.ends_with('\n'), "{terminal:?}");
    let (count, size, rate) = summary(&terminal);
    assert_eq!((count, size.as_str()), (2, "96.0 KiB"), "{terminal:?}");
    assert!(rate.ends_with("iB") || rate.ends_with(" B"), "{terminal:?}");
    assert_eq!(terminal.matches(" files, ").count(), 1, "{terminal:?}");
}

#[test]
fn pipe_gets_only_the_status_lines() {
    let server = slow_registry();
    let tmp = TempDir::new();
    let out = ocidl(tmp.path())
        .args(["--plain-http", "-o", "out", &package(&server)])
        .run();
    out.assert_success().assert_stdout_empty();
    assert_files(&tmp.join("out"), &files());
    assert_nothing_drawn(&out.stderr, "stderr on a pipe");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let starts = [
        "out/tool  96.0 KiB  sha256:",
        "out/tool.json  14 B  sha256:",
    ];
    for (line, start) in lines.iter().zip(starts) {
        assert!(line.starts_with(start), "{lines:?}");
    }
}

#[test]
fn stdout_on_a_terminal_does_not_make_stderr_draw() {
    // It is stderr that must be a terminal: with stdout on one and stderr in a file, the
    // file gets plain status lines and the terminal nothing.
    let server = slow_registry();
    let tmp = TempDir::new();
    let out = ocidl_in_terminal(tmp.path())
        .streams(Streams::StdoutOnTerminal)
        .args(["--plain-http", "-o", "out", &package(&server)])
        .run();
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    assert!(
        out.terminal.is_empty(),
        "terminal (stdout) got {:?}",
        out.terminal_text()
    );
    let stderr = out.stderr_text();
    assert_nothing_drawn(&stderr, "stderr in a file");
    assert!(
        stderr.starts_with("out/tool  96.0 KiB  sha256:"),
        "{stderr:?}"
    );
}

#[test]
fn quiet_on_a_terminal_shows_nothing() {
    let server = slow_registry();
    let tmp = TempDir::new();
    let out = ocidl_in_terminal(tmp.path())
        .args(["-q", "--plain-http", "-o", "out", &package(&server)])
        .run();
    out.assert_success();
    assert_clean_stdout(&out);
    assert_files(&tmp.join("out"), &files());
    assert!(
        out.terminal.is_empty(),
        "-q on a terminal printed {:?}",
        out.terminal_text()
    );
}

#[test]
fn blob_to_stdout_keeps_the_display_on_the_terminal() {
    let server = slow_registry();
    let data = files()[0].1.clone();
    let tmp = TempDir::new();
    let out = ocidl_in_terminal(tmp.path())
        .args([
            "--plain-http",
            "-o",
            "-",
            &server.reference(&format!("{REPO}@{}", digest_of(&data))),
        ])
        .run();
    out.assert_success();
    assert!(
        out.stdout == data,
        "stdout is not exactly the blob: {} bytes",
        out.stdout.len()
    );
    let terminal = out.terminal_text();
    // A blob is named after the repository's last segment.
    let progress = progress_lines(&terminal, "tool");
    assert!(
        progress.iter().filter(|l| l.contains("/s")).count() >= 2,
        "{progress:?}"
    );
    assert_redrawn_in_place(&terminal, "tool");
    assert_status_line(&terminal, "(stdout)  96.0 KiB  sha256:");
    let (count, size, _) = summary(&terminal);
    assert_eq!((count, size.as_str()), (1, "96.0 KiB"), "{terminal:?}");
}

#[test]
fn error_after_progress_starts_on_a_clean_line() {
    // Half the blob, then the connection closes; no retries: the error follows a progress
    // line that was on screen.
    let server =
        registry_with(|req, data, _| throttled(cut(range_response(req, data), data.len() / 2)));
    let tmp = TempDir::new();
    let out = ocidl_in_terminal(tmp.path())
        .args([
            "--plain-http",
            "--retries",
            "0",
            "-o",
            "out",
            &package(&server),
        ])
        .run();
    assert_eq!(out.code, 1, "{:?}", out.terminal_text());
    let terminal = out.terminal_text();
    assert!(progress_lines(&terminal, "tool").len() >= 2, "{terminal:?}");
    assert_status_line(&terminal, "ocidl: ");
    assert!(!tmp.join("out/tool").exists());
}

#[test]
fn retry_note_starts_on_a_clean_line() {
    // The first attempt breaks off half-way; the note about the retry must not be glued to
    // the progress line that is on screen, and the download then completes.
    let server = registry_with(|req, data, attempt| {
        let response = throttled(range_response(req, data));
        if attempt == 1 {
            cut(response, data.len() / 2)
        } else {
            response
        }
    });
    let tmp = TempDir::new();
    let out = ocidl_in_terminal(tmp.path())
        .args(["--plain-http", "-o", "out", &package(&server)])
        .run();
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    let terminal = out.terminal_text();
    assert_status_line(&terminal, "retry 1 of 5 in ");
    assert_status_line(&terminal, "out/tool  96.0 KiB  sha256:");
}
