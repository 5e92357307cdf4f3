//! Which token a pull needs when the kubelet passes the pod's service account token:
//! worked out without I/O, keyed by the service account when the pod's identity is used
//! and by the node's identity otherwise. (The exchanges themselves are tested through the
//! binary, in `tests/gcp/pod_identity.rs`.)

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use base64::Engine;
use icp_core::{
    CacheKeyType, Environment, ImageRef, Request, Secret, ServiceAccount, TokenBackend,
};
use icp_gcp::{
    Config, ENABLE_ANNOTATION, Gcp, SERVICE_ACCOUNT_ANNOTATION, Source, WorkloadIdentity,
};

const PROVIDER: &str =
    "https://container.googleapis.com/v1/projects/my-project/locations/us-central1/clusters/c1";

fn account(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
    let encode = |text: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let claims = serde_json::json!({
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": format!("{name}-uid")}}
    });
    let token = format!(
        "{}.{}.{}",
        encode(r#"{"alg":"RS256"}"#.to_owned()),
        encode(claims.to_string()),
        encode(format!("signature-of-{namespace}-{name}"))
    );
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ServiceAccount::from_token(Secret::new(token), annotations).unwrap()
}

fn gcp(source: Source, key_file: Option<&str>) -> Result<Gcp, icp_gcp::Error> {
    let config = Config {
        source,
        key_file: key_file.map(Into::into),
        workload_identity: Some(WorkloadIdentity::gke("my-project", PROVIDER)),
        ..Config::default()
    };
    let env = Environment::from_pairs([("GCE_METADATA_HOST", OsString::from("127.0.0.1:9"))]);
    Gcp::new(config, Path::new("/nonexistent"), &env)
}

fn request<'a>(image: &'a ImageRef, account: Option<&'a ServiceAccount>) -> Request<'a> {
    Request {
        image,
        cache_key_type: CacheKeyType::Registry,
        service_account: account,
    }
}

#[test]
fn an_opted_in_account_is_keyed_by_itself_and_others_by_the_node() {
    let gcp = gcp(Source::Metadata, None).unwrap();
    let image = ImageRef::parse("us-docker.pkg.dev/my-project/repo/app").unwrap();
    let node = gcp.token_key(&request(&image, None)).unwrap();
    assert_eq!(node.identity, "gcp:metadata:127.0.0.1:9:default");
    let not_opted = account(
        "team-a",
        "app",
        &[(SERVICE_ACCOUNT_ANNOTATION, "a@p.iam.gserviceaccount.com")],
    );
    assert_eq!(
        gcp.token_key(&request(&image, Some(&not_opted))).unwrap(),
        node
    );

    let opted = account("team-a", "app", &[(ENABLE_ANNOTATION, "true")]);
    let key = gcp.token_key(&request(&image, Some(&opted))).unwrap();
    assert_eq!(key.scope, "google");
    assert_eq!(
        key.identity,
        format!(
            "sa=team-a/app/app-uid;{ENABLE_ANNOTATION}=true;gcp:sts:identitynamespace:my-project.svc.id.goog:{PROVIDER}"
        )
    );
    // Another Google registry host shares it; another service account does not.
    let other_host = ImageRef::parse("gcr.io/my-project/app").unwrap();
    assert_eq!(
        gcp.token_key(&request(&other_host, Some(&opted))).unwrap(),
        key
    );
    let other = account("team-b", "app", &[(ENABLE_ANNOTATION, "true")]);
    assert_ne!(gcp.token_key(&request(&image, Some(&other))).unwrap(), key);
}

#[test]
fn the_pods_identity_does_not_need_the_nodes_credential_file() {
    let gcp = gcp(Source::ServiceAccountKey, Some("missing.json")).unwrap();
    let image = ImageRef::parse("gcr.io/my-project/app").unwrap();
    assert!(gcp.check().is_err(), "the node's key file is missing");
    let opted = account("team-a", "app", &[(ENABLE_ANNOTATION, "true")]);
    assert!(gcp.token_key(&request(&image, Some(&opted))).is_ok());
    let not_opted = account("team-a", "app", &[]);
    let error = gcp
        .token_key(&request(&image, Some(&not_opted)))
        .unwrap_err();
    assert!(error.to_string().contains("missing.json"), "{error}");
}

#[test]
fn workload_identity_is_not_for_the_dockercfg_sources() {
    for source in [Source::Dockercfg, Source::DockercfgUrl] {
        let error = gcp(source, None).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "invalid gcp configuration: workloadIdentity is not for source {}",
                source.as_str()
            )
        );
    }
}

#[test]
fn the_rules_section_reads_every_field_and_refuses_unknown_ones() {
    let config: Config = serde_json::from_str(
        r#"{"workloadIdentity":{"audience":"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
            "enableAnnotation":"example.com/pull","serviceAccountAnnotation":"example.com/gsa","requireOptIn":false}}"#,
    )
    .unwrap();
    let settings = config.workload_identity.unwrap();
    assert_eq!(settings.enable_annotation, "example.com/pull");
    assert_eq!(settings.service_account_annotation, "example.com/gsa");
    assert!(!settings.require_opt_in);
    let defaults: Config = serde_json::from_str(
        r#"{"workloadIdentity":{"projectId":"my-project","identityProvider":"https://x.example"}}"#,
    )
    .unwrap();
    assert_eq!(
        defaults.workload_identity,
        Some(WorkloadIdentity::gke("my-project", "https://x.example"))
    );
    assert!(
        serde_json::from_str::<Config>(r#"{"workloadIdentity":{"projectID":"my-project"}}"#)
            .is_err()
    );
}
