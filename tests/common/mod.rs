//! What the integration tests share: running the built binary as the kubelet does, and a
//! model of how the kubelet reads what the plugin answers.

#![allow(dead_code, reason = "each test binary uses part of this module")]

pub mod kubelet;
pub mod pass;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository's `testdata/` directory.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// The protocol's apiVersion strings, newest first.
pub const API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];

/// The request exactly as the kubelet encodes it (`plugin_io_cases.json`, `encodeRequest`).
pub fn request(api_version: &str, image: &str) -> String {
    format!(
        "{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"{api_version}\",\"image\":\"{image}\"}}\n"
    )
}

/// One run of the binary with a clean environment: only `PATH`, a private `HOME` and
/// token cache, and every metadata server (AWS, GCE, Azure) switched off or pointed at a
/// closed loopback port, so nothing leaves 127.0.0.1 unless a test points it at its fake.
pub struct Plugin {
    command: Command,
    stdin: Vec<u8>,
    _home: tempfile::TempDir,
}

/// What a run printed and how it ended.
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output, as text.
    pub stdout: String,
    /// Standard error, as text.
    pub stderr: String,
}

impl Plugin {
    /// The binary with `args`.
    pub fn new<I, S>(args: I) -> Plugin
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Plugin::at(
            Path::new(env!("CARGO_BIN_EXE_image-credential-provider")),
            args,
        )
    }

    /// The program at `program` (a symlink to the binary, for drop-in names) with `args`.
    pub fn at<I, S>(program: &Path, args: I) -> Plugin
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let home = tempfile::tempdir().expect("temporary HOME");
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("XDG_CACHE_HOME", home.path().join("cache"))
            .env(
                "IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR",
                home.path().join("token-cache"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("GCE_METADATA_HOST", "127.0.0.1:9")
            .env(
                "IMAGE_CREDENTIAL_PROVIDER_AZURE_IMDS_ENDPOINT",
                "http://127.0.0.1:9",
            )
            .env("NO_PROXY", "*");
        Plugin {
            command,
            stdin: Vec::new(),
            _home: home,
        }
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Plugin {
        self.command.env(key, value);
        self
    }

    /// Runs it in `dir`.
    pub fn dir(mut self, dir: &Path) -> Plugin {
        self.command.current_dir(dir);
        self
    }

    /// What to write on stdin.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Plugin {
        self.stdin = input.into();
        self
    }

    /// Runs to the end.
    pub fn run(mut self) -> Run {
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut stdin = child.stdin.take().unwrap();
        let input = std::mem::take(&mut self.stdin);
        // The binary may stop reading early (an oversized request); that is not a failure here.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("the binary runs");
        writer.join().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts a failure as the house rules want it: exit `code`, nothing on stdout, and
    /// one line on stderr starting with `error: ` and containing `expected`.
    pub fn assert_error(&self, code: i32, expected: &str) {
        assert_eq!(self.code, code, "exit code; stderr: {}", self.stderr);
        assert_eq!(self.stdout, "", "stdout must be empty on failure");
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line on stderr: {:?}",
            self.stderr
        );
        assert!(
            self.stderr.starts_with("error: "),
            "stderr: {:?}",
            self.stderr
        );
        assert!(
            self.stderr.contains(expected),
            "stderr {:?} lacks {expected:?}",
            self.stderr
        );
    }

    /// The response on stdout, after checking the run succeeded.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

/// A pod `name` in `namespace` running as service account `account` (uid
/// `<namespace>-<account>-uid`) with `annotations`.
pub fn pod(
    namespace: &str,
    name: &str,
    account: &str,
    annotations: &[(&str, &str)],
) -> kubelet::service_account::Pod {
    kubelet::service_account::Pod {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: format!("{namespace}-{name}-uid"),
        service_account: Some(kubelet::service_account::ServiceAccount {
            name: account.to_owned(),
            uid: format!("{namespace}-{account}-uid"),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }),
    }
}

/// The v1 request the kubelet writes for `image` in service-account-token mode: `pod`'s
/// own projected token for `audience`, and all of its service account's annotations
/// (give the pod only those the kubelet config would pass on). Returns the request and
/// the token.
pub fn service_account_request(
    image: &str,
    pod: &kubelet::service_account::Pod,
    audience: &str,
) -> (String, String) {
    let account = pod
        .service_account
        .as_ref()
        .expect("a pod with a service account");
    let token = kubelet::service_account::projected_token(pod, account, audience);
    let request = serde_json::json!({
        "kind": "CredentialProviderRequest",
        "apiVersion": API_VERSIONS[0],
        "image": image,
        "serviceAccountToken": token,
        "serviceAccountAnnotations": account.annotations,
    });
    (format!("{request}\n"), token)
}
