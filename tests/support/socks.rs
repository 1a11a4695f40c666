//! A small SOCKS proxy on 127.0.0.1 that speaks SOCKS4, SOCKS4a and SOCKS5 (no
//! authentication), records what each client asked to connect to, and relays the bytes.
//! It connects only to 127.0.0.1 (a name it is asked to resolve must be `127.0.0.1` or
//! `localhost`); anything else is refused with the protocol's failure reply.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::http::Acceptor;

/// One CONNECT the proxy was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// `socks4`, `socks4a` (SOCKS4 with a host name) or `socks5`.
    pub version: &'static str,
    /// SOCKS5's address type: `ipv4`, `domain` or `ipv6`; SOCKS4's is `ipv4` or `domain`.
    pub address_type: &'static str,
    /// `host:port` as the client sent it.
    pub target: String,
}

pub struct SocksProxy {
    seen: Arc<Mutex<Vec<Connect>>>,
    /// The local address of each connection the proxy opened to a target.
    upstreams: Arc<Mutex<Vec<SocketAddr>>>,
    acceptor: Acceptor,
}

impl SocksProxy {
    pub fn start() -> SocksProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let upstreams = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (seen, upstreams) = (Arc::clone(&seen), Arc::clone(&upstreams));
            Acceptor::start(move |stream, _stop| {
                let _ = serve(stream, &seen, &upstreams);
            })
        };
        SocksProxy {
            seen,
            upstreams,
            acceptor,
        }
    }

    pub fn port(&self) -> u16 {
        self.acceptor.port()
    }

    /// `SCHEME://127.0.0.1:PORT`, for `ALL_PROXY` and the like.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port())
    }

    /// Every CONNECT asked for so far, in order.
    pub fn seen(&self) -> Vec<Connect> {
        self.seen.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.acceptor.connections()
    }

    /// The local address of every connection the proxy opened to a target, in order: a
    /// request a server logs as coming from one of them came through the proxy.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.upstreams.lock().unwrap().clone()
    }
}

fn byte(stream: &mut TcpStream) -> io::Result<u8> {
    let mut b = [0];
    stream.read_exact(&mut b)?;
    Ok(b[0])
}

fn bytes(stream: &mut TcpStream, n: usize) -> io::Result<Vec<u8>> {
    let mut b = vec![0; n];
    stream.read_exact(&mut b)?;
    Ok(b)
}

/// Up to a NUL, which is read and dropped.
fn until_nul(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match byte(stream)? {
            0 => return Ok(out),
            b if out.len() < 1024 => out.push(b),
            _ => return Err(io::Error::other("string too long")),
        }
    }
}

fn port(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Where the proxy will connect for `host`: loopback only.
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    match host {
        "127.0.0.1" | "localhost" => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        _ => None,
    }
}

fn serve(
    mut client: TcpStream,
    seen: &Mutex<Vec<Connect>>,
    upstreams: &Mutex<Vec<SocketAddr>>,
) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let upstream = match byte(&mut client)? {
        4 => socks4(&mut client, seen)?,
        5 => socks5(&mut client, seen)?,
        _ => return Ok(()),
    };
    let Some(upstream) = upstream else {
        return Ok(());
    };
    upstreams.lock().unwrap().push(upstream.local_addr()?);
    client.set_read_timeout(None)?;
    relay(client, upstream)
}

/// SOCKS4 and 4a: `4 1 PORT IP USERID\0 [HOST\0]`; reply `0 90 ...` or `0 91 ...`.
fn socks4(client: &mut TcpStream, seen: &Mutex<Vec<Connect>>) -> io::Result<Option<TcpStream>> {
    let head = bytes(client, 7)?;
    let (command, port, ip) = (
        head[0],
        port(&head[1..3]),
        [head[3], head[4], head[5], head[6]],
    );
    until_nul(client)?; // user id
    let (version, address_type, host) = if ip[..3] == [0, 0, 0] && ip[3] != 0 {
        let name = String::from_utf8_lossy(&until_nul(client)?).into_owned();
        ("socks4a", "domain", name)
    } else {
        ("socks4", "ipv4", Ipv4Addr::from(ip).to_string())
    };
    seen.lock().unwrap().push(Connect {
        version,
        address_type,
        target: format!("{host}:{port}"),
    });
    let upstream = match (command, resolve(&host, port)) {
        (1, Some(addr)) => TcpStream::connect(addr).ok(),
        _ => None,
    };
    let status = if upstream.is_some() { 90 } else { 91 };
    client.write_all(&[0, status, 0, 0, 0, 0, 0, 0])?;
    Ok(upstream)
}

/// SOCKS5 (RFC 1928) without authentication.
fn socks5(client: &mut TcpStream, seen: &Mutex<Vec<Connect>>) -> io::Result<Option<TcpStream>> {
    let methods = byte(client)? as usize;
    let methods = bytes(client, methods)?;
    if !methods.contains(&0) {
        client.write_all(&[5, 0xff])?;
        return Ok(None);
    }
    client.write_all(&[5, 0])?;
    let head = bytes(client, 4)?;
    if head[0] != 5 {
        return Ok(None);
    }
    let (address_type, host) = match head[3] {
        1 => (
            "ipv4",
            Ipv4Addr::from(<[u8; 4]>::try_from(bytes(client, 4)?).unwrap()).to_string(),
        ),
        3 => {
            let len = byte(client)? as usize;
            (
                "domain",
                String::from_utf8_lossy(&bytes(client, len)?).into_owned(),
            )
        }
        4 => {
            let raw = <[u8; 16]>::try_from(bytes(client, 16)?).unwrap();
            ("ipv6", std::net::Ipv6Addr::from(raw).to_string())
        }
        _ => return Ok(None),
    };
    let port = port(&bytes(client, 2)?);
    seen.lock().unwrap().push(Connect {
        version: "socks5",
        address_type,
        target: format!("{host}:{port}"),
    });
    let upstream = match (head[1], resolve(&host, port)) {
        (1, Some(addr)) => TcpStream::connect(addr).ok(),
        _ => None,
    };
    // Succeeded (0) or connection not allowed by ruleset (2); bound address 0.0.0.0:0.
    let status = if upstream.is_some() { 0 } else { 2 };
    client.write_all(&[5, status, 0, 1, 0, 0, 0, 0, 0, 0])?;
    Ok(upstream)
}

/// Copies both ways until each side has closed its half.
fn relay(client: TcpStream, upstream: TcpStream) -> io::Result<()> {
    let (mut client_in, mut upstream_out) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut client_in, &mut upstream_out);
        let _ = upstream_out.shutdown(Shutdown::Write);
    });
    let (mut upstream_in, mut client_out) = (upstream, client);
    let _ = io::copy(&mut upstream_in, &mut client_out);
    let _ = client_out.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}
