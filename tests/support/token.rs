//! A token service for the real registry's `token` auth, so a test can pull from a registry
//! that sends a Bearer challenge the way ghcr.io and Docker Hub do.
//!
//! distribution accepts a JWT (RS256) whose `x5c` certificate is in its `rootcertbundle`; the
//! service signs one per request with the openssl CLI, granting the scopes asked for to anyone
//! (the tests' registries hold nothing secret). It is the scripted fake server, so the
//! requests it got can be checked.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::fake::{FakeServer, Request, Response};
use super::tls_front::TlsFront;
use super::TempDir;

/// The `service` and `issuer` the registry is configured with.
pub const SERVICE: &str = "ocidl-test-registry";
const ISSUER: &str = "ocidl-test-token-service";

pub struct TokenService {
    server: FakeServer,
    signer: Signer,
    /// TLS in front of the service (`start_tls`), for clients that send credentials or
    /// ask a TLS registry's realm: they refuse a plain-HTTP one.
    tls: Option<TlsFront>,
    _dir: TempDir,
}

impl TokenService {
    /// The service over TLS, on a certificate of its own test CA (`ca_file`).
    pub fn start_tls() -> TokenService {
        let mut service = TokenService::start();
        service.tls = Some(TlsFront::start(service.server.port()));
        service
    }

    /// The CA of the TLS front, when there is one.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(TlsFront::ca_file)
    }

    pub fn start() -> TokenService {
        let dir = TempDir::new();
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-keyout", "token.key", "-out", "token.pem"])
            .args(["-subj", "/CN=ocidl test token service"])
            .current_dir(dir.path())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl could not make the token key");
        let signer = Signer {
            key: dir.join("token.key"),
            cert: dir.join("token.pem"),
        };
        let handler_signer = signer.clone();
        let server = FakeServer::start(move |req: &Request| {
            if req.path() != "/token" {
                return Response::not_found();
            }
            let scopes: Vec<String> = req.query("scope").into_iter().collect();
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            Response::json(&json!({ "token": handler_signer.token(&scopes) }))
        });
        TokenService {
            server,
            signer,
            tls: None,
            _dir: dir,
        }
    }

    /// Where the registry sends clients for a token.
    pub fn realm(&self) -> String {
        match &self.tls {
            Some(front) => format!("https://{}/token", front.host()),
            None => self.server.url("/token"),
        }
    }

    /// The certificate the registry trusts tokens by.
    pub fn cert_file(&self) -> PathBuf {
        self.signer.cert.clone()
    }

    /// A token for `scopes` (`repository:NAME:pull,push`), for the tests' own pusher.
    pub fn token(&self, scopes: &[&str]) -> String {
        self.signer.token(scopes)
    }

    /// The token requests clients made.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests_to("/token")
    }

    /// The registry's `auth:` section for this service.
    pub fn registry_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.cert_file().display()
        )
    }
}

#[derive(Clone)]
struct Signer {
    key: PathBuf,
    cert: PathBuf,
}

impl Signer {
    fn token(&self, scopes: &[&str]) -> String {
        let pem = std::fs::read_to_string(&self.cert).unwrap();
        // A PEM body is the base64 of the DER certificate, which is what x5c holds.
        let der_base64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let header = json!({ "typ": "JWT", "alg": "RS256", "x5c": [der_base64] });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let access: Vec<Value> = scopes
            .iter()
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(json!({ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }))
            })
            .collect();
        let claims = json!({
            "iss": ISSUER, "sub": "", "aud": SERVICE, "jti": format!("{now}-{}", scopes.len()),
            "iat": now, "nbf": now - 60, "exp": now + 3600, "access": access,
        });
        let signed = format!(
            "{}.{}",
            base64url(&serde_json::to_vec(&header).unwrap()),
            base64url(&serde_json::to_vec(&claims).unwrap())
        );
        format!("{signed}.{}", base64url(&self.sign(signed.as_bytes())))
    }

    /// RS256 is an RSA PKCS#1 v1.5 signature of the SHA-256: what `openssl dgst -sign` makes.
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run openssl dgst");
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl dgst -sign failed");
        out.stdout
    }
}

/// Base64 with the URL alphabet and no padding, as JWTs are written.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64url;

    #[test]
    fn base64url_matches_rfc_4648() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
    }
}
