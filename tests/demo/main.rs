//! `make demo`: ocidl's main job on a machine with no internet, shown as a terminal session.
//!
//! A local CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1 gets a package
//! shaped like pkgforge's `trurl` (a runnable program, its metadata, a checksum list, a
//! signature), pushed the way `oras push` does. Then the `ocidl` that cargo built (the release
//! binary under `make demo`) pulls the package, fetches the program's blob by digest, finds it
//! `up to date` a second time, and lists the package. Each command is printed with what ocidl
//! printed; each result is checked, and a wrong one ends the demo with exit status 1. The
//! registry and the temporary directory are removed at the end.
//!
//! It is a test target without libtest (`harness = false`), so `make test` runs it too.

#[path = "../support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::path::Path;
use std::process::{Command, ExitCode};

use support::registry::Registry;
use support::run::SCRUBBED_ENV;
use support::{file_refs, sha256_hex, TempDir};

const REPO: &str = "pkgforge/bincache/curl/stunnel/trurl";
const TAG: &str = "8.11.1-x86_64-linux";

fn main() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<(), String> {
    let registry = Registry::start();
    let dir = TempDir::new();
    let files = package();
    registry
        .pusher()
        .push_package(REPO, TAG, &file_refs(&files));
    let host = registry.host();
    let binary = env!("CARGO_BIN_EXE_ocidl");
    let size = std::fs::metadata(binary).map_or(0, |m| m.len());
    println!("# ocidl is {binary} ({size} bytes).");
    println!("# A local registry at {host} holds a pkgforge-shaped package, pushed as oras does:");
    println!("# {REPO}:{TAG} (trurl, trurl.json, CHECKSUM, trurl.sig).");
    println!("# Every command runs in a temporary directory, removed at the end.");

    let package = format!("{host}/{REPO}:{TAG}");
    run(dir.path(), &["--plain-http", &package, "-o", "trurl"])?;
    for (title, bytes) in &files {
        let got = std::fs::read(dir.join("trurl").join(title)).unwrap_or_default();
        check(
            &got == bytes,
            format!("trurl/{title} is not what was pushed"),
        )?;
    }
    shell(dir.path(), "ls -l trurl")?;

    let program = &files[0].1;
    let blob = format!("{host}/{REPO}@sha256:{}", sha256_hex(program));
    run(dir.path(), &["--plain-http", &blob, "-o", "bin/"])?;
    let got = std::fs::read(dir.join("bin/trurl")).unwrap_or_default();
    check(
        &got == program,
        "bin/trurl is not the pushed program".into(),
    )?;
    let said = shell(dir.path(), "bin/trurl --version")?;
    check(said.contains("verified"), "bin/trurl did not run".into())?;

    let again = run(dir.path(), &["--plain-http", &blob, "-o", "bin/"])?;
    check(
        again.contains("up to date"),
        "the second fetch was not up to date".into(),
    )?;

    let listed = run(dir.path(), &["--plain-http", "--list", &package])?;
    for (title, bytes) in &files {
        let line = format!("{title}\t{}\tsha256:{}", bytes.len(), sha256_hex(bytes));
        check(listed.contains(&line), format!("--list lacks {line:?}"))?;
    }
    println!("\n# Done: every file above was checked against its sha256 before it got its name.");
    Ok(())
}

/// The package: a shell script stands in for the binary, so the demo can run what it pulled.
fn package() -> Vec<(&'static str, Vec<u8>)> {
    let program = b"#!/bin/sh\necho 'trurl 8.11.1 (pulled by ocidl, verified)'\n".to_vec();
    let json = br#"{"pkg":"trurl","version":"8.11.1","ghcr_files":["trurl","trurl.json","CHECKSUM","trurl.sig"]}"#.to_vec();
    let checksum = format!(
        "{}  trurl\n{}  trurl.json\n",
        sha256_hex(&program),
        sha256_hex(&json)
    );
    let signature = b"untrusted comment: minisign signature (demo)\n".to_vec();
    vec![
        ("trurl", program),
        ("trurl.json", json),
        ("CHECKSUM", checksum.into_bytes()),
        ("trurl.sig", signature),
    ]
}

/// Runs ocidl in `dir` as a user would type it, prints the session, and returns what it
/// printed (stdout, then stderr). A non-zero exit is a failed demo.
fn run(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocidl"));
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    // No credentials of the user's own docker or podman login.
    let home = dir.join(".home");
    command
        .env("HOME", &home)
        .env("DOCKER_CONFIG", home.join(".docker"));
    let output = command
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run ocidl: {e}"))?;
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    println!("\n$ ocidl {}", args.join(" "));
    print!("{said}");
    check(
        output.status.success(),
        format!("ocidl exited with {}", output.status),
    )?;
    Ok(said)
}

/// A shell command in `dir`, shown the same way.
fn shell(dir: &Path, line: &str) -> Result<String, String> {
    let output = Command::new("sh")
        .args(["-c", line])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let said = String::from_utf8_lossy(&output.stdout).to_string();
    println!("\n$ {line}");
    print!("{said}");
    check(
        output.status.success(),
        format!("{line}: {}", output.status),
    )?;
    Ok(said)
}

fn check(ok: bool, what: String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what)
    }
}
