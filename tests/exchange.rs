//! The token-exchange backends (quay, jfrog, cloudsmith, vault, tokenExchange) through the
//! built binary, against the loopback TLS fakes of their services, every answer read by
//! the model of the kubelet in service-account-token mode with the `tokenAttributes`
//! `kubelet-config --service-account-tokens` writes for the rule: a pod pulls with its
//! own exchanged token, shared by the pods of its service account and by no one else (one
//! exchange for 16 pods starting at once, one more for another account's), a pull without
//! a token gets no credentials, a refusal is one line, and no token reaches stderr or the
//! token cache. Then several audiences on one node: one provider entry per audience,
//! each instance serving only its rules, judged by `check-config` and the kubelet model.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use icp_test_kit::exchange::{self, World};

use crate::common::kubelet::service_account::{Kubelet, Outcome, Pod, token_attributes};
#[cfg(all(
    feature = "ecr",
    feature = "docker-config",
    feature = "quay",
    feature = "vault"
))]
use crate::common::kubelet::service_account::{Node, Sent};
use crate::common::{API_VERSIONS, Plugin, pod, request, service_account_request};

/// One backend's rule and what its fake answers.
struct Case {
    /// The rule, YAML indented as an item of `rules:`.
    rule: &'static str,
    /// An image the rule serves.
    image: &'static str,
    /// The pod token's audience the backend asks for.
    audience: &'static str,
    /// The `Host` of the requests that exchange a pod's token, and their path.
    host: &'static str,
    path: &'static str,
    /// An annotation that selects another credential, trusted for `team-a/app`.
    other: Option<(&'static str, &'static str)>,
}

#[cfg(feature = "quay")]
const QUAY: Case = Case {
    rule: "  - matchImages: [\"quay.example.com\"]\n    provider: quay\n    quay: {robotAnnotation: quay.io/federated-robot-account, robot: acme+puller}\n",
    image: "quay.example.com/acme/app:v1",
    audience: exchange::audience::QUAY,
    host: exchange::QUAY_HOST,
    path: "/oauth2/federation/robot/token",
    other: Some(("quay.io/federated-robot-account", "acme+builder")),
};

#[cfg(feature = "jfrog")]
const JFROG: Case = Case {
    rule: "  - matchImages: [\"acme.jfrog.io\"]\n    provider: jfrog\n    jfrog: {providerName: k8s-prod, audience: jfrog}\n",
    image: "acme.jfrog.io/docker-local/app:v1",
    audience: exchange::audience::JFROG,
    host: exchange::JFROG_HOST,
    path: "/access/api/v1/oidc/token",
    other: None,
};

#[cfg(feature = "cloudsmith")]
const CLOUDSMITH: Case = Case {
    rule: "  - matchImages: [\"docker.cloudsmith.io\"]\n    provider: cloudsmith\n    cloudsmith: {org: acme, serviceSlug: puller, serviceAnnotation: cloudsmith.io/service-slug}\n",
    image: "docker.cloudsmith.io/acme/repo/app:v1",
    audience: exchange::audience::CLOUDSMITH,
    host: exchange::CLOUDSMITH_HOST,
    path: "/openid/acme/",
    other: Some(("cloudsmith.io/service-slug", "builder")),
};

#[cfg(feature = "vault")]
const VAULT: Case = Case {
    rule: "  - matchImages: [\"registry.internal.example\"]\n    provider: vault\n    vault: {address: \"https://vault.internal.example:8200\", role: image-pull, roleAnnotation: vault.hashicorp.com/role,\n            secretPath: \"secret/data/registry/{namespace}/{serviceAccount}\"}\n",
    image: "registry.internal.example/app:v1",
    audience: exchange::audience::VAULT,
    host: "vault.internal.example:8200",
    path: "/v1/auth/kubernetes/login",
    other: Some(("vault.hashicorp.com/role", "builder")),
};

#[cfg(feature = "tokenExchange")]
const TOKEN_EXCHANGE: Case = Case {
    rule: "  - matchImages: [\"registry.te.example\"]\n    provider: tokenExchange\n    tokenExchange: {url: \"https://sts.example.com/token\", audience: registry.te.example, username: oauth2accesstoken}\n",
    image: "registry.te.example/app:v1",
    audience: "registry.te.example",
    host: exchange::STS_HOST,
    path: "/token",
    other: None,
};

/// The fakes, the rules file and the token cache of one test.
struct Setup {
    world: World,
    rules: PathBuf,
}

impl Setup {
    /// The fakes, and a rules file of `rules` (items of `rules:`).
    fn new(rules: &str) -> Setup {
        let world = World::new();
        let path = world.file("rules.yaml", &format!("rules:\n{rules}"));
        Setup { world, rules: path }
    }

    fn cache(&self) -> PathBuf {
        self.world.dir.path().join("cache")
    }

    /// The program at `program` with `args`, pointed at the fakes and the shared cache.
    fn plugin_at(&self, program: &Path, args: &[&str]) -> Plugin {
        let mut plugin = Plugin::at(program, args)
            .env("SSL_CERT_FILE", exchange::ca_file())
            .env("IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR", self.cache());
        for (key, value) in self.world.env() {
            plugin = plugin.env(key, value);
        }
        plugin
    }

    /// The binary with `--config RULES` and `args`.
    fn plugin(&self, args: &[&str]) -> Plugin {
        let mut all = vec!["--config", self.rules.to_str().unwrap()];
        all.extend(args);
        self.plugin_at(
            Path::new(env!("CARGO_BIN_EXE_image-credential-provider")),
            &all,
        )
    }

    /// What `kubelet-config --service-account-tokens` writes for the rules, parsed.
    fn kubelet_config(&self) -> serde_json::Value {
        let run = self
            .plugin(&["kubelet-config", "--service-account-tokens"])
            .run();
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_yaml_ng::from_str(&run.stdout).unwrap()
    }

    /// How many exchanges `case`'s service has seen.
    fn exchanges(&self, case: &Case) -> usize {
        self.world
            .requests(case.host)
            .iter()
            .filter(|r| r.path() == case.path)
            .count()
    }
}

/// A kubelet with the `tokenAttributes` of provider `entry` of `config`.
fn kubelet(config: &serde_json::Value, entry: usize) -> Kubelet {
    let attributes = &config["providers"][entry]["tokenAttributes"];
    Kubelet::new(API_VERSIONS[0], Some(token_attributes(attributes)))
}

/// A pull of `case.image` for `pod` by a kubelet with `config`'s first entry that has
/// cached nothing, so the plugin runs (with `args` besides `--config`).
fn fresh_pull(setup: &Setup, case: &Case, config: &serde_json::Value, pod: &Pod) -> Outcome {
    let mut kubelet = kubelet(config, 0);
    let outcome = kubelet.pull(case.image, Some(pod), |sent| {
        let run = setup.plugin(&[]).stdin(sent.stdin.clone()).run();
        (run.code, run.stdout)
    });
    assert!(outcome.plugin_ran && outcome.token_requested, "{outcome:?}");
    outcome
}

/// The one credential the kubelet pulls with.
fn credential(outcome: &Outcome) -> (String, String) {
    assert_eq!(outcome.error, None, "{outcome:?}");
    match &outcome.credentials[..] {
        [one] => one.clone(),
        other => panic!("credentials {other:?}"),
    }
}

fn pod_pulls_with_its_own_exchanged_token(case: &Case) {
    let setup = Setup::new(case.rule);
    let config = setup.kubelet_config();
    let attributes = &config["providers"][0]["tokenAttributes"];
    assert_eq!(attributes["serviceAccountTokenAudience"], case.audience);
    assert_eq!(attributes["cacheType"], "ServiceAccount");
    let keys: Vec<&str> = case.other.iter().map(|(key, _)| *key).collect();
    let written = attributes["optionalServiceAccountAnnotationKeys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(serde_json::Value::from(written), serde_json::json!(keys));
    let mut kubelet = kubelet(&config, 0);
    let pod = pod("team-a", "web-1", "app", &[]);
    let mut ran = None;
    let outcome = kubelet.pull(case.image, Some(&pod), |sent| {
        let run = setup.plugin(&[]).stdin(sent.stdin.clone()).run();
        ran = Some(run.json());
        (run.code, run.stdout)
    });
    let (username, password) = credential(&outcome);
    let token = outcome.sent.unwrap().token.unwrap();
    assert!(!username.is_empty() && password != token, "{username}");
    assert_eq!(setup.exchanges(case), 1);
    let response = ran.unwrap();
    let cache = response["cacheDuration"].as_str().unwrap();
    assert_ne!(cache, "0s", "{response}");
    let again = kubelet.pull(case.image, Some(&pod), |_| panic!("the kubelet cached it"));
    assert_eq!(credential(&again), (username, password));
}

fn tokens_are_shared_by_the_pods_of_one_account_and_by_no_one_else(case: &Case) {
    let setup = Setup::new(case.rule);
    let config = setup.kubelet_config();
    let pull = |pod: &Pod| {
        let (_, password) = credential(&fresh_pull(&setup, case, &config, pod));
        (password, setup.exchanges(case))
    };
    let (first, n) = pull(&pod("team-a", "web-1", "app", &[]));
    assert_eq!(n, 1);
    assert_eq!(
        pull(&pod("team-a", "web-2", "app", &[])),
        (first.clone(), 1),
        "another pod of the same service account shares the token"
    );
    let (other, n) = pull(&pod("team-b", "web-1", "app", &[]));
    assert_eq!(n, 2, "another service account fetches its own");
    assert_ne!(other, first);
    let (_, n) = pull(&pod("team-a", "batch-1", "batch", &[]));
    assert_eq!(n, 3, "another service account of the same namespace");
    let mut recreated = pod("team-a", "web-3", "app", &[]);
    recreated.service_account.as_mut().unwrap().uid = "team-a-app-uid-2".into();
    let (_, n) = pull(&recreated);
    assert_eq!(n, 4, "a service account made again under the same name");
    if let Some(annotation) = case.other {
        let (_, n) = pull(&pod("team-a", "web-4", "app", &[annotation]));
        assert_eq!(
            n, 5,
            "the same service account with another annotation value"
        );
    }
}

fn sixteen_pods_of_one_account_cost_one_exchange_and_another_account_its_own(case: &Case) {
    let setup = Setup::new(case.rule);
    let config = setup.kubelet_config();
    let pods: Vec<Pod> = (0..16)
        .flat_map(|i| {
            [
                pod("team-a", &format!("web-{i}"), "app", &[]),
                pod("team-b", &format!("web-{i}"), "app", &[]),
            ]
        })
        .collect();
    let passwords: Vec<(String, String)> = std::thread::scope(|scope| {
        let pulls: Vec<_> = pods
            .iter()
            .map(|pod| {
                let (setup, config) = (&setup, &config);
                scope.spawn(move || {
                    let (_, password) = credential(&fresh_pull(setup, case, config, pod));
                    (pod.namespace.clone(), password)
                })
            })
            .collect();
        pulls.into_iter().map(|pull| pull.join().unwrap()).collect()
    });
    assert_eq!(setup.exchanges(case), 2, "one exchange per service account");
    let per_account: BTreeSet<&(String, String)> = passwords.iter().collect();
    assert_eq!(per_account.len(), 2, "{per_account:?}");
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flat_map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

fn no_token_reaches_stderr_or_the_cache(case: &Case) {
    let setup = Setup::new(case.rule);
    let mut stderr = String::new();
    let mut secrets = Vec::new();
    let mut pod_tokens = Vec::new();
    for pod in [
        pod("team-a", "web-1", "app", &[]),
        pod("team-a", "web-2", "app", &[]),
        pod("team-b", "web-1", "app", &[]),
        pod("team-c", "web-1", "app", &[]),
    ] {
        let (input, token) = service_account_request(case.image, &pod, case.audience);
        let run = setup.plugin(&["-vvv"]).stdin(input).run();
        stderr.push_str(&run.stderr);
        secrets.extend(token.split('.').take(2).map(str::to_owned));
        pod_tokens.extend(token.split('.').take(2).map(str::to_owned));
        if run.code == 0 {
            let response = run.json();
            for entry in response["auth"].as_object().unwrap().values() {
                secrets.push(entry["password"].as_str().unwrap().to_owned());
            }
        } else {
            assert!(stderr.contains("team-c/app"), "{stderr}");
        }
    }
    assert_eq!(setup.exchanges(case), 3);
    let cached: Vec<(PathBuf, String)> = files(&setup.cache())
        .into_iter()
        .map(|path| {
            let content = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            (path, content)
        })
        .collect();
    assert!(!cached.is_empty());
    for secret in &secrets {
        assert!(
            !stderr.contains(secret.as_str()),
            "a secret on stderr: {stderr}"
        );
    }
    for (path, content) in &cached {
        for part in &pod_tokens {
            assert!(
                !content.contains(part.as_str()),
                "a pod token part in {}",
                path.display()
            );
        }
    }
}

fn a_pull_without_a_service_account_token_gets_no_credentials(case: &Case) {
    let setup = Setup::new(case.rule);
    let run = setup
        .plugin(&["-v"])
        .stdin(request(API_VERSIONS[0], case.image))
        .run();
    let response = run.json();
    assert_eq!(response["auth"], serde_json::json!({}), "{response}");
    assert_eq!(response["cacheDuration"], "0s");
    assert!(
        run.stderr
            .contains("the kubelet sent no service account token"),
        "{}",
        run.stderr
    );
    assert_eq!(setup.world.server.request_count(), 0);
    // The kubelet then pulls with the pod's image pull secrets.
    let mut kubelet = Kubelet::new(API_VERSIONS[0], None);
    let outcome = kubelet.pull(case.image, None, |sent| {
        let run = setup.plugin(&[]).stdin(sent.stdin.clone()).run();
        (run.code, run.stdout)
    });
    assert_eq!((outcome.error, outcome.credentials.len()), (None, 0));
}

fn a_refused_account_is_one_line_naming_it(case: &Case) {
    let setup = Setup::new(case.rule);
    let (input, token) = service_account_request(
        case.image,
        &pod("team-c", "web-1", "app", &[]),
        case.audience,
    );
    let run = setup.plugin(&[]).stdin(input).run();
    run.assert_error(1, "service account team-c/app");
    for part in token.split('.').take(2) {
        assert!(!run.stderr.contains(part), "{}", run.stderr);
    }
}

/// The tests of each backend, one module each.
macro_rules! per_backend {
    ($($module:ident => $case:ident, $feature:literal;)*) => {$(
        #[cfg(feature = $feature)]
        mod $module {
            use super::*;

            #[test]
            fn a_pod_pulls_with_its_own_exchanged_token() {
                pod_pulls_with_its_own_exchanged_token(&$case);
            }

            #[test]
            fn tokens_are_shared_by_the_pods_of_one_account_and_by_no_one_else() {
                super::tokens_are_shared_by_the_pods_of_one_account_and_by_no_one_else(&$case);
            }

            #[test]
            fn sixteen_pods_of_one_account_cost_one_exchange_and_another_account_its_own() {
                super::sixteen_pods_of_one_account_cost_one_exchange_and_another_account_its_own(&$case);
            }

            #[test]
            fn no_token_reaches_stderr_or_the_cache() {
                super::no_token_reaches_stderr_or_the_cache(&$case);
            }

            #[test]
            fn a_pull_without_a_service_account_token_gets_no_credentials() {
                super::a_pull_without_a_service_account_token_gets_no_credentials(&$case);
            }

            #[test]
            fn a_refused_account_is_one_line_naming_it() {
                super::a_refused_account_is_one_line_naming_it(&$case);
            }
        }
    )*};
}

per_backend! {
    quay => QUAY, "quay";
    jfrog => JFROG, "jfrog";
    cloudsmith => CLOUDSMITH, "cloudsmith";
    vault => VAULT, "vault";
    token_exchange => TOKEN_EXCHANGE, "tokenExchange";
}

#[test]
#[cfg(feature = "tokenExchange")]
fn pass_through_is_written_with_cache_type_token_and_the_kubelet_takes_it() {
    use crate::common::kubelet::service_account::TokenAttributes;

    let setup = Setup::new(
        "  - matchImages: [\"k8s-registry.example\"]\n    provider: tokenExchange\n    tokenExchange: {style: passThrough, username: k8s, tokenAudience: k8s-registry.example}\n",
    );
    let config = setup.kubelet_config();
    assert_eq!(
        config["providers"][0]["tokenAttributes"]["cacheType"], "Token",
        "{config}"
    );
    let image = "k8s-registry.example/app:v1";
    let mut kubelet = kubelet(&config, 0);
    let pod = pod("team-a", "web-1", "app", &[]);
    let outcome = kubelet.pull(image, Some(&pod), |sent| {
        let run = setup.plugin(&[]).stdin(sent.stdin.clone()).run();
        assert_eq!(run.json()["cacheDuration"], "0s");
        (run.code, run.stdout)
    });
    let token = outcome.sent.clone().unwrap().token.unwrap();
    assert_eq!(credential(&outcome), ("k8s".to_owned(), token));
    assert!(
        files(&setup.cache())
            .iter()
            .all(|f| f.extension().is_none_or(|e| e != "json"))
    );
    // With cacheType ServiceAccount the kubelet refuses the answer: check-config says so.
    let written = setup.world.file(
        "kubelet.yaml",
        &serde_json::to_string(&{
            let mut config = config.clone();
            config["providers"][0]["tokenAttributes"]["cacheType"] = "ServiceAccount".into();
            config
        })
        .unwrap(),
    );
    let run = setup
        .plugin(&[
            "check-config",
            "--kubelet-config",
            written.to_str().unwrap(),
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "tokenAttributes.cacheType: rule 0 (tokenExchange) answers with the pod's own token"
        ),
        "{}",
        run.stderr
    );
    let mut wrong = Kubelet::new(
        API_VERSIONS[0],
        Some(TokenAttributes {
            cache_type: crate::common::kubelet::service_account::CacheType::ServiceAccount,
            ..token_attributes(&config["providers"][0]["tokenAttributes"])
        }),
    );
    let refused = wrong.pull(image, Some(&pod), |sent| {
        let run = setup.plugin(&[]).stdin(sent.stdin.clone()).run();
        (run.code, run.stdout)
    });
    assert!(refused.error.is_some(), "{refused:?}");
}

/// Several audiences on one node: ECR's, Quay's and Vault's rules, and a docker config
/// file's, which takes no token.
#[cfg(all(
    feature = "ecr",
    feature = "docker-config",
    feature = "quay",
    feature = "vault"
))]
mod several_audiences {
    use super::*;

    const STATIC_IMAGE: &str = "registry.corp.example/app:v1";

    fn setup() -> Setup {
        let world = World::new();
        let docker = world.file(
            "config.json",
            r#"{"auths": {"registry.corp.example": {"username": "corp", "password": "corp-pw"}}}"#,
        );
        let rules = format!(
            "  - matchImages: [\"registry.corp.example\"]\n    provider: docker-config\n    dockerConfig: {{path: {}}}\n  - matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n    provider: ecr\n{}{}",
            docker.display(),
            QUAY.rule,
            VAULT.rule
        );
        let path = world.file("rules.yaml", &format!("rules:\n{rules}"));
        Setup { world, rules: path }
    }

    /// The binary under provider name `name` (a symlink in a bin directory), run with
    /// the entry's `args`.
    fn instance(setup: &Setup, name: &str, args: &[&str]) -> Plugin {
        let bin = setup.world.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let link = bin.join(name);
        if !link.exists() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_image-credential-provider"), &link)
                .unwrap();
        }
        setup.plugin_at(&link, args)
    }

    fn strings(value: &serde_json::Value) -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn one_provider_entry_per_audience_each_serving_only_its_rules() {
        let setup = setup();
        let run = setup
            .plugin(&["kubelet-config", "--service-account-tokens"])
            .run();
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout
                .contains("#   ln -s image-credential-provider image-credential-provider-quay\n"),
            "{}",
            run.stdout
        );
        let config: serde_json::Value = serde_yaml_ng::from_str(&run.stdout).unwrap();
        let providers = config["providers"].as_array().unwrap();
        let rules = setup.rules.to_str().unwrap();
        let expected = [
            (
                "image-credential-provider",
                "sts.amazonaws.com",
                vec!["registry.corp.example", "*.dkr.ecr.*.amazonaws.com"],
            ),
            (
                "image-credential-provider-quay",
                "quay",
                vec!["quay.example.com"],
            ),
            (
                "image-credential-provider-vault",
                "vault",
                vec!["registry.internal.example"],
            ),
        ];
        assert_eq!(providers.len(), expected.len(), "{config}");
        for (provider, (name, audience, patterns)) in providers.iter().zip(&expected) {
            assert_eq!(provider["name"], *name);
            assert_eq!(
                strings(&provider["args"]),
                ["--config", rules, "--audience", audience]
            );
            assert_eq!(strings(&provider["matchImages"]), *patterns);
            assert_eq!(
                provider["tokenAttributes"]["serviceAccountTokenAudience"],
                *audience
            );
        }
        // The kubelet accepts it, and check-config finds that every entry fits its rules.
        let written = setup.world.file("kubelet.yaml", &run.stdout);
        let judged = setup
            .plugin(&[
                "check-config",
                "--kubelet-config",
                written.to_str().unwrap(),
            ])
            .run();
        assert_eq!(
            (judged.code, judged.stderr.as_str()),
            (0, ""),
            "{}",
            judged.stdout
        );
        assert!(
            judged.stdout.contains("3 providers, no problems"),
            "{}",
            judged.stdout
        );

        // The kubelet runs the entry whose matchImages match each image, and only that
        // one: each instance under its own name, with its own args and audience's token.
        let mut node = Node::from_config(&config);
        let run_entry = |index: usize, sent: &Sent| {
            let name = providers[index]["name"].as_str().unwrap();
            let args = strings(&providers[index]["args"]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = instance(&setup, name, &args)
                .stdin(sent.stdin.clone())
                .run();
            (run.code, run.stdout)
        };
        let pod = pod("team-a", "web-1", "app", &[]);
        for (image, entry) in [(QUAY.image, 1), (VAULT.image, 2), (STATIC_IMAGE, 0)] {
            let outcomes = node.pull(image, Some(&pod), &run_entry);
            assert_eq!(outcomes.len(), 1, "{image}: {outcomes:?}");
            let (index, outcome) = &outcomes[0];
            assert_eq!(*index, entry, "{image}");
            let sent = outcome.sent.clone().unwrap();
            let claims = crate::common::kubelet::service_account::claims(&sent.token.unwrap());
            assert_eq!(claims["aud"][0], expected[entry].1, "{image}");
            let (user, password) = credential(outcome);
            if image == STATIC_IMAGE {
                assert_eq!((user.as_str(), password.as_str()), ("corp", "corp-pw"));
            }
        }
        assert_eq!((setup.exchanges(&QUAY), setup.exchanges(&VAULT)), (1, 1));
        let first = strings(&providers[0]["args"]);
        let first: Vec<&str> = first.iter().map(String::as_str).collect();
        // The first instance serves none of another audience's rules even when asked:
        // its token is ECR's.
        let (input, _) = service_account_request(QUAY.image, &pod, "sts.amazonaws.com");
        let verbose: Vec<&str> = ["-v"].into_iter().chain(first.iter().copied()).collect();
        let run = instance(&setup, "image-credential-provider", &verbose)
            .stdin(input)
            .run();
        assert_eq!(run.json()["auth"], serde_json::json!({}), "{}", run.stderr);
        assert!(run.stderr.contains("no rule matches"), "{}", run.stderr);
        assert_eq!(setup.exchanges(&QUAY), 1, "no exchange with ECR's token");
    }

    #[test]
    fn check_config_reports_entries_that_do_not_fit_their_rules() {
        let setup = setup();
        let config = setup.kubelet_config();
        let judge = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut config = config.clone();
            change(&mut config);
            let written = setup
                .world
                .file("kubelet.json", &serde_json::to_string(&config).unwrap());
            let run = setup
                .plugin(&[
                    "check-config",
                    "--kubelet-config",
                    written.to_str().unwrap(),
                ])
                .run();
            assert_eq!(run.code, 0, "the kubelet accepts it: {}", run.stderr);
            run.stderr
        };
        let audience = judge(&|c| {
            c["providers"][1]["tokenAttributes"]["serviceAccountTokenAudience"] = "vault".into()
        });
        assert!(
            audience.contains("providers[1].args: --audience \"quay\" serves the rules of that audience, but the kubelet sends tokens for \"vault\""),
            "{audience}"
        );
        let keys = judge(&|c| {
            c["providers"][1]["tokenAttributes"]["optionalServiceAccountAnnotationKeys"] =
                serde_json::json!([])
        });
        assert!(
            keys.contains("providers[1].tokenAttributes.optionalServiceAccountAnnotationKeys: rule 2 (quay) reads the service account annotation \"quay.io/federated-robot-account\""),
            "{keys}"
        );
        // One entry for every rule, without --audience: the other audiences' rules.
        let one = judge(&|c| {
            let first = &mut c["providers"][0];
            first["args"] = serde_json::json!(["--config", setup.rules.to_str().unwrap()]);
            first["matchImages"] = serde_json::json!([
                "registry.corp.example",
                "*.dkr.ecr.*.amazonaws.com",
                "quay.example.com",
                "registry.internal.example"
            ]);
            c["providers"] = serde_json::json!([c["providers"][0].clone()]);
        });
        assert_eq!(
            one.lines().count(),
            4,
            "two audiences, two annotations: {one}"
        );
        assert!(
            one.contains(
                "rule 2 (quay) needs pods' tokens for \"quay\", not \"sts.amazonaws.com\""
            ) && one.contains("rule 3 (vault) needs pods' tokens for \"vault\""),
            "{one}"
        );
        // An entry whose instance serves an audience no entry asks tokens for leaves its
        // rules' images unreached.
        let unreached = judge(&|c| {
            c["providers"] =
                serde_json::json!([c["providers"][0].clone(), c["providers"][1].clone()]);
        });
        assert!(
            unreached.contains(
                "rules[3].matchImages[0]: \"registry.internal.example\": no matchImages entry"
            ),
            "{unreached}"
        );
    }
}

#[test]
#[cfg(all(feature = "quay", feature = "vault"))]
fn no_instance_serves_a_rule_of_another_audience_through_get() {
    let setup = Setup::new(&format!("{}{}", QUAY.rule, VAULT.rule));
    let run = setup
        .plugin(&["--audience", "vault", "-v", "get", QUAY.image])
        .run();
    let response = run.json();
    assert_eq!(response["auth"], serde_json::json!({}), "{response}");
    assert!(run.stderr.contains("no rule matches"), "{}", run.stderr);
}
