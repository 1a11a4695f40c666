//! Mirrors (issue 12) with real parts: one distribution registry as the upstream holding a
//! package, a second in pull-through-cache mode (`proxy: remoteurl:`) as its mirror, named
//! in a registries.conf; scripted servers for mirrors that are down, serve wrong bytes, or
//! ask for their own credentials. And every reference form a user pastes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::fake::{Content, FakeServer, Request, Response};
use crate::support::fifo::mkfifo;
use crate::support::registry::{Options, Registry};
use crate::support::run::{ocidl, Ocidl, Output};
use crate::support::{
    assert_file, assert_files, assert_no_temp_files, assert_tree, basic_auth, digest_of, file_refs,
    free_port, random_bytes, wait_until, write_file, TempDir,
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
    // The mirror was not skipped, and the user is told it said what the tag means.
    assert!(!out.stderr.contains("; trying "), "{}", out.stderr);
    let said = format!("as mirror {} says", cache.host());
    assert!(out.stderr.contains(&said), "{}", out.stderr);

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

/// A registry that answers what its tag means and refuses everything else.
fn tag_only_registry() -> FakeServer {
    let mut content = Content::new();
    content.add_package(REPO, TAG, &file_refs(&files()));
    let tag = format!("/v2/{REPO}/manifests/{TAG}");
    FakeServer::start(move |req: &Request| match req.path() == tag {
        true => content.serve(req),
        false => Response::error(500, "NO", "must not be asked"),
    })
}

#[test]
fn mirror_flag_and_variable_serve_digests_and_the_registry_says_what_a_tag_means() {
    for by_flag in [true, false] {
        let tmp = TempDir::new();
        let mirror = recording_mirror();
        let upstream = tag_only_registry();
        let location = format!("http://{}", mirror.host());
        let mut cmd = ocidl(tmp.path()).args(["--plain-http", "--retries", "0"]);
        cmd = match by_flag {
            true => cmd.args(["--mirror", &location]),
            false => cmd.env("OCIDL_MIRROR", &format!("{location}, ")),
        };
        let out = pull(cmd, &upstream.host(), "out");
        out.assert_success();
        assert_files(&tmp.join("out"), &files());
        // One request to the registry: the tag. The blobs came from the mirror, which was
        // never asked what the tag means.
        let asked: Vec<String> = upstream
            .requests()
            .iter()
            .map(|r| r.target.clone())
            .collect();
        assert_eq!(asked, [format!("/v2/{REPO}/manifests/{TAG}")]);
        assert!(mirror
            .requests_to(&format!("/v2/{REPO}/manifests/"))
            .is_empty());
        assert_eq!(mirror.requests_to(&format!("/v2/{REPO}/blobs/")).len(), 2);
        assert!(
            out.stderr
                .contains(&format!("from {}/{REPO}", mirror.host())),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn mirror_tags_lets_the_mirror_say_what_a_tag_means_and_says_so() {
    for by_flag in [true, false] {
        let tmp = TempDir::new();
        let mirror = recording_mirror();
        let upstream = FakeServer::start(|_| Response::error(500, "NO", "must not be asked"));
        let location = format!("http://{}", mirror.host());
        let mut cmd = ocidl(tmp.path())
            .args(["--plain-http", "--mirror", &location])
            .arg("--json");
        cmd = match by_flag {
            true => cmd.arg("--mirror-tags"),
            false => cmd.env("OCIDL_MIRROR_TAGS", "1"),
        };
        let out = pull(cmd, &upstream.host(), "out");
        out.assert_success();
        assert_files(&tmp.join("out"), &files());
        assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
        let said = format!("as mirror {} says", mirror.host());
        assert!(out.stderr.contains(&said), "{}", out.stderr);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            doc["references"][0]["source"],
            format!("{}/{REPO}", mirror.host())
        );
    }
}

/// A mirror and a registry that both have `REPO:TAG`, each its own program.
fn two_meanings() -> (Registry, FakeServer, Vec<u8>, Vec<u8>) {
    let theirs = b"#!/bin/sh\necho the registry's program\n".to_vec();
    let mirrors = b"#!/bin/sh\necho the mirror's program\n".to_vec();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &[("tool", &theirs)]);
    let mut content = Content::new();
    content.add_package(REPO, TAG, &[("tool", &mirrors)]);
    let mirror = FakeServer::start(move |req: &Request| content.serve(req));
    (upstream, mirror, theirs, mirrors)
}

#[test]
fn a_mirror_says_what_a_tag_means_only_where_the_user_asked_and_it_is_said() {
    // --mirror: the registry's answer.
    let (upstream, mirror, theirs, mirrors) = two_meanings();
    let tmp = TempDir::new();
    let location = format!("http://{}", mirror.host());
    let cmd = ocidl(tmp.path()).args(["--plain-http", "--mirror", &location]);
    pull(cmd, &upstream.host(), "out").assert_success();
    assert_file(&tmp.join("out/tool"), &theirs);

    // registries.conf's default pull-from-mirror: the mirror's answer, said on every line,
    // in --json, and in the cache, under the mirror's name, not the registry's.
    let tmp = TempDir::new();
    let text = conf(&upstream.host(), &[&mirror.host()]);
    let cmd = with_conf(&tmp, &text).args(["--json", "--cache", "cache"]);
    let out = pull(cmd, &upstream.host(), "out");
    out.assert_success();
    assert_file(&tmp.join("out/tool"), &mirrors);
    let by_mirror = format!("{}/{REPO}", mirror.host());
    assert!(
        out.stderr
            .contains(&format!("{by_mirror}:{TAG} is manifest")),
        "{}",
        out.stderr
    );
    assert!(out
        .stderr
        .contains("a mirror's answer for a tag cannot be verified"));
    let status = out
        .stderr
        .lines()
        .find(|l| l.starts_with("out/tool"))
        .unwrap();
    assert!(status.ends_with(&format!("from {by_mirror}")), "{status}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["references"][0]["source"], by_mirror);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.join("cache/index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    let annotations = &entries[0]["annotations"];
    assert_eq!(
        annotations["org.opencontainers.image.ref.name"],
        format!("{by_mirror}:{TAG}")
    );
    assert_eq!(
        annotations["dev.ocidl.source"],
        format!("mirror {by_mirror}")
    );
    // So an offline pull by the registry's name does not install the mirror's program.
    let offline = ocidl(tmp.path())
        .args([
            &format!("oci:cache:{}/{REPO}:{TAG}", upstream.host()),
            "-o",
            "offline",
        ])
        .run();
    offline.assert_error(1, "no manifest named");
}

#[test]
fn a_dead_mirror_costs_one_try_per_run() {
    let tmp = TempDir::new();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files()));
    upstream
        .pusher()
        .push_package(REPO, "v2", &file_refs(&files()));
    // Mirrors that take the connection and never answer.
    let silent: Vec<FakeServer> = (0..3)
        .map(|_| FakeServer::start(|_| Response::ok(b"late").delay(Duration::from_secs(60))))
        .collect();
    let hosts: Vec<String> = silent.iter().map(FakeServer::host).collect();
    let text = conf(
        &upstream.host(),
        &hosts.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let out = with_conf(&tmp, &text)
        .args(["--timeout", "2", "-o", "out"])
        .arg(format!("{}/{REPO}:{TAG}", upstream.host()))
        .arg(format!("{}/{REPO}:v2", upstream.host()))
        .timeout(Duration::from_secs(60))
        .run();
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    // One try each, for the whole run: three times the timeout, not retries times it, per
    // mirror, per reference.
    for mirror in &silent {
        assert_eq!(mirror.requests().len(), 1, "{:?}", mirror.requests());
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
    // The mirror is plain HTTP: what is stored for it is keyed so (a bare key means HTTPS).
    let auths = json!({ "auths": {
        format!("http://{}", mirror.host()): { "auth": basic_auth("mirror-user", "mirror-pass").trim_start_matches("Basic ") },
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
fn a_plain_http_mirror_never_gets_credentials_meant_for_https() {
    let blob = random_bytes(4096, 93);
    let digest = digest_of(&blob);
    // One place, 127.0.0.1:PORT: the command line names it over HTTPS (nothing answers TLS
    // there), and OCIDL_MIRROR names it over plain HTTP, where a server asks for Basic.
    for (key, served) in [("", false), ("https://", false), ("http://", true)] {
        let tmp = TempDir::new();
        let data = blob.clone();
        let expected = basic_auth("user", "secret");
        let mirror = FakeServer::start(move |req: &Request| {
            match req.authorization() == Some(expected.as_str()) {
                true => Response::ok(&data),
                false => Response::new(401).header("WWW-Authenticate", "Basic realm=\"m\""),
            }
        });
        let auths = json!({ "auths": {
            format!("{key}{}", mirror.host()): {
                "auth": basic_auth("user", "secret").trim_start_matches("Basic ")
            },
        }});
        write_file(
            &tmp.join("docker/config.json"),
            auths.to_string().as_bytes(),
        );
        let out = ocidl(tmp.path())
            .env("DOCKER_CONFIG", tmp.join("docker").to_str().unwrap())
            .env("OCIDL_MIRROR", &format!("http://{}", mirror.host()))
            .args(["--retries", "0", "-o", "blob"])
            .arg(format!("{}/{REPO}@{digest}", mirror.host()))
            .run();
        let sent = mirror
            .requests()
            .iter()
            .any(|r| r.authorization().is_some());
        assert_eq!(sent, served, "key {key:?}: {}", out.stderr);
        match served {
            true => {
                out.assert_success();
                assert_file(&tmp.join("blob"), &blob);
            }
            false => {
                out.assert_code(1);
            }
        }
    }
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

/// Long enough for a debug build on a busy machine; a run reading `/dev/zero` or waiting on
/// a FIFO (issue 16) goes past it and fails the test.
const QUICK: Duration = Duration::from_secs(10);

/// The one line a run printed, which must be its error.
fn only_line(out: &Output) -> &str {
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    lines[0]
}

/// Issue 16: a registries.conf is read only when it is a regular file. `/dev/zero` grew ocidl
/// to gigabytes, a FIFO hung it, and a FIFO among the drop-ins was skipped silently; each is
/// now one line naming the file, exit status 1, before any request.
#[test]
fn a_registries_conf_that_is_not_a_regular_file_is_one_line_naming_it() {
    let tmp = TempDir::new();
    let upstream = recording_mirror();
    mkfifo(&tmp.join("fifo"));
    let dir = tmp.mkdir("a-directory");
    let home = tmp.mkdir("home");
    let drop_in = home.join(".config/containers/registries.conf.d/50-fifo.conf");
    std::fs::create_dir_all(drop_in.parent().unwrap()).unwrap();
    mkfifo(&drop_in);
    let missing = tmp.join("no-such.conf");
    for (conf, named, says) in [
        ("/dev/zero".into(), "/dev/zero".into(), "not a regular file"),
        (tmp.join("fifo"), tmp.join("fifo"), "not a regular file"),
        (dir.clone(), dir.clone(), "not a regular file"),
        // The drop-ins are read when CONTAINERS_REGISTRIES_CONF is empty.
        ("".into(), drop_in.clone(), "not a regular file"),
        // A file the variable names must exist, as in podman (`No such file or directory`).
        (missing.clone(), missing.clone(), "No such file"),
    ] {
        let out = pull(
            ocidl(tmp.path())
                .arg("--plain-http")
                .env("HOME", home.to_str().unwrap())
                .env("CONTAINERS_REGISTRIES_CONF", conf.to_str().unwrap())
                .timeout(QUICK),
            &upstream.host(),
            "out",
        );
        out.assert_code(1).assert_stdout_empty();
        let line = only_line(&out);
        let expected = format!("ocidl: {}: {says}", named.display());
        assert!(line.starts_with(&expected), "{line:?} is not {expected:?}");
        assert!(upstream.requests().is_empty(), "{conf:?}");
        assert!(!tmp.join("out").exists());
    }
}

/// Issue 16: a registries.conf is read up to 1 MiB; past it (here by one byte, of comments
/// that the old reader took whole) the run stops with a line naming the file.
#[test]
fn a_registries_conf_past_one_mib_is_refused_and_one_mib_is_read() {
    let tmp = TempDir::new();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files()));
    let mut text = conf(&upstream.host(), &[]).into_bytes();
    text.push(b'#');
    text.resize(1 << 20, b'#');
    write_file(&tmp.join("registries.conf"), &text);
    let cmd = ocidl(tmp.path()).env(
        "CONTAINERS_REGISTRIES_CONF",
        tmp.join("registries.conf").to_str().unwrap(),
    );
    // Exactly the bound: read, and its `insecure = true` reaches the plain HTTP registry.
    pull(cmd, &upstream.host(), "exact").assert_success();
    assert_files(&tmp.join("exact"), &files());

    text.push(b'\n');
    write_file(&tmp.join("registries.conf"), &text);
    let cmd = ocidl(tmp.path())
        .env(
            "CONTAINERS_REGISTRIES_CONF",
            tmp.join("registries.conf").to_str().unwrap(),
        )
        .timeout(QUICK);
    let out = pull(cmd, &upstream.host(), "over");
    out.assert_code(1);
    assert_eq!(
        only_line(&out),
        format!(
            "ocidl: {}: larger than 1048576 bytes, the most ocidl reads of a registries.conf",
            tmp.join("registries.conf").display()
        )
    );
    assert!(!tmp.join("over").exists());
}

/// Issue 16: an `oci:` pull needs no registries.conf, so none is read, whatever
/// CONTAINERS_REGISTRIES_CONF or the user's file is.
#[test]
fn an_oci_pull_reads_no_registries_conf() {
    let tmp = TempDir::new();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files()));
    ocidl(tmp.path())
        .args(["--plain-http", "--cache", "usb", "--cache-only"])
        .arg(format!("{}/{REPO}:{TAG}", upstream.host()))
        .run()
        .assert_success();
    drop(upstream); // offline from here on

    mkfifo(&tmp.join("fifo"));
    write_file(
        &tmp.join("broken.conf"),
        b"[[registry]]\ninsecure = maybe\n",
    );
    let mut big = b"[[registry]]\nprefix = \"a.io\"\n".to_vec();
    big.resize(3 << 20, b'#');
    write_file(&tmp.join("big.conf"), &big);
    let home = tmp.mkdir("home");
    tmp.mkdir("home/.config/containers");
    mkfifo(&home.join(".config/containers/registries.conf"));
    for (i, conf) in [
        "/dev/zero".to_string(),
        tmp.join("fifo").display().to_string(),
        tmp.join("no-such.conf").display().to_string(),
        tmp.join("broken.conf").display().to_string(),
        tmp.join("big.conf").display().to_string(),
        tmp.path().display().to_string(),
        // Empty: the user's file is read, and it is a FIFO.
        String::new(),
    ]
    .iter()
    .enumerate()
    {
        let out_dir = format!("out{i}");
        let out = ocidl(tmp.path())
            .env("HOME", home.to_str().unwrap())
            .env("CONTAINERS_REGISTRIES_CONF", conf)
            .args(["oci:usb:v1", "-o", &out_dir])
            .timeout(QUICK)
            .run();
        out.assert_success();
        assert_files(&tmp.join(&out_dir), &files());
    }
}

/// Issue 16: valid TOML that ocidl does not model, anywhere in the file, is passed over;
/// the strings it uses are decoded with their escapes; and the mirror the file names (a
/// distribution pull-through cache) serves the pull.
#[test]
fn toml_ocidl_does_not_model_still_gives_the_mirrors_it_names() {
    let tmp = TempDir::new();
    let upstream = Registry::start();
    upstream
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files()));
    let cache = Registry::start_with(Options {
        proxy_of: Some(upstream.base_url()),
        ..Options::default()
    });
    // `\u0031` is "1", `\u0078`-style escapes are what podman's reader decodes.
    let escaped = |text: String| text.replace('1', "\\u0031");
    let text = format!(
        r#"# podman's containers.conf-style keys, in a shared file
num_locks = 2048
ratio = 0.75
exponent = -6.02e+23
mask = 0o755
when = 1979-05-27 07:32:00Z
day = 1979-05-27
motd = """
[[registry]]
prefix = "{up}"
blocked = true
"""
raw = '''C:\no\escapes\here'''
"quoted key" = "\u0078"
dotted.key."with quotes" = {{ inline = "table", nested = {{ list = [1, 2] }} }}
unqualified-search-registries = [
  "docker.io", # a comment with ] and "
  "quay.io]#",
  '''
literal'''
]

[[engine.helpers]]
name = "x"
[[engine.helpers]]
name = "y"

[[registry]]
num_locks = 2048
"prefix" = """
{up_escaped}"""
'insecure' = true
notes = {{ owner = "ops", since = 2024-01-01 }}
tags = [ [ "a", "]" ], [ 1.5, inf ] ]

[[registry.mirror]]
location = "{cache_escaped}"   # decoded: the cache
insecure = true
pull-from-mirror = '''all'''
weight = 10

[aliases]
"tool" = "ghcr.io/pkgforge/tool"
"#,
        up = upstream.host(),
        up_escaped = escaped(upstream.host()),
        cache_escaped = escaped(cache.host()),
    );
    assert!(text.contains("\\u0031"), "{text}");
    let out = pull(with_conf(&tmp, &text), &upstream.host(), "out");
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    let through_cache = logged(&cache);
    assert!(
        through_cache
            .iter()
            .any(|p| p.contains(&format!("/v2/{REPO}/manifests/{TAG}"))),
        "the mirror was not asked: {through_cache:?}"
    );
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

/// A registries.conf mirror (podman's default `pull-from-mirror = "all"`) may answer
/// `--tags`, and its list is not the registry's: it can name a tag the registry never had.
/// Every pull a mirror answered says so (a note, `from MIRROR`, `--json`'s `source`); the
/// listing it answered must too, or the user takes the mirror's tags for the registry's.
#[test]
fn a_tag_list_a_mirror_answered_says_whose_it_is() {
    let tmp = TempDir::new();
    let upstream = FakeServer::start(|req: &Request| match req.path().ends_with("/tags/list") {
        true => Response::json(&json!({ "name": REPO, "tags": ["v1"] })),
        false => Response::not_found(),
    });
    let mirror = FakeServer::start(|req: &Request| match req.path().ends_with("/tags/list") {
        true => Response::json(&json!({ "name": REPO, "tags": ["v1", "v1-backdoored"] })),
        false => Response::not_found(),
    });
    let text = conf(&upstream.host(), &[&mirror.host()]);
    let by_mirror = format!("{}/{REPO}", mirror.host());
    let reference = format!("{}/{REPO}", upstream.host());

    let out = with_conf(&tmp, &text).args(["--tags", &reference]).run();
    out.assert_success();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v1\nv1-backdoored\n");
    assert!(
        out.stderr.contains(&by_mirror),
        "the mirror's tag list was printed as the registry's, with no word of the mirror:\n{}",
        out.stderr
    );

    let out = with_conf(&tmp, &text)
        .args(["--tags", "--json", &reference])
        .run();
    out.assert_success();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["references"][0]["source"], by_mirror,
        "--json names no source for a mirror's tag list: {doc}"
    );
}

/// The cache records a mirror's answer for a tag under the mirror's name, "so an offline
/// `oci:` pull by the registry's name cannot install a mirror's answer". But `oci:PATH:TAG`
/// (the tag alone, which the README offers) and `oci:PATH` (the layout's only manifest) find
/// that entry and install the mirror's program, with no word that a mirror chose it: the
/// `dev.ocidl.source` annotation recorded beside it is never read back.
#[test]
fn an_offline_pull_by_tag_alone_does_not_install_a_mirrors_answer_unsaid() {
    let (upstream, mirror, _theirs, mirrors) = two_meanings();
    let tmp = TempDir::new();
    let text = conf(&upstream.host(), &[&mirror.host()]);
    let cmd = with_conf(&tmp, &text).args(["--cache", "cache", "--cache-only"]);
    pull(cmd, &upstream.host(), "unused").assert_success();
    let mut unsaid = Vec::new();
    for (i, reference) in ["oci:cache:v1".to_string(), "oci:cache".to_string()]
        .iter()
        .enumerate()
    {
        let dir = format!("offline{i}");
        let out = ocidl(tmp.path())
            .args([reference.as_str(), "-o", &dir, "--json"])
            .run();
        let installed = std::fs::read(tmp.join(&dir).join("tool")).ok();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let said = out.stderr.contains(&mirror.host()) || doc.to_string().contains(&mirror.host());
        if installed.as_deref() == Some(mirrors.as_slice()) && !said {
            unsaid.push(format!(
                "{reference}: installed the mirror's program, exit {}, source {}",
                out.code, doc["references"][0]["source"]
            ));
        }
    }
    assert!(unsaid.is_empty(), "{unsaid:#?}");
}

/// A registry that is also a mirror under a path of its own (`registry.lan/dockerhub` as the
/// mirror for docker.io, `registry.lan/team/...` its own packages): the mirror's path fails
/// for the first reference and is noted dead, by its scheme, host and port. The second
/// reference names that registry itself, not as a mirror; it must be asked, not skipped as
/// "dead" (which ends in a usage error, exit 2, without a single request).
#[test]
fn a_dead_mirror_does_not_take_down_the_registry_on_its_host() {
    let tmp = TempDir::new();
    let upstream = recording_mirror();
    let mut content = Content::new();
    content.add_package("team/tool", TAG, &file_refs(&files()));
    let shared =
        FakeServer::start(
            move |req: &Request| match req.path().starts_with("/v2/mirror/") {
                true => Response::error(503, "UNAVAILABLE", "the mirror part is down"),
                false => content.serve(req),
            },
        );
    let text = conf(&upstream.host(), &[&format!("{}/mirror", shared.host())]);
    let out = with_conf(&tmp, &text)
        .args(["--plain-http", "--retries", "0", "-o", "out"])
        .arg(format!("{}/{REPO}:{TAG}", upstream.host()))
        .arg(format!("{}/team/tool:{TAG}", shared.host()))
        .run();
    let asked_for_team = shared.requests_to("/v2/team/").len();
    assert!(
        asked_for_team > 0,
        "{}/team/tool was never asked for (exit {}): the dead mirror's host took it down",
        shared.host(),
        out.code
    );
    out.assert_success();
}
