//! Mirrors (issue 12) with real parts: one distribution registry as the upstream holding a
//! package, a second in pull-through-cache mode (`proxy: remoteurl:`) as its mirror, named
//! in a registries.conf; scripted servers for mirrors that are down, serve wrong bytes, or
//! ask for their own credentials. And every reference form a user pastes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::fake::{Content, FakeServer, Request, Response};
use crate::support::registry::{Options, Registry};
use crate::support::run::{ocidl, Ocidl, Output};
use crate::support::{
    assert_files, assert_no_temp_files, assert_tree, basic_auth, digest_of, file_refs, free_port,
    random_bytes, wait_until, write_file, TempDir,
};

const REPO: &str = "pkgforge/bincache/tool";
const TAG: &str = "v1";

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("tool", random_bytes(256 * 1024, 91)),
        ("tool.json", br#"{"pkg":"tool"}"#.to_vec()),
    ]
}

/// `tmp/registries.conf` holding `text`; a run of ocidl reading it.
fn with_conf(tmp: &TempDir, text: &str) -> Ocidl {
    let path = tmp.join("registries.conf");
    write_file(&path, text.as_bytes());
    ocidl(tmp.path()).env("CONTAINERS_REGISTRIES_CONF", path.to_str().unwrap())
}

/// A registries.conf whose `[[registry]]` for `upstream` (plain HTTP) lists `mirrors`.
fn conf(upstream: &str, mirrors: &[&str]) -> String {
    let mut text = format!("[[registry]]\nprefix = \"{upstream}\"\ninsecure = true\n");
    for mirror in mirrors {
        text.push_str(&format!(
            "\n[[registry.mirror]]\nlocation = \"{mirror}\"\ninsecure = true\n"
        ));
    }
    text
}

fn pull(cmd: Ocidl, upstream: &str, out: &str) -> Output {
    cmd.args([&format!("{upstream}/{REPO}:{TAG}"), "-o", out])
        .run()
}

/// The request paths distribution logged (`response completed` lines, level info).
fn logged(registry: &Registry) -> Vec<String> {
    registry
        .log()
        .lines()
        .filter(|l| l.contains("response completed"))
        .filter_map(|l| {
            let uri = l.split("http.request.uri=").nth(1)?;
            Some(uri.split(' ').next()?.trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn a_pull_through_cache_serves_the_pull_and_outlives_its_upstream() {
    let tmp = TempDir::new();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files()));
    let cache = Registry::start_with(Options {
        proxy_of: Some(upstream.base_url()),
        ..Options::default()
    });
    let text = conf(&upstream.host(), &[&cache.host()]);
    let out = pull(with_conf(&tmp, &text), &upstream.host(), "first");
    out.assert_success();
    assert_files(&tmp.join("first"), &files());
    let through_cache = logged(&cache);
    assert!(
        through_cache
            .iter()
            .any(|p| p.contains(&format!("/v2/{REPO}/manifests/{TAG}"))),
        "{through_cache:?}"
    );
    assert!(
        through_cache
            .iter()
            .filter(|p| p.contains("/blobs/"))
            .count()
            >= 2,
        "{through_cache:?}"
    );
    assert!(!out.stderr.contains("mirror "), "{}", out.stderr);

    // The cache stores what it passed on in the background: wait for it, then take the
    // upstream away; the cache still has the package.
    let stored = wait_until(Duration::from_secs(10), || {
        files()
            .iter()
            .all(|(_, data)| cache.blob_data_path(&digest_of(data)).is_file())
    });
    assert!(stored, "the cache did not store the blobs");
    let upstream_host = upstream.host();
    drop(upstream);
    let out = pull(with_conf(&tmp, &text), &upstream_host, "second");
    out.assert_success();
    assert_files(&tmp.join("second"), &files());
}

#[test]
fn a_mirror_that_is_down_is_skipped_with_a_note() {
    let tmp = TempDir::new();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files()));
    let down = format!("127.0.0.1:{}", free_port());
    let text = conf(&upstream.host(), &[&down]);
    let out = pull(
        with_conf(&tmp, &text).args(["--retries", "0"]),
        &upstream.host(),
        "out",
    );
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    let note = out
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("mirror {down}/{REPO}: cannot connect")))
        .unwrap_or_else(|| panic!("no note: {}", out.stderr));
    assert!(
        note.ends_with(&format!("trying {}/{REPO}", upstream.host())),
        "{note}"
    );
}

/// A mirror whose copy of the package's big blob is corrupted (one byte changed).
fn corrupting_mirror(files: &[(&str, Vec<u8>)]) -> FakeServer {
    let mut content = Content::new();
    content.add_package(REPO, TAG, &file_refs(files));
    let wanted = digest_of(&files[0].1);
    let mut wrong = files[0].1.clone();
    wrong[1000] ^= 0xff;
    FakeServer::start(move |req: &Request| {
        if req.path().ends_with(&wanted) {
            return Response::ok(&wrong);
        }
        content.serve(req)
    })
}

#[test]
fn a_mirror_serving_wrong_bytes_fails_verification_and_the_next_source_serves() {
    let tmp = TempDir::new();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files()));
    let bad = corrupting_mirror(&files());
    let text = conf(&upstream.host(), &[&bad.host()]);
    let out = pull(with_conf(&tmp, &text), &upstream.host(), "out");
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    assert_no_temp_files(tmp.path());
    let note = out
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("mirror {}/{REPO}", bad.host())))
        .unwrap_or_else(|| panic!("no note: {}", out.stderr));
    assert!(note.contains("digest mismatch"), "{note}");
    assert!(!bad.requests_to(&format!("/v2/{REPO}/blobs/")).is_empty());
}

#[test]
fn a_mirror_abandoned_halfway_leaves_nothing_behind() {
    let tmp = TempDir::new();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files()));
    // The mirror's own idea of the tag: a program of its choosing, then a file it cannot serve.
    let planted = b"#!/bin/sh\necho chosen by the mirror\n".to_vec();
    let missing = b"never served".to_vec();
    let mut content = Content::new();
    content.add_package(REPO, TAG, &[("planted", &planted), ("missing", &missing)]);
    let gone = digest_of(&missing);
    let mirror = FakeServer::start(move |req: &Request| match req.path().ends_with(&gone) {
        true => Response::not_found(),
        false => content.serve(req),
    });
    let text = conf(&upstream.host(), &[&mirror.host()]);
    let out = pull(
        with_conf(&tmp, &text).arg("--json"),
        &upstream.host(),
        "out",
    );
    out.assert_success();
    assert!(
        !mirror
            .requests_to(&format!("/v2/{REPO}/blobs/{}", digest_of(&planted)))
            .is_empty(),
        "the mirror's first file was never fetched: the test tests nothing"
    );
    assert_tree(&tmp.join("out"), &["tool", "tool.json"]);
    assert_files(&tmp.join("out"), &files());
    assert_no_temp_files(tmp.path());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let titles: Vec<&str> = doc["references"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["tool", "tool.json"]);
}

/// A scripted mirror that records what it is asked and serves the package.
fn recording_mirror() -> FakeServer {
    let mut content = Content::new();
    content.add_package(REPO, TAG, &file_refs(&files()));
    FakeServer::start(move |req| content.serve(req))
}

#[test]
fn mirror_flag_and_variable_come_first_and_the_registry_is_not_asked() {
    for by_flag in [true, false] {
        let tmp = TempDir::new();
        let mirror = recording_mirror();
        let upstream = FakeServer::start(|_| Response::error(500, "NO", "must not be asked"));
        let location = format!("http://{}", mirror.host());
        let mut cmd = ocidl(tmp.path()).arg("--plain-http");
        cmd = match by_flag {
            true => cmd.args(["--mirror", &location]),
            false => cmd.env("OCIDL_MIRROR", &format!("{location}, ")),
        };
        let out = pull(cmd, &upstream.host(), "out");
        out.assert_success();
        assert_files(&tmp.join("out"), &files());
        assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
        assert!(!mirror
            .requests_to(&format!("/v2/{REPO}/manifests/{TAG}"))
            .is_empty());
    }
}

#[test]
fn digest_only_mirrors_serve_digests_and_tag_only_mirrors_tags() {
    let tmp = TempDir::new();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files()));
    let digests = recording_mirror();
    let tags = recording_mirror();
    let text = format!(
        "[[registry]]\nprefix = \"{up}\"\ninsecure = true\n\
         [[registry.mirror]]\nlocation = \"{d}\"\ninsecure = true\npull-from-mirror = \"digest-only\"\n\
         [[registry.mirror]]\nlocation = \"{t}\"\ninsecure = true\npull-from-mirror = \"tag-only\"\n",
        up = upstream.host(),
        d = digests.host(),
        t = tags.host()
    );
    pull(with_conf(&tmp, &text), &upstream.host(), "out").assert_success();
    assert!(digests.requests().is_empty(), "{:?}", digests.requests());
    assert!(!tags.requests().is_empty());

    let blob = format!("{}/{REPO}@{}", upstream.host(), digest_of(&files()[0].1));
    let before = tags.requests().len();
    with_conf(&tmp, &text)
        .args([&blob, "-o", "blob"])
        .run()
        .assert_success();
    assert_eq!(digests.requests_to("/v2/").len(), 1);
    assert_eq!(tags.requests().len(), before);
}

#[test]
fn each_mirror_gets_its_own_credentials_only() {
    let tmp = TempDir::new();
    let mut content = Content::new();
    content.add_package(REPO, TAG, &file_refs(&files()));
    let content = Arc::new(content);
    let guarded = |user: &'static str, pass: &'static str, content: Arc<Content>| {
        let expected = basic_auth(user, pass);
        FakeServer::start(move |req: &Request| {
            if req.authorization() != Some(expected.as_str()) {
                return Response::new(401).header("WWW-Authenticate", "Basic realm=\"m\"");
            }
            content.serve(req)
        })
    };
    let mirror = guarded("mirror-user", "mirror-pass", content.clone());
    let upstream = guarded("up-user", "up-pass", content);
    let auths = json!({ "auths": {
        mirror.host(): { "auth": basic_auth("mirror-user", "mirror-pass").trim_start_matches("Basic ") },
        upstream.host(): { "auth": basic_auth("up-user", "up-pass").trim_start_matches("Basic ") },
    }});
    write_file(&tmp.join("auth.json"), auths.to_string().as_bytes());
    let text = conf(&upstream.host(), &[&mirror.host()]);
    let out = pull(
        with_conf(&tmp, &text).env(
            "REGISTRY_AUTH_FILE",
            tmp.join("auth.json").to_str().unwrap(),
        ),
        &upstream.host(),
        "out",
    );
    out.assert_success();
    assert!(
        upstream.requests().is_empty(),
        "the mirror served everything"
    );
    let sent: Vec<_> = mirror
        .requests()
        .iter()
        .filter_map(|r| r.authorization().map(str::to_string))
        .collect();
    assert!(
        sent.iter()
            .all(|a| *a == basic_auth("mirror-user", "mirror-pass")),
        "{sent:?}"
    );
    assert!(!sent.is_empty());
}

#[test]
fn blocked_names_are_refused_before_any_request() {
    let tmp = TempDir::new();
    let upstream = recording_mirror();
    let text = format!(
        "[[registry]]\nprefix = \"{}/pkgforge\"\nblocked = true\n",
        upstream.host()
    );
    let out = pull(
        with_conf(&tmp, &text).arg("--plain-http"),
        &upstream.host(),
        "out",
    );
    let line = out.assert_error(1, "is blocked by");
    assert!(line.contains("registries.conf:1"), "{line}");
    assert!(upstream.requests().is_empty());
}

#[test]
fn an_unreadable_config_names_its_file_and_line() {
    let tmp = TempDir::new();
    let upstream = recording_mirror();
    let text = "[[registry]]\nprefix = \"a.io\"\ninsecure = maybe\n";
    let out = pull(
        with_conf(&tmp, text).arg("--plain-http"),
        &upstream.host(),
        "out",
    );
    let line = out.assert_error(1, "registries.conf: line 3: insecure");
    assert!(line.contains("expected a string, true, false"), "{line}");
    assert!(upstream.requests().is_empty());
}

#[test]
fn drop_ins_replace_the_main_files_entries() {
    let tmp = TempDir::new();
    let home = tmp.mkdir("home");
    let good = recording_mirror();
    let upstream = FakeServer::start(|_| Response::error(500, "NO", "must not be asked"));
    let conf_dir = home.join(".config/containers");
    let main = format!(
        "[[registry]]\nprefix = \"{}\"\ninsecure = true\nblocked = true\n",
        upstream.host()
    );
    write_file(&conf_dir.join("registries.conf"), main.as_bytes());
    write_file(
        &conf_dir.join("registries.conf.d/50-mirror.conf"),
        conf(&upstream.host(), &[&good.host()]).as_bytes(),
    );
    write_file(
        &conf_dir.join("registries.conf.d/ignored.txt"),
        b"not toml at all",
    );
    let out = pull(
        ocidl(tmp.path())
            .env("HOME", home.to_str().unwrap())
            .env("CONTAINERS_REGISTRIES_CONF", ""),
        &upstream.host(),
        "out",
    );
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    assert!(upstream.requests().is_empty());
}

#[test]
fn every_form_a_user_pastes_reaches_the_same_package() {
    let mirror = recording_mirror();
    let host = mirror.host();
    let blob = digest_of(&files()[0].1);
    for (input, output, expected) in [
        (format!("oci://http://{host}/{REPO}:{TAG}"), "out", None),
        (
            format!("http://{host}/v2/{REPO}/manifests/{TAG}"),
            "out",
            None,
        ),
        (
            format!("http://{host}/v2/{REPO}/blobs/{blob}"),
            "bin/",
            Some("bin/tool"),
        ),
    ] {
        let tmp = TempDir::new();
        let out = ocidl(tmp.path()).args([&input, "-o", output]).run();
        out.assert_success();
        match expected {
            None => assert_files(&tmp.join("out"), &files()),
            Some(path) => assert_eq!(std::fs::read(tmp.join(path)).unwrap(), files()[0].1),
        }
    }
}

#[test]
fn a_reference_without_a_tag_and_no_latest_says_which_tags_exist() {
    let tmp = TempDir::new();
    let mut content = Content::new();
    content.add_package(REPO, "1.0", &file_refs(&files()));
    content.add_package(REPO, "1.1", &file_refs(&files()));
    let server = FakeServer::start(move |req: &Request| {
        if req.path().ends_with("/tags/list") {
            return Response::json(&json!({ "name": REPO, "tags": ["1.0", "1.1"] }));
        }
        content.serve(req)
    });
    // pkgforge's ghcr_url form: a package URL with no tag.
    let out = ocidl(tmp.path())
        .arg(format!("http://{}/{REPO}", server.host()))
        .run();
    let line = out.assert_error(1, "not found");
    assert!(
        line.contains("no tag was given, so 'latest' was tried"),
        "{line}"
    );
    assert!(line.contains("its tags: 1.0, 1.1"), "{line}");
    assert!(line.contains("--tags"), "{line}");
    assert!(!Path::new(&tmp.join("tool")).exists());
}

/// `-u` credentials are for the registries the command line names: a mirror asking for
/// credentials gets none of them (and the registry, asked next, gets them).
#[test]
fn command_line_credentials_never_go_to_a_mirror() {
    let tmp = TempDir::new();
    let mut content = Content::new();
    content.add_package(REPO, TAG, &file_refs(&files()));
    let content = Arc::new(content);
    let mirror = FakeServer::start(|_| {
        Response::new(401).header("WWW-Authenticate", "Basic realm=\"mirror\"")
    });
    let expected = basic_auth("me", "hunter2");
    let upstream = FakeServer::start(move |req: &Request| {
        if req.authorization() != Some(expected.as_str()) {
            return Response::new(401).header("WWW-Authenticate", "Basic realm=\"up\"");
        }
        content.serve(req)
    });
    let out = pull(
        ocidl(tmp.path())
            .args(["--plain-http", "-u", "me", "--password-stdin"])
            .args(["--mirror", &format!("http://{}", mirror.host())])
            .stdin(b"hunter2\n"),
        &upstream.host(),
        "out",
    );
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    assert!(!mirror.requests().is_empty(), "the mirror was not tried");
    let sent: Vec<_> = mirror
        .requests()
        .iter()
        .filter_map(|r| r.authorization().map(str::to_string))
        .collect();
    assert!(sent.is_empty(), "the mirror got {sent:?}");
}

/// "A source abandoned halfway leaves nothing": its files are removed, but the directories
/// its titles made are not. A mirror whose package nests its files (`share/x/planted`) and
/// then fails leaves `share/x/` in the output directory after the registry installed its
/// own package; as a failed pull from the registry alone does too.
#[test]
fn a_mirror_abandoned_halfway_leaves_no_directory_behind() {
    let tmp = TempDir::new();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files()));
    let planted = b"chosen by the mirror".to_vec();
    let missing = b"never served".to_vec();
    let mut content = Content::new();
    content.add_package(
        REPO,
        TAG,
        &[("share/x/planted", &planted), ("share/y/missing", &missing)],
    );
    let gone = digest_of(&missing);
    let mirror = FakeServer::start(move |req: &Request| match req.path().ends_with(&gone) {
        true => Response::not_found(),
        false => content.serve(req),
    });
    let text = conf(&upstream.host(), &[&mirror.host()]);
    let out = pull(with_conf(&tmp, &text), &upstream.host(), "out");
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    assert_tree(&tmp.join("out"), &["tool", "tool.json"]);
}
