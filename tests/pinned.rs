//! Pinned and checked packages (issue 11): `NAME:TAG@sha256:M` pulls the package whose
//! manifest digest is M (checked), an index digest selects from that index, `--manifest`
//! reads `NAME@sha256:M` so, `--list` and `--json` say what a tag resolved to, and
//! `--verify` checks installed files against the package without downloading a blob.

use serde_json::Value;

use crate::support::fake::{Content, FakeServer, Request};
use crate::support::push::IndexKind;
use crate::support::registry::Registry;
use crate::support::run::{pull_plain, Output};
use crate::support::{assert_files, assert_tree, digest_of, file_refs, write_file, TempDir};

const REPO: &str = "pkgforge/bincache/tool";

fn v1() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("tool", b"tool v1".to_vec()),
        ("tool.json", br#"{"v":1}"#.to_vec()),
    ]
}

fn v2() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("tool", b"tool v2".to_vec()),
        ("tool.json", br#"{"v":2}"#.to_vec()),
    ]
}

/// A registry holding `REPO:v1` and `REPO:v2`; returns it and the two manifest digests.
fn registry() -> (Registry, String, String) {
    let reg = Registry::start();
    let push = reg.pusher();
    let one = push.push_package(REPO, "v1", &file_refs(&v1()));
    let two = push.push_package(REPO, "v2", &file_refs(&v2()));
    (reg, one.manifest.digest, two.manifest.digest)
}

fn run(tmp: &TempDir, flags: &[&str], reference: &str) -> Output {
    pull_plain(tmp.path(), flags, reference).run()
}

#[test]
fn a_tag_pinned_to_its_manifest_digest_pulls_that_manifest() {
    let (reg, one, two) = registry();
    let tmp = TempDir::new();
    run(
        &tmp,
        &["-o", "a"],
        &reg.reference(&format!("{REPO}:v1@{one}")),
    )
    .assert_success();
    assert_files(&tmp.join("a"), &v1());
    // The tag is a label: the digest decides, as in Docker.
    run(
        &tmp,
        &["-o", "b"],
        &reg.reference(&format!("{REPO}:v1@{two}")),
    )
    .assert_success();
    assert_files(&tmp.join("b"), &v2());
    // --manifest: the same for NAME@digest, which otherwise names a blob.
    run(
        &tmp,
        &["--manifest", "-o", "c"],
        &reg.reference(&format!("{REPO}@{one}")),
    )
    .assert_success();
    assert_files(&tmp.join("c"), &v1());
}

#[test]
fn a_pin_to_a_digest_the_registry_does_not_have_fails() {
    let (reg, _, _) = registry();
    let tmp = TempDir::new();
    let missing = digest_of(b"no such manifest");
    let out = run(
        &tmp,
        &["-o", "out"],
        &reg.reference(&format!("{REPO}:v1@{missing}")),
    );
    out.assert_error(1, "not found: manifest");
    assert_tree(tmp.path(), &[]);
}

#[test]
fn a_registry_that_answers_a_pin_with_other_bytes_is_caught() {
    let mut content = Content::new();
    let one = content.add_package(REPO, "v1", &file_refs(&v1())).digest;
    let two = content.add_package(REPO, "v2", &file_refs(&v2()));
    let (served, two_digest) = (content, two.digest.clone());
    let one_for_server = one.clone();
    // Asked for v1's manifest by digest, it answers with v2's bytes.
    let server = FakeServer::start(move |req: &Request| {
        if req
            .path()
            .ends_with(&format!("/manifests/{one_for_server}"))
        {
            let mut fake = req.clone();
            fake.target = format!("/v2/{REPO}/manifests/{two_digest}");
            return served.serve(&fake);
        }
        served.serve(req)
    });
    let tmp = TempDir::new();
    let out = run(
        &tmp,
        &["-o", "out"],
        &server.reference(&format!("{REPO}:v1@{one}")),
    );
    let line = out.assert_error(1, "digest mismatch");
    assert!(line.contains(&format!("expected {one}")), "{line}");
    assert!(server.requests_to(&format!("/v2/{REPO}/blobs/")).is_empty());
}

#[test]
fn an_index_digest_selects_from_that_index() {
    let reg = Registry::start();
    let push = reg.pusher();
    let amd = push.push_package(REPO, "amd", &[("tool", b"amd64 build")]);
    let arm = push.push_package(REPO, "arm", &[("tool", b"arm64 build")]);
    let index = push.push_index(
        REPO,
        "multi",
        IndexKind::Oci,
        &[
            ("linux/amd64", &amd.manifest),
            ("linux/arm64", &arm.manifest),
        ],
    );
    let tmp = TempDir::new();
    let pinned = reg.reference(&format!("{REPO}:multi@{}", index.digest));
    run(&tmp, &["--platform", "linux/arm64", "-o", "out"], &pinned).assert_success();
    assert_files(&tmp.join("out"), &[("tool", b"arm64 build".to_vec())]);
}

#[test]
fn list_and_json_say_which_manifest_a_tag_resolved_to() {
    let (reg, one, _) = registry();
    let tmp = TempDir::new();
    let reference = reg.reference(&format!("{REPO}:v1"));
    let out = run(&tmp, &["--list"], &reference);
    out.assert_success();
    let pin = format!("{}/{REPO}:v1@{one}", reg.host());
    assert!(
        out.stderr
            .contains(&format!("is manifest {one} (pin it: {pin})")),
        "{}",
        out.stderr
    );
    let out = run(&tmp, &["--list", "--json"], &reference);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["references"][0]["manifest"], one.as_str());
    let out = run(&tmp, &["--json", "-o", "out"], &reference);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["references"][0]["manifest"], one.as_str());
    // The pin it printed pulls the same package.
    run(&tmp, &["-o", "pinned"], &pin).assert_success();
    assert_files(&tmp.join("pinned"), &v1());
}

#[test]
fn verify_tells_intact_missing_and_different_files_apart() {
    let (reg, _, _) = registry();
    let tmp = TempDir::new();
    let reference = reg.reference(&format!("{REPO}:v1"));
    run(&tmp, &["-o", "out"], &reference).assert_success();
    let before = reg.blob_gets();

    let out = run(&tmp, &["--verify", "-o", "out"], &reference);
    out.assert_success();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "intact\tout/tool\nintact\tout/tool.json\n"
    );

    write_file(&tmp.join("out/tool"), b"tool v1, patched");
    std::fs::remove_file(tmp.join("out/tool.json")).unwrap();
    let out = run(&tmp, &["--verify", "-o", "out"], &reference);
    out.assert_error(1, "2 of 2 files are not intact");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "different\tout/tool\nmissing\tout/tool.json\n"
    );

    // Same size, other bytes: still different.
    write_file(&tmp.join("out/tool"), b"tool v9");
    let out = run(
        &tmp,
        &["--verify", "--json", "--include", "tool", "-o", "out"],
        &reference,
    );
    out.assert_code(1);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = doc["references"][0]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["status"], "different");
    assert!(doc["references"][0]["error"]
        .as_str()
        .unwrap()
        .contains("not intact"));

    let out = run(&tmp, &["--verify", "-o", "nowhere"], &reference);
    out.assert_error(1, "2 of 2 files are not intact");
    assert!(
        !tmp.join("nowhere").exists(),
        "--verify created the directory"
    );
    assert_eq!(reg.blob_gets(), before, "--verify downloaded a blob");
}

#[test]
fn verify_reads_nothing_outside_the_directory_even_when_it_is_missing() {
    let tmp = TempDir::new();
    let secret = tmp.join("outside/secret");
    write_file(&secret, b"the user's secret");
    for title in [
        secret.to_str().unwrap().to_string(),
        "../outside/secret".to_string(),
    ] {
        let mut content = Content::new();
        content.add_package(
            REPO,
            "v1",
            &[("tool", b"tool"), (&title, b"the user's secret")],
        );
        let server = FakeServer::start(move |req: &Request| content.serve(req));
        let reference = server.reference(&format!("{REPO}:v1"));
        for dir in ["missing", "present"] {
            if dir == "present" {
                std::fs::create_dir_all(tmp.join(dir)).unwrap();
            }
            let out = run(&tmp, &["--verify", "-o", dir], &reference);
            out.assert_error(1, "unsafe title");
            assert!(
                out.stdout.is_empty(),
                "{dir}: {:?}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        assert!(
            !tmp.join("missing").exists(),
            "--verify created the directory"
        );
    }
}

#[test]
fn verify_against_a_newer_version_says_different() {
    let (reg, _, _) = registry();
    let tmp = TempDir::new();
    run(&tmp, &["-o", "out"], &reg.reference(&format!("{REPO}:v1"))).assert_success();
    let out = run(
        &tmp,
        &["--verify", "-o", "out"],
        &reg.reference(&format!("{REPO}:v2")),
    );
    out.assert_code(1);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "different\tout/tool\ndifferent\tout/tool.json\n"
    );
}
