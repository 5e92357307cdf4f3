//! Per-pod identity (KEP-4412) through the built binary, every answer read by the model of
//! the kubelet in service-account-token mode: an opted-in pod's own token exchanged at
//! the STS fake (and, with `iam.gke.io/gcp-service-account`, a Google service account
//! impersonated at the IAM Credentials fake), the node's identity otherwise, tokens shared
//! by the pods of one service account and by no one else, and Google's refusals.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use base64::Engine;
use icp_test_kit::google::MetadataFake;
use icp_test_kit::google::workload_identity::{Google, Knobs};

use super::{metadata, seconds};
use crate::common::kubelet::service_account::{CacheType, Kubelet, Outcome, Pod, TokenAttributes};
use crate::common::{API_VERSIONS, Plugin, Run, pod, request, service_account_request};

const PROVIDER: &str =
    "https://container.googleapis.com/v1/projects/my-project/locations/us-central1/clusters/c1";
/// The audience of the pod tokens the kubelet requests on GKE: the workload identity pool.
const POOL: &str = "my-project.svc.id.goog";
/// A self-managed cluster's workload identity pool provider.
const POOL_PROVIDER: &str = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/k8s-pool/providers/cluster-1";
const ENABLE: &str = "iam.gke.io/enable-wi-image-pull";
const GSA: &str = "iam.gke.io/gcp-service-account";
const PULLER: &str = "puller@my-project.iam.gserviceaccount.com";
const OTHER: &str = "other@my-project.iam.gserviceaccount.com";
const IMAGE: &str = "us-docker.pkg.dev/my-project/repo/app:v1";
const REGISTRY: &str = "us-docker.pkg.dev";

/// The STS audience GKE's `auth-provider-gcp` makes from its flags.
fn gke_audience() -> String {
    format!("identitynamespace:{POOL}:{PROVIDER}")
}

/// The fakes of one test: Google's STS and IAM Credentials, a metadata server for the
/// node's identity, and a token cache shared by every run.
struct World {
    google: Google,
    metadata: MetadataFake,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World::with(|_| {})
    }

    /// A world whose fakes are set up as `change` says, from the defaults: both
    /// audiences known, `team-a/app` and `team-b/app` bound to `PULLER`, `team-a/app`
    /// also to `OTHER`, tokens living an hour (STS) and half an hour (IAM).
    fn with(change: impl FnOnce(&mut Knobs)) -> World {
        let mut knobs = Knobs {
            sts_lifetime: 3599,
            iam_lifetime: 1800,
            ..Knobs::default()
        };
        knobs.audiences.insert(gke_audience(), POOL.to_owned());
        knobs
            .audiences
            .insert(POOL_PROVIDER.to_owned(), POOL_PROVIDER.to_owned());
        knobs.bindings.insert(
            PULLER.to_owned(),
            ["team-a/app".to_owned(), "team-b/app".to_owned()].into(),
        );
        knobs
            .bindings
            .insert(OTHER.to_owned(), ["team-a/app".to_owned()].into());
        change(&mut knobs);
        World {
            google: Google::start(knobs),
            metadata: metadata(Default::default()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A rules file with `gcp` settings `gcp` (YAML, indented for the rule).
    fn rules(&self, gcp: &str) -> PathBuf {
        let path = self.dir.path().join("rules.yaml");
        std::fs::write(
            &path,
            format!("rules:\n  - matchImages: ['*-docker.pkg.dev', 'gcr.io']\n    provider: gcp\n    gcp:\n{gcp}"),
        )
        .unwrap();
        path
    }

    /// GKE's settings, as the official provider's flags give them.
    fn gke_rules(&self) -> PathBuf {
        self.rules(&format!(
            "      workloadIdentity:\n        projectId: my-project\n        identityProvider: {PROVIDER}\n"
        ))
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// The program at `program` with `args`, pointed at the fakes and the shared cache.
    fn plugin_at(&self, program: &Path, args: &[&str]) -> Plugin {
        Plugin::at(program, args)
            .env("SSL_CERT_FILE", &self.google.ca_file)
            .env("IMAGE_CREDENTIAL_PROVIDER_RESOLVE", self.google.resolve())
            .env("GCE_METADATA_HOST", self.metadata.host())
            .env("IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR", self.cache())
    }

    fn plugin(&self, args: &[&str]) -> Plugin {
        self.plugin_at(
            Path::new(env!("CARGO_BIN_EXE_image-credential-provider")),
            args,
        )
    }

    /// One pull of `IMAGE` for `pod` by `kubelet`, which runs the plugin with `args`.
    fn pull(&self, kubelet: &mut Kubelet, args: &[&str], pod: &Pod) -> (Outcome, Option<Run>) {
        let mut run = None;
        let outcome = kubelet.pull(IMAGE, Some(pod), |sent| {
            let done = self.plugin(args).stdin(sent.stdin.clone()).run();
            let result = (done.code, done.stdout.clone());
            run = Some(done);
            result
        });
        (outcome, run)
    }

    /// A pull for `pod` by a kubelet that has cached nothing, so the plugin runs.
    fn fresh_pull(&self, audience: &str, args: &[&str], pod: &Pod) -> (Outcome, Run) {
        let mut kubelet = kubelet(audience, &[ENABLE, GSA]);
        let (outcome, run) = self.pull(&mut kubelet, args, pod);
        assert!(outcome.plugin_ran && outcome.token_requested, "{outcome:?}");
        (outcome, run.unwrap())
    }

    fn sts_count(&self) -> usize {
        self.google.sts.request_count()
    }

    fn iam_count(&self) -> usize {
        self.google.iam.request_count()
    }
}

/// A kubelet whose provider asks for pod tokens for `audience`, caches per service
/// account, and passes the annotations `keys` on.
fn kubelet(audience: &str, keys: &[&str]) -> Kubelet {
    Kubelet::new(
        API_VERSIONS[0],
        Some(TokenAttributes {
            audience: audience.to_owned(),
            cache_type: CacheType::ServiceAccount,
            require_service_account: false,
            required_keys: Vec::new(),
            optional_keys: keys.iter().map(|k| k.to_string()).collect(),
        }),
    )
}

/// A pod's service account annotations.
type Annotations<'a> = &'a [(&'a str, &'a str)];

/// The one credential the kubelet pulls with.
fn credential(outcome: &Outcome) -> String {
    assert_eq!(outcome.error, None, "{outcome:?}");
    match &outcome.credentials[..] {
        [(user, password)] if user == "oauth2accesstoken" => password.clone(),
        other => panic!("credentials {other:?}"),
    }
}

fn config_arg(rules: &Path) -> [&str; 2] {
    ["--config", rules.to_str().unwrap()]
}

#[test]
fn an_opted_in_pod_pulls_with_its_own_token_exchanged_at_sts() {
    let world = World::new();
    let rules = world.gke_rules();
    let pod = pod("team-a", "web-1", "app", &[(ENABLE, "true")]);
    let (outcome, run) = world.fresh_pull(POOL, &config_arg(&rules), &pod);
    assert_eq!(credential(&outcome), "ya29.sts-team-a-app-0");
    let token = outcome.sent.unwrap().token.unwrap();
    let exchanges = world.google.exchanges();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].get("subject_token"), token);
    assert_eq!(exchanges[0].get("audience"), gke_audience());
    let request = &world.google.sts.requests()[0];
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!((world.iam_count(), world.metadata.request_count()), (0, 0));
    // STS states 3599 s: at most that less the 5 minute margin, from 75% of it on (the
    // refresh point), and a minute for slow machines.
    let response = run.json();
    let cache = seconds(&response["cacheDuration"]);
    assert!((3599 * 3 / 4 - 60..=3299).contains(&cache), "{response}");
    assert_eq!(response["auth"].as_object().unwrap().len(), 1);
    assert!(response["auth"][REGISTRY].is_object(), "{response}");
}

#[test]
fn a_named_google_service_account_is_impersonated_and_its_token_answered() {
    let world = World::new();
    let rules = world.gke_rules();
    let pod = pod("team-a", "web-1", "app", &[(ENABLE, "true"), (GSA, PULLER)]);
    let (outcome, run) = world.fresh_pull(POOL, &config_arg(&rules), &pod);
    assert_eq!(credential(&outcome), "ya29.iam-puller-0");
    assert_eq!(
        world.google.exchanges()[0].get("subject_token"),
        outcome.sent.unwrap().token.unwrap()
    );
    let iam = world.google.iam.requests();
    assert_eq!(iam.len(), 1);
    assert_eq!(
        iam[0].path(),
        format!("/v1/projects/-/serviceAccounts/{PULLER}:generateAccessToken")
    );
    assert_eq!(
        iam[0].header("authorization"),
        Some("Bearer ya29.sts-team-a-app-0"),
        "the federated token is what impersonates"
    );
    // The impersonated token's own expiry (1800 s) counts, not the federated one's.
    let cache = seconds(&run.json()["cacheDuration"]);
    assert!((1500 - 60..=1500).contains(&cache), "{cache}");
}

#[test]
fn without_opt_in_settings_or_token_the_node_identity_pulls() {
    let world = World::new();
    let rules = world.gke_rules();
    let gke_args = config_arg(&rules);
    let gke: &[&str] = &gke_args;
    let cases: [(&[&str], Annotations); 4] = [
        (gke, &[]),
        (gke, &[(ENABLE, "false")]),
        (gke, &[(GSA, PULLER)]),
        // The embedded rule has no workload identity, as the official provider without
        // --identity-provider.
        (&[], &[(ENABLE, "true"), (GSA, PULLER)]),
    ];
    for (args, annotations) in cases {
        let pod = pod("team-a", "web-1", "app", annotations);
        let (outcome, _) = world.fresh_pull(POOL, args, &pod);
        assert!(
            credential(&outcome).starts_with("ya29.metadata-"),
            "{annotations:?}: {outcome:?}"
        );
    }
    // A request with no token at all (no tokenAttributes in the kubelet config).
    let run = world
        .plugin(gke)
        .stdin(request(API_VERSIONS[0], IMAGE))
        .run();
    let observed =
        crate::common::kubelet::read(API_VERSIONS[0], IMAGE, run.code, &run.stdout).unwrap();
    assert!(observed.credentials[0].1.starts_with("ya29.metadata-"));
    assert_eq!((world.sts_count(), world.iam_count()), (0, 0));
}

#[test]
fn tokens_are_shared_by_the_pods_of_one_service_account_and_by_no_one_else() {
    let world = World::new();
    let rules = world.gke_rules();
    let args = config_arg(&rules);
    let mut seen: Vec<String> = Vec::new();
    let mut pull = |pod: &Pod| {
        let (outcome, _) = world.fresh_pull(POOL, &args, pod);
        let password = credential(&outcome);
        seen.push(password.clone());
        (password, world.sts_count(), world.iam_count())
    };
    let both = [(ENABLE, "true"), (GSA, PULLER)];
    let (first, ..) = pull(&pod("team-a", "web-1", "app", &both));
    assert_eq!(first, "ya29.iam-puller-0");
    assert_eq!(
        pull(&pod("team-a", "web-2", "app", &both)),
        (first.clone(), 1, 1),
        "another pod of the same service account shares the token"
    );
    assert_eq!(
        pull(&pod("team-b", "web-1", "app", &both)),
        ("ya29.iam-puller-1".into(), 2, 2),
        "another service account impersonating the same Google account fetches its own"
    );
    assert_eq!(
        pull(&pod("team-a", "web-3", "app", &[(ENABLE, "true")])),
        ("ya29.sts-team-a-app-2".into(), 3, 2),
        "the same service account without the impersonation annotation"
    );
    assert_eq!(
        pull(&pod(
            "team-a",
            "web-4",
            "app",
            &[(ENABLE, "true"), (GSA, OTHER)]
        )),
        ("ya29.iam-other-2".into(), 4, 3),
        "the same service account with another annotation value"
    );
    let mut recreated = pod("team-a", "web-5", "app", &both);
    recreated.service_account.as_mut().unwrap().uid = "team-a-app-uid-2".into();
    assert_eq!(
        pull(&recreated),
        ("ya29.iam-puller-3".into(), 5, 4),
        "a service account deleted and made again under the same name"
    );
    assert_eq!(pull(&pod("team-a", "web-6", "app", &both)).1, 5);
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), 5, "{seen:?}");
}

/// 16 pods of one service account start at once, each with its own token.
fn sixteen_pods_at_once(world: &World, args: &[&str]) -> Vec<String> {
    let pods: Vec<Pod> = (0..16)
        .map(|i| {
            pod(
                "team-a",
                &format!("web-{i}"),
                "app",
                &[(ENABLE, "true"), (GSA, PULLER)],
            )
        })
        .collect();
    std::thread::scope(|scope| {
        let pulls: Vec<_> = pods
            .iter()
            .map(|pod| scope.spawn(move || credential(&world.fresh_pull(POOL, args, pod).0)))
            .collect();
        pulls.into_iter().map(|pull| pull.join().unwrap()).collect()
    })
}

#[test]
fn sixteen_pods_of_one_service_account_cost_one_exchange_and_one_impersonation() {
    let world = World::new();
    let rules = world.gke_rules();
    let passwords = sixteen_pods_at_once(&world, &config_arg(&rules));
    assert!(
        passwords.iter().all(|p| *p == passwords[0]),
        "{passwords:?}"
    );
    assert_eq!((world.sts_count(), world.iam_count()), (1, 1));
    assert_eq!(world.metadata.request_count(), 0);
}

#[test]
fn sixteen_pods_without_the_cache_cost_sixteen_of_each() {
    let world = World::new();
    let rules = world.gke_rules();
    let [flag, path] = config_arg(&rules);
    let passwords = sixteen_pods_at_once(&world, &["--no-cache", flag, path]);
    assert_eq!(passwords.len(), 16);
    assert_eq!((world.sts_count(), world.iam_count()), (16, 16));
    let subjects: std::collections::BTreeSet<String> = world
        .google
        .exchanges()
        .iter()
        .map(|e| e.get("subject_token").to_owned())
        .collect();
    assert_eq!(subjects.len(), 16, "each pod's own token was exchanged");
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

#[test]
fn no_token_nor_part_of_one_is_logged_at_vvv_or_kept_in_the_cache() {
    let world = World::new();
    let rules = world.gke_rules();
    let [flag, path] = config_arg(&rules);
    let pods = [
        pod("team-a", "web-1", "app", &[(ENABLE, "true"), (GSA, PULLER)]),
        pod("team-a", "web-2", "app", &[(ENABLE, "true"), (GSA, PULLER)]),
        pod("team-b", "web-1", "app", &[(ENABLE, "true")]),
    ];
    let mut tokens = Vec::new();
    let mut stderr = String::new();
    for pod in &pods {
        let (input, token) = service_account_request(IMAGE, pod, POOL);
        let run = world.plugin(&["-vvv", flag, path]).stdin(input).run();
        assert_eq!(run.code, 0, "{}", run.stderr);
        stderr.push_str(&run.stderr);
        tokens.push(token);
    }
    assert_eq!((world.sts_count(), world.iam_count()), (2, 1));
    assert_eq!(
        stderr
            .matches("exchanging the service account token")
            .count(),
        2,
        "-vvv logs each exchange: {stderr}"
    );
    assert!(stderr.contains("team-b/app"), "{stderr}");
    let cached: Vec<(PathBuf, String)> = files(&world.cache())
        .into_iter()
        .map(|path| {
            let content = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            (path, content)
        })
        .collect();
    assert!(!cached.is_empty());
    for token in &tokens {
        for part in token.split('.') {
            assert!(!stderr.contains(part), "a token part on stderr: {stderr}");
            for (path, content) in &cached {
                assert!(
                    !content.contains(part) && !path.to_string_lossy().contains(part),
                    "a token part in {}",
                    path.display()
                );
            }
        }
    }
    for exchanged in world.google.issued() {
        assert!(!stderr.contains(&exchanged), "{stderr}");
    }
    assert!(!stderr.contains("ya29."), "{stderr}");
}

#[test]
fn a_token_sts_rejects_is_one_line_naming_the_service_account_and_no_fallback() {
    let world = World::new();
    let rules = world.gke_rules();
    let pod = pod("team-a", "web-1", "app", &[(ENABLE, "true")]);
    let (input, token) = service_account_request(IMAGE, &pod, POOL);
    let (signed, _) = token.rsplit_once('.').unwrap();
    let forged = format!(
        "{signed}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("forged")
    );
    let run = world
        .plugin(&config_arg(&rules))
        .stdin(input.replace(&token, &forged))
        .run();
    run.assert_error(
        1,
        &format!(
            "gcp backend (rule 0): service account team-a/app (annotation {ENABLE} = \"true\", STS audience \"{}\"): access denied by Google STS https://sts.googleapis.com/v1/token: HTTP 400: invalid_grant (Invalid JWT signature.)",
            gke_audience()
        ),
    );
    for part in forged.split('.') {
        assert!(!run.stderr.contains(part), "{}", run.stderr);
    }
    // Opted in and refused: the node's identity is not used instead.
    assert_eq!((world.sts_count(), world.metadata.request_count()), (1, 0));
    // A token for another audience than the pool's is refused too, and now before it is
    // sent: Google STS is not asked (issue 20, item 8; it used to answer invalid_grant).
    let (outcome, run) = world.fresh_pull("sts.amazonaws.com", &config_arg(&rules), &pod);
    assert_eq!(outcome.error.as_deref(), Some("exit status 1"));
    assert!(outcome.credentials.is_empty());
    run.assert_error(
        1,
        "the service account token of team-a/app is for [\"sts.amazonaws.com\"], not \"my-project.svc.id.goog\" as the backend expects; not sent",
    );
    assert_eq!((world.sts_count(), world.metadata.request_count()), (1, 0));
}

#[test]
fn an_impersonation_iam_refuses_is_one_line_naming_the_annotation() {
    let world = World::new();
    let rules = world.gke_rules();
    let pod = pod("team-c", "web-1", "app", &[(ENABLE, "true"), (GSA, PULLER)]);
    let (outcome, run) = world.fresh_pull(POOL, &config_arg(&rules), &pod);
    assert!(outcome.credentials.is_empty());
    run.assert_error(
        1,
        &format!(
            "service account team-c/app (annotation {GSA} = \"{PULLER}\"): access denied by IAM Credentials generateAccessToken for {PULLER}: HTTP 403: PERMISSION_DENIED (Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).)"
        ),
    );
    assert!(!run.stderr.contains("ya29."), "{}", run.stderr);
    assert_eq!((world.sts_count(), world.iam_count()), (1, 1));
}

#[test]
fn an_impersonation_annotation_that_is_no_email_is_refused_before_any_request() {
    let world = World::new();
    let rules = world.gke_rules();
    let hostile = "puller@my-project.iam.gserviceaccount.com/../../x:signBlob";
    let pod = pod(
        "team-a",
        "web-1",
        "app",
        &[(ENABLE, "true"), (GSA, hostile)],
    );
    let (_, run) = world.fresh_pull(POOL, &config_arg(&rules), &pod);
    run.assert_error(
        1,
        &format!(
            "service account team-a/app: annotation {GSA} = \"{hostile}\" is not a Google service account email"
        ),
    );
    assert_eq!((world.sts_count(), world.iam_count()), (0, 0));
}

#[test]
fn throttling_is_retried_then_reported_in_one_line() {
    let world = World::with(|knobs| knobs.sts_throttled = 2.into());
    let rules = world.gke_rules();
    let [flag, path] = config_arg(&rules);
    let args = ["--no-cache", flag, path];
    let pod = pod("team-a", "web-1", "app", &[(ENABLE, "true"), (GSA, PULLER)]);
    let (outcome, _) = world.fresh_pull(POOL, &args, &pod);
    assert_eq!(credential(&outcome), "ya29.iam-puller-0");
    assert_eq!((world.sts_count(), world.iam_count()), (3, 1));

    let knobs = world.google.knobs.lock().unwrap();
    knobs.sts_throttled.store(100, Ordering::SeqCst);
    drop(knobs);
    let (_, run) = world.fresh_pull(POOL, &args, &pod);
    run.assert_error(
        1,
        "service account team-a/app (annotation iam.gke.io/enable-wi-image-pull = \"true\", STS audience",
    );
    assert!(
        run.stderr
            .contains("): throttled by Google STS https://sts.googleapis.com/v1/token (HTTP 429)"),
        "{}",
        run.stderr
    );
    assert_eq!(world.sts_count(), 6, "three tries");

    let knobs = world.google.knobs.lock().unwrap();
    knobs.sts_throttled.store(0, Ordering::SeqCst);
    knobs.iam_throttled.store(100, Ordering::SeqCst);
    drop(knobs);
    let (_, run) = world.fresh_pull(POOL, &args, &pod);
    run.assert_error(
        1,
        &format!(
            "service account team-a/app (annotation {GSA} = \"{PULLER}\"): throttled by IAM Credentials generateAccessToken for {PULLER} (HTTP 429)"
        ),
    );
    assert_eq!(world.iam_count(), 4, "one earlier, then three tries");
}

#[test]
fn a_self_managed_cluster_names_its_pool_provider_and_renamed_annotations() {
    let world = World::new();
    let rules = world.rules(&format!(
        "      workloadIdentity:\n        audience: {POOL_PROVIDER}\n        requireOptIn: false\n        serviceAccountAnnotation: example.com/gcp-service-account\n"
    ));
    let args = config_arg(&rules);
    let keys = [ENABLE, GSA, "example.com/gcp-service-account"];
    let pull = |pod: &Pod| {
        let mut kubelet = kubelet(POOL_PROVIDER, &keys);
        credential(&world.pull(&mut kubelet, &args, pod).0)
    };
    // No opt-in needed; the official impersonation annotation is not the one read.
    assert_eq!(
        pull(&pod("team-a", "web-1", "app", &[(GSA, PULLER)])),
        "ya29.sts-team-a-app-0"
    );
    assert_eq!(
        pull(&pod(
            "team-b",
            "web-1",
            "app",
            &[("example.com/gcp-service-account", PULLER)]
        )),
        "ya29.iam-puller-0"
    );
    let exchanges = world.google.exchanges();
    assert!(exchanges.iter().all(|e| e.get("audience") == POOL_PROVIDER));
    assert_eq!((exchanges.len(), world.iam_count()), (2, 1));
}

#[test]
fn bad_workload_identity_settings_are_reported_by_check_config() {
    let world = World::new();
    for (gcp, expected) in [
        (
            "      workloadIdentity: {projectId: my-project}\n",
            "workloadIdentity: projectId needs identityProvider",
        ),
        (
            "      source: dockercfg\n      workloadIdentity: {audience: x}\n",
            "workloadIdentity is not for source dockercfg",
        ),
        (
            "      workloadIdentity: {audience: 'https://iam.googleapis.com/x'}\n",
            "workloadIdentity: audience \"https://iam.googleapis.com/x\" is neither",
        ),
        (
            "      workloadIdentity: {projectId: my-project, identityProvider: x, enableAnnotations: y}\n",
            "unknown field `enableAnnotations`",
        ),
    ] {
        let rules = world.rules(gcp);
        let run = world
            .plugin(&["check-config", "--config", rules.to_str().unwrap()])
            .run();
        assert_eq!(run.code, 1, "{gcp}: {}", run.stdout);
        assert!(
            run.stdout.contains(expected) || run.stderr.contains(expected),
            "{gcp}: {} {}",
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn the_auth_provider_gcp_drop_in_takes_the_official_flags() {
    let world = World::new();
    let program = world.dir.path().join("auth-provider-gcp");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_image-credential-provider"), &program).unwrap();
    let pod = pod("team-a", "web-1", "app", &[(ENABLE, "true")]);
    let identity_provider = format!("--identity-provider={PROVIDER}");
    for (args, expected) in [
        (
            vec![
                "get-credentials",
                "--project-id=my-project",
                identity_provider.as_str(),
            ],
            "ya29.sts-team-a-app-0",
        ),
        (vec!["get-credentials"], "ya29.metadata-default-0"),
    ] {
        let mut kubelet = kubelet(POOL, &[ENABLE, GSA]);
        let outcome = kubelet.pull(IMAGE, Some(&pod), |sent| {
            let run = world
                .plugin_at(&program, &args)
                .stdin(sent.stdin.clone())
                .run();
            (run.code, run.stdout)
        });
        assert_eq!(credential(&outcome), expected, "{args:?}");
    }
    assert_eq!(world.google.exchanges()[0].get("audience"), gke_audience());
}
