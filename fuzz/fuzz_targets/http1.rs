//! Any bytes as a stream of HTTP/1.1 answers, read in pieces of any size: no panic, no read
//! past the input, a `Content-Length` body is exactly that long, and only final answers
//! (200 to 599) come out.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use ocidl::net::http1::{parse_head, Length, Reader};

/// Gives the input in pieces of 1 to 256 bytes, sized by the input's first byte.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.piece).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, data)) = input.split_first() else {
        return;
    };
    let _ = parse_head(data);
    let piece = first as usize + 1;
    let mut reader = Reader::new(Pieces { data, piece });
    let mut total = 0;
    let mut out = [0; 512];
    while let Ok(Some(head)) = reader.head() {
        assert!((200..600).contains(&head.status), "{}", head.status);
        let mut body = 0;
        if first & 1 == 1 {
            // Skipping takes the same path as reading.
            match reader.skip_body(1 << 20) {
                Ok(true) => {}
                _ => return,
            }
            continue;
        }
        loop {
            match reader.read_body(&mut out[..piece.min(512)]) {
                Ok(0) => break,
                Ok(n) => body += n as u64,
                Err(_) => return,
            }
        }
        if let Length::Fixed(n) = head.length {
            assert_eq!(body, n);
        }
        total += body;
        assert!(total <= data.len() as u64);
        assert!(reader.at_boundary());
    }
});
