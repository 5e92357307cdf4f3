//! From a request to a response: read the request, find the rule, ask its backend, work
//! out how long the kubelet may cache the answer, write the response.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use std::fmt;

use anyhow::Context;
use icp_core::{AuthEntry, BackendError, ErrorKind, ImageRef, Token, expiry};

use crate::backends::{Backend, DynTokenBackend, Failure};
use crate::cache::{Cache, Cached, SAFETY_MARGIN};
use crate::pause::{Pause, Paused};
use crate::protocol::{self, PluginRequest, PluginResponse};
use crate::record::{CacheUse, Outcome, Problem, Record};
use crate::recorders::Recorders;
use crate::rules::{Rule, Rules};
use crate::{in_flight, refresh};

/// The cache duration of credentials with no expiry (docker config files) when the rule
/// sets none: a changed file is picked up within this time.
pub const STATIC_CACHE_DURATION: Duration = Duration::from_secs(5 * 60);

/// Plugin mode, as the kubelet runs it: one `CredentialProviderRequest` read from
/// `input`, one `CredentialProviderResponse` written to `output`, with tokens shared
/// through the cache at `cache_dir` (none when caching is off), and the answer (or the
/// failure) given to `recorders`. Nothing is written on error.
pub fn serve(
    input: impl Read,
    output: impl Write,
    rules: &Rules,
    cache_dir: Option<&Path>,
    recorders: &Recorders,
) -> anyhow::Result<()> {
    let request = protocol::read_request(input).inspect_err(|_| {
        let mut record = Record::new(SystemTime::now(), None);
        record.problem = Some(BAD_REQUEST);
        recorders.record(&record);
    })?;
    respond(&request, output, rules, cache_dir, recorders)
}

/// Answers `request` on `output`, and gives the answer (or the failure) to `recorders`;
/// nothing is written on error.
pub fn respond(
    request: &PluginRequest,
    mut output: impl Write,
    rules: &Rules,
    cache_dir: Option<&Path>,
    recorders: &Recorders,
) -> anyhow::Result<()> {
    let mut record = Record::new(SystemTime::now(), Some(&request.image));
    let result = answer(request, rules, cache_dir, &mut record).and_then(|response| {
        record.outcome = match response.auth.is_empty() {
            true => Outcome::Empty,
            false => Outcome::Served,
        };
        record.cache_duration = Some(response.cache_duration);
        output
            .write_all(response.to_json().as_bytes())
            .and_then(|()| output.flush())
            .context("writing the response")
            .inspect_err(|_| {
                record.problem = Some(Problem {
                    kind: "io",
                    transient: false,
                })
            })
    });
    if let Err(error) = &result {
        record.outcome = Outcome::Error;
        record.problem = record
            .problem
            .or(Some(match error.downcast_ref::<BackendFailed>() {
                Some(failed) => failed.problem(),
                None => BAD_REQUEST,
            }));
    }
    recorders.record(&record);
    result
}

/// The problem of a request that cannot be read or names no valid image.
const BAD_REQUEST: Problem = Problem {
    kind: "bad-request",
    transient: false,
};

/// Answers one request, with tokens shared through the cache at `cache_dir` (none when
/// caching is off), filling in `record` on the way. A backend's failure never carries a
/// fragment of the request's service account token: upstream services (STS, Entra ID,
/// Google STS) may echo it in their errors, and this is the one place every backend's
/// failure passes with the token known.
pub fn answer(
    request: &PluginRequest,
    rules: &Rules,
    cache_dir: Option<&Path>,
    record: &mut Record,
) -> anyhow::Result<PluginResponse> {
    let answered = answer_with_token(request, rules, cache_dir, record);
    match (&request.service_account, answered) {
        (Some(account), Err(error)) => Err(match error.downcast::<BackendFailed>() {
            Ok(failed) => failed.without(&account.token).into(),
            Err(error) => error,
        }),
        (_, answered) => answered,
    }
}

/// [`answer`], whose failures may still hold the service account token.
fn answer_with_token(
    request: &PluginRequest,
    rules: &Rules,
    cache_dir: Option<&Path>,
    record: &mut Record,
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
    record.rule = Some(rule.index);
    record.backend = Some(rule.backend_name.clone());
    let backend = backend.map_err(|failure| BackendFailed::new(rule, failure))?;
    // A note at -v only: the backend's token use is built (allocated) for it alone.
    if let Some(account) = &request.service_account
        && tracing::enabled!(tracing::Level::INFO)
    {
        crate::own_identity::note_unused(account, rule, backend.service_account_token().as_ref());
    }
    let core_request = icp_core::Request {
        image: &image,
        cache_key_type: rule.cache_key_type,
        service_account: request.service_account.as_ref(),
    };
    let (auth, lifetime) = match backend {
        Backend::Static(backend) => {
            record.identity = Some("node".to_owned());
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
            if let (Some(account), Some(token_use)) = (
                core_request.service_account,
                backend.service_account_token(),
            ) {
                crate::audience::check(account, &token_use, &rule.backend_name, &rule.name())?;
            }
            let (token, ask_again) =
                match shared_fetch(rule, backend.as_ref(), &core_request, cache_dir, record) {
                    // Logged at -v with the reason (BackendFailed::new).
                    Err(failed) if failed.kind() == ErrorKind::NotServed => {
                        return Ok(PluginResponse::empty(request.api_version));
                    }
                    fetched => fetched?,
                };
            // The refresh point, or a short while for a token answered past it; never
            // past the token's validity, and never longer than any token is taken to live.
            let lifetime = ask_again.min(expiry::MAX_LIFETIME);
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
/// refresh point ([`refresh`]). Past that point the token is refreshed; when the refresh
/// fails for a transient reason, or its API is paused after throttling ([`pause`]), the
/// cached token is answered while it is still valid, for a short while ([`stale`]).
/// `record` learns the identity, the cache's use and the upstream fetch's time.
///
/// [`stale`]: crate::stale
fn shared_fetch(
    rule: &Rule,
    backend: &dyn DynTokenBackend,
    request: &icp_core::Request<'_>,
    cache_dir: Option<&Path>,
    record: &mut Record,
) -> Result<(Token, Duration), BackendFailed> {
    let failed = |failure| BackendFailed::new(rule, failure);
    let name = &rule.backend_name;
    let fetch = |record: &mut Record| {
        let started = Instant::now();
        let result = backend.fetch(request);
        record.upstream = Some(started.elapsed());
        record.upstream_failed = result.is_err();
        result
    };
    let Some(cache) = cache_dir.and_then(|dir| {
        Cache::open(dir)
            .map_err(|error| tracing::info!(dir = %icp_core::quote::path(dir), %error, "token cache unusable; answering uncached"))
            .ok()
    }) else {
        record.cache = CacheUse::Off;
        let key = backend.token_key(request).ok();
        record.identity = key.as_ref().map(|key| key.identity.clone());
        let token = fetch(record).map_err(failed)?;
        let ask_again = match key {
            Some(key) => until(refresh::point(name, &key, &token)),
            None => token_lifetime(&token),
        };
        return Ok((token, ask_again));
    };
    let key = backend.token_key(request).map_err(failed)?;
    record.identity = Some(key.identity.clone());
    record.cache = CacheUse::Hit;
    let pause = Pause::of(&cache, name, &key.scope);
    if let Some(answer) = without_fetch(cache.get_stale(name, &key), &pause, &key, name, record) {
        return answer.map_err(failed);
    }
    let _lock = cache.lock(name, &key);
    let cached = cache.get_stale(name, &key);
    if let Some(answer) = without_fetch(cached.clone(), &pause, &key, name, record) {
        return answer.map_err(failed);
    }
    record.cache = CacheUse::Miss;
    let _service = backend
        .metadata_service(request)
        .and_then(|service| in_flight::lock(&cache, service));
    match fetch(record) {
        Ok(token) => {
            pause.lift();
            cache.put(name, &key, &token);
            Ok((token.clone(), until(refresh::point(name, &key, &token))))
        }
        Err(failure) => {
            let retry = match failure.kind() {
                ErrorKind::Throttled => pause.begin(failure.retry_after()),
                _ => SystemTime::now(),
            };
            let throttled = failure.kind() == ErrorKind::Throttled;
            let failure = failed(failure);
            match crate::stale::fallback(cached.map(|hit| hit.token), name, &key, &failure, retry) {
                Some(stale) => {
                    record.cache = CacheUse::Stale;
                    record.problem = Some(failure.problem());
                    Ok(stale)
                }
                None if throttled => Err(failed(Failure::new(Paused::new(
                    &key.scope,
                    retry,
                    Some(failure.into_failure()),
                )))),
                None => Err(failure),
            }
        }
    }
}

/// A token and when the kubelet should ask again, or why there is none.
type Served = Result<(Token, Duration), Failure>;

/// The answer when there is no fetch to make: the cached token before its refresh point;
/// or, while the API is paused, the cached token still valid (a stale answer) or the
/// pause's error. `None`: a fetch is due.
fn without_fetch(
    cached: Option<Cached>,
    pause: &Pause,
    key: &icp_core::TokenKey,
    backend: &str,
    record: &mut Record,
) -> Option<Served> {
    let now = SystemTime::now();
    match cached {
        Some(hit) if hit.refresh_at > now => Some(Ok((hit.token, until(Some(hit.refresh_at))))),
        cached => {
            let end = pause.until()?;
            let paused = Paused::new(&key.scope, end, None);
            Some(
                match cached.and_then(|hit| crate::stale::answer(hit.token, end, now)) {
                    Some(stale) => {
                        tracing::info!(provider = backend, scope = %key.scope, "{paused}; answering the cached token, still valid");
                        record.cache = CacheUse::Stale;
                        Ok(stale)
                    }
                    None => Err(Failure::new(paused)),
                },
            )
        }
    }
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
    rule: String,
    failure: Failure,
}

impl BackendFailed {
    /// The backend's failure itself, without the rule.
    fn into_failure(self) -> Failure {
        self.failure
    }

    /// What the audit log and the metrics say of it.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: self.failure.kind().as_str(),
            transient: self.failure.is_transient(),
        }
    }

    /// The failure of `rule`'s backend, logged as its kind asks: at `-v` when the request
    /// is not served (with the reason: the pull is then answered with no credentials) or
    /// the failure is transient (throttled, timed out, network), at `-vv`
    /// otherwise; the error line itself says the rest.
    fn new(rule: &Rule, failure: Failure) -> BackendFailed {
        let (provider, index, kind) = (&rule.backend_name, rule.index, failure.kind());
        match kind {
            ErrorKind::NotServed => {
                tracing::info!(%provider, rule = index, %kind, reason = %failure, "the backend does not serve the request; answering with no credentials")
            }
            _ if failure.is_transient() => {
                tracing::info!(%provider, rule = index, %kind, "transient failure: the kubelet asks again at the next pull")
            }
            ErrorKind::Config => {
                tracing::debug!(%provider, rule = index, %kind, "the rule's settings are wrong: check-config lists the problems")
            }
            kind => tracing::debug!(%provider, rule = index, %kind, "the backend failed"),
        }
        BackendFailed {
            backend: rule.backend_name.clone(),
            rule: rule.name(),
            failure,
        }
    }
}

impl BackendFailed {
    /// This failure with every fragment of `token` removed from its text.
    fn without(self, token: &icp_core::Secret) -> BackendFailed {
        BackendFailed {
            failure: self.failure.without(token),
            ..self
        }
    }
}

impl fmt::Display for BackendFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} backend ({})", self.backend, self.rule)
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

    fn is_transient(&self) -> bool {
        self.failure.is_transient()
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
