//! `explain IMAGE`: the three cases of docs/troubleshooting.md (a pod whose required
//! annotation is missing, a provider entry asking for an audience no rule uses, one that
//! works, fetched live from the loopback AWS of
//! `icp_test_kit::aws::sts`), their outputs kept in `testdata/explain/` and quoted by
//! the doc; nothing sent, run or written without `--live`; bad input; and the kubelet-side
//! model against every service-account case and every kubelet config validation case.
//!
//! `EXPLAIN_BLESS=1` writes the outputs of the three cases into `testdata/explain/`
//! instead of comparing them.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::kubelet::service_account::{projected_token, token_attributes};
use crate::common::{Plugin, Run, pod, testdata};
use icp_test_kit::aws::sts::{Aws, ecr_password};
use image_credential_provider::explain::kubelet::{
    CacheKey, Decision, Pod, ServiceAccount, Skip, TokenAttributes, decide,
};

const IMAGE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1";
const ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
const ROLE: &str = "arn:aws:iam::111122223333:role/puller";

/// The directory of the cases and their outputs.
fn cases() -> PathBuf {
    testdata().join("explain")
}

/// A private directory holding case `name`'s kubelet config as `kubelet.yaml` and its
/// Pod manifest, if any, as `pod.yaml`: the paths the outputs show.
fn case_dir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [("kubelet.yaml", "kubelet.yaml"), ("pod.yaml", "pod.yaml")] {
        let source = cases().join(format!("{name}.{from}"));
        if source.exists() {
            std::fs::copy(&source, dir.path().join(to)).unwrap();
        }
    }
    dir
}

/// `explain` with `args`, run in `dir`.
fn explain(dir: &Path, args: &[&str]) -> Plugin {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    Plugin::new(all).dir(dir)
}

/// `text` with the numbers of every duration (`11h59m58s`, `54s`) made `N`, which differ
/// from run to run.
fn stable(text: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let mut previous = ' ';
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            let starts_token = !previous.is_ascii_alphanumeric() || "hm".contains(previous);
            if matches!(c, 'h' | 'm' | 's') && starts_token {
                out.push('N');
            } else {
                out.push_str(&digits);
            }
            digits.clear();
        }
        out.push(c);
        previous = c;
    }
    out.push_str(&digits);
    out
}

/// Asserts that `run` explained (exit 0, nothing on stderr) and printed what
/// `testdata/explain/NAME.txt` holds (durations aside); or writes it there when
/// blessing.
fn assert_output(run: &Run, name: &str) {
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let path = cases().join(format!("{name}.txt"));
    if std::env::var_os("EXPLAIN_BLESS").is_some() {
        std::fs::write(&path, &run.stdout).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        stable(&run.stdout),
        stable(&expected),
        "{name}: got\n{}",
        run.stdout
    );
}

#[test]
fn a_pod_whose_required_annotation_is_missing_is_skipped_by_the_kubelet() {
    let dir = case_dir("required-annotation");
    let run = explain(
        dir.path(),
        &[
            IMAGE,
            "--kubelet-config",
            "kubelet.yaml",
            "--pod",
            "pod.yaml",
        ],
    )
    .run();
    assert_output(&run, "required-annotation");
    assert!(run.stdout.ends_with(
        "verdict: the kubelet skips this plugin for this pod: the service account lacks the \
         required annotation eks.amazonaws.com/ecr-role-arn\n"
    ));
}

#[test]
fn an_entry_asking_for_an_audience_no_rule_uses_fails_the_pull() {
    let dir = case_dir("unused-audience");
    let run = explain(
        dir.path(),
        &[
            IMAGE,
            "--kubelet-config",
            "kubelet.yaml",
            "--namespace",
            "team-a",
            "--service-account",
            "app",
            "--annotation",
            &format!("{ANNOTATION}={ROLE}"),
        ],
    )
    .run();
    assert_output(&run, "unused-audience");
    assert!(
        run.stdout
            .contains("resources: [\"pods.eks.amazonaws.com\"]")
    );
    let verdict = run.stdout.lines().last().unwrap();
    assert!(
        verdict.starts_with("verdict: the pull fails:")
            && verdict.contains("which no rule uses")
            && verdict.contains("\"sts.amazonaws.com\""),
        "{verdict}"
    );
}

#[test]
fn a_pull_that_works_is_fetched_live_and_then_cached() {
    let dir = case_dir("works");
    let token = projected_token(
        &pod("team-a", "web", "app", &[(ANNOTATION, ROLE)]),
        pod("team-a", "web", "app", &[])
            .service_account
            .as_ref()
            .unwrap(),
        "sts.amazonaws.com",
    );
    std::fs::write(dir.path().join("token"), &token).unwrap();
    // The role's trust policy lets this pod's token assume it.
    let aws = Aws::start(std::time::Duration::ZERO);
    aws.grant(&token, ROLE);
    let with_aws = |plugin: Plugin| {
        plugin
            .env("AWS_ACCESS_KEY_ID", "AKIDNODEKEY")
            .env("AWS_SECRET_ACCESS_KEY", "node-secret-access-key")
            .env("AWS_ENDPOINT_URL_STS", &aws.url)
            .env("AWS_ENDPOINT_URL_ECR", &aws.url)
    };
    let args = [
        IMAGE,
        "--kubelet-config",
        "kubelet.yaml",
        "--pod",
        "pod.yaml",
        "--token-file",
        "token",
        "--cache-dir",
        "cache",
    ];
    let live: Vec<&str> = args.iter().copied().chain(["--live"]).collect();
    let run = with_aws(explain(dir.path(), &live)).run();
    assert_output(&run, "works");
    assert!(
        run.stdout.lines().last().unwrap().starts_with(
            "verdict: pulls 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app as user AWS"
        ),
        "{}",
        run.stdout
    );
    for text in [&run.stdout, &run.stderr] {
        for part in token.split('.') {
            assert!(!text.contains(part), "a token part is shown: {text}");
        }
        assert!(
            !text.contains(&ecr_password(1, ROLE)),
            "the password is shown: {text}"
        );
    }
    // The token the live run fetched is in the cache now, and said to be.
    let again = with_aws(explain(dir.path(), &args)).run();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("holds a token, expires in"),
        "{}",
        again.stdout
    );
    assert!(
        again
            .stdout
            .contains("(until the cached token's refresh point)")
    );
}

/// A fake credential helper `docker-credential-NAME` in `dir` running `script`.
fn fake_helper(dir: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn nothing_is_sent_run_or_written_without_live() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Every connection to the "AWS" endpoints is counted, and closed at once.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let helpers = dir.join("helpers");
    std::fs::create_dir(&helpers).unwrap();
    let ran = dir.join("helper-ran");
    fake_helper(
        &helpers,
        "spy",
        &format!(
            "touch {}; echo '{{\"Username\":\"u\",\"Secret\":\"s\"}}'",
            ran.display()
        ),
    );
    std::fs::write(
        dir.join("config.json"),
        r#"{"credHelpers": {"registry.example": "spy"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("rules.yaml"),
        "rules:\n\
         - {matchImages: [\"*.dkr.ecr.*.amazonaws.com\"], provider: ecr}\n\
         - {matchImages: [registry.example], provider: docker-config, dockerConfig: {path: config.json, helperDir: helpers}}\n",
    )
    .unwrap();
    std::fs::copy(cases().join("works.kubelet.yaml"), dir.join("kubelet.yaml")).unwrap();
    let token = projected_token(
        &pod("team-a", "web", "app", &[]),
        pod("team-a", "web", "app", &[])
            .service_account
            .as_ref()
            .unwrap(),
        "sts.amazonaws.com",
    );
    std::fs::write(dir.join("token"), token).unwrap();
    let cache = dir.join("cache");
    let run = |image: &str, extra: &[&str]| {
        let mut args = vec![
            "--config",
            "rules.yaml",
            "--cache-dir",
            "cache",
            "explain",
            image,
        ];
        args.extend_from_slice(extra);
        Plugin::new(args)
            .dir(dir)
            .env("AWS_ACCESS_KEY_ID", "AKIDNODEKEY")
            .env("AWS_SECRET_ACCESS_KEY", "node-secret-access-key")
            .env("AWS_ENDPOINT_URL_STS", &endpoint)
            .env("AWS_ENDPOINT_URL_ECR", &endpoint)
            .run()
    };
    let pod_args = [
        "--kubelet-config",
        "kubelet.yaml",
        "--namespace",
        "team-a",
        "--service-account",
        "app",
        "--annotation",
        "eks.amazonaws.com/ecr-role-arn=arn:aws:iam::111122223333:role/puller",
        "--token-file",
        "token",
    ];
    for (image, extra) in [
        (IMAGE, &[][..]),
        (IMAGE, &pod_args[..]),
        ("registry.example/app", &[][..]),
    ] {
        let explained = run(image, extra);
        assert_eq!(explained.code, 0, "{}", explained.stderr);
        assert!(
            explained.stdout.contains("verdict: would "),
            "{}",
            explained.stdout
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a connection was made"
    );
    assert!(!ran.exists(), "a credential helper was run");
    assert!(!cache.exists(), "the token cache was written");
    // The same with --live does reach them: the test would see it.
    run("registry.example/app", &["--live"]);
    assert!(ran.exists(), "--live runs the helper");
    let failed = run(IMAGE, &["--live"]);
    assert!(
        failed.stdout.contains("verdict: the pull fails:"),
        "{}",
        failed.stdout
    );
    assert!(connections.load(Ordering::SeqCst) > 0);
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = case_dir("required-annotation");
    let dir = dir.path();
    std::fs::write(dir.join("not-a-token"), "not.a-token").unwrap();
    std::fs::write(
        dir.join("no-pod.yaml"),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n",
    )
    .unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["UPPER/Case:tag:x"], "is not a valid image reference"),
        (
            &[IMAGE, "--kubelet-config", "missing.yaml"],
            "--kubelet-config missing.yaml: cannot read",
        ),
        (
            &[IMAGE, "--pod", "missing.yaml"],
            "--pod missing.yaml: cannot read",
        ),
        (&[IMAGE, "--pod", "no-pod.yaml"], "holds no Pod"),
        (
            &[IMAGE, "--service-account", "app", "--annotation", "novalue"],
            "expected KEY=VALUE",
        ),
        (
            &[
                IMAGE,
                "--service-account",
                "app",
                "--annotation",
                "bad key=v",
            ],
            "is not an annotation key",
        ),
        (
            &[IMAGE, "--annotation", "a=b"],
            "--annotation needs the pod",
        ),
        (&[IMAGE, "--token-file", "not-a-token"], "is not a JWT"),
    ];
    for (args, expected) in cases {
        explain(dir, args).run().assert_error(2, expected);
    }
    Plugin::new(["--config", "missing-rules.yaml", "explain", IMAGE])
        .dir(dir)
        .run()
        .assert_error(2, "missing-rules.yaml");
}

#[test]
fn without_a_kubelet_config_the_kubelet_side_is_not_explained() {
    let dir = tempfile::tempdir().unwrap();
    let run = explain(dir.path(), &[IMAGE, "--no-cache"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("2. kubelet: --kubelet-config not given"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("token cache: off"), "{}", run.stdout);
}

/// The kubelet's cache keys of `image` for each `cacheKeyType`, in a kubelet's order.
fn base_key(image: &str, cache_key_type: &str) -> String {
    match cache_key_type {
        "Image" => format!("image={image}"),
        "Registry" => format!("registry={}", image.split('/').next().unwrap()),
        _ => "global".to_owned(),
    }
}

/// The model's pod of a lookup's `pod` object.
fn model_pod(value: &serde_json::Value) -> Option<Pod> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    value.as_object()?;
    Some(Pod {
        namespace: text(&value["namespace"]),
        service_account: value
            .get("serviceAccount")
            .filter(|v| v.is_object())
            .map(|sa| ServiceAccount {
                name: text(&sa["name"]),
                uid: Some(text(&sa["uid"])),
                annotations: sa["annotations"]
                    .as_object()
                    .map(|a| a.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                    .unwrap_or_default(),
            }),
    })
}

/// The model's attributes of a provider config's `tokenAttributes`.
fn model_attributes(value: &serde_json::Value) -> Option<TokenAttributes> {
    value.as_object()?;
    Some(token_attributes(value))
}

/// Every lookup of every case of `service_account_cases.json`, through explain's model of
/// the kubelet, with the kubelet's cache of answers kept by the key the model says: whether
/// the plugin runs, whether a token is requested, the annotations passed on, and whether
/// the answer is kept, as the kubelet's own code did.
#[test]
fn the_kubelet_side_agrees_with_every_service_account_case() {
    let cases = icp_test_kit::conformance::value("service_account_cases.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let attributes = model_attributes(&case["providerConfig"]["tokenAttributes"]);
        let answer = &case["pluginAnswer"];
        let mut cache: HashMap<String, ()> = HashMap::new();
        for (index, lookup) in case["lookups"].as_array().unwrap().iter().enumerate() {
            let at = format!("{name}, lookup {index}");
            let image = lookup["image"].as_str().unwrap();
            let pod = model_pod(&lookup["pod"]);
            let decision = decide(attributes.as_ref(), pod.as_ref());
            assert_eq!(
                decision.token().is_some(),
                lookup["tokenRequested"],
                "{at}: {decision:?}"
            );
            let Decision::Run { token, cache_key } = &decision else {
                assert_eq!(lookup["pluginRan"], false, "{at}");
                assert_eq!(lookup["found"], false, "{at}");
                continue;
            };
            // The identity part of the kubelet's key: none, the service account's, or the
            // pod's own token (one per pod).
            let identity = match cache_key {
                CacheKey::Shared => String::new(),
                CacheKey::ServiceAccount {
                    namespace,
                    name,
                    uid,
                    annotations,
                } => format!("sa={namespace}/{name}/{uid:?}/{annotations:?}"),
                CacheKey::Token => format!("token={}", lookup["pod"]["uid"]),
            };
            let hit = ["Image", "Registry", "Global"]
                .iter()
                .any(|kind| cache.contains_key(&format!("{}#{identity}", base_key(image, kind))));
            assert_eq!(!hit, lookup["pluginRan"], "{at}");
            if hit {
                continue;
            }
            let received = &lookup["pluginReceived"];
            assert_eq!(token.is_some(), received["hasServiceAccountToken"], "{at}");
            let passed = token.as_ref().map(|t| &t.annotations);
            let expected: Option<BTreeMap<String, String>> =
                serde_json::from_value(received["serviceAccountAnnotations"].clone()).unwrap();
            assert_eq!(passed, expected.as_ref(), "{at}");
            let refused = answer["echoToken"] == true
                && attributes
                    .as_ref()
                    .is_some_and(|a| !a.cache_type.accepts_token_as_password());
            assert_eq!(!refused, lookup["found"], "{at}");
            if !refused && answer["cacheDuration"] != "0s" {
                let kind = answer["cacheKeyType"].as_str().unwrap();
                cache.insert(format!("{}#{identity}", base_key(image, kind)), ());
            }
        }
    }
}

#[test]
fn the_model_skips_for_the_reasons_the_kubelet_does() {
    let attributes = model_attributes(&serde_json::json!({
        "serviceAccountTokenAudience": "a",
        "cacheType": "ServiceAccount",
        "requireServiceAccount": true,
        "requiredServiceAccountAnnotationKeys": ["k"],
    }));
    assert_eq!(
        decide(attributes.as_ref(), None),
        Decision::Skip(Skip::NoServiceAccount)
    );
    let pod = model_pod(&serde_json::json!({"namespace": "n", "serviceAccount": {"name": "s"}}));
    assert_eq!(
        decide(attributes.as_ref(), pod.as_ref()),
        Decision::Skip(Skip::MissingAnnotation("k".to_owned()))
    );
}

/// Every kubelet config validation case of `testdata/kubelet-config/`: explain says the
/// kubelet refuses the configuration exactly when `check-config --kubelet-config` finds a
/// problem in it (its `.expect` file has an `error:` line).
#[test]
fn the_kubelet_side_agrees_with_every_config_validation_case() {
    let dir = testdata().join("kubelet-config");
    let mut expects: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "expect"))
        .collect();
    expects.sort();
    assert!(expects.len() >= 50, "only {} cases", expects.len());
    for expect in expects {
        let stem = expect.with_extension("");
        let case = ["", "yaml", "json"]
            .iter()
            .map(|ext| match *ext {
                "" => stem.clone(),
                ext => expect.with_extension(ext),
            })
            .find(|path| path.exists())
            .unwrap_or_else(|| panic!("no case for {}", expect.display()));
        let refused = std::fs::read_to_string(&expect)
            .unwrap()
            .lines()
            .any(|line| line.starts_with("error: "));
        let run = Plugin::new([
            "--no-cache",
            "explain",
            "registry.example/app",
            "--kubelet-config",
            case.to_str().unwrap(),
        ])
        .run();
        assert_eq!(run.code, 0, "{}: {}", case.display(), run.stderr);
        let verdict = run.stdout.lines().last().unwrap_or_default();
        assert_eq!(
            verdict.starts_with("verdict: the kubelet refuses"),
            refused,
            "{}: {}",
            case.display(),
            run.stdout
        );
    }
}

/// docs/troubleshooting.md quotes the outputs of the three cases as they are (durations
/// aside).
#[test]
fn the_troubleshooting_page_quotes_the_outputs() {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/troubleshooting.md"),
    )
    .unwrap();
    for name in ["required-annotation", "unused-audience", "works"] {
        let output = std::fs::read_to_string(cases().join(format!("{name}.txt"))).unwrap();
        assert!(
            stable(&page).contains(&stable(&format!("```text\n{output}```\n"))),
            "docs/troubleshooting.md does not quote testdata/explain/{name}.txt"
        );
    }
}

/// A kubelet config of one provider entry for `match_images` with `token_attributes` (YAML
/// flow mapping, or none).
fn kubelet_config(name: &str, match_images: &str, token_attributes: Option<&str>) -> String {
    let mut text = format!(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n\
         - name: {name}\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n\
         \x20 matchImages: {match_images}\n  defaultCacheDuration: \"0s\"\n"
    );
    if let Some(attributes) = token_attributes {
        text.push_str(&format!("  tokenAttributes: {attributes}\n"));
    }
    text
}

#[test]
fn every_verdict_names_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("rules.yaml"),
        "rules:\n\
         - {matchImages: [cgr.example], provider: tokenExchange, tokenExchange: {style: passThrough, tokenAudience: cgr.example, username: _token}}\n\
         - {matchImages: [bad.example], provider: ecr, ecr: {roleArn: not-an-arn}}\n\
         - {matchImages: [\"*.dkr.ecr.*.amazonaws.com\"], provider: ecr}\n",
    )
    .unwrap();
    let attributes = |cache_type: &str, require: bool, keys: &str| {
        format!(
            "{{serviceAccountTokenAudience: cgr.example, cacheType: {cache_type}, \
             requireServiceAccount: {require}, optionalServiceAccountAnnotationKeys: {keys}}}"
        )
    };
    let files = [
        (
            "service-account.yaml",
            kubelet_config(
                "image-credential-provider",
                "[cgr.example]",
                Some(&attributes("ServiceAccount", true, "[]")),
            ),
        ),
        (
            "token.yaml",
            kubelet_config(
                "image-credential-provider",
                "[cgr.example]",
                Some(&attributes("Token", false, "[]")),
            ),
        ),
        (
            "no-attributes.yaml",
            kubelet_config(
                "image-credential-provider",
                "[\"*.dkr.ecr.*.amazonaws.com\", bad.example]",
                None,
            ),
        ),
        (
            "ecr.yaml",
            kubelet_config(
                "image-credential-provider",
                "[\"*.dkr.ecr.*.amazonaws.com\"]",
                Some(
                    "{serviceAccountTokenAudience: sts.amazonaws.com, cacheType: ServiceAccount, requireServiceAccount: false}",
                ),
            ),
        ),
    ];
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let pod = ["--namespace", "team-a", "--service-account", "app"];
    let role = format!("{ANNOTATION}={ROLE}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [
                &[
                    "cgr.example/app",
                    "--kubelet-config",
                    "service-account.yaml",
                ][..],
                &pod,
            ]
            .concat(),
            "verdict: the kubelet refuses the plugin's answer: set tokenAttributes.cacheType: Token for rule 0 (tokenExchange)",
        ),
        (
            [
                &["cgr.example/app", "--kubelet-config", "token.yaml"][..],
                &pod,
            ]
            .concat(),
            "verdict: would pull cgr.example/app as the pod's service account team-a/app (",
        ),
        (
            vec![
                "cgr.example/app",
                "--kubelet-config",
                "service-account.yaml",
            ],
            "verdict: the kubelet skips this plugin for this pod: requireServiceAccount is true and the pod has no service account",
        ),
        (
            vec!["bad.example/app", "--kubelet-config", "no-attributes.yaml"],
            "verdict: the pull fails: rule 1's ecr backend cannot be built (config)",
        ),
        (
            vec!["registry.example/app"],
            "verdict: no credentials from this plugin: no rule of rules.yaml serves registry.example/app",
        ),
        (
            vec!["quay.io/app", "--kubelet-config", "token.yaml"],
            "verdict: the kubelet runs no credential provider for quay.io/app",
        ),
        (
            vec![
                "cgr.example/app",
                "--kubelet-config",
                "token.yaml",
                "--name",
                "other",
            ],
            "verdict: the kubelet never asks this binary about cgr.example/app: no provider is named \"other\"",
        ),
        (
            [
                &[IMAGE, "--kubelet-config", "no-attributes.yaml"][..],
                &pod,
                &["--annotation", &role],
            ]
            .concat(),
            "verdict: would pull 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app as the node's identity (aws",
        ),
    ];
    for (args, verdict) in cases {
        let mut all = vec!["--config", "rules.yaml", "--no-cache", "explain"];
        all.extend(&args);
        let run = Plugin::new(all).dir(dir).run();
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(
            run.stdout.lines().last().unwrap().starts_with(verdict),
            "{args:?}: expected {verdict:?} in\n{}",
            run.stdout
        );
    }
    // The service account's annotation the backend reads, which the entry does not pass on.
    let mut all = vec![
        "--config",
        "rules.yaml",
        "--no-cache",
        "explain",
        IMAGE,
        "--kubelet-config",
        "ecr.yaml",
    ];
    all.extend(pod);
    all.extend(["--annotation", &role]);
    let run = Plugin::new(all).dir(dir).run();
    assert!(
        run.stdout.contains(
            "the service account's annotation eks.amazonaws.com/ecr-role-arn is not passed on by the kubelet"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("as the node's identity"),
        "{}",
        run.stdout
    );
}
