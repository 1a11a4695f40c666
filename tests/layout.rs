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
use crate::support::run::{ocidl, ocidl_as_nobody, pull_plain, Output};
use crate::support::{
    assert_files, assert_no_temp_files, chown_nobody, digest_of, file_refs, random_bytes,
    sha256_hex, TempDir,
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

/// "The cache is an optimisation: failing to read or write it is a note, and the delivery
/// goes on from the origin." Not when looking an entry up fails: what is not a regular file
/// is removed, and when that cannot be done (a directory with something in it, a cache the
/// user may read but not write) the error ends the whole pull, though the registry is up.
#[test]
fn a_cache_entry_that_cannot_be_cleared_is_a_note_not_a_failure() {
    let reg = registry();
    let tmp = TempDir::new();
    pull(&tmp, &reg, &["--cache", "cache", "--cache-only"]).assert_success();
    let entry = tmp
        .join("cache/blobs/sha256")
        .join(sha256_hex(&files()[0].1));
    fs::remove_file(&entry).unwrap();
    fs::create_dir(&entry).unwrap();
    fs::write(entry.join("something"), b"x").unwrap();

    let out = pull(&tmp, &reg, &["--cache", "cache", "-o", "out"]);
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
}

/// The same for a user who may read a cache but not write it: an entry they cannot open is
/// not "missing", it ends the pull.
#[test]
fn a_cache_another_user_cannot_read_is_a_note_not_a_failure() {
    use std::os::unix::fs::PermissionsExt;
    let reg = registry();
    let tmp = TempDir::new();
    pull(&tmp, &reg, &["--cache", "cache", "--cache-only"]).assert_success();
    fs::set_permissions(tmp.join("cache/blobs"), fs::Permissions::from_mode(0o700)).unwrap();
    let out_dir = tmp.mkdir("out");
    chown_nobody(&out_dir);
    let reference = reg.reference(&format!("{REPO}:v1"));
    let out = ocidl_as_nobody(
        tmp.path(),
        &["--plain-http", "--cache", "cache", "-o", "out", &reference],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}: {stderr}",
        out.status.code()
    );
    assert_files(&tmp.join("out"), &files());
}

/// An `index.json` that does not parse is "written afresh": every name other tools recorded
/// in the layout is dropped for ocidl's one. skopeo writes `index.json` in place (truncate,
/// then write), so an ocidl sharing the layout can read it half-written; then the names of
/// everything skopeo put there are gone for good, though their blobs are still there.
#[test]
fn an_index_that_cannot_be_read_keeps_the_names_others_recorded() {
    let reg = registry();
    let tmp = TempDir::new();
    pull(&tmp, &reg, &["--cache", "cache", "--cache-only"]).assert_success();
    let index_path = tmp.join("cache/index.json");
    let mut index: Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let ours = index["manifests"][0].clone();
    let mut others = Vec::new();
    for name in ["example.org/skopeo/a:1", "example.org/skopeo/b:2"] {
        let mut entry = ours.clone();
        entry["annotations"]["org.opencontainers.image.ref.name"] = name.into();
        others.push(entry);
    }
    index["manifests"] = Value::Array(others);
    let whole = serde_json::to_vec_pretty(&index).unwrap();
    // Cut where a writer in the middle of its write would leave it: after both names.
    let cut = whole.len() - 8;
    fs::write(&index_path, &whole[..cut]).unwrap();

    pull(&tmp, &reg, &["--cache", "cache", "-o", "out"]).assert_success();
    let after = String::from_utf8_lossy(&fs::read(&index_path).unwrap()).into_owned();
    for name in ["example.org/skopeo/a:1", "example.org/skopeo/b:2"] {
        assert!(
            after.contains(name),
            "the layout's name {name} is gone from index.json:\n{after}"
        );
    }
}

/// A blob fetched by digest has no size to check an entry against, so the cache's entry is
/// copied whole, whatever its length, before the digest can say it is wrong. A sparse file
/// of a terabyte planted under the blob's name (it costs its owner nothing) is copied into
/// the output directory until the disk is full, on every run: the entry is not removed when
/// the copy fails. Here the copy is capped at 8 MiB by `ulimit -f` so the test cannot fill
/// the disk; the entry is 1 GiB, the blob 3 MiB.
#[test]
fn a_huge_cache_entry_for_a_blob_without_a_size_is_not_copied_whole() {
    let reg = registry();
    let tmp = TempDir::new();
    let tool = &files()[0].1;
    let blob = reg.reference(&format!("{REPO}@{}", digest_of(tool)));
    pull_plain(tmp.path(), &["--cache", "cache", "--cache-only"], &blob)
        .run()
        .assert_success();
    let entry = tmp.join("cache/blobs/sha256").join(sha256_hex(tool));
    fs::remove_file(&entry).unwrap();
    fs::File::create(&entry).unwrap().set_len(1 << 30).unwrap();

    let binary = crate::support::run::ocidl_command();
    let mut ocidl = Command::new("sh");
    ocidl
        .args(["-c", "ulimit -f 16384 && exec \"$@\"", "sh"])
        .arg(binary.get_program())
        .args(binary.get_args())
        .args(["--plain-http", "--cache", "cache", "-o", "out/"])
        .arg(&blob)
        .current_dir(tmp.path())
        .env("HOME", tmp.join(".no-such-home"))
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
    for name in crate::support::run::SCRUBBED_ENV {
        ocidl.env_remove(name);
    }
    let out = ocidl.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{:?}\n{stderr}", out.status);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert_files(&tmp.join("out"), &[("tool", tool.clone())]);
}

/// Two processes sharing one cache is a promise; two *starting* one fails. `Layout::create`
/// finds the directory without `oci-layout` but no longer empty (the other process's
/// `.oci-layout.<pid>.0.tmp` is there, or already its `blobs/`), and refuses it as "not an
/// OCI image layout": `--cache-only` exits 1, a pull goes on without the cache.
#[test]
fn processes_starting_one_new_cache_at_once_all_use_it() {
    let reg = registry();
    let reference = reg.reference(&format!("{REPO}:v1"));
    for round in 0..5 {
        let tmp = TempDir::new();
        let runs: Vec<_> = (0..4)
            .map(|_| {
                ocidl(tmp.path())
                    .args([
                        "--plain-http",
                        "--cache",
                        "cache",
                        "--cache-only",
                        &reference,
                    ])
                    .spawn()
            })
            .collect();
        for run in runs {
            let out = run.finish(std::time::Duration::from_secs(60));
            assert!(
                out.code == 0,
                "round {round}: one of four runs starting the cache at once failed:\n{}",
                out.stderr
            );
        }
    }
}

/// `copy_local` says of an entry whose length is not the descriptor's size: "the descriptor
/// may be the wrong one, so it is not removed"; `try_sources` then removes it all the same.
/// Any source whose manifest names a cached blob with another size (a mirror's, a typo'd
/// registry's) deletes the good entry from a shared cache, though it never served a byte.
#[test]
fn a_descriptor_with_another_size_does_not_remove_a_good_cache_entry() {
    use crate::support::fake::{Content, FakeServer};
    use crate::support::push::{oci_manifest_json, Layer, OCI_MANIFEST};
    let reg = registry();
    let tmp = TempDir::new();
    pull(&tmp, &reg, &["--cache", "cache", "--cache-only"]).assert_success();
    let tool = &files()[0].1;
    let entry = tmp.join("cache/blobs/sha256").join(sha256_hex(tool));

    // Another source's manifest: the same digest, one byte more.
    let mut manifest = oci_manifest_json(&[Layer::file("tool", tool)], &[]);
    manifest["layers"][0]["size"] = (tool.len() as u64 + 1).into();
    let mut content = Content::new();
    content.add_manifest(REPO, "v1", OCI_MANIFEST, &manifest);
    let other = FakeServer::start(move |req| content.serve(req));
    let _ = pull_plain(
        tmp.path(),
        &["--cache", "cache", "-o", "out"],
        &other.reference(&format!("{REPO}:v1")),
    )
    .run();
    assert!(
        entry.is_file(),
        "a manifest that only named the blob with another size removed the cache's good entry"
    );
}

/// Issue 16: the cache is an optimisation. A cache the user may read but not write (another
/// user's, or on a read-only disk) that holds the package serves it, and failing to record
/// the name there is a note, not a failed install.
#[test]
fn a_read_only_cache_that_holds_the_package_serves_it() {
    let reg = registry();
    let tmp = TempDir::new();
    pull(&tmp, &reg, &["--cache", "cache", "--cache-only"]).assert_success();
    let before = reg.blob_gets();
    let out_dir = tmp.mkdir("out");
    chown_nobody(&out_dir);
    let reference = reg.reference(&format!("{REPO}:v1"));
    let out = ocidl_as_nobody(
        tmp.path(),
        &["--plain-http", "--cache", "cache", "-o", "out", &reference],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_files(&out_dir, &files());
    assert_eq!(reg.blob_gets(), before, "the cache did not serve the blobs");
    assert!(stderr.contains("cache cache: "), "no note: {stderr}");
}

/// A cache on a disk that fills: the install goes on, from the registry, with one note.
#[test]
fn a_full_cache_disk_is_a_note_and_the_install_goes_on() {
    let reg = registry();
    let tmp = TempDir::new();
    let cache = tmp.mkdir("cache");
    // 64 KiB: the 3 MiB blob cannot go there.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&cache)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "mount a small tmpfs on {}",
        cache.display()
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&cache);
    let out = pull(&tmp, &reg, &["--cache", "cache", "-o", "out"]);
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    let notes: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("cache cache: "))
        .collect();
    assert_eq!(notes.len(), 1, "{}", out.stderr);
    assert!(
        notes[0].ends_with("going on without writing to it"),
        "{}",
        notes[0]
    );
    assert_no_temp_files(&cache);
    // --cache-only has the cache as its output: there a full disk is a failure.
    let out = pull(&tmp, &reg, &["--cache", "cache", "--cache-only"]);
    out.assert_code(1);
}

/// An index.json past the bound, or that does not parse: the install goes on, the name is not
/// recorded, and the file is left as it was.
#[test]
fn an_index_past_the_bound_or_broken_is_a_note_and_left_alone() {
    let reg = registry();
    for index in [
        {
            // 5 MiB of valid JSON, as a long-lived cache of per-commit names grows.
            let names: Vec<Value> = (0..60_000)
                .map(|i| serde_json::json!({"annotations": {"org.opencontainers.image.ref.name": format!("example.org/ci/app:commit-{i:08}")}}))
                .collect();
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": names}))
                .unwrap()
        },
        b"{\"schemaVersion\": 2, \"manifests\": [".to_vec(),
    ] {
        let tmp = TempDir::new();
        pull(&tmp, &reg, &["--cache", "cache", "--cache-only"]).assert_success();
        fs::write(tmp.join("cache/index.json"), &index).unwrap();
        let out = pull(&tmp, &reg, &["--cache", "cache", "-o", "out"]);
        out.assert_success();
        assert_files(&tmp.join("out"), &files());
        assert!(
            out.stderr.contains("is not recorded in it"),
            "{}",
            out.stderr
        );
        assert_eq!(fs::read(tmp.join("cache/index.json")).unwrap(), index);
    }
}

/// `--cache DIR` takes over no directory that is something else: not an OCI layout and not
/// empty. A pull goes on without it (a note); `--cache-only` fails. Nothing is written there.
#[test]
fn a_cache_that_is_not_a_layout_is_refused_and_left_alone() {
    let reg = registry();
    let tmp = TempDir::new();
    let dir = tmp.mkdir("photos");
    fs::write(dir.join("index.json"), b"{\"my\": \"own file\"}").unwrap();
    let out = pull(&tmp, &reg, &["--cache", "photos", "-o", "out"]);
    out.assert_success();
    assert_files(&tmp.join("out"), &files());
    assert!(
        out.stderr.contains("not an OCI image layout"),
        "{}",
        out.stderr
    );
    pull(&tmp, &reg, &["--cache", "photos", "--cache-only"])
        .assert_error(1, "not an OCI image layout");
    assert_eq!(crate::support::list_tree(&dir), ["index.json"]);
    assert_eq!(
        fs::read(dir.join("index.json")).unwrap(),
        b"{\"my\": \"own file\"}"
    );
}

/// What `index.json` holds that ocidl does not know (top-level fields, other entries and their
/// fields) is kept when ocidl records a name.
#[test]
fn the_index_keeps_what_ocidl_does_not_know() {
    let reg = registry();
    let tmp = TempDir::new();
    pull(&tmp, &reg, &["--cache", "cache", "--cache-only"]).assert_success();
    let path = tmp.join("cache/index.json");
    let mut index: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    index["annotations"] = serde_json::json!({"org.example.owner": "ci"});
    let mut other = index["manifests"][0].clone();
    other["annotations"]["org.opencontainers.image.ref.name"] = "example.org/other:1".into();
    other["platform"] = serde_json::json!({"os": "linux", "architecture": "s390x"});
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(other.clone());
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    pull(&tmp, &reg, &["--cache", "cache", "-o", "out"]).assert_success();
    let after: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(after["annotations"], index["annotations"]);
    assert!(
        after["manifests"].as_array().unwrap().contains(&other),
        "{after}"
    );
}
