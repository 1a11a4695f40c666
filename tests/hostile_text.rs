//! Text a registry shapes on its way to a terminal: tags, titles and media types in `--tags`
//! and `--list` (one record a line, columns kept), `--json` (valid JSON, the dangerous
//! characters as `\uXXXX`), and what a server put into an error line. Escape sequences,
//! carriage returns, tabs, newlines and bidirectional overrides are made visible (`\x1b`,
//! `\r`, `\t`, `\n`, `\u{202e}`, `\\`), never passed through (issue 8).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::fake::{Content, FakeServer, Request, Response};
use crate::support::push::{empty_config, OCI_MANIFEST, TITLE};
use crate::support::run::{pull_plain, Output};
use crate::support::{digest_of, TempDir};

const REPO: &str = "pkg/tool";

/// Any character a terminal could act on, besides the line ends that separate records;
/// written out here rather than taken from ocidl.
fn is_control(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{9}' | '\u{b}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

fn assert_no_raw_controls(text: &str, what: &str) {
    let raw: Vec<char> = text.chars().filter(|&c| is_control(c)).collect();
    assert!(raw.is_empty(), "{what}: raw {raw:?} in {text:?}");
}

/// What a registry sent, and what ocidl must show for it.
const TEXTS: &[(&str, &str)] = &[
    ("v1", "v1"),
    ("tab\tbed", "tab\\tbed"),
    ("two\nlines", "two\\nlines"),
    ("over\rwrite", "over\\rwrite"),
    ("clear\x1b[2Jscreen", "clear\\x1b[2Jscreen"),
    ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
    ("bell\x07", "bell\\x07"),
    ("del\x7f", "del\\x7f"),
    ("csi\u{9b}2J", "csi\\x9b2J"),
    ("evil\u{202e}fdp.exe", "evil\\u{202e}fdp.exe"),
    ("iso\u{2066}x\u{2069}", "iso\\u{2066}x\\u{2069}"),
    ("line\u{2028}sep", "line\\u{2028}sep"),
    ("back\\slash", "back\\\\slash"),
    ("ünïcode ✓", "ünïcode ✓"),
];

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// The whole of stdout as one JSON document, with no raw control character in its bytes.
fn json_doc(out: &Output) -> Value {
    let text = stdout(out);
    assert_no_raw_controls(&text, "--json");
    assert_eq!(text.matches('\n').count(), 1, "one line of JSON: {text:?}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// A registry answering the tag list of `REPO` with `tags`.
fn tag_server(tags: Vec<String>) -> FakeServer {
    FakeServer::start(move |req: &Request| {
        if req.path() == format!("/v2/{REPO}/tags/list") {
            return Response::json(&json!({ "name": REPO, "tags": tags }));
        }
        Response::not_found()
    })
}

fn raw_texts() -> Vec<String> {
    TEXTS.iter().map(|(raw, _)| raw.to_string()).collect()
}

#[test]
fn tags_are_escaped_one_a_line() {
    let server = tag_server(raw_texts());
    let tmp = TempDir::new();
    let out = pull_plain(tmp.path(), &["--tags"], &server.reference(REPO)).run();
    out.assert_success().assert_stderr_empty();
    let want: String = TEXTS
        .iter()
        .map(|(_, shown)| format!("{shown}\n"))
        .collect();
    assert_eq!(stdout(&out), want);
    assert_no_raw_controls(&stdout(&out), "--tags");
}

#[test]
fn tags_as_json_are_valid_json_with_the_characters_escaped() {
    let server = tag_server(raw_texts());
    let tmp = TempDir::new();
    let out = pull_plain(tmp.path(), &["--tags", "--json"], &server.reference(REPO)).run();
    out.assert_success().assert_stderr_empty();
    let doc = json_doc(&out);
    assert_eq!(doc["references"][0]["tags"], json!(raw_texts()));
    // Escaped as JSON does it, which a parser reads back as the same strings.
    let text = stdout(&out);
    for escape in [
        "\\u001b", "\\u202e", "\\u007f", "\\u009b", "\\u2028", "\\t", "\\n", "\\r",
    ] {
        assert!(text.contains(escape), "no {escape} in {text}");
    }
}

/// Layers titled and typed by the registry: each text of `TEXTS` once as a title (with a
/// plain media type) and once as a media type (with a plain title).
fn list_server() -> FakeServer {
    let mut layers = Vec::new();
    for (i, (raw, _)) in TEXTS.iter().enumerate() {
        layers.push(json!({
            "mediaType": "application/octet-stream",
            "digest": digest_of(format!("title {i}").as_bytes()),
            "size": i,
            "annotations": { TITLE: raw },
        }));
        layers.push(json!({
            "mediaType": raw,
            "digest": digest_of(format!("type {i}").as_bytes()),
            "size": 1000 + i,
            "annotations": { TITLE: format!("file{i}") },
        }));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": empty_config().to_json(),
        "layers": layers,
    });
    let mut content = Content::new();
    content.add_manifest(REPO, "t", OCI_MANIFEST, &manifest);
    let content = Arc::new(content);
    FakeServer::start(move |req: &Request| content.serve(req))
}

#[test]
fn list_stays_one_record_per_line_with_its_columns() {
    let server = list_server();
    let tmp = TempDir::new();
    let reference = server.reference(&format!("{REPO}:t"));
    let out = pull_plain(tmp.path(), &["--list"], &reference).run();
    out.assert_success();
    // Only the note saying which manifest the tag is, and how to pin it.
    let notes: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains(" is manifest sha256:"), "{notes:?}");
    let mut want = String::new();
    for (i, (raw, shown)) in TEXTS.iter().enumerate() {
        let title_digest = digest_of(format!("title {i}").as_bytes());
        let type_digest = digest_of(format!("type {i}").as_bytes());
        want += &format!("{shown}\t{i}\t{title_digest}\tapplication/octet-stream\n");
        want += &format!("file{i}\t{}\t{type_digest}\t{shown}\n", 1000 + i);
        let _ = raw;
    }
    let got = stdout(&out);
    assert_eq!(got, want);
    // The tabs are the columns; nothing else is raw.
    assert_no_raw_controls(&got.replace('\t', " "), "--list");
    assert_eq!(got.lines().count(), 2 * TEXTS.len());
    assert!(got.lines().all(|l| l.split('\t').count() == 4), "{got}");
    // Nothing was downloaded.
    assert!(server
        .requests()
        .iter()
        .all(|r| !r.path().contains("/blobs/")));
    assert_eq!(crate::support::list_tree(tmp.path()), Vec::<String>::new());
}

#[test]
fn list_as_json_is_valid_json_with_the_characters_escaped() {
    let server = list_server();
    let tmp = TempDir::new();
    let reference = server.reference(&format!("{REPO}:t"));
    let out = pull_plain(tmp.path(), &["--list", "--json"], &reference).run();
    out.assert_success().assert_stderr_empty();
    let doc = json_doc(&out);
    let files = doc["references"][0]["files"].as_array().unwrap();
    assert_eq!(files.len(), 2 * TEXTS.len());
    for (i, (raw, _)) in TEXTS.iter().enumerate() {
        assert_eq!(files[2 * i]["title"], json!(raw));
        assert_eq!(files[2 * i + 1]["mediaType"], json!(raw));
    }
}

/// A registry whose manifest for `REPO:t` declares the media type `media_type`.
fn media_type_server(media_type: &str) -> FakeServer {
    let manifest = json!({ "schemaVersion": 2, "mediaType": media_type, "layers": [] });
    let mut content = Content::new();
    content.add_manifest(REPO, "t", "application/json", &manifest);
    let content = Arc::new(content);
    FakeServer::start(move |req: &Request| content.serve(req))
}

#[test]
fn a_media_type_in_an_error_line_is_escaped() {
    for (raw, shown) in &TEXTS[1..] {
        let server = media_type_server(raw);
        let tmp = TempDir::new();
        let reference = server.reference(&format!("{REPO}:t"));
        let out = pull_plain(tmp.path(), &[], &reference).run();
        out.assert_code(1);
        assert_eq!(
            out.stderr,
            format!("ocidl: {reference}: unusable manifest: unsupported media type {shown}\n")
        );
        // In --json the error is the server's text, valid JSON, with nothing raw in it.
        let out = pull_plain(tmp.path(), &["--json"], &reference).run();
        out.assert_code(1);
        assert_no_raw_controls(&out.stderr, "stderr");
        let doc = json_doc(&out);
        assert_eq!(
            doc["references"][0]["error"],
            json!(format!("unusable manifest: unsupported media type {raw}"))
        );
    }
}

#[test]
fn a_token_realm_in_an_error_line_is_escaped() {
    // A header value may carry a tab, and a backslash that must not pass for an escape.
    for (realm, shown) in [
        ("ftp://a\tb", "ftp://a\\tb"),
        ("gopher://x\ty\t", "gopher://x\\ty\\t"),
        // A quoted-pair: the realm is `c:\temp`.
        ("c:\\\\temp", "c:\\\\temp"),
    ] {
        let realm = realm.to_string();
        let server = FakeServer::start(move |_req: &Request| {
            Response::error(401, "UNAUTHORIZED", "authentication required").header(
                "WWW-Authenticate",
                &format!("Bearer realm=\"{realm}\",service=\"s\",scope=\"x\""),
            )
        });
        let tmp = TempDir::new();
        let reference = server.reference(&format!("{REPO}:t"));
        let out = pull_plain(tmp.path(), &[], &reference).run();
        out.assert_code(1);
        assert_no_raw_controls(&out.stderr, "stderr");
        assert_eq!(
            out.stderr,
            format!(
                "ocidl: {reference}: token service: the token realm {shown} is not an http(s) URL\n"
            )
        );
    }
}

#[test]
fn a_redirect_location_in_an_error_line_is_escaped() {
    for location in [
        "gopher://evil\u{202e}txt/",
        "http://127.0.0.1:1/\u{2066}x",
        "ftp://a\tb/",
    ] {
        let location = location.to_string();
        let server = FakeServer::start(move |_req: &Request| Response::redirect(302, &location));
        let tmp = TempDir::new();
        let reference = server.reference(&format!("{REPO}:t"));
        let out = pull_plain(tmp.path(), &["--retries", "0"], &reference).run();
        out.assert_code(1);
        assert_no_raw_controls(&out.stderr, "stderr");
        assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
    }
}
