//! The link rows: two pkgforge-shaped packages pulled through the emulated link
//! (`link::LinkProxy`, ghcr's 307 to a CDN origin included) by ocidl, by one curl fetching
//! every URL in turn, and by curl on eight parallel connections (soar-dl's default
//! `ghcr_concurrency`), in one run, as ratios. Issue 17's goal is the target row.
//!
//! Environment:
//! - `OCIDL_BENCH_SKIP_LINK=1`: no link rows
//! - `OCIDL_BENCH_ONLY_LINK=1`: only the link rows (a quick look while working on them)
//! - `OCIDL_BENCH_RTT_MS` (default 100): the round trip
//! - `OCIDL_BENCH_LINK_MBIT` (default 100): the shared downstream rate, in Mbit/s
//! - `OCIDL_BENCH_ROUNDS_LINK` (default 3): timed runs per client and package

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::link::{Counts, LinkProxy, Shape};
use crate::measure::{
    self, check_file, fresh_dir, measured, median_duration, median_u64, sync_disks,
};
use crate::publish::Blob;
use crate::support::push::{Pusher, OCI_MANIFEST};
use crate::support::random_bytes;
use crate::{fmt_duration, fmt_range, yes_no, PkgFile};

const REPO: &str = "pkgforge/bench/trurl";
/// The main binary both packages carry: trurl's size class in pkgforge's bincache.
const BINARY: usize = 7_700_000;
/// Connections of the parallel row: soar-dl's default `ghcr_concurrency`.
const PARALLEL: usize = 8;

/// Issue 17's goal for a package: ocidl's time over eight connections' time.
#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    Below(f64),
}

impl Goal {
    fn met(self, ratio: f64) -> bool {
        match self {
            Goal::AtMost(limit) => ratio <= limit,
            Goal::Below(limit) => ratio < limit,
        }
    }
}

/// How the link is shaped and how often each client runs over it.
pub struct Settings {
    pub shape: Shape,
    pub mbit: f64,
    pub rounds: usize,
}

impl Settings {
    /// `None` when `OCIDL_BENCH_SKIP_LINK=1`.
    pub fn from_env() -> Option<Settings> {
        if std::env::var("OCIDL_BENCH_SKIP_LINK").is_ok_and(|v| v == "1") {
            return None;
        }
        let number = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .unwrap_or(default)
        };
        let rtt_ms = number("OCIDL_BENCH_RTT_MS", 100.0);
        let mbit = number("OCIDL_BENCH_LINK_MBIT", 100.0).max(0.1);
        Some(Settings {
            shape: Shape {
                rtt: Duration::from_secs_f64(rtt_ms / 1000.0),
                bytes_per_sec: mbit * 1e6 / 8.0,
            },
            mbit,
            rounds: crate::env_usize("OCIDL_BENCH_ROUNDS_LINK", 3),
        })
    }

    fn rtt_text(&self) -> String {
        format!("{:.0} ms", self.shape.rtt.as_secs_f64() * 1000.0)
    }
}

/// A package published for the link rows.
pub struct LinkPackage {
    label: &'static str,
    tag: &'static str,
    goal: Goal,
    files: Vec<PkgFile>,
}

impl LinkPackage {
    fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.blob.size).sum()
    }
}

/// Publishes the two packages (OCI manifests with titled layers, as pkgforge's `oras push`):
/// pkgforge's trurl shape, one 7.7 MB binary and ten small files of metadata, build log,
/// icons, checksums and signatures (7.8 MB in all); and the same binary with 39 files of
/// 4 KiB.
pub fn publish(pusher: &Pusher) -> Vec<LinkPackage> {
    let binary = random_bytes(BINARY, 4242);
    let small: [(&str, usize); 10] = [
        ("trurl.json", 3_917),
        ("trurl.log", 48_213),
        ("trurl.png", 36_402),
        ("trurl.svg", 6_150),
        ("trurl.desktop", 312),
        ("trurl.version", 7),
        ("SBUILD", 3_105),
        ("SBUILD.sig", 298),
        ("CHECKSUM", 720),
        ("CHECKSUM.sig", 298),
    ];
    let mut trurl = vec![("trurl".to_string(), binary.clone())];
    for (i, (title, size)) in small.iter().enumerate() {
        trurl.push((title.to_string(), random_bytes(*size, 4300 + i as u64)));
    }
    let mut many = vec![("trurl".to_string(), binary)];
    for i in 1..40 {
        many.push((format!("asset-{i:02}.dat"), random_bytes(4096, 4400 + i)));
    }
    [
        (
            "11 files, 7.8 MB (pkgforge's trurl shape)",
            "11-files",
            Goal::AtMost(1.1),
            trurl,
        ),
        (
            "40 files, 7.9 MB (the same binary + 39 × 4 KiB)",
            "40-files",
            Goal::Below(1.0),
            many,
        ),
    ]
    .into_iter()
    .map(|(label, tag, goal, data)| {
        let refs: Vec<(&str, &[u8])> = data
            .iter()
            .map(|(t, d)| (t.as_str(), d.as_slice()))
            .collect();
        let pushed = pusher.push_package(REPO, tag, &refs);
        let files = data
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
        LinkPackage {
            label,
            tag,
            goal,
            files,
        }
    })
    .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LinkClient {
    Ocidl,
    CurlSequential,
    CurlParallel,
}

const CLIENTS: [LinkClient; 3] = [
    LinkClient::Ocidl,
    LinkClient::CurlSequential,
    LinkClient::CurlParallel,
];

impl LinkClient {
    fn name(self) -> &'static str {
        match self {
            LinkClient::Ocidl => "ocidl",
            LinkClient::CurlSequential => "sequential curl (`-L`, 1 process, manifest first)",
            LinkClient::CurlParallel => {
                "8 connections: manifest, then `curl --parallel --parallel-max 8 --parallel-immediate -L`"
            }
        }
    }
}

/// The command line of `client` pulling `package` from `host` into `dir` (files in `pkg/`).
fn command_for(
    ocidl: &Path,
    client: LinkClient,
    host: &str,
    package: &LinkPackage,
    dir: &Path,
) -> Vec<String> {
    let s = |v: &str| v.to_string();
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let manifest_url = format!("http://{host}/v2/{REPO}/manifests/{}", package.tag);
    let accept = format!("Accept: {OCI_MANIFEST}");
    let mut blobs = Vec::new();
    for f in &package.files {
        blobs.push(s("-o"));
        blobs.push(path(dir.join("pkg").join(&f.title)));
        blobs.push(format!("http://{host}/v2/{REPO}/blobs/{}", f.blob.digest));
    }
    match client {
        LinkClient::Ocidl => vec![
            path(ocidl.to_path_buf()),
            s("--plain-http"),
            s("-q"),
            format!("{host}/{REPO}:{}", package.tag),
            s("-o"),
            path(dir.join("pkg")),
        ],
        LinkClient::CurlSequential => {
            let mut argv = vec![
                s("curl"),
                s("-sSf"),
                s("-L"),
                s("-H"),
                accept,
                s("-o"),
                path(dir.join("manifest.json")),
                manifest_url,
            ];
            argv.extend(blobs);
            argv
        }
        LinkClient::CurlParallel => {
            let mut argv = vec![
                s("sh"),
                s("-c"),
                format!(
                    r#"curl -sSf -H "$1" -o manifest.json "$2" && shift 2 && exec curl -sSf -L --parallel --parallel-max {PARALLEL} --parallel-immediate "$@""#
                ),
                s("sh"),
                accept,
                manifest_url,
            ];
            argv.extend(blobs);
            argv
        }
    }
}

/// curl's own error line (`curl: (23) ...`): with `--parallel` the last line of its stderr
/// is a progress meter.
fn curl_reason(stderr: &str) -> Option<String> {
    stderr
        .split(['\r', '\n'])
        .rfind(|l| l.contains("curl: ("))
        .map(|l| format!("curl said: {}", l.trim()))
}

struct Sample {
    wall: Duration,
    counts: Counts,
    error: Option<String>,
}

/// What the link rows measured.
pub struct LinkResults {
    settings: Settings,
    /// (package label, its goal), in the order run
    goals: Vec<(&'static str, Goal)>,
    /// (package label, bytes, client, samples)
    rows: Vec<(&'static str, u64, LinkClient, Vec<Sample>)>,
}

/// Runs every client on every package through a fresh proxy in front of distribution
/// (127.0.0.1:`origin_port`), round-robin as the loopback rows do.
pub fn run(
    ocidl: &Path,
    work: &Path,
    origin_port: u16,
    packages: &[LinkPackage],
    settings: Settings,
) -> LinkResults {
    let proxy = LinkProxy::start(origin_port, settings.shape);
    let host = proxy.registry_host();
    let timeout = Duration::from_secs(300);
    let mut rows = Vec::new();
    for package in packages {
        // The registry's copies into the page cache, straight from distribution.
        for f in &package.files {
            let _ = std::process::Command::new("curl")
                .args(["-sSf", "-o", "/dev/null"])
                .arg(format!(
                    "http://127.0.0.1:{origin_port}/v2/{REPO}/blobs/{}",
                    f.blob.digest
                ))
                .status();
        }
        let mut samples: Vec<Vec<Sample>> = CLIENTS.iter().map(|_| Vec::new()).collect();
        for round in 0..settings.rounds {
            eprintln!(
                "bench: over the link ({} RTT), {} round {}/{}",
                settings.rtt_text(),
                package.label,
                round + 1,
                settings.rounds
            );
            for k in 0..CLIENTS.len() {
                let i = (k + round) % CLIENTS.len();
                let client = CLIENTS[i];
                let dir = fresh_dir(work, "run");
                let scratch = fresh_dir(work, "scratch");
                fs::create_dir_all(dir.join("pkg")).unwrap();
                let argv = command_for(ocidl, client, &host, package, &dir);
                let before = proxy.counts();
                let run = measured(&argv, &dir, &scratch, timeout);
                let counts = proxy.counts().since(before);
                let mut error = run
                    .success()
                    .err()
                    .map(|e| curl_reason(&run.stderr).unwrap_or(e));
                if error.is_none() {
                    error = package.files.iter().find_map(|f| {
                        check_file(&dir.join("pkg").join(&f.title), &f.blob.digest, f.blob.size)
                            .err()
                    });
                }
                if let Some(e) = &error {
                    eprintln!(
                        "bench: {} over the link, {}: {e}",
                        client.name(),
                        package.label
                    );
                }
                let _ = fs::remove_dir_all(&dir);
                sync_disks();
                samples[i].push(Sample {
                    wall: run.wall,
                    counts,
                    error,
                });
            }
        }
        for (client, s) in CLIENTS.into_iter().zip(samples) {
            rows.push((package.label, package.bytes(), client, s));
        }
    }
    LinkResults {
        settings,
        goals: packages.iter().map(|p| (p.label, p.goal)).collect(),
        rows,
    }
}

impl LinkResults {
    fn median(&self, label: &str, client: LinkClient) -> Result<Duration, String> {
        let (.., samples) = self
            .rows
            .iter()
            .find(|(l, _, c, _)| *l == label && *c == client)
            .ok_or("not run")?;
        if let Some(e) = samples.iter().find_map(|s| s.error.as_ref()) {
            return Err(format!("failed: {}", measure::truncate(e, 80)));
        }
        Ok(median_duration(
            &samples.iter().map(|s| s.wall).collect::<Vec<_>>(),
        ))
    }

    /// The targets table's row for issue 17's goal.
    pub fn target_line(&self) -> String {
        let mut measured = Vec::new();
        let mut met = true;
        for (label, goal) in &self.goals {
            let files = label.split(' ').next().unwrap_or("?");
            match (
                self.median(label, LinkClient::Ocidl),
                self.median(label, LinkClient::CurlParallel),
            ) {
                (Ok(o), Ok(p)) => {
                    let ratio = o.as_secs_f64() / p.as_secs_f64();
                    met &= goal.met(ratio);
                    measured.push(format!(
                        "{files} files: {} vs {} (×{ratio:.2})",
                        fmt_duration(o),
                        fmt_duration(p)
                    ));
                }
                (o, p) => {
                    met = false;
                    let why = o.err().or(p.err()).unwrap_or_default();
                    measured.push(format!("{files} files: {why}"));
                }
            }
        }
        format!(
            "| 11-file package within 1.1× of 8 connections, 40-file package faster than 8 connections \
             ({} RTT, {} Mbit/s, blob GETs 307 to a CDN origin) | {} | {} |",
            self.settings.rtt_text(),
            self.settings.mbit,
            measured.join("; ").replace('|', "\\|"),
            yes_no(met)
        )
    }

    /// The link table, one row per package and client.
    pub fn table(&self) -> Vec<String> {
        let mut out = vec![
            "| package, over the link | RTT | client | wall, median (min–max) | MB/s | connections: registry + CDN | registry port: 307s + forwarded | time vs ocidl | time vs 8 connections |".to_string(),
            "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |".to_string(),
        ];
        let rtt = self.settings.rtt_text();
        for (label, bytes, client, samples) in &self.rows {
            let name = client.name();
            let failed: Vec<&String> = samples.iter().filter_map(|s| s.error.as_ref()).collect();
            if !failed.is_empty() {
                out.push(format!(
                    "| {label} | {rtt} | {name} | **failed {}/{}**: {} | | | | | |",
                    failed.len(),
                    samples.len(),
                    measure::truncate(failed[0], 120).replace('|', "\\|")
                ));
                continue;
            }
            let walls: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
            let med = median_duration(&walls);
            let min = *walls.iter().min().unwrap();
            let max = *walls.iter().max().unwrap();
            let mbs = *bytes as f64 / 1e6 / med.as_secs_f64();
            let ratio = |other: LinkClient| match self.median(label, other) {
                Ok(d) => format!("×{:.2}", med.as_secs_f64() / d.as_secs_f64()),
                Err(_) => "—".into(),
            };
            // The same in every run of a client, as a rule; the median shows a stray one.
            let median_of = |f: fn(&Counts) -> usize| {
                median_u64(
                    &samples
                        .iter()
                        .map(|s| f(&s.counts) as u64)
                        .collect::<Vec<_>>(),
                )
            };
            out.push(format!(
                "| {label} | {rtt} | {name} | {} ({}) | {mbs:.1} | {} + {} | {} + {} | {} | {} |",
                fmt_duration(med),
                fmt_range(min, max),
                median_of(|c| c.registry_connections),
                median_of(|c| c.cdn_connections),
                median_of(|c| c.redirects),
                median_of(|c| c.forwarded),
                ratio(LinkClient::Ocidl),
                ratio(LinkClient::CurlParallel),
            ));
        }
        out
    }

    /// What the link rows are, for the report's notes.
    pub fn notes(&self) -> Vec<String> {
        vec![
            format!(
                "- Link rows: a proxy in the harness (`tests/bench/link.rs`) fronts distribution as two origins. \
                 The registry port answers every blob GET with `307` to the same path on the CDN port (keeping \
                 the connection alive, as ghcr.io does) and forwards the rest; the CDN port forwards everything. \
                 Each byte reaches the other side {} / 2 after it was sent, a connection's first request one RTT \
                 later still (its handshake), and all downstream bytes of both ports share one {} Mbit/s link, \
                 first come first served; no loss, no slow start. Plain HTTP.",
                self.settings.rtt_text(),
                self.settings.mbit
            ),
            format!(
                "- Link clients: `ocidl --plain-http -q HOST/{REPO}:TAG -o DIR`; sequential curl is one \
                 `curl -sSf -L` with the manifest URL and then every blob URL (`-o` each), on kept-alive \
                 connections; 8 connections is `curl` for the manifest, then one `curl -sSf -L --parallel \
                 --parallel-max {PARALLEL} --parallel-immediate` with every blob URL (soar-dl's default \
                 `ghcr_concurrency` is 8). Without `--parallel-immediate`, curl 7.88 at times holds the other \
                 transfers back until the first connection's first answer shows it cannot multiplex, once per \
                 origin (about 0.4 s more at 100 ms, in some runs and not others). \
                 Every file is checked against its digest after the run; connections and registry-port \
                 requests are the proxy's counts (medians)."
            ),
        ]
    }
}
