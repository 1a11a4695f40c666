//! Choosing and inspecting: `--include`/`--exclude` pick a package's files by title, `-o -`
//! takes exactly one of them, `--list` and `--tags` print and download nothing, `--json`
//! records what was done, and programs (ELF, `#!`) are made executable.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::fake::{Content, FakeServer, Request, Response};
use crate::support::pty::ocidl_in_shell;
use crate::support::push::{oci_manifest_json, pkgforge_annotations, Layer, OCI_MANIFEST};
use crate::support::registry::Registry;
use crate::support::run::{ocidl, Output};
use crate::support::{assert_file, assert_tree, digest_of, random_bytes, TempDir};

const REPO: &str = "pkgforge/trurl";
const SIG_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The package's layers, in manifest order: five titled files (one nested, one with its own
/// media type) and an untitled layer, which is not a file.
fn layers() -> Vec<Layer> {
    vec![
        Layer::file("trurl", &random_bytes(40 * 1024, 91)),
        Layer::file("trurl.json", br#"{"pkg":"trurl"}"#),
        Layer::file("CHECKSUM", b"sums\n"),
        Layer::file("trurl.sig", &random_bytes(300, 92)).with_media_type(SIG_TYPE),
        Layer::file("share/trurl.1", b".TH TRURL 1\n"),
        Layer::untitled(b"not a file"),
    ]
}

fn data(title: &str) -> Vec<u8> {
    layers()
        .into_iter()
        .find(|l| l.annotations.iter().any(|(_, v)| v == title))
        .unwrap_or_else(|| panic!("no layer {title}"))
        .data
}

/// `layers` as `repo:tag`, in `content`.
fn add_layers(content: &mut Content, repo: &str, tag: &str, layers: &[Layer]) {
    content.add_blob(b"{}");
    for layer in layers {
        content.add_blob(&layer.data);
    }
    let manifest = oci_manifest_json(layers, &pkgforge_annotations(repo, tag));
    content.add_manifest(repo, tag, OCI_MANIFEST, &manifest);
}

/// The fake registry holding the package as `REPO:v1` and `REPO:latest`.
fn registry() -> FakeServer {
    let mut content = Content::new();
    add_layers(&mut content, REPO, "v1", &layers());
    add_layers(&mut content, REPO, "latest", &layers());
    let content = Arc::new(content);
    FakeServer::start(move |req: &Request| content.serve(req))
}

fn package(server: &FakeServer) -> String {
    server.reference(&format!("{REPO}:v1"))
}

/// A pull of the package into `output` (`-` for stdout), narrowed by `flags`.
fn pull(tmp: &TempDir, server: &FakeServer, output: &str, flags: &[&str]) -> Output {
    ocidl(tmp.path())
        .args(["--plain-http", "-o", output])
        .args(flags)
        .arg(package(server))
        .run()
}

/// The digests of the blobs GET so far.
fn blob_gets(server: &FakeServer) -> BTreeSet<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .filter_map(|r| r.path().rsplit_once("/blobs/").map(|(_, d)| d.to_string()))
        .collect()
}

fn digests(titles: &[&str]) -> BTreeSet<String> {
    titles.iter().map(|t| digest_of(&data(t))).collect()
}

/// The whole of stdout as one JSON document.
fn json_doc(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

// ---- --include / --exclude ----

#[test]
fn include_and_exclude_choose_files_by_title() {
    for (flags, chosen) in [
        (
            &["--include", "trurl*"][..],
            &["trurl", "trurl.json", "trurl.sig"][..],
        ),
        (
            &["--include", "trurl*", "--exclude", "*.sig"],
            &["trurl", "trurl.json"],
        ),
        (
            &["--include", "trurl", "--include", "CHECKSUM"],
            &["trurl", "CHECKSUM"],
        ),
        (
            &["--exclude", "*.json", "--exclude", "*.sig"],
            &["trurl", "CHECKSUM", "share/trurl.1"],
        ),
        (&["--include", "trurl.[js]*"], &["trurl.json", "trurl.sig"]),
        (&["--include", "CHECKSU?"], &["CHECKSUM"]),
        (&["--include", "[!t]*"], &["CHECKSUM", "share/trurl.1"]),
        // `*` crosses `/`: titles are names, not paths to walk.
        (&["--include", "*.1"], &["share/trurl.1"]),
    ] {
        let server = registry();
        let tmp = TempDir::new();
        let out = pull(&tmp, &server, "out", flags);
        out.assert_success().assert_stdout_empty();
        let mut tree = vec!["out".to_string()];
        for title in chosen {
            assert_file(&tmp.join(&format!("out/{title}")), &data(title));
            tree.push(format!("out/{title}"));
            if title.contains('/') {
                tree.push("out/share".to_string());
            }
        }
        let tree: Vec<&str> = tree.iter().map(String::as_str).collect();
        assert_tree(tmp.path(), &tree);
        assert_eq!(
            blob_gets(&server),
            digests(chosen),
            "{flags:?}: blobs fetched"
        );
    }
}

#[test]
fn no_file_chosen_is_an_error_that_downloads_nothing() {
    for flags in [
        &["--include", "nothing*"][..],
        // --exclude wins over --include.
        &["--include", "trurl", "--exclude", "trurl"],
        &["--exclude", "*"],
    ] {
        let server = registry();
        let tmp = TempDir::new();
        let out = pull(&tmp, &server, "out", flags);
        let line = out.assert_error(1, "no file matches");
        // It says what there is to choose from.
        assert!(
            line.contains("trurl.json") && line.contains("CHECKSUM"),
            "{line}"
        );
        out.assert_stdout_empty();
        assert_tree(tmp.path(), &[]);
        assert_eq!(blob_gets(&server), BTreeSet::new(), "{flags:?}");
    }
}

#[test]
fn stdout_takes_one_chosen_file() {
    let server = registry();
    let tmp = TempDir::new();

    // A package to stdout must be narrowed: a usage error, before anything is sent.
    let out = pull(&tmp, &server, "-", &[]);
    out.assert_code(2);
    out.assert_stdout_empty();
    assert_eq!(server.connections(), 0, "{:?}", server.requests());

    // Narrowed to one file, by --include or by --exclude: exactly its bytes.
    for (flags, title) in [
        (&["--include", "trurl"][..], "trurl"),
        (&["--include", "*.sig"], "trurl.sig"),
        (
            &["--exclude", "trurl*", "--exclude", "CHECKSUM"],
            "share/trurl.1",
        ),
    ] {
        let server = registry();
        let out = pull(&tmp, &server, "-", flags);
        out.assert_success();
        assert!(
            out.stdout == data(title),
            "{flags:?}: stdout is not {title}"
        );
        assert_eq!(blob_gets(&server), digests(&[title]), "{flags:?}");
    }
    assert_tree(tmp.path(), &[]);

    // Narrowed to several: refused before any download.
    let server = registry();
    let out = pull(&tmp, &server, "-", &["--include", "trurl*"]);
    out.assert_error(1, "writes one file");
    out.assert_stdout_empty();
    assert_eq!(blob_gets(&server), BTreeSet::new());
    assert_tree(tmp.path(), &[]);
}

// ---- --list ----

#[test]
fn list_prints_the_chosen_files_and_downloads_nothing() {
    let server = registry();
    let tmp = TempDir::new();
    let line = |title: &str, media_type: &str| {
        let d = data(title);
        format!("{title}\t{}\t{}\t{media_type}", d.len(), digest_of(&d))
    };
    let octet = "application/octet-stream";

    let out = ocidl(tmp.path())
        .args(["--plain-http", "--list", "-o", "out", &package(&server)])
        .run();
    out.assert_success();
    let expected = [
        line("trurl", octet),
        line("trurl.json", octet),
        line("CHECKSUM", octet),
        line("trurl.sig", SIG_TYPE),
        line("share/trurl.1", octet),
    ]
    .join("\n")
        + "\n";
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    let out = ocidl(tmp.path())
        .args([
            "--plain-http",
            "--list",
            "--include",
            "trurl*",
            "--exclude",
            "*.json",
            &package(&server),
        ])
        .run();
    out.assert_success();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}\n{}\n",
            line("trurl", octet),
            line("trurl.sig", SIG_TYPE)
        )
    );

    assert_eq!(blob_gets(&server), BTreeSet::new(), "--list downloaded");
    assert_tree(tmp.path(), &[]);
}

#[test]
fn list_and_tags_usage_errors_send_nothing() {
    let server = registry();
    let tmp = TempDir::new();
    let blob = server.reference(&format!("{REPO}@{}", digest_of(&data("trurl"))));
    for args in [
        vec!["--list", blob.as_str()],
        vec!["--list", "--tags", &package(&server)],
        vec!["--tags", "--list", &package(&server)],
        vec!["--json", "-o", "-", "--include", "trurl", &package(&server)],
    ] {
        let out = ocidl(tmp.path()).arg("--plain-http").args(&args).run();
        out.assert_code(2);
        out.assert_stdout_empty();
        assert!(
            out.stderr.starts_with("ocidl: "),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert_eq!(server.connections(), 0, "{:?}", server.requests());
    assert_tree(tmp.path(), &[]);
}

// ---- --tags ----

/// A registry whose tag list comes in three pages: a relative `Link`, then an absolute one,
/// then none.
fn paginated_tags() -> FakeServer {
    FakeServer::start(|req: &Request| {
        let path = format!("/v2/{REPO}/tags/list");
        if req.path() != path {
            return Response::not_found();
        }
        let page = |tags: &[&str]| Response::json(&json!({ "name": REPO, "tags": tags }));
        let host = req.header("host").unwrap_or_default().to_string();
        match req.query("last").as_deref() {
            None => page(&["1.0", "1.1"])
                .header("Link", &format!("<{path}?n=2&last=1.1>; rel=\"next\"")),
            Some("1.1") => page(&["2.0", "latest"]).header(
                "Link",
                &format!("<http://{host}{path}?n=2&last=latest>; rel=\"next\""),
            ),
            Some("latest") => page(&["v3"]),
            Some(_) => Response::error(400, "PAGINATION", "unexpected page"),
        }
    })
}

#[test]
fn tags_follow_every_page() {
    let server = paginated_tags();
    let tmp = TempDir::new();
    let out = ocidl(tmp.path())
        .args(["--plain-http", "--tags", &server.reference(REPO)])
        .run();
    out.assert_success();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1.0\n1.1\n2.0\nlatest\nv3\n"
    );
    let asked: Vec<Option<String>> = server
        .requests_to(&format!("/v2/{REPO}/tags/list"))
        .iter()
        .map(|r| r.query("last"))
        .collect();
    assert_eq!(asked, [None, Some("1.1".into()), Some("latest".into())]);
    assert_tree(tmp.path(), &[]);

    // The same as JSON: tags, no files.
    let out = ocidl(tmp.path())
        .args([
            "--plain-http",
            "--tags",
            "--json",
            &server.reference(&format!("{REPO}:ignored")),
        ])
        .run();
    out.assert_success();
    let doc = json_doc(&out);
    let entry = &doc["references"][0];
    assert_eq!(
        entry["tags"],
        json!(["1.0", "1.1", "2.0", "latest", "v3"]),
        "{doc}"
    );
    assert!(entry.get("files").is_none(), "{doc}");
    assert_eq!(
        entry["name"],
        json!(server.reference(&format!("{REPO}:ignored")))
    );
}

#[test]
fn tags_of_the_real_registry() {
    let reg = Registry::start();
    let pusher = reg.pusher();
    let tags = ["0.16-x86_64-linux", "latest", "v1", "v2", "v10"];
    for tag in tags {
        pusher.push_package(REPO, tag, &[("trurl", tag.as_bytes())]);
    }
    let tmp = TempDir::new();
    let out = ocidl(tmp.path())
        .args(["--plain-http", "--tags", &reg.reference(REPO)])
        .run();
    out.assert_success();
    let got: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got, tags.iter().map(|t| t.to_string()).collect());
    assert_eq!(
        out.stdout.iter().filter(|&&b| b == b'\n').count(),
        tags.len()
    );
    assert_tree(tmp.path(), &[]);
}

// ---- --json ----

#[test]
fn json_records_each_file_written_or_up_to_date() {
    let server = registry();
    let tmp = TempDir::new();
    // As typed: no tag; the name says `latest`.
    let typed = server.reference(REPO);
    for status in ["written", "up to date"] {
        let out = ocidl(tmp.path())
            .args([
                "--plain-http",
                "--json",
                "-o",
                "out",
                "--exclude",
                "share/*",
                &typed,
            ])
            .run();
        out.assert_success();
        let doc = json_doc(&out);
        let refs = doc["references"].as_array().unwrap();
        assert_eq!(refs.len(), 1, "{doc}");
        assert_eq!(refs[0]["reference"], json!(typed));
        assert_eq!(refs[0]["name"], json!(format!("{typed}:latest")));
        assert!(refs[0].get("error").is_none(), "{doc}");
        let files = refs[0]["files"].as_array().unwrap();
        let titles: Vec<&str> = files.iter().map(|f| f["title"].as_str().unwrap()).collect();
        assert_eq!(
            titles,
            ["trurl", "trurl.json", "CHECKSUM", "trurl.sig"],
            "{doc}"
        );
        for file in files {
            let title = file["title"].as_str().unwrap();
            let d = data(title);
            assert_eq!(file["size"], json!(d.len()), "{file}");
            assert_eq!(file["digest"], json!(digest_of(&d)), "{file}");
            assert_eq!(file["path"], json!(format!("out/{title}")), "{file}");
            assert_eq!(file["status"], json!(status), "{file}");
            let media_type = if title == "trurl.sig" {
                SIG_TYPE
            } else {
                "application/octet-stream"
            };
            assert_eq!(file["mediaType"], json!(media_type), "{file}");
        }
    }
}

#[test]
fn json_has_an_entry_per_reference_and_says_which_failed() {
    let server = registry();
    let tmp = TempDir::new();
    let blob_digest = digest_of(&data("trurl.json"));
    let references = [
        server.reference(&format!("{REPO}:v1")),
        server.reference(&format!("{REPO}:no-such-tag")),
        server.reference(&format!("{REPO}@{blob_digest}")),
    ];
    let out = ocidl(tmp.path())
        .args(["--plain-http", "--json", "--include", "CHECKSUM"])
        .args(&references)
        .run();
    out.assert_code(1);
    let doc = json_doc(&out);
    let refs = doc["references"].as_array().unwrap();
    let typed: Vec<&str> = refs
        .iter()
        .map(|r| r["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        typed,
        references.iter().map(String::as_str).collect::<Vec<_>>(),
        "{doc}"
    );

    assert!(refs[0].get("error").is_none(), "{doc}");
    assert_eq!(refs[0]["files"][0]["title"], json!("CHECKSUM"), "{doc}");
    assert_eq!(refs[0]["files"][0]["status"], json!("written"), "{doc}");

    let error = refs[1]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {doc}"));
    assert!(error.contains("not found"), "{error}");
    assert_eq!(refs[1]["files"], json!([]), "{doc}");

    assert!(refs[2].get("error").is_none(), "{doc}");
    let blob = &refs[2]["files"][0];
    assert_eq!(blob["digest"], json!(blob_digest), "{doc}");
    assert_eq!(blob["size"], json!(data("trurl.json").len()), "{doc}");
    assert_eq!(blob["path"], json!("trurl"), "{doc}");
    assert_eq!(blob["status"], json!("written"), "{doc}");
    assert_file(&tmp.join("trurl"), &data("trurl.json"));
    assert_file(&tmp.join("CHECKSUM"), &data("CHECKSUM"));
}

#[test]
fn json_list_names_files_without_paths() {
    let server = registry();
    let tmp = TempDir::new();
    let out = ocidl(tmp.path())
        .args([
            "--plain-http",
            "--json",
            "--list",
            "--include",
            "trurl*",
            &package(&server),
        ])
        .run();
    out.assert_success();
    let doc = json_doc(&out);
    let files = doc["references"][0]["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{doc}");
    for file in files {
        let title = file["title"].as_str().unwrap();
        let d = data(title);
        assert_eq!(file["size"], json!(d.len()), "{file}");
        assert_eq!(file["digest"], json!(digest_of(&d)), "{file}");
        assert!(file["mediaType"].is_string(), "{file}");
        assert!(
            file.get("path").is_none() && file.get("status").is_none(),
            "{file}"
        );
    }
    assert_eq!(blob_gets(&server), BTreeSet::new());
    assert_tree(tmp.path(), &[]);
}

// ---- executables ----

fn programs() -> Vec<Layer> {
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.extend(random_bytes(4096, 93));
    let mut data = random_bytes(4096, 94);
    data[0] = b'X';
    vec![
        Layer::file("elf", &elf),
        Layer::file("script", b"#!/bin/sh\necho hi\n"),
        Layer::file("data", &data),
        Layer::file("comment", b"# a comment, not #!\n"),
        Layer::file("short", b"\x7fEL"),
        Layer::file("text", b"ELF #!\n"),
    ]
}

fn programs_registry() -> FakeServer {
    let mut content = Content::new();
    add_layers(&mut content, REPO, "v1", &programs());
    let content = Arc::new(content);
    FakeServer::start(move |req: &Request| content.serve(req))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// ELF and `#!` files have x wherever they have r; the others have no x at all and all share
/// the mode files are created with. Returns that mode.
fn assert_modes(dir: &Path) -> u32 {
    let created = mode(&dir.join("data"));
    for plain in ["data", "comment", "short", "text"] {
        assert_eq!(
            mode(&dir.join(plain)),
            created,
            "{plain}: {:o}",
            mode(&dir.join(plain))
        );
    }
    assert_eq!(
        created & 0o111,
        0,
        "plain files are executable: {created:o}"
    );
    let executable = created | (created & 0o444) >> 2;
    for program in ["elf", "script"] {
        assert_eq!(
            mode(&dir.join(program)),
            executable,
            "{program}: {:o}, want {executable:o}",
            mode(&dir.join(program))
        );
    }
    created
}

#[test]
fn programs_are_made_executable() {
    let server = programs_registry();
    let tmp = TempDir::new();
    pull(&tmp, &server, "out", &[]).assert_success();
    let created = assert_modes(&tmp.join("out"));
    // Under the usual umask, exactly what an installer gives.
    if created == 0o644 {
        assert_eq!(mode(&tmp.join("out/elf")), 0o755);
    }

    // A blob fetched by digest too, under its own name.
    let elf = programs()[0].data.clone();
    ocidl(tmp.path())
        .args([
            "--plain-http",
            "-o",
            "bin/tool",
            &server.reference(&format!("{REPO}@{}", digest_of(&elf))),
        ])
        .run()
        .assert_success();
    assert_file(&tmp.join("bin/tool"), &elf);
    assert_eq!(mode(&tmp.join("bin/tool")), mode(&tmp.join("out/elf")));
}

#[test]
fn executable_bits_follow_the_umask() {
    let server = programs_registry();
    for (umask, plain, program) in [
        ("027", 0o640, 0o750),
        ("077", 0o600, 0o700),
        ("022", 0o644, 0o755),
    ] {
        let tmp = TempDir::new();
        let out = ocidl_in_shell(tmp.path())
            .prelude(&format!("umask {umask}"))
            .args(["--plain-http", "-o", "out", &package(&server)])
            .run();
        out.assert_success();
        assert_eq!(assert_modes(&tmp.join("out")), plain, "umask {umask}");
        assert_eq!(mode(&tmp.join("out/elf")), program, "umask {umask}");
        assert_eq!(mode(&tmp.join("out/script")), program, "umask {umask}");
    }
}
