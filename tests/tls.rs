//! A TLS registry with a CA made at test time: refused without `--ca-file`, trusted with it.

use std::path::Path;

use crate::support::fake::{FakeServer, Response};
use crate::support::registry::{Options, Registry};
use crate::support::run::{ocidl, Ocidl};
use crate::support::token::{TokenService, SERVICE};
use crate::support::{
    assert_file, assert_files, assert_tree, file_refs, trurl_files, write_file, TempDir,
};

const REPO: &str = "pkgforge/trurl";

fn tls_registry() -> Registry {
    let reg = Registry::start_tls();
    reg.pusher()
        .push_package(REPO, "v1", &file_refs(&trurl_files()));
    reg
}

/// `REPO:v1` on `reg`, as a reference.
fn v1(reg: &Registry) -> String {
    reg.reference(&format!("{REPO}:v1"))
}

/// `v1` both without a scheme and with `https://`: either way TLS, and the same checks.
fn v1_spellings(reg: &Registry) -> [String; 2] {
    [v1(reg), format!("https://{}", v1(reg))]
}

/// `ocidl --ca-file CA` in `tmp`.
fn with_ca(tmp: &TempDir, ca: &Path) -> Ocidl {
    ocidl(tmp.path()).arg("--ca-file").arg(ca)
}

#[test]
fn untrusted_certificate_is_refused() {
    let tmp = TempDir::new();
    let reg = tls_registry();
    for reference in v1_spellings(&reg) {
        let out = ocidl(tmp.path()).arg(&reference).run();
        let line = out.assert_error(1, "certificate");
        assert!(
            line.contains(REPO),
            "error does not name the reference: {line}"
        );
    }
    assert_tree(tmp.path(), &[]);
}

#[test]
fn ca_file_makes_the_registry_trusted() {
    let reg = tls_registry();
    let ca = reg.ca_file();
    for reference in v1_spellings(&reg) {
        let tmp = TempDir::new();
        with_ca(&tmp, &ca).arg(&reference).run().assert_success();
        assert_files(tmp.path(), &trurl_files());
    }
}

#[test]
fn ca_file_fetches_a_blob() {
    let tmp = TempDir::new();
    let reg = Registry::start_tls();
    let blob = reg.pusher().push_blob(REPO, b"tls blob");
    with_ca(&tmp, &reg.ca_file())
        .arg(reg.reference(&format!("{REPO}@{}", blob.digest)))
        .run()
        .assert_success();
    assert_file(&tmp.join("trurl"), b"tls blob");
}

#[test]
fn another_ca_is_not_enough() {
    let tmp = TempDir::new();
    let reg = tls_registry();
    // A second registry's CA: valid PEM, wrong signer.
    let other = Registry::start_tls();
    with_ca(&tmp, &other.ca_file())
        .arg(v1(&reg))
        .run()
        .assert_error(1, "certificate");
    assert_tree(tmp.path(), &[]);
}

#[test]
fn plain_http_to_a_tls_registry_fails() {
    let tmp = TempDir::new();
    let reg = tls_registry();
    ocidl(tmp.path())
        .args(["--plain-http", &v1(&reg)])
        .run()
        .assert_code(1);
    ocidl(tmp.path())
        .arg(format!("http://{}", v1(&reg)))
        .run()
        .assert_code(1);
    assert_tree(tmp.path(), &[]);
}

#[test]
fn tls_with_basic_auth() {
    let reg = Registry::start_with(Options {
        auth: Some(("ocidl".into(), "pw".into())),
        tls: true,
        ..Options::default()
    });
    reg.pusher().push_package(REPO, "v1", &[("trurl", b"both")]);
    let reference = reg.reference(&format!("{REPO}:v1"));

    let tmp = TempDir::new();
    with_ca(&tmp, &reg.ca_file())
        .args(["-u", "ocidl", "--password-stdin", &reference])
        .stdin(b"pw\n")
        .run()
        .assert_success();
    assert_file(&tmp.join("trurl"), b"both");

    let tmp = TempDir::new();
    with_ca(&tmp, &reg.ca_file())
        .arg(&reference)
        .run()
        .assert_error(1, "authentication required");
    assert_tree(tmp.path(), &[]);
}

/// A CA file that is missing, empty, holds no certificate or is not PEM: the user's to fix,
/// so exit 2 before anything is sent, with the file named.
#[test]
fn ca_file_problems_are_usage_errors() {
    let tmp = TempDir::new();
    let trap = FakeServer::start(|_| Response::not_found());
    write_file(&tmp.join("empty.pem"), b"");
    write_file(&tmp.join("text.pem"), b"not a certificate\n");
    write_file(
        &tmp.join("key.pem"),
        b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
    );
    for name in ["no-such-ca.pem", "empty.pem", "text.pem", "key.pem"] {
        let out = with_ca(&tmp, Path::new(name))
            .arg(trap.reference(&format!("{REPO}:v1")))
            .run();
        let line = out.assert_error(2, name);
        assert!(line.contains("--ca-file"), "{line}");
    }
    assert_eq!(trap.connections(), 0);
}

#[test]
fn token_registry_over_tls() {
    let tokens = TokenService::start();
    let reg = Registry::start_tls_with_tokens(&tokens);
    let files = trurl_files();
    reg.token_pusher(&tokens, REPO)
        .push_package(REPO, "v1", &file_refs(&files));
    // ocidl asks for a token only when challenged, so a token request shows the registry
    // refused it without one, and the pull shows it took the token.
    let tmp = TempDir::new();
    let before = tokens.requests().len();
    with_ca(&tmp, &reg.ca_file())
        .arg(v1(&reg))
        .run()
        .assert_success();
    assert_files(tmp.path(), &files);
    let asked = &tokens.requests()[before..];
    assert_eq!(asked.len(), 1, "one token for the whole package: {asked:?}");
    assert_eq!(
        asked[0].query("scope").as_deref(),
        Some(format!("repository:{REPO}:pull").as_str())
    );
    assert_eq!(asked[0].query("service").as_deref(), Some(SERVICE));
}
