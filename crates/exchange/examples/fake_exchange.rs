//! Runs the tests' fakes of Quay, JFrog, Cloudsmith, Vault and the token endpoints on the
//! loopback, writes into DIR (the first argument) a rules file with one rule per backend
//! (`rules.yaml`) and, for each backend, the kubelet's request of a trusted pod
//! (`request-<provider>.json`, the pod's token for the backend's audience, valid an
//! hour), and prints the environment that sends the plugin to the fakes (`export
//! NAME='value'` lines), until killed. For trying the binary by hand and for timing one
//! cold exchange (`bench/run`):
//!
//! ```sh
//! cargo run -q -p icp-exchange --example fake_exchange /tmp/x > /tmp/x.env &
//! sleep 5; . /tmp/x.env
//! target/release/image-credential-provider --config /tmp/x/rules.yaml --no-cache < /tmp/x/request-quay.json
//! ```

use std::io::Write;
use std::path::PathBuf;

use icp_test_kit::exchange::{World, ca_file, now, service_account_token};

/// Each backend's rule, an image it serves and its audience.
const BACKENDS: &[(&str, &str, &str, &str)] = &[
    (
        "quay",
        "{matchImages: [quay.example.com], provider: quay, quay: {robot: acme+puller}}",
        "quay.example.com/acme/app",
        "quay",
    ),
    (
        "jfrog",
        "{matchImages: [acme.jfrog.io], provider: jfrog, jfrog: {providerName: k8s-prod, audience: jfrog}}",
        "acme.jfrog.io/docker-local/app",
        "jfrog",
    ),
    (
        "cloudsmith",
        "{matchImages: [docker.cloudsmith.io], provider: cloudsmith, cloudsmith: {org: acme, serviceSlug: puller}}",
        "docker.cloudsmith.io/acme/repo/app",
        "cloudsmith",
    ),
    (
        "vault",
        "{matchImages: [registry.internal.example], provider: vault, vault: {address: \"https://vault.internal.example:8200\", role: image-pull, secretPath: \"secret/data/registry/{namespace}/{serviceAccount}\"}}",
        "registry.internal.example/app",
        "vault",
    ),
    (
        "tokenExchange",
        "{matchImages: [registry.te.example], provider: tokenExchange, tokenExchange: {url: \"https://sts.example.com/token\", audience: registry.te.example, username: oauth2accesstoken}}",
        "registry.te.example/app",
        "registry.te.example",
    ),
];

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: fake_exchange DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let rules: String = BACKENDS
        .iter()
        .map(|(_, rule, _, _)| format!("  - {rule}\n"))
        .collect();
    std::fs::write(dir.join("rules.yaml"), format!("rules:\n{rules}")).unwrap();
    for (provider, _, image, audience) in BACKENDS {
        let token = service_account_token("team-a", "app", audience, now() + 3600);
        let request = serde_json::json!({
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "kind": "CredentialProviderRequest",
            "image": image,
            "serviceAccountToken": token,
            "serviceAccountAnnotations": {},
        });
        std::fs::write(
            dir.join(format!("request-{provider}.json")),
            request.to_string(),
        )
        .unwrap();
    }
    let world = World::new();
    let mut out = std::io::stdout().lock();
    writeln!(out, "export SSL_CERT_FILE='{}'", ca_file().display()).unwrap();
    for (name, value) in world.env() {
        writeln!(out, "export {name}='{value}'").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    loop {
        std::thread::park();
    }
}
