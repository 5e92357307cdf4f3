//! Where a pod's token may be sent: a rule's URL, checked when the backend is built.
//!
//! Only `https://` is taken. Plain `http://` is refused unless the host is a loopback
//! address (or `localhost`) and the rule says `insecure: true`, which is for tests.

use std::net::IpAddr;

use icp_core::quote;

/// A checked base URL: scheme, authority and the path and query as given, with no
/// trailing `/` on the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    authority: String,
}

impl Endpoint {
    /// Checks `url`, the value of the rule field `field`, and whether plain HTTP may be
    /// used (`insecure`).
    pub fn parse(field: &str, url: &str, insecure: bool) -> Result<Endpoint, String> {
        let bad = |why: &str| format!("{field} {} {why}", quote(url));
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("has spaces or control characters"));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("is not an absolute https:// URL"))?;
        if rest.contains('#') {
            return Err(bad("has a fragment"));
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("needs a host and no user name or password"));
        }
        let host = host_of(authority).ok_or_else(|| bad("has an invalid host or port"))?;
        match scheme {
            "https" => {}
            "http" if insecure && is_loopback(host) => {}
            "http" if insecure => {
                return Err(bad(
                    "uses plain http, which insecure: true allows only for a loopback host",
                ));
            }
            "http" => {
                return Err(bad(
                    "uses plain http: a service account token is only sent over TLS",
                ));
            }
            _ => return Err(bad("is not an https:// URL")),
        }
        let path = match path.split_once('?') {
            Some((path, query)) => format!("{}?{query}", path.trim_end_matches('/')),
            None => path.trim_end_matches('/').to_owned(),
        };
        Ok(Endpoint {
            url: format!("{scheme}://{authority}{path}"),
            authority: authority.to_owned(),
        })
    }

    /// The endpoint of a registry named by an image, `host[:port]`: always `https://`.
    pub fn registry(registry: &str) -> Endpoint {
        Endpoint {
            url: format!("https://{registry}"),
            authority: registry.to_owned(),
        }
    }

    /// The URL, as configured (no trailing `/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host[:port]`, as messages name the service.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The URL with `path` (starting with `/`) appended.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

/// The host of `authority` (`host`, `host:port`, `[v6]`, `[v6]:port`), when it is one.
fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if let Some(port) = port {
        port.parse::<u16>().ok().filter(|port| *port > 0)?;
    }
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'));
    valid.then_some(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_are_kept_without_a_trailing_slash() {
        let endpoint = Endpoint::parse("url", "https://vault.example:8200/", false).unwrap();
        assert_eq!(endpoint.url(), "https://vault.example:8200");
        assert_eq!(endpoint.authority(), "vault.example:8200");
        assert_eq!(endpoint.join("/v1/x"), "https://vault.example:8200/v1/x");
        let endpoint = Endpoint::parse(
            "url",
            "https://issuer.example/sts/exchange?aud=cgr.example",
            false,
        )
        .unwrap();
        assert_eq!(
            endpoint.url(),
            "https://issuer.example/sts/exchange?aud=cgr.example"
        );
        assert!(Endpoint::parse("url", "https://[::1]:8443/x", false).is_ok());
    }

    #[test]
    fn plain_http_only_for_loopback_and_insecure() {
        assert!(Endpoint::parse("url", "http://127.0.0.1:8080", true).is_ok());
        assert!(Endpoint::parse("url", "http://localhost:8080", true).is_ok());
        assert!(Endpoint::parse("url", "http://[::1]:8080", true).is_ok());
        for (url, insecure, why) in [
            ("http://127.0.0.1:8080", false, "only sent over TLS"),
            (
                "http://sts.example.com/token",
                true,
                "only for a loopback host",
            ),
            ("http://sts.example.com/token", false, "only sent over TLS"),
            ("ftp://sts.example.com/", false, "not an https"),
            ("sts.example.com/token", false, "not an absolute"),
            ("https://user:pw@sts.example.com/", false, "no user name"),
            ("https:///token", false, "needs a host"),
            (
                "https://sts.example.com:99999/",
                false,
                "invalid host or port",
            ),
            ("https://sts.example.com/#x", false, "fragment"),
            ("https://sts.example.com/a b", false, "spaces"),
            ("https://st$s.example.com/", false, "invalid host"),
        ] {
            let error = Endpoint::parse("url", url, insecure).unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
    }
}
