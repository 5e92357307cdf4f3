//! End to end against a real registry: Debian's `docker-registry` on 127.0.0.1 with
//! htpasswd auth and TLS from a test CA, a tiny image pushed with `skopeo`, and the
//! plugin's answer for it turned into an auth file that `skopeo inspect` must get in
//! with, and must not get in with once the password is wrong: with the password in the
//! docker config file, and with it only in `pass`, behind `docker-credential-pass`.

use crate::common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::pass::PassStore;
use common::{API_VERSIONS, Plugin, request};
use sha2::{Digest, Sha256};

const USER: &str = "e2e-user";
const PASSWORD: &str = "e2e-registry-password";

/// Fails, naming the setup command, when a tool the test needs is missing.
fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: run .ci/setup (it installs docker-registry, skopeo, apache2-utils and openssl)"
    );
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A test CA and a server certificate for 127.0.0.1 and localhost, signed by it.
fn make_tls(dir: &Path) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=icp test CA",
            "-keyout",
            &path("ca.key"),
            "-out",
            &path("ca.crt"),
        ],
    );
    run(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &path("server.key"),
            "-out",
            &path("server.csr"),
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.crt"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &path("san.ext"),
            "-out",
            &path("server.crt"),
        ],
    );
    std::fs::create_dir(dir.join("certs")).unwrap();
    std::fs::copy(dir.join("ca.crt"), dir.join("certs/ca.crt")).unwrap();
}

/// The registry, killed when dropped.
struct Registry {
    child: Child,
    address: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: &Path) -> Registry {
    let htpasswd = run("htpasswd", &["-Bbn", USER, PASSWORD]);
    std::fs::write(dir.join("htpasswd"), htpasswd.stdout).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let d = dir.display();
    let config = format!(
        "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {d}/data}}}}\n\
         http: {{addr: \"{address}\", tls: {{certificate: {d}/server.crt, key: {d}/server.key}}}}\n\
         auth: {{htpasswd: {{realm: e2e, path: {d}/htpasswd}}}}\n"
    );
    std::fs::write(dir.join("registry.yml"), config).unwrap();
    let child = Command::new("docker-registry")
        .args(["serve", dir.join("registry.yml").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry starts");
    let registry = Registry { child, address };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&registry.address).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen on {} within 20 s",
            registry.address
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    registry
}

/// Writes `content` as a blob of an OCI layout and returns its descriptor fields.
fn blob(layout: &Path, content: &[u8]) -> (String, usize) {
    let hex: String = Sha256::digest(content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let digest = format!("sha256:{hex}");
    std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), content).unwrap();
    (digest, content.len())
}

/// A one-layer image in an OCI layout, tagged `v1`.
fn make_image(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from the e2e test\n").unwrap();
    run(
        "tar",
        &[
            "-cf",
            dir.join("layer.tar").to_str().unwrap(),
            "-C",
            dir.to_str().unwrap(),
            "hello.txt",
        ],
    );
    let (layer, layer_size) = blob(&layout, &std::fs::read(dir.join("layer.tar")).unwrap());
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}});
    let (config, config_size) = blob(&layout, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    let (manifest, manifest_size) = blob(&layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

fn skopeo(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("HOME", dir)
        .env("SSL_CERT_FILE", dir.join("ca.crt"))
        .output()
        .expect("skopeo runs")
}

/// An auth file for skopeo made of a plugin response's `auth` map, as the kubelet would
/// hand the credentials to the container runtime.
fn auth_file(dir: &Path, response: &serde_json::Value, password_override: Option<&str>) -> PathBuf {
    let mut auths = serde_json::Map::new();
    for (key, entry) in response["auth"].as_object().unwrap() {
        let username = entry["username"].as_str().unwrap();
        let password = password_override.unwrap_or_else(|| entry["password"].as_str().unwrap());
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        auths.insert(key.clone(), serde_json::json!({"auth": auth}));
    }
    let path = dir.join(if password_override.is_some() {
        "wrong-auth.json"
    } else {
        "auth.json"
    });
    std::fs::write(&path, serde_json::json!({"auths": auths}).to_string()).unwrap();
    path
}

/// A registry holding `team/tiny:v1`, pushed with the password, and the test directory.
struct Setup {
    dir: tempfile::TempDir,
    registry: Registry,
    image: String,
}

fn setup() -> Setup {
    for tool in ["docker-registry", "skopeo", "htpasswd", "openssl", "tar"] {
        require(tool);
    }
    let dir = tempfile::tempdir().unwrap();
    make_tls(dir.path());
    let registry = start_registry(dir.path());
    let layout = make_image(dir.path());
    let image = format!("{}/team/tiny", registry.address);
    let push = skopeo(
        dir.path(),
        &[
            "copy",
            "--dest-cert-dir",
            dir.path().join("certs").to_str().unwrap(),
            "--dest-creds",
            &format!("{USER}:{PASSWORD}"),
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{image}:v1"),
        ],
    );
    assert!(
        push.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&push.stderr)
    );
    Setup {
        dir,
        registry,
        image,
    }
}

/// `skopeo inspect` of the image with `authfile`.
fn inspect(setup: &Setup, authfile: &Path) -> std::process::Output {
    let dir = setup.dir.path();
    skopeo(
        dir,
        &[
            "inspect",
            "--cert-dir",
            dir.join("certs").to_str().unwrap(),
            "--authfile",
            authfile.to_str().unwrap(),
            &format!("docker://{}:v1", setup.image),
        ],
    )
}

/// Asserts that the plugin's credentials in `response` open the registry, and that the
/// same answer with a wrong password does not.
fn assert_opens(setup: &Setup, response: &serde_json::Value) {
    let dir = setup.dir.path();
    let good = inspect(setup, &auth_file(dir, response, None));
    assert!(
        good.status.success(),
        "inspect with the plugin's credentials failed: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("\"Digest\""));
    let bad = inspect(setup, &auth_file(dir, response, Some("wrong-password")));
    assert!(
        !bad.status.success(),
        "inspect with a wrong password succeeded"
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("unauthorized") || stderr.contains("authentication required"),
        "{stderr}"
    );
}

#[test]
fn the_plugin_answer_opens_a_real_registry_and_a_wrong_password_does_not() {
    let setup = setup();
    let dir = setup.dir.path();
    let address = &setup.registry.address;
    std::fs::write(
        dir.join("config.json"),
        serde_json::json!({"auths": {address.clone(): {"username": USER, "password": PASSWORD}}})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("rules.yaml"),
        format!("rules:\n  - matchImages: [\"{address}\"]\n    provider: docker-config\n    dockerConfig: {{path: config.json}}\n"),
    )
    .unwrap();

    for version in API_VERSIONS {
        let run = Plugin::new(["--config".as_ref(), dir.join("rules.yaml").as_os_str()])
            .stdin(request(version, &setup.image))
            .run();
        let response = run.json();
        assert_eq!(response["apiVersion"], version);
        assert!(!run.stderr.contains(PASSWORD));
        assert_opens(&setup, &response);
    }
}

#[test]
fn a_password_kept_only_in_pass_opens_the_real_registry() {
    let store = PassStore::new();
    let setup = setup();
    let dir = setup.dir.path();
    let address = &setup.registry.address;
    // What `docker login 127.0.0.1:<port>` stores with credsStore "pass".
    store.store(address, USER, PASSWORD);
    for (name, config) in [
        (
            "helpers.json",
            serde_json::json!({"credHelpers": {address.clone(): "pass"}}),
        ),
        (
            "store.json",
            serde_json::json!({"credsStore": "pass", "auths": {address.clone(): {}}}),
        ),
    ] {
        std::fs::write(dir.join(name), config.to_string()).unwrap();
        std::fs::write(
            dir.join("rules.yaml"),
            format!("rules:\n  - matchImages: [\"{address}\"]\n    provider: docker-config\n    dockerConfig: {{path: {name}}}\n"),
        )
        .unwrap();
        let mut plugin = Plugin::new(["--config".as_ref(), dir.join("rules.yaml").as_os_str()])
            .stdin(request(API_VERSIONS[0], &setup.image));
        for (key, value) in store.env() {
            plugin = plugin.env(key, value);
        }
        let run = plugin.run();
        let response = run.json();
        assert_eq!(run.stderr, "");
        assert_eq!(response["auth"][address]["password"], PASSWORD, "{name}");
        assert_opens(&setup, &response);
    }
    for file in ["helpers.json", "store.json", "rules.yaml"] {
        let content = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(!content.contains(PASSWORD), "{file} holds the password");
    }
}
