//! The kubelet's exec plugin protocol: `CredentialProviderRequest` in on stdin,
//! `CredentialProviderResponse` out on stdout, in any of the three API versions.
//!
//! The three versions have the same shape (v1 adds the service account fields, which the
//! kubelet only sends in v1), so one set of types serves them all and the version is
//! carried along to answer in kind. Requests are read through `serde_json::Value` and
//! checked field by field, so that an error can say which field is wrong without ever
//! echoing a token that sits in the request.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use anyhow::{Context, bail};
use icp_core::{AuthEntry, CacheKeyType, Secret, ServiceAccount, quote};
use serde::ser::{SerializeMap, SerializeStruct};
use serde_json::Value;

use crate::duration;

/// The API group of the protocol.
pub const GROUP: &str = "credentialprovider.kubelet.k8s.io";
/// Largest request read from stdin.
pub const MAX_REQUEST_SIZE: u64 = 1024 * 1024;

/// One of the protocol's API versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `credentialprovider.kubelet.k8s.io/v1alpha1`
    V1Alpha1,
    /// `credentialprovider.kubelet.k8s.io/v1beta1`
    V1Beta1,
    /// `credentialprovider.kubelet.k8s.io/v1`
    V1,
}

impl ApiVersion {
    /// Every version, newest first.
    pub const ALL: [ApiVersion; 3] = [ApiVersion::V1, ApiVersion::V1Beta1, ApiVersion::V1Alpha1];

    /// The full `apiVersion` string.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1Alpha1 => "credentialprovider.kubelet.k8s.io/v1alpha1",
            ApiVersion::V1Beta1 => "credentialprovider.kubelet.k8s.io/v1beta1",
            ApiVersion::V1 => "credentialprovider.kubelet.k8s.io/v1",
        }
    }

    /// The version part alone: `v1`, `v1beta1` or `v1alpha1`.
    pub fn short(self) -> &'static str {
        &self.as_str()[GROUP.len() + 1..]
    }

    /// Parses a full `apiVersion` string.
    pub fn from_api_version(text: &str) -> Option<ApiVersion> {
        ApiVersion::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// Parses the version part alone (`v1`), as the CLI takes it.
    pub fn from_short(text: &str) -> Option<ApiVersion> {
        ApiVersion::ALL.into_iter().find(|v| v.short() == text)
    }
}

/// A `CredentialProviderRequest`.
#[derive(Debug)]
pub struct PluginRequest {
    /// The version to answer in.
    pub api_version: ApiVersion,
    /// The image, as the kubelet sends it: `registry.example/team/app`, no tag or digest.
    pub image: String,
    /// The pod's service account, read from the token the kubelet sends in
    /// service-account-token mode (v1 only), with the annotations it passes on.
    pub service_account: Option<ServiceAccount>,
}

/// Reads one request from `input`, refusing more than [`MAX_REQUEST_SIZE`] bytes.
pub fn read_request(input: impl Read) -> anyhow::Result<PluginRequest> {
    let bytes = icp_core::io::read_capped(input, MAX_REQUEST_SIZE).map_err(|e| match e.kind() {
        std::io::ErrorKind::FileTooLarge => anyhow::anyhow!("request on stdin is {e}"),
        _ => anyhow::Error::new(e).context("reading the request from stdin"),
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        bail!("request on stdin is empty: expected a CredentialProviderRequest as JSON");
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "request on stdin is not valid JSON: {} at line {} column {}",
            json_reason(&e),
            e.line(),
            e.column()
        )
    })?;
    parse_request(&value)
}

/// serde_json's message for syntax errors says what was expected; other categories can
/// quote content, which may be a token, so they get a generic reason.
fn json_reason(error: &serde_json::Error) -> String {
    match error.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => error
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_owned(),
        _ => "not a JSON document".to_owned(),
    }
}

fn parse_request(value: &Value) -> anyhow::Result<PluginRequest> {
    let Value::Object(fields) = value else {
        bail!("request on stdin is not a JSON object")
    };
    let string = |name: &str| -> anyhow::Result<Option<&str>> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => bail!("request field {name} must be a string"),
        }
    };
    match string("kind")? {
        Some("CredentialProviderRequest") => {}
        Some(kind) => bail!(
            "request kind is {}, expected \"CredentialProviderRequest\"",
            quote(kind)
        ),
        None => bail!("request has no kind: expected \"CredentialProviderRequest\""),
    }
    let api_version = match string("apiVersion")? {
        Some(text) => ApiVersion::from_api_version(text).with_context(|| {
            format!(
                "request apiVersion {} is not supported: expected {GROUP}/v1, v1beta1 or v1alpha1",
                quote(text)
            )
        })?,
        None => bail!("request has no apiVersion: expected {GROUP}/v1, v1beta1 or v1alpha1"),
    };
    let image = match string("image")? {
        Some("") => bail!("request image is empty"),
        Some(image) => image.to_owned(),
        None => bail!("request has no image"),
    };
    let service_account_token = string("serviceAccountToken")?
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let service_account_annotations = match fields.get("serviceAccountAnnotations") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(v) => Ok((k.clone(), v.clone())),
                _ => bail!(
                    "request serviceAccountAnnotations[{}] must be a string",
                    quote(k)
                ),
            })
            .collect::<anyhow::Result<_>>()?,
        Some(_) => bail!("request field serviceAccountAnnotations must be an object of strings"),
    };
    let service_account = service_account_token
        .map(|token| ServiceAccount::from_token(token, service_account_annotations))
        .transpose()
        .context("request serviceAccountToken is not a Kubernetes service account token")?;
    Ok(PluginRequest {
        api_version,
        image,
        service_account,
    })
}

/// A `CredentialProviderResponse`.
#[derive(Debug)]
pub struct PluginResponse {
    /// The request's version.
    pub api_version: ApiVersion,
    /// What the kubelet keys its cache of this response on.
    pub cache_key_type: CacheKeyType,
    /// How long the kubelet may cache it; zero means not at all.
    pub cache_duration: Duration,
    /// Credentials by pattern, in the order the kubelet should try them.
    pub auth: Vec<AuthEntry>,
}

impl PluginResponse {
    /// The answer when no rule applies: no credentials, and nothing to cache.
    pub fn empty(api_version: ApiVersion) -> PluginResponse {
        PluginResponse {
            api_version,
            cache_key_type: CacheKeyType::Image,
            cache_duration: Duration::ZERO,
            auth: Vec::new(),
        }
    }

    /// The response as one line of JSON, newline included.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string(self).expect("a response always serialises");
        json.push('\n');
        json
    }
}

impl serde::Serialize for PluginResponse {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut response = serializer.serialize_struct("CredentialProviderResponse", 5)?;
        response.serialize_field("apiVersion", self.api_version.as_str())?;
        response.serialize_field("kind", "CredentialProviderResponse")?;
        response.serialize_field("cacheKeyType", self.cache_key_type.as_str())?;
        response.serialize_field("cacheDuration", &duration::format(self.cache_duration))?;
        response.serialize_field("auth", &AuthMap(&self.auth))?;
        response.end()
    }
}

/// The `auth` map, in the entries' order; a pattern that repeats keeps its first entry.
struct AuthMap<'a>(&'a [AuthEntry]);

impl serde::Serialize for AuthMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let mut seen = std::collections::HashSet::new();
        for entry in self.0.iter().filter(|e| seen.insert(e.pattern.as_str())) {
            map.serialize_entry(&entry.pattern, &AuthConfig(entry))?;
        }
        map.end()
    }
}

struct AuthConfig<'a>(&'a AuthEntry);

impl serde::Serialize for AuthConfig<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut config = serializer.serialize_struct("AuthConfig", 2)?;
        config.serialize_field("username", &self.0.username)?;
        config.serialize_field("password", self.0.password.expose())?;
        config.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> anyhow::Result<PluginRequest> {
        read_request(text.as_bytes())
    }

    #[test]
    fn reads_every_version_the_kubelet_writes() {
        for version in ApiVersion::ALL {
            let text = format!(
                "{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"{}\",\"image\":\"test.registry.io/foobar\"}}\n",
                version.as_str()
            );
            let request = read(&text).unwrap();
            assert_eq!(
                (request.api_version, request.image.as_str()),
                (version, "test.registry.io/foobar")
            );
        }
    }

    /// A projected token's shape: header, claims naming team-a/app, signature.
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.\
        eyJrdWJlcm5ldGVzLmlvIjp7Im5hbWVzcGFjZSI6InRlYW0tYSIsInNlcnZpY2VhY2NvdW50Ijp7Im5hbWUiOiJhcHAiLCJ1aWQiOiJ1MSJ9fX0.\
        c2ln";

    #[test]
    fn keeps_service_account_fields_and_ignores_unknown_ones() {
        let request = read(&format!(
            r#"{{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1",
                "image":"a.io/b","serviceAccountToken":"{TOKEN}","serviceAccountAnnotations":{{"x":"y"}},"future":1}}"#,
        ))
        .unwrap();
        let account = request.service_account.unwrap();
        assert_eq!(account.token.expose(), TOKEN);
        assert_eq!(
            (account.to_string(), account.uid.as_str()),
            ("team-a/app".to_owned(), "u1")
        );
        assert_eq!(account.annotations["x"], "y");
    }

    #[test]
    fn refuses_bad_requests_without_echoing_tokens() {
        let v1 = "credentialprovider.kubelet.k8s.io/v1";
        let cases = [
            (String::new(), "empty"),
            ("not json".to_owned(), "not valid JSON"),
            ("[]".to_owned(), "not a JSON object"),
            (format!(r#"{{"apiVersion":"{v1}","image":"a.io/b"}}"#), "no kind"),
            (format!(r#"{{"kind":"CredentialProviderResponse","apiVersion":"{v1}","image":"a.io/b"}}"#), "kind is"),
            (r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v2","image":"a"}"#.to_owned(), "not supported"),
            (format!(r#"{{"kind":"CredentialProviderRequest","apiVersion":"{v1}"}}"#), "no image"),
            (format!(r#"{{"kind":"CredentialProviderRequest","apiVersion":"{v1}","image":""}}"#), "image is empty"),
            (format!(r#"{{"kind":"CredentialProviderRequest","apiVersion":"{v1}","image":["tok3n"]}}"#), "must be a string"),
            (
                format!(r#"{{"kind":"CredentialProviderRequest","apiVersion":"{v1}","image":"a.io/b","serviceAccountToken":{{"t":"tok3n"}}}}"#),
                "serviceAccountToken must be a string",
            ),
            (
                format!(r#"{{"kind":"CredentialProviderRequest","apiVersion":"{v1}","image":"a.io/b","serviceAccountToken":"tok3n"}}"#),
                "serviceAccountToken is not a Kubernetes service account token: the service account token is not a JWT",
            ),
        ];
        for (text, expected) in cases {
            let message = format!("{:#}", read(&text).unwrap_err());
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(!message.contains("tok3n"), "{message:?} leaks the token");
        }
        let huge = format!(
            "{{\"image\":\"{}\"}}",
            "a".repeat(MAX_REQUEST_SIZE as usize)
        );
        assert!(format!("{:#}", read(&huge).unwrap_err()).contains("larger than"));
    }

    #[test]
    fn writes_responses_in_the_request_version() {
        let response = PluginResponse {
            api_version: ApiVersion::V1Beta1,
            cache_key_type: CacheKeyType::Registry,
            cache_duration: Duration::from_secs(90),
            auth: vec![
                AuthEntry {
                    pattern: "r.io/team".into(),
                    username: "u".into(),
                    password: Secret::new("p"),
                },
                AuthEntry {
                    pattern: "r.io".into(),
                    username: "u2".into(),
                    password: Secret::new("p2"),
                },
                AuthEntry {
                    pattern: "r.io".into(),
                    username: "dup".into(),
                    password: Secret::new("dup"),
                },
            ],
        };
        assert_eq!(
            response.to_json(),
            "{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1beta1\",\"kind\":\"CredentialProviderResponse\",\
             \"cacheKeyType\":\"Registry\",\"cacheDuration\":\"1m30s\",\
             \"auth\":{\"r.io/team\":{\"username\":\"u\",\"password\":\"p\"},\"r.io\":{\"username\":\"u2\",\"password\":\"p2\"}}}\n"
        );
    }
}
