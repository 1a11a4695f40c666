//! Inputs that once aborted ocidl (issue 8): numbers too large for a flag are usage errors
//! (exit 2, one line, nothing sent), the largest ones taken work, and SOCKS proxies
//! (`socks5://`, `socks5h://`, `socks4://`, `socks4a://`, from `HTTP_PROXY`, `HTTPS_PROXY`
//! or `ALL_PROXY`) carry the pull instead of panicking inside ureq.

use std::sync::Arc;

use crate::support::fake::{Content, FakeServer, Request};
use crate::support::registry::Registry;
use crate::support::run::{ocidl, pull_plain};
use crate::support::socks::{Connect, SocksProxy};
use crate::support::{assert_files, assert_tree, file_refs, free_port, random_bytes, TempDir};

const REPO: &str = "pkg/tool";

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("tool", random_bytes(100 * 1024, 31)),
        ("tool.json", br#"{"pkg":"tool"}"#.to_vec()),
    ]
}

fn registry() -> FakeServer {
    let mut content = Content::new();
    content.add_package(REPO, "t", &file_refs(&files()));
    let content = Arc::new(content);
    FakeServer::start(move |req: &Request| content.serve(req))
}

#[test]
fn numbers_too_large_for_a_flag_are_usage_errors() {
    let server = registry();
    let reference = server.reference(&format!("{REPO}:t"));
    let range = |flag: &str, n: &str| format!("{flag} takes 1 to 86400 seconds, not {n}");
    let whole = |flag: &str, n: &str| format!("{flag} takes a whole number, not '{n}'");
    let mut cases = Vec::new();
    for flag in ["--timeout", "--speed-time"] {
        for n in [
            "18446744073709551615",
            "9223372036854775808",
            "86401",
            "4294967296",
        ] {
            cases.push((flag, n.to_string(), range(flag, n)));
        }
        for n in [
            "18446744073709551616",
            "99999999999999999999999999999",
            "-1",
            "1e9",
            "0x10",
        ] {
            cases.push((flag, n.to_string(), whole(flag, n)));
        }
    }
    for n in [
        "4294967296",
        "18446744073709551615",
        "99999999999999999999",
        "-1",
    ] {
        cases.push(("--retries", n.to_string(), whole("--retries", n)));
    }
    for n in [
        "18446744073709551616",
        "340282366920938463463374607431768211456",
        "-5",
    ] {
        cases.push(("--speed-limit", n.to_string(), whole("--speed-limit", n)));
    }
    for (flag, value, says) in cases {
        let tmp = TempDir::new();
        let out = pull_plain(tmp.path(), &[flag, &value], &reference).run();
        out.assert_code(2).assert_stdout_empty();
        assert_eq!(
            out.stderr,
            format!("ocidl: {says} (see 'ocidl --help')\n"),
            "{flag} {value}"
        );
        assert_tree(tmp.path(), &[]);
    }
    assert_eq!(server.connections(), 0, "{:?}", server.requests());
}

#[test]
fn the_largest_numbers_taken_work() {
    let server = registry();
    let reference = server.reference(&format!("{REPO}:t"));
    for flags in [
        &["--timeout", "86400", "--speed-time", "86400"][..],
        &["--retries", "4294967295"],
        &["--speed-limit", "18446744073709551615"],
        &["--speed-limit", "0", "--timeout", "1", "--speed-time", "1"],
    ] {
        let tmp = TempDir::new();
        let mut all = flags.to_vec();
        all.extend(["-o", "out"]);
        pull_plain(tmp.path(), &all, &reference)
            .run()
            .assert_success();
        assert_files(&tmp.join("out"), &files());
    }
}

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
        let server = registry();
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
        assert_tree(tmp.path(), &["out", "out/tool", "out/tool.json"]);
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
        let server = registry();
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
    let server = registry();
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
