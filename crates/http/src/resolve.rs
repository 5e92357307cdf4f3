//! The curl-style address override, for tests and debugging.

use std::net::{IpAddr, SocketAddr};

use icp_core::Environment;

use crate::Error;

/// The environment variable holding address overrides: comma-separated
/// `host:port:address` entries (see the crate documentation). For tests and debugging.
pub const RESOLVE_ENV: &str = "IMAGE_CREDENTIAL_PROVIDER_RESOLVE";

/// Address overrides, from [`RESOLVE_ENV`], and routes to other hosts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    entries: Vec<(String, u16, SocketAddr)>,
    routes: Vec<(String, u16, String)>,
}

impl Overrides {
    /// Reads [`RESOLVE_ENV`] from `env`; unset or empty means no override.
    pub(crate) fn from_env(env: &Environment) -> Result<Overrides, Error> {
        match env.get_os(RESOLVE_ENV).map(|value| value.into_string()) {
            None => Ok(Overrides::default()),
            Some(Ok(value)) => Overrides::parse(&value),
            Some(Err(_)) => Err(Error::Resolve("not valid UTF-8".into())),
        }
    }

    /// Parses comma-separated `host:port:address` entries.
    pub(crate) fn parse(value: &str) -> Result<Overrides, Error> {
        let mut entries = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad =
                |why: &str| Error::Resolve(format!("entry {}: {why}", icp_core::quote(entry)));
            let mut parts = entry.splitn(3, ':');
            let host = parts
                .next()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad("no host"))?;
            let port = parts
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| bad("no valid port"))?;
            let address = parts.next().ok_or_else(|| bad("no address"))?;
            let address = match address.parse::<SocketAddr>() {
                Ok(address) => address,
                Err(_) => {
                    let ip = address
                        .strip_prefix('[')
                        .and_then(|a| a.strip_suffix(']'))
                        .unwrap_or(address);
                    let ip = ip
                        .parse::<IpAddr>()
                        .map_err(|_| bad("address is not an IP address with an optional port"))?;
                    SocketAddr::new(ip, port)
                }
            };
            entries.push((host.to_ascii_lowercase(), port, address));
        }
        Ok(Overrides {
            entries,
            routes: Vec::new(),
        })
    }

    /// Adds an override.
    pub(crate) fn add(&mut self, host: &str, port: u16, address: SocketAddr) {
        self.entries
            .push((host.to_ascii_lowercase(), port, address));
    }

    /// Adds a route: connections to `host:port` go to `to:port`.
    pub(crate) fn add_route(&mut self, host: &str, port: u16, to: &str) {
        self.routes
            .push((host.to_ascii_lowercase(), port, to.to_owned()));
    }

    /// The host (a name or an IP address) a connection to `host:port` goes to instead,
    /// if a route says so.
    pub(crate) fn route(&self, host: &str, port: u16) -> Option<&str> {
        self.routes
            .iter()
            .find(|(h, p, _)| *p == port && h.eq_ignore_ascii_case(host))
            .map(|(_, _, to)| to.as_str())
    }

    /// The address a connection to `host:port` goes to instead, if any.
    pub(crate) fn lookup(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.entries
            .iter()
            .find(|(h, p, _)| *p == port && h.eq_ignore_ascii_case(host))
            .map(|(_, _, a)| *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_curl_style_entries() {
        let overrides =
            Overrides::parse("myacr.azurecr.io:443:127.0.0.1:8443, Login.Example:443:127.0.0.2,v6.example:80:[::1]:81")
                .unwrap();
        assert_eq!(
            overrides.lookup("myacr.azurecr.io", 443),
            Some("127.0.0.1:8443".parse().unwrap())
        );
        assert_eq!(
            overrides.lookup("MYACR.azurecr.io", 443),
            Some("127.0.0.1:8443".parse().unwrap())
        );
        assert_eq!(overrides.lookup("myacr.azurecr.io", 80), None);
        assert_eq!(
            overrides.lookup("login.example", 443),
            Some("127.0.0.2:443".parse().unwrap())
        );
        assert_eq!(
            overrides.lookup("v6.example", 80),
            Some("[::1]:81".parse().unwrap())
        );
        assert_eq!(overrides.lookup("other.example", 443), None);
        assert!(Overrides::parse("").unwrap().entries.is_empty());
    }

    #[test]
    fn routes_name_another_host_on_the_same_port() {
        let mut overrides = Overrides::parse("api.example:443:127.0.0.3").unwrap();
        overrides.add_route("IB.example", 443, "api.example");
        assert_eq!(overrides.route("ib.example", 443), Some("api.example"));
        assert_eq!(overrides.route("ib.example", 80), None);
        assert_eq!(overrides.route("api.example", 443), None);
        assert_eq!(overrides.lookup("ib.example", 443), None);
    }

    #[test]
    fn refuses_malformed_entries() {
        for bad in [
            "host",
            "host:443",
            "host:x:127.0.0.1",
            ":443:127.0.0.1",
            "host:443:nowhere",
            "host:443:127.0.0.1:x",
        ] {
            let error = Overrides::parse(bad).unwrap_err();
            assert!(error.to_string().contains(RESOLVE_ENV), "{error}");
        }
    }
}
