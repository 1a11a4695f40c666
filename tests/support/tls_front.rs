//! TLS in front of a scripted server: `socat` terminates TLS on a port of its own (with a
//! certificate for 127.0.0.1 from a fresh test CA) and passes the plain HTTP to the fake.
//! For what only an https origin can do: redirect to plain HTTP, name a token realm.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::registry::make_certificates;
use super::{free_port, wait_until, TempDir};

pub struct TlsFront {
    child: Child,
    port: u16,
    /// Holds `ca.pem` and the server's key pair.
    dir: TempDir,
}

impl TlsFront {
    /// TLS on a fresh port, forwarding each connection to `127.0.0.1:backend`.
    pub fn start(backend: u16) -> TlsFront {
        let dir = TempDir::new();
        make_certificates(dir.path());
        let port = free_port();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        );
        let child = Command::new("socat")
            .args([listen, format!("TCP:127.0.0.1:{backend}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn socat: {e} (is socat installed?)"));
        let front = TlsFront { child, port, dir };
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "socat did not listen on {port}");
        front
    }

    /// `127.0.0.1:PORT`, the registry part of a reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA that signed the front's certificate, for `--ca-file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
