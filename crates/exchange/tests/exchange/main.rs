//! The token-exchange backends against loopback TLS fakes of their services, one module
//! per vendor: the request each vendor documents, isolation between service accounts,
//! no token in any message, plain HTTP refused, errors, throttling and expiry.

mod cloudsmith;
mod jfrog;
mod quay;
mod token_exchange;
mod vault;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use icp_core::{
    BackendError, Build, Context, Environment, ErrorKind, ImageRef, Request, Secret,
    ServiceAccount, Token, TokenBackend, TokenKey,
};
use icp_exchange::Limits;
use icp_test_kit::exchange::{World, now, service_account_token};

/// The pod of `namespace/name` with a token for `audience` and `annotations`.
pub fn account(
    namespace: &str,
    name: &str,
    audience: &str,
    annotations: &[(&str, &str)],
) -> ServiceAccount {
    let token = service_account_token(namespace, name, audience, now() + 3600);
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ServiceAccount::from_token(Secret::new(token), annotations).unwrap()
}

/// The default bounds, with short waits so the throttling tests stay quick.
pub fn quick_limits() -> Limits {
    Limits {
        backoff: Duration::from_millis(50),
        max_wait: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// The backend `B` built from `section` (JSON), with the world's environment.
pub fn build<B: Build>(world: &World, section: serde_json::Value) -> Result<B, B::Error> {
    let config: B::Config = serde_json::from_value(section).expect("a valid section");
    let env = Environment::from_pairs(world.env());
    B::build(
        config,
        &Context {
            base_dir: world.dir.path(),
            env: &env,
        },
    )
}

/// Whether the section is refused, and the message.
pub fn refused<B: Build>(world: &World, section: serde_json::Value) -> String {
    match build::<B>(world, section) {
        Ok(_) => panic!("the section was accepted"),
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::Config, "{error}");
            error.to_string()
        }
    }
}

/// The token `backend` fetches for `image` as `account`.
pub fn fetch<B: TokenBackend>(
    backend: &B,
    image: &str,
    account: Option<&ServiceAccount>,
) -> Result<Token, B::Error> {
    let image = ImageRef::parse(image).unwrap();
    let mut request = Request::new(&image);
    request.service_account = account;
    backend.fetch(&request)
}

/// The cache key of `image` as `account`.
pub fn key<B: TokenBackend>(
    backend: &B,
    image: &str,
    account: Option<&ServiceAccount>,
) -> Result<TokenKey, B::Error> {
    let image = ImageRef::parse(image).unwrap();
    let mut request = Request::new(&image);
    request.service_account = account;
    backend.token_key(&request)
}

/// That no part of any pod's token shows in `text`, and that it is one line.
pub fn assert_no_token(text: &str, accounts: &[&ServiceAccount]) {
    for account in accounts {
        let token = account.token.expose();
        assert!(!text.contains(token), "{text}");
        for part in token.split('.').take(2) {
            assert!(!text.contains(part), "{text}");
        }
    }
    assert!(!text.contains('\n'), "{text:?}");
}

/// That `token` expires about `seconds` from now.
pub fn assert_expires_in(token: &Token, seconds: u64) {
    let expires = token.expires_at.expect("an expiry");
    let expected = SystemTime::now() + Duration::from_secs(seconds);
    assert!(
        expires <= expected + Duration::from_secs(5)
            && expires >= expected - Duration::from_secs(30),
        "{expires:?} is not about {seconds}s from now"
    );
}

/// What every backend must do for pods: nothing without a service account token; one
/// key for one account and another for another; an exchange for each; the token never
/// in a message or in `Debug`. `a` and `a_again` are the same account (two pods), `b`
/// another. Returns the tokens of `a` and `b`.
pub fn assert_isolation<B>(
    backend: &B,
    image: &str,
    a: &ServiceAccount,
    a_again: &ServiceAccount,
    b: &ServiceAccount,
) -> (Token, Token)
where
    B: TokenBackend + std::fmt::Debug,
{
    let none = fetch(backend, image, None).unwrap_err();
    assert_eq!(none.kind(), ErrorKind::NotServed, "{none}");
    assert!(
        none.to_string().contains("sent no service account token"),
        "{none}"
    );
    assert_eq!(
        key(backend, image, None).unwrap_err().kind(),
        ErrorKind::NotServed
    );
    let key_a = key(backend, image, Some(a)).unwrap();
    assert_eq!(key_a, key(backend, image, Some(a_again)).unwrap());
    let key_b = key(backend, image, Some(b)).unwrap();
    assert_ne!(key_a.identity, key_b.identity);
    for key in [&key_a, &key_b] {
        assert_no_token(&format!("{key:?}"), &[a, a_again, b]);
    }
    let token_a = fetch(backend, image, Some(a)).unwrap();
    let token_b = fetch(backend, image, Some(b)).unwrap();
    assert_ne!(token_a.password, token_b.password);
    for token in [&token_a, &token_b] {
        assert_ne!(token.password, a.token);
        assert_ne!(token.password, b.token);
        assert_no_token(&format!("{token:?}"), &[a, b]);
    }
    assert_no_token(&format!("{backend:?}"), &[a, b]);
    (token_a, token_b)
}

/// That `error` is one line naming the service account and `used`, with the service's
/// message `answer`, and no token.
pub fn assert_refusal(
    error: &impl BackendError,
    account: &ServiceAccount,
    used: &str,
    answer: &str,
) {
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("service account {account} (")),
        "{text}"
    );
    assert!(text.contains(used), "{text}");
    assert!(text.contains(answer), "{text}");
    assert_eq!(error.kind(), ErrorKind::AccessDenied, "{text}");
    assert_no_token(&text, &[account]);
    assert_no_token(&format!("{error:?}"), &[account]);
}

/// The cost of one cold exchange per backend against its fake (a new client, TLS
/// handshake and request each time): `cargo test --release -p icp-exchange --test exchange
/// -- --ignored --nocapture cold_exchange_cost`.
#[test]
#[ignore = "a measurement, not a check"]
fn cold_exchange_cost() {
    use icp_exchange::{Cloudsmith, Jfrog, Quay, TokenExchange, Vault};
    use icp_test_kit::exchange::audience;
    use serde_json::json;
    let world = World::new();
    fn time<B: TokenBackend>(name: &str, backend: B, image: &str, pod: &ServiceAccount) {
        let runs = 20;
        let started = std::time::Instant::now();
        for _ in 0..runs {
            fetch(&backend, image, Some(pod)).unwrap();
        }
        println!("{name}: {:?} per cold exchange", started.elapsed() / runs);
    }
    let quay = build::<Quay>(&world, json!({"robot": "acme+puller"})).unwrap();
    time(
        "quay",
        quay,
        "quay.example.com/a",
        &account("team-a", "app", audience::QUAY, &[]),
    );
    let jfrog = build::<Jfrog>(&world, json!({"providerName": "k8s-prod"})).unwrap();
    time(
        "jfrog",
        jfrog,
        "acme.jfrog.io/a",
        &account("team-a", "app", audience::JFROG, &[]),
    );
    let cloudsmith =
        build::<Cloudsmith>(&world, json!({"org": "acme", "serviceSlug": "puller"})).unwrap();
    time(
        "cloudsmith",
        cloudsmith,
        "docker.cloudsmith.io/a",
        &account("team-a", "app", audience::CLOUDSMITH, &[]),
    );
    let vault = build::<Vault>(
        &world,
        json!({"address": "https://vault.internal.example:8200", "role": "image-pull",
               "secretPath": "secret/data/registry/{namespace}/{serviceAccount}"}),
    )
    .unwrap();
    time(
        "vault (login + read)",
        vault,
        "registry.internal.example/a",
        &account("team-a", "app", audience::VAULT, &[]),
    );
    let sts = build::<TokenExchange>(
        &world,
        json!({"url": "https://sts.example.com/token", "audience": "registry.te.example", "username": "u"}),
    )
    .unwrap();
    time(
        "tokenExchange",
        sts,
        "registry.te.example/a",
        &account("team-a", "app", "registry.te.example", &[]),
    );
}

#[test]
fn provider_names_are_their_section_keys_and_unknown_fields_are_refused() {
    use icp_exchange::{
        Cloudsmith, CloudsmithConfig, Jfrog, JfrogConfig, Quay, QuayConfig, TokenExchange,
        TokenExchangeConfig, Vault, VaultConfig,
    };
    // The binary reads a section under the provider's name in camelCase, which leaves
    // names without `-` as they are.
    let names = [
        Quay::NAME,
        Jfrog::NAME,
        Cloudsmith::NAME,
        Vault::NAME,
        TokenExchange::NAME,
    ];
    assert_eq!(
        names,
        ["quay", "jfrog", "cloudsmith", "vault", "tokenExchange"]
    );
    assert!(names.iter().all(|name| !name.contains('-')));
    assert!(Quay::default_config().is_none() && TokenExchange::default_config().is_none());
    let extra = |json: &str| format!(r#"{{{json}, "robotAnnotations": "x"}}"#);
    assert!(serde_json::from_str::<QuayConfig>(&extra(r#""robot": "a+b""#)).is_err());
    assert!(serde_json::from_str::<JfrogConfig>(&extra(r#""providerName": "p""#)).is_err());
    assert!(
        serde_json::from_str::<CloudsmithConfig>(&extra(r#""org": "o", "serviceSlug": "s""#))
            .is_err()
    );
    assert!(
        serde_json::from_str::<VaultConfig>(&extra(r#""address": "https://v", "secretPath": "p""#))
            .is_err()
    );
    assert!(
        serde_json::from_str::<TokenExchangeConfig>(&extra(
            r#""url": "https://s", "username": "u""#
        ))
        .is_err()
    );
    assert!(serde_json::from_str::<TokenExchangeConfig>(r#"{"style": "passthrough"}"#).is_err());
    assert!(serde_json::from_str::<TokenExchangeConfig>(r#"{"method": "PUT"}"#).is_err());
}

/// That 429 (with `Retry-After`) and 503 answers are tried again, and that throttling
/// that lasts ends the fetch as [`ErrorKind::Throttled`] naming `account`. `requests` is
/// how many requests one fetch makes to `host`.
pub fn assert_retries<B: TokenBackend>(
    world: &World,
    backend: &B,
    image: &str,
    account: &ServiceAccount,
    host: &str,
    requests: usize,
) {
    use std::sync::atomic::Ordering;
    let before = world.requests(host).len();
    *world.knobs.retry_after.lock().unwrap() = Some("0".into());
    world.knobs.throttle.store(1, Ordering::SeqCst);
    world.knobs.unavailable.store(1, Ordering::SeqCst);
    fetch(backend, image, Some(account)).unwrap();
    assert_eq!(world.requests(host).len(), before + requests + 2);
    world.knobs.throttle.store(3, Ordering::SeqCst);
    let error = fetch(backend, image, Some(account)).unwrap_err();
    world.knobs.throttle.store(0, Ordering::SeqCst);
    assert_eq!(error.kind(), ErrorKind::Throttled, "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("service account {account} (")),
        "{error}"
    );
    assert_no_token(&error.to_string(), &[account]);
}
