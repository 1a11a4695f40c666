//! Where a registry's credentials come from. The first source that has some wins:
//!
//! 1. `-u/--username` with `--password-stdin` (for every registry named on the command line);
//! 2. `OCIDL_USERNAME` and `OCIDL_PASSWORD` (likewise);
//! 3. Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): a
//!    `credHelpers` entry for the host, else `credsStore`, else the `auths` entry, as docker
//!    itself decides;
//! 4. Podman's and skopeo's `auth.json` (`$REGISTRY_AUTH_FILE`, else
//!    `$XDG_RUNTIME_DIR/containers/auth.json`, else `~/.config/containers/auth.json`), whose
//!    keys may also name a namespace (`quay.io/org`), the longest match winning;
//! 5. none: anonymous (and on ghcr.io the `QQ==` shortcut).
//!
//! Keys are compared by host, the way docker does: a scheme and path are dropped, and
//! `https://index.docker.io/v1/`, `index.docker.io` and `registry-1.docker.io` all mean Docker
//! Hub. Secrets are never printed: `Credentials` hides them from `Debug`, and a helper's
//! output is never quoted in an error.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::net::auth::{base64_decode, Credentials};
use crate::reference::DOCKER_HUB;
use crate::sys;

/// The key docker writes for Docker Hub, and what its credential helpers expect.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// A helper's answer is a line of JSON; more than this is not an answer.
const HELPER_OUTPUT: usize = 64 << 10;

/// What the environment says, looked up once at start-up so tests can hand in their own.
///
/// Credentials are for one host over the scheme they were meant for. `-u` is for the
/// registries the command line names, over the scheme it names them with. A stored entry is
/// for its key's scheme when the key says one (`https://h`, `http://h`); a bare key (`h`, as
/// docker and podman write them) and a credential helper are for HTTPS. A host the command
/// line names over plain HTTP (a local registry) gets whatever is stored for it; any other
/// plain-HTTP place (a mirror) only entries keyed `http://`. So `OCIDL_MIRROR=http://ghcr.io`
/// never carries the user's ghcr.io token in clear, however the host is spelt.
pub struct Sources {
    /// From the command line or `OCIDL_USERNAME`/`OCIDL_PASSWORD`: for the registries the
    /// command line names (`named`) and no other host, a mirror least of all.
    pub explicit: Option<Credentials>,
    /// The registries the command line names: host, and whether over plain HTTP.
    pub named: Vec<(String, bool)>,
    /// Docker's config file, when there is one.
    pub docker_config: Option<PathBuf>,
    /// Podman's auth file, when there is one.
    pub auth_json: Option<PathBuf>,
    /// How long a credential helper may take before it is stopped (`--timeout`).
    pub helper_deadline: Duration,
}

impl Sources {
    /// The credentials for `host` (as in a reference: `ghcr.io`, `127.0.0.1:5000`,
    /// `docker.io`) over plain HTTP or not, and `repository` (for auth.json's namespace keys).
    pub fn lookup(&self, host: &str, plain: bool, repository: &str) -> Result<Option<Credentials>> {
        // Host names are compared as DNS does: `GHCR.IO` is ghcr.io.
        let host = &host.to_ascii_lowercase();
        let named = |plain: bool| {
            let same = |n: &(String, bool)| n.0.eq_ignore_ascii_case(host) && n.1 == plain;
            self.named.iter().any(same)
        };
        if let (Some(c), true) = (&self.explicit, named(plain)) {
            // A mirror or a remapped location is another place: it gets its own, or none.
            return Ok(Some(c.clone()));
        }
        let keys = match (plain, named(true)) {
            (false, _) => Keys::Https,
            (true, true) => Keys::All,
            (true, false) => Keys::PlainOnly,
        };
        if let Some(path) = &self.docker_config {
            let config = read_json(path)?;
            if let Some(c) = from_docker_config(&config, host, keys, path, self.helper_deadline)? {
                return Ok(Some(c));
            }
        }
        if let Some(path) = &self.auth_json {
            let config = read_json(path)?;
            if let Some(entry) = best_entry(&config, host, Some(repository), keys) {
                return from_entry(entry, path).map(Some);
            }
        }
        Ok(None)
    }
}

/// Which stored keys may serve a lookup (see `Sources`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Over plain HTTP to a host the command line names so: the user chose it for the host.
    All,
    /// Over HTTPS: any key but one written `http://`.
    Https,
    /// Over plain HTTP anywhere else (a mirror): only keys written `http://`, and no
    /// credential helper, which is asked by host alone.
    PlainOnly,
}

impl Keys {
    fn take(self, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        match self {
            Keys::All => true,
            Keys::Https => !key.starts_with("http://"),
            Keys::PlainOnly => key.starts_with("http://"),
        }
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).map_err(Error::file(path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        cause: e.to_string(),
    })
}

/// Docker's order: a helper for this host, then the default store, then the file itself.
fn from_docker_config(
    config: &Value,
    host: &str,
    keys: Keys,
    path: &Path,
    deadline: Duration,
) -> Result<Option<Credentials>> {
    // A helper is asked by host alone: not for what must be keyed `http://`.
    if keys == Keys::PlainOnly {
        return best_entry(config, host, None, keys)
            .map(|e| from_entry(e, path))
            .transpose();
    }
    let helper_for_host = config
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|helpers| {
            let ours = |key: &&String| keys.take(key) && normalize(key) == host;
            helpers.iter().find(|(key, _)| ours(key))
        })
        .and_then(|(_, name)| name.as_str());
    let store = config
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if let Some(helper) = helper_for_host.or(store) {
        return run_helper(helper, host, path, deadline);
    }
    match best_entry(config, host, None, keys) {
        Some(entry) => from_entry(entry, path).map(Some),
        None => Ok(None),
    }
}

/// The `auths` entry for `host`. With `repository` (podman's auth.json), a key may also
/// name a namespace or the repository itself, and the longest match wins; docker's
/// config.json keys are compared by host alone. Only the `keys` a lookup may use count.
fn best_entry<'a>(
    config: &'a Value,
    host: &str,
    repository: Option<&str>,
    keys: Keys,
) -> Option<&'a Value> {
    let auths = config.get("auths")?.as_object()?;
    let full = repository.map(|r| format!("{host}/{r}"));
    auths
        .iter()
        .filter(|(key, _)| keys.take(key))
        // Docker Desktop leaves `{}` entries behind for hosts whose secret is in its store;
        // they must not hide an entry that has one.
        .filter(|(_, entry)| entry.as_object().is_some_and(|o| !o.is_empty()))
        .filter_map(|(key, entry)| {
            let key = match full {
                Some(_) => normalize_with_path(key),
                None => normalize(key),
            };
            let within = |full: &String| {
                full == &key
                    || full
                        .strip_prefix(&key)
                        .is_some_and(|rest| rest.starts_with('/'))
            };
            let matches = key == host || full.as_ref().is_some_and(within);
            matches.then_some((key.len(), entry))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, entry)| entry)
}

fn from_entry(entry: &Value, path: &Path) -> Result<Credentials> {
    let bad = |what: &str| Error::Config {
        path: path.to_path_buf(),
        cause: what.to_string(),
    };
    let text = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(token) = text("identitytoken") {
        return Ok(Credentials::from_identity_token(token.to_string()));
    }
    if let (Some(username), Some(password)) = (text("username"), text("password")) {
        return Ok(Credentials::basic_pair(
            username.to_string(),
            password.to_string(),
        ));
    }
    let auth = text("auth")
        .ok_or_else(|| bad("an auths entry has neither auth nor username and password"))?;
    let decoded = base64_decode(auth).ok_or_else(|| bad("an auths entry's auth is not base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| bad("an auths entry's auth is not UTF-8"))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| bad("an auths entry's auth is not user:password"))?;
    Ok(Credentials::basic_pair(
        username.to_string(),
        password.to_string(),
    ))
}

/// `docker-credential-<name> get`, with the registry on stdin, as docker runs it. The helper
/// gets `deadline` to answer and at most `HELPER_OUTPUT` bytes to say it in; past either it
/// is killed. Its stderr is not read: a helper's words may quote secrets.
fn run_helper(
    name: &str,
    host: &str,
    config: &Path,
    deadline: Duration,
) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{name}");
    let failed = |cause: String| Error::Helper {
        program: program.clone(),
        config: config.to_path_buf(),
        cause,
    };
    let server = if host == DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        host
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => failed("not found on PATH".into()),
            _ => failed(e.to_string()),
        })?;
    sys::track_child(Some(child.id()));
    let answer = answer_of(&mut child, server, deadline);
    if answer.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    sys::track_child(None);
    let (status, output) = answer.map_err(failed)?;
    if !status.success() {
        // Helpers say this (and exit 1) for a host they hold nothing for.
        if String::from_utf8_lossy(&output).contains("credentials not found") {
            return Ok(None);
        }
        return Err(failed(format!("exited with {status}")));
    }
    let answer: Value = serde_json::from_slice(&output)
        .map_err(|_| failed("answered something that is not JSON".into()))?;
    let field = |key: &str| {
        answer
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (username, secret) = (field("Username"), field("Secret"));
    Ok(match (username.as_str(), secret.is_empty()) {
        (_, true) => None,
        // Docker's convention for an OAuth2 refresh token.
        ("<token>", false) => Some(Credentials::from_identity_token(secret)),
        (_, false) => Some(Credentials::basic_pair(username, secret)),
    })
}

/// Hands `server` to the helper and collects what it prints until it exits, polling its
/// stdout without blocking: a helper that hangs, or leaves a child holding the pipe open,
/// cannot hold ocidl past `deadline`.
fn answer_of(
    child: &mut Child,
    server: &str,
    deadline: Duration,
) -> Result<(ExitStatus, Vec<u8>), String> {
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its answer, not by this.
        let _ = stdin.write_all(server.as_bytes());
    }
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    sys::set_nonblocking(&stdout, true).map_err(|e| e.to_string())?;
    let until = Instant::now() + deadline;
    let mut output = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut status = None;
    loop {
        match stdout.read(&mut chunk) {
            Ok(0) if status.is_some() => break,
            Ok(0) => {}
            Ok(n) => {
                output.extend_from_slice(&chunk[..n]);
                if output.len() > HELPER_OUTPUT {
                    return Err(format!("printed more than {HELPER_OUTPUT} bytes"));
                }
                continue;
            }
            // Exited, and nothing more is in the pipe (a grandchild may keep it open).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && status.is_some() => break,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
        if status.is_none() {
            status = child.try_wait().map_err(|e| e.to_string())?;
            if status.is_some() {
                continue; // read what it wrote before it exited
            }
        }
        if Instant::now() >= until {
            return Err(format!(
                "did not answer within {} s (--timeout); stopped it",
                deadline.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    status
        .map(|status| (status, output))
        .ok_or_else(|| "no exit status".to_string())
}

/// A config key as a host: scheme and path dropped, Docker Hub's names made one.
fn normalize(key: &str) -> String {
    let host = normalize_with_path(key);
    host.split('/').next().unwrap_or("").to_string()
}

/// A config key with its scheme dropped but a namespace kept (auth.json allows `host/org`).
fn normalize_with_path(key: &str) -> String {
    let key = key.to_ascii_lowercase();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(&key);
    let key = key.trim_end_matches('/');
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB,
        other => other,
    };
    // Docker's own key carries the API version as a path: not a namespace.
    match path {
        "" | "v1" | "v2" => host.to_string(),
        path => format!("{host}/{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn creds(c: Option<Credentials>) -> Option<(String, String)> {
        c.map(|c| (c.username.clone(), c.password.clone()))
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ocidl-creds-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn keys_are_compared_by_host() {
        for (key, host) in [
            ("https://index.docker.io/v1/", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("ghcr.io", "ghcr.io"),
            ("https://ghcr.io", "ghcr.io"),
            ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
            ("quay.io/org", "quay.io"),
        ] {
            assert_eq!(normalize(key), host, "{key}");
        }
        assert_eq!(normalize_with_path("quay.io/org/"), "quay.io/org");
    }

    #[test]
    fn reads_auths_entries() {
        let config = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
            "ghcr.io": {"username": "me", "password": "tok"},
            "quay.io": {"identitytoken": "refresh"},
            "quay.io/org": {"auth": "b3JnOnNlY3JldA=="},
            "empty.io": {},
        }});
        let path = Path::new("config.json");
        let get = |host: &str, repo: &str| {
            best_entry(&config, host, Some(repo), Keys::Https).map(|e| from_entry(e, path).unwrap())
        };
        assert_eq!(
            creds(get("docker.io", "library/debian")),
            Some(("user".into(), "pa:ss".into()))
        );
        assert_eq!(
            creds(get("ghcr.io", "a/b")),
            Some(("me".into(), "tok".into()))
        );
        assert_eq!(
            get("quay.io", "other/x").unwrap().identity_token.as_deref(),
            Some("refresh")
        );
        assert_eq!(
            creds(get("quay.io", "org/x")),
            Some(("org".into(), "secret".into()))
        );
        assert!(get("quay.io", "organisation/x")
            .unwrap()
            .identity_token
            .is_some());
        assert!(get("empty.io", "x").is_none());
        assert!(get("127.0.0.1:5000", "x").is_none());
        // A key may name the repository itself; an empty entry hides nothing.
        let podman = json!({"auths": {
            "h.io": {"auth": "aDpob3N0"},
            "h.io/team/app": {"auth": "YXBwOmFwcA=="},
            "h.io/team": {},
        }});
        let get = |repo: &str| {
            best_entry(&podman, "h.io", Some(repo), Keys::Https)
                .map(|e| from_entry(e, path).unwrap())
        };
        assert_eq!(creds(get("team/app")), Some(("app".into(), "app".into())));
        assert_eq!(creds(get("team/other")), Some(("h".into(), "host".into())));
        // Docker compares by host alone, whatever path a key carries.
        let docker =
            json!({"auths": {"https://h.io/some/path": {"auth": "aDpob3N0"}, "https://h.io": {}}});
        assert_eq!(
            creds(
                best_entry(&docker, "h.io", None, Keys::Https)
                    .map(|e| from_entry(e, path).unwrap())
            ),
            Some(("h".into(), "host".into()))
        );

        let broken = json!({"auths": {"x.io": {"auth": "not base64!"}}});
        assert!(matches!(
            from_entry(
                best_entry(&broken, "x.io", None, Keys::Https).unwrap(),
                path
            ),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn sources_in_order() {
        let d = dir("order");
        let docker = d.join("config.json");
        let podman = d.join("auth.json");
        std::fs::write(&docker, r#"{"auths": {"a.io": {"auth": "ZDpkb2NrZXI="}}}"#).unwrap();
        std::fs::write(
            &podman,
            r#"{"auths": {"a.io": {"auth": "cDpwb2RtYW4="}, "b.io": {"auth": "cDpwb2RtYW4="}}}"#,
        )
        .unwrap();
        let sources = Sources {
            explicit: None,
            named: Vec::new(),
            docker_config: Some(docker.clone()),
            auth_json: Some(podman.clone()),
            helper_deadline: Duration::from_secs(5),
        };
        assert_eq!(
            creds(sources.lookup("a.io", false, "x").unwrap()),
            Some(("d".into(), "docker".into()))
        );
        assert_eq!(
            creds(sources.lookup("b.io", false, "x").unwrap()),
            Some(("p".into(), "podman".into()))
        );
        assert_eq!(creds(sources.lookup("c.io", false, "x").unwrap()), None);
        let explicit = Sources {
            explicit: Some(Credentials::basic_pair("u".into(), "p".into())),
            named: vec![("a.io".into(), false), ("c.io".into(), false)],
            ..sources
        };
        assert_eq!(
            creds(explicit.lookup("a.io", false, "x").unwrap()),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(
            creds(explicit.lookup("c.io", false, "x").unwrap()),
            Some(("u".into(), "p".into()))
        );
        // Not named on the command line (a mirror): its own sources decide.
        assert_eq!(
            creds(explicit.lookup("b.io", false, "x").unwrap()),
            Some(("p".into(), "podman".into()))
        );

        std::fs::write(&docker, r#"{"credsStore": "ocidl-test-missing"}"#).unwrap();
        let sources = Sources {
            explicit: None,
            named: Vec::new(),
            docker_config: Some(docker),
            auth_json: None,
            helper_deadline: Duration::from_secs(5),
        };
        match sources.lookup("a.io", false, "x") {
            Err(e) => assert!(
                e.to_string()
                    .contains("docker-credential-ocidl-test-missing"),
                "{e}"
            ),
            Ok(c) => panic!("{:?}", creds(c)),
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
