//! Docker schema2 manifests, and multi-platform OCI indexes / Docker manifest lists resolved
//! with `--platform` (default: this machine).

use crate::support::push::{Descriptor, IndexKind, Layer, Pusher, DOCKER_LAYER};
use crate::support::registry::Registry;
use crate::support::run::{pull_plain, Output};
use crate::support::{assert_file, assert_files, assert_tree, host_platform, TempDir};

const REPO: &str = "pkgforge/multi";

/// The platforms every index in these tests offers, as (OCI index spelling, Docker list
/// spelling). Docker lists usually leave arm64's variant out; OCI indexes often say v8.
/// The usual default, amd64, is deliberately not first: taking the first entry is wrong.
/// Every platform ocidl is released for is here, so each release binary's default pick is
/// checked (`make test-qemu`).
const PLATFORMS: [(&str, &str); 6] = [
    ("linux/arm/v6", "linux/arm/v6"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/arm/v7", "linux/arm/v7"),
    ("linux/riscv64", "linux/riscv64"),
    ("linux/386", "linux/386"),
    ("linux/amd64", "linux/amd64"),
];

/// What the file `tool` holds in the build for `platform`.
fn build_for(platform: &str) -> Vec<u8> {
    format!("tool built for {platform}\n").into_bytes()
}

/// Pushes one manifest per platform (OCI for `IndexKind::Oci`, Docker schema2 for a list),
/// each with a `tool` file, and an index tagged `v1` over them; returns the index. The OCI
/// index also starts with an attestation manifest (`unknown/unknown`), as `docker buildx`
/// pushes them: never a platform to pick.
fn push_multi_platform(push: &Pusher, kind: IndexKind) -> Descriptor {
    let mut entries = Vec::new();
    if let IndexKind::Oci = kind {
        let statement = Layer::annotated(
            b"{\"_type\":\"https://in-toto.io/Statement/v0.1\"}",
            &[(
                "in-toto.io/predicate-type",
                "https://slsa.dev/provenance/v0.2",
            )],
        )
        .with_media_type("application/vnd.in-toto+json");
        let attestation = push.push_oci_manifest(REPO, "v1-attestation", &[statement], &[]);
        entries.push(("unknown/unknown", attestation.manifest));
    }
    for (oci_platform, docker_platform) in PLATFORMS {
        let tag = format!("v1-{}", oci_platform.replace('/', "-"));
        let tool = build_for(oci_platform);
        let (platform, manifest) = match kind {
            IndexKind::Oci => (
                oci_platform,
                push.push_package(REPO, &tag, &[("tool", &tool)]).manifest,
            ),
            IndexKind::DockerList => {
                let layer = Layer::file("tool", &tool).with_media_type(DOCKER_LAYER);
                (
                    docker_platform,
                    push.push_docker_schema2(REPO, &tag, docker_platform, &[layer])
                        .manifest,
                )
            }
        };
        entries.push((platform, manifest));
    }
    let entries: Vec<(&str, &_)> = entries.iter().map(|(p, m)| (*p, m)).collect();
    push.push_index(REPO, "v1", kind, &entries)
}

/// Pulls `REPO:v1` from `reg` into `tmp`, with `flags` (say `--platform`).
fn pull_v1(tmp: &TempDir, reg: &Registry, flags: &[&str]) -> Output {
    pull_plain(tmp.path(), flags, &reg.reference(&format!("{REPO}:v1"))).run()
}

fn pulls_each_requested_platform(kind: IndexKind) {
    let reg = Registry::start();
    push_multi_platform(&reg.pusher(), kind);
    let cases = [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/riscv64", "linux/riscv64"),
        ("linux/386", "linux/386"),
    ];
    for (requested, built_for) in cases {
        let tmp = TempDir::new();
        let out = pull_v1(&tmp, &reg, &["--platform", requested]);
        out.assert_success();
        assert_file(&tmp.join("tool"), &build_for(built_for));
        assert_tree(tmp.path(), &["tool"]);
    }
}

fn pulls_this_machines_platform_by_default(kind: IndexKind) {
    let reg = Registry::start();
    push_multi_platform(&reg.pusher(), kind);
    let tmp = TempDir::new();
    let out = pull_v1(&tmp, &reg, &[]);
    let platform = host_platform();
    let expected = match platform.as_str() {
        "linux/arm64" => "linux/arm64/v8",
        known if PLATFORMS.iter().any(|(oci, _)| *oci == known) => known,
        other => {
            // The index has no build for this machine: that must be the error.
            out.assert_error(1, "no manifest for platform");
            eprintln!(
                "host architecture {other} is not in the test index; checked the error instead"
            );
            return;
        }
    };
    out.assert_success();
    assert_file(&tmp.join("tool"), &build_for(expected));
}

fn reports_missing_platform_with_the_available_ones(kind: IndexKind) {
    let reg = Registry::start();
    push_multi_platform(&reg.pusher(), kind);
    for requested in ["linux/s390x", "windows/amd64", "linux/arm/v5"] {
        let tmp = TempDir::new();
        let out = pull_v1(&tmp, &reg, &["--platform", requested]);
        let line = out.assert_error(1, "no manifest for platform");
        for available in ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6"] {
            assert!(
                line.contains(available),
                "{requested}: the error does not list {available}: {line}"
            );
        }
        assert_tree(tmp.path(), &[]);
    }
}

#[test]
fn oci_index_pulls_each_requested_platform() {
    pulls_each_requested_platform(IndexKind::Oci);
}

#[test]
fn docker_manifest_list_pulls_each_requested_platform() {
    pulls_each_requested_platform(IndexKind::DockerList);
}

#[test]
fn oci_index_defaults_to_this_machine() {
    pulls_this_machines_platform_by_default(IndexKind::Oci);
}

#[test]
fn docker_manifest_list_defaults_to_this_machine() {
    pulls_this_machines_platform_by_default(IndexKind::DockerList);
}

#[test]
fn oci_index_without_the_platform_lists_the_available_ones() {
    reports_missing_platform_with_the_available_ones(IndexKind::Oci);
}

#[test]
fn docker_manifest_list_without_the_platform_lists_the_available_ones() {
    reports_missing_platform_with_the_available_ones(IndexKind::DockerList);
}

#[test]
fn docker_schema2_manifest_pulls_its_titled_layers() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let files = vec![
        ("bin/tool", b"\x7fELF docker".to_vec()),
        ("tool.json", b"{\"a\":1}".to_vec()),
    ];
    let layers: Vec<Layer> = files
        .iter()
        .map(|(title, data)| Layer::file(title, data).with_media_type(DOCKER_LAYER))
        .collect();
    reg.pusher()
        .push_docker_schema2(REPO, "docker", "linux/amd64", &layers);

    let reference = reg.reference(&format!("{REPO}:docker"));
    pull_plain(tmp.path(), &["-o", "out"], &reference)
        .run()
        .assert_success();
    assert_files(&tmp.join("out"), &files);
    assert_tree(
        tmp.path(),
        &["out", "out/bin", "out/bin/tool", "out/tool.json"],
    );
}

#[test]
fn digest_of_an_index_is_looked_up_as_a_blob() {
    // `@sha256:` always names one blob. distribution 2.8.2 stores manifests as blobs but does
    // not serve them from a repository's blob endpoint (404), so the index digest is simply
    // not found: ocidl must not resolve it as a package, and must leave nothing behind.
    let tmp = TempDir::new();
    let reg = Registry::start();
    let index = push_multi_platform(&reg.pusher(), IndexKind::Oci);
    let reference = reg.reference(&format!("{REPO}@{}", index.digest));
    let out = pull_plain(tmp.path(), &["-o", "index.json"], &reference).run();
    out.assert_error(1, "not found");
    assert_tree(tmp.path(), &[]);
}
