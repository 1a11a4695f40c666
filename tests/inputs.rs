//! Inputs that once aborted ocidl (issue 8): numbers too large for a flag are usage errors
//! (exit 2, one line, nothing sent), and the largest ones taken work. (SOCKS proxies, which
//! once aborted it too, are with the other proxies in `proxies.rs`.)

use std::sync::Arc;

use crate::support::fake::{Content, FakeServer, Request};
use crate::support::run::pull_plain;
use crate::support::{assert_files, assert_tree, file_refs, random_bytes, TempDir};

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
