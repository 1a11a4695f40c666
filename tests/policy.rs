//! Where credentials may go (`src/policy.rs`), tried as a hostile registry would: a TLS
//! registry naming a plain-HTTP token realm, a tag list continued on another server, a CDN
//! that answers a redirected blob with a challenge of its own, and a TLS registry that
//! redirects to plain HTTP. Each test asserts on what every server received.

use std::sync::Arc;

use serde_json::json;

use crate::support::fake::{Content, FakeServer, Request, Response};
use crate::support::registry::{Options, Registry};
use crate::support::run::{ocidl, pull_plain, Output};
use crate::support::tls_front::TlsFront;
use crate::support::{assert_no_temp_files, assert_tree, basic_auth, write_file, TempDir};

const REPO: &str = "team/tool";
const USER: &str = "ocidl";
const PASS: &str = "s3cret-pw";

/// A token service that records what it is asked and hands out a token nobody accepts.
fn token_service() -> FakeServer {
    FakeServer::start(|_| Response::json(&json!({ "token": "not-a-jwt" })))
}

/// Every `Authorization` header `server` received.
fn authorizations(server: &FakeServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter_map(|r| r.authorization().map(str::to_string))
        .collect()
}

/// The user's password, plain or base64, anywhere in what `server` received.
fn saw_password(server: &FakeServer) -> bool {
    let basic = basic_auth(USER, PASS);
    server.requests().iter().any(|r| {
        let text = format!(
            "{} {:?} {}",
            r.target,
            r.headers,
            String::from_utf8_lossy(&r.body)
        );
        text.contains(PASS) || text.contains(basic.trim_start_matches("Basic "))
    })
}

/// A distribution registry with token auth whose realm is `realm`, over TLS or not.
fn token_registry(realm: &str, tls: bool) -> Registry {
    Registry::start_with(Options {
        tls,
        token_realm: Some(realm.to_string()),
        ..Options::default()
    })
}

/// `ocidl` logging in as USER/PASS (`--password-stdin`) to pull `REPO:v1` from `registry`.
fn pull_as_user(tmp: &TempDir, registry: &Registry) -> Output {
    let mut cmd = ocidl(tmp.path()).args(["-u", USER, "--password-stdin"]);
    if registry.base_url().starts_with("https:") {
        cmd = cmd.arg("--ca-file").arg(registry.ca_file());
    } else {
        cmd = cmd.arg("--plain-http");
    }
    cmd.arg(registry.reference(&format!("{REPO}:v1")))
        .arg("-o")
        .arg("out")
        .stdin(format!("{PASS}\n").as_bytes())
        .run()
}

#[test]
fn a_tls_registry_with_a_plain_http_realm_gets_no_password() {
    let tmp = TempDir::new();
    let service = token_service();
    let registry = token_registry(&service.url("/token"), true);
    let out = pull_as_user(&tmp, &registry);
    let line = out.assert_error(1, "refused");
    assert!(
        line.contains(&format!(
            "the token realm {} is plain HTTP",
            service.url("/token")
        )),
        "{line}"
    );
    assert!(service.requests().is_empty(), "{:?}", service.requests());
    assert_tree(tmp.path(), &[]);
}

#[test]
fn a_tls_registry_with_a_plain_http_realm_gets_no_identity_token() {
    let tmp = TempDir::new();
    let service = token_service();
    let registry = token_registry(&service.url("/token"), true);
    let config = json!({ "auths": { registry.host(): { "identitytoken": "refresh-xyz" } } });
    write_file(
        &tmp.join("docker/config.json"),
        config.to_string().as_bytes(),
    );
    let out = ocidl(tmp.path())
        .env("DOCKER_CONFIG", tmp.join("docker").to_str().unwrap())
        .arg("--ca-file")
        .arg(registry.ca_file())
        .arg(registry.reference(&format!("{REPO}:v1")))
        .run();
    out.assert_error(1, "is plain HTTP");
    assert!(service.requests().is_empty(), "{:?}", service.requests());
    assert!(!out.stderr.contains("refresh-xyz"), "{}", out.stderr);
}

#[test]
fn anonymous_token_requests_may_use_a_plain_realm_but_carry_nothing() {
    let tmp = TempDir::new();
    let service = token_service();
    let registry = token_registry(&service.url("/token"), true);
    let out = ocidl(tmp.path())
        .arg("--ca-file")
        .arg(registry.ca_file())
        .arg(registry.reference(&format!("{REPO}:v1")))
        .run();
    // The registry refuses the made-up token: what matters is what the realm saw.
    out.assert_error(1, "authentication required");
    let requests = service.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].query("service").as_deref(), Some("ocidl-test"));
    assert!(authorizations(&service).is_empty());
}

/// The control: a plain-HTTP registry may send its user's credentials to its plain realm,
/// and they do arrive there (so the tests above would see them if they were sent).
#[test]
fn a_plain_registry_sends_credentials_to_its_own_plain_realm() {
    let tmp = TempDir::new();
    let service = token_service();
    let registry = token_registry(&service.url("/token"), false);
    let out = pull_as_user(&tmp, &registry);
    out.assert_error(1, "authentication required");
    assert_eq!(authorizations(&service), [basic_auth(USER, PASS)]);
}

/// A fake registry behind Basic auth that answers its tag list's first page with `link`
/// (the `{A}` in it replaced by its own port, `{B}` by `elsewhere`'s) and any later page
/// with tag `b`.
fn paging_registry(link: &'static str, elsewhere: u16) -> FakeServer {
    let expected = basic_auth(USER, PASS);
    FakeServer::start(move |req: &Request| {
        if req.authorization() != Some(expected.as_str()) {
            return Response::new(401).header("WWW-Authenticate", "Basic realm=\"tags\"");
        }
        if req.path() != format!("/v2/{REPO}/tags/list") {
            return Response::not_found();
        }
        if req.query("last").is_some() {
            return Response::json(&json!({ "name": REPO, "tags": ["b"] }));
        }
        let host = req.header("host").unwrap_or_default();
        let port = host.rsplit(':').next().unwrap_or_default();
        let link = link
            .replace("{A}", port)
            .replace("{B}", &elsewhere.to_string());
        Response::json(&json!({ "name": REPO, "tags": ["a"] })).header("Link", &link)
    })
}

fn tags_as_user(tmp: &TempDir, server: &FakeServer) -> Output {
    pull_plain(
        tmp.path(),
        &["--tags", "-u", USER, "--password-stdin"],
        &server.reference(REPO),
    )
    .stdin(format!("{PASS}\n").as_bytes())
    .run()
}

#[test]
fn a_tag_list_continued_on_another_origin_is_refused() {
    for link in [
        r#"<http://127.0.0.1:{B}/v2/team/tool/tags/list?last=a>; rel="next""#,
        r#"<//127.0.0.1:{B}/v2/team/tool/tags/list?last=a>; rel="next""#,
        // The same server under another name is another origin.
        r#"<http://localhost:{A}/v2/team/tool/tags/list?last=a>; rel="next""#,
    ] {
        let tmp = TempDir::new();
        let other = FakeServer::start(|_| Response::json(&json!({ "tags": ["theirs"] })));
        let registry = paging_registry(link, other.port());
        let out = tags_as_user(&tmp, &registry);
        let line = out.assert_error(1, "refused: the tag list continues at");
        assert!(line.contains("outside the registry"), "{link}: {line}");
        // The registry's own first page went out as it came; nothing from elsewhere did.
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n", "{link}");
        assert!(
            other.requests().is_empty(),
            "{link}: {:?}",
            other.requests()
        );
        assert!(
            registry
                .requests()
                .iter()
                .all(|r| r.header("host") != Some(&format!("localhost:{}", registry.port()))),
            "{link}: followed to localhost"
        );
    }
}

#[test]
fn a_tag_list_continued_on_the_registry_itself_is_followed() {
    let tmp = TempDir::new();
    let registry = paging_registry(r#"</v2/team/tool/tags/list?last=a>; rel="next""#, 1);
    let out = tags_as_user(&tmp, &registry);
    out.assert_success();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\n");
}

/// A registry behind Basic auth whose blobs are redirected to `cdn`.
fn redirecting_registry(content: Arc<Content>, cdn: u16) -> FakeServer {
    let expected = basic_auth(USER, PASS);
    FakeServer::start(move |req: &Request| {
        if req.authorization() != Some(expected.as_str()) {
            return Response::new(401).header("WWW-Authenticate", "Basic realm=\"registry\"");
        }
        match req.path().rsplit_once("/blobs/") {
            Some((_, digest)) => {
                Response::redirect(307, &format!("http://127.0.0.1:{cdn}/blob/{digest}"))
            }
            None => content.serve(req),
        }
    })
}

#[test]
fn a_cdn_that_asks_for_credentials_gets_none() {
    for challenge in [
        "Basic realm=\"cdn\"".to_string(),
        "Bearer realm=\"{CDN}/token\",service=\"cdn\"".to_string(),
    ] {
        let tmp = TempDir::new();
        let mut content = Content::new();
        content.add_package(REPO, "v1", &[("tool", b"the tool")]);
        let challenge = Arc::new(challenge);
        let cdn = FakeServer::start(move |req: &Request| {
            let host = req.header("host").unwrap_or_default();
            let value = challenge.replace("{CDN}", &format!("http://{host}"));
            if req.path() == "/token" {
                return Response::json(&json!({ "token": "cdn-token" }));
            }
            Response::new(401).header("WWW-Authenticate", &value)
        });
        let registry = redirecting_registry(Arc::new(content), cdn.port());
        let out = pull_plain(
            tmp.path(),
            &["-u", USER, "--password-stdin", "-o", "out"],
            &registry.reference(&format!("{REPO}:v1")),
        )
        .stdin(format!("{PASS}\n").as_bytes())
        .run();
        let line = out.assert_error(1, "asked for credentials after a redirect");
        assert!(
            line.contains(&format!("127.0.0.1:{}", cdn.port())),
            "{line}"
        );
        assert!(authorizations(&cdn).is_empty(), "{:?}", cdn.requests());
        assert!(!saw_password(&cdn));
        assert!(cdn.requests_to("/token").is_empty());
        // Nothing was written, not even the directory.
        assert_tree(tmp.path(), &[]);
    }
}

#[test]
fn a_tls_registry_may_not_redirect_to_plain_http() {
    for redirected in ["manifests", "blobs"] {
        let tmp = TempDir::new();
        let plain = FakeServer::start(|_| Response::ok(b"whatever"));
        let plain_port = plain.port();
        let mut content = Content::new();
        content.add_package(REPO, "v1", &[("tool", b"the tool")]);
        let backend = FakeServer::start(move |req: &Request| {
            if req.path().contains(&format!("/{redirected}/")) {
                let to = format!("http://127.0.0.1:{plain_port}{}", req.target);
                return Response::redirect(302, &to);
            }
            content.serve(req)
        });
        let front = TlsFront::start(backend.port());
        let out = ocidl(tmp.path())
            .arg("--ca-file")
            .arg(front.ca_file())
            .args([&format!("{}/{REPO}:v1", front.host()), "-o", "out"])
            .run();
        let line = out.assert_error(1, "refused");
        assert!(
            line.contains("redirected to plain HTTP"),
            "{redirected}: {line}"
        );
        assert!(
            plain.requests().is_empty(),
            "{redirected}: {:?}",
            plain.requests()
        );
        assert!(
            backend
                .requests()
                .iter()
                .any(|r| r.path().contains(&format!("/{redirected}/"))),
            "{redirected}: the TLS front was not used"
        );
        assert!(!tmp.join("out/tool").exists());
        assert_no_temp_files(tmp.path());
    }
}

/// ghcr's shortcut refused is a 403 from the registry; a 403 from the CDN a blob was sent to
/// (an expired signed URL) is the CDN's answer, reported as it is and not taken for one.
#[test]
fn a_cdn_403_is_not_taken_for_a_refused_shortcut() {
    let tmp = TempDir::new();
    let cdn = FakeServer::start(|_| Response::error(403, "DENIED", "signature expired"));
    let cdn_port = cdn.port();
    let mut content = Content::new();
    content.add_package(REPO, "v1", &[("tool", b"the tool")]);
    let registry = FakeServer::start(move |req: &Request| {
        if req.authorization() != Some("Bearer QQ==") {
            return Response::error(401, "UNAUTHORIZED", "shortcut expected");
        }
        match req.path().rsplit_once("/blobs/") {
            Some((_, digest)) => {
                Response::redirect(307, &format!("http://127.0.0.1:{cdn_port}/b/{digest}"))
            }
            None => content.serve(req),
        }
    });
    let out = pull_plain(
        tmp.path(),
        &["--ghcr", "-o", "out"],
        &registry.reference(&format!("{REPO}:v1")),
    )
    .run();
    out.assert_error(1, "access denied");
    assert_eq!(cdn.requests().len(), 1);
    assert!(authorizations(&cdn).is_empty());
    let blob_gets = registry.requests_to(&format!("/v2/{REPO}/blobs/"));
    assert_eq!(blob_gets.len(), 1, "{blob_gets:?}");
}
