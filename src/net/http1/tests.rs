use super::*;

/// Every answer in `stream` with its body, read in pieces of `piece` bytes, until the
/// end or the first error (given as its message).
type Answer = Result<(u16, Length, Vec<u8>), String>;

fn answers(stream: &[u8], piece: usize) -> Vec<Answer> {
    let mut reader = Reader::new(Trickle(stream, piece));
    let mut out = Vec::new();
    loop {
        match reader.head() {
            Ok(None) => return out,
            Ok(Some(head)) => {
                let mut body = Vec::new();
                let mut buf = [0; 7];
                loop {
                    match reader.read_body(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => body.extend_from_slice(&buf[..n]),
                        Err(e) => {
                            out.push(Err(e.to_string()));
                            return out;
                        }
                    }
                }
                out.push(Ok((head.status, head.length, body)));
            }
            Err(e) => {
                out.push(Err(e.to_string()));
                return out;
            }
        }
    }
}

/// A stream that gives at most `1` bytes a read: every boundary falls mid-read somewhere.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.1).min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn ok(status: u16, length: Length, body: &str) -> Answer {
    Ok((status, length, body.as_bytes().to_vec()))
}

#[test]
fn pipelined_answers_are_read_one_after_another() {
    let stream = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: https://cdn/x\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n3;ext=1\r\nabc\r\n0A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n\
HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nxyz\
HTTP/1.1 404\r\nContent-Length:0\r\n\r\n\
HTTP/1.0 200 OK\r\n\r\nuntil the close";
    let expected = vec![
        ok(307, Length::Fixed(5), "hello"),
        ok(200, Length::Chunked, "abc0123456789"),
        ok(204, Length::Fixed(0), ""),
        ok(200, Length::Fixed(3), "xyz"),
        ok(404, Length::Fixed(0), ""),
        ok(200, Length::Close, "until the close"),
    ];
    for piece in [1, 2, 3, 5, 64, 100_000] {
        assert_eq!(answers(stream, piece), expected, "read {piece} at a time");
    }
}

#[test]
fn heads_say_where_the_connection_ends() {
    let head = |text: &str| parse_head(text.as_bytes()).unwrap();
    let h =
        head("HTTP/1.1 307 Temporary Redirect\r\nLOCATION:  /b?x=1 \t\r\nContent-Length: 0\r\n");
    assert_eq!(
        (h.status, h.length, h.close),
        (307, Length::Fixed(0), false)
    );
    assert_eq!(h.location.as_deref(), Some("/b?x=1"));
    let h = head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n");
    assert!(h.close);
    let h = head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n");
    assert!(h.close);
    let h = head("HTTP/1.1 200 OK\r\n");
    assert_eq!((h.length, h.close), (Length::Close, true));
    let h = head("HTTP/1.1 302 Found\r\nLocation: /a\r\nLocation: /b\r\nContent-Length: 0\r\n");
    assert_eq!(h.location, None, "two locations are none");
    let h = head("HTTP/1.1 301\r\nContent-Length: 1\r\nLocation: /caf\u{e9}\r\n");
    assert_eq!(h.location.as_deref(), Some("/caf\u{e9}"));
}

#[test]
fn hostile_heads_are_refused() {
    let many = format!("HTTP/1.1 200 OK\r\n{}", "A: b\r\n".repeat(MAX_HEADERS + 1));
    let long = format!("HTTP/1.1 200 OK\r\nA: {}\r\n", "b".repeat(MAX_LINE));
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("HTTP/1.1 200 OK", "no CRLF"),
        ("HTTP/1.1 200 OK\n", "bare LF"),
        ("HTTP/1.1 200 OK\r\nA: b\n", "bare LF in headers"),
        ("HTTP/1.1 200 O\rK\r\n", "bare CR"),
        ("HTTP/2 200\r\n", "HTTP/2"),
        ("HTTP/1.2 200 OK\r\n", "HTTP/1.2"),
        ("HTTP/1.1  200 OK\r\n", "two spaces"),
        ("HTTP/1.1 20 OK\r\n", "two digits"),
        ("HTTP/1.1 2000 OK\r\n", "four digits"),
        ("HTTP/1.1 600 No\r\n", "status 600"),
        ("HTTP/1.1 099 No\r\n", "status 099"),
        ("http/1.1 200 OK\r\n", "lowercase version"),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n",
            "two lengths",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n",
            "a list of two lengths",
        ),
        ("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n", "a sign"),
        ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n", "negative"),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n",
            "a space inside",
        ),
        ("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n", "hex"),
        ("HTTP/1.1 200 OK\r\nContent-Length: \r\n", "empty length"),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n",
            "overflow",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n",
            "both",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n",
            "gzip",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n",
            "chunked twice",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
            "two TE",
        ),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n", "empty TE"),
        (
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n",
            "TE in HTTP/1.0",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n",
            "blank before the colon",
        ),
        ("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n", "folded"),
        ("HTTP/1.1 200 OK\r\n: b\r\n", "no name"),
        ("HTTP/1.1 200 OK\r\nNo colon\r\n", "no colon"),
        ("HTTP/1.1 200 OK\r\nA: b\x00c\r\n", "NUL in a value"),
        ("HTTP/1.1 200 OK\r\nA: b\x1bc\r\n", "ESC in a value"),
        ("HTTP/1.1 200 OK\r\nA\x7f: b\r\n", "DEL in a name"),
        (&many, "too many headers"),
        (&long, "a header line too long"),
    ];
    for (text, why) in cases {
        assert!(parse_head(text.as_bytes()).is_err(), "{why}: {text:?}");
    }
}

#[test]
fn hostile_streams_are_refused_in_their_place() {
    let big_head = format!("HTTP/1.1 200 OK\r\nA: {}\r\n\r\n", "b".repeat(MAX_HEAD));
    let huge_trailers = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{}\r\n",
        "T: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(MAX_TRAILERS / 16)
    );
    let long_chunk_line = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\na\r\n0\r\n\r\n",
        "e".repeat(MAX_CHUNK_LINE)
    );
    let interim = format!(
        "{}HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1)
    );
    let chunked =
        |body: &str| format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
    let cases: Vec<(String, &str)> = vec![
        (big_head, "larger than 32 KiB"),
        (huge_trailers, "trailers larger"),
        (long_chunk_line, "too long"),
        (interim, "interim"),
        (chunked("1\r\nab\r\n0\r\n\r\n"), "not followed by CRLF"),
        (chunked("g\r\n"), "not a chunk size"),
        (chunked(" 1\r\na\r\n"), "not a chunk size"),
        (chunked("1 \r\na\r\n"), "not a chunk size"),
        (chunked("-1\r\n"), "not a chunk size"),
        (chunked("1x\r\n"), "not a chunk size"),
        (chunked("\r\n"), "not a chunk size"),
        (chunked("10000000000000000\r\n"), "overflows"),
        (chunked("1\na\r\n"), "not ended by CRLF"),
        (chunked("5\r\nabc"), "closed in the middle of a body"),
        (
            chunked("5\r\nabcde\r\n"),
            "closed in the middle of a chunked body",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc".into(),
            "closed in the middle of a body",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Le".into(),
            "closed in the middle of an answer head",
        ),
        ("HTTP/1.1 101 Switching Protocols\r\n\r\n".into(), "101"),
        (
            "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".into(),
            "status line",
        ),
    ];
    for (stream, why) in cases {
        for piece in [1, 3, 100_000] {
            let got = answers(stream.as_bytes(), piece);
            match got.last() {
                Some(Err(e)) => assert!(e.contains(why), "{why}: got {e:?}"),
                other => panic!("{why}: not refused, ended with {other:?}"),
            }
        }
    }
}

#[test]
fn a_long_line_ending_at_the_limit_is_taken() {
    // A chunk extension right at the bound, and a head that fills the buffer exactly.
    let ext = "e".repeat(MAX_CHUNK_LINE - 2);
    let stream =
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{ext}\r\na\r\n0\r\n\r\n");
    assert_eq!(
        answers(stream.as_bytes(), 1),
        vec![ok(200, Length::Chunked, "a")]
    );
    let mut stream = String::from("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
    while MAX_HEAD - stream.len() > 8000 {
        stream += &format!("A: {}\r\n", "b".repeat(8000));
    }
    let pad = "b".repeat(MAX_HEAD - stream.len() - 7);
    stream += &format!("A: {pad}\r\n\r\n");
    assert_eq!(stream.len(), MAX_HEAD);
    assert_eq!(
        answers(stream.as_bytes(), 4096),
        vec![ok(200, Length::Fixed(0), "")]
    );
}

#[test]
fn bodies_are_skipped_within_a_limit() {
    let stream = b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\n0123456789HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut reader = Reader::new(&stream[..]);
    assert_eq!(reader.head().unwrap().unwrap().status, 500);
    assert!(!reader.skip_body(4).unwrap(), "10 bytes are more than 4");
    assert!(
        reader.head().is_err(),
        "a head cannot come before the body's end"
    );
    assert!(reader.skip_body(6).unwrap());
    assert_eq!(reader.head().unwrap().unwrap().status, 200);
    let mut reader = Reader::new(&b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n\r\n"[..]);
    reader.head().unwrap().unwrap();
    assert!(reader.skip_body(1).unwrap());
    assert!(
        reader.head().unwrap().is_none(),
        "nothing is read after Connection: close"
    );
}
