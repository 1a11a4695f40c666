//! Titles a registry can send that name no file ocidl may write: spellings of one path
//! (`a/b`, `a//b`, `a/./b`), a title that is another's directory, an existing directory or a
//! path through an existing file, a trailing '/', another layer's temporary file, names
//! longer than the file system takes, and control or bidirectional characters. Each is
//! refused before the first blob request, with one error line, and nothing is written;
//! names up to 255 bytes are written (issue 8).

use std::os::unix::fs::symlink;
use std::sync::Arc;

use crate::support::fake::{Content, FakeServer, Request};
use crate::support::push::{oci_manifest_json, Layer, OCI_MANIFEST};
use crate::support::run::{pull_plain, Output};
use crate::support::{
    assert_file, assert_no_temp_files, assert_tree, digest_of, list_tree, sha256_hex, write_file,
    TempDir,
};

const REPO: &str = "pkg/tool";

/// A layer per title, each with its own bytes.
fn layers(titles: &[&str]) -> Vec<Layer> {
    titles
        .iter()
        .enumerate()
        .map(|(i, title)| Layer::file(title, format!("content {i} of {title}").as_bytes()))
        .collect()
}

/// A fake registry holding `layers` as `REPO:t`.
fn serve(layers: &[Layer]) -> FakeServer {
    let mut content = Content::new();
    content.add_blob(b"{}");
    for layer in layers {
        content.add_blob(&layer.data);
    }
    content.add_manifest(REPO, "t", OCI_MANIFEST, &oci_manifest_json(layers, &[]));
    let content = Arc::new(content);
    FakeServer::start(move |req: &Request| content.serve(req))
}

fn reference(server: &FakeServer) -> String {
    server.reference(&format!("{REPO}:t"))
}

/// `ocidl -o out REPO:t` in `tmp`.
fn pull(tmp: &TempDir, server: &FakeServer) -> Output {
    pull_plain(tmp.path(), &["-o", "out"], &reference(server)).run()
}

/// Every blob request the server saw.
fn blob_requests(server: &FakeServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.path().contains("/blobs/"))
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

/// The run failed with exactly one stderr line, `ocidl: REF: unsafe title 'TITLE': REASON;
/// nothing was written`, asked for no blob, and wrote nothing to stdout.
fn assert_refused(out: &Output, server: &FakeServer, title: &str, reason: &str) {
    out.assert_code(1).assert_stdout_empty();
    let want = format!(
        "ocidl: {}: unsafe title '{title}': {reason}; nothing was written\n",
        reference(server)
    );
    assert_eq!(out.stderr, want, "{}", out.command_line);
    assert_eq!(blob_requests(server), Vec::<String>::new(), "blobs fetched");
}

#[test]
fn spellings_of_one_path_are_refused() {
    for (first, second) in [
        ("a/b", "a//b"),
        ("a/b", "a/./b"),
        ("a//b", "a/./b"),
        ("bin/tool", "bin///./tool"),
        ("x", "x/."),
    ] {
        let tmp = TempDir::new();
        let server = serve(&layers(&[first, second]));
        let out = pull(&tmp, &server);
        assert_refused(
            &out,
            &server,
            second,
            &format!("names the same file as '{first}'"),
        );
        assert_tree(tmp.path(), &[]);
    }
}

#[test]
fn a_title_naming_another_layers_temporary_file_is_refused() {
    let tool = layers(&["tool"]);
    let digest = digest_of(&tool[0].data);
    let temporary = format!(".tool.{}.ocidl-partial", &digest["sha256:".len()..][..12]);
    for titles in [
        vec!["tool".to_string(), temporary.clone()],
        vec![temporary.clone(), "tool".to_string()],
        vec!["bin/tool".to_string(), format!("bin/{temporary}")],
        // Any name ending so, even one that matches no layer.
        vec!["tool".to_string(), "notes.ocidl-partial".to_string()],
    ] {
        let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
        // The layer titled like `tool` carries tool's bytes, so the digests line up.
        let mut layers = layers(&titles);
        for layer in &mut layers {
            if layer.annotations[0].1.ends_with("tool") {
                layer.data = tool[0].data.clone();
            }
        }
        let refused = titles
            .iter()
            .find(|t| t.ends_with(".ocidl-partial"))
            .unwrap();
        let tmp = TempDir::new();
        let server = serve(&layers);
        let out = pull(&tmp, &server);
        assert_refused(
            &out,
            &server,
            refused,
            "ends in .ocidl-partial, the suffix of ocidl's temporary files",
        );
        assert_tree(tmp.path(), &[]);
    }
}

#[test]
fn a_title_that_is_another_titles_directory_is_refused() {
    for (titles, refused, needed) in [
        (&["x", "x/y"][..], "x/y", "x"),
        (&["x/y", "x"], "x/y", "x"),
        (&["a/b", "a//b/c/d"], "a//b/c/d", "a/b"),
        (&["tool", "lib/z", "lib/z/x/y"], "lib/z/x/y", "lib/z"),
    ] {
        let tmp = TempDir::new();
        let server = serve(&layers(titles));
        let out = pull(&tmp, &server);
        assert_refused(
            &out,
            &server,
            refused,
            &format!("needs '{needed}', a file of the package, to be a directory"),
        );
        assert_tree(tmp.path(), &[]);
    }
}

#[test]
fn a_title_ending_in_a_slash_is_refused() {
    for title in ["dir/", "a/b/", "c//"] {
        let tmp = TempDir::new();
        let server = serve(&layers(&["tool", title]));
        let out = pull(&tmp, &server);
        assert_refused(
            &out,
            &server,
            title,
            "ends in '/', so it names a directory, not a file",
        );
        assert_tree(tmp.path(), &[]);
    }
}

#[test]
fn a_title_naming_an_existing_directory_is_refused() {
    for (title, shown) in [
        ("bin", "out/bin"),
        ("bin/", ""),
        ("share/man", "out/share/man"),
        // A symlink to a directory inside the output directory is a directory too.
        ("lib", "out/lib"),
    ] {
        let tmp = TempDir::new();
        write_file(&tmp.join("out/bin/keep"), b"mine");
        tmp.mkdir("out/share/man");
        symlink("bin", tmp.join("out/lib")).unwrap();
        let before = list_tree(tmp.path());
        let server = serve(&layers(&["tool", title]));
        let out = pull(&tmp, &server);
        let reason = match shown {
            "" => "ends in '/', so it names a directory, not a file".to_string(),
            shown => format!("{shown} is a directory"),
        };
        assert_refused(&out, &server, title, &reason);
        assert_eq!(list_tree(tmp.path()), before, "{title}");
        assert_file(&tmp.join("out/bin/keep"), b"mine");
    }
}

#[test]
fn a_title_running_through_an_existing_file_is_refused() {
    for (title, file) in [
        ("plain/x", "out/plain"),
        ("plain/deeper/x", "out/plain"),
        ("sub/plain/x", "out/sub/plain"),
    ] {
        let tmp = TempDir::new();
        write_file(&tmp.join("out/plain"), b"a file");
        write_file(&tmp.join("out/sub/plain"), b"another");
        let before = list_tree(tmp.path());
        let server = serve(&layers(&["tool", title]));
        let out = pull(&tmp, &server);
        assert_refused(
            &out,
            &server,
            title,
            &format!("the file {file} is in the way"),
        );
        assert_eq!(list_tree(tmp.path()), before, "{title}");
        assert_file(&tmp.join("out/plain"), b"a file");
    }
}

/// `n` bytes of name: ASCII, or two-byte characters with one ASCII byte to make up an odd
/// length (the temporary name is cut at a character boundary).
fn name(bytes: usize, wide: bool) -> String {
    match wide {
        false => "n".repeat(bytes),
        true => format!("{}{}", "é".repeat(bytes / 2), "x".repeat(bytes % 2)),
    }
}

#[test]
fn names_up_to_255_bytes_are_written() {
    let long = [
        name(200, false),
        name(227, false),
        name(228, false),
        name(254, false),
        name(255, false),
        name(255, true),
        name(254, true),
        format!("d/{}", name(255, false)),
    ];
    let titles: Vec<&str> = long.iter().map(String::as_str).collect();
    let layers = layers(&titles);
    let tmp = TempDir::new();
    let server = serve(&layers);
    let out = pull(&tmp, &server);
    out.assert_success().assert_stdout_empty();
    let mut tree = vec!["out".to_string(), "out/d".to_string()];
    for layer in &layers {
        let title = &layer.annotations[0].1;
        assert_file(&tmp.join(&format!("out/{title}")), &layer.data);
        tree.push(format!("out/{title}"));
        // One status line per file, with its path.
        let status = format!("out/{title}  {} B  sha256:", layer.data.len());
        assert!(
            out.stderr.lines().any(|l| l.starts_with(&status)),
            "no status line {status:?}:\n{}",
            out.stderr
        );
    }
    let tree: Vec<&str> = tree.iter().map(String::as_str).collect();
    assert_tree(tmp.path(), &tree);
    assert_no_temp_files(tmp.path());
}

#[test]
fn a_long_name_resumes_from_its_cut_temporary_file() {
    // What an interrupted run left for a 255-byte name: `.NAME.<12 hex>.ocidl-partial` with
    // NAME cut so the whole is 255 bytes. The next run continues from it.
    let title = name(255, false);
    let layer = Layer::file(&title, &crate::support::random_bytes(4096, 5));
    let hex = sha256_hex(&layer.data);
    let partial = format!(".{}.{}.ocidl-partial", &title[..227], &hex[..12]);
    assert_eq!(partial.len(), 255);
    let tmp = TempDir::new();
    write_file(&tmp.join(&format!("out/{partial}")), &layer.data[..1000]);
    let server = serve(std::slice::from_ref(&layer));
    let out = pull(&tmp, &server);
    out.assert_success();
    assert_file(&tmp.join(&format!("out/{title}")), &layer.data);
    assert_tree(tmp.path(), &["out", &format!("out/{title}")]);
    let ranges: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path().contains("/blobs/"))
        .map(|r| r.header("range").unwrap_or("-").to_string())
        .collect();
    assert_eq!(ranges, ["bytes=1000-"], "the kept bytes were not resumed");
}

#[test]
fn names_longer_than_255_bytes_are_refused() {
    for title in [
        name(256, false),
        name(256, true),
        name(300, false),
        format!("d/{}", name(256, false)),
        format!("{}/x", name(256, false)),
    ] {
        let tmp = TempDir::new();
        let server = serve(&layers(&["tool", &title]));
        let out = pull(&tmp, &server);
        assert_refused(&out, &server, &title, "has a name longer than 255 bytes");
        assert_tree(tmp.path(), &[]);
    }
}

#[test]
fn a_path_past_path_max_is_refused_before_any_blob() {
    let deep = format!("{}/", "d".repeat(250)).repeat(16);
    for title in [
        // The path itself is over the limit, though each name is under 255 bytes.
        format!("{deep}{}/f", "e".repeat(250)),
        // The path fits; its temporary file's name, beside it, would not.
        format!("{deep}{}/f", "e".repeat(68)),
    ] {
        let tmp = TempDir::new();
        let server = serve(&layers(&["tool", &title]));
        let out = pull(&tmp, &server);
        let name = title.rsplit('/').next().unwrap();
        let longest = "out/".len() + title.len() - name.len()
            + name.len().max(".f.123456789abc.ocidl-partial".len());
        assert!(longest > 4095, "{longest}");
        let reason = format!("makes a path of {longest} bytes, past the system's limit of 4095");
        assert_refused(&out, &server, &title, &reason);
        assert_tree(tmp.path(), &[]);
    }
}

/// Any character a terminal could act on, independently of ocidl's own list.
fn is_control(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{9}' | '\u{b}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// Characters that clear the screen, retitle the window, overwrite or add lines, ring the
/// bell, or reverse text, as a registry could put them in a title.
pub const HOSTILE: &[(&str, char)] = &[
    ("clear\x1b[2Jscreen", '\u{1b}'),
    ("\x1b]0;owned\x07title", '\u{1b}'),
    ("over\rwrite", '\r'),
    ("two\nlines", '\n'),
    ("tab\tbed", '\t'),
    ("bell\x07", '\u{7}'),
    ("nul\0byte", '\0'),
    ("del\x7f", '\u{7f}'),
    ("csi\u{9b}2J", '\u{9b}'),
    ("next\u{85}line", '\u{85}'),
    ("evil\u{202e}fdp.exe", '\u{202e}'),
    ("iso\u{2066}late", '\u{2066}'),
    ("mark\u{200f}rtl", '\u{200f}'),
    ("alm\u{61c}x", '\u{61c}'),
    ("line\u{2028}sep", '\u{2028}'),
    ("para\u{2029}sep", '\u{2029}'),
];

#[test]
fn titles_with_control_or_bidirectional_characters_are_refused() {
    for (title, c) in HOSTILE {
        for titles in [
            vec!["tool", title],
            vec![title, "tool"],
            vec!["tool", &format!("bin/{title}")],
        ] {
            let tmp = TempDir::new();
            let server = serve(&layers(&titles));
            let out = pull(&tmp, &server);
            out.assert_code(1).assert_stdout_empty();
            let reason = format!(
                "contains the control or bidirectional character U+{:04X}; nothing was written",
                *c as u32
            );
            let line = out.assert_error(1, "unsafe title");
            assert!(line.ends_with(&reason), "{title:?}: {line}");
            assert_eq!(out.stderr.lines().count(), 1, "{title:?}: {:?}", out.stderr);
            let raw: Vec<char> = out.stderr.chars().filter(|&c| is_control(c)).collect();
            assert!(
                raw.is_empty(),
                "{title:?}: raw {raw:?} on stderr: {:?}",
                out.stderr
            );
            assert_eq!(blob_requests(&server), Vec::<String>::new(), "{title:?}");
            assert_tree(tmp.path(), &[]);
        }
    }
}

#[test]
fn a_control_character_title_is_refused_on_stdout_too() {
    // `-o -` names no path, but the title is still the registry's to shape, and is refused
    // as it is for a file.
    for (title, c) in HOSTILE {
        let tmp = TempDir::new();
        let server = serve(&layers(&["tool", title]));
        let out = pull_plain(
            tmp.path(),
            &["-o", "-", "--exclude", "tool"],
            &reference(&server),
        )
        .run();
        let line = out.assert_error(1, "unsafe title");
        assert!(
            line.contains(&format!("U+{:04X}", *c as u32)),
            "{title:?}: {line}"
        );
        out.assert_stdout_empty();
        assert_eq!(blob_requests(&server), Vec::<String>::new(), "{title:?}");
        assert_tree(tmp.path(), &[]);
    }
}

#[test]
fn titles_that_meet_through_a_symlinked_directory_are_refused() {
    // `lib` is a symlink to `bin` (inside the output directory, so allowed): `lib/x` is
    // `bin/x`, and writing both would leave one file reported twice.
    for (titles, refused, reason) in [
        (
            &["bin/x", "lib/x"][..],
            "lib/x",
            "names the same file as 'bin/x'",
        ),
        (
            &["lib/x", "bin/x"],
            "bin/x",
            "names the same file as 'lib/x'",
        ),
        (&["x", "here/x"], "here/x", "names the same file as 'x'"),
        (
            &["bin/new/x", "lib//new/x"],
            "lib//new/x",
            "names the same file as 'bin/new/x'",
        ),
        (
            &["bin/x", "lib/x/y"],
            "lib/x/y",
            "needs 'bin/x', a file of the package, to be a directory",
        ),
    ] {
        let tmp = TempDir::new();
        tmp.mkdir("out/bin");
        symlink("bin", tmp.join("out/lib")).unwrap();
        symlink(".", tmp.join("out/here")).unwrap();
        let before = list_tree(tmp.path());
        let server = serve(&layers(titles));
        let out = pull(&tmp, &server);
        assert_refused(&out, &server, refused, reason);
        assert_eq!(list_tree(tmp.path()), before, "{titles:?}");
    }
}

#[test]
fn a_symlinked_directory_alone_is_written_through() {
    // Only one title reaches each file: the symlink inside the output directory is used.
    let tmp = TempDir::new();
    tmp.mkdir("out/bin");
    symlink("bin", tmp.join("out/lib")).unwrap();
    let layers = layers(&["lib/x", "bin/y"]);
    let server = serve(&layers);
    pull(&tmp, &server).assert_success();
    assert_file(&tmp.join("out/bin/x"), &layers[0].data);
    assert_file(&tmp.join("out/bin/y"), &layers[1].data);
    assert_tree(
        tmp.path(),
        &["out", "out/bin", "out/bin/x", "out/bin/y", "out/lib"],
    );
}
