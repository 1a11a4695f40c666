//! An emulated wide-area link in front of distribution, shaped like ghcr.io seen from a user
//! `rtt` away: two origins on two ports of 127.0.0.1, both behind one delay model.
//!
//! - The **registry** port answers every blob GET (`GET /v2/<name>/blobs/sha256:<hex>`) itself
//!   with `307 Temporary Redirect` to the same path on the CDN port, keeping the connection
//!   alive, as ghcr does; that request never reaches distribution. Every other request is
//!   forwarded to distribution on a connection of its own (one per client connection), and the
//!   answer relayed, in order.
//! - The **CDN** port forwards bytes both ways to distribution, unparsed.
//!
//! The model, the same on both ports:
//! - Every byte the client sends reaches the origin `rtt / 2` after the proxy read it, and
//!   nothing before `accept + 1.5 rtt`: a connection's first request pays one round trip more,
//!   its TCP handshake (the client's loopback `connect` returned at once).
//! - Every byte an origin sends (a relayed answer, or a 307 the proxy wrote) first crosses one
//!   downstream link of `bytes_per_sec` shared by every connection on both ports: chunks of at
//!   most 16 KiB are serialised first come, first served, and a connection reads the next
//!   chunk from its origin only once the link has started sending its last one, so a busy
//!   link holds the origin back (at most two chunks per connection wait at the bottleneck).
//!   Each chunk reaches the client `rtt / 2` after its last byte left the link.
//! - Upstream has no rate limit; there is no loss, no slow start and no receive window: once a
//!   connection is set up, only the round trip and the shared rate cost time.
//!
//! Bounded: sockets have read and write timeouts, a delay line that stays empty that long
//! ends its connection, request and response heads are limited in size, and request bodies
//! other than `Content-Length` ones are refused. Dropping the proxy stops accepting; the
//! connections still open end when their client or origin closes, or time out.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::http::{read_head, Acceptor, Head};

/// The most one downstream chunk holds: 1.3 ms of a 100 Mbit/s link, the grain at which
/// connections take turns on it.
const CHUNK: usize = 16 * 1024;
/// Chunks a delay line holds at most. In flight at once are `rate * rtt / 2` bytes (625 KB at
/// 100 Mbit/s and 100 ms), far below this; upstream chunks are requests.
const LINE_CHUNKS: usize = 4096;
/// A socket or a delay line idle this long ends its connection.
const IDLE: Duration = Duration::from_secs(60);
/// Longest response head relayed from distribution.
const MAX_HEAD: usize = 64 * 1024;

/// What the link looks like.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub rtt: Duration,
    /// The shared downstream rate.
    pub bytes_per_sec: f64,
}

/// What went through the proxy since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub registry_connections: usize,
    pub cdn_connections: usize,
    /// Blob GETs the registry port answered with a 307.
    pub redirects: usize,
    /// Other requests the registry port forwarded to distribution.
    pub forwarded: usize,
}

impl Counts {
    pub fn since(self, before: Counts) -> Counts {
        Counts {
            registry_connections: self.registry_connections - before.registry_connections,
            cdn_connections: self.cdn_connections - before.cdn_connections,
            redirects: self.redirects - before.redirects,
            forwarded: self.forwarded - before.forwarded,
        }
    }
}

/// The running proxy: a registry port and a CDN port in front of one distribution.
pub struct LinkProxy {
    registry: Acceptor,
    cdn: Acceptor,
    redirects: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
}

impl LinkProxy {
    /// Fronts the distribution listening on 127.0.0.1:`origin_port`.
    pub fn start(origin_port: u16, shape: Shape) -> LinkProxy {
        let origin = SocketAddr::from(([127, 0, 0, 1], origin_port));
        let link = Arc::new(Link {
            bytes_per_sec: shape.bytes_per_sec,
            free_at: Mutex::new(Instant::now()),
        });
        let cdn = {
            let link = Arc::clone(&link);
            Acceptor::start(move |client, _| {
                let _ = serve(client, origin, shape, &link, Role::Cdn);
            })
        };
        let redirects = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let registry = {
            let role = Role::Registry {
                cdn_port: cdn.port(),
                redirects: Arc::clone(&redirects),
                forwarded: Arc::clone(&forwarded),
            };
            Acceptor::start(move |client, _| {
                let _ = serve(client, origin, shape, &link, role.clone());
            })
        };
        LinkProxy {
            registry,
            cdn,
            redirects,
            forwarded,
        }
    }

    /// `127.0.0.1:PORT` of the registry origin, for references and URLs.
    pub fn registry_host(&self) -> String {
        format!("127.0.0.1:{}", self.registry.port())
    }

    pub fn counts(&self) -> Counts {
        Counts {
            registry_connections: self.registry.connections(),
            cdn_connections: self.cdn.connections(),
            redirects: self.redirects.load(Ordering::SeqCst),
            forwarded: self.forwarded.load(Ordering::SeqCst),
        }
    }
}

#[derive(Clone)]
enum Role {
    Registry {
        cdn_port: u16,
        redirects: Arc<AtomicUsize>,
        forwarded: Arc<AtomicUsize>,
    },
    Cdn,
}

/// The one downstream link: whoever reserves first is sent first.
struct Link {
    bytes_per_sec: f64,
    /// When the link has sent everything reserved so far.
    free_at: Mutex<Instant>,
}

impl Link {
    /// Books `len` bytes on the link; returns when it starts sending them and when their last
    /// byte has left.
    fn reserve(&self, len: usize) -> (Instant, Instant) {
        let mut free_at = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*free_at).max(Instant::now());
        *free_at = start + Duration::from_secs_f64(len as f64 / self.bytes_per_sec);
        (start, *free_at)
    }
}

/// Bytes and the moment they may reach the other end.
struct Chunk {
    due: Instant,
    bytes: Vec<u8>,
}

/// One direction of one connection: what is sent comes out of the `DelayRx` when due.
struct DelayTx {
    tx: SyncSender<Chunk>,
    /// Downstream only: the shared link the bytes cross first.
    link: Option<Arc<Link>>,
    delay: Duration,
    /// Nothing is due before this (the handshake), nor before what was sent earlier.
    not_before: Instant,
}

struct DelayRx {
    rx: Receiver<Chunk>,
    bytes: Vec<u8>,
    read: usize,
}

fn delay_line(link: Option<Arc<Link>>, delay: Duration, not_before: Instant) -> (DelayTx, DelayRx) {
    let (tx, rx) = mpsc::sync_channel(LINE_CHUNKS);
    (
        DelayTx {
            tx,
            link,
            delay,
            not_before,
        },
        DelayRx {
            rx,
            bytes: Vec::new(),
            read: 0,
        },
    )
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

impl DelayTx {
    /// Queues `bytes`. Downstream, returns once the link has started sending the last chunk:
    /// the caller reads on from its origin while that chunk is sent, so the next one is booked
    /// before the link falls idle (a sleep's overshoot would otherwise leave gaps).
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        for piece in bytes.chunks(CHUNK) {
            let (start, left) = match &self.link {
                Some(link) => link.reserve(piece.len()),
                None => (Instant::now(), Instant::now()),
            };
            let due = (left + self.delay).max(self.not_before);
            self.not_before = due;
            self.tx
                .send(Chunk {
                    due,
                    bytes: piece.to_vec(),
                })
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            sleep_until(start);
        }
        Ok(())
    }
}

impl Read for DelayRx {
    /// Blocks until the next chunk is due; 0 once the sending side is gone and all was read.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.read == self.bytes.len() {
            match self.rx.recv_timeout(IDLE) {
                Ok(chunk) => {
                    sleep_until(chunk.due);
                    self.bytes = chunk.bytes;
                    self.read = 0;
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
                Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
            }
        }
        let n = out.len().min(self.bytes.len() - self.read);
        out[..n].copy_from_slice(&self.bytes[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

fn bounded(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    // Small answers (a 307) go out when due, not when Nagle lets them.
    stream.set_nodelay(true)
}

fn connect(origin: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&origin, Duration::from_secs(10))?;
    bounded(&stream)?;
    Ok(stream)
}

/// Reads `from` into `to` until end of file or an error.
fn pump(mut from: impl Read, to: &mut DelayTx) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.send(&buf[..n])?;
    }
}

/// Writes what `from` delivers into `to` as it falls due, then closes `to`'s sending side.
fn drain(mut from: DelayRx, to: TcpStream) {
    let mut to_ref = &to;
    let _ = io::copy(&mut from, &mut to_ref);
    let _ = to.shutdown(Shutdown::Write);
}

/// One client connection, on either port.
fn serve(
    client: TcpStream,
    origin: SocketAddr,
    shape: Shape,
    link: &Arc<Link>,
    role: Role,
) -> io::Result<()> {
    let accepted = Instant::now();
    bounded(&client)?;
    let half = shape.rtt / 2;
    let (mut up_tx, up_rx) = delay_line(None, half, accepted + shape.rtt + half);
    let (mut down_tx, down_rx) = delay_line(Some(Arc::clone(link)), half, accepted);
    let from_client = client.try_clone()?;
    let upstream = thread::spawn(move || {
        let _ = pump(from_client, &mut up_tx);
    });
    let downstream = {
        let to_client = client.try_clone()?;
        thread::spawn(move || drain(down_rx, to_client))
    };
    match role {
        Role::Cdn => {
            let server = connect(origin)?;
            let to_server = server.try_clone()?;
            let requests = thread::spawn(move || drain(up_rx, to_server));
            let _ = pump(&server, &mut down_tx);
            drop(down_tx);
            let _ = requests.join();
        }
        Role::Registry {
            cdn_port,
            redirects,
            forwarded,
        } => {
            let _ = registry(
                up_rx,
                &mut down_tx,
                origin,
                cdn_port,
                &redirects,
                &forwarded,
            );
            drop(down_tx);
        }
    }
    let _ = downstream.join();
    // A client that keeps sending after the end: its reads end with the socket.
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.join();
    Ok(())
}

/// `GET /v2/<name>/blobs/sha256:<64 hex>` (any query): what ghcr sends to its CDN.
fn is_blob_get(head: &Head) -> bool {
    let path = head.target.split('?').next().unwrap_or_default();
    let Some((name, digest)) = path
        .strip_prefix("/v2/")
        .and_then(|p| p.rsplit_once("/blobs/"))
    else {
        return false;
    };
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    head.method == "GET"
        && !name.is_empty()
        && hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The registry port's requests, in order: blob GETs answered here, the rest forwarded.
fn registry(
    requests: DelayRx,
    answers: &mut DelayTx,
    origin: SocketAddr,
    cdn_port: u16,
    redirects: &AtomicUsize,
    forwarded: &AtomicUsize,
) -> io::Result<()> {
    let mut requests = BufReader::new(requests);
    let mut server: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while let Some(head) = read_head(&mut requests) {
        let close = head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if is_blob_get(&head) {
            redirects.fetch_add(1, Ordering::SeqCst);
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\n\
                 Location: http://127.0.0.1:{cdn_port}{}\r\n\
                 Content-Length: 0\r\n\
                 Docker-Distribution-Api-Version: registry/2.0\r\n\r\n",
                head.target
            );
            answers.send(answer.as_bytes())?;
        } else {
            forwarded.fetch_add(1, Ordering::SeqCst);
            if head.header("transfer-encoding").is_some() {
                // Only pushes send chunked bodies, and pushes go to distribution directly.
                answers.send(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                return Ok(());
            }
            let body: u64 = match head.header("content-length").map(str::parse) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => return Ok(()),
            };
            let (to_server, from_server) = match &mut server {
                Some(s) => s,
                None => {
                    let stream = connect(origin)?;
                    let reader = BufReader::new(stream.try_clone()?);
                    server.insert((stream, reader))
                }
            };
            let mut text = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
            for (name, value) in &head.headers {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
            text.push_str("\r\n");
            to_server.write_all(text.as_bytes())?;
            io::copy(&mut (&mut requests).take(body), to_server)?;
            if !relay_answer(from_server, head.method == "HEAD", answers)? {
                return Ok(());
            }
        }
        if close {
            return Ok(());
        }
    }
    Ok(())
}

/// Relays one response from distribution: its head as read, then its body by its framing.
/// `Ok(false)` when the connection cannot carry another exchange.
fn relay_answer(server: &mut impl BufRead, head_only: bool, to: &mut DelayTx) -> io::Result<bool> {
    let mut head = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = server.take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
        head.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            break;
        }
        lines.push(text);
    }
    to.send(&head)?;
    let status: u16 = lines
        .first()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(io::ErrorKind::InvalidData)?;
    let header = |name: &str| {
        lines.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let keep = !header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if head_only || status / 100 == 1 || status == 204 || status == 304 {
        return Ok(keep);
    }
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let line = relay_line(server, to)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16).map_err(|_| io::ErrorKind::InvalidData)?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !relay_line(server, to)?.is_empty() {}
                return Ok(keep);
            }
            relay_exactly(server, size + 2, to)?;
        }
    }
    match header("content-length") {
        Some(n) => {
            let n = n.parse().map_err(|_| io::ErrorKind::InvalidData)?;
            relay_exactly(server, n, to)?;
            Ok(keep)
        }
        None => {
            // Delimited by the close.
            pump(server, to)?;
            Ok(false)
        }
    }
}

/// Relays one line (a chunk size or a trailer); returns it without its line end.
fn relay_line(server: &mut impl BufRead, to: &mut DelayTx) -> io::Result<String> {
    let mut line = Vec::new();
    server.take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    to.send(&line)?;
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

fn relay_exactly(server: &mut impl BufRead, n: u64, to: &mut DelayTx) -> io::Result<()> {
    let mut body = server.take(n);
    pump(&mut body, to)?;
    if body.limit() > 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
