//! install.sh against real registries: a release published by `.ci/publish` (the script
//! behind `make publish`), installed by busybox's sh with only busybox applets on PATH (its
//! wget), and with curl beside them, including the token flow over TLS. The binaries are
//! stand-ins (install.sh never runs them); `make test-install` installs the real ones.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

use crate::support::fake::{FakeServer, Request, Response};
use crate::support::registry::Registry;
use crate::support::token::TokenService;
use crate::support::{assert_file, assert_tree, random_bytes, sha256_hex, write_file, TempDir};

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

/// `install.sh -d DIR IMAGE` piped into busybox's sh, with `path` as PATH and `env` added.
fn install(path: &Path, dir: &Path, image: &str, env: &[(&str, &str)]) -> Output {
    let script = fs::File::open(repo_file("install.sh")).unwrap();
    let out = Command::new(which("busybox"))
        .args(["sh", "-s", "--", "-d"])
        .arg(dir)
        .arg(image)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.join("no-home"))
        .envs(env.iter().copied())
        .stdin(script)
        .output()
        .unwrap();
    eprintln!(
        "$ install.sh -d {} {image} {env:?}\n[exit {:?}]\n{}{}",
        dir.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
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
    let upstream = reg.base_url();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .new_agent();
    let front = FakeServer::start(move |req: &Request| {
        if req.path() == "/token" {
            return Response::json(&json!({ "token": "t0k" }));
        }
        if req.authorization() != Some("Bearer t0k") {
            return Response::bearer_challenge_here(req, "front", "repository:ci/ocidl:pull");
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
