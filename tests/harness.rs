//! Checks of the harness itself, independent of ocidl: what `push` publishes reads back
//! through curl, the registry modes work, and the fake server records what it is sent.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::fake::{Content, FakeServer, Response};
use crate::support::push::{
    IndexKind, Layer, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use crate::support::registry::{Options, Registry};
use crate::support::{digest_of, random_bytes, read_file, TempDir};

const ACCEPT_ALL: &str = "Accept: application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

struct CurlResult {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl CurlResult {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// curl as an independent client: if push and ureq agreed on something wrong, curl would not.
fn curl(dir: &Path, args: &[&str]) -> CurlResult {
    let headers = dir.join("curl-headers");
    let body = dir.join("curl-body");
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    CurlResult {
        status: String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
        headers: std::fs::read_to_string(&headers).unwrap(),
        body: read_file(&body),
    }
}

#[test]
fn pushed_package_reads_back_through_curl() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let trurl = random_bytes(200 * 1024, 1);
    let pushed = reg.pusher().push_package(
        "pkgforge/trurl",
        "v1",
        &[("trurl", &trurl), ("CHECKSUM", b"abc\n")],
    );

    let url = format!("{}/v2/pkgforge/trurl/manifests/v1", reg.base_url());
    let got = curl(tmp.path(), &["-H", ACCEPT_ALL, &url]);
    assert_eq!(got.status, 200, "{}", reg.log());
    assert_eq!(got.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(
        got.header("docker-content-digest"),
        Some(pushed.manifest.digest.as_str())
    );
    assert_eq!(digest_of(&got.body), pushed.manifest.digest);

    let manifest: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(manifest["config"]["size"], 2);
    assert_eq!(manifest["annotations"]["dev.pkgforge.soar.version"], "v1");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["mediaType"], "application/octet-stream");
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "trurl"
    );
    assert_eq!(layers[0]["digest"], digest_of(&trurl));

    let blob_url = format!(
        "{}/v2/pkgforge/trurl/blobs/{}",
        reg.base_url(),
        digest_of(&trurl)
    );
    let blob = curl(tmp.path(), &[&blob_url]);
    assert_eq!(blob.status, 200);
    assert!(blob.body == trurl, "blob bytes differ");
    assert_eq!(
        read_file(&reg.blob_data_path(&digest_of(&trurl))),
        trurl,
        "blob_data_path"
    );

    let missing = curl(
        tmp.path(),
        &[
            "-H",
            ACCEPT_ALL,
            &format!("{}/v2/pkgforge/trurl/manifests/nope", reg.base_url()),
        ],
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn docker_manifests_and_indexes_are_accepted() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let push = reg.pusher();
    let layer = Layer::file("tool", b"docker layer").with_media_type(DOCKER_LAYER);
    let amd64 = push.push_docker_schema2(
        "lib/tool",
        "amd64",
        "linux/amd64",
        std::slice::from_ref(&layer),
    );
    let arm64 = push.push_docker_schema2("lib/tool", "arm64", "linux/arm64/v8", &[layer]);
    push.push_index(
        "lib/tool",
        "list",
        IndexKind::DockerList,
        &[
            ("linux/amd64", &amd64.manifest),
            ("linux/arm64/v8", &arm64.manifest),
        ],
    );
    let oci = push.push_package("lib/tool", "oci-amd64", &[("tool", b"oci")]);
    push.push_index(
        "lib/tool",
        "index",
        IndexKind::Oci,
        &[
            ("linux/amd64", &oci.manifest),
            ("linux/arm64", &arm64.manifest),
        ],
    );

    for (tag, media_type) in [
        ("amd64", DOCKER_MANIFEST),
        ("list", DOCKER_LIST),
        ("index", OCI_INDEX),
    ] {
        let url = format!("{}/v2/lib/tool/manifests/{tag}", reg.base_url());
        let got = curl(tmp.path(), &["-H", ACCEPT_ALL, &url]);
        assert_eq!(got.status, 200, "{tag}");
        assert_eq!(got.header("content-type"), Some(media_type), "{tag}");
    }
}

#[test]
fn auth_and_tls_registry_modes_work() {
    let tmp = TempDir::new();
    let reg = Registry::start_with(Options {
        auth: Some(("user".into(), "pass".into())),
        tls: true,
        ..Options::default()
    });
    reg.pusher().push_package("a/b", "v1", &[("f", b"x")]);
    let ca = reg.ca_file();
    let ca = ca.to_str().unwrap();
    let url = format!("{}/v2/a/b/manifests/v1", reg.base_url());
    assert!(url.starts_with("https://127.0.0.1:"));
    assert_eq!(
        curl(tmp.path(), &["--cacert", ca, "-H", ACCEPT_ALL, &url]).status,
        401
    );
    let denied = curl(tmp.path(), &["--cacert", ca, "-u", "user:wrong", &url]);
    assert_eq!(denied.status, 401);
    assert!(denied
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic "));
    assert_eq!(
        curl(
            tmp.path(),
            &["--cacert", ca, "-u", "user:pass", "-H", ACCEPT_ALL, &url]
        )
        .status,
        200
    );
    // Without the CA, curl must refuse the certificate (exit 60), proving it is not a public one.
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", &url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fake_server_serves_content_and_records_requests() {
    let tmp = TempDir::new();
    let mut content = Content::new();
    let manifest = content.add_package("x/y", "t", &[("f", b"hello")]);
    let server = FakeServer::start(move |req| {
        if req.path() == "/short" {
            return Response::ok(b"abc").content_length(10);
        }
        content.serve(req)
    });

    let url = server.url("/v2/x/y/manifests/t");
    let got = curl(tmp.path(), &["-H", "Authorization: Bearer QQ==", &url]);
    assert_eq!(got.status, 200);
    assert_eq!(digest_of(&got.body), manifest.digest);
    let blob = curl(
        tmp.path(),
        &[&server.url(&format!("/v2/x/y/blobs/{}", digest_of(b"hello")))],
    );
    assert_eq!(blob.body, b"hello");
    assert_eq!(
        curl(tmp.path(), &[&server.url("/v2/x/y/manifests/nope")]).status,
        404
    );
    curl(
        tmp.path(),
        &[&server.url("/token?scope=repository%3Ax%2Fy%3Apull&service=fake")],
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].header("AUTHORIZATION"), Some("Bearer QQ=="));
    assert_eq!(requests[1].authorization(), None);
    assert_eq!(requests[3].path(), "/token");
    assert_eq!(
        requests[3].query("scope").as_deref(),
        Some("repository:x/y:pull")
    );
    assert_eq!(requests[3].query("service").as_deref(), Some("fake"));
    assert_eq!(server.requests_to("/v2/").len(), 3);

    // A truncated body: curl reports a partial transfer (exit 18).
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", &server.url("/short")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(18));
    assert!(server.connections() >= 5);
}
