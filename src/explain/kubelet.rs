//! The kubelet's decisions for one pull in service-account-token mode (KEP-4412, as its
//! v1.36 code makes them, `service_account_cases.json`): whether it runs a provider for a
//! pod at all, whether it requests the pod's token, which annotations it passes on, and
//! what it keys its cache of the answer by. `explain` says them; the conformance test
//! checks them against every case the kubelet's own code was observed in.

use std::collections::BTreeMap;

use crate::kubelet_config::{CACHE_TYPE_TOKEN, ServiceAccountTokenAttributes};

/// How the kubelet keys its cache of a provider's answers (`tokenAttributes.cacheType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheType {
    /// Per service account: its namespace, name, uid and the annotations passed on.
    ServiceAccount,
    /// Per token: every pod's own token.
    Token,
}

impl CacheType {
    /// The name the kubelet config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheType::ServiceAccount => "ServiceAccount",
            CacheType::Token => "Token",
        }
    }

    /// Whether the kubelet keeps an answer whose password is the pod's service account
    /// token itself: only when it caches per token.
    pub fn accepts_token_as_password(self) -> bool {
        self == CacheType::Token
    }
}

/// A provider entry's `tokenAttributes`, as the kubelet acts on them (validated).
#[derive(Debug, Clone)]
pub struct TokenAttributes {
    /// `serviceAccountTokenAudience`.
    pub audience: String,
    /// `cacheType`.
    pub cache_type: CacheType,
    /// `requireServiceAccount`.
    pub require_service_account: bool,
    /// `requiredServiceAccountAnnotationKeys`.
    pub required_keys: Vec<String>,
    /// `optionalServiceAccountAnnotationKeys`.
    pub optional_keys: Vec<String>,
}

impl TokenAttributes {
    /// The attributes of a provider entry as read (an entry the kubelet accepted).
    pub(crate) fn of(attributes: &ServiceAccountTokenAttributes) -> TokenAttributes {
        TokenAttributes {
            audience: attributes.service_account_token_audience.clone(),
            cache_type: match attributes.cache_type.as_str() {
                CACHE_TYPE_TOKEN => CacheType::Token,
                _ => CacheType::ServiceAccount,
            },
            require_service_account: attributes.require_service_account.unwrap_or(false),
            required_keys: attributes.required_service_account_annotation_keys.clone(),
            optional_keys: attributes.optional_service_account_annotation_keys.clone(),
        }
    }
}

/// A pod's service account, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Its name.
    pub name: String,
    /// Its uid, when known (the kubelet keys its cache with it).
    pub uid: Option<String>,
    /// All its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The pod a pull is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Its namespace.
    pub namespace: String,
    /// Its service account; `None` for a pod that has none (a static pod).
    pub service_account: Option<ServiceAccount>,
}

/// Why the kubelet does not run a provider for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `requireServiceAccount: true` and the pod has no service account.
    NoServiceAccount,
    /// The service account lacks this `requiredServiceAccountAnnotationKeys` entry
    /// (logged by the kubelet only at `-v=5`).
    MissingAnnotation(String),
}

/// What the kubelet keys its cache of the provider's answer by, besides the image,
/// registry or nothing (the answer's `cacheKeyType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKey {
    /// No token: one answer serves every pod.
    Shared,
    /// `cacheType: ServiceAccount`: the service account and the annotations passed on.
    ServiceAccount {
        /// The namespace.
        namespace: String,
        /// The service account's name.
        name: String,
        /// Its uid, when known.
        uid: Option<String>,
        /// The annotations passed on.
        annotations: BTreeMap<String, String>,
    },
    /// `cacheType: Token`: the pod's own token.
    Token,
}

/// The token the kubelet requests for a pull, and what it sends with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The token's audience.
    pub audience: String,
    /// The service account annotations passed on: only the keys the entry names.
    pub annotations: BTreeMap<String, String>,
}

/// What the kubelet does with one provider entry for one pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It does not run the provider: the pull gets nothing from it.
    Skip(Skip),
    /// It runs the provider, with a token or without.
    Run {
        /// The token it requests, if any.
        token: Option<TokenRequest>,
        /// What it keys its cache of the answer by.
        cache_key: CacheKey,
    },
}

impl Decision {
    /// Whether the kubelet runs the provider (when it has no cached answer).
    pub fn runs(&self) -> bool {
        matches!(self, Decision::Run { .. })
    }

    /// The token the kubelet requests, if any.
    pub fn token(&self) -> Option<&TokenRequest> {
        match self {
            Decision::Run { token, .. } => token.as_ref(),
            Decision::Skip(_) => None,
        }
    }
}

/// What the kubelet does with a provider entry with `attributes` (none: no
/// `tokenAttributes`) for a pull of `pod` (none: a pod without service account, as a
/// static pod).
pub fn decide(attributes: Option<&TokenAttributes>, pod: Option<&Pod>) -> Decision {
    let Some(attributes) = attributes else {
        return Decision::Run {
            token: None,
            cache_key: CacheKey::Shared,
        };
    };
    let Some((pod, account)) = pod.and_then(|pod| Some((pod, pod.service_account.as_ref()?)))
    else {
        if attributes.require_service_account {
            return Decision::Skip(Skip::NoServiceAccount);
        }
        return Decision::Run {
            token: None,
            cache_key: CacheKey::Shared,
        };
    };
    if let Some(missing) = attributes
        .required_keys
        .iter()
        .find(|key| !account.annotations.contains_key(*key))
    {
        return Decision::Skip(Skip::MissingAnnotation(missing.clone()));
    }
    let annotations: BTreeMap<String, String> = attributes
        .required_keys
        .iter()
        .chain(&attributes.optional_keys)
        .filter_map(|key| Some((key.clone(), account.annotations.get(key)?.clone())))
        .collect();
    let cache_key = match attributes.cache_type {
        CacheType::Token => CacheKey::Token,
        CacheType::ServiceAccount => CacheKey::ServiceAccount {
            namespace: pod.namespace.clone(),
            name: account.name.clone(),
            uid: account.uid.clone(),
            annotations: annotations.clone(),
        },
    };
    Decision::Run {
        token: Some(TokenRequest {
            audience: attributes.audience.clone(),
            annotations,
        }),
        cache_key,
    }
}
