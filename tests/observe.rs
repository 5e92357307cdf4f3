//! The audit log and the node metrics, through the binary: concurrent plugin processes
//! (ECR against the counting loopback fake, images no rule serves, a bad request) append
//! whole lines that hold no secret, and count into one metrics file that Prometheus'
//! own text-format parser (the `prometheus_client` package, in `.venv-prom` from
//! `.ci/setup`) reads back with the right counts.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{API_VERSIONS, Plugin, pod, request, service_account_request};
use icp_test_kit::aws::counting::{FakeAws, password};

const REGISTRY: &str = "111122223333.dkr.ecr.us-east-1.amazonaws.com";
const ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
const SECRET_KEY: &str = "fake-secret-access-key";

/// The binary with `args`, set up for ECR against `fake`, caching in `cache`.
fn plugin(fake: &FakeAws, cache: &Path, args: &[&std::ffi::OsStr], input: String) -> Plugin {
    let mut all = vec!["--cache-dir".as_ref(), cache.as_os_str()];
    all.extend_from_slice(args);
    Plugin::new(all)
        .env("AWS_ACCESS_KEY_ID", "AKIAFAKEOBSERVE")
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_ENDPOINT_URL_ECR", &fake.url)
        .env("AWS_ENDPOINT_URL_STS", &fake.url)
        .stdin(input)
}

/// Runs every input in its own process, all at once; returns the exit codes.
fn concurrently(make: impl Fn(String) -> Plugin, inputs: Vec<String>) -> Vec<i32> {
    let threads: Vec<_> = inputs
        .into_iter()
        .map(|input| {
            let plugin = make(input);
            std::thread::spawn(move || plugin.run().code)
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn concurrent_answers_each_append_one_whole_line_without_a_secret() {
    let fake = FakeAws::start(Duration::from_millis(200), 0);
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let log = root.path().join("logs/audit.log");
    let role = "arn:aws:iam::111122223333:role/puller";
    let pods: Vec<_> = (0..4)
        .map(|i| {
            pod(
                "team-a",
                &format!("app-{i}"),
                &format!("app{}", i % 2),
                &[(ROLE_ANNOTATION, role)],
            )
        })
        .collect();
    let mut inputs = Vec::new();
    let mut pod_tokens = Vec::new();
    for i in 0..12 {
        inputs.push(request(API_VERSIONS[i % 3], &format!("{REGISTRY}/app-{i}")));
    }
    for pod in &pods {
        let (input, token) =
            service_account_request(&format!("{REGISTRY}/app"), pod, "sts.amazonaws.com");
        inputs.push(input);
        pod_tokens.push(token);
    }
    inputs.push(request(API_VERSIONS[0], "registry.example/app"));
    inputs.push("{\"kind\": \"not a request\"".to_owned());
    let count = inputs.len();
    let codes = concurrently(
        |input| {
            plugin(
                &fake,
                &cache,
                &["--audit-log".as_ref(), log.as_os_str()],
                input,
            )
        },
        inputs,
    );
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), count - 1);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one whole JSON object"))
        .collect();
    assert_eq!(lines.len(), count, "{text}");
    let by = |field: &str, value: &str| {
        lines
            .iter()
            .filter(|l| l[field].as_str() == Some(value))
            .count()
    };
    assert_eq!(by("outcome", "served"), 16);
    assert_eq!(by("outcome", "empty"), 1);
    assert_eq!(by("outcome", "error"), 1);
    assert_eq!(by("error", "bad-request"), 1);
    assert_eq!(by("cache", "miss"), 3, "the node and two service accounts");
    assert_eq!(by("cache", "hit"), 13);
    for line in &lines {
        let time = line["time"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
    }
    let node = lines
        .iter()
        .find(|l| l["image"] == format!("{REGISTRY}/app-0"))
        .unwrap();
    assert_eq!(node["rule"], 0);
    assert_eq!(node["backend"], "ecr");
    assert_eq!(
        node["identity"], "aws;AWS_ACCESS_KEY_ID=AKIAFAKEOBSERVE",
        "{node}"
    );
    let miss = lines
        .iter()
        .find(|l| l["cache"] == "miss" && l["identity"].as_str().unwrap().contains("app0"))
        .unwrap();
    assert_eq!(
        miss["identity"],
        format!(
            "sa=team-a/app0/team-a-app0-uid;{ROLE_ANNOTATION}={role};aws:web-identity;roleArn={role}"
        )
    );
    assert!(miss["upstreamSeconds"].as_f64().unwrap() >= 0.2, "{miss}");

    let mut secrets = vec![SECRET_KEY.to_owned(), "fake-session-token".to_owned()];
    secrets.extend((1..=fake.ecr_calls()).map(password));
    for token in &pod_tokens {
        secrets.extend(token.split('.').map(str::to_owned));
    }
    for secret in &secrets {
        let chars: Vec<char> = secret.chars().collect();
        for fragment in chars.windows(12.min(chars.len())) {
            let fragment: String = fragment.iter().collect();
            assert!(
                !text.contains(&fragment),
                "{fragment:?} of a secret in the audit log"
            );
        }
    }
}

/// The samples of the metrics file as `prometheus_client`'s parser reads them:
/// `name{label="value",...}` (labels sorted) to value.
fn parse_with_prometheus_client(path: &Path) -> BTreeMap<String, f64> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-prom/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run .ci/setup (it installs prometheus-client there)",
        python.display()
    );
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        out["%s{%s}" % (s.name, labels)] = s.value
print(json.dumps(out))
"#;
    let output = Command::new(&python)
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the parser refused the file: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn concurrent_runs_count_into_one_metrics_file_that_prometheus_reads() {
    let fake = FakeAws::start(Duration::from_millis(300), 0);
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let metrics: PathBuf = root.path().join("textfile");
    std::fs::create_dir(&metrics).unwrap();
    let rules = root.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n    provider: ecr\n\
         metrics:\n  dir: textfile\n",
    )
    .unwrap();
    let config = ["--config".as_ref(), rules.as_os_str()];
    let mut inputs: Vec<String> = (0..20)
        .map(|i| request(API_VERSIONS[i % 3], &format!("{REGISTRY}/app-{i}")))
        .collect();
    inputs.extend((0..4).map(|i| request(API_VERSIONS[0], &format!("registry.example/app-{i}"))));
    let codes = concurrently(|input| plugin(&fake, &cache, &config, input), inputs);
    assert!(codes.iter().all(|c| *c == 0), "{codes:?}");
    let bad = plugin(&fake, &cache, &config, "not json".to_owned()).run();
    assert_eq!(bad.code, 1);

    let samples = parse_with_prometheus_client(&metrics.join("image_credential_provider.prom"));
    let sample = |key: &str| {
        samples
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("{key} in {samples:#?}"))
    };
    let requests = |backend: &str, cache: &str, outcome: &str| {
        sample(&format!(
            "image_credential_provider_requests_total{{backend=\"{backend}\",cache=\"{cache}\",outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(requests("ecr", "miss", "served"), 1.0);
    assert_eq!(requests("ecr", "hit", "served"), 19.0);
    assert_eq!(requests("none", "none", "empty"), 4.0);
    assert_eq!(requests("none", "none", "error"), 1.0);
    assert_eq!(
        sample("image_credential_provider_errors_total{backend=\"none\",kind=\"bad-request\"}"),
        1.0
    );
    let histogram = "image_credential_provider_upstream_duration_seconds";
    let labels = "backend=\"ecr\",outcome=\"success\"";
    let bucket = |le: &str| {
        sample(&format!(
            "{histogram}_bucket{{backend=\"ecr\",le=\"{le}\",outcome=\"success\"}}"
        ))
    };
    assert_eq!(sample(&format!("{histogram}_count{{{labels}}}")), 1.0);
    assert_eq!(bucket("0.25"), 0.0, "the fake takes 300 ms");
    let bounds = [
        "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "20", "30", "+Inf",
    ];
    let cumulative: Vec<f64> = bounds.iter().map(|le| bucket(le)).collect();
    assert!(cumulative.is_sorted(), "{cumulative:?}");
    assert_eq!(bucket("+Inf"), 1.0);
    assert!(sample(&format!("{histogram}_sum{{{labels}}}")) >= 0.3);
    assert_eq!(fake.ecr_calls(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(&metrics)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        leftovers,
        ["image_credential_provider.prom"],
        "no temporary file left"
    );
}

#[test]
fn the_environment_names_the_audit_log_and_the_metrics_directory() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let metrics = root.path().join("textfile");
    std::fs::create_dir(&metrics).unwrap();
    let log = root.path().join("audit.log");
    let run = plugin(
        &fake,
        &cache,
        &[],
        request(API_VERSIONS[0], &format!("{REGISTRY}/app")),
    )
    .env("IMAGE_CREDENTIAL_PROVIDER_AUDIT_LOG", &log)
    .env("IMAGE_CREDENTIAL_PROVIDER_METRICS_DIR", &metrics)
    .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    let samples = parse_with_prometheus_client(&metrics.join("image_credential_provider.prom"));
    assert_eq!(
        samples["image_credential_provider_requests_total{backend=\"ecr\",cache=\"miss\",outcome=\"served\"}"],
        1.0
    );
}
