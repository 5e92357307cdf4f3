//! From a request to a response: read the request, find the rule, ask its backend, work
//! out how long the kubelet may cache the answer, write the response.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use std::fmt;

use anyhow::Context;
use icp_core::{AuthEntry, BackendError, ErrorKind, ImageRef, Token, expiry};

use crate::backends::{Backend, DynTokenBackend, Failure};
use crate::cache::{Cache, Cached, SAFETY_MARGIN};
use crate::pause::{Pause, Paused};
use crate::protocol::{self, PluginRequest, PluginResponse};
use crate::rules::{Rule, Rules};
use crate::{in_flight, refresh};

/// The cache duration of credentials with no expiry (docker config files) when the rule
/// sets none: a changed file is picked up within this time.
pub const STATIC_CACHE_DURATION: Duration = Duration::from_secs(5 * 60);

/// Plugin mode, as the kubelet runs it: one `CredentialProviderRequest` read from
/// `input`, one `CredentialProviderResponse` written to `output`, with tokens shared
/// through the cache at `cache_dir` (none when caching is off). Nothing is written on
/// error.
pub fn serve(
    input: impl Read,
    output: impl Write,
    rules: &Rules,
    cache_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let request = protocol::read_request(input)?;
    respond(&request, output, rules, cache_dir)
}

/// Answers `request` on `output`; nothing is written on error.
pub fn respond(
    request: &PluginRequest,
    mut output: impl Write,
    rules: &Rules,
    cache_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let response = answer(request, rules, cache_dir)?;
    output
        .write_all(response.to_json().as_bytes())
        .and_then(|()| output.flush())
        .context("writing the response")
}

/// Answers one request, with tokens shared through the cache at `cache_dir` (none when
/// caching is off).
pub fn answer(
    request: &PluginRequest,
    rules: &Rules,
    cache_dir: Option<&Path>,
) -> anyhow::Result<PluginResponse> {
    let image = ImageRef::parse(&request.image).with_context(|| {
        format!(
            "request image {} is not a valid image reference",
            icp_core::quote(&request.image)
        )
    })?;
    let Some((rule, backend)) = rules.find(&image) else {
        tracing::info!(image = %image.name(), rules = %rules.origin, "no rule matches; answering with no credentials");
        return Ok(PluginResponse::empty(request.api_version));
    };
    tracing::info!(image = %image.name(), rule = rule.index, provider = %rule.backend_name, "rule matched");
    let backend = backend.map_err(|failure| BackendFailed::new(rule, failure))?;
    let core_request = icp_core::Request {
        image: &image,
        cache_key_type: rule.cache_key_type,
        service_account: request.service_account.as_ref(),
    };
    let (auth, lifetime) = match backend {
        Backend::Static(backend) => {
            let credentials = backend
                .provide(&core_request)
                .map_err(|failure| BackendFailed::new(rule, failure))?;
            let unbounded = rule.cache_duration.unwrap_or(STATIC_CACHE_DURATION);
            (
                credentials.auth,
                remaining(credentials.expires_at, unbounded),
            )
        }
        Backend::Token(backend) => {
            let (token, ask_again) =
                shared_fetch(rule, backend.as_ref(), &core_request, cache_dir)?;
            let lifetime = token_lifetime(&token).min(ask_again);
            (token_auth(&token, backend.patterns(&image)), lifetime)
        }
    };
    let cache_duration = match (auth.is_empty(), rule.cache_duration) {
        (true, _) => Duration::ZERO,
        (false, Some(cap)) => lifetime.min(cap),
        (false, None) => lifetime,
    };
    tracing::info!(entries = auth.len(), cache_duration = %crate::duration::format(cache_duration), "answering");
    Ok(PluginResponse {
        api_version: request.api_version,
        cache_key_type: rule.cache_key_type,
        cache_duration,
        auth,
    })
}

/// A token from the shared cache, or fetched by this process (or by another one it
/// waited for) and stored there, and when the kubelet should ask again: at the token's
/// refresh point ([`refresh`]), or soon when it is answered past that point because its
/// refresh failed or its API is paused ([`pause`]).
fn shared_fetch(
    rule: &Rule,
    backend: &dyn DynTokenBackend,
    request: &icp_core::Request<'_>,
    cache_dir: Option<&Path>,
) -> Result<(Token, Duration), BackendFailed> {
    let failed = |failure| BackendFailed::new(rule, failure);
    let name = &rule.backend_name;
    let Some(cache) = cache_dir.and_then(|dir| {
        Cache::open(dir)
            .map_err(|error| tracing::info!(dir = %dir.display(), %error, "token cache unusable; answering uncached"))
            .ok()
    }) else {
        let token = backend.fetch(request).map_err(failed)?;
        let ask_again = match backend.token_key(request) {
            Ok(key) => until(refresh::point(name, &key, &token)),
            Err(_) => token_lifetime(&token),
        };
        return Ok((token, ask_again));
    };
    let key = backend.token_key(request).map_err(failed)?;
    let pause = Pause::of(&cache, name, &key.scope);
    if let Ok(answer) = without_fetch(cache.get(name, &key), &pause, &key.scope) {
        return answer.map_err(failed);
    }
    let _lock = cache.lock(name, &key);
    let cached = match without_fetch(cache.get(name, &key), &pause, &key.scope) {
        Ok(answer) => return answer.map_err(failed),
        Err(cached) => cached,
    };
    let _service = backend
        .metadata_service(request)
        .and_then(|service| in_flight::lock(&cache, service));
    match backend.fetch(request) {
        Ok(token) => {
            pause.lift();
            cache.put(name, &key, &token);
            Ok((token.clone(), until(refresh::point(name, &key, &token))))
        }
        Err(failure) if failure.kind() == ErrorKind::Throttled => {
            let end = pause.begin(failure.retry_after());
            past_refresh(cached, end, Paused::new(&key.scope, end, Some(failure))).map_err(failed)
        }
        Err(failure) => past_refresh(cached, SystemTime::now(), failure).map_err(failed),
    }
}

/// A token and when the kubelet should ask again, or why there is none.
type Served = Result<(Token, Duration), Failure>;

/// The answer when there is no fetch to make: the cached token before its refresh point,
/// or, while the API is paused, the cached token past it or the pause's error. Else
/// (`Err`) what is cached, to fall back on when the fetch fails.
fn without_fetch(
    cached: Option<Cached>,
    pause: &Pause,
    scope: &str,
) -> Result<Served, Option<Cached>> {
    match cached {
        Some(hit) if hit.refresh_at > SystemTime::now() => {
            let ask_again = until(Some(hit.refresh_at));
            Ok(Ok((hit.token, ask_again)))
        }
        cached => match pause.until() {
            Some(end) => Ok(past_refresh(cached, end, Paused::new(scope, end, None))),
            None => Err(cached),
        },
    }
}

/// The cached token past its refresh point when there is one, still valid, answered until
/// `retry` (the end of a pause) or for [`refresh::RETRY`], whichever is later; else
/// `error`.
fn past_refresh(cached: Option<Cached>, retry: SystemTime, error: impl BackendError) -> Served {
    let Some(cached) = cached else {
        return Err(Failure::new(error));
    };
    let wait = retry
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .max(refresh::RETRY);
    tracing::info!(%error, "answering the cached token, still valid, until it can be refreshed");
    Ok((cached.token, wait))
}

/// The time until `at`, or nothing when there is no such time.
fn until(at: Option<SystemTime>) -> Duration {
    at.and_then(|at| at.duration_since(SystemTime::now()).ok())
        .unwrap_or_default()
}

/// A backend's failure on one pull, building the backend included: the one error a pull
/// reports for its backend, naming the rule it came from. Its kind alone decides how it
/// is logged.
#[derive(Debug)]
pub struct BackendFailed {
    backend: String,
    rule: usize,
    failure: Failure,
}

impl BackendFailed {
    /// The failure of `rule`'s backend, logged as its kind asks: at `-v` when the image
    /// is not served or the failure is transient (throttled, timed out, network), at `-vv`
    /// otherwise; the error line itself says the rest.
    fn new(rule: &Rule, failure: Failure) -> BackendFailed {
        let (provider, index, kind) = (&rule.backend_name, rule.index, failure.kind());
        match kind {
            ErrorKind::NotServed => {
                tracing::info!(%provider, rule = index, %kind, "the backend does not serve the image")
            }
            kind if kind.is_transient() => {
                tracing::info!(%provider, rule = index, %kind, "transient failure: the kubelet asks again at the next pull")
            }
            ErrorKind::Config => {
                tracing::debug!(%provider, rule = index, %kind, "the rule's settings are wrong: check-config lists the problems")
            }
            kind => tracing::debug!(%provider, rule = index, %kind, "the backend failed"),
        }
        BackendFailed {
            backend: rule.backend_name.clone(),
            rule: rule.index,
            failure,
        }
    }
}

impl fmt::Display for BackendFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} backend (rule {})", self.backend, self.rule)
    }
}

impl std::error::Error for BackendFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}

impl BackendError for BackendFailed {
    fn kind(&self) -> ErrorKind {
        self.failure.kind()
    }
}

/// How long the kubelet may cache a token: what remains of its life less the safety
/// margin, never more than any token is taken to live ([`expiry::MAX_LIFETIME`]), or
/// nothing when the cloud gave no expiry.
pub fn token_lifetime(token: &Token) -> Duration {
    match token.expires_at {
        Some(at) => remaining(Some(at), Duration::ZERO)
            .min(expiry::MAX_LIFETIME)
            .saturating_sub(SAFETY_MARGIN),
        None => Duration::ZERO,
    }
}

/// Time left until `expires_at`, or `unbounded` when there is no expiry.
fn remaining(expires_at: Option<SystemTime>, unbounded: Duration) -> Duration {
    match expires_at {
        Some(at) => at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
        None => unbounded,
    }
}

/// The `auth` entries of a token: the same credential under each pattern.
pub fn token_auth(token: &Token, patterns: Vec<String>) -> Vec<AuthEntry> {
    patterns
        .into_iter()
        .map(|pattern| AuthEntry {
            pattern,
            username: token.username.clone(),
            password: token.password.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use icp_core::Secret;

    fn token(expires_in: Option<i64>) -> Token {
        let now = SystemTime::now();
        Token {
            username: "AWS".into(),
            password: Secret::new("t"),
            expires_at: expires_in.map(|s| {
                if s >= 0 {
                    now + Duration::from_secs(s as u64)
                } else {
                    now - Duration::from_secs(s.unsigned_abs())
                }
            }),
        }
    }

    #[test]
    fn token_lifetime_is_what_remains_less_the_margin() {
        let twelve_hours = token_lifetime(&token(Some(12 * 3600)));
        assert!(twelve_hours <= Duration::from_secs(12 * 3600) - SAFETY_MARGIN);
        assert!(
            twelve_hours > Duration::from_secs(12 * 3600) - SAFETY_MARGIN - Duration::from_secs(60)
        );
        assert_eq!(token_lifetime(&token(Some(60))), Duration::ZERO);
        assert_eq!(token_lifetime(&token(Some(-3600))), Duration::ZERO);
        assert_eq!(token_lifetime(&token(None)), Duration::ZERO);
        let far = Token {
            expires_at: SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(1 << 40)),
            ..token(None)
        };
        assert_eq!(
            token_lifetime(&far),
            expiry::MAX_LIFETIME - SAFETY_MARGIN,
            "a token from any backend is bounded"
        );
    }
}
