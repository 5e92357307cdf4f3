//! AKS identity bindings through the built binary, every answer read by the model of the
//! kubelet in service-account-token mode, configured as AKS configures it (AgentBaker's
//! `writeCredentialProviderConfig`): the pod's token for `api://AKSIdentityBinding` sent to
//! the loopback identity-binding endpoint (`icp_test_kit::azure::identity_binding`, with a
//! certificate of the cluster's CA only) under its TLS name, reached at the API server's
//! host name, then exchanged at the registry; pods of one service account sharing one
//! exchange (16 at once), other accounts their own; a token of another audience refused
//! unsent; a refusal's one line; `check-config`; and the `--ib-*` flags of the
//! `acr-credential-provider` drop-in, with the provider entry AKS writes.

use std::path::{Path, PathBuf};

use super::{
    USERNAME, cache_args, credential, drop_in, exchanged_for, plugin, plugin_at, registry_counts,
};
use crate::common::kubelet::service_account::{
    CacheType, Kubelet, Node, Outcome, Pod, TokenAttributes,
};
use crate::common::{API_VERSIONS, pod};
use icp_test_kit::azure::identity_binding::{IB_API_SERVER, IB_CLIENT, IB_CLIENT_B, IB_SNI_NAME};
use icp_test_kit::azure::*;

/// The annotation AKS lists in `tokenAttributes`, and the official provider reads.
const CLIENT_ID_KEY: &str = "kubernetes.azure.com/acr-client-id";
const IMAGE: &str = "myacr.azurecr.io/team/app:v1";
/// The audience AKS asks the kubelet for.
const AUDIENCE: &str = "api://AKSIdentityBinding";

/// The kubelet provider config AgentBaker's `writeCredentialProviderConfig` writes on a
/// node pool with pods' own identities for image pulls (`SERVICE_ACCOUNT_IMAGE_PULL_ENABLED`,
/// default client and tenant set), byte for byte, with the world's SNI name, API server
/// name, default client and tenant, and `azure_json` for `/etc/kubernetes/azure.json`.
fn agentbaker_config(azure_json: &Path) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: acr-credential-provider
    matchImages:
      - "*.azurecr.io"
      - "*.azurecr.cn"
      - "*.azurecr.de"
      - "*.azurecr.us"
      - "*.*.geo.azurecr.io"
      - "*.*.geo.azurecr.cn"
      - "*.*.geo.azurecr.de"
      - "*.*.geo.azurecr.us"
    defaultCacheDuration: "10m"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    tokenAttributes:
      serviceAccountTokenAudience: api://AKSIdentityBinding
      requireServiceAccount: false
      cacheType: ServiceAccount
      optionalServiceAccountAnnotationKeys:
        - kubernetes.azure.com/acr-client-id
    args:
      - {}
      - --ib-sni-name={IB_SNI_NAME}
      - --ib-default-client-id={IB_CLIENT}
      - --ib-default-tenant-id={TENANT}
      - --ib-apiserver-ip={IB_API_SERVER}
"#,
        azure_json.display()
    )
}

/// The kubelet as AKS configures it for identity bindings (the `tokenAttributes` of
/// [`agentbaker_config`]).
fn kubelet() -> Kubelet {
    kubelet_for(AUDIENCE)
}

/// That kubelet asking for pods' tokens of `audience`.
fn kubelet_for(audience: &str) -> Kubelet {
    Kubelet::new(
        API_VERSIONS[0],
        Some(TokenAttributes {
            audience: audience.to_owned(),
            cache_type: CacheType::ServiceAccount,
            require_service_account: false,
            required_keys: Vec::new(),
            optional_keys: vec![CLIENT_ID_KEY.to_owned()],
        }),
    )
}

/// A rules file with identity bindings at the world's endpoint (the API server's host
/// name, as AKS passes it) and `extra` fields.
fn rules(world: &World, extra: &str) -> PathBuf {
    world.file(
        "rules.yaml",
        &format!(
            "rules:\n  - matchImages: ['*.azurecr.io']\n    provider: acr\n    acr:\n      identityBindings:\n        sniName: {IB_SNI_NAME}\n        apiServerIp: {IB_API_SERVER}\n        caFile: {}\n{extra}",
            cluster_ca_file().display()
        ),
    )
}

/// One pull of `IMAGE` for `pod` by a fresh kubelet running the binary with `args`.
fn pull(world: &World, pod: &Pod, args: &[String]) -> (Outcome, String, String) {
    pull_with(kubelet(), world, pod, args)
}

/// One pull of `IMAGE` for `pod` by `kubelet` running the binary with `args`.
fn pull_with(
    mut kubelet: Kubelet,
    world: &World,
    pod: &Pod,
    args: &[String],
) -> (Outcome, String, String) {
    let mut stderr = String::new();
    let outcome = kubelet.pull(IMAGE, Some(pod), |sent| {
        let run = plugin(world, args).stdin(sent.stdin.clone()).run();
        stderr = run.stderr;
        (run.code, run.stdout)
    });
    let token = outcome.sent.as_ref().unwrap().token.clone().unwrap();
    (outcome, token, stderr)
}

fn args(rules: &Path, cache: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "-vvv".to_owned(),
        "--config".to_owned(),
        rules.display().to_string(),
    ];
    args.extend(cache_args(cache));
    args
}

fn assert_no_token(text: &str, token: &str) {
    for part in token.split('.') {
        assert!(!text.contains(part), "a token part is in {text}");
    }
    assert!(!text.contains("aad:"), "an access token is in {text}");
}

#[test]
fn a_pod_pulls_as_the_identity_its_service_account_is_bound_to() {
    let world = World::new();
    let rules = rules(&world, "");
    let web = pod("team-a", "web-1", "app", &[(CLIENT_ID_KEY, IB_CLIENT)]);
    let (outcome, token, stderr) = pull(&world, &web, &args(&rules, None));
    assert_eq!(
        exchanged_for(&credential(&outcome)),
        format!("aad:{IB_CLIENT}@identity-binding;sub=system:serviceaccount:team-a:app")
    );
    let sent = world.identity_binding.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("host"), Some(IB_SNI_NAME));
    assert_eq!(sent[0].form("client_assertion"), Some(token.clone()));
    assert_eq!(world.aad.request_count() + world.imds.request_count(), 0);
    assert!(stderr.contains("team-a/app"), "{stderr}");
    assert_no_token(&stderr, &token);
}

#[test]
fn pods_of_one_account_share_one_exchange_and_other_accounts_get_their_own() {
    let world = World::new();
    *world.knobs.registry_delay.lock().unwrap() = std::time::Duration::from_millis(300);
    let rules = rules(&world, &format!("        defaultClientId: {IB_CLIENT}\n"));
    let cache = tempfile::tempdir().unwrap();
    let args = args(&rules, Some(cache.path()));
    let pods: Vec<Pod> = (0..16)
        .map(|i| pod("team-a", &format!("web-{i}"), "app", &[]))
        .chain([pod(
            "team-a",
            "job-1",
            "batch",
            &[(CLIENT_ID_KEY, IB_CLIENT_B)],
        )])
        .collect();
    let results: Vec<(String, String, String)> = std::thread::scope(|scope| {
        let threads: Vec<_> = pods
            .iter()
            .map(|pod| {
                let (world, args) = (&world, &args);
                scope.spawn(move || {
                    let (outcome, token, stderr) = pull(world, pod, args);
                    (credential(&outcome), token, stderr)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let (app, batch) = results.split_at(16);
    assert!(app.iter().all(|(password, ..)| *password == app[0].0));
    assert!(exchanged_for(&app[0].0).starts_with(&format!("aad:{IB_CLIENT}@")));
    assert!(exchanged_for(&batch[0].0).starts_with(&format!("aad:{IB_CLIENT_B}@")));
    assert_eq!(
        world.identity_binding.request_count(),
        2,
        "one exchange for the 16 pods of team-a/app, one for team-a/batch"
    );
    assert_eq!(registry_counts(&world), (2, 2));
    for (_, token, stderr) in &results {
        assert_no_token(stderr, token);
        for entry in std::fs::read_dir(cache.path()).unwrap() {
            let path = entry.unwrap().path();
            let content = std::fs::read(&path).unwrap_or_default();
            assert_no_token(&String::from_utf8_lossy(&content), token);
        }
    }
}

#[test]
fn a_refusal_is_one_line_naming_the_account_and_the_binding() {
    let world = World::new();
    let rules = rules(&world, "");
    // team-b/app is not bound to IB_CLIENT_B.
    let web = pod("team-b", "web-1", "app", &[(CLIENT_ID_KEY, IB_CLIENT_B)]);
    let quiet = vec![
        "--no-cache".to_owned(),
        "--config".to_owned(),
        rules.display().to_string(),
    ];
    let (outcome, token, stderr) = pull(&world, &web, &quiet);
    assert!(outcome.credentials.is_empty());
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: acr backend (rule 0): service account team-b/app (identity binding \
             {IB_SNI_NAME}, kubernetes.azure.com/acr-client-id = {IB_CLIENT_B}): access denied \
             by the identity-binding endpoint: HTTP 400: invalid_client: AADSTS700213: The \
             identity '{IB_CLIENT_B}' is not bound to 'system:serviceaccount:team-b:app'."
        )
    );
    assert_no_token(&stderr, &token);
}

#[test]
fn check_config_reads_the_ca_file_and_the_section() {
    let world = World::new();
    let good = rules(&world, "");
    let run = plugin(&world, ["check-config", "--config", good.to_str().unwrap()]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let missing = world.file(
        "missing-ca.yaml",
        &format!(
            "rules:\n  - matchImages: ['*.azurecr.io']\n    provider: acr\n    acr:\n      identityBindings: {{sniName: {IB_SNI_NAME}, apiServerIp: 127.0.0.1, caFile: no-such-ca.crt}}\n"
        ),
    );
    let run = plugin(
        &world,
        ["check-config", "--config", missing.to_str().unwrap()],
    )
    .run();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("identityBindings.caFile"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("no-such-ca.crt"), "{}", run.stderr);
    let scheme = world.file(
        "scheme.yaml",
        "rules:\n  - matchImages: ['*.azurecr.io']\n    provider: acr\n    acr:\n      identityBindings: {sniName: 'https://ib.example', apiServerIp: 10.0.0.1}\n",
    );
    let run = plugin(
        &world,
        ["check-config", "--config", scheme.to_str().unwrap()],
    )
    .run();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("must not have a scheme"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_drop_in_takes_the_official_ib_flags() {
    let world = World::new();
    let program = drop_in(world.dir());
    let azure_json = world.file("azure.json", r#"{"useManagedIdentityExtension": true}"#);
    let azure_json = azure_json.to_str().unwrap();
    let usage = plugin_at(&world, &program, [azure_json, "--ib-sni-name", IB_SNI_NAME]).run();
    usage.assert_error(
        2,
        "--ib-apiserver-ip must be set when --ib-sni-name is provided",
    );
    let usage = plugin_at(&world, &program, [azure_json, "--ib-default-client-id=c1"]).run();
    usage.assert_error(
        2,
        "--ib-sni-name must be set when --ib-default-client-id is provided",
    );
    // Without a token, the drop-in pulls as azure.json's identity.
    let flags = [
        azure_json,
        "--ib-sni-name",
        IB_SNI_NAME,
        "--ib-apiserver-ip=127.0.0.1",
        "--ib-default-client-id",
        IB_CLIENT,
    ];
    let run = plugin_at(&world, &program, flags)
        .stdin(crate::common::request(API_VERSIONS[0], IMAGE))
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["auth"]["myacr.azurecr.io"]["username"], USERNAME);
    assert_eq!(world.identity_binding.request_count(), 0);
    // The official provider reads the cluster's CA at /etc/kubernetes/certs/ca.crt, and so
    // does the drop-in: where there is none, a pod's pull fails naming it, sending nothing.
    if Path::new("/etc/kubernetes/certs/ca.crt").exists() {
        return;
    }
    let before = world.request_count();
    let web = pod("team-a", "web-1", "app", &[]);
    let mut stderr = String::new();
    let outcome = kubelet().pull(IMAGE, Some(&web), |sent| {
        let run = plugin_at(&world, &program, flags)
            .stdin(sent.stdin.clone())
            .run();
        stderr = run.stderr;
        (run.code, run.stdout)
    });
    assert!(outcome.credentials.is_empty());
    assert!(
        stderr.contains(&format!(
            "service account team-a/app (identity binding {IB_SNI_NAME}, \
             identityBindings.defaultClientId = {IB_CLIENT}): invalid acr configuration: \
             identityBindings.caFile /etc/kubernetes/certs/ca.crt"
        )),
        "{stderr}"
    );
    assert_eq!(world.identity_binding.request_count(), 0);
    assert!(
        world.request_count() - before <= 1,
        "at most the registry's challenge"
    );
}

#[test]
fn a_token_for_another_audience_is_refused_before_it_is_sent() {
    let world = World::new();
    let rules = rules(&world, "");
    let web = pod("team-a", "web-1", "app", &[(CLIENT_ID_KEY, IB_CLIENT)]);
    let (outcome, token, stderr) = pull_with(
        kubelet_for("api://AzureADTokenExchange"),
        &world,
        &web,
        &args(&rules, None),
    );
    assert!(outcome.credentials.is_empty());
    assert!(
        stderr.contains(&format!(
            "is for [\"api://AzureADTokenExchange\"], not \"{AUDIENCE}\" as the backend \
             expects; not sent"
        )),
        "{stderr}"
    );
    assert_eq!(world.identity_binding.request_count(), 0);
    assert_eq!(world.aad.request_count(), 0);
    assert_no_token(&stderr, &token);
}

#[test]
fn the_drop_in_serves_the_provider_entry_aks_writes() {
    let world = World::new();
    let program = drop_in(world.dir());
    let azure_json = world.file(
        "azure.json",
        r#"{"cloud": "AzurePublicCloud", "useManagedIdentityExtension": true}"#,
    );
    let text = agentbaker_config(&azure_json);
    let path = world.file("credential-provider-config.yaml", &text);
    let judged = plugin(
        &world,
        ["check-config", "--kubelet-config", path.to_str().unwrap()],
    )
    .run();
    assert_eq!(
        (judged.code, judged.stderr.as_str()),
        (0, ""),
        "{}",
        judged.stdout
    );
    let config: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let args: Vec<String> = config["providers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap().to_owned())
        .collect();
    let cache = world.dir().join("cache");
    let mut node = Node::from_config(&config);
    let mut pull = |pod: Option<&Pod>| {
        let mut stderr = String::new();
        let mut outcomes = node.pull(IMAGE, pod, |_, sent| {
            let run = plugin_at(&world, &program, &args)
                .env("IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR", &cache)
                .stdin(sent.stdin.clone())
                .run();
            stderr = run.stderr;
            (run.code, run.stdout)
        });
        assert_eq!(outcomes.len(), 1, "one provider entry serves {IMAGE}");
        (outcomes.remove(0).1, stderr)
    };
    // Without a pod's token, the node's identity of azure.json.
    let (outcome, stderr) = pull(None);
    assert_eq!(
        exchanged_for(&credential(&outcome)),
        "imds:system",
        "{stderr}"
    );
    // A pod's token for api://AKSIdentityBinding and its client id annotation, the host
    // name of --ib-apiserver-ip: the drop-in takes all three, and goes as far as the
    // cluster's CA, which it reads where the official provider does.
    if Path::new("/etc/kubernetes/certs/ca.crt").exists() {
        return;
    }
    let web = pod("team-a", "web-1", "app", &[(CLIENT_ID_KEY, IB_CLIENT_B)]);
    let (outcome, stderr) = pull(Some(&web));
    let sent = outcome.sent.as_ref().unwrap();
    assert_eq!(
        sent.annotations.as_ref().unwrap().get(CLIENT_ID_KEY),
        Some(&IB_CLIENT_B.to_owned())
    );
    assert!(outcome.credentials.is_empty());
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: acr backend (acr-credential-provider {}): service account team-a/app \
             (identity binding {IB_SNI_NAME}, kubernetes.azure.com/acr-client-id = \
             {IB_CLIENT_B}): invalid acr configuration: identityBindings.caFile \
             /etc/kubernetes/certs/ca.crt: No such file or directory (os error 2)",
            azure_json.display()
        )
    );
    assert_eq!(world.identity_binding.request_count(), 0);
}
