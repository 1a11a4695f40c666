//! Where a secret may go: the one decision about credentials, made for every request.
//!
//! A secret is bound to one origin (scheme, host, port) when it is obtained, and a request
//! carries it only when its URL has that origin:
//!
//! - what goes to the registry's API (the user's Basic credentials, a registry token, ghcr's
//!   `QQ==`) is bound to the registry's own origin, so no redirect hop (a CDN, another port,
//!   another scheme) and no `Link` page elsewhere ever sees it;
//! - what goes to a token service (the user's password, docker's identity token) is bound to
//!   the realm that a challenge *from the registry's own origin* named; never over plain HTTP
//!   unless the registry itself is plain HTTP. A 401 from anywhere else (a CDN a blob was
//!   redirected to, answering with a realm of its own) is never answered with credentials.
//!
//! Redirects from https to http are refused outright: a TLS registry that sends a client to
//! plain HTTP hands the content of a tag to anyone on the path.

use ureq::http::Uri;

use crate::error::{Error, Result};

/// Scheme, host and port: what must match for a request to see a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an absolute http or https URL.
    pub fn of(url: &str) -> Result<Origin> {
        let bad = || Error::Redirect(format!("unusable URL {url}"));
        let uri = Uri::try_from(url).map_err(|_| bad())?;
        let scheme = uri.scheme_str().ok_or_else(bad)?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return Err(bad()),
        };
        Ok(Origin {
            host: uri.host().ok_or_else(bad)?.to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(default_port),
            scheme,
        })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// A secret and the one origin it may be sent to. The value is private: the only way to
/// read it is `to`, which asks for the origin of the request about to carry it.
#[derive(Clone)]
pub struct Secret {
    value: String,
    origin: Origin,
}

impl Secret {
    /// For the registry's own API: the `Authorization` value of its requests.
    pub fn for_registry(value: String, registry: &Origin) -> Secret {
        Secret {
            value,
            origin: registry.clone(),
        }
    }

    /// For the token service that the registry's own challenge named (see `challenge`). An
    /// `https` registry's credentials never travel in clear to an `http` realm.
    pub fn for_realm(value: String, registry: &Origin, realm: &str) -> Result<Secret> {
        let realm_origin = Origin::of(realm).map_err(|_| {
            Error::Refused(format!("the token realm {realm} is not an http(s) URL"))
        })?;
        if registry.is_https() && !realm_origin.is_https() {
            return Err(Error::Refused(format!(
                "the token realm {realm} is plain HTTP; credentials for the HTTPS registry \
                 {registry} are not sent in clear"
            )));
        }
        Ok(Secret {
            value,
            origin: realm_origin,
        })
    }

    /// The secret, if a request to `url`'s origin may carry it.
    pub fn to(&self, url: &Origin) -> Option<&str> {
        (*url == self.origin).then_some(self.value.as_str())
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// Whether a 401 that `challenger` sent may be answered with credentials at all: only the
/// registry's own challenge may, since a redirect target (a CDN that answers 401 with a realm
/// of its own) has no claim on the user's credentials.
pub fn challenge(registry: &Origin, challenger: &Origin) -> Result<()> {
    if challenger != registry {
        return Err(Error::Refused(format!(
            "{challenger} asked for credentials after a redirect; they go only to the registry {registry}"
        )));
    }
    Ok(())
}

/// Whether a redirect from `from` to `to` may be followed at all (credentials aside, which
/// `Secret::to` decides hop by hop).
pub fn redirect(from: &Origin, to: &Origin, location: &str) -> Result<()> {
    if from.is_https() && !to.is_https() {
        return Err(Error::Refused(format!(
            "{from} redirected to plain HTTP ({location}); ocidl does not leave TLS"
        )));
    }
    Ok(())
}

/// A `Link: rel="next"` page of a tag list: only on the registry's own origin, so one
/// registry's listing is never mixed with another server's tags.
pub fn next_page(registry: &Origin, url: &str) -> Result<()> {
    match Origin::of(url) {
        Ok(page) if page == *registry => Ok(()),
        _ => Err(Error::Refused(format!(
            "the tag list continues at {url}, outside the registry {registry}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(url: &str) -> Origin {
        Origin::of(url).unwrap()
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(o("https://ghcr.io/v2/x"), o("https://GHCR.io:443/token"));
        assert_eq!(o("http://h/a"), o("http://h:80/b"));
        assert_ne!(o("https://ghcr.io/v2/x"), o("http://ghcr.io/v2/x"));
        assert_ne!(o("http://127.0.0.1:5000/a"), o("http://127.0.0.1:5001/a"));
        assert_ne!(
            o("https://ghcr.io/a"),
            o("https://pkg-containers.githubusercontent.com/a")
        );
        for bad in ["ftp://x/y", "/relative", "", "https://"] {
            assert!(Origin::of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn registry_secrets_go_to_the_registry_alone() {
        let registry = o("https://r.io");
        let secret = Secret::for_registry("Bearer t".into(), &registry);
        assert_eq!(secret.to(&o("https://r.io/v2/a/blobs/x")), Some("Bearer t"));
        for elsewhere in [
            "https://cdn.r.io/blob",
            "http://r.io/v2/",
            "https://r.io:8443/v2/",
            "https://r.io.evil/v2/",
        ] {
            assert_eq!(secret.to(&o(elsewhere)), None, "{elsewhere}");
        }
    }

    #[test]
    fn realm_secrets_follow_the_registrys_own_challenge() {
        let https = o("https://r.io");
        let http = o("http://127.0.0.1:5000");
        let secret =
            Secret::for_realm("Basic x".into(), &https, "https://auth.r.io/token").unwrap();
        assert_eq!(
            secret.to(&o("https://auth.r.io/token?scope=a")),
            Some("Basic x")
        );
        assert_eq!(secret.to(&https), None);
        // A plain registry may name a plain realm; a TLS one may not.
        assert!(Secret::for_realm("b".into(), &http, "http://127.0.0.1:6000/t").is_ok());
        assert!(Secret::for_realm("b".into(), &https, "http://auth.r.io/t").is_err());
        assert!(Secret::for_realm("b".into(), &https, "file:///etc/passwd").is_err());
        // A CDN's challenge has no claim on the registry's credentials.
        assert!(challenge(&https, &https).is_ok());
        assert!(challenge(&https, &o("https://cdn.example")).is_err());
        assert!(challenge(&https, &o("http://r.io")).is_err());
    }

    #[test]
    fn redirects_and_pages() {
        let https = o("https://r.io");
        assert!(redirect(&https, &o("https://cdn.example/b"), "x").is_ok());
        assert!(redirect(&https, &o("http://r.io/b"), "x").is_err());
        assert!(redirect(&o("http://r"), &o("https://r/b"), "x").is_ok());
        assert!(next_page(&https, "https://r.io/v2/a/tags/list?last=b").is_ok());
        assert!(next_page(&https, "https://other.io/v2/a/tags/list").is_err());
        assert!(next_page(&https, "http://r.io/v2/a/tags/list").is_err());
    }
}
