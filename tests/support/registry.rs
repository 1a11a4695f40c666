//! Starts a real registry (Debian's `docker-registry`, CNCF distribution 2.8.2) for one test:
//! filesystem storage in a temp dir, listening on 127.0.0.1, optionally behind htpasswd Basic
//! auth and/or TLS with a CA generated at test time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::push::Pusher;
use super::token::TokenService;
use super::{free_port, TempDir};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Give up on a registry that has not answered `GET /v2/` by then; it normally takes well
/// under a second, but CI machines are shared and slow at times.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How a registry is set up. `Default` is plain HTTP without auth.
#[derive(Clone, Default)]
pub struct Options {
    /// Require Basic auth with this user and password (htpasswd, bcrypt).
    pub auth: Option<(String, String)>,
    /// Serve HTTPS with a certificate for 127.0.0.1 signed by a fresh test CA.
    pub tls: bool,
    /// Require a bearer token from this realm (distribution's `auth: token`). The registry
    /// answers every request without a token it can verify with that challenge; the tests
    /// that use it look at what the client does with the challenge, not at a token service.
    pub token_realm: Option<String>,
    /// Run as a pull-through cache of this registry (`proxy: remoteurl:`).
    pub proxy_of: Option<String>,
}

/// A running registry. Dropping it kills the process, then removes its temp dir.
pub struct Registry {
    child: Child,
    port: u16,
    options: Options,
    /// Holds `config.yml`, `registry.log`, `storage/`, and for TLS `ca.pem` and the server
    /// key pair. Declared after `child` only for readability: `Drop` kills the process first.
    dir: TempDir,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn start() -> Registry {
        Registry::start_with(Options::default())
    }

    /// Plain HTTP with Basic auth for `user`/`pass`.
    pub fn start_with_auth(user: &str, pass: &str) -> Registry {
        Registry::start_with(Options {
            auth: Some((user.into(), pass.into())),
            ..Options::default()
        })
    }

    /// HTTPS with a generated CA (see `ca_file`), no auth.
    pub fn start_tls() -> Registry {
        Registry::start_with(Options {
            tls: true,
            ..Options::default()
        })
    }

    pub fn start_with(options: Options) -> Registry {
        Registry::start_configured(options, "")
    }

    /// HTTPS (a generated CA) with token auth: the Bearer challenge sends clients to `tokens`.
    /// Push with `tokens.token(...)` (see `token_pusher`).
    pub fn start_tls_with_tokens(tokens: &TokenService) -> Registry {
        let options = Options {
            tls: true,
            ..Options::default()
        };
        Registry::start_configured(options, &tokens.registry_yaml())
    }

    /// `extra_yaml` is appended to the configuration (an `auth:` section).
    fn start_configured(options: Options, extra_yaml: &str) -> Registry {
        let dir = TempDir::new();
        if let Some((user, pass)) = &options.auth {
            write_htpasswd(&dir.join("htpasswd"), user, pass);
        }
        // Token auth checks tokens against a certificate bundle: the test CA serves.
        if options.tls || options.token_realm.is_some() {
            make_certificates(dir.path());
        }
        // Picking a port and binding it happen in different processes, so another test can
        // take the port in between: on a bind failure, try another port.
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            fs::write(
                dir.join("config.yml"),
                config_yaml(dir.path(), port, &options) + extra_yaml,
            )
            .unwrap();
            let _ = fs::remove_file(dir.join("registry.log"));
            match spawn_and_wait(&dir, port, &options) {
                Ok(child) => {
                    return Registry {
                        child,
                        port,
                        options,
                        dir,
                    }
                }
                Err(log) if log.contains("address already in use") => last_log = log,
                Err(log) => panic!("docker-registry did not start; its log:\n{log}"),
            }
        }
        panic!("docker-registry could not bind a free port; last log:\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`: the registry part of a reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` or `https://...`.
    pub fn base_url(&self) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<rest>`, e.g. `reg.reference("pkgforge/trurl:v1")`.
    pub fn reference(&self, rest: &str) -> String {
        format!("{}/{rest}", self.host())
    }

    /// The PEM file of the CA that signed the server certificate (TLS registries only).
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.options.tls, "ca_file: this registry does not use TLS");
        self.dir.join("ca.pem")
    }

    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.options
            .auth
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The storage driver's root directory.
    pub fn storage_root(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// Where the filesystem driver keeps a blob's bytes: `<root>/docker/registry/v2/blobs/
    /// sha256/<first two hex>/<hex>/data`. Tests overwrite it to serve corrupted content.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage_root()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Blob GETs the registry has logged so far (`response completed` lines).
    pub fn blob_gets(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("response completed") && l.contains("http.request.method=GET"))
            .filter(|l| l.contains("/blobs/"))
            .count()
    }

    /// Every request the registry has logged so far (`response completed` lines), in order.
    pub fn logged(&self) -> Vec<Logged> {
        self.log().lines().filter_map(Logged::parse).collect()
    }

    /// The registry's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// A client that publishes content here, with this registry's credentials and CA.
    pub fn pusher(&self) -> Pusher {
        let ca = self.options.tls.then(|| self.ca_file());
        Pusher::new(&self.base_url(), self.credentials(), ca.as_deref())
    }
}

/// One request as distribution logged it once answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// Path and query, as the client sent it.
    pub uri: String,
    /// The client's `address:port`: one per TCP connection.
    pub remote: String,
    pub status: u16,
}

impl Logged {
    /// A `response completed` line (logrus text: `key=value` or `key="quoted value"`).
    fn parse(line: &str) -> Option<Logged> {
        if !line.contains("msg=\"response completed") {
            return None;
        }
        let field = |key: &str| {
            let start = line.find(&format!(" {key}="))? + key.len() + 2;
            let rest = &line[start..];
            let value = match rest.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next()?,
                None => rest.split(' ').next()?,
            };
            Some(value.to_string())
        };
        Some(Logged {
            method: field("http.request.method")?,
            uri: field("http.request.uri")?,
            remote: field("http.request.remoteaddr")?,
            status: field("http.response.status")?.parse().ok()?,
        })
    }
}

impl Registry {
    /// A pusher for a token registry: a token for pull and push on `repo` from `tokens`.
    pub fn token_pusher(&self, tokens: &TokenService, repo: &str) -> Pusher {
        let token = tokens.token(&[&format!("repository:{repo}:pull,push")]);
        let ca = self.options.tls.then(|| self.ca_file());
        Pusher::new(&self.base_url(), None, ca.as_deref())
            .with_authorization(&format!("Bearer {token}"))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the registry saw (the harness prints captured output).
        if std::thread::panicking() {
            eprintln!("--- registry log ({}) ---\n{}", self.base_url(), self.log());
        }
    }
}

/// Starts the process and waits until `GET /v2/` gets any HTTP answer (401 counts: the auth
/// layer answering means the server is up). On failure returns the log and leaves no process.
fn spawn_and_wait(dir: &TempDir, port: u16, options: &Options) -> Result<Child, String> {
    let log = fs::File::create(dir.join("registry.log")).unwrap();
    let mut child = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {REGISTRY_BIN}: {e} (is docker-registry installed?)"));
    let read_log = || fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
    let probe = Pusher::new(
        &format!(
            "{}://127.0.0.1:{port}",
            if options.tls { "https" } else { "http" }
        ),
        None,
        options.tls.then(|| dir.join("ca.pem")).as_deref(),
    );
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("exited with {status}\n{}", read_log()));
        }
        if probe.ping() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "no answer on port {port} within {STARTUP_TIMEOUT:?}\n{}",
                read_log()
            ));
        }
        sleep(Duration::from_millis(25));
    }
}

/// The registry's configuration. Everything that could reach outside the test or slow it down
/// is off: no redis, no storage health check, no upload purging, no notifications, no debug
/// server (it would need a second port).
fn config_yaml(dir: &Path, port: u16, options: &Options) -> String {
    let mut yaml = format!(
        "version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  maintenance:
    uploadpurging:
      enabled: false
  redirect:
    disable: true
health:
  storagedriver:
    enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: ocidl-integration-tests
",
        storage = dir.join("storage").display(),
    );
    if options.tls {
        yaml.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        ));
    }
    if options.auth.is_some() {
        yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: ocidl-test\n    path: {}\n",
            dir.join("htpasswd").display()
        ));
    }
    if let Some(remote) = &options.proxy_of {
        yaml.push_str(&format!("proxy:\n  remoteurl: {remote}\n"));
    }
    if let Some(realm) = &options.token_realm {
        yaml.push_str(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: ocidl-test\n    issuer: ocidl-test\n    rootcertbundle: {}\n",
            dir.join("ca.pem").display()
        ));
    }
    yaml
}

/// `htpasswd -Bbn user pass`: distribution only accepts bcrypt entries.
fn write_htpasswd(path: &Path, user: &str, pass: &str) {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .expect("run htpasswd");
    assert!(
        out.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(path, &out.stdout).unwrap();
}

/// A CA and a server certificate for 127.0.0.1/localhost signed by it, made with the openssl
/// CLI: `ca.pem`, `ca.key`, `server.pem`, `server.key` in `dir`. P-256 keys keep it fast.
/// webpki (rustls) insists on a real CA (basicConstraints CA:TRUE) distinct from the leaf, and
/// on a subjectAltName for the IP: a CN alone is ignored.
pub fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca_args = vec!["req", "-x509"];
    ca_args.extend(ec);
    ca_args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=ocidl test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&ca_args);
    let mut csr_args = vec!["req"];
    csr_args.extend(ec);
    csr_args.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&csr_args);
    fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}
