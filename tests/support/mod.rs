//! Shared pieces of the integration tests: temp dirs, test data, file-tree assertions.
//!
//! The servers the tests talk to live in the submodules: `registry` starts the real
//! distribution registry, `push` publishes content to it, `fake` is a scripted HTTP server,
//! `script` is a fake registry with one blob scripted attempt by attempt, `pipelining` is a
//! scripted server that keeps its connections open and answers pipelined requests in order
//! (recording which connection each came on), `proxy` is a recording forward proxy (the
//! fake and the proxy read requests with `http`), `socks` a recording SOCKS4/SOCKS5 proxy,
//! `run` runs the `ocidl` binary (to completion, or in the background for signals), `pty`
//! runs it in a real pseudo-terminal, `tls_front` puts TLS (socat) in front of a fake, and
//! `token` is a token service for the registry's token auth.

// Each test module uses a different slice of the harness.
#![allow(dead_code)]

pub mod fake;
pub mod fifo;
pub mod http;
pub mod pipelining;
pub mod proxy;
pub mod pty;
pub mod push;
pub mod registry;
pub mod run;
pub mod script;
pub mod socks;
pub mod tls_front;
pub mod token;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

/// A fresh directory under the system temp dir, removed with everything in it on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Tests run in parallel threads of one process, and several test processes may run at
    /// once: the name combines the process id, a per-process counter and the clock.
    pub fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path =
            std::env::temp_dir().join(format!("ocidl-it-{}-{}-{}", std::process::id(), n, nanos));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(rel)`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates the subdirectory `rel` (and its parents) and returns its path.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Writes `bytes` to `path`, creating parent directories.
pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Gives `path` to user `nobody` (see `run::ocidl_as_nobody`).
pub fn chown_nobody(path: &Path) {
    let status = std::process::Command::new("chown")
        .arg("nobody:nogroup")
        .arg(path)
        .status();
    assert!(status.unwrap().success(), "chown {}", path.display());
}

/// Reads `path`, panicking with the path in the message when it is missing.
pub fn read_file(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Asserts that `path` holds exactly `expected`; the message gives sizes and hashes rather
/// than dumping 200 KiB of bytes.
pub fn assert_file(path: &Path, expected: &[u8]) {
    let got = read_file(path);
    assert!(
        got == expected,
        "{}: got {} bytes (sha256 {}), want {} bytes (sha256 {})",
        path.display(),
        got.len(),
        sha256_hex(&got),
        expected.len(),
        sha256_hex(expected)
    );
}

/// Deterministic pseudo-random bytes (xorshift64*), so tests need no `rand` crate and a failure
/// can be reproduced from the seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of `bytes`: the OCI digest string.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// Every entry under `root`, as sorted `/`-separated paths relative to it. Directories are
/// listed too (so an empty directory left behind shows), symlinks are listed but not followed.
/// Comparing listings before and after a run shows any stray file, temp files included.
pub fn list_tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push(rel);
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// `list_tree` against a literal list, with both listings in the message.
pub fn assert_tree(root: &Path, expected: &[&str]) {
    let got = list_tree(root);
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "unexpected files under {}", root.display());
}

/// ocidl's temp files are dot-files containing `ocidl`; none may survive a run, failed or not.
pub fn assert_no_temp_files(root: &Path) {
    let leftovers: Vec<String> = list_tree(root)
        .into_iter()
        .filter(|rel| {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            name.starts_with('.') && name.contains("ocidl")
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left in {}: {leftovers:?}",
        root.display()
    );
}

/// ocidl's kept downloads (`.NAME.<12 hex>.ocidl-partial`) under `root`, as `list_tree` paths.
pub fn partial_files(root: &Path) -> Vec<String> {
    list_tree(root)
        .into_iter()
        .filter(|rel| rel.ends_with(".ocidl-partial"))
        .collect()
}

/// The name ocidl gives the temporary file of `file` (a name, not a path) with `digest`.
pub fn partial_name(file: &str, digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!(".{file}.{}.ocidl-partial", &hex[..12])
}

/// Polls `condition` every 10 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The size of `path`, 0 when it does not exist.
pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// The files of pkgforge's `trurl` package as the tests publish it: the binary (200 KiB of
/// random bytes), its metadata, a checksum list and a signature. Titles in manifest order.
pub fn trurl_files() -> Vec<(&'static str, Vec<u8>)> {
    let binary = random_bytes(200 * 1024, 42);
    let json =
        br#"{"pkg":"trurl","version":"0.16","ghcr_files":["trurl","trurl.json","CHECKSUM","trurl.sig"]}"#
            .to_vec();
    let sig = random_bytes(566, 43);
    let checksum = format!(
        "{}  trurl\n{}  trurl.json\n{}  trurl.sig\n",
        sha256_hex(&binary),
        sha256_hex(&json),
        sha256_hex(&sig)
    );
    vec![
        ("trurl", binary),
        ("trurl.json", json),
        ("CHECKSUM", checksum.into_bytes()),
        ("trurl.sig", sig),
    ]
}

/// Borrowed view of owned `(title, bytes)` pairs, as the push helpers take them.
pub fn file_refs<'a>(files: &'a [(&'a str, Vec<u8>)]) -> Vec<(&'a str, &'a [u8])> {
    files
        .iter()
        .map(|(title, data)| (*title, data.as_slice()))
        .collect()
}

/// Every `(title, bytes)` is at `dir/title` with exactly those bytes.
pub fn assert_files(dir: &Path, files: &[(&str, Vec<u8>)]) {
    for (title, data) in files {
        assert_file(&dir.join(title), data);
    }
}

/// A port that nothing listens on right now: bind port 0, note the port, release it. Another
/// process could take it in between; callers that start a server retry on a bind failure, and
/// callers that want a dead port accept the tiny chance of a live one.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// The `Authorization` value for Basic credentials.
/// ocidl's own encoder is tested against RFC 4648's vectors in `src/auth.rs`.
pub fn basic_auth(user: &str, pass: &str) -> String {
    ocidl::net::auth::Credentials::basic_pair(user.into(), pass.into()).basic()
}

/// What `--platform` defaults to on this machine, in OCI spelling: the expected pick of an
/// index when no `--platform` is given.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => panic!("no OCI architecture known for {other}"),
    }
}

/// The platform the binary under test defaults to, `os/arch[/variant]`: `OCIDL_TEST_PLATFORM`
/// when a cross-built binary is tested (see `run::ocidl_command`), else this machine's.
pub fn host_platform() -> String {
    match std::env::var("OCIDL_TEST_PLATFORM") {
        Ok(platform) if !platform.is_empty() => platform,
        _ => format!("linux/{}", host_architecture()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_deterministic_and_seeded() {
        assert_eq!(random_bytes(1000, 7), random_bytes(1000, 7));
        assert_ne!(random_bytes(1000, 7), random_bytes(1000, 8));
        assert_eq!(random_bytes(13, 1).len(), 13);
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = TempDir::new();
        let path = dir.path().to_path_buf();
        write_file(&dir.join("a/b/c"), b"x");
        drop(dir);
        assert!(!path.exists());
    }
}
