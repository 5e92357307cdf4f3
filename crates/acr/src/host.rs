//! Strict recognition of ACR login servers.
//!
//! A login server is `<label>.<suffix>`, where the suffix is a cloud's registry suffix
//! (`azurecr.io`, `azurecr.cn`, `azurecr.us`, or a custom cloud's), and the label is one
//! of
//!
//! - `<name>`: a registry name, 5 to 50 lowercase letters and digits;
//! - `<name>-<hash>`: a registry created with a domain name label scope, the hash being
//!   lowercase letters and digits;
//! - `<name>.<region>.geo`: a geo-replica's regional endpoint.
//!
//! Anything else (a port, uppercase, another label count, a look-alike such as
//! `myacr.azurecr.io.evil.example` or `evilazurecr.io`) is not a login server.

use icp_core::names::is_dns1123_label;

/// The kubelet-glob patterns of the embedded default rule: login servers and geo-replica
/// endpoints in the public, China and US Government clouds.
pub const DEFAULT_PATTERNS: &[&str] = &[
    "*.azurecr.io",
    "*.*.geo.azurecr.io",
    "*.azurecr.cn",
    "*.*.geo.azurecr.cn",
    "*.azurecr.us",
    "*.*.geo.azurecr.us",
];

/// The kubelet-glob patterns of a cloud's login servers, for a custom registry suffix.
pub fn patterns_for_suffix(suffix: &str) -> Vec<String> {
    vec![format!("*.{suffix}"), format!("*.*.geo.{suffix}")]
}

/// Whether `host` is a login server under `suffix`.
pub fn is_login_server(host: &str, suffix: &str) -> bool {
    let Some(prefix) = host.strip_suffix(suffix).and_then(|p| p.strip_suffix('.')) else {
        return false;
    };
    let labels: Vec<&str> = prefix.split('.').collect();
    match labels.as_slice() {
        [label] => match label.split_once('-') {
            None => is_registry_name(label),
            Some((name, hash)) => {
                is_registry_name(name) && is_lower_alnum(hash, 1, 63 - name.len() - 1)
            }
        },
        [name, region, "geo"] => is_registry_name(name) && is_lower_alnum(region, 2, 40),
        _ => false,
    }
}

/// Whether `suffix` is a plausible registry DNS suffix: at least two lowercase DNS labels.
pub fn is_valid_suffix(suffix: &str) -> bool {
    let labels: Vec<&str> = suffix.split('.').collect();
    labels.len() >= 2 && labels.iter().all(|label| is_dns1123_label(label))
}

fn is_registry_name(name: &str) -> bool {
    is_lower_alnum(name, 5, 50)
}

fn is_lower_alnum(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_login_servers() {
        for (host, suffix) in [
            ("myacr.azurecr.io", "azurecr.io"),
            ("my0acr1.azurecr.cn", "azurecr.cn"),
            ("myacr.azurecr.us", "azurecr.us"),
            ("myacr.eastus.geo.azurecr.io", "azurecr.io"),
            ("myacr-abcdef0123456789.azurecr.io", "azurecr.io"),
            ("a2345.azurecr.io", "azurecr.io"),
            (&format!("{}.azurecr.io", "a".repeat(50)), "azurecr.io"),
            ("myacr.azurecr.contoso.example", "azurecr.contoso.example"),
        ] {
            assert!(is_login_server(host, suffix), "{host}");
        }
    }

    #[test]
    fn refuses_look_alikes() {
        for host in [
            "azurecr.io",
            ".azurecr.io",
            "evilazurecr.io",
            "myacr.azurecr.io.evil.example",
            "myacr.azurecr.iox",
            "myacr.azurecr.cn",
            "MyAcr.azurecr.io",
            "abcd.azurecr.io",
            &format!("{}.azurecr.io", "a".repeat(51)),
            "my_acr.azurecr.io",
            "my.acr.azurecr.io",
            "a.b.c.azurecr.io",
            "myacr.eastus.data.azurecr.io",
            "myacr.e.geo.azurecr.io",
            "myacr.east-us.geo.azurecr.io",
            "myacr-.azurecr.io",
            "myacr-a-b.azurecr.io",
            "-myacr.azurecr.io",
            "myacr..azurecr.io",
            "myacr.azurecr.io.",
            "myacr.azurecr.io:443",
            "xn--myacr-.azurecr.io",
            "myacr\u{0}.azurecr.io",
            "myäcr.azurecr.io",
        ] {
            assert!(!is_login_server(host, "azurecr.io"), "{host:?}");
        }
    }

    #[test]
    fn azure_germany_is_not_served_and_the_rules_reference_says_so() {
        use crate::cloud::Cloud;
        for host in ["myacr.azurecr.de", "myacr.germanycentral.geo.azurecr.de"] {
            for cloud in Cloud::all_known() {
                assert!(!is_login_server(host, &cloud.registry_suffix), "{host}");
            }
        }
        assert!(!DEFAULT_PATTERNS.iter().any(|p| p.ends_with(".de")));
        let reference =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/rules.md"))
                .unwrap();
        let hosts = reference
            .split("### acr backend")
            .nth(1)
            .and_then(|rest| rest.split("- **Hosts.**").nth(1))
            .and_then(|rest| rest.split("\n- ").next())
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let not_served = hosts.split("Not served").nth(1).unwrap();
        assert!(not_served.contains("`*.azurecr.de`"), "{hosts}");
        // The official provider's tests serve `.azurecr.io` images with a custom cloud
        // configured: the note must not say otherwise.
        assert!(!hosts.contains("as with the official provider"), "{hosts}");
        assert!(
            hosts.contains(
                "its tests serve `foo.azurecr.io` with a custom cloud's suffix configured"
            ),
            "{hosts}"
        );
    }

    #[test]
    fn default_patterns_cover_every_form() {
        let samples = [
            "myacr.azurecr.io",
            "myacr-abc123.azurecr.io",
            "myacr.westeurope.geo.azurecr.io",
            "myacr.azurecr.cn",
            "myacr.azurecr.us",
        ];
        for sample in samples {
            let matched = DEFAULT_PATTERNS.iter().any(|p| {
                icp_core::Pattern::parse(p)
                    .unwrap()
                    .matches(&format!("{sample}/app"))
            });
            assert!(matched, "{sample}");
        }
        assert!(is_valid_suffix("azurecr.contoso.example"));
        for bad in [
            "azurecr",
            "",
            "Azurecr.io",
            "azurecr..io",
            "-a.io",
            "a.io/x",
        ] {
            assert!(!is_valid_suffix(bad), "{bad}");
        }
    }
}
