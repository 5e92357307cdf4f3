//! The ACR backend against fakes of Azure AD, IMDS and ACR registries: every identity
//! mode, the sovereign and custom clouds, mirrors, hostile hosts, errors and throttling.

mod identity_binding;

use std::time::{Duration, SystemTime};

use icp_acr::{Acr, CLIENT_ID_ANNOTATION, Config, Error, Limits, TENANT_ID_ANNOTATION, USERNAME};
use icp_core::{Environment, ImageRef, Request, Secret, ServiceAccount, Token, TokenBackend};
use icp_test_kit::Reply;
use icp_test_kit::azure::*;

fn config(json: &str) -> Config {
    serde_json::from_str(json).unwrap()
}

/// Builds the backend and fetches for `image` with the world's environment and `extra`.
fn fetch_with(
    world: &World,
    config: Config,
    extra: &[(&str, String)],
    limits: Limits,
    image: &str,
) -> Result<Token, Error> {
    let mut env = world.env();
    env.extend(extra.iter().cloned());
    let backend = Acr::new(config, world.dir(), &Environment::from_pairs(env))?.with_limits(limits);
    let image = ImageRef::parse(image).unwrap();
    backend.fetch(&Request::new(&image))
}

/// Builds the backend with the world's environment.
fn backend(world: &World, config: Config) -> Acr {
    Acr::new(config, world.dir(), &Environment::from_pairs(world.env())).unwrap()
}

fn fetch(world: &World, config: Config, image: &str) -> Result<Token, Error> {
    fetch_with(world, config, &[], quick_limits(), image)
}

/// The default bounds, with short waits so the throttling tests stay quick.
fn quick_limits() -> Limits {
    Limits {
        max_wait: Duration::from_secs(2),
        ..Limits::default()
    }
}

fn assert_refresh_token(token: &Token, access_token: &str) {
    assert_eq!(token.username, USERNAME);
    let expires = token.expires_at.expect("an expiry");
    let in_three_hours = SystemTime::now() + Duration::from_secs(3 * 3600);
    assert!(
        expires <= in_three_hours && expires > in_three_hours - Duration::from_secs(600),
        "{expires:?}"
    );
    let claims = token.password.expose().split('.').nth(1).unwrap();
    let claims = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    assert!(
        claims.contains(&format!(r#""sub":"{access_token}""#)),
        "{claims}"
    );
}

fn assert_no_secret(error: &Error) {
    let text = error.to_string();
    for secret in [SP_SECRET, WI_ASSERTION, "aad:", "imds:"] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(!text.contains('\n'), "{text:?}");
}

#[test]
fn system_assigned_managed_identity() {
    let world = World::new();
    let token = fetch(&world, Config::default(), "myacr.azurecr.io/app:1").unwrap();
    assert_refresh_token(&token, "imds:system");
    let imds = world.imds.requests();
    assert_eq!(imds.len(), 1);
    assert_eq!(imds[0].query("resource").as_deref(), Some(AUDIENCE));
    assert_eq!(
        (imds[0].query("client_id"), imds[0].query("msi_res_id")),
        (None, None)
    );
    let registry = world.registry_requests("myacr.azurecr.io");
    assert_eq!(
        registry
            .iter()
            .map(|r| (r.method.as_str(), r.path()))
            .collect::<Vec<_>>(),
        [("GET", "/v2/"), ("POST", "/oauth2/exchange")]
    );
    assert_eq!(registry[1].form("tenant"), None);
    assert_eq!(world.aad.request_count(), 0);
}

#[test]
fn user_assigned_managed_identity_by_client_id_and_resource_id() {
    let world = World::new();
    let token = fetch(
        &world,
        config(&format!(r#"{{"clientId": "{MI_CLIENT}"}}"#)),
        "myacr.azurecr.io/app",
    )
    .unwrap();
    assert_refresh_token(&token, &format!("imds:client:{MI_CLIENT}"));
    let token = fetch(
        &world,
        config(&format!(
            r#"{{"identity": "managedIdentity", "resourceId": "{MI_RESOURCE}"}}"#
        )),
        "myacr.azurecr.io/app",
    )
    .unwrap();
    assert_refresh_token(&token, "imds:resource:kubelet");
    assert_eq!(
        world.imds.requests()[1].query("msi_res_id").as_deref(),
        Some(MI_RESOURCE)
    );
    // An identity the VM does not have.
    let error = fetch(
        &world,
        config(r#"{"clientId": "44444444-4444-4444-4444-444444444444"}"#),
        "myacr.azurecr.io/app",
    )
    .unwrap_err();
    assert!(matches!(error, Error::NoCredentials(_)), "{error}");
    assert!(
        error.to_string().contains("not assigned to this VM"),
        "{error}"
    );
}

#[test]
fn managed_identity_from_azure_json_with_imds_retry() {
    let world = World::new();
    let azure_json = world.file(
        "azure.json",
        &format!(r#"{{"cloud":"AzurePublicCloud","tenantId":"{TENANT}","subscriptionId":"s","useManagedIdentityExtension":true,"userAssignedIdentityID":"{MI_CLIENT}"}}"#),
    );
    world
        .knobs
        .imds_failures
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let token = fetch(
        &world,
        config(&format!(
            r#"{{"azureConfig": {:?}}}"#,
            azure_json.display().to_string()
        )),
        "myacr.azurecr.io/app",
    )
    .unwrap();
    assert_refresh_token(&token, &format!("imds:client:{MI_CLIENT}"));
    assert_eq!(world.imds.request_count(), 2);
    assert_eq!(
        world.registry_requests("myacr.azurecr.io")[1]
            .form("tenant")
            .as_deref(),
        Some(TENANT)
    );
}

#[test]
fn workload_identity_from_the_environment() {
    let world = World::new();
    let token_file = world.file("azure-identity-token", &format!("{WI_ASSERTION}\n"));
    let env = [
        ("AZURE_CLIENT_ID", WI_CLIENT.to_owned()),
        ("AZURE_TENANT_ID", TENANT.to_owned()),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        (
            "AZURE_AUTHORITY_HOST",
            "https://login.microsoftonline.com/".to_owned(),
        ),
    ];
    let token = fetch_with(
        &world,
        Config::default(),
        &env,
        quick_limits(),
        "myacr.azurecr.io/app",
    )
    .unwrap();
    assert_refresh_token(
        &token,
        &format!("aad:{WI_CLIENT}@login.microsoftonline.com"),
    );
    let aad = world.aad.requests();
    assert_eq!(aad.len(), 1);
    assert_eq!(
        aad[0].form("client_assertion").as_deref(),
        Some(WI_ASSERTION)
    );
    assert_eq!(aad[0].form("client_secret"), None);
    assert_eq!(world.imds.request_count(), 0);
    assert_eq!(
        world.registry_requests("myacr.azurecr.io")[1]
            .form("tenant")
            .as_deref(),
        Some(TENANT)
    );
    // A missing token file is a clear error, and nothing is sent.
    std::fs::remove_file(&token_file).unwrap();
    let before = world.request_count();
    let error = fetch_with(
        &world,
        Config::default(),
        &env,
        quick_limits(),
        "myacr.azurecr.io/app",
    )
    .unwrap_err();
    assert!(matches!(error, Error::NoCredentials(_)), "{error}");
    assert_eq!(world.aad.request_count(), 1);
    assert!(
        world.request_count() <= before + 1,
        "only the challenge may be asked"
    );
}

#[test]
fn service_principal_with_a_secret_file() {
    let world = World::new();
    let secret_file = world.file("sp-secret", SP_SECRET);
    let rule = format!(
        r#"{{"identity": "servicePrincipal", "clientId": "{SP_CLIENT}", "tenantId": "{TENANT}", "clientSecretFile": "sp-secret"}}"#
    );
    let token = fetch(&world, config(&rule), "myacr-abc123.azurecr.io/app").unwrap();
    assert_refresh_token(
        &token,
        &format!("aad:{SP_CLIENT}@login.microsoftonline.com"),
    );
    assert_eq!(
        world.aad.requests()[0].form("client_secret").as_deref(),
        Some(SP_SECRET)
    );
    // A wrong secret is refused by Azure AD; the error says so without the secret.
    std::fs::write(&secret_file, "wrong-secret").unwrap();
    let error = fetch(&world, config(&rule), "myacr-abc123.azurecr.io/app").unwrap_err();
    assert!(matches!(error, Error::AccessDenied { .. }), "{error}");
    assert!(
        error.to_string().contains("invalid_client: AADSTS7000215"),
        "{error}"
    );
    assert!(!error.to_string().contains("wrong-secret"));
    assert_no_secret(&error);
}

#[test]
fn service_principal_from_azure_json_in_the_china_cloud() {
    let world = World::new();
    let azure_json = world.file(
        "azure.json",
        &format!(r#"{{"cloud":"AzureChinaCloud","tenantId":"{TENANT}","aadClientId":"{SP_CLIENT}","aadClientSecret":"{SP_SECRET}","useManagedIdentityExtension":false}}"#),
    );
    let rule = config(&format!(
        r#"{{"azureConfig": {:?}}}"#,
        azure_json.display().to_string()
    ));
    let token = fetch(&world, rule.clone(), "myacr.azurecr.cn/app").unwrap();
    assert_refresh_token(&token, &format!("aad:{SP_CLIENT}@login.chinacloudapi.cn"));
    // A public-cloud registry is not served by a China-cloud rule.
    let error = fetch(&world, rule, "myacr.azurecr.io/app").unwrap_err();
    assert!(matches!(error, Error::NotServed(_)), "{error}");
    assert_eq!(world.registry_requests("myacr.azurecr.io").len(), 0);
}

#[test]
fn us_government_by_suffix_and_geo_replicas() {
    let world = World::new();
    let secret_file = world.file("sp-secret", SP_SECRET);
    let rule = format!(
        r#"{{"identity": "servicePrincipal", "clientId": "{SP_CLIENT}", "tenantId": "{TENANT}", "clientSecretFile": {:?}}}"#,
        secret_file.display().to_string()
    );
    let token = fetch(&world, config(&rule), "myacr.azurecr.us/app").unwrap();
    assert_refresh_token(&token, &format!("aad:{SP_CLIENT}@login.microsoftonline.us"));
    let token = fetch(&world, config(&rule), "myacr.eastus.geo.azurecr.io/app").unwrap();
    assert_refresh_token(
        &token,
        &format!("aad:{SP_CLIENT}@login.microsoftonline.com"),
    );
    assert_eq!(
        world.registry_requests("myacr.eastus.geo.azurecr.io").len(),
        2
    );
}

#[test]
fn custom_cloud() {
    let world = World::new();
    world.file("sp-secret", SP_SECRET);
    let rule = format!(
        r#"{{"identity": "servicePrincipal", "clientId": "{SP_CLIENT}", "tenantId": "{TENANT}", "clientSecretFile": "sp-secret",
            "authorityHost": "https://login.contoso.example/", "registrySuffix": "azurecr.contoso.example"}}"#
    );
    let token = fetch(&world, config(&rule), "myacr.azurecr.contoso.example/app").unwrap();
    assert_refresh_token(&token, &format!("aad:{SP_CLIENT}@login.contoso.example"));
}

#[test]
fn mirrors_get_the_login_server_token() {
    let world = World::new();
    let rule = config(r#"{"registryMirrors": {"mirror.example": "myacr.azurecr.io"}}"#);
    let token = fetch(&world, rule.clone(), "mirror.example/team/app:1").unwrap();
    assert_refresh_token(&token, "imds:system");
    assert_eq!(world.registry_requests("myacr.azurecr.io").len(), 2);
    assert_eq!(
        world.registry_requests("mirror.example").len(),
        0,
        "the mirror never sees the Azure AD token"
    );
    let backend = backend(&world, rule);
    let image = ImageRef::parse("mirror.example/team/app:1").unwrap();
    assert_eq!(
        backend.patterns(&image),
        ["mirror.example", "myacr.azurecr.io"]
    );
    assert_eq!(
        backend
            .token_key(&icp_core::Request::new(&image))
            .unwrap()
            .scope,
        "myacr.azurecr.io"
    );
}

#[test]
fn hostile_hosts_get_no_request_at_all() {
    let world = World::new();
    world.file("sp-secret", SP_SECRET);
    let rules = [
        Config::default(),
        config(&format!(
            r#"{{"identity": "servicePrincipal", "clientId": "{SP_CLIENT}", "tenantId": "{TENANT}", "clientSecretFile": "sp-secret"}}"#
        )),
        config(r#"{"registryMirrors": {"mirror.example": "myacr.azurecr.io"}}"#),
    ];
    for rule in rules {
        for host in HOSTILE_HOSTS.iter().chain(&[
            "myacr.azurecr.io:443",
            "mirror.example:443",
            "MYACR.azurecr.io",
        ]) {
            let image = format!("{host}/app");
            let backend = backend(&world, rule.clone());
            assert!(
                !backend.serves(&ImageRef::parse(&image).unwrap()),
                "{image}"
            );
            let error = fetch(&world, rule.clone(), &image).unwrap_err();
            assert!(matches!(error, Error::NotServed(_)), "{image}: {error}");
        }
    }
    assert_eq!(world.request_count(), 0);
}

#[test]
fn a_realm_elsewhere_gets_no_token() {
    let world = World::new();
    world.file("sp-secret", SP_SECRET);
    let sp = config(&format!(
        r#"{{"identity": "servicePrincipal", "clientId": "{SP_CLIENT}", "tenantId": "{TENANT}", "clientSecretFile": "sp-secret"}}"#
    ));
    for realm in [
        "https://myacr.azurecr.io.evil.example/oauth2/token",
        "https://evilazurecr.io/oauth2/token",
        "http://myacr.azurecr.io/oauth2/token",
        "https://myacr.azurecr.io@evil.example/oauth2/token",
        "https://myacr.azurecr.io:8443/oauth2/token",
        "https://myacr.azurecr.cn/oauth2/token",
    ] {
        let challenge = Reply::status(401).header(
            "Www-Authenticate",
            &format!(r#"Bearer realm="{realm}",service="myacr.azurecr.io""#),
        );
        *world.knobs.challenge_reply.lock().unwrap() = Some(challenge);
        for rule in [Config::default(), sp.clone()] {
            let error = fetch(&world, rule, "myacr.azurecr.io/app").unwrap_err();
            assert!(matches!(error, Error::Challenge { .. }), "{realm}: {error}");
            assert!(
                error.to_string().contains("no token sent")
                    || error.to_string().contains("https://"),
                "{error}"
            );
        }
    }
    assert_eq!(
        world.aad.request_count() + world.imds.request_count(),
        0,
        "no Azure AD token was even asked for"
    );
    assert!(
        world.registry.requests().iter().all(|r| r.path() == "/v2/"),
        "no exchange"
    );
    for host in HOSTILE_HOSTS {
        assert_eq!(world.registry_requests(host).len(), 0);
    }
}

#[test]
fn challenge_errors() {
    let world = World::new();
    let cases = [
        (Reply::status(200), "without asking for a token"),
        (Reply::status(401), "no Bearer challenge"),
        (
            Reply::status(401).header("Www-Authenticate", r#"Basic realm="Registry""#),
            "no Bearer challenge",
        ),
        (
            Reply::status(401).header("Www-Authenticate", "Bearer =,= realm \"garbage\\"),
            "no Bearer challenge",
        ),
        (
            Reply::json(
                403,
                r#"{"errors":[{"code":"DENIED","message":"client with IP is not allowed access"}]}"#,
            ),
            "DENIED",
        ),
        (Reply::json(404, "{}"), "HTTP 404"),
    ];
    for (reply, message) in cases {
        *world.knobs.challenge_reply.lock().unwrap() = Some(reply);
        let error = fetch(&world, Config::default(), "myacr.azurecr.io/app").unwrap_err();
        assert!(error.to_string().contains(message), "{message}: {error}");
    }
    assert_eq!(world.imds.request_count(), 0);
}

#[test]
fn exchange_errors_and_bad_refresh_tokens() {
    let world = World::new();
    let expired = jwt(&format!(r#"{{"exp":{}}}"#, now() - 60));
    let cases = [
        (
            Some(Reply::json(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid access token"}]}"#,
            )),
            None,
            "access denied by myacr.azurecr.io: HTTP 401: UNAUTHORIZED",
        ),
        (Some(Reply::json(200, "not json")), None, "not JSON"),
        (
            Some(Reply::json(200, r#"{"access_token":"x"}"#)),
            None,
            "no refresh_token",
        ),
        (None, Some(expired), "already expired"),
    ];
    for (reply, refresh, message) in cases {
        *world.knobs.exchange_reply.lock().unwrap() = reply;
        *world.knobs.refresh_token.lock().unwrap() = refresh;
        let error = fetch(&world, Config::default(), "myacr.azurecr.io/app").unwrap_err();
        assert!(error.to_string().contains(message), "{message}: {error}");
        assert!(!error.to_string().contains("opaque-not-a-jwt"));
        assert_no_secret(&error);
    }
}

#[test]
fn a_refresh_token_with_no_stated_expiry_is_answered_without_one() {
    let world = World::new();
    for refresh in [
        "opaque-not-a-jwt".to_owned(),
        jwt(r#"{"iat":1}"#),
        jwt(r#"{"exp":"tomorrow"}"#),
    ] {
        *world.knobs.refresh_token.lock().unwrap() = Some(refresh.clone());
        let token = fetch(&world, Config::default(), "myacr.azurecr.io/app").unwrap();
        assert_eq!(token.username, USERNAME);
        assert_eq!(token.password.expose(), refresh);
        assert_eq!(token.expires_at, None, "{refresh}");
    }
    // A stated expiry that is no time, or is past, is still refused.
    *world.knobs.refresh_token.lock().unwrap() = Some(jwt(r#"{"exp":1e300}"#));
    let error = fetch(&world, Config::default(), "myacr.azurecr.io/app").unwrap_err();
    assert!(error.to_string().contains("out of range"), "{error}");
    *world.knobs.refresh_token.lock().unwrap() = Some(jwt(&format!(r#"{{"exp":{}}}"#, now() - 1)));
    let error = fetch(&world, Config::default(), "myacr.azurecr.io/app").unwrap_err();
    assert!(error.to_string().contains("already expired"), "{error}");
}

#[test]
fn throttling_is_retried_within_the_budget() {
    let world = World::new();
    *world.knobs.retry_after.lock().unwrap() = Some("1".into());
    world
        .knobs
        .challenge_throttle
        .store(1, std::sync::atomic::Ordering::SeqCst);
    world
        .knobs
        .exchange_throttle
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let token = fetch(&world, Config::default(), "myacr.azurecr.io/app").unwrap();
    assert_refresh_token(&token, "imds:system");
    assert_eq!(world.registry_requests("myacr.azurecr.io").len(), 4);
}

#[test]
fn persistent_throttling_is_a_throttling_error() {
    let world = World::new();
    world.file("sp-secret", SP_SECRET);
    // Retry-After longer than the fetch may wait: give up at once.
    *world.knobs.retry_after.lock().unwrap() = Some("3600".into());
    world
        .knobs
        .exchange_throttle
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let error = fetch(&world, Config::default(), "myacr.azurecr.io/app").unwrap_err();
    assert!(matches!(error, Error::Throttled(..)), "{error}");
    assert_eq!(
        icp_core::BackendError::retry_after(&error),
        Some(Duration::from_secs(3600)),
        "the Retry-After that ended the fetch is kept for the node-wide pause"
    );
    assert_eq!(
        error.to_string(),
        "throttled by myacr.azurecr.io; try again later"
    );
    assert_eq!(world.registry_requests("myacr.azurecr.io").len(), 2);
    // Throttled on every attempt: give up after the last one.
    *world.knobs.retry_after.lock().unwrap() = Some("0".into());
    world
        .knobs
        .aad_throttle
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let sp = config(&format!(
        r#"{{"identity": "servicePrincipal", "clientId": "{SP_CLIENT}", "tenantId": "{TENANT}", "clientSecretFile": "sp-secret"}}"#
    ));
    let error = fetch(&world, sp, "myacr.azurecr.io/app").unwrap_err();
    assert_eq!(error.to_string(), "throttled by Azure AD; try again later");
    assert_eq!(
        world.aad.request_count(),
        Limits::default().attempts as usize
    );
}

#[test]
fn a_retry_after_given_as_an_http_date_is_honoured() {
    let world = World::new();
    // A date beyond what the fetch may wait: give up at once, as for seconds.
    *world.knobs.retry_after.lock().unwrap() = Some("Fri, 01 Jan 2100 00:00:00 GMT".into());
    world
        .knobs
        .exchange_throttle
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let error = fetch(&world, Config::default(), "myacr.azurecr.io/app").unwrap_err();
    assert_eq!(
        error.to_string(),
        "throttled by myacr.azurecr.io; try again later"
    );
    assert_eq!(
        world.registry_requests("myacr.azurecr.io").len(),
        2,
        "the challenge and one exchange"
    );
    // A date already past: try again at once.
    world
        .knobs
        .exchange_throttle
        .store(1, std::sync::atomic::Ordering::SeqCst);
    *world.knobs.retry_after.lock().unwrap() = Some("Thu, 01 Jan 1970 00:00:00 GMT".into());
    let token = fetch(&world, Config::default(), "myacr.azurecr.io/app").unwrap();
    assert_refresh_token(&token, "imds:system");
    assert_eq!(world.registry_requests("myacr.azurecr.io").len(), 5);
}

#[test]
fn a_registry_that_does_not_answer_times_out() {
    let world = World::new();
    *world.knobs.registry_delay.lock().unwrap() = Duration::from_secs(30);
    let limits = Limits {
        total: Duration::from_secs(2),
        request: Duration::from_millis(500),
        ..Limits::default()
    };
    let error = fetch_with(
        &world,
        Config::default(),
        &[],
        limits,
        "myacr.azurecr.io/app",
    )
    .unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error}");
    assert_eq!(error.to_string(), "timed out waiting for myacr.azurecr.io");
}

#[test]
fn an_unreachable_imds_says_there_is_no_managed_identity_and_what_to_configure() {
    let world = World::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = [(
        "IMAGE_CREDENTIAL_PROVIDER_AZURE_IMDS_ENDPOINT",
        format!("http://{closed}"),
    )];
    let error = fetch_with(
        &world,
        Config::default(),
        &env,
        quick_limits(),
        "myacr.azurecr.io/app",
    )
    .unwrap_err();
    assert!(matches!(error, Error::NoCredentials(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with(
            "no Azure credentials: no managed identity: cannot reach IMDS (not on an Azure VM"
        ) && message.contains("acr.identity")
            && message.contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{message}"
    );
}

#[test]
fn an_unusable_environment_is_reported_when_a_token_is_needed() {
    let world = World::new();
    let token_file = world.file("token", WI_ASSERTION);
    let env = [(
        "AZURE_FEDERATED_TOKEN_FILE",
        token_file.display().to_string(),
    )];
    let error = fetch_with(
        &world,
        Config::default(),
        &env,
        quick_limits(),
        "myacr.azurecr.io/app",
    )
    .unwrap_err();
    assert!(matches!(error, Error::Environment(_)), "{error}");
    assert!(error.to_string().contains("AZURE_CLIENT_ID"), "{error}");
    assert_eq!(world.request_count(), 0);
    // An explicit rule is refused at once.
    let error = Acr::new(
        config(r#"{"identity": "workloadIdentity"}"#),
        world.dir(),
        &Environment::from_pairs(env),
    )
    .unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error}");
}

#[test]
fn check_reads_the_secret_and_token_files() {
    let world = World::new();
    let rule = format!(
        r#"{{"identity": "servicePrincipal", "clientId": "{SP_CLIENT}", "tenantId": "{TENANT}", "clientSecretFile": "sp-secret"}}"#
    );
    let error = backend(&world, config(&rule)).check().unwrap_err();
    assert!(matches!(error, Error::NoCredentials(_)), "{error}");
    assert!(error.to_string().contains("sp-secret"), "{error}");
    world.file("sp-secret", SP_SECRET);
    backend(&world, config(&rule)).check().unwrap();
    backend(&world, Config::default()).check().unwrap();
}

/// `namespace/name`'s service account with its token for Azure AD and `annotations`.
fn account(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
    let token = service_account_token(namespace, name, TOKEN_EXCHANGE_AUDIENCE, now() + 3600);
    account_with(token, annotations)
}

fn account_with(token: String, annotations: &[(&str, &str)]) -> ServiceAccount {
    let annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ServiceAccount::from_token(Secret::new(token), annotations).unwrap()
}

/// Fetches for `image` as `account`'s pod, with the world's environment and `extra`.
fn fetch_as(
    world: &World,
    config: Config,
    extra: &[(&str, String)],
    image: &str,
    account: &ServiceAccount,
) -> Result<Token, Error> {
    let mut env = world.env();
    env.extend(extra.iter().cloned());
    let backend =
        Acr::new(config, world.dir(), &Environment::from_pairs(env))?.with_limits(quick_limits());
    let image = ImageRef::parse(image).unwrap();
    backend.fetch(&Request {
        service_account: Some(account),
        ..Request::new(&image)
    })
}

const POD: [(&str, &str); 2] = [
    (CLIENT_ID_ANNOTATION, POD_CLIENT),
    (TENANT_ID_ANNOTATION, TENANT),
];

/// No part of `account`'s token is in `text`.
fn assert_no_token(text: &str, account: &ServiceAccount) {
    for part in account.token.expose().split('.') {
        assert!(!text.contains(part), "{text}");
    }
}

#[test]
fn a_pod_with_both_annotations_is_fetched_for_as_itself() {
    let world = World::new();
    let app = account("team-a", "app", &POD);
    let token = fetch_as(&world, Config::default(), &[], "myacr.azurecr.io/app", &app).unwrap();
    assert_refresh_token(
        &token,
        &format!("aad:{POD_CLIENT}@login.microsoftonline.com;sub=system:serviceaccount:team-a:app"),
    );
    let aad = world.aad.requests();
    assert_eq!(aad.len(), 1);
    assert_eq!(aad[0].path(), format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(aad[0].form("client_id").as_deref(), Some(POD_CLIENT));
    assert_eq!(
        aad[0].form("client_assertion").as_deref(),
        Some(app.token.expose()),
        "the pod's token is the assertion"
    );
    assert_eq!(
        aad[0].form("client_assertion_type").as_deref(),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    assert_eq!(aad[0].form("scope").as_deref(), Some(SCOPE));
    assert_eq!(aad[0].form("client_secret"), None);
    assert_eq!(world.imds.request_count(), 0, "not the node's identity");
    let registry = world.registry_requests("myacr.azurecr.io");
    assert_eq!(registry.len(), 2);
    assert_eq!(registry[1].form("tenant").as_deref(), Some(TENANT));
    // The other tenant's application, in its tenant.
    let other = account(
        "team-a",
        "app",
        &[
            (CLIENT_ID_ANNOTATION, POD_CLIENT_B),
            (TENANT_ID_ANNOTATION, TENANT_B),
        ],
    );
    let token = fetch_as(
        &world,
        Config::default(),
        &[],
        "myacr.azurecr.io/app",
        &other,
    )
    .unwrap();
    assert_refresh_token(
        &token,
        &format!(
            "aad:{POD_CLIENT_B}@login.microsoftonline.com;sub=system:serviceaccount:team-a:app"
        ),
    );
    assert_eq!(
        world.aad.requests()[1].path(),
        format!("/{TENANT_B}/oauth2/v2.0/token")
    );
}

#[test]
fn an_image_on_a_mirror_is_fetched_as_the_node_even_for_a_pod_with_its_own_identity() {
    let world = World::new();
    let app = account("team-a", "app", &POD);
    let rule = r#"{"registryMirrors": {"mcr.microsoft.com": "myacr.azurecr.io"}}"#;
    let token = fetch_as(
        &world,
        config(rule),
        &[],
        "mcr.microsoft.com/oss/app:1",
        &app,
    )
    .unwrap();
    assert_refresh_token(&token, "imds:system");
    assert_eq!(world.imds.request_count(), 1, "the node's identity");
    assert_eq!(world.aad.requests().len(), 0, "not the pod's");
    let registry = world.registry_requests("myacr.azurecr.io");
    assert_eq!(registry.len(), 2);
    assert_eq!(registry[1].form("tenant"), None);
    // The same pod pulling from the login server itself is fetched as itself.
    let token = fetch_as(&world, config(rule), &[], "myacr.azurecr.io/app", &app).unwrap();
    assert_refresh_token(
        &token,
        &format!("aad:{POD_CLIENT}@login.microsoftonline.com;sub=system:serviceaccount:team-a:app"),
    );
    // A rule may opt mirrored images into the pod's identity.
    let opted = r#"{"registryMirrors": {"mcr.microsoft.com": "myacr.azurecr.io"}, "mirrorsUsePodIdentity": true}"#;
    let token = fetch_as(
        &world,
        config(opted),
        &[],
        "mcr.microsoft.com/oss/app:1",
        &app,
    )
    .unwrap();
    assert_refresh_token(
        &token,
        &format!("aad:{POD_CLIENT}@login.microsoftonline.com;sub=system:serviceaccount:team-a:app"),
    );
    assert_eq!(world.aad.requests().len(), 2);
    assert_eq!(world.imds.request_count(), 1);
}

#[test]
fn the_pods_identity_goes_to_the_cloud_of_the_image_or_to_azure_authority_host() {
    let world = World::new();
    let app = account("team-a", "app", &POD);
    let token = fetch_as(&world, Config::default(), &[], "myacr.azurecr.cn/app", &app).unwrap();
    assert_refresh_token(
        &token,
        &format!("aad:{POD_CLIENT}@login.chinacloudapi.cn;sub=system:serviceaccount:team-a:app"),
    );
    let authority = [(
        "AZURE_AUTHORITY_HOST",
        "https://login.contoso.example".to_owned(),
    )];
    let token = fetch_as(
        &world,
        Config::default(),
        &authority,
        "myacr.azurecr.io/app",
        &app,
    )
    .unwrap();
    assert_refresh_token(
        &token,
        &format!("aad:{POD_CLIENT}@login.contoso.example;sub=system:serviceaccount:team-a:app"),
    );
    // Renamed annotation keys: the official ones are then ignored.
    let renamed = config(
        r#"{"clientIdAnnotation": "example.com/acr-client", "tenantIdAnnotation": "example.com/acr-tenant"}"#,
    );
    let custom = account(
        "team-a",
        "app",
        &[
            ("example.com/acr-client", POD_CLIENT),
            ("example.com/acr-tenant", TENANT),
        ],
    );
    fetch_as(
        &world,
        renamed.clone(),
        &[],
        "myacr.azurecr.io/app",
        &custom,
    )
    .unwrap();
    assert_eq!(world.aad.request_count(), 3);
    fetch_as(&world, renamed, &[], "myacr.azurecr.io/app", &app).unwrap();
    assert_eq!(
        world.aad.request_count(),
        3,
        "the official keys are not read"
    );
    assert_eq!(world.imds.request_count(), 1, "the node's identity instead");
}

#[test]
fn no_annotation_is_the_node_identity_and_one_is_an_error_before_any_request() {
    let world = World::new();
    let bare = account("team-a", "app", &[]);
    let token = fetch_as(
        &world,
        Config::default(),
        &[],
        "myacr.azurecr.io/app",
        &bare,
    )
    .unwrap();
    assert_refresh_token(&token, "imds:system");
    assert_eq!(world.aad.request_count(), 0);
    let before = world.request_count();
    for (annotations, missing) in [
        (&POD[..1], TENANT_ID_ANNOTATION),
        (&POD[1..], CLIENT_ID_ANNOTATION),
    ] {
        let half = account("team-a", "app", annotations);
        let error = fetch_as(
            &world,
            Config::default(),
            &[],
            "myacr.azurecr.io/app",
            &half,
        )
        .unwrap_err();
        assert!(matches!(error, Error::NoCredentials(_)), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("service account team-a/app: annotation")
                && message.contains(&format!("{missing} is missing")),
            "{message}"
        );
        assert_no_token(&message, &half);
    }
    assert_eq!(world.request_count(), before, "no request at all");
}

#[test]
fn azure_ad_refusals_name_the_service_account_and_never_the_token() {
    let world = World::new();
    let expired = account_with(
        service_account_token("team-a", "app", TOKEN_EXCHANGE_AUDIENCE, now() - 60),
        &POD,
    );
    let other_audience = account_with(
        service_account_token("team-a", "app", "sts.amazonaws.com", now() + 3600),
        &POD,
    );
    let cases = [
        (
            account("team-c", "intruder", &POD),
            "team-c/intruder",
            "HTTP 400: invalid_client: AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:team-c:intruder'.",
        ),
        (other_audience, "team-a/app", "AADSTS700212"),
        (expired, "team-a/app", "AADSTS700024"),
        (
            account(
                "team-a",
                "app",
                &[
                    (CLIENT_ID_ANNOTATION, POD_CLIENT_B),
                    (TENANT_ID_ANNOTATION, TENANT),
                ],
            ),
            "team-a/app",
            "HTTP 400: unauthorized_client: AADSTS700016",
        ),
        (
            account(
                "team-a",
                "app",
                &[
                    (CLIENT_ID_ANNOTATION, POD_CLIENT),
                    (TENANT_ID_ANNOTATION, "contoso.onmicrosoft.com"),
                ],
            ),
            "team-a/app",
            "Azure AD answered HTTP 400: invalid_request: AADSTS90002: Tenant 'contoso.onmicrosoft.com' not found.",
        ),
    ];
    for (account, name, detail) in cases {
        let error = fetch_as(
            &world,
            Config::default(),
            &[],
            "myacr.azurecr.io/app",
            &account,
        )
        .unwrap_err();
        assert!(matches!(error, Error::ServiceAccount { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "service account {name} ({CLIENT_ID_ANNOTATION} = "
            )),
            "{message}"
        );
        assert!(message.contains(detail), "{detail}: {message}");
        assert!(
            !message.contains("Trace ID") && !message.contains('\n'),
            "{message}"
        );
        assert_no_token(&message, &account);
    }
    assert_eq!(world.aad.request_count(), 5, "refusals are not retried");
    assert_eq!(world.imds.request_count(), 0, "no fallback to the node");
}

#[test]
fn a_throttling_azure_ad_is_not_waited_for_beyond_the_budget() {
    let world = World::new();
    let app = account("team-a", "app", &POD);
    // Azure AD asks for 60 s: more than a fetch waits.
    world
        .knobs
        .aad_throttle
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let error = fetch_as(&world, Config::default(), &[], "myacr.azurecr.io/app", &app).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "service account team-a/app ({CLIENT_ID_ANNOTATION} = {POD_CLIENT}, \
             {TENANT_ID_ANNOTATION} = {TENANT}): throttled by Azure AD; try again later"
        )
    );
    assert_eq!(world.aad.request_count(), 1);
    // A short Retry-After is waited for, and the next answer used.
    *world.knobs.retry_after.lock().unwrap() = Some("1".into());
    world
        .knobs
        .aad_throttle
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let token = fetch_as(&world, Config::default(), &[], "myacr.azurecr.io/app", &app).unwrap();
    assert_refresh_token(
        &token,
        &format!("aad:{POD_CLIENT}@login.microsoftonline.com;sub=system:serviceaccount:team-a:app"),
    );
    assert_eq!(world.aad.request_count(), 3);
}
