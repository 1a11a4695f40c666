//! Content digests: the `sha256:<hex>` type, and the check every byte passes through.
//!
//! Only sha256 is accepted. It is what every registry and pkgforge use; a reference with
//! another algorithm is a usage error rather than something fetched and never verified.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

const PREFIX: &str = "sha256:";
const HEX_LEN: usize = 64;

/// A sha256 digest, kept as its 64 lowercase hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hash(Sha256::digest(bytes).as_slice())
    }

    fn from_hash(hash: &[u8]) -> Digest {
        let mut hex = String::with_capacity(HEX_LEN);
        for b in hash {
            hex.push_str(&format!("{b:02x}"));
        }
        Digest { hex }
    }

    /// The first 12 hex characters, as status lines show it (like `docker images`).
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = String;

    /// Parses `sha256:` followed by exactly 64 lowercase hex characters.
    fn from_str(s: &str) -> Result<Digest, String> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err("a digest looks like sha256:<64 hex characters>".into());
        };
        if algorithm != "sha256" {
            return Err(format!(
                "unsupported digest algorithm '{algorithm}' (only sha256)"
            ));
        }
        if hex.len() != HEX_LEN {
            return Err(format!(
                "a sha256 digest has 64 hex characters, not {}",
                hex.len()
            ));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("a sha256 digest is lowercase hex".into());
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

/// Hashes and counts content as it streams past, and says at the end whether it was the
/// content asked for. `size`, when known, is also a ceiling checked on every chunk, so a
/// server that sends too much is cut off instead of filling the disk.
pub struct Verifier {
    hasher: Sha256,
    len: u64,
    expected: Digest,
    size: Option<u64>,
}

impl Verifier {
    pub fn new(expected: &Digest, size: Option<u64>) -> Verifier {
        Verifier {
            hasher: Sha256::new(),
            len: 0,
            expected: expected.clone(),
            size,
        }
    }

    /// Bytes seen so far.
    pub fn seen(&self) -> u64 {
        self.len
    }

    /// False while fewer bytes than the known size have been seen.
    pub fn complete(&self) -> bool {
        self.size.is_none_or(|size| self.len >= size)
    }

    /// Sets the size once a server has told it (Content-Length), when no descriptor did.
    pub fn expect_size(&mut self, size: Option<u64>) {
        self.size = self.size.or(size);
    }

    pub fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.len += chunk.len() as u64;
        if let Some(size) = self.size {
            if self.len > size {
                return Err(Error::SizeMismatch {
                    expected: size,
                    actual: self.len,
                });
            }
        }
        self.hasher.update(chunk);
        Ok(())
    }

    /// Checks length then digest; returns the length.
    pub fn finish(self) -> Result<u64> {
        if let Some(size) = self.size {
            if self.len != size {
                return Err(Error::SizeMismatch {
                    expected: size,
                    actual: self.len,
                });
            }
        }
        let actual = Digest::from_hash(self.hasher.finalize().as_slice());
        if actual != self.expected {
            return Err(Error::DigestMismatch {
                expected: self.expected,
                actual,
            });
        }
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(Digest::of(b""), d);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn verifier_accepts_exact_content_in_chunks() {
        let d = Digest::of(b"hello world");
        let mut v = Verifier::new(&d, Some(11));
        v.update(b"hello ").unwrap();
        v.update(b"world").unwrap();
        assert_eq!(v.finish().unwrap(), 11);
    }

    #[test]
    fn verifier_refuses_wrong_short_and_long_content() {
        let d = Digest::of(b"hello world");
        let mut v = Verifier::new(&d, Some(11));
        v.update(b"hello wurld").unwrap();
        assert!(matches!(v.finish(), Err(Error::DigestMismatch { .. })));

        let mut v = Verifier::new(&d, Some(11));
        v.update(b"hello").unwrap();
        assert!(matches!(
            v.finish(),
            Err(Error::SizeMismatch {
                expected: 11,
                actual: 5
            })
        ));

        let mut v = Verifier::new(&d, Some(11));
        assert!(matches!(
            v.update(b"hello world!"),
            Err(Error::SizeMismatch { .. })
        ));

        // Without a known size only the digest decides.
        let mut v = Verifier::new(&d, None);
        v.update(b"hello world").unwrap();
        assert_eq!(v.finish().unwrap(), 11);
    }
}
