//! `make bench`: ocidl beside curl, skopeo and the oras Python client on a loopback
//! distribution registry (2.8.2, Debian's `docker-registry`). Prints one Markdown report on
//! stdout (progress goes to stderr): the static binary's size and linking, `--version`
//! start-up, download time / throughput / peak RSS per payload and client, two packages
//! pulled over an emulated link (`over_link.rs`: ocidl, sequential curl, 8 connections), and
//! the requests and connections ocidl makes on distribution, a ghcr-like server and a token
//! registry.
//!
//! Measured, not asserted: a miss is shown as `NO` in the targets table, the run still
//! succeeds. A client whose output is wrong is shown as failed.
//!
//! Environment:
//! - `OCIDL_BENCH_ROUNDS` (default 5): timed runs per client for 1 MiB, 100 MiB, the package
//! - `OCIDL_BENCH_ROUNDS_1G` (default 3): timed runs per client for 1 GiB
//! - `OCIDL_BENCH_SKIP_1G=1`: leave the 1 GiB blob out (a quick run)
//! - `OCIDL_BENCH_BIN`: the ocidl binary (default: the static musl build of `make static`)
//! - `OCIDL_BENCH_SKIP_LINK`, `OCIDL_BENCH_ONLY_LINK`, `OCIDL_BENCH_RTT_MS`,
//!   `OCIDL_BENCH_LINK_MBIT`, `OCIDL_BENCH_ROUNDS_LINK`: the rows over an emulated link (see
//!   `over_link.rs`)

// The integration tests' harness, read-only; the bench uses a slice of it.
#[path = "../support/mod.rs"]
#[allow(unused_imports)]
mod support;

mod link;
mod measure;
mod over_link;
mod publish;
mod requests;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use measure::{
    check_file, fresh_dir, measured, median_duration, median_spawn, median_u64, sync_disks, Run,
};
use publish::{publish_generated, single_file_manifest, Blob};
use requests::{ghcr_like, parse_log, token_registry, Tally};
use support::fake::Content;
use support::push::OCI_MANIFEST;
use support::registry::Registry;
use support::{random_bytes, TempDir};

const MIB: u64 = 1 << 20;
const BLOB_REPO: &str = "bench/blob";
const PKG_REPO: &str = "pkgforge/bench/pkg";
const PKG_TAG: &str = "v1";
const PKG_FILES: usize = 100;
const SIZE_TARGET: u64 = 2_000_000;
/// `make tiny`'s x86_64 binary (issue 15).
const TINY_TARGET: u64 = 1_500_000;
const RSS_TARGET_KIB: u64 = 4 * 1024;

/// The oras Python client, as a script the harness writes: `blob HOST REPO DIGEST OUT`
/// (`download_blob`, like `oras blob fetch`) or `pull HOST REFERENCE OUTDIR` (`pull`).
const ORAS_SCRIPT: &str = r#"import sys
import oras.client

mode, host = sys.argv[1], sys.argv[2]
client = oras.client.OrasClient(hostname=host, insecure=True)
if mode == "blob":
    client.download_blob(f"{host}/{sys.argv[3]}", sys.argv[4], sys.argv[5])
else:
    client.pull(target=sys.argv[3], outdir=sys.argv[4])
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Client {
    Ocidl,
    /// ocidl with `--cache`: an empty cache each run, and one already holding the package.
    OcidlCold,
    OcidlWarm,
    Curl,
    CurlSync,
    CurlSha,
    Skopeo,
    Oras,
}

const CLIENTS: [Client; 8] = [
    Client::Ocidl,
    Client::OcidlCold,
    Client::OcidlWarm,
    Client::Curl,
    Client::CurlSync,
    Client::CurlSha,
    Client::Skopeo,
    Client::Oras,
];

impl Client {
    fn name(self, package: bool) -> &'static str {
        match (self, package) {
            (Client::Ocidl, _) => "ocidl",
            (Client::OcidlCold, _) => "ocidl `--cache`, cold",
            (Client::OcidlWarm, _) => "ocidl `--cache`, warm, new directory",
            (Client::Curl, false) => "`curl -o`",
            (Client::Curl, true) => "`curl -o` ×101 URLs, 1 process",
            (Client::CurlSync, _) => "`curl -o && sync FILE`",
            (Client::CurlSha, _) => "`curl \\| sha256sum`",
            (Client::Skopeo, _) => "`skopeo copy` → `dir:`",
            (Client::Oras, false) => "oras-py `download_blob`",
            (Client::Oras, true) => "oras-py `pull`",
        }
    }

    /// Whether the client itself checks the bytes against the digest.
    fn checks_digest(self) -> &'static str {
        match self {
            Client::Ocidl | Client::OcidlCold | Client::OcidlWarm => "yes",
            Client::Curl | Client::CurlSync => "no",
            Client::CurlSha => "prints it (script compares)",
            Client::Skopeo => "yes",
            Client::Oras => "no",
        }
    }

    /// Not run for the package: a single-URL pipe says nothing about a 100-file pull, and
    /// `sync` of 100 files adds nothing the blob rows do not show.
    fn runs_package(self) -> bool {
        !matches!(self, Client::CurlSha | Client::CurlSync)
    }

    /// The cache rows are the package's: what a fleet installing one package again sees.
    fn runs_blob(self) -> bool {
        !matches!(self, Client::OcidlCold | Client::OcidlWarm)
    }
}

#[derive(Clone)]
struct PkgFile {
    title: String,
    blob: Blob,
}

enum Payload {
    Blob {
        label: String,
        tag: String,
        blob: Blob,
    },
    Package {
        files: Vec<PkgFile>,
    },
}

impl Payload {
    fn label(&self) -> String {
        match self {
            Payload::Blob { label, .. } => label.clone(),
            Payload::Package { files } => {
                let total: u64 = files.iter().map(|f| f.blob.size).sum();
                format!("package, {} files, {}", files.len(), human_bytes(total))
            }
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            Payload::Blob { blob, .. } => blob.size,
            Payload::Package { files } => files.iter().map(|f| f.blob.size).sum(),
        }
    }

    fn is_package(&self) -> bool {
        matches!(self, Payload::Package { .. })
    }
}

/// Everything a run needs to know about its surroundings.
struct Env {
    ocidl: PathBuf,
    /// Where the runs' directories are made (and the warm cache kept).
    work: PathBuf,
    registry_host: String,
    /// `None`: not installed (the reason is in `missing`).
    python: Option<String>,
    skopeo: bool,
    oras_script: PathBuf,
    missing: Vec<String>,
}

impl Env {
    fn available(&self, client: Client) -> bool {
        match client {
            Client::Skopeo => self.skopeo,
            Client::Oras => self.python.is_some(),
            _ => true,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.registry_host)
    }

    fn blob_url(&self, repo: &str, digest: &str) -> String {
        format!("{}/v2/{repo}/blobs/{digest}", self.base_url())
    }
}

/// The command line of `client` fetching `payload` into `dir`.
fn command_for(env: &Env, client: Client, payload: &Payload, dir: &Path) -> Vec<String> {
    let s = |v: &str| v.to_string();
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let ocidl = path(env.ocidl.clone());
    let host = env.registry_host.clone();
    match payload {
        Payload::Blob { tag, blob, .. } => {
            let out = path(dir.join("blob"));
            let url = env.blob_url(BLOB_REPO, &blob.digest);
            match client {
                Client::Ocidl => vec![
                    ocidl,
                    s("--plain-http"),
                    s("-q"),
                    format!("{host}/{BLOB_REPO}@{}", blob.digest),
                    s("-o"),
                    out,
                ],
                Client::OcidlCold | Client::OcidlWarm => unreachable!("run for the package only"),
                Client::Curl => vec![s("curl"), s("-sSf"), s("-o"), out, url],
                Client::CurlSync => vec![
                    s("sh"),
                    s("-c"),
                    s(r#"curl -sSf -o "$1" "$2" && sync "$1""#),
                    s("sh"),
                    out,
                    url,
                ],
                Client::CurlSha => vec![
                    s("sh"),
                    s("-c"),
                    s(r#"curl -sSf "$1" | sha256sum"#),
                    s("sh"),
                    url,
                ],
                Client::Skopeo => vec![
                    s("skopeo"),
                    s("copy"),
                    s("--quiet"),
                    s("--src-tls-verify=false"),
                    format!("docker://{host}/{BLOB_REPO}:{tag}"),
                    format!("dir:{}", path(dir.join("skopeo"))),
                ],
                Client::Oras => vec![
                    env.python.clone().unwrap(),
                    path(env.oras_script.clone()),
                    s("blob"),
                    host,
                    s(BLOB_REPO),
                    blob.digest.clone(),
                    out,
                ],
            }
        }
        Payload::Package { files } => {
            let reference = format!("{host}/{PKG_REPO}:{PKG_TAG}");
            let out = path(dir.join("pkg"));
            match client {
                Client::Ocidl => vec![ocidl, s("--plain-http"), s("-q"), reference, s("-o"), out],
                Client::OcidlCold | Client::OcidlWarm => {
                    let cache = match client {
                        Client::OcidlCold => dir.join("cache"),
                        _ => warm_cache(env),
                    };
                    vec![
                        ocidl,
                        s("--plain-http"),
                        s("-q"),
                        s("--cache"),
                        path(cache),
                        reference,
                        s("-o"),
                        out,
                    ]
                }
                Client::Curl => {
                    let mut argv = vec![
                        s("curl"),
                        s("-sSf"),
                        s("--create-dirs"),
                        s("-H"),
                        format!("Accept: {OCI_MANIFEST}"),
                        s("-o"),
                        path(dir.join("manifest.json")),
                        format!("{}/v2/{PKG_REPO}/manifests/{PKG_TAG}", env.base_url()),
                    ];
                    for f in files {
                        argv.push(s("-o"));
                        argv.push(path(dir.join("pkg").join(&f.title)));
                        argv.push(env.blob_url(PKG_REPO, &f.blob.digest));
                    }
                    argv
                }
                Client::Skopeo => vec![
                    s("skopeo"),
                    s("copy"),
                    s("--quiet"),
                    s("--src-tls-verify=false"),
                    format!("docker://{reference}"),
                    format!("dir:{}", path(dir.join("skopeo"))),
                ],
                Client::Oras => vec![
                    env.python.clone().unwrap(),
                    path(env.oras_script.clone()),
                    s("pull"),
                    host,
                    reference,
                    out,
                ],
                Client::CurlSync | Client::CurlSha => unreachable!("not run for the package"),
            }
        }
    }
}

/// The cache the warm rows use, filled once (untimed) with `--cache-only`.
fn warm_cache(env: &Env) -> PathBuf {
    let cache = env.work.join("warm-cache");
    if !cache.join("index.json").is_file() {
        let status = Command::new(&env.ocidl)
            .args(["--plain-http", "-q", "--cache-only", "--cache"])
            .arg(&cache)
            .arg(format!("{}/{PKG_REPO}:{PKG_TAG}", env.registry_host))
            .status()
            .expect("run ocidl to fill the warm cache");
        assert!(status.success(), "filling the warm cache failed");
    }
    cache
}

/// Whether what `client` left in `dir` (or printed) is exactly the payload.
fn verify(client: Client, payload: &Payload, dir: &Path, run: &Run) -> Result<(), String> {
    run.success()?;
    match payload {
        Payload::Blob { blob, .. } => match client {
            Client::CurlSha => {
                let printed = String::from_utf8_lossy(&run.stdout);
                let hex = printed.split_whitespace().next().unwrap_or("");
                if hex == blob.hex() {
                    Ok(())
                } else {
                    Err(format!("sha256sum printed {hex:?}, want {}", blob.hex()))
                }
            }
            Client::Skopeo => check_file(
                &dir.join("skopeo").join(blob.hex()),
                &blob.digest,
                blob.size,
            ),
            _ => check_file(&dir.join("blob"), &blob.digest, blob.size),
        },
        Payload::Package { files } => {
            for f in files {
                let path = match client {
                    Client::Skopeo => dir.join("skopeo").join(f.blob.hex()),
                    _ => dir.join("pkg").join(&f.title),
                };
                check_file(&path, &f.blob.digest, f.blob.size)?;
            }
            Ok(())
        }
    }
}

/// One timed run of `client` on `payload`, in a fresh directory removed afterwards.
fn timed_run(
    env: &Env,
    work: &Path,
    client: Client,
    payload: &Payload,
    timeout: Duration,
) -> Sample {
    let dir = fresh_dir(work, "run");
    let scratch = fresh_dir(work, "scratch");
    if payload.is_package() && client != Client::Skopeo {
        fs::create_dir_all(dir.join("pkg")).unwrap();
    }
    let argv = command_for(env, client, payload, &dir);
    let run = measured(&argv, &dir, &scratch, timeout);
    let verdict = verify(client, payload, &dir, &run);
    if let Err(e) = &verdict {
        eprintln!(
            "bench: {} on {}: {e}",
            client.name(payload.is_package()),
            payload.label()
        );
    }
    let _ = fs::remove_dir_all(&dir);
    // Write-back of this run's output must not land in the next run's time.
    sync_disks();
    Sample {
        wall: run.wall,
        rss_kib: run.rss_kib,
        cpu: run.cpu,
        error: verdict.err(),
    }
}

struct Sample {
    wall: Duration,
    rss_kib: u64,
    cpu: Duration,
    error: Option<String>,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n >= MIB {
        let v = n as f64 / MIB as f64;
        if (v - v.round()).abs() < 0.005 {
            format!("{v:.0} MiB")
        } else {
            format!("{v:.1} MiB")
        }
    } else {
        format!("{:.0} KiB", n as f64 / 1024.0)
    }
}

fn fmt_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn fmt_range(a: Duration, b: Duration) -> String {
    let (a, b) = (a.as_secs_f64(), b.as_secs_f64());
    if b < 1.0 {
        format!("{:.1}–{:.1}", a * 1000.0, b * 1000.0)
    } else {
        format!("{a:.2}–{b:.2}")
    }
}

/// GNU time reports CPU seconds with two decimals.
fn fmt_cpu(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn fmt_rss(kib: u64) -> String {
    let mib = kib as f64 / 1024.0;
    if mib < 10.0 {
        format!("{mib:.2} MiB")
    } else {
        format!("{mib:.0} MiB")
    }
}

fn fmt_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn yes_no(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "**NO**"
    }
}

/// Machine and tool description for the report.
fn machine_lines(env: &Env, oras_version: &str) -> Vec<String> {
    let model = sh("lscpu | sed -n 's/^Model name: *//p' | head -1");
    let cpus = sh("nproc");
    let kernel = sh("uname -r");
    let mem = sh("awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo");
    let fs_type = sh(&format!(
        "df -T {} | awk 'NR==2 {{print $2}}'",
        std::env::temp_dir().display()
    ));
    let distro = sh(". /etc/os-release 2>/dev/null && echo \"$PRETTY_NAME\"");
    let curl = sh("curl --version | head -1 | cut -d' ' -f1-2");
    let skopeo = if env.skopeo {
        sh("skopeo --version")
    } else {
        "skopeo not installed".into()
    };
    let registry = sh("docker-registry --version 2>&1 | head -1");
    let python = match &env.python {
        Some(p) => format!("{} with oras {oras_version}", sh(&format!("{p} --version"))),
        None => "oras-py not installed".into(),
    };
    vec![
        format!(
            "Machine: {model}, {cpus} CPUs, {mem} RAM, Linux {kernel} ({distro}); outputs on {fs_type} ({}).",
            std::env::temp_dir().display()
        ),
        format!("Tools: {curl}; {skopeo}; {python}; registry: {registry}."),
    ]
}

fn main() {
    let rounds = env_usize("OCIDL_BENCH_ROUNDS", 5);
    let rounds_1g = env_usize("OCIDL_BENCH_ROUNDS_1G", 3);
    let skip_1g = std::env::var("OCIDL_BENCH_SKIP_1G").is_ok_and(|v| v == "1");
    let link_settings = over_link::Settings::from_env();
    let only_link = std::env::var("OCIDL_BENCH_ONLY_LINK").is_ok_and(|v| v == "1");
    if only_link && link_settings.is_none() {
        eprintln!("bench: OCIDL_BENCH_ONLY_LINK=1 with OCIDL_BENCH_SKIP_LINK=1 leaves nothing");
        std::process::exit(2);
    }
    let ocidl = std::env::var_os("OCIDL_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/x86_64-unknown-linux-musl/release/ocidl")
        });
    if !ocidl.exists() {
        eprintln!(
            "bench: {} is missing: run `make static` (or `make bench`)",
            ocidl.display()
        );
        std::process::exit(2);
    }
    if !Path::new(measure::GNU_TIME).exists() {
        eprintln!(
            "bench: {} (GNU time) is missing: apt-get install time",
            measure::GNU_TIME
        );
        std::process::exit(2);
    }
    let started = std::time::Instant::now();
    let date = sh("date -u '+%Y-%m-%d %H:%M UTC'");
    let work = TempDir::new();

    // --- Clients -------------------------------------------------------------------------
    let mut missing = Vec::new();
    let skopeo = Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !skopeo {
        missing.push("skopeo: not installed".to_string());
    }
    // The interpreter itself rather than a pyenv shim (a shell script that would add tens
    // of milliseconds to every run).
    let probe = Command::new("python3")
        .args([
            "-c",
            "import sys, oras.version; print(sys.executable); print(oras.version.__version__)",
        ])
        .output();
    let (python, oras_version) = match probe {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let mut lines = text.lines();
            (
                lines.next().map(str::to_string),
                lines.next().unwrap_or("?").to_string(),
            )
        }
        _ => {
            missing.push("oras-py: not installed (`pip install oras`)".to_string());
            (None, String::new())
        }
    };
    let oras_script = work.join("oras_fetch.py");
    fs::write(&oras_script, ORAS_SCRIPT).unwrap();

    // --- Registry and content ------------------------------------------------------------
    eprintln!("bench: starting distribution on 127.0.0.1 and publishing (1 GiB takes a while)");
    let registry = Registry::start();
    let pusher = registry.pusher();
    let mut env = Env {
        ocidl: ocidl.clone(),
        work: work.path().to_path_buf(),
        registry_host: registry.host(),
        python,
        skopeo,
        oras_script,
        missing,
    };
    let base_url = env.base_url();
    // The two packages the link rows pull.
    let link_packages = if link_settings.is_some() {
        over_link::publish(&pusher)
    } else {
        Vec::new()
    };
    if only_link {
        let settings = link_settings.expect("checked at the start");
        let rounds = settings.rounds;
        let link = over_link::run(
            &ocidl,
            work.path(),
            registry.port(),
            &link_packages,
            settings,
        );
        let mut out = vec![format!(
            "Run {date}, {:.0} s in all. Link rows only (`OCIDL_BENCH_ONLY_LINK=1`): {rounds} rounds per client, round-robin.",
            started.elapsed().as_secs_f64()
        )];
        out.extend(machine_lines(&env, &oras_version));
        out.extend([
            String::new(),
            "| target | measured | met |".into(),
            "| --- | --- | --- |".into(),
        ]);
        out.push(link.target_line());
        out.push(String::new());
        out.extend(link.table());
        out.extend([String::new(), "Notes:".into()]);
        out.push(format!("- Binary: `{}`.", ocidl.display()));
        out.extend(link.notes());
        println!("{}", out.join("\n"));
        return;
    }
    pusher.push_blob(BLOB_REPO, b"{}");
    let mut sizes = vec![
        ("1 MiB", MIB, "blob-1m"),
        ("100 MiB", 100 * MIB, "blob-100m"),
    ];
    if !skip_1g {
        sizes.push(("1 GiB", 1024 * MIB, "blob-1g"));
    }
    let mut payloads = Vec::new();
    for (i, (label, size, tag)) in sizes.iter().enumerate() {
        let blob = publish_generated(&base_url, BLOB_REPO, work.path(), *size, 100 + i as u64);
        pusher.push_manifest(
            BLOB_REPO,
            tag,
            OCI_MANIFEST,
            &single_file_manifest("blob", &blob),
        );
        payloads.push(Payload::Blob {
            label: format!("blob {label}"),
            tag: tag.to_string(),
            blob,
        });
    }
    // pkgforge-shaped: OCI manifest, empty config, one titled layer per file. Sizes from
    // 512 B to 512 KiB, like a package's binaries, metadata, checksums and icons.
    let pkg_data: Vec<(String, Vec<u8>)> = (0..PKG_FILES)
        .map(|i| {
            let size = (512usize << (i % 11)) | ((i * 997) % 4096);
            let ext = ["", ".json", ".sig", ".png", ".log"][i % 5];
            (
                format!("file-{i:03}{ext}"),
                random_bytes(size, 1000 + i as u64),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = pkg_data
        .iter()
        .map(|(t, d)| (t.as_str(), d.as_slice()))
        .collect();
    let pushed = pusher.push_package(PKG_REPO, PKG_TAG, &refs);
    let pkg_files: Vec<PkgFile> = pkg_data
        .iter()
        .zip(&pushed.layers)
        .map(|((title, _), d)| PkgFile {
            title: title.clone(),
            blob: Blob {
                digest: d.digest.clone(),
                size: d.size,
            },
        })
        .collect();
    // Small payloads first, the package last (it is the request-count subject too).
    let package_index = 2;
    payloads.insert(
        package_index.min(payloads.len()),
        Payload::Package {
            files: pkg_files.clone(),
        },
    );
    eprintln!(
        "bench: published in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // --- Binary ----------------------------------------------------------------------------
    let size = fs::metadata(&ocidl).unwrap().len();
    // `make tiny`'s x86_64 binary, when built (`make bench` builds it).
    let version = env!("CARGO_PKG_VERSION");
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("dist/ocidl-{version}-x86_64-linux-tiny"));
    let tiny_size = fs::metadata(&tiny).ok().map(|m| m.len());
    let linking = measure::elf_linking(&ocidl);
    let file_desc = measure::file_description(&ocidl);
    let version_out = Command::new(&ocidl).arg("--version").output().unwrap();
    let version_text = String::from_utf8_lossy(&version_out.stdout)
        .trim()
        .to_string();
    let ocidl_s = ocidl.to_string_lossy().into_owned();
    let cwd = work.path();
    eprintln!("bench: start-up");
    // Warm the page cache and the dynamic loader's caches first.
    median_spawn(&[ocidl_s.clone(), "--version".into()], 20, cwd);
    median_spawn(&["/bin/true".into()], 20, cwd);
    let version_wall = median_spawn(&[ocidl_s.clone(), "--version".into()], 200, cwd);
    let true_wall = median_spawn(&["/bin/true".into()], 200, cwd);
    let scratch = fresh_dir(cwd, "scratch");
    let version_rss = median_u64(
        &(0..21)
            .map(|_| {
                measured(
                    &[ocidl_s.clone(), "--version".into()],
                    cwd,
                    &scratch,
                    Duration::from_secs(10),
                )
                .rss_kib
            })
            .collect::<Vec<_>>(),
    );
    let true_timed = median_duration(
        &(0..51)
            .map(|_| {
                measured(
                    &["/bin/true".into()],
                    cwd,
                    &scratch,
                    Duration::from_secs(10),
                )
                .wall
            })
            .collect::<Vec<_>>(),
    );
    let wrapper_overhead = true_timed.saturating_sub(true_wall);

    // --- Downloads -------------------------------------------------------------------------
    // One untimed run of every client first: binaries, Python modules and the registry's
    // blob files into the page cache.
    for client in CLIENTS {
        if env.available(client) && client.runs_blob() {
            for p in &payloads[..1] {
                let s = timed_run(&env, cwd, client, p, Duration::from_secs(120));
                if let Some(e) = s.error {
                    eprintln!("bench: warm-up of {:?} failed: {e}", client);
                }
            }
        }
    }
    let mut results: HashMap<(usize, Client), Vec<Sample>> = HashMap::new();
    for (pi, payload) in payloads.iter().enumerate() {
        let n = if payload.bytes() >= 1 << 30 {
            rounds_1g
        } else {
            rounds
        };
        let timeout = Duration::from_secs(if payload.bytes() >= 1 << 30 { 900 } else { 300 });
        if let Payload::Blob { blob, .. } = payload {
            // The registry's copy of the blob into the page cache.
            let _ = Command::new("curl")
                .args([
                    "-sSf",
                    "-o",
                    "/dev/null",
                    &env.blob_url(BLOB_REPO, &blob.digest),
                ])
                .status();
        }
        let clients: Vec<Client> = CLIENTS
            .into_iter()
            .filter(|c| env.available(*c) && (!payload.is_package() || c.runs_package()))
            .filter(|c| payload.is_package() || c.runs_blob())
            .collect();
        for round in 0..n {
            eprintln!("bench: {} round {}/{n}", payload.label(), round + 1);
            // Round-robin, starting one client later each round, so no client always runs
            // right after the same neighbour.
            for k in 0..clients.len() {
                let client = clients[(k + round) % clients.len()];
                let sample = timed_run(&env, cwd, client, payload, timeout);
                results.entry((pi, client)).or_default().push(sample);
            }
        }
    }

    // --- Over an emulated link --------------------------------------------------------------
    let link_results = link_settings
        .map(|settings| over_link::run(&ocidl, cwd, registry.port(), &link_packages, settings));

    // --- Requests ----------------------------------------------------------------------------
    eprintln!("bench: request counts");
    // (scenario, client, tally, error)
    let mut request_rows: Vec<(String, String, Tally, Option<String>, &'static str)> = Vec::new();
    let count_on_registry = |client: Client, payload: &Payload| -> (Tally, Option<String>) {
        let before = registry.log().len();
        let s = timed_run(&env, cwd, client, payload, Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(300));
        let log = registry.log();
        let entries = parse_log(&log[before.min(log.len())..]);
        (Tally::from_log(&entries), s.error)
    };
    let pkg_payload = Payload::Package {
        files: pkg_files.clone(),
    };
    let small_blob = &payloads[0];
    for client in CLIENTS {
        if !env.available(client) || !client.runs_package() {
            continue;
        }
        let (t, e) = count_on_registry(client, &pkg_payload);
        // The manifest on one connection, the blobs pipelined on one of their own.
        let expect = if client == Client::Ocidl {
            "each blob asked once, on 2 kept-alive connections in all (the manifest's, the pipeline's)"
        } else {
            ""
        };
        request_rows.push((
            format!("distribution 2.8.2, package ({PKG_FILES} files)"),
            client.name(true).into(),
            t,
            e,
            expect,
        ));
    }
    for client in CLIENTS {
        let skip = matches!(client, Client::CurlSync | Client::CurlSha) || !client.runs_blob();
        if !env.available(client) || skip {
            continue;
        }
        let (t, e) = count_on_registry(client, small_blob);
        let expect = if client == Client::Ocidl {
            "1 connection"
        } else {
            ""
        };
        request_rows.push((
            "distribution 2.8.2, blob 1 MiB".into(),
            client.name(false).into(),
            t,
            e,
            expect,
        ));
    }
    // The fakes serve the same package from memory; they close every connection
    // (`Connection: close`), so their connection count is their request count.
    // A second repository's package: three files of its own.
    let other_data: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("other-{i}"),
                random_bytes(4096 + i, 5000 + i as u64),
            )
        })
        .collect();
    let other_refs: Vec<(&str, &[u8])> = other_data
        .iter()
        .map(|(t, d)| (t.as_str(), d.as_slice()))
        .collect();
    let fake_content = |repos: &[&str]| {
        let mut c = Content::new();
        for (i, repo) in repos.iter().enumerate() {
            c.add_package(repo, PKG_TAG, if i == 0 { &refs } else { &other_refs });
        }
        c
    };
    // Runs ocidl with `args` in a fresh directory; checks the package's files under each of
    // `check` (subdirectories).
    let run_fake = |args: Vec<String>, check: &[&str]| -> Option<String> {
        let dir = fresh_dir(cwd, "run");
        let scratch = fresh_dir(cwd, "scratch");
        let mut argv = vec![
            ocidl_s.clone(),
            "--plain-http".to_string(),
            "-q".to_string(),
        ];
        argv.extend(args);
        let run = measured(&argv, &dir, &scratch, Duration::from_secs(120));
        let mut result = run.success().err();
        if result.is_none() {
            'outer: for sub in check {
                for f in &pkg_files {
                    if let Err(e) =
                        check_file(&dir.join(sub).join(&f.title), &f.blob.digest, f.blob.size)
                    {
                        result = Some(e);
                        break 'outer;
                    }
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        result
    };
    // The fake-server scenarios: whether it behaves like ghcr (accepts `Bearer QQ==`) or
    // challenges for a token, which repositories it holds, what ocidl is asked for, which
    // output directories hold the package afterwards, and what should be seen.
    let other = "pkgforge/bench/other";
    let package = format!("{PKG_REPO}:{PKG_TAG}");
    let blob = format!("{PKG_REPO}@{}", pkg_files[0].blob.digest);
    let other_package = format!("{other}:{PKG_TAG}");
    struct Scenario<'a> {
        label: &'static str,
        ghcr: bool,
        repos: &'a [&'a str],
        references: Vec<&'a str>,
        check: &'a [&'a str],
        expected: &'static str,
    }
    let scenarios = [
        Scenario {
            label: "ghcr-like (`--ghcr`, `Bearer QQ==` accepted), package",
            ghcr: true,
            repos: &[PKG_REPO],
            references: vec![&package],
            check: &["a"],
            expected: "1 manifest GET + 100 blob GETs, 0 token",
        },
        Scenario {
            label: "token registry (Bearer challenge), package",
            ghcr: false,
            repos: &[PKG_REPO],
            references: vec![&package],
            check: &["a"],
            expected: "1 challenge, 1 token",
        },
        Scenario {
            // Same scope, so the same token.
            label: "token registry, package + one of its blobs in one run",
            ghcr: false,
            repos: &[PKG_REPO],
            references: vec![&package, &blob],
            check: &[],
            expected: "1 challenge, 1 token",
        },
        Scenario {
            label: "token registry, two packages (two repositories) in one run",
            ghcr: false,
            repos: &[PKG_REPO, other],
            references: vec![&package, &other_package],
            check: &["a"],
            expected: "2 challenges, 2 tokens (one per scope)",
        },
    ];
    for Scenario {
        label,
        ghcr,
        repos,
        references,
        check,
        expected,
    } in scenarios
    {
        let (server, challenges) = match ghcr {
            true => ghcr_like(fake_content(repos), PKG_REPO),
            false => token_registry(fake_content(repos), PKG_REPO),
        };
        let mut args: Vec<String> = if ghcr {
            vec!["--ghcr".into()]
        } else {
            Vec::new()
        };
        args.extend(references.iter().map(|r| server.reference(r)));
        args.extend(["-o".to_string(), "a".to_string()]);
        let error = run_fake(args, check);
        let tally = Tally::from_fake(
            &server.requests(),
            challenges.load(std::sync::atomic::Ordering::SeqCst),
            server.connections(),
        );
        request_rows.push((label.into(), "ocidl".into(), tally, error, expected));
    }
    env.missing.sort();

    // --- Report ------------------------------------------------------------------------------
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("Run {date}, {:.0} s in all. Rounds: {rounds} per client (1 GiB: {rounds_1g}), round-robin.", started.elapsed().as_secs_f64()));
    for l in machine_lines(&env, &oras_version) {
        line(l);
    }
    for m in &env.missing {
        line(format!("Skipped: {m}."));
    }
    line(String::new());

    // Targets.
    let ocidl_median = |pi: usize| -> Option<Duration> {
        let v = results.get(&(pi, Client::Ocidl))?;
        if v.iter().any(|s| s.error.is_some()) {
            return None;
        }
        Some(median_duration(
            &v.iter().map(|s| s.wall).collect::<Vec<_>>(),
        ))
    };
    let median_of = |pi: usize, c: Client| -> Option<Duration> {
        let v = results.get(&(pi, c))?;
        if v.iter().any(|s| s.error.is_some()) {
            return None;
        }
        Some(median_duration(
            &v.iter().map(|s| s.wall).collect::<Vec<_>>(),
        ))
    };
    let max_rss = |pi: usize, c: Client| -> Option<u64> {
        results
            .get(&(pi, c))
            .map(|v| v.iter().map(|s| s.rss_kib).max().unwrap_or(0))
    };
    line("| target | measured | met |".into());
    line("| --- | --- | --- |".into());
    let static_ok = matches!(&linking, Ok(l) if !l.interp);
    line(format!(
        "| static binary ≤ 2,000,000 bytes | {} bytes | {} |",
        fmt_thousands(size),
        yes_no(size <= SIZE_TARGET)
    ));
    line(match tiny_size {
        Some(tiny) => format!(
            "| tiny binary (`make tiny`, x86_64) ≤ 1,500,000 bytes | {} bytes | {} |",
            fmt_thousands(tiny),
            yes_no(tiny <= TINY_TARGET)
        ),
        None => {
            "| tiny binary (`make tiny`, x86_64) ≤ 1,500,000 bytes | not built | **NO** |".into()
        }
    });
    let link_text = match &linking {
        Ok(l) => format!(
            "{}{}, {}",
            l.elf_type,
            if l.interp {
                ", PT_INTERP (dynamic loader)"
            } else {
                ", no PT_INTERP"
            },
            if l.dynamic {
                "PT_DYNAMIC"
            } else {
                "no PT_DYNAMIC"
            }
        ),
        Err(e) => e.clone(),
    };
    line(format!(
        "| statically linked | {link_text} | {} |",
        yes_no(static_ok)
    ));
    line(format!(
        "| `ocidl --version` well under 1 ms wall | {} median of 200 (spawn+wait of `/bin/true`: {}) | {} |",
        fmt_duration(version_wall),
        fmt_duration(true_wall),
        yes_no(version_wall < Duration::from_micros(1000))
    ));
    line(format!(
        "| `ocidl --version` < 1 MiB RSS | {} KiB (median of 21) | {} |",
        version_rss,
        yes_no(version_rss < 1024)
    ));
    let big = payloads.iter().position(|p| p.bytes() >= 1 << 30);
    match big.and_then(|pi| Some((ocidl_median(pi)?, median_of(pi, Client::Curl)?))) {
        Some((o, c)) => {
            let ratio = o.as_secs_f64() / c.as_secs_f64();
            line(format!(
                "| verified 1 GiB pull ≤ 2× `curl -o` | {} vs {} (×{ratio:.2}) | {} |",
                fmt_duration(o),
                fmt_duration(c),
                yes_no(ratio <= 2.0)
            ));
        }
        None => line(
            "| verified 1 GiB pull ≤ 2× `curl -o` | not measured (skipped or failed) | — |".into(),
        ),
    }
    for (pi, p) in payloads.iter().enumerate() {
        if let Payload::Blob { label, .. } = p {
            if label.ends_with("1 MiB") || label.ends_with("1 GiB") {
                if let Some(r) = max_rss(pi, Client::Ocidl) {
                    line(format!(
                        "| peak RSS ≤ 4 MiB, {label} | {} (max of runs) | {} |",
                        fmt_rss(r),
                        yes_no(r <= RSS_TARGET_KIB)
                    ));
                }
            }
        }
    }
    if let Some(link) = &link_results {
        line(link.target_line());
    }
    for (scenario, client, t, e, expect) in &request_rows {
        if client != "ocidl" || expect.is_empty() {
            continue;
        }
        let ok = e.is_none()
            && if scenario.starts_with("distribution") && scenario.contains("package") {
                t.connections <= 2 && t.blob_get == PKG_FILES
            } else if scenario.starts_with("distribution") {
                t.connections == 1
            } else if scenario.starts_with("ghcr") {
                t.token == 0
                    && t.manifest_get == 1
                    && t.blob_get == PKG_FILES
                    && t.total == 1 + PKG_FILES
            } else if scenario.contains("two packages") {
                t.token == 2 && t.status_401 == 2
            } else {
                t.token == 1 && t.status_401 == 1
            };
        line(format!(
            "| {scenario}: {expect} | {}{}, {} connection(s){} | {} |",
            t.breakdown(),
            if t.status_401 > 0 {
                format!("; {} × 401", t.status_401)
            } else {
                String::new()
            },
            t.connections,
            e.as_ref()
                .map(|e| format!("; FAILED: {e}"))
                .unwrap_or_default(),
            yes_no(ok)
        ));
    }
    line(String::new());

    // Downloads.
    line("| payload | client | wall, median (min–max) | MB/s | CPU user+sys | peak RSS | time vs ocidl | checks digest itself |".into());
    line("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |".into());
    for (pi, payload) in payloads.iter().enumerate() {
        let label = payload.label();
        for client in CLIENTS {
            if payload.is_package() && !client.runs_package() {
                continue;
            }
            let name = client.name(payload.is_package());
            if !env.available(client) {
                line(format!("| {label} | {name} | not installed | | | | | |"));
                continue;
            }
            let Some(samples) = results.get(&(pi, client)) else {
                continue;
            };
            let failed: Vec<&String> = samples.iter().filter_map(|s| s.error.as_ref()).collect();
            if !failed.is_empty() {
                line(format!(
                    "| {label} | {name} | **failed {}/{}**: {} | | | | | {} |",
                    failed.len(),
                    samples.len(),
                    measure::truncate(failed[0], 120).replace('|', "\\|"),
                    client.checks_digest()
                ));
                continue;
            }
            let walls: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
            let med = median_duration(&walls);
            let min = *walls.iter().min().unwrap();
            let max = *walls.iter().max().unwrap();
            let rss = median_u64(&samples.iter().map(|s| s.rss_kib).collect::<Vec<_>>());
            let cpu = median_duration(&samples.iter().map(|s| s.cpu).collect::<Vec<_>>());
            let mbs = payload.bytes() as f64 / 1e6 / med.as_secs_f64();
            let ratio = match ocidl_median(pi) {
                Some(o) => format!("×{:.2}", med.as_secs_f64() / o.as_secs_f64()),
                None => "—".into(),
            };
            line(format!(
                "| {label} | {name} | {} ({}) | {mbs:.0} | {} | {} | {ratio} | {} |",
                fmt_duration(med),
                fmt_range(min, max),
                fmt_cpu(cpu),
                fmt_rss(rss),
                client.checks_digest()
            ));
        }
    }
    line(String::new());

    // Over the link.
    if let Some(link) = &link_results {
        for l in link.table() {
            line(l);
        }
        line(String::new());
    }

    // Requests.
    line("| scenario | client | requests | connections | 401 challenges | expected |".into());
    line("| --- | --- | --- | ---: | ---: | --- |".into());
    for (scenario, client, t, e, expect) in &request_rows {
        line(format!(
            "| {scenario} | {client} | {} = {}{} | {} | {} | {} |",
            t.total,
            t.breakdown(),
            e.as_ref()
                .map(|e| format!(
                    " (**failed**: {})",
                    measure::truncate(e, 100).replace('|', "\\|")
                ))
                .unwrap_or_default(),
            t.connections,
            t.status_401,
            if expect.is_empty() { "—" } else { expect }
        ));
    }
    line(String::new());
    line("Notes:".into());
    line(format!("- Binary: `{}` ({version_text}).", ocidl.display()));
    if let Some(d) = &file_desc {
        line(format!("- `file`: {d}."));
    }
    line(format!(
        "- Wall time: the harness's clock around spawn and wait, so it includes GNU time's own fork+exec \
         (about {} here); CPU (`%U`+`%S`, median) and peak RSS (`%M`, median) from GNU time, for a pipeline \
         CPU summed over its processes and RSS of the largest one.",
        fmt_duration(wrapper_overhead)
    ));
    line("- MB/s is 10^6 bytes per second of the median wall time. Each run writes to a fresh directory \
          that is deleted afterwards, then `sync` runs (untimed). ocidl fsyncs every file before renaming it; \
          `curl -o` does not, hence the `curl -o && sync FILE` row.".into());
    line("- The harness checks every run's output against the digest (the `curl | sha256sum` row: the printed \
          hash); a wrong or missing output counts as a failed run.".into());
    line(format!(
        "- `skopeo copy --src-tls-verify=false docker://127.0.0.1:PORT/{BLOB_REPO}:TAG dir:OUT` copies an image, not \
         a blob: for each blob a one-layer OCI manifest (empty config, the blob as its titled layer) is \
         published, and skopeo fetches `/v2/`, the manifest, the config and the layer, checks their digests \
         and writes them under their hex digests with `manifest.json`. For the package it copies all {PKG_FILES} layers."
    ));
    line("- oras-py (PyPI `oras`): `OrasClient(hostname=..., insecure=True)`, `download_blob(...)` for a blob, \
          `pull(target=..., outdir=...)` for the package; it writes the bytes as they arrive and checks no digest. \
          Run with the interpreter itself (`sys.executable`), not a pyenv shim.".into());
    line(format!(
        "- The `curl` package row is a lower bound, not an installer: one process fetching the manifest and the {PKG_FILES} \
         blob URLs known in advance, on one connection, nothing checked."
    ));
    line("- Requests on distribution are counted from its log (`response completed` lines, level info); \
          connections are distinct client ports. The fake servers close every connection (`Connection: close`), \
          so there connections equal requests by construction; reuse shows on distribution only.".into());
    line("- Token rows: the first manifest GET is answered 401 with the challenge and repeated with the token, \
          hence 2 manifest GETs per package.".into());
    if let Some(link) = &link_results {
        for l in link.notes() {
            line(l);
        }
    }
    print!("{out}");
    drop(registry);
}
