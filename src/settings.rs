//! Settings: what a run does, built in one place from defaults, the environment and the
//! command line (`cli` is one producer of it). `main` builds them; `pull` and everything
//! below take them, and nothing below `main` reads the command line or the environment.
//!
//! Every environment variable ocidl reads is read here: `OCIDL_CACHE`, `OCIDL_MIRROR`,
//! `OCIDL_MIRROR_TAGS`, `OCIDL_USERNAME`/`OCIDL_PASSWORD`, `DOCKER_CONFIG`,
//! `REGISTRY_AUTH_FILE`, `XDG_RUNTIME_DIR`, `HOME`, `CONTAINERS_REGISTRIES_CONF`,
//! `SSL_CERT_FILE`, `SSL_CERT_DIR`, and the proxy variables (`net/proxy.rs` says how they
//! are read).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::cli::{Args, Mode, Output};
use crate::content::manifest::Platform;
use crate::error::{Error, Result};
use crate::glob::Glob;
use crate::net::auth::Credentials;
use crate::net::credentials::Sources;
use crate::net::mirrors;
use crate::net::transport::{self, Proxies};
use crate::reference::Reference;

/// What to do with each reference: what `pull` takes.
#[derive(Debug)]
pub struct Job {
    pub mode: Mode,
    pub output: Option<Output>,
    pub platform: Platform,
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
    pub json: bool,
}

impl Job {
    /// Whether `--include`/`--exclude` keep the file titled `title`.
    pub fn wants(&self, title: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.matches(title)))
            && !self.exclude.iter().any(|g| g.matches(title))
    }
}

/// Where a run's mirrors come from.
pub struct MirrorSettings {
    /// `--mirror`, then `OCIDL_MIRROR` (comma-separated): before any from the files.
    pub extra: Vec<String>,
    /// `--mirror-tags` or `OCIDL_MIRROR_TAGS=1`: those may answer tags too.
    pub extra_tags: bool,
    /// registries.conf files, in the order they are read, each with whether it must exist.
    pub files: Vec<(PathBuf, bool)>,
}

pub struct Settings {
    pub references: Vec<Reference>,
    pub job: Job,
    pub quiet: bool,
    pub insecure: bool,
    pub transport: transport::Options,
    pub credentials: Sources,
    pub mirrors: MirrorSettings,
    /// `--cache` (or `OCIDL_CACHE`): an OCI image layout that keeps what is fetched.
    pub cache: Option<PathBuf>,
}

impl Settings {
    /// Builds the settings from `args`, the password read for `--username` (if any), and the
    /// environment as `var` gives it.
    pub fn new(
        args: Args,
        password: Option<String>,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Settings> {
        let path = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let text = |name: &str| var(name).and_then(|v| v.into_string().ok());
        let home = path("HOME");

        let named = args
            .references
            .iter()
            .filter_map(|r| r.repository())
            .map(|r| {
                let registry = r.registry();
                let plain = registry.base_url().starts_with("http://");
                (registry.host().to_string(), plain)
            })
            .collect();
        let explicit = match (
            args.username,
            password,
            text("OCIDL_USERNAME"),
            text("OCIDL_PASSWORD"),
        ) {
            (Some(username), Some(password), _, _) => {
                Some(Credentials::basic_pair(username, password))
            }
            (Some(_), None, _, _) => {
                return Err(Error::Usage("--username needs a password".into()))
            }
            (None, _, Some(username), Some(_)) if username.is_empty() => {
                return Err(Error::Usage("OCIDL_USERNAME is empty".into()))
            }
            (None, _, Some(username), Some(password)) => {
                Some(Credentials::basic_pair(username, password))
            }
            (None, _, Some(_), None) | (None, _, None, Some(_)) => {
                return Err(Error::Usage(
                    "OCIDL_USERNAME and OCIDL_PASSWORD go together".into(),
                ))
            }
            (None, _, None, None) => None,
        };
        let docker_config = path("DOCKER_CONFIG")
            .or_else(|| home.as_ref().map(|h| h.join(".docker")))
            .map(|dir| dir.join("config.json"))
            .filter(|p| p.is_file());
        let auth_json = [
            path("REGISTRY_AUTH_FILE"),
            path("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")),
            home.as_ref()
                .map(|h| h.join(".config/containers/auth.json")),
        ]
        .into_iter()
        .flatten()
        .find(|p| p.is_file());
        let credentials = Sources {
            explicit,
            named,
            docker_config,
            auth_json,
            helper_deadline: args.timeout,
        };

        let from_env = text("OCIDL_MIRROR").unwrap_or_default();
        let extra = args
            .mirrors
            .into_iter()
            .chain(from_env.split(',').map(|m| m.trim().to_string()))
            .filter(|m| !m.is_empty())
            .collect();
        let mirrors = MirrorSettings {
            extra,
            extra_tags: args.mirror_tags || text("OCIDL_MIRROR_TAGS").is_some_and(|v| v == "1"),
            files: mirrors::config_files(path("CONTAINERS_REGISTRIES_CONF"), home),
        };

        let transport = transport::Options {
            ca_files: args.ca_file.into_iter().collect(),
            env_ca_files: path("SSL_CERT_FILE").into_iter().collect(),
            env_ca_dirs: var("SSL_CERT_DIR")
                .filter(|v| !v.is_empty())
                .map(|dirs| std::env::split_paths(&dirs).collect())
                .unwrap_or_default(),
            proxies: Proxies::from_vars(|name| text(name))?,
            retries: args.retries,
            timeout: args.timeout,
            speed_limit: args.speed_limit,
            speed_time: args.speed_time,
            insecure: args.insecure,
            quiet: args.quiet,
        };
        let cache = args.cache.or_else(|| path("OCIDL_CACHE"));
        if args.mode == Mode::Fill && cache.is_none() {
            return Err(Error::Usage(
                "--cache-only needs --cache DIR (or OCIDL_CACHE)".into(),
            ));
        }
        Ok(Settings {
            references: args.references,
            job: Job {
                mode: args.mode,
                output: args.output,
                platform: args.platform,
                include: args.include,
                exclude: args.exclude,
                json: args.json,
            },
            quiet: args.quiet,
            insecure: args.insecure,
            transport,
            credentials,
            mirrors,
            cache,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse_args, Command};

    fn settings(args: &[&str], env: &[(&str, &str)]) -> Result<Settings> {
        let Ok(Command::Run(args)) = parse_args(lexopt::Parser::from_args(args.iter().copied()))
        else {
            panic!("{args:?} is not a run");
        };
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::new(args, None, |name| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn flags_and_the_environment_meet_here() {
        let s = settings(
            &["--include", "trurl*", "--exclude", "*.sig", "x.io/y:t"],
            &[
                ("OCIDL_CACHE", "/c"),
                ("OCIDL_MIRROR", "m1, m2,"),
                ("HOME", "/h"),
            ],
        )
        .unwrap();
        assert!(s.job.wants("trurl") && s.job.wants("trurl.json"));
        assert!(!s.job.wants("trurl.sig") && !s.job.wants("CHECKSUM"));
        assert_eq!(s.cache, Some(PathBuf::from("/c")));
        assert_eq!(s.mirrors.extra, ["m1", "m2"]);
        let s = settings(
            &["--mirror", "m0", "--cache", "/d", "x.io/y"],
            &[("OCIDL_CACHE", "/c")],
        )
        .unwrap();
        assert!(s.job.wants("anything"));
        assert_eq!(s.cache, Some(PathBuf::from("/d")));
        assert_eq!(s.mirrors.extra, ["m0"]);
        let s = settings(&["x.io/y"], &[("CONTAINERS_REGISTRIES_CONF", "/r.conf")]).unwrap();
        assert_eq!(s.mirrors.files, [(PathBuf::from("/r.conf"), true)]);
    }

    #[test]
    fn settings_that_do_not_go_together_are_usage_errors() {
        for (args, env, wanted) in [
            (&["--cache-only", "x.io/y"][..], &[][..], "needs --cache"),
            (&["x.io/y"], &[("OCIDL_USERNAME", "me")], "go together"),
            (
                &["x.io/y"],
                &[("OCIDL_USERNAME", ""), ("OCIDL_PASSWORD", "p")],
                "empty",
            ),
            (
                &["x.io/y"],
                &[("HTTPS_PROXY", "::not a url")],
                "not a proxy URL",
            ),
        ] {
            let e = settings(args, env).err().unwrap();
            assert!(
                e.is_usage() && e.to_string().contains(wanted),
                "{args:?}: {e}"
            );
        }
    }
}
