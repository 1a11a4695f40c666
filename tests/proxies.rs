//! Network conventions from the environment: proxies as curl reads them (`HTTP_PROXY` for
//! http URLs, `HTTPS_PROXY` for https, `ALL_PROXY` as the fallback, `NO_PROXY` hosts and
//! domains direct, either case), extra trusted roots from `SSL_CERT_FILE`/`SSL_CERT_DIR`,
//! `--insecure`'s warning, and the `http://` prefix. Proxies are recording proxies on
//! 127.0.0.1 (`support::proxy`); what went through them is asserted.

use std::fs;
use std::sync::Arc;

use crate::support::fake::{Content, FakeServer, Request};
use crate::support::proxy::Proxy;
use crate::support::registry::Registry;
use crate::support::run::{ocidl, Ocidl, Output};
use crate::support::socks::{Connect, SocksProxy};
use crate::support::{assert_files, assert_tree, file_refs, free_port, random_bytes, TempDir};

const REPO: &str = "x/y";

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("y", random_bytes(16 * 1024, 71)),
        ("y.json", b"{}".to_vec()),
    ]
}

/// A plain-HTTP registry (the fake) holding `REPO:t`.
fn plain_registry() -> FakeServer {
    let mut content = Content::new();
    content.add_package(REPO, "t", &file_refs(&files()));
    let content = Arc::new(content);
    FakeServer::start(move |req: &Request| content.serve(req))
}

/// A TLS registry (the real one, its CA in `ca_file()`) holding `REPO:t`.
fn tls_registry() -> Registry {
    let reg = Registry::start_tls();
    reg.pusher().push_package(REPO, "t", &file_refs(&files()));
    reg
}

/// Pulls `reference` into `tmp/out`, failing fast: no retries, a short timeout.
fn pull(tmp: &TempDir, reference: &str) -> Ocidl {
    ocidl(tmp.path()).args(["--retries", "0", "--timeout", "5", "-o", "out", reference])
}

fn assert_pulled(tmp: &TempDir, out: &Output) {
    out.assert_success().assert_stdout_empty();
    assert_files(&tmp.join("out"), &files());
    fs::remove_dir_all(tmp.join("out")).unwrap();
}

/// `pull` in a fresh directory with `flags` and `env` added; asserts it worked.
fn assert_pulls_with(reference: &str, flags: &[&str], env: &[(&str, &str)]) {
    let tmp = TempDir::new();
    let mut cmd = pull(&tmp, reference).args(flags);
    for (name, value) in env {
        cmd = cmd.env(name, value);
    }
    assert_pulled(&tmp, &cmd.run());
}

/// A plain-HTTP pull of `reference` with a fresh proxy in `HTTP_PROXY` and `name` (`NO_PROXY`
/// or `no_proxy`) set to `value`; asserts it worked and returns the proxy, to see whether it
/// was used.
fn pull_with_no_proxy(reference: &str, name: &str, value: &str) -> Proxy {
    let proxy = Proxy::start();
    assert_pulls_with(
        reference,
        &["--plain-http"],
        &[("HTTP_PROXY", &proxy.url()), (name, value)],
    );
    proxy
}

/// The proxy carried requests to `host` and nowhere else.
fn assert_carried(proxy: &Proxy, host: &str, context: &str) {
    let seen = proxy.authorities();
    assert!(
        !seen.is_empty(),
        "{context}: nothing went through the proxy"
    );
    assert!(
        seen.iter().all(|a| a == host),
        "{context}: the proxy carried {seen:?}, want only {host}"
    );
}

fn assert_unused(proxy: &Proxy, context: &str) {
    assert_eq!(
        proxy.connections(),
        0,
        "{context}: the proxy was used: {:?}",
        proxy.seen()
    );
}

// ---- proxies for http:// URLs ----

#[test]
fn http_proxy_carries_plain_http_requests() {
    let server = plain_registry();
    let reference = format!("http://{}", server.reference(&format!("{REPO}:t")));
    for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        let proxy = Proxy::start();
        let before = server.requests().len();
        assert_pulls_with(&reference, &[], &[(name, &proxy.url())]);
        assert_carried(&proxy, &server.host(), name);
        // Everything the registry saw came through the proxy: manifest and blobs.
        let through: Vec<String> = server.requests()[before..]
            .iter()
            .map(|r| r.path().to_string())
            .collect();
        assert!(
            through.iter().any(|p| p.contains("/manifests/"))
                && through.iter().filter(|p| p.contains("/blobs/")).count() >= 2,
            "{name}: {through:?}"
        );
    }
    // curl also takes a proxy without a scheme.
    let proxy = Proxy::start();
    let without_scheme = format!("127.0.0.1:{}", proxy.port());
    assert_pulls_with(&reference, &[], &[("HTTP_PROXY", &without_scheme)]);
    assert_carried(&proxy, &server.host(), "HTTP_PROXY without a scheme");
}

/// ureq 3.5 speaks to HTTP proxies only through `CONNECT` tunnels, also for plain-HTTP
/// URLs (where curl would send `GET http://...`). The README says so; this pins it down, so
/// a change of transport is noticed: the tunnel goes to the registry, and nothing else
/// passes through the proxy in the clear.
#[test]
fn plain_http_goes_through_the_proxy_in_a_connect_tunnel() {
    let server = plain_registry();
    let proxy = Proxy::start();
    assert_pulls_with(
        &server.reference(&format!("{REPO}:t")),
        &["--plain-http"],
        &[("HTTP_PROXY", &proxy.url())],
    );
    assert!(
        proxy.tunnels().contains(&server.host()),
        "no CONNECT {} through the proxy: {:?}",
        server.host(),
        proxy.seen()
    );
    assert_eq!(
        proxy.forwarded(),
        Vec::<String>::new(),
        "{:?}",
        proxy.seen()
    );
}

#[test]
fn https_proxy_is_not_used_for_http_urls() {
    let server = plain_registry();
    let proxy = Proxy::start();
    assert_pulls_with(
        &server.reference(&format!("{REPO}:t")),
        &["--plain-http"],
        &[("HTTPS_PROXY", &proxy.url()), ("https_proxy", &proxy.url())],
    );
    assert_unused(&proxy, "HTTPS_PROXY with an http:// registry");
}

#[test]
fn scheme_proxy_wins_over_all_proxy() {
    let server = plain_registry();
    let (chosen, fallback) = (Proxy::start(), Proxy::start());
    assert_pulls_with(
        &server.reference(&format!("{REPO}:t")),
        &["--plain-http"],
        &[
            ("ALL_PROXY", &fallback.url()),
            ("http_proxy", &chosen.url()),
        ],
    );
    assert_carried(&chosen, &server.host(), "http_proxy");
    assert_unused(&fallback, "ALL_PROXY beside http_proxy");
}

#[test]
fn no_proxy_hosts_go_direct() {
    let server = plain_registry();
    let reference = server.reference(&format!("{REPO}:t"));
    for (name, value) in [
        ("NO_PROXY", "127.0.0.1".to_string()),
        ("no_proxy", "127.0.0.1".to_string()),
        ("NO_PROXY", "*".to_string()),
        // A port on an entry is ignored.
        ("NO_PROXY", "127.0.0.1:1".to_string()),
        ("NO_PROXY", format!("127.0.0.1:{}", server.port())),
        // A list, spaces and all.
        (
            "no_proxy",
            "registry.example, .corp.example ,127.0.0.1".to_string(),
        ),
    ] {
        let proxy = pull_with_no_proxy(&reference, name, &value);
        assert_unused(&proxy, &format!("{name}={value}"));
    }
    // Entries that do not name the host leave the proxy in use.
    for value in [
        "127.0.0.2",
        "localhost",
        "example.com,10.0.0.1",
        "127.0.0.10",
    ] {
        let proxy = pull_with_no_proxy(&reference, "NO_PROXY", value);
        assert_carried(&proxy, &server.host(), &format!("NO_PROXY={value}"));
    }
}

#[test]
fn no_proxy_names_match_whole_domain_labels() {
    // `localhost` is the one name that resolves to 127.0.0.1 without DNS (/etc/hosts).
    let server = plain_registry();
    let reference = format!("localhost:{}/{REPO}:t", server.port());
    let host = format!("localhost:{}", server.port());
    for value in [
        "localhost",
        ".localhost",
        "LOCALHOST",
        "other.example,localhost",
    ] {
        let proxy = pull_with_no_proxy(&reference, "NO_PROXY", value);
        assert_unused(&proxy, &format!("NO_PROXY={value}"));
    }
    // A suffix matches at a dot only: `host` is not a domain `localhost` is in.
    for value in ["host", "calhost", "localhost.example", "127.0.0.1"] {
        let proxy = pull_with_no_proxy(&reference, "NO_PROXY", value);
        assert_carried(&proxy, &host, &format!("NO_PROXY={value}"));
    }
}

// ---- proxies for https:// URLs ----

#[test]
fn https_proxy_tunnels_tls_and_http_proxy_does_not() {
    let reg = tls_registry();
    let ca = reg.ca_file().to_string_lossy().into_owned();
    let reference = reg.reference(&format!("{REPO}:t"));
    for name in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"] {
        let (proxy, http_only) = (Proxy::start(), Proxy::start());
        assert_pulls_with(
            &reference,
            &["--ca-file", &ca],
            &[(name, &proxy.url()), ("HTTP_PROXY", &http_only.url())],
        );
        // Tunnelled: the proxy sees CONNECT host:port and nothing in the clear.
        assert_carried(&proxy, &reg.host(), name);
        assert!(
            proxy.seen().iter().all(|s| s.method == "CONNECT"),
            "{name}: {:?}",
            proxy.seen()
        );
        assert_unused(&http_only, &format!("HTTP_PROXY beside {name}"));
    }
    // NO_PROXY applies to https as well.
    let proxy = Proxy::start();
    assert_pulls_with(
        &reference,
        &["--ca-file", &ca],
        &[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", "127.0.0.1")],
    );
    assert_unused(&proxy, "HTTPS_PROXY with NO_PROXY=127.0.0.1");
}

// ---- trusted roots and --insecure ----

#[test]
fn ssl_cert_file_adds_a_trusted_root() {
    let reg = tls_registry();
    let reference = reg.reference(&format!("{REPO}:t"));
    let tmp = TempDir::new();
    let out = pull(&tmp, &reference)
        .env("SSL_CERT_FILE", &reg.ca_file().to_string_lossy())
        .run();
    assert_pulled(&tmp, &out);

    // Another CA there is not enough, and unreadable or non-PEM files are passed over (the
    // error is the certificate, not the file).
    let other = Registry::start_tls();
    let junk = tmp.join("junk.pem");
    fs::write(&junk, "not a certificate\n").unwrap();
    for file in [
        other.ca_file().to_string_lossy().into_owned(),
        junk.to_string_lossy().into_owned(),
        tmp.join("missing.pem").to_string_lossy().into_owned(),
    ] {
        let out = pull(&tmp, &reference).env("SSL_CERT_FILE", &file).run();
        out.assert_error(1, "certificate");
        assert!(!tmp.join("out/y").exists());
    }
}

#[test]
fn ssl_cert_dir_adds_trusted_roots() {
    let reg = tls_registry();
    let reference = reg.reference(&format!("{REPO}:t"));
    let tmp = TempDir::new();
    let certs = tmp.mkdir("certs");
    fs::copy(reg.ca_file(), certs.join("test-ca.pem")).unwrap();
    fs::write(certs.join("README"), "not a certificate\n").unwrap();
    let empty = tmp.mkdir("empty");
    let missing = tmp.join("missing");
    for dirs in [
        certs.to_string_lossy().into_owned(),
        // A `:`-separated list, with directories that hold nothing or do not exist.
        format!(
            "{}:{}:{}",
            missing.display(),
            empty.display(),
            certs.display()
        ),
    ] {
        let out = pull(&tmp, &reference).env("SSL_CERT_DIR", &dirs).run();
        assert_pulled(&tmp, &out);
    }
    let out = pull(&tmp, &reference)
        .env(
            "SSL_CERT_DIR",
            &format!("{}:{}", empty.display(), missing.display()),
        )
        .run();
    out.assert_error(1, "certificate");
}

#[test]
fn insecure_warns_on_every_run() {
    let reg = tls_registry();
    let reference = reg.reference(&format!("{REPO}:t"));
    let tmp = TempDir::new();
    // Written, then up to date, then a plain-HTTP registry: the warning each time.
    let plain = plain_registry();
    for (reference, plain_http) in [
        (reference.clone(), false),
        (reference.clone(), false),
        (plain.reference(&format!("{REPO}:t")), true),
    ] {
        let mut cmd = ocidl(tmp.path()).args(["--insecure", "-o", "out", &reference]);
        if plain_http {
            cmd = cmd.arg("--plain-http");
        }
        let out = cmd.run();
        out.assert_success().assert_stdout_empty();
        assert_files(&tmp.join("out"), &files());
        let warnings: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("--insecure"))
            .collect();
        assert_eq!(warnings.len(), 1, "{reference}: stderr:\n{}", out.stderr);
        assert!(warnings[0].starts_with("ocidl: "), "{}", warnings[0]);
    }
    // Without it, the same registry is refused: the flag is what made it work.
    let tmp = TempDir::new();
    pull(&tmp, &reference).run().assert_error(1, "certificate");
}

// ---- the http:// prefix ----

#[test]
fn http_prefix_means_plain_http() {
    let server = plain_registry();
    let tmp = TempDir::new();
    let out = pull(
        &tmp,
        &format!("http://{}", server.reference(&format!("{REPO}:t"))),
    )
    .run();
    assert_pulled(&tmp, &out);
    let blob = crate::support::digest_of(&files()[0].1);
    let out = ocidl(tmp.path())
        .args([
            "-o",
            "-",
            &format!("http://{}", server.reference(&format!("{REPO}@{blob}"))),
        ])
        .run();
    out.assert_success();
    assert!(out.stdout == files()[0].1, "stdout is not the blob");

    // Without it (or with https://) the same registry is spoken to with TLS, and fails.
    let before = server.requests().len();
    for reference in [
        server.reference(&format!("{REPO}:t")),
        format!("https://{}", server.reference(&format!("{REPO}:t"))),
    ] {
        let out = pull(&tmp, &reference).run();
        assert_eq!(out.code, 1, "{reference}: {}", out.stderr);
    }
    assert_eq!(
        server.requests().len(),
        before,
        "plain HTTP requests without http:// or --plain-http"
    );
}

// ---- SOCKS proxies (`socks5://`, `socks5h://`, `socks4://`, `socks4a://`), through ureq's
// own client: they carry the pull, and one that is not there is an error, not an abort.

/// Pulls `reference` into `tmp/out` with `NAME=VALUE` in the environment.
fn pull_via(
    tmp: &TempDir,
    reference: &str,
    flags: &[&str],
    env: (&str, &str),
) -> crate::support::run::Output {
    ocidl(tmp.path())
        .args(["--retries", "0", "--timeout", "10", "-o", "out"])
        .args(flags)
        .arg(reference)
        .env(env.0, env.1)
        .run()
}

fn connect(version: &'static str, address_type: &'static str, target: &str) -> Connect {
    Connect {
        version,
        address_type,
        target: target.to_string(),
    }
}

/// Every CONNECT went to `want` (one kind of request, several connections).
fn assert_all(proxy: &SocksProxy, want: &Connect) {
    let seen = proxy.seen();
    assert!(!seen.is_empty(), "nothing went through the proxy");
    assert!(
        seen.iter().all(|c| c == want),
        "{seen:?}, want all {want:?}"
    );
}

#[test]
fn socks_proxies_carry_a_plain_http_pull() {
    for (variable, scheme, version, address_type) in [
        ("HTTP_PROXY", "socks5", "socks5", "ipv4"),
        // An address needs no resolving: socks5h and socks4a send it as it is.
        ("http_proxy", "socks5h", "socks5", "ipv4"),
        ("ALL_PROXY", "socks5", "socks5", "ipv4"),
        ("all_proxy", "socks5h", "socks5", "ipv4"),
        ("ALL_PROXY", "socks4", "socks4", "ipv4"),
        ("HTTP_PROXY", "socks4a", "socks4", "ipv4"),
    ] {
        let server = plain_registry();
        let proxy = SocksProxy::start();
        let tmp = TempDir::new();
        let out = pull_via(
            &tmp,
            &format!("http://{}", server.reference(&format!("{REPO}:t"))),
            &[],
            (variable, &proxy.url(scheme)),
        );
        out.assert_success().assert_stdout_empty();
        assert_files(&tmp.join("out"), &files());
        assert_tree(tmp.path(), &["out", "out/y", "out/y.json"]);
        // Each request of the pull came through the proxy, to the registry.
        assert_all(&proxy, &connect(version, address_type, &server.host()));
        assert_eq!(
            proxy.seen().len(),
            server.connections(),
            "{variable}={scheme}"
        );
        assert!(server.requests().len() >= 3, "{:?}", server.requests());
    }
}

#[test]
fn a_socks_proxy_that_resolves_names_reaches_localhost() {
    // socks5h and socks4a hand the name to the proxy, which resolves it.
    for (scheme, version) in [("socks5h", "socks5"), ("socks4a", "socks4a")] {
        let server = plain_registry();
        let proxy = SocksProxy::start();
        let tmp = TempDir::new();
        let reference = format!("http://localhost:{}/{REPO}:t", server.port());
        let out = pull_via(&tmp, &reference, &[], ("ALL_PROXY", &proxy.url(scheme)));
        out.assert_success();
        assert_files(&tmp.join("out"), &files());
        let target = format!("localhost:{}", server.port());
        assert_all(&proxy, &connect(version, "domain", &target));
    }
}

#[test]
fn socks_proxies_carry_an_https_pull() {
    let reg = Registry::start_tls();
    reg.pusher().push_package(REPO, "t", &file_refs(&files()));
    let ca = reg.ca_file();
    let ca = ca.to_str().unwrap();
    for (variable, scheme, version, address_type) in [
        ("HTTPS_PROXY", "socks5", "socks5", "ipv4"),
        ("https_proxy", "socks5h", "socks5", "ipv4"),
        ("ALL_PROXY", "socks4", "socks4", "ipv4"),
    ] {
        let proxy = SocksProxy::start();
        let tmp = TempDir::new();
        let out = pull_via(
            &tmp,
            &reg.reference(&format!("{REPO}:t")),
            &["--ca-file", ca],
            (variable, &proxy.url(scheme)),
        );
        out.assert_success().assert_stdout_empty();
        assert_files(&tmp.join("out"), &files());
        assert_all(&proxy, &connect(version, address_type, &reg.host()));
    }
}

#[test]
fn a_socks_proxy_that_is_not_there_is_an_error_not_an_abort() {
    let server = plain_registry();
    let reference = format!("http://{}", server.reference(&format!("{REPO}:t")));
    let dead = free_port();
    for scheme in ["socks5", "socks5h", "socks4", "socks4a"] {
        let tmp = TempDir::new();
        let url = format!("{scheme}://127.0.0.1:{dead}");
        let out = pull_via(&tmp, &reference, &[], ("ALL_PROXY", &url));
        out.assert_code(1).assert_stdout_empty();
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("ocidl: "))
            .collect();
        assert_eq!(errors.len(), 1, "{scheme}: {}", out.stderr);
        assert_tree(tmp.path(), &[]);
    }
    assert_eq!(server.connections(), 0);
}
