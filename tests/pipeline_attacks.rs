//! Attacks on the pipelined package path (issue 17): servers that keep connections alive and
//! answer pipelined requests as an attacker would, and the waits, files and statuses that
//! result. Everything on 127.0.0.1; every server stops after `LIFETIME`, reads at most
//! `MAX_READ` bytes a connection, and answers only what its script says.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::fake::{Content, FakeServer, Request, Response};
use crate::support::run::ocidl;
use crate::support::{assert_files, assert_no_temp_files, random_bytes, TempDir};

const REPO: &str = "pkgforge/bincache/tool";
const TAG: &str = "v1";
/// How long a scripted server lives at most.
const LIFETIME: Duration = Duration::from_secs(60);
/// The most a scripted server reads from one connection.
const MAX_READ: usize = 4 << 20;

/// A package of `n` files (pipelined from 3 up).
fn files(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("file{i}"),
                random_bytes(3000 + i * 7, 700 + i as u64),
            )
        })
        .collect()
}

fn refs(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(t, d)| (t.as_str(), d.as_slice()))
        .collect()
}

fn owned(files: &[(String, Vec<u8>)]) -> Vec<(&str, Vec<u8>)> {
    files.iter().map(|(t, d)| (t.as_str(), d.clone())).collect()
}

/// One request a scripted server read: its connection (0 for the first), its number on
/// that connection, and its head.
#[derive(Clone, Debug)]
struct Seen {
    connection: usize,
    number: usize,
    head: String,
}

impl Seen {
    fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }
}

/// What a scripted server writes for one request: one answer, several, or anything.
type Act = Vec<u8>;

type Script = dyn Fn(&Seen) -> Act + Send + Sync;

/// A keep-alive HTTP/1.1 server whose every answer a script writes.
struct Raw {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Raw {
    fn start(script: impl Fn(&Seen) -> Act + Send + Sync + 'static) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (log, halt) = (Arc::clone(&seen), Arc::clone(&stop));
        thread::spawn(move || {
            let until = Instant::now() + LIFETIME;
            let connections = AtomicUsize::new(0);
            while Instant::now() < until && !halt.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let connection = connections.fetch_add(1, Ordering::SeqCst);
                let (script, log, halt) =
                    (Arc::clone(&script), Arc::clone(&log), Arc::clone(&halt));
                thread::spawn(move || serve(stream, connection, &*script, &log, &halt, until));
            }
        });
        Raw { port, seen, stop }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if thread::panicking() {
            eprintln!("--- requests to scripted server {} ---", self.host());
            for s in self.seen() {
                eprintln!(
                    "#{}.{} {}",
                    s.connection,
                    s.number,
                    s.head.replace("\r\n", " | ")
                );
            }
        }
    }
}

fn serve(
    mut stream: TcpStream,
    connection: usize,
    script: &Script,
    log: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
    until: Instant,
) {
    stream.set_nonblocking(false).unwrap();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let (mut buf, mut read, mut number) = (Vec::new(), 0, 0);
    let mut chunk = [0u8; 16 << 10];
    while Instant::now() < until && !stop.load(Ordering::SeqCst) && read < MAX_READ {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let seen = Seen {
                connection,
                number,
                head,
            };
            number += 1;
            log.lock().unwrap().push(seen.clone());
            if stream.write_all(&script(&seen)).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                read += n;
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// An answer with `Content-Length`, kept alive.
fn answer(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// What `content` answers to `seen`, as bytes on a kept-alive connection.
fn served(content: &Content, seen: &Seen) -> Vec<u8> {
    let request = Request {
        method: seen.head.split(' ').next().unwrap_or_default().to_string(),
        target: seen.target().to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        at: Instant::now(),
    };
    let response = content.serve(&request);
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    answer(&format!("{} X", response.status), &headers, &response.body)
}

/// A blob GET's digest, if `seen` is one.
fn blob_of(seen: &Seen) -> Option<String> {
    let path = seen.target().split('?').next()?;
    Some(path.rsplit_once("/blobs/")?.1.to_string())
}

// ---- every wait ----

/// The README: "a mirror that could not be reached ... is not asked again in the run. So N
/// dead mirrors cost at most N × `--timeout`". A package of three files goes through the
/// pipeline first: a mirror that takes the connection and never answers costs the
/// pipeline's first wait (`--timeout`), and then the one-by-one path's (`--timeout` again)
/// before it is found dead: twice the stated bound, per dead mirror.
#[test]
fn a_silent_mirror_costs_one_timeout_not_two() {
    let tmp = TempDir::new();
    let package = files(3);
    let mut content = Content::new();
    content.add_package(REPO, TAG, &refs(&package));
    let registry = FakeServer::start(move |req: &Request| content.serve(req));
    let silent =
        FakeServer::start(|_: &Request| Response::ok(b"late").delay(Duration::from_secs(60)));
    let out = ocidl(tmp.path())
        .args(["--plain-http", "--timeout", "2", "-o", "out"])
        .args(["--mirror", &format!("http://{}", silent.host())])
        .arg(format!("{}/{REPO}:{TAG}", registry.host()))
        .run();
    out.assert_success();
    assert_files(&tmp.join("out"), &owned(&package));
    // One wait: one connection, one request. Waits are counted, not timed.
    assert_eq!(
        (silent.connections(), silent.requests().len()),
        (1, 1),
        "the dead mirror was waited on more than once (the README's bound: 1 × --timeout)"
    );
}

/// A registry that answers a package's blob GETs, pipelined, with a redirect each to a
/// different origin, every one of which takes the connection and never answers. One by one,
/// with `--retries 0`, the first blob's silent CDN costs one `--timeout` and the pull fails.
/// Pipelined, each origin's lane waits its first answer for a whole `--timeout` (seven of
/// them: eight connections, the registry's included), and then the one-by-one path waits
/// once more. Issue 17: "never slower than today where a server will not cooperate".
#[test]
fn redirects_to_many_silent_origins_cost_no_more_than_one_by_one() {
    let tmp = TempDir::new();
    let package = files(8);
    let mut content = Content::new();
    content.add_package(REPO, TAG, &refs(&package));
    let cdns: Vec<FakeServer> = (0..package.len())
        .map(|_| {
            FakeServer::start(|_: &Request| Response::ok(b"late").delay(Duration::from_secs(60)))
        })
        .collect();
    let hosts: Vec<String> = cdns.iter().map(FakeServer::host).collect();
    let order = Arc::new(AtomicUsize::new(0));
    let registry = Raw::start(move |seen| match blob_of(seen) {
        Some(digest) => {
            let i = order.fetch_add(1, Ordering::SeqCst) % hosts.len();
            let to = format!("http://{}/blob/{digest}", hosts[i]);
            answer("307 Temporary Redirect", &[("Location", &to)], b"")
        }
        None => served(&content, seen),
    });
    let out = ocidl(tmp.path())
        .args([
            "--plain-http",
            "--timeout",
            "2",
            "--retries",
            "0",
            "-o",
            "out",
        ])
        .arg(format!("{}/{REPO}:{TAG}", registry.host()))
        .run();
    out.assert_code(1);
    assert_no_temp_files(tmp.path());
    // Each connection to a silent origin is one `--timeout` waited: the pipeline's first,
    // and then the one-by-one path's, which gives up. Waits are counted, not timed.
    let asked: usize = cdns.iter().map(|c| c.connections()).sum();
    assert!(
        asked <= 2,
        "{asked} silent origins waited on, where one by one waits on one"
    );
}

// ---- every name ocidl writes ----

/// A package from the registry alone whose one blob is missing: the pull fails and must
/// leave nothing, the output directory it made included, as one by one it does (two files
/// leave no `out`). Pipelined, every temporary file is opened first; the first file's
/// directory (`out`, made when it was opened) is removed with that file while the others
/// are still in it, so it stays, empty, after they go.
#[test]
fn a_failed_pipelined_pull_leaves_no_directory_it_made() {
    let package = files(3);
    let mut content = Content::new();
    content.add_package(REPO, TAG, &refs(&package));
    let gone = crate::support::digest_of(&package[0].1);
    let registry = FakeServer::start(move |req: &Request| match req.path().ends_with(&gone) {
        true => Response::error(404, "BLOB_UNKNOWN", "blob unknown"),
        false => content.serve(req),
    });
    let tmp = TempDir::new();
    let out = ocidl(tmp.path())
        .args(["--plain-http", "--retries", "0", "-o", "out/pkg"])
        .arg(format!("{}/{REPO}:{TAG}", registry.host()))
        .run();
    out.assert_error(1, "not found");
    crate::support::assert_tree(tmp.path(), &[]);
}

/// A mirror (registries.conf's default: it answers tags) whose package of three files has
/// titles that make directories (`share/x/...`), one blob of which it cannot serve. It is
/// abandoned; the registry is asked for that manifest's blobs (pipelined, and it has none),
/// then what the tag means, and its own package is installed. Each failed pipelined attempt
/// removes its first file's directories with that file while the others are still in them,
/// so the mirror's `share/` stays in the installed tree (one by one it does not, see
/// mirrors.rs `a_mirror_abandoned_halfway_leaves_no_directory_behind`).
#[test]
fn a_mirror_abandoned_after_a_pipelined_pass_leaves_no_directory_behind() {
    let theirs = files(3);
    let mut upstream = Content::new();
    upstream.add_package(REPO, TAG, &refs(&theirs));
    let registry = FakeServer::start(move |req: &Request| upstream.serve(req));
    let planted = b"chosen by the mirror".to_vec();
    let missing = b"never served".to_vec();
    let mut content = Content::new();
    content.add_package(
        REPO,
        TAG,
        &[
            ("share/y/missing", &missing),
            ("share/x/planted", &planted),
            ("share/z/more", b"more"),
        ],
    );
    let gone = crate::support::digest_of(&missing);
    let mirror = FakeServer::start(move |req: &Request| match req.path().ends_with(&gone) {
        true => Response::error(404, "BLOB_UNKNOWN", "blob unknown"),
        false => content.serve(req),
    });
    let tmp = TempDir::new();
    let conf = format!(
        "[[registry]]\nprefix = \"{}\"\ninsecure = true\n\n[[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
        registry.host(),
        mirror.host()
    );
    crate::support::write_file(&tmp.join("registries.conf"), conf.as_bytes());
    let out = ocidl(tmp.path())
        .env(
            "CONTAINERS_REGISTRIES_CONF",
            tmp.join("registries.conf").to_str().unwrap(),
        )
        .args(["-o", "out"])
        .arg(format!("{}/{REPO}:{TAG}", registry.host()))
        .run();
    out.assert_success();
    assert_files(&tmp.join("out"), &owned(&theirs));
    crate::support::assert_tree(&tmp.join("out"), &["file0", "file1", "file2"]);
}
