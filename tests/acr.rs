//! The ACR backend through the built binary, against the loopback fakes of Azure AD, IMDS
//! and ACR registries (`crates/acr/tests/world`), reached under their real names
//! through `IMAGE_CREDENTIAL_PROVIDER_RESOLVE` and trusted through `SSL_CERT_FILE`: the
//! embedded rule, rules files, the host table with request counts, one-line errors, and
//! the `acr-credential-provider` drop-in.

mod common;
#[path = "../crates/acr/tests/world/mod.rs"]
mod world;

use std::path::{Path, PathBuf};

use common::{API_VERSIONS, Plugin, request};
use icp_http::testing::Reply;
use world::*;

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
