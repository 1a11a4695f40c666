//! A recording HTTP forward proxy on 127.0.0.1, the kind `HTTP_PROXY` and `HTTPS_PROXY` name:
//! requests in absolute form (`GET http://127.0.0.1:5000/v2/ HTTP/1.1`) are forwarded, and
//! `CONNECT host:port` opens a tunnel (for https). Every request is recorded, so a test can
//! assert what went through it, and that nothing did.
//!
//! Nothing leaves loopback: only targets on 127.0.0.1 (or `localhost`) are forwarded, and
//! names a test routes explicitly (`with_routes`: `registry-1.docker.io:80` -> a local port),
//! which is how a test reaches "Docker Hub" offline. Anything else gets 502.
//!
//! Each forwarded request gets its own upstream connection with `Connection: close`, and the
//! answer is relayed with `Connection: close` too: the simplest correct proxy.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::http::{read_head, Acceptor, Head};

/// A client or upstream that says nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(10);

/// One request the proxy received: its head (a body is passed on, not recorded).
pub type Seen = Head;

struct State {
    seen: Mutex<Vec<Seen>>,
    /// `host:port` as requested (lowercase) -> port on 127.0.0.1.
    routes: HashMap<String, u16>,
    /// The local address of each connection the proxy opened upstream: what the server at
    /// the other end sees as its client's.
    upstreams: Mutex<Vec<SocketAddr>>,
}

/// The running proxy; stops accepting on drop.
pub struct Proxy {
    state: Arc<State>,
    acceptor: Acceptor,
}

impl Proxy {
    /// Forwards to 127.0.0.1 and `localhost` only.
    pub fn start() -> Proxy {
        Proxy::with_routes(&[])
    }

    /// Also forwards `host:port` (as the client names it; port 80 when an http URI has none)
    /// to `127.0.0.1:<local port>`.
    pub fn with_routes(routes: &[(&str, u16)]) -> Proxy {
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            routes: routes
                .iter()
                .map(|(authority, port)| (authority.to_ascii_lowercase(), *port))
                .collect(),
            upstreams: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let state = Arc::clone(&state);
            Acceptor::start(move |stream, _| serve(stream, &state))
        };
        Proxy { state, acceptor }
    }

    /// `http://127.0.0.1:PORT`: the value for `HTTP_PROXY` and friends.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    pub fn port(&self) -> u16 {
        self.acceptor.port()
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The absolute URIs of the forwarded (non-CONNECT) requests.
    pub fn forwarded(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != "CONNECT")
            .map(|s| s.target)
            .collect()
    }

    /// The `host:port` of each CONNECT.
    pub fn tunnels(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "CONNECT")
            .map(|s| s.target)
            .collect()
    }

    /// The `host:port` each request was for, whichever way it came: a CONNECT's target, or
    /// the authority of an absolute URI (port 80 when it names none).
    pub fn authorities(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .map(|s| match s.method.as_str() {
                "CONNECT" => s.target,
                _ => {
                    let rest = s.target.strip_prefix("http://").unwrap_or(&s.target);
                    let authority = rest.split('/').next().unwrap_or("");
                    if authority.contains(':') {
                        authority.to_string()
                    } else {
                        format!("{authority}:80")
                    }
                }
            })
            .collect()
    }

    /// TCP connections accepted, including ones that never sent a request.
    pub fn connections(&self) -> usize {
        self.acceptor.connections()
    }

    /// The local address of every connection the proxy opened upstream, in order: a request
    /// a server logs as coming from one of them came through the proxy.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.state.upstreams.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // A failing test shows what went through. (The acceptor stops after this.)
        if thread::panicking() {
            eprintln!("--- requests to proxy {} ---", self.url());
            for s in self.seen() {
                eprintln!("{} {}", s.method, s.target);
            }
        }
    }
}

fn serve(client: TcpStream, state: &State) {
    let _ = client.set_read_timeout(Some(IDLE));
    let _ = client.set_write_timeout(Some(IDLE));
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let Some(head) = read_head(&mut reader) else {
        return answer(&client, "400 Bad Request");
    };
    state.seen.lock().unwrap().push(head.clone());
    if head.method == "CONNECT" {
        return tunnel(client, reader, &head.target, state);
    }
    forward(client, reader, head, state);
}

fn answer(client: &TcpStream, status: &str) {
    let _ = (&*client).write_all(
        format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let _ = client.shutdown(Shutdown::Both);
}

/// The local port `authority` goes to, or `None` when it is not ours to reach.
fn upstream_port(authority: &str, default_port: u16, state: &State) -> Option<u16> {
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            (host.to_string(), port.parse().ok()?)
        }
        _ => (authority.clone(), default_port),
    };
    if let Some(&local) = state.routes.get(&format!("{host}:{port}")) {
        return Some(local);
    }
    (host == "127.0.0.1" || host == "localhost").then_some(port)
}

fn connect_local(port: u16, state: &State) -> Option<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    if let Ok(local) = stream.local_addr() {
        state.upstreams.lock().unwrap().push(local);
    }
    let _ = stream.set_read_timeout(Some(IDLE));
    let _ = stream.set_write_timeout(Some(IDLE));
    Some(stream)
}

/// `CONNECT host:port`: 200, then bytes both ways until either side closes.
fn tunnel(client: TcpStream, mut reader: BufReader<TcpStream>, target: &str, state: &State) {
    let Some(upstream) =
        upstream_port(target, 443, state).and_then(|port| connect_local(port, state))
    else {
        return answer(&client, "502 Bad Gateway");
    };
    if (&client)
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let (Ok(mut up_read), Ok(mut client_write)) = (upstream.try_clone(), client.try_clone()) else {
        return;
    };
    let downstream = thread::spawn(move || {
        let _ = io::copy(&mut up_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Write);
    });
    // `reader` first hands over anything it buffered beyond the CONNECT head.
    let mut up_write = &upstream;
    let _ = io::copy(&mut reader, &mut up_write);
    let _ = upstream.shutdown(Shutdown::Write);
    let _ = downstream.join();
}

/// An absolute-form request: sent on in origin form over a new connection, the answer
/// relayed back whole.
fn forward(client: TcpStream, mut reader: BufReader<TcpStream>, head: Head, state: &State) {
    let Some(rest) = head.target.strip_prefix("http://") else {
        return answer(&client, "400 Bad Request");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(mut upstream) =
        upstream_port(authority, 80, state).and_then(|port| connect_local(port, state))
    else {
        return answer(&client, "502 Bad Gateway");
    };
    let length = head
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    if (&mut reader).take(length).read_to_end(&mut body).is_err() {
        return;
    }
    let hop_by_hop = [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
    ];
    let mut request = format!("{} {path} HTTP/1.1\r\n", head.method);
    for (name, value) in &head.headers {
        if !hop_by_hop.contains(&name.to_ascii_lowercase().as_str()) {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(request.as_bytes()).is_err() || upstream.write_all(&body).is_err() {
        return answer(&client, "502 Bad Gateway");
    }
    let mut response = Vec::new();
    let _ = upstream.read_to_end(&mut response);
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer(&client, "502 Bad Gateway");
    };
    let head_text = String::from_utf8_lossy(&response[..end]).into_owned();
    let mut relayed = String::new();
    for line in head_text.split("\r\n") {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if name != "connection" && name != "keep-alive" {
            relayed.push_str(line);
            relayed.push_str("\r\n");
        }
    }
    relayed.push_str("Connection: close\r\n\r\n");
    let mut out = &client;
    let _ = out.write_all(relayed.as_bytes());
    let _ = out.write_all(&response[end + 4..]);
    let _ = out.flush();
    let _ = client.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::fake::{FakeServer, Response};

    /// Sends `request` to the proxy and returns everything it answers.
    fn ask(proxy: &Proxy, request: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[test]
    fn forwards_absolute_form_in_origin_form_and_records_it() {
        let server =
            FakeServer::start(|_| Response::ok(b"hello").header("Connection", "keep-alive"));
        let proxy = Proxy::start();
        let url = server.url("/v2/x?y=1");
        let answer = ask(
            &proxy,
            &format!(
                "GET {url} HTTP/1.1\r\nHost: {}\r\nProxy-Connection: keep-alive\r\n\r\n",
                server.host()
            ),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
        assert_eq!(answer.matches("Connection:").count(), 1, "{answer}");
        assert!(answer.contains("Connection: close"), "{answer}");
        let got = server.requests();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].target, "/v2/x?y=1");
        assert_eq!(got[0].header("proxy-connection"), None);
        assert_eq!(proxy.forwarded(), [url]);
        assert_eq!(proxy.authorities(), [server.host()]);
    }

    #[test]
    fn tunnels_connect_and_refuses_other_hosts() {
        let server = FakeServer::start(|_| Response::ok(b"tunnelled"));
        let proxy = Proxy::with_routes(&[("registry.example:443", server.port())]);
        for target in [server.host(), "registry.example:443".to_string()] {
            let answer = ask(
                &proxy,
                &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
            );
            assert!(
                answer.starts_with("HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.1 200"),
                "{answer}"
            );
            assert!(answer.ends_with("tunnelled"), "{answer}");
        }
        for request in [
            "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            "GET http://example.com/ HTTP/1.1\r\n\r\n",
            "GET http://registry.example/ HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                ask(&proxy, request).starts_with("HTTP/1.1 502"),
                "{request}"
            );
        }
        assert_eq!(server.requests().len(), 2);
        assert_eq!(
            proxy.authorities(),
            [
                server.host(),
                "registry.example:443".into(),
                "example.com:443".into(),
                "example.com:80".into(),
                "registry.example:80".into()
            ]
        );
    }
}
