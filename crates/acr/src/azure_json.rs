//! The node's files: `azure.json`, as the official `acr-credential-provider` reads it, and
//! a custom cloud's environment file (`AZURE_ENVIRONMENT_FILEPATH`). Both are read as Go's
//! `encoding/json` fills a struct, which is how the official provider reads them: a key
//! matches a field whatever its case, a later key overwrites an earlier one, and `null`
//! leaves a field as it was.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::Error;

/// The node file `azure.json`, as far as ACR credentials go. Unknown fields are ignored:
/// the file configures the whole cloud provider.
#[derive(Debug, Default)]
pub struct AzureJson {
    pub cloud: String,
    pub tenant_id: String,
    pub aad_client_id: String,
    pub aad_client_secret: String,
    pub aad_client_cert_path: String,
    pub use_managed_identity_extension: bool,
    pub user_assigned_identity_id: String,
    pub use_federated_workload_identity_extension: bool,
    pub aad_federated_token_file: String,
}

impl AzureJson {
    fn from_members(members: &Members) -> Result<AzureJson, String> {
        Ok(AzureJson {
            cloud: members.string("cloud")?,
            tenant_id: members.string("tenantId")?,
            aad_client_id: members.string("aadClientId")?,
            aad_client_secret: members.string("aadClientSecret")?,
            aad_client_cert_path: members.string("aadClientCertPath")?,
            use_managed_identity_extension: members.boolean("useManagedIdentityExtension")?,
            user_assigned_identity_id: members.string("userAssignedIdentityID")?,
            use_federated_workload_identity_extension: members
                .boolean("useFederatedWorkloadIdentityExtension")?,
            aad_federated_token_file: members.string("aadFederatedTokenFile")?,
        })
    }
}

/// The custom cloud's environment file (`AZURE_ENVIRONMENT_FILEPATH`), as go-autorest
/// writes it.
#[derive(Debug)]
pub struct EnvironmentFile {
    pub active_directory_endpoint: String,
    pub container_registry_dns_suffix: String,
}

/// Largest file of settings or secrets read (`azure.json`, the cloud's environment file,
/// a token or secret file).
const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// The text of the regular file at `path`, at most [`MAX_FILE_SIZE`] bytes (see
/// [`icp_core::io::read_file`]).
pub(crate) fn read_text(path: &Path) -> std::io::Result<String> {
    let bytes = icp_core::io::read_file(path, MAX_FILE_SIZE)?;
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

/// Reads `azure.json` at `path`; a problem names the file, and a field, never a value in it.
pub fn read_azure_json(path: &Path) -> Result<AzureJson, Error> {
    let bad = |reason: String| Error::AzureConfig {
        path: icp_core::quote::path(path),
        reason,
    };
    let text = read_text(path).map_err(|e| bad(e.to_string()))?;
    let text = text.trim_start_matches('\u{feff}');
    Members::parse(text)
        .and_then(|members| AzureJson::from_members(&members))
        .map_err(|reason| bad(format!("not valid azure.json: {reason}")))
}

/// Reads the custom cloud's environment file at `path`.
pub fn read_environment_file(path: &str) -> Result<EnvironmentFile, Error> {
    let bad = |reason: String| Error::AzureConfig {
        path: path.to_owned(),
        reason,
    };
    let text = read_text(Path::new(path)).map_err(|e| bad(e.to_string()))?;
    let read = |members: Members| -> Result<EnvironmentFile, String> {
        Ok(EnvironmentFile {
            active_directory_endpoint: members.string("activeDirectoryEndpoint")?,
            container_registry_dns_suffix: members.string("containerRegistryDNSSuffix")?,
        })
    };
    Members::parse(&text)
        .and_then(read)
        .map_err(|reason| bad(format!("not a cloud environment file: {reason}")))
}

/// The members of a JSON object in document order, a repeated key kept each time.
struct Members(Vec<(String, Value)>);

impl Members {
    /// Parses `text` as one JSON object. The reason a text is not one names a line and a
    /// column, never a value found there.
    fn parse(text: &str) -> Result<Members, String> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return Err("not a JSON object".to_owned()),
            Err(e) => return Err(e.to_string()),
        }
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The values of the members Go's `encoding/json` stores in the field `name`, in
    /// document order: those whose key is `name` in any case, as Go folds it, but `null`.
    fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Value> {
        let folded = fold(name);
        self.0
            .iter()
            .filter(move |(key, _)| fold(key) == folded)
            .map(|(_, value)| value)
            .filter(|value| !value.is_null())
    }

    /// The string field `name`: the last value stored in it, or empty; any value that is
    /// not a string is an error, as it is in Go.
    fn string(&self, name: &str) -> Result<String, String> {
        let mut field = String::new();
        for value in self.values(name) {
            let Value::String(text) = value else {
                return Err(format!("{name} is not a string"));
            };
            field.clone_from(text);
        }
        Ok(field)
    }

    /// The boolean field `name`: the last value stored in it, or `false`.
    fn boolean(&self, name: &str) -> Result<bool, String> {
        let mut field = false;
        for value in self.values(name) {
            field = value
                .as_bool()
                .ok_or_else(|| format!("{name} is not true or false"))?;
        }
        Ok(field)
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Members;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Value>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// `key` as Go's `encoding/json` folds a key to match it to a field name whatever its case
/// (`foldName`: each character to the upper case of its lower case): ASCII letters to upper
/// case, and the only other characters that fold to an ASCII letter, `ſ` to `S`, `ı` and
/// `İ` to `I` and the Kelvin sign to `K`. Every other character is kept: it folds to no
/// ASCII letter, and the field names are ASCII.
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17f}' => 'S',
            '\u{131}' | '\u{130}' => 'I',
            '\u{212a}' => 'K',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::cloud::Cloud;
    use crate::cloud_choice::CloudChoice;
    use crate::identity::{ClientSecret, Identity, ManagedId};
    use crate::settings::testing::{no_env, resolve_yaml, write_azure_json};
    use icp_core::Secret;

    use super::{Members, fold};

    #[test]
    fn keys_match_fields_whatever_their_case_as_in_go() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |body: &str| resolve_yaml(&write_azure_json(dir.path(), body), &no_env());
        let settings = resolve(
            r#"{"tenantID": "t", "UseManagedIdentityExtension": true, "USERASSIGNEDIDENTITYID": "11111111-2222-3333-4444-555555555555"}"#,
        )
        .unwrap();
        assert_eq!(
            settings.identity,
            Identity::Managed {
                id: ManagedId::ClientId("11111111-2222-3333-4444-555555555555".into()),
                tenant_id: Some("t".into())
            }
        );
        let settings = resolve(
            r#"{"Cloud": "AzureChinaCloud", "TenantId": "t", "AADClientID": "app", "AadClientSecret": "s3cret"}"#,
        )
        .unwrap();
        assert_eq!(settings.cloud, CloudChoice::Fixed(Cloud::china()));
        assert_eq!(
            settings.identity,
            Identity::ServicePrincipal {
                client_id: "app".into(),
                tenant_id: "t".into(),
                secret: ClientSecret::Inline(Secret::new("s3cret")),
            }
        );
    }

    #[test]
    fn a_later_key_overwrites_an_earlier_one_and_null_changes_nothing() {
        let read = |body: &str| {
            let members = Members::parse(body).unwrap();
            (
                members.string("tenantId"),
                members.boolean("useManagedIdentityExtension"),
            )
        };
        // Go stores each key's value in the field it matches, exact case or not, in
        // document order: the last one stays.
        assert_eq!(
            read(r#"{"tenantId": "exact", "TENANTID": "folded"}"#)
                .0
                .unwrap(),
            "folded"
        );
        assert_eq!(
            read(r#"{"TENANTID": "folded", "tenantId": "exact"}"#)
                .0
                .unwrap(),
            "exact"
        );
        assert_eq!(
            read(r#"{"tenantid": "a", "TenantID": "b"}"#).0.unwrap(),
            "b"
        );
        assert_eq!(
            read(r#"{"tenantId": "a", "tenantID": null}"#).0.unwrap(),
            "a"
        );
        let (tenant, managed) = read(r#"{"tenantId": null, "useManagedIdentityExtension": null}"#);
        assert_eq!((tenant.unwrap(), managed.unwrap()), (String::new(), false));
        assert!(
            read(r#"{"useManagedIdentityExtension": false, "usemanagedidentityextension": true}"#)
                .1
                .unwrap()
        );
        // Go's folding: the long s, the dotted and dotless i and the Kelvin sign fold to
        // ASCII letters; nothing else does.
        assert_eq!(
            fold("uſeManagedıdentityExtenſion"),
            fold("useManagedIdentityExtension")
        );
        assert_eq!(fold("\u{212a}\u{130}"), "KI");
        assert_ne!(fold("tenantÍd"), fold("tenantId"));
        // A value of the wrong type is an error even when a later key would overwrite it,
        // and names the field, not the value.
        let error = read(r#"{"TenantId": 5, "tenantId": "t"}"#).0.unwrap_err();
        assert_eq!(error, "tenantId is not a string");
        let error = read(r#"{"useManagedIdentityExtension": "s3cret"}"#)
            .1
            .unwrap_err();
        assert!(!error.contains("s3cret"), "{error}");
        assert!(
            Members::parse(r#"["s3cret"]"#)
                .err()
                .unwrap()
                .contains("not a JSON object")
        );
        assert!(
            !Members::parse(r#""s3cret""#)
                .err()
                .unwrap()
                .contains("s3cret")
        );
    }

    #[test]
    fn azure_json_as_the_official_provider_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, Identity)] = &[
            (
                r#"{"cloud": "AzurePublicCloud", "tenantId": "t", "useManagedIdentityExtension": true, "userAssignedIdentityID": "", "subscriptionId": "s", "vmType": "vmss"}"#,
                Identity::Managed { id: ManagedId::System, tenant_id: Some("t".into()) },
            ),
            (
                r#"{"useManagedIdentityExtension": true, "userAssignedIdentityID": "11111111-2222-3333-4444-555555555555"}"#,
                Identity::Managed { id: ManagedId::ClientId("11111111-2222-3333-4444-555555555555".into()), tenant_id: None },
            ),
            (
                r#"{"useManagedIdentityExtension": true, "userAssignedIdentityID": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kubelet"}"#,
                Identity::Managed {
                    id: ManagedId::ResourceId(
                        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kubelet".into(),
                    ),
                    tenant_id: None,
                },
            ),
            (
                r#"{"tenantId": "t", "aadClientId": "app", "aadClientSecret": "s3cret", "useManagedIdentityExtension": false}"#,
                Identity::ServicePrincipal {
                    client_id: "app".into(),
                    tenant_id: "t".into(),
                    secret: ClientSecret::Inline(Secret::new("s3cret")),
                },
            ),
            (
                r#"{"tenantId": "t", "aadClientId": "app", "useFederatedWorkloadIdentityExtension": true, "aadFederatedTokenFile": "/tok"}"#,
                Identity::Workload { client_id: "app".into(), tenant_id: "t".into(), token_file: "/tok".into() },
            ),
        ];
        for (body, expected) in cases {
            let settings = resolve_yaml(&write_azure_json(dir.path(), body), &no_env()).unwrap();
            assert_eq!(&settings.identity, expected, "{body}");
            assert_eq!(settings.cloud, CloudChoice::Fixed(Cloud::public()));
        }
        let settings = resolve_yaml(
            &write_azure_json(
                dir.path(),
                r#"{"cloud": "AzureChinaCloud", "useManagedIdentityExtension": true}"#,
            ),
            &no_env(),
        )
        .unwrap();
        assert_eq!(settings.cloud, CloudChoice::Fixed(Cloud::china()));
        assert_eq!(settings.cloud.cloud_of("myacr.azurecr.io"), None);
        for (body, message) in [
            (r#"{"aadClientId": "app"}"#, "names no identity"),
            (r#"{"aadClientCertPath": "/c.pfx"}"#, "not supported"),
            (
                r#"{"cloud": "Mars", "useManagedIdentityExtension": true}"#,
                "unknown cloud",
            ),
            ("not json", "not valid azure.json"),
            (
                r#"{"useManagedIdentityExtension": "yes", "aadClientSecret": "s3cret"}"#,
                "not valid azure.json",
            ),
        ] {
            let error = resolve_yaml(&write_azure_json(dir.path(), body), &no_env()).unwrap_err();
            assert!(error.to_string().contains(message), "{body}: {error}");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
        let error =
            resolve_yaml(r#"{"azureConfig": "/nonexistent/azure.json"}"#, &no_env()).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/azure.json"),
            "{error}"
        );
    }
}
