//! A throwaway `pass` password store behind Debian's `docker-credential-pass`: a gpg key
//! without passphrase made in a temporary `GNUPGHOME`, a store in a temporary
//! `PASSWORD_STORE_DIR`, credentials put there by the helper itself.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The tools the store needs, each with the Debian package that has it.
const TOOLS: [(&str, &str); 4] = [
    ("gpg", "gnupg"),
    ("gpgconf", "gnupg"),
    ("pass", "pass"),
    ("docker-credential-pass", "golang-docker-credential-helpers"),
];

/// The store; its gpg agent is stopped when dropped.
pub struct PassStore {
    dir: tempfile::TempDir,
}

impl PassStore {
    /// A new, empty store. Fails, naming `.ci/setup`, when a tool is missing.
    pub fn new() -> PassStore {
        for (tool, package) in TOOLS {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "{tool} is not installed: run .ci/setup (it installs {package})"
            );
        }
        let store = PassStore {
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        std::fs::create_dir(store.gnupg_home()).unwrap();
        std::fs::set_permissions(
            store.gnupg_home(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        store.run(
            "gpg",
            &[
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                "icp test <icp-test@example.invalid>",
                "future-default",
                "default",
                "never",
            ],
            b"",
        );
        store.run("pass", &["init", "icp-test@example.invalid"], b"");
        store
    }

    /// Stores a credential for `server` with `docker-credential-pass store`.
    pub fn store(&self, server: &str, username: &str, secret: &str) {
        let input =
            serde_json::json!({"ServerURL": server, "Username": username, "Secret": secret});
        self.run(
            "docker-credential-pass",
            &["store"],
            input.to_string().as_bytes(),
        );
    }

    /// The variables a process needs to use the store.
    pub fn env(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("GNUPGHOME", self.gnupg_home()),
            ("PASSWORD_STORE_DIR", self.dir.path().join("store")),
        ]
    }

    fn gnupg_home(&self) -> PathBuf {
        self.dir.path().join("gnupg")
    }

    fn run(&self, program: &str, args: &[&str], input: &[u8]) {
        let mut child = Command::new(program)
            .args(args)
            .envs(self.env())
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        child.stdin.take().unwrap().write_all(input).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PassStore {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.gnupg_home())
            .status();
    }
}
