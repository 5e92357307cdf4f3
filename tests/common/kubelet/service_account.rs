//! The kubelet in service-account-token mode (KEP-4412, as its v1.36 code behaves), as a
//! model: which pulls run the plugin (the decision of `explain`'s production model), what
//! the kubelet sends it, what it caches and under which key, and which answers it refuses. `tests/conformance.rs` checks the model against
//! `service_account_cases.json`, observed with the kubelet's own code, and the backend tests
//! run every answer of ours in this mode through it.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use image_credential_provider::explain::kubelet as production;
use serde_json::{Value, json};

pub use production::{CacheType, TokenAttributes};

/// A provider's `tokenAttributes` from the object of a kubelet provider config.
pub fn token_attributes(value: &Value) -> TokenAttributes {
    let keys = |name: &str| -> Vec<String> {
        value[name]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .map(|k| k.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    TokenAttributes {
        audience: value["serviceAccountTokenAudience"]
            .as_str()
            .unwrap()
            .to_owned(),
        cache_type: match value["cacheType"].as_str() {
            Some("Token") => CacheType::Token,
            Some("ServiceAccount") => CacheType::ServiceAccount,
            other => panic!("cacheType {other:?}"),
        },
        require_service_account: value["requireServiceAccount"].as_bool().unwrap_or(false),
        required_keys: keys("requiredServiceAccountAnnotationKeys"),
        optional_keys: keys("optionalServiceAccountAnnotationKeys"),
    }
}

/// A pod's service account.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its annotations, all of them.
    pub annotations: BTreeMap<String, String>,
}

/// The pod a pull is for.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
    /// Its service account, if it has one.
    pub service_account: Option<ServiceAccount>,
}

impl Pod {
    /// The same pod in the production model's type.
    fn production(&self) -> production::Pod {
        production::Pod {
            namespace: self.namespace.clone(),
            service_account: self.service_account.as_ref().map(|account| {
                production::ServiceAccount {
                    name: account.name.clone(),
                    uid: Some(account.uid.clone()),
                    annotations: account.annotations.clone(),
                }
            }),
        }
    }

    /// From a lookup's `pod` object in `service_account_cases.json`.
    pub fn from_json(value: &Value) -> Option<Pod> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        value.as_object()?;
        let service_account = value
            .get("serviceAccount")
            .filter(|v| v.is_object())
            .map(|sa| ServiceAccount {
                name: text(&sa["name"]),
                uid: text(&sa["uid"]),
                annotations: sa["annotations"]
                    .as_object()
                    .map(|a| a.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                    .unwrap_or_default(),
            });
        Some(Pod {
            namespace: text(&value["namespace"]),
            name: text(&value["name"]),
            uid: text(&value["uid"]),
            service_account,
        })
    }
}

/// What the kubelet wrote on the plugin's stdin, and the parts of it a test checks.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The request, as the kubelet encodes it.
    pub stdin: String,
    /// The service account token in it.
    pub token: Option<String>,
    /// The annotations in it.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What one pull came to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Whether the plugin was run.
    pub plugin_ran: bool,
    /// Whether the kubelet requested a service account token.
    pub token_requested: bool,
    /// The credentials the kubelet pulls with, in the order it tries them; none means it
    /// pulls without credentials from this plugin.
    pub credentials: Vec<(String, String)>,
    /// What the kubelet logged instead of using an answer.
    pub error: Option<String>,
    /// What the plugin was sent, when it ran.
    pub sent: Option<Sent>,
}

/// One kubelet process with one credential provider.
pub struct Kubelet {
    api_version: String,
    attributes: Option<TokenAttributes>,
    /// The answers cached: key to the plugin's stdout.
    cache: HashMap<String, String>,
    /// The token of each pod (by uid): the kubelet's token manager hands a pod the same
    /// token until it nears expiry.
    tokens: HashMap<String, String>,
}

impl Kubelet {
    /// A kubelet whose provider speaks `api_version` and has `attributes`.
    pub fn new(api_version: &str, attributes: Option<TokenAttributes>) -> Kubelet {
        Kubelet {
            api_version: api_version.to_owned(),
            attributes,
            cache: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    /// Pulls `image` for `pod`, running `plugin` (stdin in, exit code and stdout out)
    /// when the kubelet would.
    pub fn pull(
        &mut self,
        image: &str,
        pod: Option<&Pod>,
        plugin: impl FnOnce(&Sent) -> (i32, String),
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let (token, annotations, identity_key) = match &self.attributes {
            None => (None, None, String::new()),
            Some(attributes) => {
                // What to do is the production model's decision (`explain`'s): this model
                // adds the token, the plugin run and the cache around it.
                let decision =
                    production::decide(Some(attributes), pod.map(Pod::production).as_ref());
                let passed = match decision {
                    production::Decision::Skip(production::Skip::NoServiceAccount) => {
                        return outcome;
                    }
                    production::Decision::Skip(production::Skip::MissingAnnotation(missing)) => {
                        outcome.error = Some(format!("required annotation {missing} not found"));
                        return outcome;
                    }
                    production::Decision::Run { token: None, .. } => {
                        return self.run_and_read(
                            image,
                            None,
                            None,
                            String::new(),
                            plugin,
                            outcome,
                        );
                    }
                    production::Decision::Run {
                        token: Some(token), ..
                    } => token.annotations,
                };
                let (pod, account) = pod
                    .and_then(|pod| Some((pod, pod.service_account.as_ref()?)))
                    .expect("a token is requested only for a pod's service account");
                outcome.token_requested = true;
                let token = self
                    .tokens
                    .entry(pod.uid.clone())
                    .or_insert_with(|| projected_token(pod, account, &attributes.audience))
                    .clone();
                let identity_key = match attributes.cache_type {
                    CacheType::Token => format!("token={token}"),
                    CacheType::ServiceAccount => format!(
                        "namespace={}/name={}/uid={}/annotations={passed:?}",
                        pod.namespace, account.name, account.uid
                    ),
                };
                (Some(token), Some(passed), identity_key)
            }
        };
        self.run_and_read(image, token, annotations, identity_key, plugin, outcome)
    }

    fn run_and_read(
        &mut self,
        image: &str,
        token: Option<String>,
        annotations: Option<BTreeMap<String, String>>,
        identity_key: String,
        plugin: impl FnOnce(&Sent) -> (i32, String),
        mut outcome: Outcome,
    ) -> Outcome {
        // The cache is looked up under every key type the answer may have been stored at.
        let keys = base_keys(image).map(|base| format!("{base}#{identity_key}"));
        if let Some(stdout) = keys.iter().find_map(|key| self.cache.get(key)) {
            outcome.credentials = super::read(&self.api_version, image, 0, stdout)
                .map(|observed| observed.credentials)
                .unwrap_or_default();
            return outcome;
        }
        let mut request = json!({
            "kind": "CredentialProviderRequest",
            "apiVersion": self.api_version,
            "image": image,
        });
        if let Some(token) = &token {
            request["serviceAccountToken"] = json!(token);
        }
        if let Some(annotations) = &annotations {
            request["serviceAccountAnnotations"] = json!(annotations);
        }
        let sent = Sent {
            stdin: format!("{request}\n"),
            token: token.clone(),
            annotations,
        };
        let (code, stdout) = plugin(&sent);
        outcome.plugin_ran = true;
        outcome.sent = Some(sent);
        let observed = match super::read(&self.api_version, image, code, &stdout) {
            Ok(observed) => observed,
            Err(error) => {
                outcome.error = Some(error);
                return outcome;
            }
        };
        let response: Value = serde_json::from_str(&stdout).unwrap();
        let echoes_token = token.as_deref().is_some_and(|token| {
            response["auth"]
                .as_object()
                .is_some_and(|auth| auth.values().any(|entry| entry["password"] == token))
        });
        let cache_type = self.attributes.as_ref().map(|a| a.cache_type);
        if echoes_token && cache_type != Some(CacheType::Token) {
            outcome.error = Some(
                "the plugin returned the service account token as a password, which only \
                 cacheType Token allows"
                    .to_owned(),
            );
            return outcome;
        }
        let key_index = match response["cacheKeyType"].as_str() {
            Some("Image") => 0,
            Some("Registry") => 1,
            _ => 2,
        };
        if response["cacheDuration"].as_str() != Some("0s") {
            self.cache.insert(keys[key_index].clone(), stdout);
        }
        outcome.credentials = observed.credentials;
        outcome
    }
}

/// The kubelet's cache keys of `image` for each `cacheKeyType`: the image, its registry,
/// and one key for all.
fn base_keys(image: &str) -> [String; 3] {
    let registry = image.split('/').next().unwrap_or_default();
    [
        format!("image={image}"),
        format!("registry={registry}"),
        "global".to_owned(),
    ]
}

/// A token shaped as the kubelet's projected service account tokens are: a JWT whose
/// claims name the pod and its service account, for `audience`. Its signature is not a
/// real one: the plugin does not check it (the cloud does).
pub fn projected_token(pod: &Pod, account: &ServiceAccount, audience: &str) -> String {
    let encode =
        |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "aud": [audience],
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": format!("{}-{now}", pod.uid),
        "sub": format!("system:serviceaccount:{}:{}", pod.namespace, account.name),
        "kubernetes.io": {
            "namespace": pod.namespace,
            "node": {"name": "node-1", "uid": "node-1-uid"},
            "pod": {"name": pod.name, "uid": pod.uid},
            "serviceaccount": {"name": account.name, "uid": account.uid},
        },
    });
    format!(
        "{}.{}.{}",
        encode(&json!({"alg": "RS256", "kid": "test"})),
        encode(&claims),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("signature-of-{}", pod.uid))
    )
}

/// The claims of a token made by [`projected_token`].
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A kubelet with several providers in service-account-token mode, as a node whose rules
/// need several audiences has them (one entry each): a pull runs every provider whose
/// `matchImages` match the image (without tag or digest, as the kubelet matches them), each
/// with its own attributes, cache and tokens, and the kubelet tries the credentials of all
/// of them, in the providers' order.
pub struct Node {
    /// Each provider's `matchImages` and its kubelet.
    providers: Vec<(Vec<icp_core::Pattern>, Kubelet)>,
}

impl Node {
    /// The providers of a `CredentialProviderConfig`, each with its `tokenAttributes`.
    pub fn from_config(config: &Value) -> Node {
        let providers = config["providers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|provider| {
                let patterns = provider["matchImages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| icp_core::Pattern::parse(m.as_str().unwrap()).unwrap())
                    .collect();
                let attributes = provider.get("tokenAttributes").map(token_attributes);
                let version = provider["apiVersion"].as_str().unwrap();
                (patterns, Kubelet::new(version, attributes))
            })
            .collect();
        Node { providers }
    }

    /// Pulls `image` for `pod`: the outcome of each provider whose `matchImages` match
    /// it, by index, running `plugin` (given the provider's index) when that provider's
    /// kubelet would.
    pub fn pull(
        &mut self,
        image: &str,
        pod: Option<&Pod>,
        mut plugin: impl FnMut(usize, &Sent) -> (i32, String),
    ) -> Vec<(usize, Outcome)> {
        let name = icp_core::ImageRef::parse(image).unwrap().name();
        self.providers
            .iter_mut()
            .enumerate()
            .filter(|(_, (patterns, _))| patterns.iter().any(|p| p.matches(&name)))
            .map(|(index, (_, kubelet))| {
                (index, kubelet.pull(image, pod, |sent| plugin(index, sent)))
            })
            .collect()
    }
}
