//! What the ECR crate's integration tests share: a clean AWS environment per test, the
//! backend with small limits, and service accounts as the kubelet passes them. The fakes
//! of AWS they run against are `icp_test_kit::aws`.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use icp_core::{CacheKeyType, ImageRef, Request, Secret, ServiceAccount, Token, TokenBackend};
use icp_ecr::{Config, Ecr, Error, Limits};

/// Limits small enough that a hang or a throttling loop ends quickly in a test.
pub fn quick_limits() -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        attempt_timeout: Duration::from_secs(3),
        operation_timeout: Duration::from_secs(8),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        credentials_timeout: Duration::from_secs(2),
    }
}

/// A backend for `config` with [`quick_limits`].
pub fn backend(config: Config) -> Ecr {
    Ecr::new(config, Path::new("/"))
        .unwrap()
        .with_limits(quick_limits())
}

/// Fetches the token for `image` as the binary would: only if the backend serves it.
pub fn fetch(backend: &Ecr, image: &str) -> Result<Token, Error> {
    let image = ImageRef::parse(image).unwrap();
    assert!(backend.serves(&image), "{image} should be served");
    let request = Request::new(&image);
    backend.fetch(&request)
}

/// Fetches the token for `image` with `account`'s service account token, as the binary
/// would for a kubelet request that carries one.
pub fn fetch_as(backend: &Ecr, image: &str, account: &ServiceAccount) -> Result<Token, Error> {
    let image = ImageRef::parse(image).unwrap();
    assert!(backend.serves(&image), "{image} should be served");
    let request = Request {
        image: &image,
        cache_key_type: CacheKeyType::Registry,
        service_account: Some(account),
    };
    backend.fetch(&request)
}

/// A projected service account token for `namespace/name` (uid `<namespace>-<name>-uid`),
/// shaped as the kubelet's are; `pod` tells pods of one service account apart.
pub fn projected_token(namespace: &str, name: &str, pod: &str) -> String {
    let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let claims = format!(
        r#"{{"aud":["sts.amazonaws.com"],"sub":"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io":{{"namespace":"{namespace}","pod":{{"name":"{pod}","uid":"{pod}-uid"}},
            "serviceaccount":{{"name":"{name}","uid":"{namespace}-{name}-uid"}}}}}}"#
    );
    format!(
        "{}.{}.{}",
        encode(r#"{"alg":"RS256","kid":"test"}"#),
        encode(&claims),
        encode(&format!("signature-of-{pod}"))
    )
}

/// The service account `namespace/name` as the binary reads it from a request carrying
/// `token` and `annotations`.
pub fn service_account(token: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ServiceAccount::from_token(Secret::new(token), annotations).unwrap()
}

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Variables that would let the developer's own AWS setup or proxy leak into a test.
fn leaky(name: &str) -> bool {
    name.starts_with("AWS_")
        || name.eq_ignore_ascii_case("HTTPS_PROXY")
        || name.eq_ignore_ascii_case("HTTP_PROXY")
        || name.eq_ignore_ascii_case("ALL_PROXY")
        || name.eq_ignore_ascii_case("NO_PROXY")
}

/// The process environment of one test, restored when dropped. Every test of a test binary
/// holds the same lock while it exists, so no two tests see each other's variables.
pub struct TestEnv {
    saved: Vec<(String, Option<String>)>,
    home: tempfile::TempDir,
    _lock: MutexGuard<'static, ()>,
}

impl TestEnv {
    /// A clean AWS environment: no `AWS_*` or proxy variables, an empty home directory (so
    /// no `~/.aws` is read), instance metadata disabled, then `vars` on top.
    pub fn new(vars: &[(&str, &str)]) -> TestEnv {
        let lock = ENV_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let home = tempfile::tempdir().unwrap();
        let mut names: Vec<String> = std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| leaky(k))
            .collect();
        names.push("HOME".into());
        names.extend(vars.iter().map(|(k, _)| k.to_string()));
        names.extend(
            [
                "AWS_EC2_METADATA_DISABLED",
                "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE",
            ]
            .map(String::from),
        );
        names.sort();
        names.dedup();
        let saved = names
            .iter()
            .map(|k| (k.clone(), std::env::var(k).ok()))
            .collect();
        let env = TestEnv {
            saved,
            home,
            _lock: lock,
        };
        for name in &names {
            set(name, None);
        }
        set("HOME", Some(env.home.path().to_str().unwrap()));
        set(
            "AWS_CONFIG_FILE",
            Some(env.home.path().join("no-config").to_str().unwrap()),
        );
        set(
            "AWS_SHARED_CREDENTIALS_FILE",
            Some(env.home.path().join("no-credentials").to_str().unwrap()),
        );
        set("AWS_EC2_METADATA_DISABLED", Some("true"));
        for (name, value) in vars {
            set(name, Some(value));
        }
        env
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for (name, value) in &self.saved {
            set(name, value.as_deref());
        }
    }
}

fn set(name: &str, value: Option<&str>) {
    // SAFETY: every test in a test binary of this crate holds ENV_LOCK while it reads or
    // changes the environment, and each fetch's runtime and threads end before it returns.
    unsafe {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
}
