//! Authentication pieces that need no network: reading a `WWW-Authenticate` challenge,
//! building the token request, reading the token, and Basic credentials.
//! `registry.rs` decides when to use them.

use serde_json::Value;

/// The token ghcr.io accepts for public packages without a token round trip: any non-empty
/// base64 string works; Homebrew and soar send this one.
pub const GHCR_ANONYMOUS: &str = "Bearer QQ==";

/// A username and password (or token) for one registry, or an OAuth2 refresh token
/// (docker's `identitytoken`).
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub identity_token: Option<String>,
}

impl Credentials {
    pub fn basic_pair(username: String, password: String) -> Credentials {
        Credentials {
            username,
            password,
            identity_token: None,
        }
    }

    /// Docker's convention: the username `<token>` marks a refresh token.
    pub fn from_identity_token(token: String) -> Credentials {
        Credentials {
            username: "<token>".into(),
            password: String::new(),
            identity_token: Some(token),
        }
    }

    /// The `Authorization` value for Basic auth.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64(format!("{}:{}", self.username, self.password).as_bytes())
        )
    }
}

// Hand-written so the password never shows up in a panic or debug print by accident.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

/// What a 401 asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Fetch a token from `realm` (with `service` and `scope`), then send it as Bearer.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// Send the credentials themselves.
    Basic,
}

impl Challenge {
    /// Reads the first Bearer or Basic challenge of a `WWW-Authenticate` value. Parameters
    /// are `key=value` or `key="quoted, with \" escapes"`, separated by commas.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header
            .split_once(char::is_whitespace)
            .unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

fn parse_params(mut s: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some((key, rest)) = s.split_once('=') else {
            return params;
        };
        let key = key.trim().to_string();
        let rest = rest.trim_start();
        let (value, rest) = match rest.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            }
            None => {
                let end = rest.find(',').unwrap_or(rest.len());
                (rest[..end].trim().to_string(), &rest[end..])
            }
        };
        params.push((key, value));
        s = rest;
    }
}

/// The token request for a Bearer challenge; `scope` is used when the challenge names none.
pub fn token_url(realm: &str, service: Option<&str>, scope: &str) -> String {
    let mut url = realm.to_string();
    let mut sep = if realm.contains('?') { '&' } else { '?' };
    for (key, value) in [("service", service), ("scope", Some(scope))] {
        if let Some(value) = value {
            url.push(sep);
            url.push_str(key);
            url.push('=');
            url.push_str(&percent_encode(value));
            sep = '&';
        }
    }
    url
}

/// The form body of an OAuth2 refresh-token grant, for docker's `identitytoken`.
pub fn refresh_form(service: Option<&str>, scope: &str, refresh_token: &str) -> String {
    let mut form = format!(
        "grant_type=refresh_token&client_id=ocidl&scope={}&refresh_token={}",
        percent_encode(scope),
        percent_encode(refresh_token)
    );
    if let Some(service) = service {
        form.push_str(&format!("&service={}", percent_encode(service)));
    }
    form
}

/// Reads `{"token": ...}` or `{"access_token": ...}` (OAuth2 naming; both are in use).
/// A token goes into a header, so it must be printable ASCII without spaces (RFC 6750's
/// b64token, and JWTs, are); anything else is not a token and would break the request.
pub fn parse_token(body: &[u8]) -> Option<String> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let token = json
        .get("token")
        .or_else(|| json.get("access_token"))?
        .as_str()?;
    let printable = token.bytes().all(|b| b.is_ascii_graphic());
    (!token.is_empty() && printable).then(|| token.to_string())
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding (what docker's `auth` entries hold); `None` when malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = bits << 6 | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    // A lone 6-bit group cannot end valid base64.
    (count < 6).then_some(out)
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
        for bad in ["Z", "Zm9v!", "Zm9vY"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
        let c = Credentials::basic_pair("user".into(), "pa:ss".into());
        assert_eq!(c.basic(), "Basic dXNlcjpwYTpzcw==");
        assert!(!format!("{c:?}").contains("pa:ss"));
    }

    #[test]
    fn reads_challenges() {
        let ghcr = r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:pkgforge/bincache/jq:pull""#;
        assert_eq!(
            Challenge::parse(ghcr),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: Some("repository:pkgforge/bincache/jq:pull".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("basic"), Some(Challenge::Basic));
        assert_eq!(
            Challenge::parse(r#"bearer  realm=http://x/t , service="a \"q\" b""#),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: Some(r#"a "q" b"#.into()),
                scope: None
            })
        );
        for odd in [
            "",
            "Bearer",
            "Bearer service=x",
            "Negotiate abc",
            "Bearer realm=\"unterminated",
            "Bearer ==,,=",
        ] {
            let _ = Challenge::parse(odd); // must not panic
        }
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert!(
            matches!(Challenge::parse("Bearer realm=\"unterminated"), Some(Challenge::Bearer { realm, .. }) if realm == "unterminated")
        );
    }

    #[test]
    fn builds_token_urls_and_reads_tokens() {
        assert_eq!(
            token_url(
                "https://ghcr.io/token",
                Some("ghcr.io"),
                "repository:a/b:pull"
            ),
            "https://ghcr.io/token?service=ghcr.io&scope=repository%3Aa%2Fb%3Apull"
        );
        assert_eq!(
            token_url("http://x/t?a=1", None, "s c"),
            "http://x/t?a=1&scope=s%20c"
        );
        assert_eq!(parse_token(br#"{"token":"abc"}"#).as_deref(), Some("abc"));
        assert_eq!(
            parse_token(br#"{"access_token":"xyz","expires_in":300}"#).as_deref(),
            Some("xyz")
        );
        assert_eq!(parse_token(br#"{"token":""}"#), None);
        for bad in [
            r#"{"token":"a b"}"#,
            r#"{"token":"a\r\nX-Evil: 1"}"#,
            r#"{"token":"\u00e9"}"#,
        ] {
            assert_eq!(parse_token(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_token(b"nope"), None);
    }
}
