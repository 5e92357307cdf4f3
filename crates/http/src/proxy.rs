//! HTTP proxies from the environment: `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`.
//!
//! As Go's `net/http` (which the official providers use) reads them, with lowercase names
//! too: `https://` requests go through a `CONNECT` tunnel to `HTTPS_PROXY`, `http://`
//! requests are sent to `HTTP_PROXY` in absolute form. `NO_PROXY` lists hosts that are
//! reached directly: `*` for all, a domain (`example.com` or `.example.com`, covering its
//! subdomains), or an IP address. Loopback and link-local addresses (a metadata service)
//! are always reached directly. Only `http://` proxies are supported; user information in
//! the proxy URL becomes `Proxy-Authorization: Basic`.

use std::net::IpAddr;

use icp_core::Environment;

use crate::Error;

/// One proxy.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// The proxy's host (no brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The `Proxy-Authorization` value, when the URL has user information.
    pub(crate) authorization: Option<String>,
}

impl Proxy {
    /// The `host:port` to name in errors.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn parse(name: &str, url: &str) -> Result<Proxy, Error> {
        let bad = |why: &str| Error::Proxy {
            proxy: name.to_owned(),
            reason: why.to_owned(),
        };
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err(bad("only http:// proxies are supported")),
            None => url,
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse::<u16>()
                    .map_err(|_| bad("the proxy port is not a number"))?,
            ),
            _ => (hostport, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("the proxy URL has no host"));
        }
        let authorization =
            userinfo.map(|userinfo| format!("Basic {}", base64(&percent_decode(userinfo))));
        Ok(Proxy {
            host: host.to_owned(),
            port,
            authorization,
        })
    }
}

/// The proxy's credentials are left out.
impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({})", self.authority())
    }
}

/// The proxy settings of the environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Proxies {
    https: Option<Proxy>,
    http: Option<Proxy>,
    no_proxy: Vec<String>,
}

impl Proxies {
    /// Reads `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (or their lowercase forms) from
    /// `env`.
    pub(crate) fn from_env(env: &Environment) -> Result<Proxies, Error> {
        let var = |upper: &str| {
            env.get(upper)
                .or_else(|| env.get(&upper.to_ascii_lowercase()))
                .map(|v| (upper.to_owned(), v.trim().to_owned()))
                .filter(|(_, v)| !v.is_empty())
        };
        let proxy = |upper: &str| {
            var(upper)
                .map(|(name, url)| Proxy::parse(&name, &url))
                .transpose()
        };
        let no_proxy = var("NO_PROXY")
            .map(|(_, list)| {
                list.split(',')
                    .map(|entry| entry.trim().trim_start_matches('.').to_ascii_lowercase())
                    .filter(|entry| !entry.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Proxies {
            https: proxy("HTTPS_PROXY")?,
            http: proxy("HTTP_PROXY")?,
            no_proxy,
        })
    }

    /// The proxy a request to `host` over `https` or plain HTTP goes through, if any.
    pub(crate) fn for_target(&self, https: bool, host: &str) -> Option<&Proxy> {
        let proxy = if https {
            self.https.as_ref()
        } else {
            self.http.as_ref()
        }?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            let local = match ip {
                IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
                IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xffc0) == 0xfe80,
            };
            if local {
                return None;
            }
        }
        let host = host.to_ascii_lowercase();
        if host == "localhost" {
            return None;
        }
        let bypass = self.no_proxy.iter().any(|entry| {
            let entry = entry
                .split_once(':')
                .filter(|_| !entry.contains("::"))
                .map_or(entry.as_str(), |(h, _)| h);
            entry == "*" || host == entry || host.ends_with(&format!(".{entry}"))
        });
        if bypass { None } else { Some(proxy) }
    }
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match text
            .get(i + 1..i + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            Some(byte) if bytes[i] == b'%' => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
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

    fn proxies(vars: &[(&str, &str)]) -> Proxies {
        Proxies::from_env(&Environment::from_pairs(vars.iter().copied())).unwrap()
    }

    #[test]
    fn reads_the_environment_as_go_does() {
        let p = proxies(&[
            ("HTTPS_PROXY", "http://user:p%40ss@proxy.corp:3128"),
            ("http_proxy", "proxy.corp"),
            (
                "NO_PROXY",
                "internal.example, .corp.example,10.1.2.3,registry.example:5000",
            ),
        ]);
        let https = p.for_target(true, "myacr.azurecr.io").unwrap();
        assert_eq!((https.host.as_str(), https.port), ("proxy.corp", 3128));
        assert_eq!(https.authorization.as_deref(), Some("Basic dXNlcjpwQHNz"));
        assert!(!format!("{p:?}").contains("dXNlcjpwQHNz"));
        let http = p.for_target(false, "metadata.example").unwrap();
        assert_eq!((http.port, http.authorization.as_deref()), (80, None));
        for direct in [
            "internal.example",
            "a.internal.example",
            "x.corp.example",
            "corp.example",
            "10.1.2.3",
            "registry.example",
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "localhost",
            "fe80::1",
        ] {
            assert!(p.for_target(true, direct).is_none(), "{direct}");
        }
        assert!(p.for_target(true, "notinternal.example").is_some());
        assert!(
            proxies(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")])
                .for_target(true, "a.example")
                .is_none()
        );
        assert!(proxies(&[]).for_target(true, "a.example").is_none());
        assert!(
            proxies(&[("HTTP_PROXY", "http://p:1")])
                .for_target(true, "a.example")
                .is_none()
        );
    }

    #[test]
    fn refuses_unusable_proxy_urls() {
        for url in [
            "https://proxy:443",
            "socks5://proxy:1080",
            "http://proxy:port",
            "http://:3128",
        ] {
            let error =
                Proxies::from_env(&Environment::from_pairs([("HTTPS_PROXY", url)])).unwrap_err();
            assert!(
                error.to_string().starts_with("proxy HTTPS_PROXY: "),
                "{error}"
            );
        }
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }
}
