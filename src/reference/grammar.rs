//! The reference grammar: what the user typed, parsed once, before any request.
//!
//! The grammar is the one Docker and the CNCF distribution registry use:
//!
//! ```text
//! [scheme://][registry/]path[:tag][@sha256:hex]
//! ```
//!
//! - `scheme` is optional and ocidl's own addition, because users paste links:
//!   `https://` is the default anyway, `http://` means plain HTTP like `--plain-http`.
//! - The first path segment is a registry only if it contains `.` or `:`, is `localhost`,
//!   or has an uppercase letter (Docker's rule, kept for compatibility). A registry is a host
//!   name, an IPv4 address or a bracketed IPv6 address, with an optional numeric port.
//!   Without one, the registry is Docker Hub, or ghcr.io with `--ghcr`.
//! - Path segments are lowercase letters and digits, joined by `.`, `_`, `__` or runs of `-`.
//!   The path (without the registry) is at most 255 characters.
//! - A `:` starts a tag only when no `/` follows it, so `host:5000/repo` still parses. A tag is
//!   a word character then up to 127 of `[A-Za-z0-9_.-]`. No tag means `latest`.
//! - `NAME@sha256:` and 64 lowercase hex characters name one blob (pkgforge's `ghcr_blob`).
//!   `NAME:TAG@sha256:...` names the package whose *manifest* has that digest, as Docker reads
//!   it: the digest is checked, the tag is only a label. (`--manifest` reads `NAME@sha256:` so
//!   too.) Manifests may name sha512 content, and it is
//!   verified, but a reference takes sha256 only: distribution refuses `@sha512:` references
//!   (`ErrDigestUnsupported`), and ocidl's grammar is distribution's.
//! - Forms users paste are read first: `oci://` in front, registry API URLs
//!   (`https://HOST/v2/NAME/manifests/REF`, `.../blobs/DIGEST`), and skopeo's `oci:PATH`
//!   image layouts.
//!
//! Defaults are applied here and nowhere else: the constants in `reference.rs`.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use super::{
    Defaults, Place, Reference, Registry, Repository, Target, DEFAULT_TAG, DOCKER_HUB,
    DOCKER_HUB_ALIASES, GHCR, MAX_PATH_LEN, MAX_TAG_LEN,
};
use crate::content::digest::Digest;

pub(super) fn parse(input: &str, defaults: Defaults) -> Result<Reference, String> {
    // dbin and other pkgforge tools write `oci://ghcr.io/...`: the reference itself follows.
    // `oci:PATH` without the slashes is skopeo's image layout.
    if let Some(rest) = input.strip_prefix("oci:").filter(|r| !r.starts_with("//")) {
        return parse_layout(input, rest, defaults);
    }
    let unprefixed = input.strip_prefix("oci://").unwrap_or(input);
    let (rest, plain_http) = if let Some(rest) = unprefixed.strip_prefix("https://") {
        (rest, false)
    } else if let Some(rest) = unprefixed.strip_prefix("http://") {
        (rest, true)
    } else if let Some((scheme, _)) = unprefixed.split_once("://") {
        return Err(format!(
            "unsupported scheme '{scheme}://' (use https://, http:// or oci://)"
        ));
    } else {
        (unprefixed, defaults.plain_http)
    };
    if rest.is_empty() {
        return Err("empty reference".into());
    }
    // A registry API URL pasted from docs or a log, with its scheme: what it names.
    let api = match unprefixed.len() != rest.len() {
        true => api_url(rest)?,
        false => None,
    };
    let (rest, by_manifest) = match &api {
        Some((reference, by_manifest)) => (reference.as_str(), *by_manifest),
        None => (rest, false),
    };

    let (name_and_tag, digest) = match rest.split_once('@') {
        Some((before, after)) => (before, Some(reference_digest(after)?)),
        None => (rest, None),
    };
    let (name, tag) = match name_and_tag.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if name.is_empty() {
        return Err("missing repository name".into());
    }

    let (domain, path) = match name.split_once('/') {
        Some((first, path)) if looks_like_registry(first) => (Some(first), path),
        _ => (None, name),
    };
    if let Some(domain) = domain {
        check_domain(domain)?;
    }
    for segment in path.split('/') {
        check_path_segment(segment)?;
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "repository path longer than {MAX_PATH_LEN} characters"
        ));
    }

    let host = match domain {
        Some(d) if DOCKER_HUB_ALIASES.contains(&d) => DOCKER_HUB,
        Some(d) => d,
        None if defaults.ghcr => GHCR,
        None => DOCKER_HUB,
    };
    let registry = Registry {
        host: host.to_string(),
        plain_http,
        ghcr: defaults.ghcr || host == GHCR,
    };
    let tag_defaulted = tag.is_none() && digest.is_none();
    let target = match (digest, tag) {
        (Some(digest), _) if by_manifest || defaults.manifest => Target::Manifest(digest),
        (Some(digest), Some(_)) => Target::Manifest(digest),
        (Some(digest), None) => Target::Blob(digest),
        (None, tag) => Target::Tag(tag.unwrap_or(DEFAULT_TAG).to_string()),
    };
    Ok(Reference {
        input: input.to_string(),
        place: Place::Registry(Repository {
            registry,
            path: path.to_string(),
        }),
        target,
        tag_defaulted,
    })
}

/// `oci:PATH[:NAME]`, `oci:PATH:TAG@DIGEST` and `oci:PATH@DIGEST`, as skopeo writes them: a
/// layout and what in it. PATH holds no `:` or `@`; NAME is what `index.json` records
/// (`org.opencontainers.image.ref.name`), and no name means the layout's only manifest.
fn parse_layout(input: &str, rest: &str, defaults: Defaults) -> Result<Reference, String> {
    let end = rest.find([':', '@']).unwrap_or(rest.len());
    let (path, after) = rest.split_at(end);
    if path.is_empty() {
        return Err("oci: names a layout directory: oci:PATH[:NAME] or oci:PATH@DIGEST".into());
    }
    let (name, digest) = match after.split_once('@') {
        Some((name, digest)) => (name, Some(reference_digest(digest)?)),
        None => (after, None),
    };
    let name = name.strip_prefix(':').unwrap_or(name);
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._:/+-@".contains(c);
    if !name.chars().all(allowed) {
        return Err(format!(
            "a layout's manifest name is [A-Za-z0-9._:/+-], not {name:?}"
        ));
    }
    let target = match digest {
        Some(digest) if defaults.manifest || !name.is_empty() => Target::Manifest(digest),
        Some(digest) => Target::Blob(digest),
        None => Target::Tag(name.to_string()),
    };
    Ok(Reference {
        input: input.to_string(),
        place: Place::Layout(PathBuf::from(path)),
        target,
        tag_defaulted: false,
    })
}

/// `HOST/v2/NAME/manifests/REF` and `HOST/v2/NAME/blobs/DIGEST`, the distribution API's own
/// URLs, as the reference they name (`HOST/NAME:REF`, `HOST/NAME@REF`, `HOST/NAME@DIGEST`)
/// and whether a digest names a manifest. `None` for anything else.
fn api_url(rest: &str) -> Result<Option<(String, bool)>, String> {
    let Some((host, api)) = rest.split_once("/v2/") else {
        return Ok(None);
    };
    if host.contains('/') {
        return Ok(None);
    }
    let api = api.split(['?', '#']).next().unwrap_or(api);
    let wrong = || {
        "a registry API URL names HOST/v2/NAME/manifests/TAG-OR-DIGEST or \
         HOST/v2/NAME/blobs/DIGEST"
            .to_string()
    };
    if let Some((name, reference)) = api.rsplit_once("/manifests/") {
        if name.is_empty() || reference.is_empty() {
            return Err(wrong());
        }
        return Ok(Some(match reference.contains(':') {
            true => (format!("{host}/{name}@{reference}"), true),
            false => (format!("{host}/{name}:{reference}"), false),
        }));
    }
    if let Some((name, digest)) = api.rsplit_once("/blobs/") {
        if name.is_empty() || digest.is_empty() {
            return Err(wrong());
        }
        return Ok(Some((format!("{host}/{name}@{digest}"), false)));
    }
    Err(wrong())
}

fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// The digest after `@`: sha256 only (see the module's notes).
fn reference_digest(text: &str) -> Result<Digest, String> {
    let digest = text.parse::<Digest>()?;
    match digest.algorithm() {
        crate::content::digest::Algorithm::Sha256 => Ok(digest),
        _ => Err("a reference's digest is sha256 (as in distribution's grammar)".into()),
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    if tag.is_empty() {
        return Err("empty tag after ':'".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("tag longer than {MAX_TAG_LEN} characters"));
    }
    if !word(bytes[0]) || !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Err(format!(
            "invalid tag '{tag}' (letters, digits, '_', '.', '-'; not first '.' or '-')"
        ));
    }
    Ok(())
}

/// `host[:port]`, where host is a DNS name, an IPv4 address or `[IPv6]`.
pub(super) fn check_domain(domain: &str) -> Result<(), String> {
    let bad = || format!("invalid registry '{domain}'");
    let (host_ok, port) = if let Some(inner) = domain.strip_prefix('[') {
        let (v6, after) = inner.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        };
        // Plain hex groups only: zones and embedded IPv4 are refused, as distribution does.
        let v6_ok = v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
            && v6.parse::<Ipv6Addr>().is_ok();
        (v6_ok, port)
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (is_dns_name(host), Some(port)),
            None => (is_dns_name(domain), None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Dot-separated labels of letters, digits and inner `-` (IPv4 addresses pass too).
fn is_dns_name(host: &str) -> bool {
    host.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    })
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
pub(super) fn check_path_segment(segment: &str) -> Result<(), String> {
    let b = segment.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let run = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == run {
            break;
        }
        if i == b.len() {
            return Ok(());
        }
        match b[i] {
            b'.' => i += 1,
            b'_' if b.get(i + 1) == Some(&b'_') => i += 2,
            b'_' => i += 1,
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    if segment.is_empty() {
        Err("empty path segment".into())
    } else {
        Err(format!(
            "invalid path segment '{segment}' (lowercase letters and digits, joined by '.', '_', '__' or '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    const HEX: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    fn ok(input: &str) -> Reference {
        Reference::parse(input, Defaults::default())
            .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }

    #[test]
    fn defaults_are_applied() {
        let r = ok("ubuntu");
        assert_eq!(r.name(), "docker.io/library/ubuntu:latest");
        assert_eq!(
            r.repository().unwrap().registry().base_url(),
            "https://registry-1.docker.io"
        );
        assert_eq!(
            ok("index.docker.io/debian").name(),
            "docker.io/library/debian:latest"
        );
        assert_eq!(ok("docker/docker:1").name(), "docker.io/docker/docker:1");
        assert_eq!(ok("localhost/debian").name(), "localhost/debian:latest");
    }

    #[test]
    fn pkgforge_forms() {
        let pkg = ok("ghcr.io/pkgforge/bincache/curl/stunnel/trurl:8.11.1-x86_64-linux");
        assert_eq!(pkg.repository().unwrap().registry().host(), "ghcr.io");
        assert!(pkg.repository().unwrap().registry().is_ghcr());
        assert_eq!(
            pkg.repository().unwrap().path(),
            "pkgforge/bincache/curl/stunnel/trurl"
        );
        assert_eq!(pkg.target(), &Target::Tag("8.11.1-x86_64-linux".into()));

        let blob = ok(&format!(
            "https://ghcr.io/pkgforge/bincache/curl/stunnel/trurl@sha256:{HEX}"
        ));
        assert_eq!(blob.repository().unwrap().last_segment(), "trurl");
        assert!(
            matches!(blob.target(), Target::Blob(d) if d.to_string() == format!("sha256:{HEX}"))
        );
        assert_eq!(
            blob.repository().unwrap().registry().base_url(),
            "https://ghcr.io"
        );
    }

    #[test]
    fn every_form_users_paste() {
        let trurl = "ghcr.io/pkgforge/bincache/curl/stunnel/trurl";
        let tagged = Target::Tag("8.11.1-x86_64-linux".into());
        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        for (input, target, plain) in [
            (format!("oci://{trurl}:8.11.1-x86_64-linux"), tagged.clone(), false),
            (format!("oci://https://{trurl}:8.11.1-x86_64-linux"), tagged.clone(), false),
            ("https://ghcr.io/v2/pkgforge/bincache/curl/stunnel/trurl/manifests/8.11.1-x86_64-linux".to_string(), tagged.clone(), false),
            (format!("http://ghcr.io/v2/pkgforge/bincache/curl/stunnel/trurl/manifests/sha256:{HEX}"), Target::Manifest(digest.clone()), true),
            (format!("https://ghcr.io/v2/pkgforge/bincache/curl/stunnel/trurl/blobs/sha256:{HEX}"), Target::Blob(digest.clone()), false),
            (format!("https://ghcr.io/v2/pkgforge/bincache/curl/stunnel/trurl/blobs/sha256:{HEX}?x=1"), Target::Blob(digest.clone()), false),
        ] {
            let r = ok(&input);
            assert_eq!(r.repository().unwrap().name(), trurl, "{input}");
            assert_eq!(r.target(), &target, "{input}");
            assert_eq!(r.repository().unwrap().registry().base_url().starts_with("http:"), plain, "{input}");
            assert_eq!(r.to_string(), input);
            assert!(!r.tag_defaulted());
        }
        // pkgforge's ghcr_url: a package with no tag, so `latest` is assumed, and said so.
        let url = ok("https://ghcr.io/pkgforge/bincache/7z/official/7z");
        assert_eq!(url.target(), &Target::Tag("latest".into()));
        assert!(url.tag_defaulted());
        for (layout, place, target) in [
            ("oci:cache", "cache", Target::Tag(String::new())),
            (
                "oci:/mnt/usb/ocidl:ghcr.io/pkgforge/x:v1",
                "/mnt/usb/ocidl",
                Target::Tag("ghcr.io/pkgforge/x:v1".into()),
            ),
            ("oci:dir:v1", "dir", Target::Tag("v1".into())),
            (
                &format!("oci:dir@sha256:{HEX}"),
                "dir",
                Target::Blob(digest.clone()),
            ),
            (
                &format!("oci:dir:v1@sha256:{HEX}"),
                "dir",
                Target::Manifest(digest.clone()),
            ),
        ] {
            let r = ok(layout);
            assert_eq!(r.place(), &Place::Layout(PathBuf::from(place)), "{layout}");
            assert_eq!(r.target(), &target, "{layout}");
            assert!(r.repository().is_none());
        }
        for (bad, says) in [
            ("oci:", "layout directory"),
            ("oci::v1", "layout directory"),
            ("oci:dir:a b", "manifest name"),
            ("oci:dir@sha256:abc", "64 hex"),
            ("https://ghcr.io/v2/a/tags/list", "registry API URL"),
            ("https://ghcr.io/v2/a/manifests/", "registry API URL"),
            ("https://ghcr.io/v2//blobs/sha256:00", "registry API URL"),
            ("https://ghcr.io/v2/a/blobs/sha256:abc", "64 hex"),
            ("oci://ftp://ghcr.io/a", "unsupported scheme"),
            ("docker://ghcr.io/a", "unsupported scheme"),
        ] {
            match Reference::parse(bad, Defaults::default()) {
                Err(Error::InvalidReference { reason, .. }) => {
                    assert!(reason.contains(says), "{bad}: {reason}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn ghcr_flag_and_schemes() {
        let ghcr = Defaults {
            ghcr: true,
            ..Defaults::default()
        };
        let r = Reference::parse("pkgforge/bincache/jq:latest", ghcr).unwrap();
        assert_eq!(r.name(), "ghcr.io/pkgforge/bincache/jq:latest");
        // --ghcr on a named registry keeps the registry and the ghcr auth shortcut.
        let r = Reference::parse("127.0.0.1:5000/a/b", ghcr).unwrap();
        assert_eq!(r.repository().unwrap().registry().host(), "127.0.0.1:5000");
        assert!(r.repository().unwrap().registry().is_ghcr());
        assert!(!ok("127.0.0.1:5000/a/b")
            .repository()
            .unwrap()
            .registry()
            .is_ghcr());

        assert_eq!(
            ok("http://127.0.0.1:5000/a")
                .repository()
                .unwrap()
                .registry()
                .base_url(),
            "http://127.0.0.1:5000"
        );
        let plain = Defaults {
            plain_http: true,
            ..Defaults::default()
        };
        let r = Reference::parse("https://127.0.0.1:5000/a", plain).unwrap();
        assert_eq!(
            r.repository().unwrap().registry().base_url(),
            "https://127.0.0.1:5000"
        );
        let r = Reference::parse("127.0.0.1:5000/a", plain).unwrap();
        assert_eq!(
            r.repository().unwrap().registry().base_url(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(r.to_string(), "127.0.0.1:5000/a");
    }

    #[test]
    fn a_tag_and_a_digest_pin_a_manifest() {
        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        let r = ok(&format!("test:5000/repo:tag@sha256:{HEX}"));
        assert_eq!(r.target(), &Target::Manifest(digest.clone()));
        assert_eq!(r.name(), format!("test:5000/repo@sha256:{HEX}"));
        assert_eq!(
            ok(&format!("test:5000/repo@sha256:{HEX}")).target(),
            &Target::Blob(digest.clone())
        );
        let manifest = Defaults {
            manifest: true,
            ..Defaults::default()
        };
        let r = Reference::parse(&format!("test:5000/repo@sha256:{HEX}"), manifest).unwrap();
        assert_eq!(r.target(), &Target::Manifest(digest));
    }

    #[test]
    fn refuses_with_reasons() {
        for (input, reason) in [
            ("", "empty"),
            ("ftp://x/y", "unsupported scheme"),
            ("https://", "empty"),
            ("repo@sha256:abc", "64 hex"),
            ("repo@md5:abc", "unsupported digest algorithm"),
            ("a@b@sha256:x", "digest"),
            ("repo:", "empty tag"),
            ("repo:-x", "invalid tag"),
            ("Repo", "invalid path segment"),
            ("a//b", "empty path segment"),
            ("a/b/", "empty path segment"),
            ("host.com:x0/a", "invalid registry"),
            ("[::1/a", "invalid registry"),
            ("a.-b.com/c", "invalid registry"),
        ] {
            match Reference::parse(input, Defaults::default()) {
                Err(Error::InvalidReference { reason: r, .. }) => {
                    assert!(r.contains(reason), "{input:?}: {r:?} lacks {reason:?}")
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    /// distribution/reference's own table, as data (see tests/data/README.md).
    #[test]
    fn conformance_vectors() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/reference-vectors.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let vectors: serde_json::Value = serde_json::from_str(&text).unwrap();
        let vectors = vectors.as_array().unwrap();
        assert!(vectors.len() > 80);
        for v in vectors {
            let input = v["input"].as_str().unwrap();
            let parsed = Reference::parse(input, Defaults::default());
            match v["ocidl"].as_str().unwrap() {
                "valid" => {
                    let r = parsed.unwrap_or_else(|e| panic!("{input:?} should be valid: {e}"));
                    if let Some(tag) = v["tag"].as_str() {
                        if v["digest"].is_null() {
                            assert_eq!(r.target(), &Target::Tag(tag.into()), "{input:?}");
                        }
                    }
                    if let Some(digest) = v["digest"].as_str() {
                        let pinned = match r.target() {
                            Target::Blob(d) | Target::Manifest(d) => d.to_string() == digest,
                            Target::Tag(_) => false,
                        };
                        assert!(pinned, "{input:?}");
                    }
                    // The table's parts are un-normalized: "a/b" has domain "a" there, while
                    // Docker (and ocidl) read "a" as a Docker Hub namespace.
                    if let Some(repository) = v["repository"].as_str() {
                        assert!(
                            r.repository().unwrap().name().ends_with(repository),
                            "{input:?}"
                        );
                    }
                    if let Some(domain) = v["domain"].as_str().filter(|d| looks_like_registry(d)) {
                        assert_eq!(
                            r.repository().unwrap().registry().host(),
                            domain,
                            "{input:?}"
                        );
                    }
                }
                "invalid" => assert!(parsed.is_err(), "{input:?} should be invalid"),
                _ => {} // a documented quirk: either answer is right, but it must not panic
            }
        }
    }
}
