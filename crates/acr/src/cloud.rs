//! The Azure clouds: where each one's Azure AD is, and its registries' DNS suffix.

use icp_core::quote;

/// The audience of the Azure AD token the registry exchanges, in every known cloud.
pub const REGISTRY_AUDIENCE: &str = "https://containerregistry.azure.net";

/// One Azure cloud, as far as ACR credentials go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    /// The cloud's name, as in `azure.json` (`AzurePublicCloud`, ...), or `custom`.
    pub name: String,
    /// The Azure AD authority, an `https://` URL ending in `/`.
    pub authority_host: String,
    /// The DNS suffix of its registries' login servers, as in `azurecr.io`.
    pub registry_suffix: String,
    /// The audience of the Azure AD token the registry accepts, without `/.default`.
    pub registry_audience: String,
}

impl Cloud {
    fn known(name: &str, authority_host: &str, registry_suffix: &str) -> Cloud {
        Cloud {
            name: name.to_owned(),
            authority_host: authority_host.to_owned(),
            registry_suffix: registry_suffix.to_owned(),
            registry_audience: REGISTRY_AUDIENCE.to_owned(),
        }
    }

    /// Azure's public cloud.
    pub fn public() -> Cloud {
        Cloud::known(
            "AzurePublicCloud",
            "https://login.microsoftonline.com/",
            "azurecr.io",
        )
    }

    /// Azure operated by 21Vianet in China.
    pub fn china() -> Cloud {
        Cloud::known(
            "AzureChinaCloud",
            "https://login.chinacloudapi.cn/",
            "azurecr.cn",
        )
    }

    /// Azure Government (US).
    pub fn us_government() -> Cloud {
        Cloud::known(
            "AzureUSGovernmentCloud",
            "https://login.microsoftonline.us/",
            "azurecr.us",
        )
    }

    /// Every cloud with a well-known name.
    pub fn all_known() -> [Cloud; 3] {
        [Cloud::public(), Cloud::china(), Cloud::us_government()]
    }

    /// The known cloud called `name`, case-insensitively, under the names `azure.json`
    /// and the Azure CLI use. `None` for an unknown name or for `AzureStackCloud`, whose
    /// endpoints come from elsewhere.
    pub fn by_name(name: &str) -> Option<Cloud> {
        match name.to_ascii_lowercase().as_str() {
            "azurepubliccloud" | "azurecloud" | "public" => Some(Cloud::public()),
            "azurechinacloud" | "china" => Some(Cloud::china()),
            "azureusgovernmentcloud" | "azureusgovernment" | "usgovernment" => {
                Some(Cloud::us_government())
            }
            _ => None,
        }
    }

    /// The Azure AD scope for the registry audience: `<audience>/.default`.
    pub fn registry_scope(&self) -> String {
        format!("{}/.default", self.registry_audience.trim_end_matches('/'))
    }
}

/// Checks and normalises an authority host: an `https://` URL with a host and nothing
/// after it but a path, returned with one trailing `/`.
pub fn normalise_authority(url: &str) -> Result<String, String> {
    let rest = url
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .map(|_| &url[8..])
        .ok_or_else(|| format!("authority host {} is not an https:// URL", quote(url)))?;
    let host = rest.split('/').next().unwrap_or_default();
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        && !rest.contains(['?', '#', '@', ' ']);
    if !host_ok {
        return Err(format!(
            "authority host {} is not a plain https:// URL",
            quote(url)
        ));
    }
    Ok(format!("https://{}/", rest.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_clouds_by_name() {
        assert_eq!(Cloud::by_name("AzurePublicCloud"), Some(Cloud::public()));
        assert_eq!(
            Cloud::by_name("AZURECHINACLOUD").unwrap().registry_suffix,
            "azurecr.cn"
        );
        assert_eq!(
            Cloud::by_name("AzureUSGovernmentCloud")
                .unwrap()
                .authority_host,
            "https://login.microsoftonline.us/"
        );
        assert_eq!(Cloud::by_name("AzureStackCloud"), None);
        assert_eq!(
            Cloud::public().registry_scope(),
            "https://containerregistry.azure.net/.default"
        );
    }

    #[test]
    fn authority_hosts_must_be_plain_https() {
        assert_eq!(
            normalise_authority("https://login.example").unwrap(),
            "https://login.example/"
        );
        assert_eq!(
            normalise_authority("HTTPS://login.example/adfs//").unwrap(),
            "https://login.example/adfs/"
        );
        for bad in [
            "http://login.example/",
            "login.example",
            "https://",
            "https://a@b/",
            "https://a/?x",
            "ftp://a/",
        ] {
            assert!(normalise_authority(bad).is_err(), "{bad}");
        }
    }
}
