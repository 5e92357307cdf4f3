//! Runs the tests' fake of AWS (STS, EKS Auth `AssumeRoleForPodIdentity`, ECR) on the
//! loopback with the service account `team-a/app` of cluster `prod` associated with a role,
//! and prints the environment that sends the plugin to it (`export NAME='value'` lines),
//! then a rules file and a kubelet request carrying that pod's token, until killed. For
//! trying EKS Pod Identity by hand and for timing one cold exchange:
//!
//! ```sh
//! cargo run -q -p icp-ecr --example fake_eks > /tmp/fake-eks.env &
//! sleep 5; . /tmp/fake-eks.env
//! image-credential-provider --no-cache --config "$EKS_RULES" < "$EKS_REQUEST"
//! ```

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use icp_test_kit::aws::sts::Aws;

fn main() {
    let aws = Aws::start(Duration::ZERO);
    aws.associate(
        "prod",
        "team-a",
        "app",
        "arn:aws:iam::111122223333:role/puller",
    );
    let dir = std::env::temp_dir().join(format!("fake-eks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - matchImages: ['*.dkr.ecr.*.amazonaws.com']\n    provider: ecr\n    ecr:\n      podIdentity: {clusterName: prod}\n",
    )
    .unwrap();
    let request = dir.join("request.json");
    std::fs::write(&request, request_json()).unwrap();
    let mut out = std::io::stdout().lock();
    for (name, value) in [
        ("AWS_ACCESS_KEY_ID", "AKIDFAKENODE"),
        ("AWS_SECRET_ACCESS_KEY", "fake-node-secret"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL_EKS_AUTH", &aws.url),
        ("AWS_ENDPOINT_URL_STS", &aws.url),
        ("AWS_ENDPOINT_URL_ECR", &aws.url),
        ("EKS_RULES", &rules.display().to_string()),
        ("EKS_REQUEST", &request.display().to_string()),
    ] {
        writeln!(out, "export {name}='{value}'").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    loop {
        std::thread::park();
    }
}

/// A kubelet request for an ECR image with the pod token of `team-a/app`, valid for a day.
fn request_json() -> String {
    let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = format!(
        r#"{{"aud":["pods.eks.amazonaws.com"],"exp":{},"sub":"system:serviceaccount:team-a:app","kubernetes.io":{{"namespace":"team-a","pod":{{"name":"web-1","uid":"web-1-uid"}},"serviceaccount":{{"name":"app","uid":"team-a-app-uid"}}}}}}"#,
        now + 86_400
    );
    let token = format!(
        "{}.{}.{}",
        encode(r#"{"alg":"RS256","kid":"fake"}"#),
        encode(&claims),
        encode("signature")
    );
    format!(
        r#"{{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1","serviceAccountToken":"{token}","serviceAccountAnnotations":{{}}}}"#
    ) + "\n"
}
