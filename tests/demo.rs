//! `make demo`: what ocidl is for, on a laptop with no internet. A local distribution
//! registry gets a package shaped like pkgforge's `trurl` (a runnable binary, its metadata, a
//! checksum list, a signature), and ocidl pulls the package and then the binary's blob, as a
//! user would from ghcr.io. It is a test like any other (`make test` runs it); `make demo`
//! runs it alone with `--nocapture`, which shows each command and what ocidl said.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::registry::Registry;
use crate::support::run::ocidl;
use crate::support::{assert_files, file_refs, sha256_hex, TempDir};

const REPO: &str = "pkgforge/bincache/curl/stunnel/trurl";
const TAG: &str = "8.11.1-x86_64-linux";

#[test]
fn pull_a_pkgforge_package_and_its_blob() {
    let tmp = TempDir::new();
    let registry = Registry::start();
    // A shell script stands in for the binary, so the demo can run what it pulled.
    let binary = b"#!/bin/sh\necho 'trurl 8.11.1 (pulled by ocidl, verified)'\n".to_vec();
    let json = br#"{"pkg":"trurl","version":"8.11.1","ghcr_files":["trurl","trurl.json","CHECKSUM"]}"#.to_vec();
    let checksum = format!("{}  trurl\n{}  trurl.json\n", sha256_hex(&binary), sha256_hex(&json));
    let files = vec![("trurl", binary.clone()), ("trurl.json", json), ("CHECKSUM", checksum.into_bytes())];
    registry.pusher().push_package(REPO, TAG, &file_refs(&files));

    let package = registry.reference(&format!("{REPO}:{TAG}"));
    ocidl(tmp.path()).args(["--plain-http", &package, "-o", "trurl"]).run().assert_success();
    assert_files(&tmp.join("trurl"), &files);

    let blob = registry.reference(&format!("{REPO}@sha256:{}", sha256_hex(&binary)));
    ocidl(tmp.path()).args(["--plain-http", &blob, "-o", "bin/"]).run().assert_success();
    assert_eq!(std::fs::read(tmp.join("bin/trurl")).unwrap(), binary);

    let again = ocidl(tmp.path()).args(["--plain-http", &blob, "-o", "bin/"]).run();
    again.assert_success().assert_stderr_contains("up to date");

    let path = tmp.join("bin/trurl");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ran = Command::new(&path).output().unwrap();
    eprintln!("$ chmod +x bin/trurl && bin/trurl\n{}", String::from_utf8_lossy(&ran.stdout));
    assert!(String::from_utf8_lossy(&ran.stdout).contains("verified"));
}
