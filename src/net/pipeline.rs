//! A package's blobs at the speed of the link, in one thread: many GETs on one connection,
//! the answers read in order (HTTP/1.1 pipelining, RFC 9112 section 9.3.2). One request at a
//! time costs a round trip per blob, two on ghcr, whose registry answers every blob with a
//! redirect to its CDN (issue 17).
//!
//! A `Pipeline` sends every blob's GET to the registry and reads the answers in order: a body
//! that is the blob (200, `Content-Length` equal to the descriptor's size) is yielded; a
//! redirect is noted. Then it does the same on one connection to each origin the registry
//! redirected to (ghcr: its CDN), in the order they first appeared. It never retries and never
//! decides that a blob is good: the caller verifies every byte, and whatever did not come
//! whole, for any reason, is `missed()`, for the caller's sequential path (`Client::blob`,
//! with its retries, Range resume and Retry-After). Nothing is kept between runs.
//!
//! Every request goes through `policy.rs` as `Transport::get`'s do: `Authorization` only on
//! the registry's own origin (never the CDN's), no redirect from https to http, and here one
//! hop at most. Connections come from ureq's own connector chain, with the proxy, the roots
//! and `--insecure` of the agent a request to the same URL would use (`connect`).
//!
//! Every wait is bounded: connecting and the first answer on a connection by `--timeout`;
//! each later answer's head by `patience` (a server that answers one request and then neither
//! answers the next nor closes costs that one short wait, not a `--timeout` per blob); a body
//! by `--timeout` between reads and the speed floor; an unwanted body (a redirect's, an
//! error's) by `SMALL_BODY` and `--timeout` in all.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, Resolver};
use ureq::unversioned::transport::time::{Duration as Budget, Instant as Clock};
use ureq::unversioned::transport::{
    ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport as Connection,
    TransportAdapter,
};
use ureq::Timeout;

use crate::net::http1::{Length, Reader};
use crate::net::policy::{self, Origin, Secret};
use crate::net::transport::{self, resolve, Pace, Transport, SMALL_BODY, USER_AGENT};
use crate::text;

/// Requests sent and not yet answered on one connection, at most: 64, and 32 KiB of them.
/// A package is about 10 to 40 blobs (pkgforge's), so it goes out whole; more are sent as
/// answers come. The byte bound keeps unread requests well inside the kernel's socket
/// buffers, so a write never waits on a server that is itself waiting for us to read.
const MAX_IN_FLIGHT: usize = 64;
const MAX_IN_FLIGHT_BYTES: usize = 32 << 10;
/// Connections opened by one pipeline. A server may close after some answers (nginx after
/// `keepalive_requests`, Apache after `MaxKeepAliveRequests`): one that answered two or more
/// gets a new connection for the rest, as RFC 9112 section 9.3.2 asks of a client.
const MAX_CONNECTIONS: usize = 8;
/// See `patience`.
const MIN_PATIENCE: Duration = Duration::from_secs(2);
const PATIENCE_FACTOR: u32 = 8;

/// How long to wait for the head of an answer after the first on a connection: eight times
/// the slowest head so far, at least 2 s, at most `--timeout`. A server that pipelines sends
/// the next head about as soon as the previous body ends (the first answer's wait already
/// held a round trip and the server's time to find a blob; eight times that leaves room for a
/// CDN's cache miss, and 2 s for jitter on a fast link). A server that does not (it answered
/// the first request and dropped the rest unread) is found out in that time, once per
/// connection, and its blobs go the sequential way.
fn patience(slowest: Duration, timeout: Duration) -> Duration {
    (slowest * PATIENCE_FACTOR).max(MIN_PATIENCE).min(timeout)
}

/// What became of a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fate {
    /// To ask the registry for.
    Registry,
    /// The registry redirected it here, to ask for once.
    Redirected(String, Origin),
    /// Yielded and read to its end.
    Delivered,
    /// Left to the caller's sequential path.
    Missed,
}

/// Pipelined GETs of a package's blobs: see the module's documentation and
/// `Client::pipeline`. Connects on the first `next`.
pub struct Pipeline<'c> {
    transport: &'c mut Transport,
    work: Work,
}

/// Everything but the transport, so that a `Body` can borrow it while the pipeline lives.
struct Work {
    /// Each blob's URL at the registry, and its descriptor size.
    blobs: Vec<(String, u64)>,
    fates: Vec<Fate>,
    /// The registry's `Authorization`; `Secret::to` decides where it goes.
    secret: Option<Secret>,
    lane: Option<Lane>,
    connections: usize,
    stopped: Option<String>,
    /// The blob last yielded.
    current: Option<usize>,
    pace: Pace,
    timeout: Duration,
}

/// One connection to one origin, and the blobs asked of it.
struct Lane {
    origin: Origin,
    io: Reader<TransportAdapter>,
    /// Not yet asked for, in order.
    queue: VecDeque<usize>,
    /// Asked for and not yet answered, in order, each with its request's size.
    sent: VecDeque<(usize, usize)>,
    answered: usize,
    /// The longest wait for a head on this connection so far.
    slowest: Duration,
}

impl<'c> Pipeline<'c> {
    /// A pipeline for `blobs`, each blob's URL at the registry and its descriptor size, with
    /// the registry's `secret` (see `Client::pipeline`).
    pub(crate) fn new(
        transport: &'c mut Transport,
        blobs: Vec<(String, u64)>,
        secret: Option<Secret>,
    ) -> Pipeline<'c> {
        let work = Work {
            fates: vec![Fate::Registry; blobs.len()],
            blobs,
            secret,
            lane: None,
            connections: 0,
            stopped: None,
            current: None,
            pace: transport.pace(),
            timeout: transport.timeout(),
        };
        Pipeline { transport, work }
    }

    /// The next blob whose answer is its body (200, `Content-Length` equal to its descriptor
    /// size), as its index in `blobs` and that body. Read each body to its end before asking
    /// for the next: one that was not is missed, and so is everything after it (the
    /// connection is out of step). `None` once nothing more will come; every blob not
    /// yielded, or yielded and not read to its end, is then in `missed()`.
    // Not `Iterator::next`: each body borrows the pipeline, which `Iterator` cannot say.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<(usize, Body<'_>)> {
        let work = &mut self.work;
        if let Some(i) = work.current.take() {
            if work.fates[i] != Fate::Delivered {
                work.poison("a body was not read to its end".into());
            }
        }
        loop {
            if work.lane.is_none() {
                let (origin, queue) = work.next_lane()?;
                work.open(self.transport, origin, queue);
            } else if let Some(i) = work.answer() {
                work.current = Some(i);
                work.pace = self.transport.pace();
                return Some((i, Body { work }));
            }
        }
    }

    /// The blobs not delivered (not yielded, or not read to their end), in index order: all
    /// of them before the first `next`, none when everything came.
    pub fn missed(&self) -> Vec<usize> {
        let fates = self.work.fates.iter().enumerate();
        fates
            .filter(|(_, fate)| **fate != Fate::Delivered)
            .map(|(i, _)| i)
            .collect()
    }

    /// Why pipelining stopped early, if it did, for one note to the user: the first reason,
    /// such as "http://127.0.0.1:5000 closed the connection after 1 answer". Escaped.
    pub fn stopped(&self) -> Option<&str> {
        self.work.stopped.as_deref()
    }
}

impl Work {
    /// The origin to ask next and the blobs to ask it for: the registry, for every blob not
    /// yet asked, then each origin it redirected to, in the order they first appeared.
    fn next_lane(&mut self) -> Option<(Origin, VecDeque<usize>)> {
        let registry = self.fates.iter().position(|f| *f == Fate::Registry);
        let redirected = || {
            let redirected = |f: &Fate| matches!(f, Fate::Redirected(..));
            self.fates.iter().position(redirected)
        };
        let first = registry.or_else(redirected)?;
        let origin = match &self.fates[first] {
            Fate::Redirected(_, origin) => Ok(origin.clone()),
            _ => Origin::of(&self.blobs[first].0),
        };
        let same = |f: &Fate| match (f, &origin) {
            (Fate::Redirected(_, to), Ok(origin)) => to == origin,
            (f, _) => *f == self.fates[first],
        };
        let queue = (first..self.fates.len())
            .filter(|&i| same(&self.fates[i]))
            .collect();
        match origin {
            Ok(origin) => Some((origin, queue)),
            Err(e) => {
                self.give_up(queue, e.to_string());
                self.next_lane()
            }
        }
    }

    /// Opens a connection for `queue`; when it cannot be had, its blobs are missed.
    fn open(&mut self, transport: &mut Transport, origin: Origin, queue: VecDeque<usize>) {
        if self.connections == MAX_CONNECTIONS {
            let why = format!("{origin}: {MAX_CONNECTIONS} connections opened already");
            return self.give_up(queue, why);
        }
        self.connections += 1;
        let url = self.url(queue[0]).to_string();
        let timeout = self.timeout;
        let connection = transport.with_config(&url, |config| {
            connect(config, &url, timeout).map_err(|e| transport::transport(&url, e))
        });
        match connection {
            Ok(connection) => {
                let io = TransportAdapter::new(connection, Arc::new(Clock::now));
                self.lane = Some(Lane {
                    origin,
                    io: Reader::new(io),
                    queue,
                    sent: VecDeque::new(),
                    answered: 0,
                    slowest: Duration::ZERO,
                });
            }
            // A place that cannot be reached stops the whole pipeline: each origin that
            // cannot be reached must not cost a `--timeout` of its own (many silent CDNs).
            Err(e) => self.poison(e.to_string()),
        }
    }

    /// Sends what may be sent, then reads the next answer: the index of a blob whose body is
    /// ready to read, or `None` when the answer was something else (the blob is missed or
    /// redirected), or the connection ended.
    fn answer(&mut self) -> Option<usize> {
        let mut lane = self.lane.take()?;
        // Nothing more is asked of a server that said it closes: `head` meets its close.
        if !lane.io.closed() {
            if let Err(e) = self.send(&mut lane) {
                let why = format!("{}: {e}", lane.origin);
                return self.end(lane, why, dropped(&e));
            }
        }
        let &(i, _) = lane.sent.front()?; // all answered: the connection is done
        let wait = match lane.answered {
            0 => self.timeout,
            _ => patience(lane.slowest, self.timeout),
        };
        lane.io.get_mut().set_timeout(limit(Some(wait), None));
        let started = Instant::now();
        let head = match lane.io.head() {
            Ok(Some(head)) => head,
            Ok(None) => {
                let why = format!(
                    "{} closed the connection after {} answer{}",
                    lane.origin,
                    lane.answered,
                    if lane.answered == 1 { "" } else { "s" }
                );
                return self.end(lane, why, true);
            }
            // No first answer: the pipeline stops, so that silent origins cost one
            // `--timeout` in all, not one each; the rest go one by one.
            Err(e) if lane.answered == 0 => {
                self.poison(format!("{}: {e}", lane.origin));
                return None;
            }
            Err(e) if timed_out(&e) => {
                let why = format!(
                    "{} sent no answer for {:.1} s after {} (pipelining unsupported?)",
                    lane.origin,
                    wait.as_secs_f64(),
                    lane.answered
                );
                return self.end(lane, why, false);
            }
            Err(e) => {
                let why = format!("{}: {e}", lane.origin);
                return self.end(lane, why, dropped(&e));
            }
        };
        lane.slowest = lane.slowest.max(started.elapsed());
        lane.answered += 1;
        lane.sent.pop_front();
        if head.status == 200 && head.length == Length::Fixed(self.blobs[i].1) {
            // The body: `--timeout` between reads, and `Body` keeps the speed floor.
            lane.io
                .get_mut()
                .set_timeout(limit(None, Some(self.timeout)));
            if lane.io.at_boundary() {
                self.fates[i] = Fate::Delivered; // an empty blob
            }
            self.lane = Some(lane);
            return Some(i);
        }
        let redirect =
            matches!(head.status, 301 | 302 | 303 | 307 | 308) && self.fates[i] == Fate::Registry;
        let location = head.location.filter(|_| redirect);
        self.fates[i] = match location.and_then(|to| hop(&self.blobs[i].0, &to)) {
            Some((url, origin)) => Fate::Redirected(url, origin),
            None => Fate::Missed,
        };
        lane.io
            .get_mut()
            .set_timeout(limit(Some(self.timeout), None));
        match lane.io.skip_body(SMALL_BODY) {
            Ok(true) => self.lane = Some(lane),
            Ok(false) => {
                let why = format!(
                    "{}: an answer's body is over {SMALL_BODY} bytes",
                    lane.origin
                );
                self.end(lane, why, false);
            }
            Err(e) => {
                let why = format!("{}: {e}", lane.origin);
                self.end(lane, why, false);
            }
        }
        None
    }

    /// Sends the next requests on `lane`: all that the window holds at first, then, once the
    /// server has shown it answers pipelined requests (two answers), one for each answer. A
    /// blob whose request cannot be written safely is missed.
    fn send(&mut self, lane: &mut Lane) -> io::Result<()> {
        if lane.answered == 1 && !lane.sent.is_empty() {
            return Ok(());
        }
        let mut requests = String::new();
        let mut in_flight: usize = lane.sent.iter().map(|(_, size)| size).sum();
        while let Some(&i) = lane.queue.front() {
            let authorization = self.secret.as_ref().and_then(|s| s.to(&lane.origin));
            let Some(request) = request(self.url(i), authorization) else {
                lane.queue.pop_front();
                self.fates[i] = Fate::Missed;
                continue;
            };
            let full =
                lane.sent.len() == MAX_IN_FLIGHT || in_flight + request.len() > MAX_IN_FLIGHT_BYTES;
            if full && !lane.sent.is_empty() {
                break;
            }
            lane.queue.pop_front();
            in_flight += request.len();
            lane.sent.push_back((i, request.len()));
            requests += &request;
        }
        if requests.is_empty() {
            return Ok(());
        }
        lane.io
            .get_mut()
            .set_timeout(limit(Some(self.timeout), None));
        lane.io.get_mut().write_all(requests.as_bytes())
    }

    /// Ends `lane`'s connection. A server that closed it between answers (`reconnect`)
    /// after answering two or more gets a new connection for the rest; otherwise what it
    /// did not answer is missed, and `why` is noted.
    fn end(&mut self, lane: Lane, why: String, reconnect: bool) -> Option<usize> {
        if !(reconnect && lane.answered >= 2) {
            let left = lane.sent.iter().map(|&(i, _)| i).chain(lane.queue);
            self.give_up(left.collect(), why);
        }
        None
    }

    /// Leaves `blobs` to the caller, noting `why` if nothing was noted before.
    fn give_up(&mut self, blobs: VecDeque<usize>, why: String) {
        for i in blobs {
            if matches!(self.fates[i], Fate::Registry | Fate::Redirected(..)) {
                self.fates[i] = Fate::Missed;
            }
        }
        self.note(why);
    }

    /// Stops everything: what was not delivered is missed.
    fn poison(&mut self, why: String) {
        self.lane = None;
        for fate in &mut self.fates {
            if *fate != Fate::Delivered {
                *fate = Fate::Missed;
            }
        }
        self.note(why);
    }

    fn note(&mut self, why: String) {
        // An origin comes from a server's `Location`: escaped like any text from outside.
        self.stopped
            .get_or_insert_with(|| text::escape(&why).into_owned());
    }

    /// Where blob `i` is asked for next.
    fn url(&self, i: usize) -> &str {
        match &self.fates[i] {
            Fate::Redirected(url, _) => url,
            _ => &self.blobs[i].0,
        }
    }
}

/// One blob's body, exactly its descriptor size in bytes, read with `--timeout` between
/// reads and under the speed floor. A read error stops the pipeline (its connection is out of
/// step): that blob and every one not yet delivered are then missed.
pub struct Body<'p> {
    work: &'p mut Work,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let work = &mut *self.work;
        let (Some(i), Some(lane)) = (work.current, work.lane.as_mut()) else {
            return Err(io::Error::other("the pipeline stopped"));
        };
        let result = lane.io.read_body(buf);
        match result.and_then(|n| work.pace.check(n).map(|()| n)) {
            Ok(n) => {
                if lane.io.at_boundary() {
                    work.fates[i] = Fate::Delivered;
                }
                Ok(n)
            }
            Err(e) => {
                let why = format!("a body from {} broke off: {e}", lane.origin);
                work.poison(why);
                Err(e)
            }
        }
    }
}

/// The redirect from `from` to `location`, if one may be followed: a URL that parses, and
/// not from https to http (`policy::redirect`).
fn hop(from: &str, location: &str) -> Option<(String, Origin)> {
    let url = resolve(from, location).ok()?;
    let to = Origin::of(&url).ok()?;
    policy::redirect(&Origin::of(from).ok()?, &to, &url).ok()?;
    Some((url, to))
}

/// A GET of `url`, or `None` when the URL or the credentials would put a line break, a
/// control character or a blank into the request (a `Location` or a token service could try
/// to add headers of their own).
fn request(url: &str, authorization: Option<&str>) -> Option<String> {
    let uri = Uri::try_from(url).ok()?;
    let target = uri.path_and_query()?.as_str();
    let host = uri.authority()?.as_str().rsplit('@').next()?;
    let visible = |s: &str, blank: bool| {
        s.bytes()
            .all(|b| b.is_ascii_graphic() || blank && b == b' ')
    };
    if !visible(target, false) || !visible(host, false) {
        return None;
    }
    let mut request =
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n");
    if let Some(authorization) = authorization {
        if !visible(authorization, true) {
            return None;
        }
        request = format!("{request}Authorization: {authorization}\r\n");
    }
    Some(request + "\r\n")
}

/// Whether the connection went away (a reset, or a close where an answer's head was due):
/// the server may have closed it between answers and had the next request meet the close,
/// which is a reason to try a new connection, not to give up on the server.
fn dropped(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// Whether a read ran out of time: ureq's transports report it as its own error in an
/// `io::Error`.
fn timed_out(e: &io::Error) -> bool {
    let ureq = e.get_ref().and_then(|e| e.downcast_ref::<ureq::Error>());
    e.kind() == io::ErrorKind::TimedOut || matches!(ureq, Some(ureq::Error::Timeout(_)))
}

/// A time budget for the next reads or writes (`after`, in all), and for each read.
fn limit(after: Option<Duration>, per_read: Option<Duration>) -> NextTimeout {
    NextTimeout {
        after: after.map_or(Budget::NotHappening, Budget::Exact),
        reason: Timeout::RecvResponse,
        per_read: per_read.map(Budget::Exact),
        per_write: None,
    }
}

/// A connection to `url`'s origin as an agent with `config` opens one: ureq's connector chain
/// (SOCKS or CONNECT proxy, TCP, then rustls with the config's roots), as ureq's `run.rs`
/// `connect` drives it, less the pool. Through an HTTP proxy ureq tunnels plain HTTP with
/// CONNECT too, so requests are written in origin form on every route. Names are looked up
/// synchronously, as for the agents (a bounded lookup would take a thread); connecting,
/// proxy and TLS handshakes included, is bounded by `timeout`.
fn connect(
    config: &Config,
    url: &str,
    timeout: Duration,
) -> Result<Box<dyn Connection>, ureq::Error> {
    let uri = Uri::try_from(url).map_err(|e| ureq::Error::BadUri(e.to_string()))?;
    let connector = Arc::new(DefaultConnector::new());
    let resolver = DefaultResolver::default();
    // A proxy that resolves names itself is given the name, as in `run.rs`.
    let remote = config
        .proxy()
        .is_some_and(|p| !p.resolve_target() && !p.is_no_proxy(&uri));
    let addrs = match remote {
        true => resolver.empty(),
        false => resolver.resolve(&uri, config, NextTimeout::default())?,
    };
    let chain = connector.clone();
    let details = ConnectionDetails {
        uri: &uri,
        addrs,
        config,
        request_level: false,
        resolver: &resolver,
        now: Clock::now(),
        timeout: NextTimeout {
            reason: Timeout::Connect,
            ..limit(Some(timeout), None)
        },
        current_time: Arc::new(Clock::now),
        // A CONNECT proxy runs the chain again to reach the proxy itself.
        run_connector: Arc::new(move |details: &ConnectionDetails| {
            chain
                .connect(details, None)?
                .ok_or(ureq::Error::ConnectionFailed)
        }),
        // Nothing shuts connections down from another thread: there is no other thread.
        register_shutdown: Arc::new(|_| Ok(())),
    };
    let connection = connector
        .connect(&details, None)?
        .ok_or(ureq::Error::ConnectionFailed)?;
    if details.needs_tls() && !connection.is_tls() {
        return Err(ureq::Error::TlsRequired);
    }
    Ok(connection)
}

#[cfg(test)]
mod tests;
