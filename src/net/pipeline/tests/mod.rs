//! The pipeline against scripted servers (`server.rs`): what it asks, on how many
//! connections, and what it yields or leaves missed when a server closes, drops, stalls or
//! trickles. Proxies and TLS are in `routes.rs`.

mod routes;
mod server;

use std::net::TcpListener;

use super::*;
use crate::net::transport::{Options, Proxies, DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME};
use server::{blob, ok, redirect, server, status, wanted, Act, Seen, Server};

fn options() -> Options {
    Options {
        ca_files: vec![],
        env_ca_files: vec![],
        env_ca_dirs: vec![],
        proxies: Proxies::default(),
        retries: 0,
        timeout: Duration::from_secs(10),
        speed_limit: DEFAULT_SPEED_LIMIT,
        speed_time: DEFAULT_SPEED_TIME,
        insecure: false,
        quiet: true,
    }
}

fn transport(timeout: Duration, speed: (u64, Duration)) -> Transport {
    let (speed_limit, speed_time) = speed;
    Transport::new(Options {
        timeout,
        speed_limit,
        speed_time,
        ..options()
    })
    .unwrap()
}

fn normal() -> Transport {
    Transport::new(options()).unwrap()
}

const TOKEN: &str = "Bearer registry-token";

/// A pipeline of blobs 0..n at `registry`, with its token bound to it.
fn pipeline<'t>(transport: &'t mut Transport, registry: &Server, n: usize) -> Pipeline<'t> {
    let origin = Origin::of(&registry.url).unwrap();
    let urls = (0..n)
        .map(|i| {
            (
                format!("{}/v2/r/blobs/sha256:{i}", registry.url),
                blob(i).len() as u64,
            )
        })
        .collect();
    Pipeline::new(
        transport,
        urls,
        Some(Secret::for_registry(TOKEN.into(), &origin)),
    )
}

/// What a pipeline gave: each index yielded with its whole body or the read error.
type Yielded = Vec<(usize, Result<Vec<u8>, String>)>;

fn take_all(p: &mut Pipeline) -> Yielded {
    let mut got = Vec::new();
    while let Some((i, mut body)) = p.next() {
        let mut bytes = Vec::new();
        got.push((
            i,
            body.read_to_end(&mut bytes)
                .map(|_| bytes)
                .map_err(|e| e.to_string()),
        ));
    }
    got
}

fn whole(indices: &[usize]) -> Yielded {
    indices.iter().map(|&i| (i, Ok(blob(i)))).collect()
}

fn authorized(seen: &Seen) -> bool {
    seen.head
        .to_ascii_lowercase()
        .contains("\r\nauthorization:")
}

#[test]
fn a_registry_that_serves_blobs_is_one_pipelined_pass() {
    let registry = server(|_, _, head| Act::Answer(ok(&blob(wanted(head)))));
    let mut transport = normal();
    let mut p = pipeline(&mut transport, &registry, 3);
    assert_eq!(
        p.missed(),
        [0, 1, 2],
        "nothing is delivered before it comes"
    );
    assert_eq!(take_all(&mut p), whole(&[0, 1, 2]));
    assert_eq!(p.missed(), Vec::<usize>::new());
    assert_eq!(p.stopped(), None);
    let seen = registry.seen();
    let host = registry.url.strip_prefix("http://").unwrap();
    for (i, s) in seen.iter().enumerate() {
        assert!(s
            .head
            .starts_with(&format!("GET /v2/r/blobs/sha256:{i} HTTP/1.1\r\n")));
        assert!(
            s.head.contains(&format!("\r\nHost: {host}\r\n")),
            "{}",
            s.head
        );
        assert!(
            s.head.contains(&format!("\r\nAuthorization: {TOKEN}")),
            "{}",
            s.head
        );
        // One connection, and every request was there before the first answer went.
        assert_eq!((s.connection, s.answered_before), (0, 0), "{s:?}");
    }
    assert_eq!(seen.len(), 3);
}

#[test]
fn ghcr_redirects_go_to_a_second_origin_without_credentials() {
    let cdn = server(|_, _, head| Act::Answer(ok(&blob(wanted(head)))));
    let cdn_url = cdn.url.clone();
    let registry = server(move |_, _, head| {
        Act::Answer(redirect(&format!(
            "{cdn_url}/cdn/{}?sig=s3cr3t",
            wanted(head)
        )))
    });
    let mut transport = normal();
    let mut p = pipeline(&mut transport, &registry, 4);
    assert_eq!(take_all(&mut p), whole(&[0, 1, 2, 3]));
    assert_eq!((p.missed(), p.stopped()), (vec![], None));
    let (at_registry, at_cdn) = (registry.seen(), cdn.seen());
    assert!(at_registry
        .iter()
        .all(|s| authorized(s) && s.connection == 0));
    assert_eq!(at_cdn.len(), 4);
    for (i, s) in at_cdn.iter().enumerate() {
        assert!(s
            .head
            .starts_with(&format!("GET /cdn/{i}?sig=s3cr3t HTTP/1.1\r\n")));
        assert!(!authorized(s), "the token went to the CDN: {}", s.head);
        assert_eq!((s.connection, s.answered_before), (0, 0), "{s:?}");
    }
}

#[test]
fn a_server_that_closes_after_the_first_answer() {
    let registry = server(|_, n, head| match n {
        0 => Act::AnswerThenClose(ok(&blob(wanted(head)))),
        _ => Act::Answer(ok(&blob(wanted(head)))),
    });
    let mut transport = normal();
    // The next run meets the same server the same way: a pipeline keeps nothing.
    for run in 0..2 {
        let mut p = pipeline(&mut transport, &registry, 3);
        assert_eq!(take_all(&mut p), whole(&[0]));
        assert_eq!(p.missed(), [1, 2]);
        let stopped = p.stopped().unwrap();
        assert!(
            stopped.ends_with("closed the connection after 1 answer"),
            "{stopped}"
        );
        let connections = registry.seen().iter().map(|s| s.connection).max();
        assert_eq!(connections, Some(run), "one connection a run");
    }
}

#[test]
fn connection_close_is_taken_at_its_word() {
    // The server would go on answering; the client must not read past its word.
    let registry = server(|_, n, head| {
        let body = blob(wanted(head));
        let close = if n == 0 { "Connection: close\r\n" } else { "" };
        let head = format!(
            "HTTP/1.1 200 OK\r\n{close}Content-Length: {}\r\n\r\n",
            body.len()
        );
        Act::Answer([head.as_bytes(), &body].concat())
    });
    let mut transport = normal();
    let mut p = pipeline(&mut transport, &registry, 3);
    assert_eq!(take_all(&mut p), whole(&[0]));
    assert_eq!(p.missed(), [1, 2]);
    assert!(p
        .stopped()
        .unwrap()
        .contains("closed the connection after 1 answer"));
}

#[test]
fn a_dropped_pipeline_goes_on_on_a_new_connection() {
    // Closes after two answers, like a server at its requests-per-connection limit.
    let registry = server(|_, n, head| match n {
        1 => Act::AnswerThenClose(ok(&blob(wanted(head)))),
        _ => Act::Answer(ok(&blob(wanted(head)))),
    });
    let mut transport = normal();
    let mut p = pipeline(&mut transport, &registry, 5);
    assert_eq!(take_all(&mut p), whole(&[0, 1, 2, 3, 4]));
    assert_eq!((p.missed(), p.stopped()), (vec![], None));
    let asked = |c| {
        let seen = registry.seen().into_iter().filter(|s| s.connection == c);
        seen.map(|s| wanted(&s.head)).collect::<Vec<_>>()
    };
    // Two answers a connection: the unanswered are asked again, in order.
    assert_eq!(asked(0)[..2], [0, 1]);
    assert_eq!(asked(1)[..2], [2, 3]);
    assert_eq!(asked(2), [4]);
}

#[test]
fn more_blobs_than_the_window_and_a_server_that_drops_the_connection() {
    // 70 blobs: 64 go out first, the rest as answers come; the first connection is
    // dropped after two answers (with requests unread), the second answers the rest.
    let registry = server(|c, n, head| match (c, n) {
        (0, 1) => Act::AnswerThenDrop(ok(&blob(wanted(head)))),
        _ => Act::Answer(ok(&blob(wanted(head)))),
    });
    let mut transport = normal();
    let mut p = pipeline(&mut transport, &registry, 70);
    let all: Vec<usize> = (0..70).collect();
    assert_eq!(take_all(&mut p), whole(&all));
    assert_eq!((p.missed(), p.stopped()), (vec![], None));
    let second: Vec<usize> = registry
        .seen()
        .iter()
        .filter(|s| s.connection == 1)
        .map(|s| wanted(&s.head))
        .collect();
    assert_eq!(second, all[2..]);
}

#[test]
fn requests_in_flight_are_bounded_and_a_dead_server_costs_one_timeout() {
    let registry = server(|_, _, _| Act::Silent);
    let timeout = Duration::from_secs(1);
    let mut transport = transport(timeout, (DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME));
    let started = Instant::now();
    let mut p = pipeline(&mut transport, &registry, 70);
    assert!(p.next().is_none());
    assert!(started.elapsed() < timeout * 3, "{:?}", started.elapsed());
    assert_eq!(p.missed().len(), 70);
    assert!(
        p.stopped().unwrap().contains("timeout"),
        "{:?}",
        p.stopped()
    );
    assert_eq!(
        registry.seen().len(),
        MAX_IN_FLIGHT,
        "no more before an answer"
    );
}

#[test]
fn a_body_cut_short_stops_the_pipeline() {
    let registry = server(|_, n, head| {
        let answer = ok(&blob(wanted(head)));
        match n {
            1 => Act::AnswerThenClose(answer[..answer.len() / 2].to_vec()),
            _ => Act::Answer(answer),
        }
    });
    let mut transport = normal();
    let mut p = pipeline(&mut transport, &registry, 3);
    let got = take_all(&mut p);
    assert_eq!(got[0], (0, Ok(blob(0))));
    assert!(matches!(&got[1], (1, Err(e)) if e.contains("closed in the middle of a body")));
    assert_eq!(got.len(), 2);
    assert_eq!(p.missed(), [1, 2]);
    assert!(
        p.stopped().unwrap().contains("broke off"),
        "{:?}",
        p.stopped()
    );
}

#[test]
fn an_error_in_the_middle_misses_that_blob_alone() {
    let registry = server(|_, _, head| {
        let i = wanted(head);
        Act::Answer(match i {
            1 => status("500 Internal Server Error"),
            2 => status("404 Not Found"),
            3 => ok(&blob(i)[1..]), // a length that is not the descriptor's
            4 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
                .to_vec(),
            5 => status("429 Too Many Requests"),
            _ => ok(&blob(i)),
        })
    });
    let mut transport = normal();
    let mut p = pipeline(&mut transport, &registry, 7);
    assert_eq!(take_all(&mut p), whole(&[0, 6]));
    assert_eq!(p.missed(), [1, 2, 3, 4, 5]);
    assert_eq!(p.stopped(), None, "the server kept its pipeline in order");
}

#[test]
fn a_trickle_is_cut_by_the_speed_floor() {
    let registry = server(|_, _, head| Act::Trickle(ok(&blob(wanted(head)))));
    let mut transport = transport(
        Duration::from_secs(10),
        (1_000_000, Duration::from_millis(200)),
    );
    let started = Instant::now();
    let mut p = pipeline(&mut transport, &registry, 2);
    let got = take_all(&mut p);
    assert!(
        matches!(&got[..], [(0, Err(e))] if e.contains("--speed-limit")),
        "{got:?}"
    );
    assert_eq!(p.missed(), [0, 1]);
    assert!(p.stopped().unwrap().contains("--speed-limit"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_server_silent_after_one_answer_costs_one_short_wait() {
    let registry = server(|_, n, head| match n {
        0 => Act::Answer(ok(&blob(wanted(head)))),
        _ => Act::Silent,
    });
    let mut transport = transport(
        Duration::from_secs(30),
        (DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME),
    );
    let started = Instant::now();
    let mut p = pipeline(&mut transport, &registry, 4);
    assert_eq!(take_all(&mut p), whole(&[0]));
    let waited = started.elapsed();
    assert!(
        waited >= MIN_PATIENCE && waited < MIN_PATIENCE * 3,
        "{waited:?}"
    );
    assert_eq!(p.missed(), [1, 2, 3]);
    let stopped = p.stopped().unwrap();
    assert!(
        stopped.contains("sent no answer for 2.0 s after 1"),
        "{stopped}"
    );
}

#[test]
fn an_expired_cdn_url_goes_back_to_the_registry() {
    let elsewhere = server(|_, _, head| Act::Answer(ok(&blob(wanted(head)))));
    let elsewhere_url = elsewhere.url.clone();
    let cdn = server(move |_, _, head| {
        let i = wanted(head);
        Act::Answer(match i {
            1 => status("403 Forbidden"),
            // A second hop is one too many.
            2 => redirect(&format!("{elsewhere_url}/cdn/2")),
            _ => ok(&blob(i)),
        })
    });
    let cdn_url = cdn.url.clone();
    let registry = server(move |_, _, head| {
        Act::Answer(redirect(&format!("{cdn_url}/cdn/{}?sig=old", wanted(head))))
    });
    let mut transport = normal();
    let mut p = pipeline(&mut transport, &registry, 4);
    assert_eq!(take_all(&mut p), whole(&[0, 3]));
    assert_eq!((p.missed(), p.stopped()), (vec![1, 2], None));
    assert!(cdn.seen().iter().all(|s| !authorized(s)));
    assert!(elsewhere.seen().is_empty());
}

#[test]
fn a_body_not_read_to_its_end_is_missed() {
    let registry = server(|_, _, head| Act::Answer(ok(&blob(wanted(head)))));
    let mut transport = normal();
    let mut p = pipeline(&mut transport, &registry, 3);
    let (i, mut body) = p.next().unwrap();
    body.read_exact(&mut [0; 3]).unwrap();
    assert_eq!(i, 0);
    assert!(p.next().is_none());
    assert_eq!(p.missed(), [0, 1, 2]);
    assert_eq!(p.stopped(), Some("a body was not read to its end"));
}

#[test]
fn a_registry_that_cannot_be_reached_leaves_everything_missed() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = Server {
        url: format!("http://127.0.0.1:{port}"),
        seen: Arc::default(),
    };
    let mut transport = normal();
    let mut p = pipeline(&mut transport, &gone, 2);
    assert!(p.next().is_none());
    assert_eq!(p.missed(), [0, 1]);
    assert!(
        p.stopped().unwrap().contains("cannot connect"),
        "{:?}",
        p.stopped()
    );
}

#[test]
fn redirects_follow_the_policy_and_requests_carry_no_smuggled_lines() {
    let to = |from: &str, location: &str| hop(from, location).map(|(url, _)| url);
    assert_eq!(
        to("https://r.io/v2/a/blobs/x", "/b?s=1").as_deref(),
        Some("https://r.io/b?s=1")
    );
    assert_eq!(
        to("https://r.io/v2/a", "https://cdn.io/b").as_deref(),
        Some("https://cdn.io/b")
    );
    assert_eq!(
        to("https://r.io/v2/a", "http://cdn.io/b"),
        None,
        "https to http"
    );
    assert_eq!(to("https://r.io/v2/a", "ftp://cdn.io/b"), None);
    let get = request("https://u:p@cdn.io:8443/b?s=1", None).unwrap();
    assert_eq!(
        get,
        format!("GET /b?s=1 HTTP/1.1\r\nHost: cdn.io:8443\r\nUser-Agent: {USER_AGENT}\r\n\r\n")
    );
    assert!(request("https://r.io/a", Some("Bearer x\r\nX-Evil: 1")).is_none());
    assert!(request("https://r.io/a", Some("Bearer \x7f")).is_none());
    assert!(request("https://r.io/a b", None).is_none());
    assert!(request("https://r.io/a\r\nX: 1", None).is_none());
    assert!(request("https://r.io/a", Some("Bearer x"))
        .unwrap()
        .contains("\r\nAuthorization: Bearer x\r\n"));
}

#[test]
fn patience_is_short_and_bounded() {
    let timeout = Duration::from_secs(30);
    assert_eq!(patience(Duration::from_millis(50), timeout), MIN_PATIENCE);
    assert_eq!(
        patience(Duration::from_secs(1), timeout),
        Duration::from_secs(8)
    );
    assert_eq!(patience(Duration::from_secs(10), timeout), timeout);
    assert_eq!(
        patience(Duration::from_secs(1), Duration::from_secs(1)),
        Duration::from_secs(1)
    );
}
