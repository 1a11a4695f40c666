//! Which proxy a request goes through, read from the environment as curl reads it.

use ureq::http::Uri;

use crate::error::{Error, Result};

/// Proxies as curl reads them: `https_proxy` for https URLs and `http_proxy` for http ones
/// (either case), `all_proxy` for both when those are unset, and `no_proxy` for the hosts
/// that go direct (`*`, a host, or a domain suffix such as `.internal` or `internal`).
/// `socks5://`, `socks5h://`, `socks4://` and `socks4a://` proxies work too (ureq's own SOCKS
/// client).
#[derive(Clone, Debug, Default)]
pub struct Proxies {
    http: Option<ureq::Proxy>,
    https: Option<ureq::Proxy>,
    no_proxy: Vec<String>,
}

impl Proxies {
    /// From the variables `var` looks up (the environment, in `settings.rs`).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Proxies> {
        let var = |name: &str| {
            [name.to_ascii_lowercase(), name.to_string()]
                .iter()
                .find_map(|n| var(n).filter(|v| !v.is_empty()).map(|v| (n.clone(), v)))
        };
        let proxy = |found: Option<(String, String)>| -> Result<Option<ureq::Proxy>> {
            match found {
                None => Ok(None),
                Some((name, url)) => ureq::Proxy::new(&url)
                    .map(Some)
                    .map_err(|_| Error::Usage(format!("{name}: not a proxy URL: {url}"))),
            }
        };
        let all = var("ALL_PROXY");
        Ok(Proxies {
            http: proxy(var("HTTP_PROXY").or_else(|| all.clone()))?,
            https: proxy(var("HTTPS_PROXY").or(all))?,
            no_proxy: var("NO_PROXY")
                .map(|(_, v)| {
                    v.split(',')
                        .map(|h| h.trim().to_ascii_lowercase())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    pub(crate) fn for_url(&self, url: &str) -> Option<ureq::Proxy> {
        let uri = Uri::try_from(url).ok()?;
        let host = uri.host()?.to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let direct = self.no_proxy.iter().any(|entry| {
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            // A port on an entry is ignored; `[v6]` loses its brackets, a bare v6 keeps its colons.
            let entry = match entry.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(v6),
                None if entry.matches(':').count() == 1 => entry.split(':').next().unwrap_or(entry),
                None => entry,
            };
            // Addresses match whole; names also match as a domain suffix.
            let is_address = host.parse::<std::net::IpAddr>().is_ok();
            entry == "*"
                || host == entry
                || (!is_address
                    && host
                        .strip_suffix(entry)
                        .is_some_and(|rest| rest.ends_with('.')))
        });
        if direct {
            return None;
        }
        match uri.scheme_str() {
            Some("https") => self.https.clone(),
            _ => self.http.clone(),
        }
    }
}

#[cfg(test)]
impl Proxies {
    /// Every URL through `proxy`, for tests elsewhere (the environment is the process's).
    pub(crate) fn all(proxy: &str) -> Proxies {
        let proxy = ureq::Proxy::new(proxy).ok();
        Proxies {
            http: proxy.clone(),
            https: proxy,
            no_proxy: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_by_scheme_and_no_proxy() {
        let proxy = |url: &str| ureq::Proxy::new(url).ok();
        let proxies = Proxies {
            http: proxy("http://127.0.0.1:3128"),
            https: proxy("http://127.0.0.1:3129"),
            no_proxy: vec![
                "internal".into(),
                ".corp.example".into(),
                "10.0.0.1".into(),
                "[::1]".into(),
            ],
        };
        let port = |url: &str| proxies.for_url(url).map(|p| p.port());
        assert_eq!(port("https://ghcr.io/v2/"), Some(3129));
        assert_eq!(port("http://127.0.0.1:5000/v2/"), Some(3128));
        assert_eq!(port("https://registry.internal/v2/"), None);
        assert_eq!(port("https://internal/v2/"), None);
        assert_eq!(port("https://a.corp.example:5000/v2/"), None);
        assert_eq!(port("http://10.0.0.1/v2/"), None);
        assert_eq!(port("http://[::1]:5000/v2/"), None);
        assert_eq!(port("https://notinternal/v2/"), Some(3129));
        let partial = Proxies {
            no_proxy: vec!["0.0.1".into()],
            ..proxies.clone()
        };
        assert_eq!(
            partial.for_url("http://127.0.0.1/").map(|p| p.port()),
            Some(3128)
        );
        let all = Proxies {
            no_proxy: vec!["*".into()],
            ..proxies.clone()
        };
        assert_eq!(all.for_url("https://ghcr.io/").map(|p| p.port()), None);
    }
}
