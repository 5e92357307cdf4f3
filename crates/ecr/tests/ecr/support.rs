//! What the ECR tests share: a clean AWS environment per test, passed to the backend as a
//! value, the backend with small limits, service accounts as the kubelet passes them, and
//! a child process for the few tests that need a proxy variable in the process's
//! environment. The fakes of AWS they run against are `icp_test_kit::aws`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use icp_core::{
    Build, CacheKeyType, Context, Environment, ImageRef, Request, Secret, ServiceAccount, Token,
    TokenBackend,
};
use icp_ecr::{Config, Ecr, Error};
use icp_http::Limits;

/// Limits small enough that a hang or a throttling loop ends quickly in a test: 3 s per
/// attempt (so 2 s to read, and 2 s for credentials), 8 s for the SDK's call, 10 s in all.
pub fn quick_limits() -> Limits {
    Limits {
        total: Duration::from_secs(10),
        request: Duration::from_secs(3),
        connect: Duration::from_secs(1),
        attempts: 3,
        backoff: Duration::from_millis(10),
        max_wait: Duration::from_millis(50),
    }
}

/// Where the test environment's home and AWS files are: nowhere, so no `~/.aws` of the
/// developer is read.
const NOWHERE: &str = "/nonexistent/icp-ecr-test";

/// A clean AWS environment: only `vars`, on top of a home directory and AWS config and
/// credentials files that do not exist, and instance metadata disabled. Nothing of the
/// process's environment is in it (no `AWS_*` of the developer's), and the process's is
/// never changed.
pub fn aws_env(vars: &[(&str, &str)]) -> Environment {
    no_proxy_for_the_loopback();
    let clean = [
        ("HOME", NOWHERE.to_owned()),
        ("AWS_CONFIG_FILE", format!("{NOWHERE}/config")),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            format!("{NOWHERE}/credentials"),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    let env = vars
        .iter()
        .fold(Environment::from_pairs(clean), |env, (name, value)| {
            env.with(*name, *value)
        });
    // A child [`run_child`] started has its proxy in the process's environment: the
    // backend's too, where the HTTP client below the SDK reads it.
    match (child_case(), std::env::var("HTTPS_PROXY")) {
        (Some(_), Ok(proxy)) => env.with("HTTPS_PROXY", proxy),
        _ => env,
    }
}

/// A proxy variable of the developer's that would send requests to the fakes on 127.0.0.1
/// through a proxy: these tests never change the process's environment, so they refuse to
/// run with one.
fn no_proxy_for_the_loopback() {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let bypassed = ["NO_PROXY", "no_proxy"]
        .into_iter()
        .filter_map(var)
        .any(|list| list.split(',').any(|host| host.trim() == "127.0.0.1"));
    for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        assert!(
            bypassed || var(name).is_none(),
            "{name} is set: the AWS SDK would ask the fakes on 127.0.0.1 through it; \
             unset it or add 127.0.0.1 to NO_PROXY to run these tests"
        );
    }
}

/// A backend for `config` built with `env`, with [`quick_limits`].
pub fn backend(config: Config, env: &Environment) -> Ecr {
    let context = Context {
        base_dir: Path::new("/"),
        env,
    };
    Ecr::build(config, &context)
        .unwrap()
        .with_limits(quick_limits())
}

/// What tells a test it runs as the child process [`run_child`] started, and which case.
const CHILD_CASE: &str = "ICP_ECR_TEST_CHILD_CASE";

/// The case this process is to run, when it is a child [`run_child`] started.
pub fn child_case() -> Option<String> {
    std::env::var(CHILD_CASE).ok()
}

/// Runs the test `test` (its name in this binary, as `fakes::name`) in a child process of
/// this test binary, for `case`, with `HTTPS_PROXY` set to `proxy`, and asserts it passed.
/// For the tests of the API endpoint the SDK chooses by itself: its HTTP client takes the
/// proxy from the process's environment only, which no test changes.
/// The child has no other proxy variable (`NO_PROXY`, `https_proxy`, ...) of this process.
pub fn run_child(test: &str, case: &str, proxy: &str) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .ends_with("_PROXY")
        {
            command.env_remove(name);
        }
    }
    let output = command
        .env(CHILD_CASE, case)
        .env("HTTPS_PROXY", proxy)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{test} for {case}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
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
    token_for("sts.amazonaws.com", namespace, name, pod)
}

/// [`projected_token`] for `audience`.
pub fn token_for(audience: &str, namespace: &str, name: &str, pod: &str) -> String {
    let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let claims = format!(
        r#"{{"aud":["{audience}"],"sub":"system:serviceaccount:{namespace}:{name}",
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
