//! The ACR backend through the built binary, against the loopback fakes of Azure AD, IMDS
//! and ACR registries (`icp_test_kit::azure`), reached under their real names
//! through `IMAGE_CREDENTIAL_PROVIDER_RESOLVE` and trusted through `SSL_CERT_FILE`: the
//! embedded rule, rules files, the host table with request counts, one-line errors, and
//! the `acr-credential-provider` drop-in; and the kubelet's service-account-token mode
//! (KEP-4412), each answer checked against the model of the kubelet in that mode: a pod's
//! own identity, the node's as a fallback, isolation between service accounts, one
//! exchange for many pods of one account, and refusals; AKS identity bindings in
//! `acr/identity_binding.rs`.

use crate::common;
#[path = "acr/identity_binding.rs"]
mod identity_binding;

use std::path::{Path, PathBuf};

use common::kubelet::service_account::{CacheType, Kubelet, Outcome, Pod, TokenAttributes};
use common::{API_VERSIONS, Plugin, pod, request};
use icp_test_kit::Reply;
use icp_test_kit::azure::*;

const USERNAME: &str = "00000000-0000-0000-0000-000000000000";

/// The binary with `args`, sent to `world`'s fakes.
fn plugin<I, S>(world: &World, args: I) -> Plugin
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    plugin_at(
        world,
        Path::new(env!("CARGO_BIN_EXE_image-credential-provider")),
        args,
    )
}

fn plugin_at<I, S>(world: &World, program: &Path, args: I) -> Plugin
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    world
        .env()
        .into_iter()
        .fold(Plugin::at(program, args), |plugin, (name, value)| {
            plugin.env(name, value)
        })
        .env("SSL_CERT_FILE", ca_file())
}

/// `get IMAGE` without the token cache, with the rules file `rules` if any.
fn get(world: &World, image: &str, rules: Option<&Path>) -> Plugin {
    let mut args = vec!["--no-cache".to_owned(), "get".to_owned(), image.to_owned()];
    if let Some(rules) = rules {
        args.extend(["--config".to_owned(), rules.display().to_string()]);
    }
    plugin(world, args)
}

/// Seconds in a Go duration such as `2h54m59s`.
fn seconds(duration: &serde_json::Value) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in duration.as_str().unwrap().chars() {
        match c {
            '0'..='9' => number.push(c),
            unit => {
                let value: u64 = number.parse().unwrap();
                number.clear();
                total += value
                    * match unit {
                        'h' => 3600,
                        'm' => 60,
                        _ => 1,
                    };
            }
        }
    }
    total
}

fn assert_acr_entry(response: &serde_json::Value, key: &str) {
    let entry = &response["auth"][key];
    assert_eq!(entry["username"], USERNAME, "{response}");
    assert!(
        entry["password"].as_str().unwrap().starts_with("eyJ"),
        "{response}"
    );
}

fn rules_file(world: &World, acr_section: &str, patterns: &str) -> PathBuf {
    world.file(
        "rules.yaml",
        &format!(
            "rules:\n  - matchImages: {patterns}\n    provider: acr\n    acr: {acr_section}\n"
        ),
    )
}

#[test]
fn the_embedded_rule_answers_with_a_refresh_token_and_its_real_expiry() {
    let world = World::new();
    for image in [
        "myacr.azurecr.io/app:v1",
        "myacr.eastus.geo.azurecr.io/team/app",
        "myacr.azurecr.cn/app",
        "myacr.azurecr.us/app",
    ] {
        let response = get(&world, image, None).run().json();
        let registry = image.split('/').next().unwrap();
        assert_acr_entry(&response, registry);
        assert_eq!(response["auth"].as_object().unwrap().len(), 1, "{response}");
        assert_eq!(response["cacheKeyType"], "Registry");
        // Three hours of refresh token life, less the safety margin.
        let cache = seconds(&response["cacheDuration"]);
        assert!((2 * 3600..3 * 3600).contains(&cache), "{response}");
    }
    assert_eq!(world.imds.request_count(), 4);
    assert!(
        world
            .imds
            .requests()
            .iter()
            .all(|r| r.header("Metadata") == Some("true"))
    );
}

#[test]
fn plugin_mode_answers_in_the_requests_api_version() {
    let world = World::new();
    for version in API_VERSIONS {
        let run = plugin(&world, ["--no-cache"])
            .stdin(request(version, "myacr.azurecr.io/app"))
            .run();
        let response = run.json();
        assert_eq!(response["apiVersion"], version);
        assert_eq!(response["kind"], "CredentialProviderResponse");
        assert_acr_entry(&response, "myacr.azurecr.io");
        assert!(!run.stderr.contains("eyJ"), "{}", run.stderr);
    }
}

#[test]
fn a_rules_file_with_a_service_principal_and_a_mirror() {
    let world = World::new();
    world.file("sp-secret", SP_SECRET);
    let rules = rules_file(
        &world,
        &format!(
            "{{identity: servicePrincipal, clientId: {SP_CLIENT}, tenantId: {TENANT}, clientSecretFile: sp-secret, registryMirrors: {{mirror.example: myacr.azurecr.io}}}}"
        ),
        "['*.azurecr.io', 'mirror.example']",
    );
    let run = get(&world, "mirror.example/team/app:1", Some(&rules)).run();
    let response = run.json();
    assert_acr_entry(&response, "mirror.example");
    assert_acr_entry(&response, "myacr.azurecr.io");
    assert_eq!(
        response["auth"]["mirror.example"],
        response["auth"]["myacr.azurecr.io"]
    );
    assert_eq!(world.registry_requests("mirror.example").len(), 0);
    assert_eq!(
        world.aad.requests()[0].form("client_secret").as_deref(),
        Some(SP_SECRET)
    );
    assert!(!run.stderr.contains(SP_SECRET));
    // A wrong secret: one line naming Azure AD's refusal, without the secret.
    std::fs::write(world.dir().join("sp-secret"), "wrong-secret").unwrap();
    let run = get(&world, "myacr.azurecr.io/app", Some(&rules)).run();
    run.assert_error(1, "access denied by Azure AD: HTTP 401: invalid_client: AADSTS7000215: Invalid client secret provided.");
    assert!(!run.stderr.contains("wrong-secret"));
}

#[test]
fn look_alikes_get_nothing_and_cause_no_request() {
    let world = World::new();
    let catch_all = rules_file(
        &world,
        "{}",
        "['*', '*.*', '*.*.*', '*.*.*.*', '*.*.*.*.*', '*.*:443']",
    );
    for host in HOSTILE_HOSTS.iter().chain(&["myacr.azurecr.io:443"]) {
        let image = format!("{host}/app");
        for rules in [None, Some(catch_all.as_path())] {
            let response = get(&world, &image, rules).run().json();
            assert_eq!(
                response["auth"],
                serde_json::json!({}),
                "{image}: {response}"
            );
        }
    }
    assert_eq!(world.request_count(), 0);
    // A realm on another host: no Azure AD token is even asked for.
    let realm = r#"Bearer realm="https://myacr.azurecr.io.evil.example/oauth2/token",service="myacr.azurecr.io""#;
    *world.knobs.challenge_reply.lock().unwrap() =
        Some(Reply::status(401).header("Www-Authenticate", realm));
    let run = get(&world, "myacr.azurecr.io/app", None).run();
    run.assert_error(
        1,
        "registry myacr.azurecr.io: the challenge's realm is on \"myacr.azurecr.io.evil.example\"",
    );
    assert_eq!(world.imds.request_count() + world.aad.request_count(), 0);
    assert_eq!(
        world
            .registry_requests("myacr.azurecr.io.evil.example")
            .len(),
        0
    );
}

#[test]
fn failures_are_one_line_naming_the_cause() {
    let world = World::new();
    *world.knobs.exchange_reply.lock().unwrap() = Some(Reply::json(
        401,
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid access token"}]}"#,
    ));
    get(&world, "myacr.azurecr.io/app", None)
        .run()
        .assert_error(
            1,
            "access denied by myacr.azurecr.io: HTTP 401: UNAUTHORIZED: invalid access token",
        );
    *world.knobs.exchange_reply.lock().unwrap() = None;
    *world.knobs.retry_after.lock().unwrap() = Some("3600".into());
    world
        .knobs
        .challenge_throttle
        .store(100, std::sync::atomic::Ordering::SeqCst);
    get(&world, "myacr.azurecr.io/app", None)
        .run()
        .assert_error(1, "throttled by myacr.azurecr.io; try again later");
    world
        .knobs
        .challenge_throttle
        .store(0, std::sync::atomic::Ordering::SeqCst);
    *world.knobs.refresh_token.lock().unwrap() = Some(jwt(&format!(r#"{{"exp":{}}}"#, now() - 10)));
    get(&world, "myacr.azurecr.io/app", None)
        .run()
        .assert_error(1, "the refresh token has already expired");
    // No IMDS at all.
    let run = get(&world, "myacr.azurecr.io/app", None)
        .env(
            "IMAGE_CREDENTIAL_PROVIDER_AZURE_IMDS_ENDPOINT",
            "http://127.0.0.1:9",
        )
        .run();
    run.assert_error(
        1,
        "no Azure credentials: no managed identity: cannot reach IMDS (not on an Azure VM, or IMDS \
         unreachable; else configure acr.identity, an azure.json, or AZURE_FEDERATED_TOKEN_FILE with \
         AZURE_CLIENT_ID and AZURE_TENANT_ID): cannot connect to 127.0.0.1:9",
    );
}

#[test]
fn check_config_reports_a_missing_secret_file() {
    let world = World::new();
    let rules = rules_file(
        &world,
        &format!(
            "{{identity: servicePrincipal, clientId: {SP_CLIENT}, tenantId: {TENANT}, clientSecretFile: missing-secret}}"
        ),
        "['*.azurecr.io']",
    );
    let run = plugin(
        &world,
        ["check-config", "--config", rules.to_str().unwrap()],
    )
    .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("no Azure credentials") && run.stderr.contains("missing-secret"),
        "{}",
        run.stderr
    );
    let rules = rules_file(&world, "{identity: certificate}", "['*.azurecr.io']");
    let run = plugin(
        &world,
        ["check-config", "--config", rules.to_str().unwrap()],
    )
    .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("certificate"), "{}", run.stderr);
}

/// The binary under the official provider's name, as a symlink in `dir`.
fn drop_in(dir: &Path) -> PathBuf {
    let link = dir.join("acr-credential-provider");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_image-credential-provider"), &link).unwrap();
    link
}

#[test]
fn drop_in_takes_azure_json_and_registry_mirrors() {
    let world = World::new();
    let program = drop_in(world.dir());
    // A tenant of its own, so no token cached by an earlier run is reused.
    let tenant = format!("tenant-{}-{}", std::process::id(), now());
    let azure_json = world.file(
        "azure.json",
        &format!(r#"{{"cloud":"AzurePublicCloud","tenantId":"{tenant}","subscriptionId":"s","resourceGroup":"rg","useManagedIdentityExtension":true,"userAssignedIdentityID":"{MI_CLIENT}"}}"#),
    );
    let args = |extra: &[&str]| {
        let mut args = vec![azure_json.display().to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let flag_forms: [&[&str]; 3] = [
        &["--registry-mirror=mirror.example:myacr.azurecr.io"],
        &[
            "--registry-mirror",
            "mirror.example:myacr.azurecr.io",
            "--v=2",
        ],
        &["-r", "mirror.example:myacr.azurecr.io"],
    ];
    for (version, extra) in API_VERSIONS.iter().zip(flag_forms) {
        let run = plugin_at(&world, &program, args(extra))
            .stdin(request(version, "mirror.example/app"))
            .run();
        let response = run.json();
        assert_eq!(response["apiVersion"], *version);
        assert_acr_entry(&response, "mirror.example");
        assert_acr_entry(&response, "myacr.azurecr.io");
    }
    // The first run fetched (its tenant is new to the cache), as the user-assigned
    // identity, from the login server.
    assert!(world.imds.request_count() >= 1);
    assert!(
        world
            .imds
            .requests()
            .iter()
            .all(|r| r.query("client_id").as_deref() == Some(MI_CLIENT))
    );
    assert!(
        world
            .registry_requests("myacr.azurecr.io")
            .iter()
            .all(|r| r.path() == "/v2/" || r.form("tenant").as_deref() == Some(tenant.as_str()))
    );
    assert_eq!(world.registry_requests("mirror.example").len(), 0);
    // Other registries get an empty answer, and nothing is asked.
    let before = world.request_count();
    for image in [
        "docker.io/library/busybox",
        "myacr.azurecr.io.evil.example/app",
        "myacr.azurecr.cn/app",
    ] {
        let run = plugin_at(&world, &program, args(&[]))
            .stdin(request(API_VERSIONS[0], image))
            .run();
        assert_eq!(run.json()["auth"], serde_json::json!({}), "{image}");
    }
    assert_eq!(world.request_count(), before);
    // The official provider's command-line errors.
    plugin_at(&world, &program, Vec::<String>::new())
        .run()
        .assert_error(2, "the azure.json config file is not provided");
    plugin_at(
        &world,
        &program,
        args(&["--registry-mirror=mirror.example"]),
    )
    .stdin(request(API_VERSIONS[0], "mirror.example/app"))
    .run()
    .assert_error(1, "not mirror:loginserver");
    let run = plugin_at(&world, &program, ["--version"]).run();
    assert!(
        run.stdout.starts_with("acr-credential-provider version v"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_port_that_is_no_tcp_port_is_an_invalid_image_and_causes_no_request() {
    let world = World::new();
    let catch_all = rules_file(&world, "{}", "['*.azurecr.io:99999', '*.azurecr.io:65536']");
    for image in ["myacr.azurecr.io:99999/app", "myacr.azurecr.io:65536/app"] {
        for rules in [None, Some(catch_all.as_path())] {
            let mut args = vec!["--no-cache".to_owned()];
            if let Some(rules) = rules {
                args.extend(["--config".to_owned(), rules.display().to_string()]);
            }
            let run = plugin(&world, args)
                .stdin(request(API_VERSIONS[0], image))
                .run();
            run.assert_error(1, "is not a valid image reference");
        }
    }
    assert_eq!(world.request_count(), 0);
}

#[test]
fn a_refresh_token_claiming_centuries_is_cached_for_a_day_at_most() {
    let world = World::new();
    for exp in ["100000000000", "32503680000", "1e300"] {
        *world.knobs.refresh_token.lock().unwrap() = Some(jwt(&format!(r#"{{"exp":{exp}}}"#)));
        let run = get(&world, "myacr.azurecr.io/app", None).run();
        if exp == "1e300" {
            run.assert_error(1, "the JWT exp claim is out of range");
            continue;
        }
        let observed = common::kubelet::read(
            API_VERSIONS[0],
            "myacr.azurecr.io/app",
            run.code,
            &run.stdout,
        )
        .unwrap_or_else(|e| panic!("{exp}: the kubelet refuses the answer: {e}"));
        assert_eq!(observed.credentials.len(), 1);
        let cache = seconds(&run.json()["cacheDuration"]);
        assert!(cache <= 24 * 3600, "{exp}: {cache}s");
    }
}

/// The official annotation keys of a pod's own identity.
const CLIENT_ID_KEY: &str = "kubernetes.azure.com/acr-client-id";
const TENANT_ID_KEY: &str = "kubernetes.azure.com/acr-tenant-id";
/// The image every pod here pulls.
const IMAGE: &str = "myacr.azurecr.io/team/app:v1";

/// The annotations of a service account whose pods pull as [`POD_CLIENT`].
const OWN_IDENTITY: [(&str, &str); 2] = [(CLIENT_ID_KEY, POD_CLIENT), (TENANT_ID_KEY, TENANT)];

/// The kubelet configured as the README says for ACR: audience `api://AzureADTokenExchange`,
/// `cacheType: ServiceAccount`, and both annotation keys `required` (pods of accounts
/// without them get no token and no credentials) or optional.
fn kubelet(required: bool) -> Kubelet {
    let keys = vec![CLIENT_ID_KEY.to_owned(), TENANT_ID_KEY.to_owned()];
    let (required_keys, optional_keys) = if required {
        (keys, Vec::new())
    } else {
        (Vec::new(), keys)
    };
    Kubelet::new(
        API_VERSIONS[0],
        Some(TokenAttributes {
            audience: "api://AzureADTokenExchange".to_owned(),
            cache_type: CacheType::ServiceAccount,
            require_service_account: false,
            required_keys,
            optional_keys,
        }),
    )
}

/// One pull of [`IMAGE`] by `pod` through `kubelet`, the plugin run with `args` when the
/// kubelet runs it. Returns the outcome, the token sent (if any) and the plugin's stderr.
fn pull(
    world: &World,
    kubelet: &mut Kubelet,
    pod: &Pod,
    args: &[String],
) -> (Outcome, Option<String>, String) {
    let mut stderr = String::new();
    let outcome = kubelet.pull(IMAGE, Some(pod), |sent| {
        let run = plugin(world, args).stdin(sent.stdin.clone()).run();
        stderr = run.stderr;
        (run.code, run.stdout)
    });
    let token = outcome.sent.as_ref().and_then(|sent| sent.token.clone());
    (outcome, token, stderr)
}

/// `--cache-dir DIR` (shared by the runs given it), or `--no-cache`.
fn cache_args(cache: Option<&Path>) -> Vec<String> {
    match cache {
        Some(dir) => vec!["--cache-dir".to_owned(), dir.display().to_string()],
        None => vec!["--no-cache".to_owned()],
    }
}

/// The one credential the kubelet pulls with, after checking it accepted the answer.
fn credential(outcome: &Outcome) -> String {
    assert_eq!(outcome.error, None, "the kubelet refused the answer");
    assert!(outcome.plugin_ran);
    assert_eq!(outcome.credentials.len(), 1, "{:?}", outcome.credentials);
    let (username, password) = outcome.credentials[0].clone();
    assert_eq!(username, USERNAME);
    password
}

/// The access token the registry exchanged for `password` (the fake puts it in `sub`):
/// which application, at which authority, for which service account.
fn exchanged_for(password: &str) -> String {
    let claims = password.split('.').nth(1).unwrap();
    let claims =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

/// What the registry fake counted: `(challenges, exchanges)` at [`IMAGE`]'s registry.
fn registry_counts(world: &World) -> (usize, usize) {
    let requests = world.registry_requests("myacr.azurecr.io");
    let count = |path: &str| requests.iter().filter(|r| r.path() == path).count();
    (count("/v2/"), count("/oauth2/exchange"))
}

/// No part of `token` (each of its three dot-separated parts) is in `text`.
fn assert_no_token_part(text: &str, token: &str, what: &str) {
    for part in token.split('.') {
        assert!(!text.contains(part), "a token part is in {what}");
    }
}

/// No part of `token` in a file name or a file of `dir`.
fn assert_no_token_in_dir(dir: &Path, token: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let content = std::fs::read(&path).unwrap_or_default();
        let content = String::from_utf8_lossy(&content);
        assert_no_token_part(&name, token, "a cache file name");
        assert_no_token_part(&content, token, "a cache file");
    }
}

#[test]
fn a_pod_pulls_as_its_own_identity_with_its_own_token() {
    let world = World::new();
    let cache = tempfile::tempdir().unwrap();
    let mut args = cache_args(Some(cache.path()));
    args.push("-vvv".to_owned());
    let web = pod("team-a", "web-1", "app", &OWN_IDENTITY);
    let (outcome, token, stderr) = pull(&world, &mut kubelet(true), &web, &args);
    let token = token.expect("the kubelet sent the pod's token");
    let password = credential(&outcome);
    assert_ne!(password, token);
    assert_eq!(
        exchanged_for(&password),
        format!("aad:{POD_CLIENT}@login.microsoftonline.com;sub=system:serviceaccount:team-a:app")
    );
    // Azure AD got the pod's token as the assertion of the annotated application, in the
    // annotated tenant; the node's identity was not asked.
    let aad = world.aad.requests();
    assert_eq!(aad.len(), 1);
    assert_eq!(aad[0].path(), format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(aad[0].form("client_id").as_deref(), Some(POD_CLIENT));
    assert_eq!(aad[0].form("client_assertion"), Some(token.clone()));
    assert_eq!(world.imds.request_count(), 0);
    assert_eq!(registry_counts(&world), (1, 1));
    let exchange = &world.registry_requests("myacr.azurecr.io")[1];
    assert_eq!(exchange.form("tenant").as_deref(), Some(TENANT));
    // Logged at -vvv, and no part of the token anywhere in the logs or the cache.
    assert!(stderr.contains("team-a/app"), "{stderr}");
    assert_no_token_part(&stderr, &token, "stderr");
    assert_no_token_part(&stderr, &password, "stderr");
    assert_no_token_in_dir(cache.path(), &token);
}

#[test]
fn without_annotations_or_token_the_node_identity_pulls() {
    let world = World::new();
    let args = cache_args(None);
    // Optional keys: a service account without them still gets a token.
    let bare = pod("team-a", "web-1", "plain", &[]);
    let (outcome, token, _) = pull(&world, &mut kubelet(false), &bare, &args);
    assert!(token.is_some());
    assert_eq!(exchanged_for(&credential(&outcome)), "imds:system");
    // A kubelet without tokenAttributes sends no token.
    let mut plain_kubelet = Kubelet::new(API_VERSIONS[0], None);
    let (outcome, token, _) = pull(&world, &mut plain_kubelet, &bare, &args);
    assert_eq!(token, None);
    assert_eq!(exchanged_for(&credential(&outcome)), "imds:system");
    assert_eq!(world.imds.request_count(), 2);
    assert_eq!(world.aad.request_count(), 0);
    // Required keys: the kubelet does not even run the plugin for that pod.
    let (outcome, _, _) = pull(&world, &mut kubelet(true), &bare, &args);
    assert!(!outcome.plugin_ran);
    assert!(outcome.credentials.is_empty());
}

#[test]
fn one_annotation_only_is_one_line_naming_the_missing_one_and_the_account() {
    let world = World::new();
    for (annotations, missing, present) in [
        (&OWN_IDENTITY[..1], TENANT_ID_KEY, CLIENT_ID_KEY),
        (&OWN_IDENTITY[1..], CLIENT_ID_KEY, TENANT_ID_KEY),
    ] {
        let half = pod("team-a", "web-1", "app", annotations);
        let (stdin, token) =
            common::service_account_request(IMAGE, &half, "api://AzureADTokenExchange");
        let run = plugin(&world, ["--no-cache"]).stdin(stdin).run();
        run.assert_error(
            1,
            &format!(
                "): no Azure credentials: service account team-a/app: \
                 annotation {missing} is missing or empty while {present} is set"
            ),
        );
        assert_no_token_part(&run.stderr, &token, "stderr");
    }
    assert_eq!(world.request_count(), 0);
}

#[test]
fn a_rejected_token_is_one_line_naming_the_service_account() {
    let world = World::new();
    // team-c/intruder names an application that trusts no token of its.
    let intruder = pod("team-c", "web-1", "intruder", &OWN_IDENTITY);
    let (outcome, token, stderr) = pull(&world, &mut kubelet(true), &intruder, &cache_args(None));
    assert_eq!(outcome.error.as_deref(), Some("exit status 1"));
    assert!(outcome.credentials.is_empty());
    let token = token.unwrap();
    let expected = format!(
        "service account team-c/intruder ({CLIENT_ID_KEY} = {POD_CLIENT}, \
         {TENANT_ID_KEY} = {TENANT}): access denied by Azure AD: HTTP 400: invalid_client: AADSTS700213: \
         No matching federated identity record found for presented assertion subject \
         'system:serviceaccount:team-c:intruder'.\n"
    );
    assert!(
        stderr.starts_with("error: acr backend (rule ") && stderr.ends_with(&expected),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
    assert_no_token_part(&stderr, &token, "stderr");
    // At -vvv as well: the logs never hold the token.
    let (_, token, stderr) = pull(
        &world,
        &mut kubelet(true),
        &intruder,
        &["--no-cache".to_owned(), "-vvv".to_owned()],
    );
    assert!(stderr.lines().count() > 1, "{stderr}");
    assert_no_token_part(&stderr, &token.unwrap(), "stderr");
    assert_eq!(world.aad.request_count(), 2);
    assert_eq!(world.imds.request_count(), 0, "no fallback to the node");
    assert_eq!(registry_counts(&world).1, 0);
}

#[test]
fn service_accounts_never_share_a_token_and_pods_of_one_do() {
    let world = World::new();
    let cache = tempfile::tempdir().unwrap();
    let args = cache_args(Some(cache.path()));
    let other_identity = [(CLIENT_ID_KEY, POD_CLIENT_B), (TENANT_ID_KEY, TENANT_B)];
    // Each pull is a kubelet with an empty cache of its own (as after a restart: its cache
    // is in memory, the plugin's on disk), so that only the plugin's cache can share.
    let cases = [
        (pod("team-a", "web-1", "app", &OWN_IDENTITY), 1, "first"),
        (
            pod("team-a", "web-2", "app", &OWN_IDENTITY),
            1,
            "same account",
        ),
        (
            pod("team-b", "web-1", "app", &OWN_IDENTITY),
            2,
            "same name, other namespace",
        ),
        (
            pod("team-a", "batch-1", "batch", &OWN_IDENTITY),
            3,
            "other account",
        ),
        (
            pod("team-a", "web-3", "app", &other_identity),
            4,
            "same account, other annotations",
        ),
        (
            pod("team-a", "web-4", "app", &OWN_IDENTITY),
            4,
            "same account again",
        ),
    ];
    let mut passwords = Vec::new();
    let mut fetched = 0;
    for (pod, fetches, case) in cases {
        let (outcome, token, _) = pull(&world, &mut kubelet(true), &pod, &args);
        let password = credential(&outcome);
        let token = token.unwrap();
        assert_eq!(world.aad.request_count(), fetches, "{case}");
        assert_eq!(registry_counts(&world).1, fetches, "{case}");
        let account = pod.service_account.as_ref().unwrap();
        let client = account.annotations[CLIENT_ID_KEY].clone();
        assert_eq!(
            exchanged_for(&password),
            format!(
                "aad:{client}@login.microsoftonline.com;sub=system:serviceaccount:{}:{}",
                pod.namespace, account.name
            ),
            "{case}"
        );
        // A fetch used the pulling pod's own token.
        if fetches > fetched {
            let last = world.aad.requests().pop().unwrap();
            assert_eq!(last.form("client_assertion"), Some(token.clone()), "{case}");
        }
        fetched = fetches;
        assert_no_token_in_dir(cache.path(), &token);
        passwords.push(password);
    }
    assert_eq!(passwords[0], passwords[1]);
    assert_eq!(passwords[0], passwords[5]);
    for other in &passwords[2..5] {
        assert_ne!(*other, passwords[0]);
    }
    assert_eq!(world.imds.request_count(), 0);
}

/// Runs 16 pods of team-a/app at once (each its own token, each through a kubelet with no
/// cache entry for it yet, as when they start together) with `cache`, and returns the
/// tokens sent and the credentials the kubelet got.
fn sixteen_pods_at_once(world: &World, cache: Option<&Path>) -> (Vec<String>, Vec<String>) {
    *world.knobs.aad_delay.lock().unwrap() = std::time::Duration::from_millis(500);
    let args = cache_args(cache);
    let results: Vec<(String, String)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let args = &args;
                scope.spawn(move || {
                    let web = pod("team-a", &format!("web-{i}"), "app", &OWN_IDENTITY);
                    let (outcome, token, _) = pull(world, &mut kubelet(true), &web, args);
                    (token.unwrap(), credential(&outcome))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    results.into_iter().unzip()
}

#[test]
fn sixteen_pods_of_one_account_starting_at_once_cost_one_exchange() {
    let world = World::new();
    let cache = tempfile::tempdir().unwrap();
    let (tokens, passwords) = sixteen_pods_at_once(&world, Some(cache.path()));
    assert_eq!(
        world.aad.request_count(),
        1,
        "one Azure AD token for 16 pods"
    );
    assert_eq!(
        registry_counts(&world),
        (1, 1),
        "one challenge and one exchange"
    );
    let assertion = world.aad.requests()[0].form("client_assertion").unwrap();
    assert!(tokens.contains(&assertion), "one of the pods' own tokens");
    assert!(passwords.iter().all(|p| *p == passwords[0]));
    for token in &tokens {
        assert_no_token_in_dir(cache.path(), token);
    }
    // Without the cache, each pod fetches.
    let world = World::new();
    let (tokens, _) = sixteen_pods_at_once(&world, None);
    assert_eq!(world.aad.request_count(), 16);
    assert_eq!(registry_counts(&world), (16, 16));
    let mut assertions: Vec<String> = world
        .aad
        .requests()
        .iter()
        .map(|r| r.form("client_assertion").unwrap())
        .collect();
    let mut tokens = tokens;
    assertions.sort();
    tokens.sort();
    assert_eq!(assertions, tokens, "each pod's own token, once");
}

#[test]
fn renamed_annotation_keys_from_the_rule() {
    let world = World::new();
    let rules = rules_file(
        &world,
        "{clientIdAnnotation: example.com/acr-client, tenantIdAnnotation: example.com/acr-tenant}",
        "['*.azurecr.io']",
    );
    let mut kubelet = Kubelet::new(
        API_VERSIONS[0],
        Some(TokenAttributes {
            audience: "api://AzureADTokenExchange".to_owned(),
            cache_type: CacheType::ServiceAccount,
            require_service_account: true,
            required_keys: vec![
                "example.com/acr-client".into(),
                "example.com/acr-tenant".into(),
            ],
            optional_keys: Vec::new(),
        }),
    );
    let web = pod(
        "team-a",
        "web-1",
        "app",
        &[
            ("example.com/acr-client", POD_CLIENT_B),
            ("example.com/acr-tenant", TENANT_B),
        ],
    );
    let args = vec![
        "--no-cache".to_owned(),
        "--config".to_owned(),
        rules.display().to_string(),
    ];
    let (outcome, token, _) = pull(&world, &mut kubelet, &web, &args);
    assert_eq!(
        exchanged_for(&credential(&outcome)),
        format!(
            "aad:{POD_CLIENT_B}@login.microsoftonline.com;sub=system:serviceaccount:team-a:app"
        )
    );
    assert_eq!(world.aad.requests()[0].form("client_assertion"), token);
    assert_eq!(
        world.aad.requests()[0].path(),
        format!("/{TENANT_B}/oauth2/v2.0/token")
    );
}

#[test]
fn the_drop_in_pulls_as_the_pods_identity_too() {
    let world = World::new();
    let program = drop_in(world.dir());
    let azure_json = world.file(
        "azure.json",
        r#"{"cloud":"AzurePublicCloud","useManagedIdentityExtension":true}"#,
    );
    let cache = world.dir().join("cache");
    let web = pod("team-a", "web-1", "app", &OWN_IDENTITY);
    let mut kubelet = kubelet(true);
    let outcome = kubelet.pull(IMAGE, Some(&web), |sent| {
        let run = plugin_at(&world, &program, [azure_json.as_os_str()])
            .env("IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR", &cache)
            .stdin(sent.stdin.clone())
            .run();
        (run.code, run.stdout)
    });
    assert_eq!(
        exchanged_for(&credential(&outcome)),
        format!("aad:{POD_CLIENT}@login.microsoftonline.com;sub=system:serviceaccount:team-a:app")
    );
    assert_eq!(world.aad.request_count(), 1);
    assert_eq!(world.imds.request_count(), 0);
}
