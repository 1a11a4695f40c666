//! References: what the user typed, as small validated types (`Registry` within
//! `Repository` within `Reference`), with the defaults in one place: the constants below.
//! How text becomes them, the grammar and the forms users paste, is `reference/grammar.rs`.

use std::fmt;
use std::path::PathBuf;

use crate::content::digest::Digest;
use crate::error::Error;

/// The tag pulled when a reference names none.
pub const DEFAULT_TAG: &str = "latest";
/// The registry of a reference that names none (without `--ghcr`).
pub const DOCKER_HUB: &str = "docker.io";
/// Names Docker accepts for Docker Hub; they are all rewritten to `DOCKER_HUB`.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// Docker Hub's API lives on another host than its name.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// GitHub's registry, where the anonymous `Bearer QQ==` shortcut works.
pub const GHCR: &str = "ghcr.io";
const MAX_PATH_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// What the command line decides for every reference: `--ghcr`, `--plain-http`, and
/// `--manifest` (a digest names a package's manifest, not a blob).
#[derive(Clone, Copy, Debug, Default)]
pub struct Defaults {
    pub ghcr: bool,
    pub plain_http: bool,
    pub manifest: bool,
}

/// A registry host, with how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    host: String,
    plain_http: bool,
    ghcr: bool,
}

impl Registry {
    /// The host as named, with its port: `ghcr.io`, `127.0.0.1:5000`, `docker.io`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `https://host` (or `http://` for plain HTTP), with Docker Hub's API host swapped in.
    pub fn base_url(&self) -> String {
        let host = if self.host == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.host
        };
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{host}")
    }

    /// ghcr.io, or a registry the user told us behaves like it (`--ghcr`).
    pub fn is_ghcr(&self) -> bool {
        self.ghcr
    }
}

/// A registry and a repository path in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    registry: Registry,
    path: String,
}

impl Repository {
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The path as the API wants it: Docker Hub's one-segment names get `library/`.
    pub fn path(&self) -> String {
        if self.registry.host == DOCKER_HUB && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.clone()
        }
    }

    /// The fully qualified name: `docker.io/library/debian`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry.host, self.path())
    }

    /// The last path segment: the default file name of a blob.
    pub fn last_segment(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Where a namespace lives: `host[:port][/namespace...]`, as registries.conf's `location`
/// and `--mirror` name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    registry: Registry,
    path: String,
}

impl Location {
    /// Parses `host[:port][/path]`; `plain_http` for a source marked insecure or `http://`.
    pub fn parse(text: &str, plain_http: bool) -> Result<Location, String> {
        let (host, path) = text.split_once('/').unwrap_or((text, ""));
        grammar::check_domain(host)?;
        let path = path.trim_end_matches('/');
        if !path.is_empty() {
            for segment in path.split('/') {
                grammar::check_path_segment(segment)?;
            }
        }
        let host = match DOCKER_HUB_ALIASES.contains(&host) {
            true => DOCKER_HUB,
            false => host,
        };
        Ok(Location {
            registry: Registry {
                host: host.to_string(),
                plain_http,
                ghcr: host == GHCR,
            },
            path: path.to_string(),
        })
    }

    /// The repository `rest` below this location (`rest` may be empty: the location itself).
    pub fn repository(&self, rest: &str) -> Repository {
        let path = match (self.path.as_str(), rest) {
            (path, "") => path.to_string(),
            ("", rest) => rest.to_string(),
            (path, rest) => format!("{path}/{rest}"),
        };
        Repository {
            registry: self.registry.clone(),
            path,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.registry.plain_http {
            "http://"
        } else {
            ""
        };
        match self.path.is_empty() {
            true => write!(f, "{scheme}{}", self.registry.host),
            false => write!(f, "{scheme}{}/{}", self.registry.host, self.path),
        }
    }
}

/// Where a reference's content is: a registry's repository, or an OCI image layout on disk
/// (`oci:PATH`, skopeo's form), which needs no network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Registry(Repository),
    Layout(PathBuf),
}

/// What in a repository is asked for: a tagged package, a package by its manifest's
/// digest (a registry API URL `.../manifests/sha256:...`), or one blob by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Tag(String),
    Manifest(Digest),
    Blob(Digest),
}

/// A parsed reference. `Display` gives back what the user typed, for messages.
#[derive(Clone, Debug)]
pub struct Reference {
    input: String,
    place: Place,
    target: Target,
    /// No tag and no digest was given: the tag is `DEFAULT_TAG`, which may not exist.
    tag_defaulted: bool,
}

impl Reference {
    pub fn parse(input: &str, defaults: Defaults) -> Result<Reference, Error> {
        grammar::parse(input, defaults).map_err(|reason| Error::InvalidReference {
            input: input.to_string(),
            reason,
        })
    }

    pub fn place(&self) -> &Place {
        &self.place
    }

    /// The repository, for a reference to a registry.
    pub fn repository(&self) -> Option<&Repository> {
        match &self.place {
            Place::Registry(repository) => Some(repository),
            Place::Layout(_) => None,
        }
    }

    /// The file a blob is written to without `-o`: the repository's last path segment, or,
    /// from a layout, the digest's hex.
    pub fn file_name(&self) -> String {
        match (&self.place, &self.target) {
            (Place::Registry(repository), _) => repository.last_segment().to_string(),
            (Place::Layout(_), Target::Blob(digest) | Target::Manifest(digest)) => {
                digest.hex().to_string()
            }
            (Place::Layout(_), Target::Tag(_)) => "blob".to_string(),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// True when the input named no tag (nor digest), so `latest` was assumed.
    pub fn tag_defaulted(&self) -> bool {
        self.tag_defaulted
    }

    /// The fully qualified form: `docker.io/library/debian:latest`.
    pub fn name(&self) -> String {
        let place = match &self.place {
            Place::Registry(repository) => repository.name(),
            Place::Layout(path) => format!("oci:{}", path.display()),
        };
        match &self.target {
            Target::Tag(tag) if tag.is_empty() => place,
            Target::Tag(tag) => format!("{place}:{tag}"),
            Target::Manifest(digest) | Target::Blob(digest) => format!("{place}@{digest}"),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.input)
    }
}

mod grammar;
