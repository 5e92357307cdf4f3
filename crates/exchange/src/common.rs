//! What the five backends share: the pod's service account (or none, and so no
//! credentials), the token cache key, one bounded fetch, and a token's expiry.

use std::time::{Duration, SystemTime};

use icp_core::names::is_annotation_key;
use icp_core::{
    Environment, Request, Secret, ServiceAccount, ServiceAccountTokenUse, TokenKey, quote,
};
use icp_http::{Deadline, Limits, RunError};

use crate::Error;
use crate::fetch::Fetch;

/// How long a token lives when its service does not say: 5 minutes, unless the binary
/// passes the rule's `cacheDuration` ([`Base::default_lifetime`]).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// The largest answer any of the services is expected to give.
const MAX_BODY: usize = 256 * 1024;

/// What every backend of the crate holds besides its own settings.
#[derive(Debug, Clone)]
pub struct Base {
    /// The rule section, as messages name it: `quay`, `tokenExchange`, ...
    pub section: &'static str,
    /// The audience the pod's token is requested for (`serviceAccountTokenAudience`).
    pub audience: String,
    /// The annotation keys the backend reads, for `tokenAttributes`.
    pub annotation_keys: Vec<String>,
    /// The bounds of one fetch.
    pub limits: Limits,
    /// How long a token lives when its service does not say.
    pub default_lifetime: Duration,
    /// The environment the backend was built with, for its client.
    pub env: Environment,
}

impl Base {
    /// A base for `section` with the pod token's `audience` (checked), the default limits
    /// and lifetime.
    pub fn new(section: &'static str, audience: String, env: &Environment) -> Result<Base, Error> {
        if audience.is_empty()
            || audience
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::config(
                section,
                format!(
                    "tokenAudience {} must be one word with no spaces",
                    quote(&audience)
                ),
            ));
        }
        Ok(Base {
            section,
            audience,
            annotation_keys: Vec::new(),
            limits: Limits::default(),
            default_lifetime: DEFAULT_LIFETIME,
            env: env.clone(),
        })
    }

    /// Checks the annotation key of the rule field `field`, and records it for
    /// `tokenAttributes`.
    pub fn annotation_key(&mut self, field: &str, key: Option<&str>) -> Result<(), Error> {
        if let Some(key) = key {
            if !is_annotation_key(key) {
                return Err(Error::config(
                    self.section,
                    format!("{field} {} is not an annotation key", quote(key)),
                ));
            }
            self.annotation_keys.push(key.to_owned());
        }
        Ok(())
    }

    /// The pod's service account, or [`Error::NoServiceAccountToken`] when the kubelet
    /// sent none.
    pub fn account<'a>(&self, request: &Request<'a>) -> Result<&'a ServiceAccount, Error> {
        request
            .service_account
            .ok_or(Error::NoServiceAccountToken(self.section))
    }

    /// The token cache key of a fetch as `account`, with the values of the annotation
    /// `keys` used, what else selects the credential (`choice`: a robot, a role), and the
    /// `endpoint` the pod's token goes to: never the token.
    pub fn key(
        &self,
        account: &ServiceAccount,
        keys: &[&str],
        choice: &str,
        endpoint: &str,
    ) -> TokenKey {
        TokenKey {
            identity: format!(
                "{};{};aud={};{choice}",
                account.key(keys),
                self.section,
                self.audience
            ),
            scope: endpoint.to_owned(),
        }
    }

    /// What `kubelet-config` writes as `tokenAttributes`.
    pub fn token_use(&self) -> ServiceAccountTokenUse {
        ServiceAccountTokenUse {
            audience: self.audience.clone(),
            annotation_keys: self.annotation_keys.clone(),
        }
    }

    /// Runs one fetch against `service` within the limits: a client made from the
    /// environment, the kit's retry policy, and a runtime built for it. The pod's `token`
    /// is cut out of every error answer before it is read.
    pub fn run<T, F>(&self, service: &str, token: &Secret, fetch: F) -> Result<T, Error>
    where
        F: AsyncFnOnce(&Fetch<'_>) -> Result<T, Error>,
    {
        let options = icp_http::Options {
            connect_timeout: self.limits.connect,
            timeout: self.limits.request,
            max_body: MAX_BODY,
        };
        let client = icp_http::Client::new(options, &self.env)
            .map_err(|e| Error::config(self.section, e.to_string()))?;
        icp_http::run(Deadline::after(self.limits.total), |deadline| async move {
            let context = Fetch {
                client: &client,
                token,
                retry: icp_http::Retry::new(&self.limits),
                deadline,
            };
            fetch(&context).await
        })
        .unwrap_or_else(|error| {
            Err(match error {
                RunError::Runtime(cause) => Error::Runtime(cause),
                RunError::Elapsed(_) => Error::Timeout(service.to_owned()),
            })
        })
    }

    /// When a token fetched at `start` expires: `expires_in` seconds when the service
    /// says, else the token's JWT `exp`, else the default lifetime; bounded by
    /// [`icp_core::expiry`]. A token already expired is a bad answer of `service`.
    pub fn expiry(
        &self,
        service: &str,
        start: SystemTime,
        expires_in: Option<u64>,
        token: &str,
    ) -> Result<SystemTime, Error> {
        let at = match (expires_in, icp_core::jwt::expiry(token)) {
            (Some(seconds), _) => icp_core::expiry::after(start, Duration::from_secs(seconds)),
            (None, Ok(exp)) => icp_core::expiry::at(exp, start),
            (None, Err(_)) => icp_core::expiry::after(start, self.default_lifetime),
        };
        if at <= SystemTime::now() {
            return Err(Error::BadResponse {
                service: service.to_owned(),
                reason: "the token has already expired".into(),
            });
        }
        Ok(at)
    }
}

/// A string field of a JSON answer, when it is a non-empty string.
pub fn text<'a>(json: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
    json.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .filter(|text| !text.is_empty())
}

/// The string field `name` of the object at `pointer` (`""` for the top level), when it
/// is a non-empty string; `name` is any field name a rule gives.
pub fn field<'a>(json: &'a serde_json::Value, pointer: &str, name: &str) -> Option<&'a str> {
    text(
        json,
        &format!("{pointer}/{}", name.replace('~', "~0").replace('/', "~1")),
    )
}

/// A number of seconds in a JSON answer (`expires_in`, `lease_duration`), when positive.
pub fn seconds(json: &serde_json::Value, pointer: &str) -> Option<u64> {
    json.pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .filter(|seconds| *seconds > 0)
}

/// The missing-field error of `service`'s answer.
pub fn missing(service: &str, field: &str) -> Error {
    Error::BadResponse {
        service: service.to_owned(),
        reason: format!("no {field} in the answer"),
    }
}

/// A value chosen by an annotation of the service account or, failing that, a rule
/// field: which one was used, for the cache key and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice<'a> {
    /// The value.
    pub value: &'a str,
    /// The annotation key it came from, if it did.
    pub annotation: Option<&'a str>,
    /// The rule field the value or the annotation key is named by, as `quay.robot`.
    pub field: &'static str,
}

impl<'a> Choice<'a> {
    /// The annotation `key`'s value on `account` when set (the annotation wins), else the
    /// rule's `fixed` value; `None` when neither is there.
    pub fn pick(
        account: &'a ServiceAccount,
        key: Option<&'a str>,
        key_field: &'static str,
        fixed: Option<&'a str>,
        fixed_field: &'static str,
    ) -> Option<Choice<'a>> {
        if let Some(key) = key
            && let Some(value) = account.annotation(key)
        {
            return Some(Choice {
                value,
                annotation: Some(key),
                field: key_field,
            });
        }
        fixed.map(|value| Choice {
            value,
            annotation: None,
            field: fixed_field,
        })
    }

    /// `annotation KEY = VALUE` or `rule field FIELD = VALUE`, as messages say it.
    pub fn describe(&self) -> String {
        match self.annotation {
            Some(key) => format!("annotation {key} = {}", quote(self.value)),
            None => format!("rule field {} = {}", self.field, quote(self.value)),
        }
    }

    /// The annotation keys this choice used, for [`ServiceAccount::key`].
    pub fn keys(&self) -> Vec<&'a str> {
        self.annotation.into_iter().collect()
    }
}

/// `error` of a fetch as `account`, naming it and what the exchange `used`.
pub fn context(account: &ServiceAccount, used: String, error: Error) -> Error {
    Error::ServiceAccount {
        account: account.to_string(),
        used,
        error: Box::new(error),
    }
}
