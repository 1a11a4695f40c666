//! A scripted HTTP/1.1 server that keeps its connections open and reads several requests on
//! each, answering them in order: what a client that pipelines its requests meets. `fake`'s
//! server closes every connection after one answer, so a pipeline never gets past its first
//! request there.
//!
//! Every request is recorded with the connection it came on, its place on that connection,
//! how many answers that connection had sent when it arrived (0 for all of a pipeline's
//! requests: they were all there before the first answer went out), and how many times its
//! target had been asked for before. The script (`Fn(&Seen) -> Act`) answers it, or not.
//!
//! Every wait is bounded: a connection that says nothing for `IDLE` is closed, none lives
//! longer than `LIFETIME`, a throttled body stops when the server is dropped, and request
//! bytes held unanswered are limited to `MAX_BUFFERED`.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::fake::{pause, reason, Delivery, Request, Response};
use super::http::{read_head, Acceptor};

/// A connection on which the client sends nothing for this long (while the server waits for
/// a request) is closed.
const IDLE: Duration = Duration::from_secs(10);
/// No connection is served longer than this, whatever the client does.
const LIFETIME: Duration = Duration::from_secs(60);
/// Request bytes read and not yet answered on one connection, at most; more ends it.
const MAX_BUFFERED: usize = 1 << 20;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The connection it came on: 0 for the first the server accepted, then 1, 2...
    pub connection: usize,
    /// Its place on that connection: 0 for the connection's first request.
    pub nth: usize,
    /// Answers the connection had sent when this request was there to read. 0 for every
    /// request of a pipeline; a client that waits for each answer sends its second request
    /// after one.
    pub answered_before: usize,
    /// How many requests for this target (path and query) the server has seen, this one
    /// included: 1 the first time.
    pub attempt: usize,
    pub request: Request,
}

impl Seen {
    /// The request's path, without its query.
    pub fn path(&self) -> &str {
        self.request.path()
    }
}

/// What the server does with a request, in its turn.
#[derive(Clone, Debug)]
pub enum Act {
    /// Answers and keeps the connection open for the next request.
    Answer(Response),
    /// Answers (as much of the body as the response holds: a `Content-Length` larger than
    /// the body makes an answer cut off), then closes: its FIN, then whatever the client
    /// still sends is read and dropped until it closes too.
    AnswerThenClose(Response),
    /// Answers neither this request nor any later one on the connection, and does not close
    /// it: what comes is still read and recorded until the client closes (or `IDLE`).
    Silent,
}

type Script = dyn Fn(&Seen) -> Act + Send + Sync + 'static;

struct State {
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
}

/// The running server; stops accepting on drop.
pub struct Pipelining {
    state: Arc<State>,
    acceptor: Acceptor,
}

impl Pipelining {
    pub fn start(script: impl Fn(&Seen) -> Act + Send + Sync + 'static) -> Pipelining {
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
        });
        let acceptor = {
            let state = Arc::clone(&state);
            Acceptor::start(move |stream, stop| {
                let connection = state.connections.fetch_add(1, Ordering::SeqCst);
                serve(stream, connection, &state, &script, stop);
            })
        };
        Pipelining { state, acceptor }
    }

    pub fn port(&self) -> u16 {
        self.acceptor.port()
    }

    /// `127.0.0.1:PORT`: the registry part of a reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// `127.0.0.1:PORT/<rest>`.
    pub fn reference(&self, rest: &str) -> String {
        format!("{}/{rest}", self.host())
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    /// Every request so far, in the order they were read.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The GETs whose path contains `part`, in the order they were read.
    pub fn gets(&self, part: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.request.method == "GET" && s.path().contains(part))
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.acceptor.connections()
    }
}

impl Drop for Pipelining {
    fn drop(&mut self) {
        // A failing test shows what the server was asked, and on which connections.
        if thread::panicking() {
            eprintln!("--- requests to pipelining server {} ---", self.host());
            for s in self.seen() {
                eprintln!(
                    "conn {} #{} (after {} answers, attempt {}): {} {} auth={:?} range={:?}",
                    s.connection,
                    s.nth,
                    s.answered_before,
                    s.attempt,
                    s.request.method,
                    s.request.target,
                    s.request.authorization(),
                    s.request.header("range"),
                );
            }
        }
    }
}

/// One connection: requests are parsed as they come and answered one after another, in
/// order. Before each answer, whatever the client has sent by then is read, so a request
/// records whether it was there before that answer went out.
fn serve(stream: TcpStream, connection: usize, state: &State, script: &Script, stop: &AtomicBool) {
    let started = Instant::now();
    let _ = stream.set_read_timeout(Some(IDLE));
    let _ = stream.set_write_timeout(Some(IDLE));
    let mut buffer = Vec::new();
    let mut pending: VecDeque<Seen> = VecDeque::new();
    let (mut nth, mut answered, mut silent, mut eof) = (0, 0, false, false);
    loop {
        if stop.load(Ordering::SeqCst) || started.elapsed() > LIFETIME {
            return;
        }
        if !eof {
            eof = read_ready(&stream, &mut buffer);
        }
        loop {
            match parse(&mut buffer) {
                Parsed::Request(request) => {
                    let mut seen = state.seen.lock().unwrap();
                    let attempt = 1 + seen
                        .iter()
                        .filter(|s| s.request.target == request.target)
                        .count();
                    let s = Seen {
                        connection,
                        nth,
                        answered_before: answered,
                        attempt,
                        request,
                    };
                    seen.push(s.clone());
                    pending.push_back(s);
                    nth += 1;
                }
                Parsed::Incomplete => break,
                Parsed::Garbage => return,
            }
        }
        if buffer.len() > MAX_BUFFERED {
            return;
        }
        let next = if silent { None } else { pending.pop_front() };
        let Some(next) = next else {
            if eof {
                return;
            }
            // Nothing to answer: wait (bounded) for the client's next bytes.
            let mut chunk = [0; 16 * 1024];
            match (&stream).read(&mut chunk) {
                Ok(0) => eof = true,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
            continue;
        };
        match script(&next) {
            Act::Answer(response) => {
                if write_response(&stream, &next.request, &response, stop).is_err() {
                    return;
                }
                answered += 1;
            }
            Act::AnswerThenClose(response) => {
                let _ = write_response(&stream, &next.request, &response, stop);
                // A clean close: our FIN, then what the client still sends is read (closing
                // with unread data would be a reset), until it closes too.
                let _ = stream.shutdown(Shutdown::Write);
                let _ = io::copy(&mut (&stream).take(MAX_BUFFERED as u64), &mut io::sink());
                return;
            }
            Act::Silent => silent = true,
        }
    }
}

/// Reads whatever the client has sent by now without waiting; whether it has closed.
fn read_ready(stream: &TcpStream, buffer: &mut Vec<u8>) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut chunk = [0; 16 * 1024];
    let eof = loop {
        if buffer.len() > MAX_BUFFERED {
            break false;
        }
        match (&*stream).read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    let _ = stream.set_nonblocking(false);
    eof
}

enum Parsed {
    Request(Request),
    /// Not a whole request yet.
    Incomplete,
    /// Not HTTP/1.x: the connection is dropped.
    Garbage,
}

/// Takes the first whole request (head and `Content-Length` body) off `buffer`.
fn parse(buffer: &mut Vec<u8>) -> Parsed {
    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Parsed::Incomplete;
    };
    let Some(head) = read_head(&mut &buffer[..end + 4]) else {
        return Parsed::Garbage;
    };
    let length = match head.header("content-length").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) if n <= MAX_BUFFERED => n,
        Some(_) => return Parsed::Garbage,
    };
    if buffer.len() < end + 4 + length {
        return Parsed::Incomplete;
    }
    let body = buffer[end + 4..end + 4 + length].to_vec();
    buffer.drain(..end + 4 + length);
    Parsed::Request(Request {
        method: head.method,
        target: head.target,
        headers: head.headers,
        body,
        at: Instant::now(),
    })
}

/// Writes `response`: its headers as given (no `Connection` header unless it has one), a
/// `Content-Length` (its own, or the body's length), and its body at once or throttled.
fn write_response(
    mut stream: &TcpStream,
    request: &Request,
    response: &Response,
    stop: &AtomicBool,
) -> io::Result<()> {
    let length = response
        .content_length
        .unwrap_or(response.body.len() as u64);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
    stream.write_all(head.as_bytes())?;
    if request.method == "HEAD" {
        return stream.flush();
    }
    let body = &response.body;
    match &response.delivery {
        Delivery::AtOnce => stream.write_all(body)?,
        Delivery::Throttled { chunk, every, .. } => {
            for piece in body.chunks((*chunk).max(1)) {
                stream.write_all(piece)?;
                stream.flush()?;
                if !pause(*every, stop) {
                    return Err(io::Error::other("the server is stopping"));
                }
            }
        }
        other => panic!("the pipelining server does not send a body {other:?}"),
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `requests` in one write, then reads `answers` whole answers of `body`'s size.
    fn pipeline(server: &Pipelining, requests: &str, answers: usize, body: usize) -> Vec<u8> {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(requests.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0; 4096];
        let whole = |got: &[u8]| {
            let heads = got.windows(4).filter(|w| w == b"\r\n\r\n").count();
            heads == answers && got.ends_with(&vec![b'x'; body])
        };
        while !whole(&got) {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        got
    }

    #[test]
    fn answers_pipelined_requests_in_order_on_one_connection_and_records_them() {
        let server =
            Pipelining::start(|s| Act::Answer(Response::ok(b"xxx").header("X-Path", s.path())));
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        let requests = [get("/a"), get("/b"), get("/a")].concat();
        let got = String::from_utf8(pipeline(&server, &requests, 3, 3)).unwrap();
        let paths: Vec<&str> = got
            .lines()
            .filter_map(|l| l.strip_prefix("X-Path: "))
            .collect();
        assert_eq!(paths, ["/a", "/b", "/a"], "{got}");
        let seen = server.seen();
        let summary: Vec<(usize, usize, usize, usize)> = seen
            .iter()
            .map(|s| (s.connection, s.nth, s.answered_before, s.attempt))
            .collect();
        assert_eq!(summary, [(0, 0, 0, 1), (0, 1, 0, 1), (0, 2, 0, 2)]);
    }

    #[test]
    fn a_request_sent_after_an_answer_says_so() {
        let server = Pipelining::start(|_| Act::Answer(Response::ok(b"xx")));
        let mut stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = [0; 4096];
        for _ in 0..2 {
            stream
                .write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap();
            let mut got = Vec::new();
            while !got.ends_with(b"\r\n\r\nxx") {
                let n = stream.read(&mut answer).unwrap();
                assert!(n > 0, "closed early");
                got.extend_from_slice(&answer[..n]);
            }
        }
        let answered: Vec<usize> = server.seen().iter().map(|s| s.answered_before).collect();
        assert_eq!(answered, [0, 1]);
    }

    #[test]
    fn a_silent_connection_records_what_comes_and_answers_nothing() {
        let server = Pipelining::start(|s| match s.nth {
            0 => Act::Answer(Response::ok(b"x")),
            _ => Act::Silent,
        });
        let mut stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let get = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n".repeat(3);
        stream.write_all(get.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0; 4096];
        while !got.ends_with(b"\r\n\r\nx") {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&chunk[..n]);
        }
        // Then nothing: no second answer, and no close.
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let more = stream.read(&mut chunk);
        assert!(
            more.as_ref()
                .is_err_and(|e| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "{more:?}"
        );
        assert_eq!(server.seen().len(), 3);
    }
}
