//! The OCI image layout as cache and source (issue 11), against distribution and Debian's
//! skopeo: cold and warm caches (blob requests counted on the registry's log), a corrupted
//! entry, two processes on one cache, an offline pull with no registry running, and layouts
//! going both ways between skopeo and ocidl.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::push::IndexKind;
use crate::support::registry::Registry;
use crate::support::run::{ocidl, pull_plain, Output};
use crate::support::{
    assert_files, assert_no_temp_files, digest_of, file_refs, random_bytes, sha256_hex, TempDir,
};

const REPO: &str = "pkgforge/bincache/tool";

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("tool", random_bytes(3 << 20, 101)),
        ("tool.json", br#"{"pkg":"tool"}"#.to_vec()),
        ("CHECKSUM", b"sums\n".to_vec()),
    ]
}

fn registry() -> Registry {
    let reg = Registry::start();
    reg.pusher().push_package(REPO, "v1", &file_refs(&files()));
    reg
}

fn pull(tmp: &TempDir, reg: &Registry, flags: &[&str]) -> Output {
    pull_plain(tmp.path(), flags, &reg.reference(&format!("{REPO}:v1"))).run()
}

/// Every blob in the layout at `dir` hashes to its name, and index.json names `names`.
fn assert_layout(dir: &Path, names: &[String]) {
    let layout: Value = serde_json::from_slice(&fs::read(dir.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    for entry in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(!name.starts_with('.'), "a temporary file is left: {name}");
        assert_eq!(
            sha256_hex(&fs::read(&path).unwrap()),
            name,
            "{name} does not verify"
        );
    }
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let recorded: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        recorded,
        names.iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[test]
fn a_warm_cache_makes_no_blob_request() {
    let reg = registry();
    let tmp = TempDir::new();
    pull(&tmp, &reg, &["--cache", "cache", "-o", "cold"]).assert_success();
    assert_files(&tmp.join("cold"), &files());
    // The three files and the config, which the cache keeps too.
    assert_eq!(reg.blob_gets(), 4);
    let name = format!("{}/{REPO}:v1", reg.host());
    assert_layout(&tmp.join("cache"), std::slice::from_ref(&name));

    let out = pull_plain(
        tmp.path(),
        &["-o", "warm"],
        &reg.reference(&format!("{REPO}:v1")),
    )
    .env("OCIDL_CACHE", tmp.join("cache").to_str().unwrap())
    .run();
    out.assert_success();
    assert_files(&tmp.join("warm"), &files());
    assert_eq!(reg.blob_gets(), 4, "the warm pull asked for a blob");
    assert_layout(&tmp.join("cache"), &[name]);
    assert_no_temp_files(tmp.path());
}

#[test]
fn a_corrupted_cache_entry_is_fetched_again_and_never_installed() {
    let reg = registry();
    let tmp = TempDir::new();
    pull(&tmp, &reg, &["--cache", "cache", "-o", "first"]).assert_success();
    let tool = tmp
        .join("cache/blobs/sha256")
        .join(sha256_hex(&files()[0].1));
    let json = tmp
        .join("cache/blobs/sha256")
        .join(sha256_hex(&files()[1].1));
    let mut bytes = fs::read(&tool).unwrap();
    bytes[12345] ^= 1;
    fs::write(&tool, &bytes).unwrap();
    fs::write(&json, b"{}").unwrap(); // and one of the wrong size
    let before = reg.blob_gets();
    pull(&tmp, &reg, &["--cache", "cache", "-o", "second"]).assert_success();
    assert_files(&tmp.join("second"), &files());
    assert_eq!(reg.blob_gets(), before + 2);
    assert_layout(&tmp.join("cache"), &[format!("{}/{REPO}:v1", reg.host())]);
}

#[test]
fn two_processes_share_one_cache() {
    let reg = registry();
    let tmp = TempDir::new();
    let reference = reg.reference(&format!("{REPO}:v1"));
    let runs: Vec<_> = ["a", "b"]
        .iter()
        .map(|out| {
            ocidl(tmp.path())
                .args(["--plain-http", "--cache", "cache", "-o", out, &reference])
                .spawn()
        })
        .collect();
    for run in runs {
        run.finish(std::time::Duration::from_secs(60))
            .assert_success();
    }
    assert_files(&tmp.join("a"), &files());
    assert_files(&tmp.join("b"), &files());
    assert_layout(&tmp.join("cache"), &[format!("{}/{REPO}:v1", reg.host())]);
}

#[test]
fn a_filled_layout_installs_offline() {
    let tmp = TempDir::new();
    let reg = registry();
    let name = format!("{}/{REPO}:v1", reg.host());
    let out = pull(
        &tmp,
        &reg,
        &["--cache", "usb", "--cache-only", "-o", "nowhere"],
    );
    out.assert_success();
    assert!(!tmp.join("nowhere").exists(), "--cache-only wrote files");
    assert!(out.stderr.contains("cached"), "{}", out.stderr);
    drop(reg); // no registry from here on

    let layout = format!("oci:usb:{name}");
    ocidl(tmp.path())
        .args([&layout, "-o", "out"])
        .run()
        .assert_success();
    assert_files(&tmp.join("out"), &files());
    // By the tag alone, as it is the one name with that tag.
    ocidl(tmp.path())
        .args(["oci:usb:v1", "--include", "tool", "-o", "one"])
        .run()
        .assert_success();
    assert_files(&tmp.join("one"), &files()[..1]);
    let listed = ocidl(tmp.path()).args(["--list", &layout]).run();
    listed.assert_success();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 3);
    let tags = ocidl(tmp.path()).args(["--tags", "oci:usb"]).run();
    assert_eq!(String::from_utf8_lossy(&tags.stdout), format!("{name}\n"));
    let blob = format!("oci:usb@{}", digest_of(&files()[0].1));
    ocidl(tmp.path())
        .args([&blob, "-o", "bin/tool"])
        .run()
        .assert_success();
    assert_eq!(fs::read(tmp.join("bin/tool")).unwrap(), files()[0].1);
    let piped = ocidl(tmp.path()).args([&blob, "-o", "-"]).run();
    piped.assert_success();
    assert_eq!(piped.stdout, files()[0].1);

    // A corrupted layout is caught, not installed.
    let tool = tmp.join("usb/blobs/sha256").join(sha256_hex(&files()[0].1));
    let mut bytes = fs::read(&tool).unwrap();
    bytes[0] ^= 1;
    fs::write(&tool, &bytes).unwrap();
    let out = ocidl(tmp.path()).args([&layout, "-o", "bad"]).run();
    out.assert_error(1, "digest mismatch");
    assert!(!tmp.join("bad/tool").exists());
    let missing = ocidl(tmp.path()).args(["oci:usb:v9", "-o", "x"]).run();
    missing.assert_error(1, "no manifest named \"v9\"");
}

#[test]
fn a_layout_of_an_index_installs_the_platform_it_was_filled_for() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let push = reg.pusher();
    let amd = push.push_package(REPO, "amd", &[("tool", b"amd64 build")]);
    let arm = push.push_package(REPO, "arm", &[("tool", b"arm64 build")]);
    push.push_index(
        REPO,
        "multi",
        IndexKind::Oci,
        &[
            ("linux/amd64", &amd.manifest),
            ("linux/arm64", &arm.manifest),
        ],
    );
    let reference = reg.reference(&format!("{REPO}:multi"));
    pull_plain(
        tmp.path(),
        &["--platform", "linux/arm64", "--cache", "l", "--cache-only"],
        &reference,
    )
    .run()
    .assert_success();
    drop(reg);
    ocidl(tmp.path())
        .args(["--platform", "linux/arm64", "oci:l:multi", "-o", "out"])
        .run()
        .assert_success();
    assert_files(&tmp.join("out"), &[("tool", b"arm64 build".to_vec())]);
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo (is it installed?)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_layout_skopeo_wrote_is_read_by_ocidl() {
    let tmp = TempDir::new();
    let reg = registry();
    let layout = tmp.join("from-skopeo");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/{REPO}:v1", reg.host()),
        &format!("oci:{}:v1", layout.display()),
    ]);
    drop(reg);
    ocidl(tmp.path())
        .args([&format!("oci:{}:v1", layout.display()), "-o", "out"])
        .run()
        .assert_success();
    assert_files(&tmp.join("out"), &files());
}

#[test]
fn a_layout_ocidl_wrote_is_read_by_skopeo() {
    let tmp = TempDir::new();
    let reg = registry();
    pull(&tmp, &reg, &["--cache", "layout", "--cache-only"]).assert_success();
    let name = format!("{}/{REPO}:v1", reg.host());
    drop(reg);
    let out = tmp.join("dir");
    skopeo(&[
        "copy",
        &format!("oci:{}:{name}", tmp.join("layout").display()),
        &format!("dir:{}", out.display()),
    ]);
    for (_, data) in files() {
        assert_eq!(fs::read(out.join(sha256_hex(&data))).unwrap(), data);
    }
    assert!(out.join("manifest.json").is_file());
}

/// A hostile layout's file modes are not installed: a setuid, world-writable blob lands as
/// ocidl's own 0755 (a program) or 0644, and FIFOs, devices and symlinks to them in a layout
/// are errors, not waits or endless streams.
#[test]
fn a_hostile_layout_cannot_set_modes_or_hang() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let tmp = TempDir::new();
    let reg = Registry::start();
    let program = b"\x7fELF pretend program".to_vec();
    reg.pusher()
        .push_package(REPO, "v1", &[("tool", &program), ("data", b"plain data")]);
    pull(&tmp, &reg, &["--cache", "l", "--cache-only"]).assert_success();
    drop(reg);
    let blobs = tmp.join("l/blobs/sha256");
    for data in [&program[..], b"plain data"] {
        let blob = blobs.join(sha256_hex(data));
        fs::set_permissions(&blob, fs::Permissions::from_mode(0o6777)).unwrap();
    }
    ocidl(tmp.path())
        .args(["oci:l:v1", "-o", "out"])
        .run()
        .assert_success();
    let mode = |name: &str| {
        fs::metadata(tmp.join("out").join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("tool") & 0o7022, 0, "tool: {:o}", mode("tool"));
    assert_eq!(mode("data") & 0o7133, 0, "data: {:o}", mode("data"));

    let fifo_digest = digest_of(b"never written");
    let fifo = blobs.join(fifo_digest.trim_start_matches("sha256:"));
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let zero_digest = digest_of(b"zeros");
    symlink(
        "/dev/zero",
        blobs.join(zero_digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    for digest in [&fifo_digest, &zero_digest] {
        let out = ocidl(tmp.path())
            .args([&format!("oci:l@{digest}"), "-o", "-"])
            .timeout(std::time::Duration::from_secs(20))
            .run();
        out.assert_error(1, "not a regular file");
        assert!(out.stdout.is_empty());
    }
    fs::remove_file(tmp.join("l/index.json")).unwrap();
    assert!(Command::new("mkfifo")
        .arg(tmp.join("l/index.json"))
        .status()
        .unwrap()
        .success());
    let out = ocidl(tmp.path())
        .args(["--list", "oci:l:v1"])
        .timeout(std::time::Duration::from_secs(20))
        .run();
    out.assert_error(1, "not a regular file");
}
