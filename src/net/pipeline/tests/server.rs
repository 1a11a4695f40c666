//! A scripted HTTP/1.1 server on 127.0.0.1, one thread, answering the requests it reads in
//! order as a test's script says; every request it saw is recorded. The answers the tests
//! script are built here too.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What a server does with one request.
pub(super) enum Act {
    Answer(Vec<u8>),
    /// Answers, then closes the connection (after reading what the client still sends).
    AnswerThenClose(Vec<u8>),
    /// Answers, then drops the connection at once, unread requests and all.
    AnswerThenDrop(Vec<u8>),
    /// Neither answers nor closes, until the client does; what comes is still recorded.
    Silent,
    /// Answers a byte every 20 ms.
    Trickle(Vec<u8>),
}

/// A request as a server saw it: its connection (0 for the first), how many answers that
/// connection had written when the request was read, and its head.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) connection: usize,
    pub(super) answered_before: usize,
    pub(super) head: String,
}

pub(super) struct Server {
    pub(super) url: String,
    pub(super) seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub(super) type Script = dyn Fn(usize, usize, &str) -> Act + Send + Sync;

/// A server whose `script` gets the connection number, the request's number on that
/// connection, and the request's head. Connections are served one after another; the
/// server stops accepting after 20 s.
pub(super) fn server(script: impl Fn(usize, usize, &str) -> Act + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(20);
        let mut connection = 0;
        while Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => {
                    serve(stream, connection, &script, &log);
                    connection += 1;
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Server { url, seen }
}

pub(super) fn serve(
    mut stream: TcpStream,
    connection: usize,
    script: &Script,
    log: &Mutex<Vec<Seen>>,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut buf, mut n, mut written, mut read_at) = (Vec::new(), 0, 0, 0);
    let mut silent = false;
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            log.lock().unwrap().push(Seen {
                connection,
                answered_before: read_at,
                head: head.clone(),
            });
            if silent {
                continue;
            }
            let done = match script(connection, n, &head) {
                Act::Answer(answer) => stream.write_all(&answer).is_err(),
                Act::AnswerThenClose(answer) => {
                    let _ = stream.write_all(&answer);
                    true
                }
                Act::AnswerThenDrop(answer) => {
                    let _ = stream.write_all(&answer);
                    return;
                }
                Act::Silent => {
                    silent = true;
                    false
                }
                Act::Trickle(answer) => answer.chunks(1).any(|byte| {
                    thread::sleep(Duration::from_millis(20));
                    stream.write_all(byte).is_err()
                }),
            };
            if done {
                // A clean close: our FIN, then what the client still sends is read (a
                // close with unread data would be a reset), until it closes too.
                let _ = stream.shutdown(Shutdown::Write);
                let _ = io::copy(&mut stream, &mut io::sink());
                return;
            }
            (n, written) = (n + 1, written + 1);
        }
        let mut chunk = [0; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
        read_at = written;
    }
}

pub(super) fn blob(i: usize) -> Vec<u8> {
    format!("blob {i} ").repeat(1000 + i).into_bytes()
}

pub(super) fn ok(body: &[u8]) -> Vec<u8> {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
    [head.as_bytes(), body].concat()
}

pub(super) fn status(line: &str) -> Vec<u8> {
    format!("HTTP/1.1 {line}\r\nContent-Length: 5\r\n\r\noops!").into_bytes()
}

pub(super) fn redirect(to: &str) -> Vec<u8> {
    let head = format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}\r\n");
    format!("{head}Content-Length: 0\r\n\r\n").into_bytes()
}

/// The blob a request asks for: the number after `sha256:` or `/cdn/`.
pub(super) fn wanted(head: &str) -> usize {
    let path = head.split(' ').nth(1).unwrap();
    let tail = path.rsplit([':', '/']).next().unwrap();
    tail.split('?').next().unwrap().parse().unwrap()
}
