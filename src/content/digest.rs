//! Content digests: `sha256:<hex>` and `sha512:<hex>`, and the check every byte passes
//! through.
//!
//! sha256 is what every registry and pkgforge use; sha512 is the other algorithm the OCI
//! image spec registers, and a package may carry it anywhere (an untitled layer, an index
//! entry for another platform). Any other algorithm is refused rather than fetched and never
//! verified.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Result};

/// A digest algorithm the image spec registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// `sha256` or `sha512`, as in a digest and in an image layout's `blobs/` directory.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// The digest of `bytes` under this algorithm.
    pub fn of(self, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(self);
        hasher.update(bytes);
        hasher.finish()
    }
}

/// A digest, kept as its algorithm and lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Algorithm::Sha256.of(bytes)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex characters after the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as temporary file names carry it.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// `sha256:` and the first 12 hex characters, as status lines show it (like `docker images`).
    pub fn brief(&self) -> String {
        format!("{}:{}", self.algorithm.name(), self.short())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = String;

    /// Parses `sha256:` and 64, or `sha512:` and 128, lowercase hex characters.
    fn from_str(s: &str) -> Result<Digest, String> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err("a digest looks like sha256:<64 hex characters>".into());
        };
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => {
                return Err(format!(
                    "unsupported digest algorithm '{algorithm}' (sha256 or sha512)"
                ))
            }
        };
        let name = algorithm.name();
        if hex.len() != algorithm.hex_len() {
            return Err(format!(
                "a {name} digest has {} hex characters, not {}",
                algorithm.hex_len(),
                hex.len()
            ));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("a {name} digest is lowercase hex"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

/// One running hash of either algorithm.
#[derive(Clone)]
enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Digest {
        let (algorithm, hash) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        let mut hex = String::with_capacity(hash.len() * 2);
        for b in hash {
            hex.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
            hex.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
        }
        Digest { algorithm, hex }
    }
}

/// Hashes and counts content as it streams past, and says at the end whether it was the
/// content asked for. `size`, when known, is also a ceiling checked on every chunk, so a
/// server that sends too much is cut off instead of filling the disk.
pub struct Verifier {
    hasher: Hasher,
    len: u64,
    expected: Digest,
    size: Option<u64>,
}

impl Verifier {
    pub fn new(expected: &Digest, size: Option<u64>) -> Verifier {
        Verifier {
            hasher: Hasher::new(expected.algorithm),
            len: 0,
            expected: expected.clone(),
            size,
        }
    }

    /// Bytes seen so far.
    pub fn seen(&self) -> u64 {
        self.len
    }

    /// The size the content must have, when known.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// False while fewer bytes than the known size have been seen.
    pub fn complete(&self) -> bool {
        self.size.is_none_or(|size| self.len >= size)
    }

    /// Takes the size a server announced for the whole content (Content-Length of a full
    /// answer, the total of a Content-Range). When a descriptor already gave one, the two
    /// must agree: a blob of another size can never verify, and trying again would only
    /// fetch it again.
    pub fn expect_size(&mut self, announced: Option<u64>) -> Result<()> {
        match (self.size, announced) {
            (Some(size), Some(announced)) if size != announced => Err(Error::SizeMismatch {
                expected: size,
                actual: announced,
            }),
            (None, announced) => {
                self.size = announced;
                Ok(())
            }
            _ => Ok(()),
        }
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
        let actual = self.hasher.finish();
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
    fn sha512_parses_prints_and_verifies() {
        // FIPS 180-2's "abc" vector.
        let abc = "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                   2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
        let d: Digest = abc.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(d.to_string(), abc);
        assert_eq!(Algorithm::Sha512.of(b"abc"), d);
        let mut v = Verifier::new(&d, Some(3));
        v.update(b"ab").unwrap();
        v.update(b"c").unwrap();
        assert_eq!(v.finish().unwrap(), 3);
        let mut v = Verifier::new(&d, None);
        v.update(b"abd").unwrap();
        assert!(matches!(v.finish(), Err(Error::DigestMismatch { .. })));
        assert!(abc[..abc.len() - 1].parse::<Digest>().is_err());
    }

    #[test]
    fn announced_sizes_must_agree_with_the_descriptor() {
        let d = Digest::of(b"hello");
        let mut v = Verifier::new(&d, Some(5));
        assert!(v.expect_size(Some(5)).is_ok());
        assert!(v.expect_size(None).is_ok());
        assert!(matches!(
            v.expect_size(Some(4)),
            Err(Error::SizeMismatch {
                expected: 5,
                actual: 4
            })
        ));
        let mut v = Verifier::new(&d, None);
        v.expect_size(Some(5)).unwrap();
        assert_eq!(v.size(), Some(5));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha384:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
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
