//! The pipeline's connections take the routes a request to the same URL would: through
//! an HTTP or SOCKS proxy, and over TLS with the roots (`--ca-file`, `--insecure`) its agent
//! trusts.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Mutex;
use std::thread;

use super::server::{blob, ok, redirect, server, wanted, Act, Server};
use super::*;

/// A proxy's side of a handshake: reads what the client asks for, answers it, and gives
/// the target's `host:port`.
type Handshake = fn(&mut TcpStream) -> io::Result<String>;

/// A forward proxy on 127.0.0.1 that relays bytes both ways after `handshake`, to
/// 127.0.0.1 only, and records each target.
fn proxy(handshake: Handshake) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let targets = Arc::new(Mutex::new(Vec::new()));
    let log = targets.clone();
    thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            let Ok((mut client, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            client.set_nonblocking(false).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let Ok(target) = handshake(&mut client) else {
                continue;
            };
            log.lock().unwrap().push(target.clone());
            let Ok(upstream) = TcpStream::connect(&target) else {
                continue;
            };
            if target.starts_with("127.0.0.1:") {
                upstream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let (mut from, mut to) =
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
                thread::spawn(move || {
                    let (mut from, mut to) = (upstream, client);
                    let _ = io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        }
    });
    (port, targets)
}

fn http_connect(client: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        let mut byte = [0];
        client.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split(' ').next());
    let target = target.ok_or(io::ErrorKind::InvalidData)?.to_string();
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    Ok(target)
}

fn socks5(client: &mut TcpStream) -> io::Result<String> {
    let mut greeting = [0; 2];
    client.read_exact(&mut greeting)?;
    client.read_exact(&mut vec![0; greeting[1] as usize])?;
    client.write_all(&[5, 0])?; // no authentication
    let mut request = [0; 4];
    client.read_exact(&mut request)?;
    let host = match request {
        [5, 1, 0, 1] => {
            let mut ip = [0; 4];
            client.read_exact(&mut ip)?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        _ => return Err(io::ErrorKind::InvalidData.into()),
    };
    let mut port = [0; 2];
    client.read_exact(&mut port)?;
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
    Ok(format!("{host}:{}", u16::from_be_bytes(port)))
}

#[test]
fn through_an_http_proxy_and_a_socks_proxy() {
    let handshakes: [(&str, Handshake); 2] = [("http", http_connect), ("socks5", socks5)];
    for (scheme, handshake) in handshakes {
        let cdn = server(|_, _, head| Act::Answer(ok(&blob(wanted(head)))));
        let cdn_url = cdn.url.clone();
        let registry = server(move |_, _, head| {
            Act::Answer(redirect(&format!("{cdn_url}/cdn/{}", wanted(head))))
        });
        let (port, targets) = proxy(handshake);
        let proxies = Proxies::all(&format!("{scheme}://127.0.0.1:{port}"));
        let mut transport = Transport::new(Options {
            proxies,
            ..options()
        })
        .unwrap();
        let mut p = pipeline(&mut transport, &registry, 3);
        assert_eq!(take_all(&mut p), whole(&[0, 1, 2]), "{scheme}");
        let host = |s: &Server| s.url.strip_prefix("http://").unwrap().to_string();
        assert_eq!(
            *targets.lock().unwrap(),
            [host(&registry), host(&cdn)],
            "{scheme}"
        );
        // In the tunnel, requests are in origin form, as ureq writes its own.
        assert!(registry
            .seen()
            .iter()
            .all(|s| s.head.starts_with("GET /v2/r/blobs/")));
        assert!(cdn.seen().iter().all(|s| !authorized(s)));
    }
}

#[test]
fn over_tls_with_the_roots_every_request_trusts() {
    // socat in front of a scripted server, with a certificate for 127.0.0.1 (`make test`
    // installs socat and openssl; the integration tests use them the same way).
    let dir = std::env::temp_dir().join(format!("ocidl-pipeline-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .current_dir(&dir)
        .output()
        .expect("openssl");
    assert!(openssl.status.success(), "{openssl:?}");
    let registry = server(|_, _, head| Act::Answer(ok(&blob(wanted(head)))));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut socat = std::process::Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={0}/cert.pem,key={0}/key.pem",
            dir.display()
        ))
        .arg(format!("TCP:{}", registry.url.strip_prefix("http://").unwrap()))
        .spawn()
        .expect("socat");
    let up = (0..500).any(|_| {
        thread::sleep(Duration::from_millis(10));
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let tls = Server {
        url: format!("https://127.0.0.1:{port}"),
        seen: registry.seen.clone(),
    };
    let run = |options: Options| {
        let mut transport = Transport::new(options).unwrap();
        let mut p = pipeline(&mut transport, &tls, 2);
        (
            take_all(&mut p),
            p.missed(),
            p.stopped().map(str::to_string),
        )
    };
    let untrusted = run(options());
    let with_ca_file = run(Options {
        ca_files: vec![dir.join("cert.pem")],
        ..options()
    });
    let insecure = run(Options {
        insecure: true,
        ..options()
    });
    let _ = socat.kill();
    let _ = socat.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(up, "socat did not listen");
    let (got, missed, stopped) = untrusted;
    assert!(got.is_empty() && missed == [0, 1], "{got:?}");
    assert!(stopped.unwrap().contains("TLS"));
    assert_eq!(with_ca_file, (whole(&[0, 1]), vec![], None));
    assert_eq!(insecure, (whole(&[0, 1]), vec![], None));
}
