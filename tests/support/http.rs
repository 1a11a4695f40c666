//! What the fake server (`fake`) and the proxy (`proxy`) share: accepting connections, and
//! reading a request head. One parser, so the two cannot come to disagree about what a
//! request is.

use std::io::BufRead;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// Longest request head accepted; anything bigger is not a client we are testing.
const MAX_HEAD: usize = 64 * 1024;

/// A request line and its headers; the body, if any, is still in the reader.
#[derive(Clone, Debug)]
pub struct Head {
    pub method: String,
    /// As sent: a path and query, an absolute URI (to a proxy), or `host:port` (`CONNECT`).
    pub target: String,
    /// In arrival order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header called `name`, ignoring ASCII case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The first of `headers` called `name`, ignoring ASCII case.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads one request head; `None` for anything that is not HTTP/1.x, is cut short, or is
/// longer than `MAX_HEAD`.
pub fn read_head(reader: &mut impl BufRead) -> Option<Head> {
    let mut head_len = 0;
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    head_len += line.len();
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head_len += line.len();
        if head_len > MAX_HEAD {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Some(Head {
                method,
                target,
                headers,
            });
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// Accepts connections on 127.0.0.1 (a port of its own) and hands each to `serve` on a thread
/// of its own, so a client holding a connection open cannot stall the next one. Stops
/// accepting on drop.
pub struct Acceptor {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Set on drop; `serve` is given it, so long waits can end early.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    pub fn start(serve: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static) -> Acceptor {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        let thread = {
            let (connections, stop) = (Arc::clone(&connections), Arc::clone(&stop));
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (serve, stop) = (Arc::clone(&serve), Arc::clone(&stop));
                    thread::spawn(move || serve(stream, &stop));
                }
            })
        };
        Acceptor {
            addr,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// TCP connections accepted so far, including ones that never sent a request.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
