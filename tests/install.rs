//! install.sh against real registries: a release published by `.ci/publish` (the script
//! behind `make publish`), installed by busybox's sh with only busybox applets on PATH (its
//! wget), and with curl beside them, including the token flow over TLS. The binaries are
//! stand-ins (install.sh never runs them); `make test-install` installs the real ones.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::fake::{FakeServer, Request, Response};
use crate::support::registry::Registry;
use crate::support::script::cut;
use crate::support::token::TokenService;
use crate::support::{
    assert_file, assert_tree, list_tree, random_bytes, sha256_hex, write_file, TempDir,
};

const VERSION: &str = "9.8.7";

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// What `make cross` would leave in dist/ for these architectures: a stand-in binary each and
/// SHA256SUMS. Returns each architecture's bytes.
fn fake_release(dist: &Path, archs: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut sums = String::new();
    let mut release = Vec::new();
    for (n, arch) in archs.iter().enumerate() {
        let mut bytes = b"\x7fELF stand-in for ".to_vec();
        bytes.extend_from_slice(arch.as_bytes());
        bytes.extend(random_bytes(64 * 1024, n as u64));
        let name = format!("ocidl-{VERSION}-{arch}-linux");
        write_file(&dist.join(&name), &bytes);
        sums.push_str(&format!("{}  {name}\n", sha256_hex(&bytes)));
        release.push((arch.to_string(), bytes));
    }
    write_file(&dist.join("SHA256SUMS"), sums.as_bytes());
    release
}

/// `.ci/publish REGISTRY VERSION TAG x86_64=linux/amd64 aarch64=linux/arm64 armv7=linux/arm/v7`.
fn publish(dist: &Path, registry: &str, ca: Option<&Path>) -> Output {
    let mut command = Command::new(repo_file(".ci/publish"));
    command
        .args([registry, VERSION, "v1"])
        .args([
            "x86_64=linux/amd64",
            "aarch64=linux/arm64",
            "armv7=linux/arm/v7",
        ])
        .env("DIST", dist)
        .env_remove("REGISTRY_USER");
    if let Some(ca) = ca {
        command.env("CURL_CA_BUNDLE", ca);
    }
    let out = command.output().expect("run .ci/publish");
    assert!(
        out.status.success(),
        ".ci/publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A directory of busybox's applets (and curl too, `with_curl`): the only PATH install.sh gets.
fn applets(tmp: &TempDir, with_curl: bool) -> PathBuf {
    let dir = tmp.mkdir(if with_curl {
        "path-curl"
    } else {
        "path-busybox"
    });
    let busybox = which("busybox");
    let list = Command::new(&busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        std::os::unix::fs::symlink(&busybox, dir.join(applet)).unwrap();
    }
    if with_curl {
        std::os::unix::fs::symlink(which("curl"), dir.join("curl")).unwrap();
    }
    dir
}

fn which(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{name} is not installed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// busybox's sh about to read install.sh from stdin as `install.sh -d DIR IMAGE`, with `path`
/// as PATH and `env` added. `setup` (shell commands) runs first, in the shell that then
/// `exec`s the one reading the script: limits the script inherits, as from a user's shell.
fn install_command(
    path: &Path,
    dir: &Path,
    image: &str,
    env: &[(&str, &str)],
    setup: &str,
) -> Command {
    let busybox = which("busybox");
    let mut command = Command::new(&busybox);
    if setup.is_empty() {
        command.args(["sh", "-s", "--"]);
    } else {
        let exec = format!("{setup}; exec \"$0\" sh -s -- \"$@\"");
        command.args(["sh", "-c", &exec]).arg(&busybox);
    }
    command
        .arg("-d")
        .arg(dir)
        .arg(image)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.join("no-home"))
        .envs(env.iter().copied());
    command
}

fn show(dir: &Path, image: &str, env: &[(&str, &str)], out: &Output) {
    eprintln!(
        "$ install.sh -d {} {image} {env:?}\n[exit {:?}]\n{}{}",
        dir.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `install.sh -d DIR IMAGE` piped into busybox's sh, with `path` as PATH and `env` added.
fn install(path: &Path, dir: &Path, image: &str, env: &[(&str, &str)]) -> Output {
    let script = fs::File::open(repo_file("install.sh")).unwrap();
    let out = install_command(path, dir, image, env, "")
        .stdin(script)
        .output()
        .unwrap();
    show(dir, image, env, &out);
    out
}

/// install.sh's text, as users pipe it into sh.
fn install_script() -> String {
    fs::read_to_string(repo_file("install.sh")).unwrap()
}

/// install.sh with its time cap per request (`time_document=`, `time_binary=`) set to
/// `seconds`: the same script, in the time a test can wait.
fn with_time_caps(seconds: u64) -> String {
    let mut found = 0;
    let mut text = String::new();
    for line in install_script().lines() {
        match line.split_once('=') {
            Some((name @ ("time_document" | "time_binary"), _)) => {
                found += 1;
                text.push_str(&format!("{name}={seconds}\n"));
            }
            _ => text.push_str(&format!("{line}\n")),
        }
    }
    assert_eq!(
        found, 2,
        "install.sh sets no time_document= and time_binary="
    );
    text
}

/// What `install_watched` saw of a run.
struct Watched {
    out: Output,
    /// The largest file seen under the install directory while it ran.
    peak_file: u64,
    /// The most bytes seen under it at one time.
    peak_total: u64,
    took: Duration,
}

/// Past these a run is stopped, its whole process group killed (the assertions on `Watched`
/// then fail): a download without bounds must neither fill the disk nor hang the tests.
const GUARD_BYTES: u64 = 32 << 20;
const GUARD_TIME: Duration = Duration::from_secs(45);

/// `script` piped into busybox's sh like `install` (after `setup`, see `install_command`),
/// with the bytes under `dir` measured every 2 ms while it runs.
fn install_watched(
    path: &Path,
    dir: &Path,
    image: &str,
    env: &[(&str, &str)],
    setup: &str,
    script: &str,
) -> Watched {
    let start = Instant::now();
    let mut child = install_command(path, dir, image, env, setup)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let group = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let script = script.to_string();
    // The shell reads the script as it goes; it may stop reading (an early failure).
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(script.as_bytes());
    });
    let reader = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let (mut peak_file, mut peak_total) = (0, 0);
    let status = loop {
        let (largest, total) = bytes_under(dir);
        peak_file = peak_file.max(largest);
        peak_total = peak_total.max(total);
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if peak_file > GUARD_BYTES || start.elapsed() > GUARD_TIME {
            eprintln!("stopped after {:?}, {peak_file} bytes", start.elapsed());
            kill_group(group);
            break child.wait().unwrap();
        }
        thread::sleep(Duration::from_millis(2));
    };
    let took = start.elapsed();
    // Whatever it left running (nothing, when it ends as it should).
    kill_group(group);
    writer.join().unwrap();
    let out = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    show(dir, image, env, &out);
    eprintln!("took {took:?}; largest file {peak_file} bytes, at most {peak_total} in all");
    Watched {
        out,
        peak_file,
        peak_total,
        took,
    }
}

/// SIGKILL to process group `group`, if it is still there. kill(2) itself: no shell's `kill`
/// takes a group the same way (dash refuses `--`), and std sends no signal to a group.
fn kill_group(group: u32) {
    extern "C" {
        fn kill(pid: i32, signal: i32) -> i32;
    }
    const SIGKILL: i32 = 9;
    let group = i32::try_from(group).unwrap();
    // SAFETY: a plain system call on integers; a group that is gone gives ESRCH, ignored.
    unsafe {
        kill(-group, SIGKILL);
    }
}

/// The largest regular file under `root` and the bytes of all of them (0, 0 when it is
/// missing); files and directories that vanish on the way are skipped.
fn bytes_under(root: &Path) -> (u64, u64) {
    let (mut largest, mut total) = (0, 0);
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file() {
                largest = largest.max(meta.len());
                total += meta.len();
            }
        }
    }
    (largest, total)
}

/// A registry holding `.ci/publish`'s release `ci/ocidl:v1` of three stand-in binaries
/// (x86_64, aarch64, armv7), and the binaries.
fn published(tmp: &TempDir) -> (Registry, Vec<(String, Vec<u8>)>) {
    let reg = Registry::start();
    let release = fake_release(&tmp.join("dist"), &["x86_64", "aarch64", "armv7"]);
    publish(
        &tmp.join("dist"),
        &format!("http://{}/ci", reg.host()),
        None,
    );
    (reg, release)
}

/// A scripted server in front of `reg`: `hook` answers a request first, and what it leaves
/// (`None`) goes on to the registry with its `Accept`, the answer coming back as it was.
fn front(
    reg: &Registry,
    hook: impl Fn(&Request) -> Option<Response> + Send + Sync + 'static,
) -> FakeServer {
    let upstream = reg.base_url();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .new_agent();
    FakeServer::start(move |req: &Request| {
        if let Some(answer) = hook(req) {
            return answer;
        }
        let accept = req.header("accept").unwrap_or("*/*");
        let mut answer = agent
            .get(format!("{upstream}{}", req.target))
            .header("Accept", accept)
            .call()
            .unwrap();
        let content_type = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        let body = answer.body_mut().read_to_vec().unwrap();
        Response::new(answer.status().as_u16())
            .header("Content-Type", &content_type)
            .body(&body)
    })
}

fn is_blob(req: &Request) -> bool {
    req.path().contains("/blobs/")
}

fn assert_installed(dir: &Path, bytes: &[u8]) {
    assert_file(&dir.join("ocidl"), bytes);
    let mode = fs::metadata(dir.join("ocidl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "mode of the installed ocidl");
    assert_tree(dir, &["ocidl"]);
}

/// Exit status 1, one line `install.sh: ...` containing `word`.
fn assert_refused(out: &Output, word: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("install.sh: ") && stderr.contains(word),
        "want {word:?}: {stderr}"
    );
}

#[test]
fn busybox_wget_installs_each_machines_binary() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let release = fake_release(&tmp.join("dist"), &["x86_64", "aarch64", "armv7"]);
    publish(
        &tmp.join("dist"),
        &format!("http://{}/ci", reg.host()),
        None,
    );
    let path = applets(&tmp, false);
    let image = format!("http://{}/ci/ocidl:v1", reg.host());
    // `uname -m` spellings of each.
    for ((arch, bytes), machine) in release.iter().zip(["x86_64", "aarch64", "armv7l"]) {
        let dir = tmp.join(&format!("bin-{arch}"));
        install(&path, &dir, &image, &[("OCIDL_ARCH", machine)]);
        assert_installed(&dir, bytes);
    }
}

#[test]
fn curl_follows_the_token_flow_over_tls() {
    let tmp = TempDir::new();
    // A TLS registry's token realm is on TLS too: install.sh refuses a plain one.
    let tokens = TokenService::start_tls();
    let reg = Registry::start_tls_with_tokens(&tokens);
    let release = fake_release(&tmp.join("dist"), &["x86_64", "aarch64", "armv7"]);
    let ca = tmp.join("both-cas.pem");
    let mut bundle = fs::read(reg.ca_file()).unwrap();
    bundle.extend(fs::read(tokens.ca_file().unwrap()).unwrap());
    fs::write(&ca, bundle).unwrap();
    let ca_text = ca.to_str().unwrap();
    // .ci/publish takes its push token through the challenge too.
    publish(&tmp.join("dist"), &format!("{}/ci", reg.host()), Some(&ca));
    let pushed = tokens.requests().len();
    assert!(pushed >= 1, "publish asked for no token");

    let dir = tmp.join("bin");
    let image = format!("{}/ci/ocidl:v1", reg.host());
    let env = [("OCIDL_ARCH", "aarch64"), ("CURL_CA_BUNDLE", ca_text)];
    install(&applets(&tmp, true), &dir, &image, &env);
    assert_installed(&dir, &release[1].1);
    let asked = &tokens.requests()[pushed..];
    assert_eq!(asked.len(), 1, "one token: {asked:?}");
    assert_eq!(
        asked[0].query("scope").as_deref(),
        Some("repository:ci/ocidl:pull")
    );
}

/// A TLS registry whose challenge names a plain-HTTP realm, or a realm that is no http(s)
/// URL at all: install.sh asks neither, and says why.
#[test]
fn a_realm_install_sh_must_not_ask_is_refused() {
    for realm in ["http://127.0.0.1:9/token", "gopher://127.0.0.1:9/_SET%20x"] {
        let tmp = TempDir::new();
        // A TLS registry that answers every request with the hostile challenge.
        let challenge = format!("Bearer realm=\"{realm}\",service=\"x\"");
        let trap = crate::support::fake::FakeServer::start(move |_| {
            crate::support::fake::Response::new(401).header("WWW-Authenticate", &challenge)
        });
        let front = crate::support::tls_front::TlsFront::start(trap.port());
        let image = format!("{}/ci/ocidl:v1", front.host());
        let env = [(
            "CURL_CA_BUNDLE",
            front.ca_file().to_str().unwrap().to_string(),
        )];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = install(&applets(&tmp, true), &tmp.join("bin"), &image, &env);
        assert_refused(&out, "token realm");
        assert!(!tmp.join("bin").exists(), "{realm}: left a directory");
    }
}

/// busybox wget shows no headers of a 401, so install.sh cannot read the challenge there: it
/// asks the registry's own `/token`, as on ghcr.io. A front for the real registry that refuses
/// ghcr's anonymous `Bearer QQ==` and has its token service at `/token`, like ghcr.io for a
/// package that needs a token.
#[test]
fn busybox_wget_takes_a_token_from_the_registrys_own_token_endpoint() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let release = fake_release(&tmp.join("dist"), &["x86_64", "aarch64", "armv7"]);
    publish(
        &tmp.join("dist"),
        &format!("http://{}/ci", reg.host()),
        None,
    );
    let front = front(&reg, |req: &Request| {
        if req.path() == "/token" {
            return Some(Response::json(&json!({ "token": "t0k" })));
        }
        if req.authorization() != Some("Bearer t0k") {
            let scope = "repository:ci/ocidl:pull";
            return Some(Response::bearer_challenge_here(req, "front", scope));
        }
        None
    });

    let dir = tmp.join("bin");
    let image = format!("http://{}/ci/ocidl:v1", front.host());
    install(
        &applets(&tmp, false),
        &dir,
        &image,
        &[("OCIDL_ARCH", "x86_64")],
    );
    assert_installed(&dir, &release[0].1);
    let asked = front.requests_to("/token");
    assert_eq!(asked.len(), 1, "one token: {asked:?}");
    assert_eq!(
        asked[0].query("scope").as_deref(),
        Some("repository:ci/ocidl:pull")
    );
    assert_eq!(asked[0].authorization(), None, "an anonymous token request");
    let first = &front.requests()[0];
    assert_eq!(
        first.authorization(),
        Some("Bearer QQ=="),
        "ghcr's shortcut first"
    );
}

#[test]
fn corrupted_binary_installs_nothing() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    let release = fake_release(&tmp.join("dist"), &["x86_64", "aarch64", "armv7"]);
    publish(
        &tmp.join("dist"),
        &format!("http://{}/ci", reg.host()),
        None,
    );
    let (_, bytes) = &release[2];
    let mut corrupted = bytes.clone();
    corrupted[100] ^= 1;
    fs::write(
        reg.blob_data_path(&format!("sha256:{}", sha256_hex(bytes))),
        corrupted,
    )
    .unwrap();

    let image = format!("http://{}/ci/ocidl:v1", reg.host());
    for with_curl in [false, true] {
        let path = applets(&tmp, with_curl);
        // An earlier ocidl stays as it was.
        let dir = tmp.mkdir(&format!("old-{with_curl}"));
        write_file(&dir.join("ocidl"), b"the old one");
        let out = install(&path, &dir, &image, &[("OCIDL_ARCH", "armv7l")]);
        assert_refused(&out, "does not match its sha256");
        assert_file(&dir.join("ocidl"), b"the old one");
        assert_tree(&dir, &["ocidl"]);
        // A directory it had to make is removed again.
        let new = tmp.join(&format!("new-{with_curl}"));
        let out = install(&path, &new.join("bin"), &image, &[("OCIDL_ARCH", "armv7l")]);
        assert_refused(&out, "does not match its sha256");
        assert!(
            !new.join("bin").exists(),
            "install.sh left {}",
            new.display()
        );
    }
}

#[test]
fn clear_refusals() {
    let tmp = TempDir::new();
    let reg = Registry::start();
    fake_release(&tmp.join("dist"), &["x86_64", "aarch64", "armv7"]);
    publish(
        &tmp.join("dist"),
        &format!("http://{}/ci", reg.host()),
        None,
    );
    let image = format!("http://{}/ci/ocidl:v1", reg.host());
    let missing_tag = format!("http://{}/ci/ocidl:v2", reg.host());
    let dir = tmp.join("bin");
    // (uname -m, image, what busybox wget's run says, what curl's says)
    let cases = [
        ("mips", image.as_str(), "no ocidl is built for this machine", ""),
        ("riscv64", &image, "no build for linux/riscv64 in the release index", ""),
        (
            "x86_64",
            &missing_tag,
            "cannot fetch the release index: server returned error: HTTP/1.1 404",
            "cannot fetch the release index: HTTP 404",
        ),
        (
            "x86_64",
            "http://127.0.0.1:9/ci/ocidl:v1",
            "cannot fetch the release index: can't connect to remote host (127.0.0.1): Connection refused",
            "cannot fetch the release index: Failed to connect to 127.0.0.1 port 9",
        ),
    ];
    for with_curl in [false, true] {
        let path = applets(&tmp, with_curl);
        for (machine, image, wget_word, curl_word) in cases {
            let word = if with_curl && !curl_word.is_empty() {
                curl_word
            } else {
                wget_word
            };
            let out = install(&path, &dir, image, &[("OCIDL_ARCH", machine)]);
            assert_refused(&out, word);
            assert!(
                !dir.exists(),
                "{machine} {image}: install.sh left {}",
                dir.display()
            );
        }
    }
}

/// install.sh's cap on the release index, a manifest and a token answer (`max_document`).
const MAX_DOCUMENT: u64 = 65536;

/// An index whose body never ends: each run stops at the cap, at once, with one line.
#[test]
fn an_endless_index_stops_at_its_cap() {
    let tmp = TempDir::new();
    let piece = br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1},"#;
    let server = FakeServer::start(move |req: &Request| {
        if !req.path().contains("/manifests/") {
            return Response::not_found();
        }
        Response::ok(&piece.repeat(64))
            .header("Content-Type", "application/vnd.oci.image.index.v1+json")
            .endless()
    });
    let image = format!("http://{}/ci/ocidl:v1", server.host());
    for with_curl in [false, true] {
        let path = applets(&tmp, with_curl);
        let dir = tmp.join(&format!("bin-{with_curl}"));
        let env = [("OCIDL_ARCH", "x86_64")];
        let run = install_watched(&path, &dir, &image, &env, "", &install_script());
        assert!(
            run.peak_file <= MAX_DOCUMENT + 1,
            "curl {with_curl}: wrote {} bytes of the index",
            run.peak_file
        );
        assert!(run.took < Duration::from_secs(15), "took {:?}", run.took);
        assert_refused(
            &run.out,
            &format!("cannot fetch the release index: more than {MAX_DOCUMENT} bytes"),
        );
        assert!(!dir.exists(), "install.sh left {}", dir.display());
    }
}

/// The binary's body never ends: the download stops at the size its manifest gives, and an
/// earlier ocidl stays as it was.
#[test]
fn an_endless_binary_stops_at_its_manifests_size() {
    let tmp = TempDir::new();
    let (reg, release) = published(&tmp);
    let endless = random_bytes(16 * 1024, 7);
    let server = front(&reg, move |req| {
        is_blob(req).then(|| Response::ok(&endless).endless())
    });
    let image = format!("http://{}/ci/ocidl:v1", server.host());
    let size = release[0].1.len() as u64;
    for with_curl in [false, true] {
        let path = applets(&tmp, with_curl);
        let dir = tmp.mkdir(&format!("bin-{with_curl}"));
        write_file(&dir.join("ocidl"), b"the old one");
        let env = [("OCIDL_ARCH", "x86_64")];
        let run = install_watched(&path, &dir, &image, &env, "", &install_script());
        assert!(
            run.peak_file <= size + 1,
            "curl {with_curl}: wrote {} bytes of a {size}-byte binary",
            run.peak_file
        );
        // The binary and the two small documents beside it, nothing more.
        assert!(run.peak_total <= size + 1 + 2 * MAX_DOCUMENT);
        assert!(run.took < Duration::from_secs(15), "took {:?}", run.took);
        assert_refused(
            &run.out,
            &format!("cannot download the binary for linux/amd64: more than {size} bytes"),
        );
        assert_file(&dir.join("ocidl"), b"the old one");
        assert_tree(&dir, &["ocidl"]);
    }
}

/// A binary that stops coming with the connection open ends at the time cap: curl's
/// `--max-time`, busybox's `timeout`, and install.sh's own watchdog on a busybox without
/// `timeout`. The caps are set to 2 s here (the script's are 60 s and 300 s).
#[test]
fn a_stalled_answer_ends_at_the_time_cap() {
    let (reg_tmp, tmp) = (TempDir::new(), TempDir::new());
    let (reg, release) = published(&reg_tmp);
    let bytes = release[0].1.clone();
    let server = front(&reg, move |req| {
        is_blob(req).then(|| Response::ok(&bytes).stall_after(1000, Duration::from_secs(120)))
    });
    let image = format!("http://{}/ci/ocidl:v1", server.host());
    let script = with_time_caps(2);
    for (name, with_curl, with_timeout) in [
        ("curl", true, true),
        ("busybox wget, timeout", false, true),
        ("busybox wget, no timeout", false, false),
    ] {
        let applets_tmp = TempDir::new();
        let path = applets(&applets_tmp, with_curl);
        if !with_timeout {
            fs::remove_file(path.join("timeout")).unwrap();
        }
        let dir = tmp.join(&format!("bin-{with_curl}-{with_timeout}"));
        let env = [("OCIDL_ARCH", "x86_64")];
        let run = install_watched(&path, &dir, &image, &env, "", &script);
        assert!(
            run.took >= Duration::from_secs(2) && run.took < Duration::from_secs(15),
            "{name}: took {:?}",
            run.took
        );
        assert_refused(&run.out, "cannot download the binary for linux/amd64");
        assert_refused(&run.out, "timed out");
        assert!(!dir.exists(), "{name}: install.sh left {}", dir.display());
    }
}

/// A 200 whose body ends early (the connection closes before its Content-Length) is a failed
/// transfer, and says so: it is not left to the sha256 check. A whole answer that is shorter
/// than the size the manifest gives is refused for that.
#[test]
fn a_transfer_cut_short_after_200_is_a_failure() {
    let tmp = TempDir::new();
    let (reg, release) = published(&tmp);
    let bytes = release[0].1.clone();
    let size = bytes.len();
    let cut_short = {
        let bytes = bytes.clone();
        front(&reg, move |req| {
            is_blob(req).then(|| cut(Response::ok(&bytes), 30_000))
        })
    };
    let short = front(&reg, move |req| {
        is_blob(req).then(|| Response::ok(&bytes[..30_000]))
    });
    let (busybox, curl) = (applets(&tmp, false), applets(&tmp, true));
    let whole_but_short = format!("has 30000 bytes, its manifest says {size}");
    for (server, with_curl, why) in [
        (
            &cut_short,
            false,
            "cannot download the binary for linux/amd64: connection closed prematurely",
        ),
        (
            &cut_short,
            true,
            "cannot download the binary for linux/amd64: transfer closed with",
        ),
        (&short, false, whole_but_short.as_str()),
        (&short, true, &whole_but_short),
    ] {
        let path = if with_curl { &curl } else { &busybox };
        let dir = tmp.mkdir(&format!("bin-{}-{with_curl}", server.port()));
        write_file(&dir.join("ocidl"), b"the old one");
        let image = format!("http://{}/ci/ocidl:v1", server.host());
        let out = install(path, &dir, &image, &[("OCIDL_ARCH", "x86_64")]);
        assert_refused(&out, why);
        assert_file(&dir.join("ocidl"), b"the old one");
        assert_tree(&dir, &["ocidl"]);
    }
}

/// A 200 whose body cannot be written (here a file-size limit of 32 KiB, `ulimit -f`, with
/// SIGXFSZ ignored: the write fails with EFBIG as a full disk's does with ENOSPC) is a failed
/// download that names the write, not a binary that "does not match its sha256".
#[test]
fn a_write_that_fails_after_200_is_a_failure() {
    let tmp = TempDir::new();
    let (reg, _) = published(&tmp);
    let image = format!("http://{}/ci/ocidl:v1", reg.host());
    for with_curl in [false, true] {
        let path = applets(&tmp, with_curl);
        let dir = tmp.mkdir(&format!("bin-{with_curl}"));
        write_file(&dir.join("ocidl"), b"the old one");
        let env = [("OCIDL_ARCH", "x86_64")];
        let setup = "ulimit -f 64; trap '' XFSZ";
        let run = install_watched(&path, &dir, &image, &env, setup, &install_script());
        // busybox's head says `I/O error` whatever the cause; coreutils' `File too large`.
        let why = format!(
            "cannot download the binary for linux/amd64: cannot write into {}: ",
            dir.display()
        );
        assert_refused(&run.out, &why);
        assert_file(&dir.join("ocidl"), b"the old one");
        assert_tree(&dir, &["ocidl"]);
    }
}

/// `DIR/ocidl` that is a directory, a symlink to one, or a directory made there during the
/// download: refused with one line, nothing in it or beside it changed. The first two are
/// refused before any request.
#[test]
fn a_directory_at_dir_ocidl_is_refused() {
    let tmp = TempDir::new();
    let (reg, _) = published(&tmp);
    for with_curl in [false, true] {
        let path = applets(&tmp, with_curl);
        for case in ["directory", "symlink", "made during the download"] {
            let dir = tmp.mkdir(&format!("{case}-{with_curl}/bin"));
            let elsewhere = tmp.mkdir(&format!("{case}-{with_curl}/elsewhere"));
            write_file(&elsewhere.join("keep"), b"kept");
            let plant = dir.join("ocidl");
            match case {
                "directory" => write_file(&plant.join("keep"), b"kept"),
                "symlink" => symlink(&elsewhere, &plant).unwrap(),
                _ => {}
            }
            let late = (case == "made during the download").then(|| plant.clone());
            let server = front(&reg, move |req| {
                if let (true, Some(plant)) = (is_blob(req), &late) {
                    write_file(&plant.join("keep"), b"kept");
                }
                None
            });
            let image = format!("http://{}/ci/ocidl:v1", server.host());
            let parent = dir.parent().unwrap();
            let before = list_tree(parent);
            let out = install(&path, &dir, &image, &[("OCIDL_ARCH", "x86_64")]);
            assert_refused(&out, &format!("{}: is a directory", plant.display()));
            if case != "made during the download" {
                assert_eq!(server.requests().len(), 0, "{case}: asked the registry");
                assert_eq!(list_tree(parent), before, "{case}: changed");
            }
            assert_tree(&elsewhere, &["keep"]);
            assert_file(&elsewhere.join("keep"), b"kept");
            if case == "symlink" {
                assert_eq!(fs::read_link(&plant).unwrap(), elsewhere);
                assert_tree(&dir, &["ocidl"]);
            } else {
                assert_tree(&dir, &["ocidl", "ocidl/keep"]);
                assert_file(&plant.join("keep"), b"kept");
            }
        }
    }
}

/// A symlink at `DIR/ocidl`, to a file elsewhere or dangling, is replaced by the binary, never
/// written through: the file it pointed to stays as it was.
#[test]
fn a_symlink_at_dir_ocidl_is_replaced_not_written_through() {
    let tmp = TempDir::new();
    let (reg, release) = published(&tmp);
    let image = format!("http://{}/ci/ocidl:v1", reg.host());
    let elsewhere = tmp.mkdir("elsewhere");
    write_file(&elsewhere.join("precious"), b"precious");
    for with_curl in [false, true] {
        let path = applets(&tmp, with_curl);
        for (case, target) in [("file", "precious"), ("dangling", "missing")] {
            let dir = tmp.mkdir(&format!("{case}-{with_curl}"));
            symlink(elsewhere.join(target), dir.join("ocidl")).unwrap();
            let out = install(&path, &dir, &image, &[("OCIDL_ARCH", "x86_64")]);
            assert_eq!(out.status.code(), Some(0), "{case}");
            let kind = fs::symlink_metadata(dir.join("ocidl")).unwrap().file_type();
            assert!(kind.is_file(), "{case}: DIR/ocidl is {kind:?}");
            assert_installed(&dir, &release[0].1);
            assert_tree(&elsewhere, &["precious"]);
            assert_file(&elsewhere.join("precious"), b"precious");
        }
    }
}

/// `-d` with several levels missing: a failure removes every level the run made, deepest
/// first, and none that was there before, even an empty one. A failure while making them
/// (a name too long for the file system) removes the levels made so far; a success keeps
/// them all.
#[test]
fn a_failure_removes_every_directory_level_it_made() {
    let tmp = TempDir::new();
    let (reg, release) = published(&tmp);
    let image = format!("http://{}/ci/ocidl:v1", reg.host());
    let missing = format!("http://{}/ci/ocidl:v2", reg.host());
    let long = "x".repeat(300);
    for with_curl in [false, true] {
        let path = applets(&tmp, with_curl);
        let root = tmp.mkdir(&format!("root-{with_curl}"));
        write_file(&root.join("keep/file"), b"kept");
        fs::create_dir(root.join("keep/empty")).unwrap();
        let before = list_tree(&root);
        for (target, image, word) in [
            ("a/b/c", &missing, "HTTP"),
            ("keep/a/b/c", &missing, "HTTP"),
            ("keep/empty/a/b", &missing, "HTTP"),
            (
                &format!("a/b/{long}/c"),
                &image,
                "cannot create the directory",
            ),
        ] {
            let env = [("OCIDL_ARCH", "x86_64")];
            let out = install(&path, &root.join(target), image, &env);
            assert_refused(&out, word);
            assert_eq!(list_tree(&root), before, "-d {target}: left levels");
        }
        let out = install(
            &path,
            &root.join("a/b/c"),
            &image,
            &[("OCIDL_ARCH", "x86_64")],
        );
        assert_eq!(out.status.code(), Some(0));
        assert_installed(&root.join("a/b/c"), &release[0].1);
    }
}
