//! The static release binary, built with the README's `cargo build-static`: no program
//! interpreter and no shared library, and it answers requests in an empty root directory
//! that holds only the binary and the files a test puts there, a name resolved through
//! that root's `/etc/hosts` included.
//!
//! The first test to need it builds it (about 5 minutes from cold on 2 cores; a no-op when
//! it is up to date). Running in an empty root takes `chroot`, so those tests need root, as CI
//! runs them.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{Run, request, testdata};
use icp_test_kit::aws::counting::{FakeAws, password};

/// The static binary, built once per test run by the README's command; cargo says where.
fn static_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let output = Command::new(env!("CARGO"))
            .args([
                "build-static",
                "--quiet",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(output.status.success(), "cargo build-static failed");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["target"]["name"] == "image-credential-provider")
            .find_map(|message| message["executable"].as_str().map(PathBuf::from))
            .expect("cargo build-static names the binary it built")
    })
}

/// The program headers of an ELF64 little-endian file: `(type, offset, file size)`.
fn program_headers(elf: &[u8]) -> Vec<(u32, usize, usize)> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!((elf[4], elf[5]), (2, 1), "not ELF64 little-endian");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (start, size, count) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..count)
        .map(|i| {
            let header = start + i * size;
            let kind = u32::from_le_bytes(elf[header..header + 4].try_into().unwrap());
            (kind, u64_at(header + 8), u64_at(header + 32))
        })
        .collect()
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;

#[test]
fn the_release_binary_needs_no_loader_and_no_shared_library() {
    let elf = std::fs::read(static_binary()).unwrap();
    let headers = program_headers(&elf);
    assert!(
        headers.iter().all(|(kind, ..)| *kind != PT_INTERP),
        "the static binary asks for a program interpreter"
    );
    // A static-pie keeps a dynamic section for relocating itself, with no library in it.
    for (_, offset, size) in headers.iter().filter(|(kind, ..)| *kind == PT_DYNAMIC) {
        let needed = elf[*offset..offset + size]
            .chunks_exact(16)
            .map(|entry| u64::from_le_bytes(entry[..8].try_into().unwrap()))
            .take_while(|tag| *tag != 0)
            .filter(|tag| *tag == DT_NEEDED)
            .count();
        assert_eq!(needed, 0, "the static binary needs shared libraries");
    }
    // The test can tell: the ordinary build asks for the dynamic loader.
    let dynamic = std::fs::read(env!("CARGO_BIN_EXE_image-credential-provider")).unwrap();
    assert!(
        program_headers(&dynamic)
            .iter()
            .any(|(kind, ..)| *kind == PT_INTERP)
    );
}

/// A root directory with `binary` at `/image-credential-provider` and `files`.
fn empty_root(binary: &Path, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(binary, root.path().join("image-credential-provider")).unwrap();
    for (path, content) in files {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    root
}

/// Runs `/image-credential-provider args` with `root` as its root directory (`chroot`),
/// with only `vars` in its environment and `stdin` as input.
fn run_in(root: &Path, args: &[&str], vars: &[(&str, &str)], stdin: &str) -> Run {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "running the binary in an empty root takes chroot, which needs root: run the tests as root (CI does)"
        );
    }
    let root = std::ffi::CString::new(root.as_os_str().as_bytes()).unwrap();
    let mut command = Command::new("/image-credential-provider");
    command
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure makes two system calls and touches no
    // lock or allocation.
    unsafe {
        command.pre_exec(move || {
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        // The program cannot be started in the root (the dynamic build: no loader there).
        Err(error) => {
            return Run {
                code: -1,
                stdout: String::new(),
                stderr: error.to_string(),
            };
        }
    };
    // The binary may stop reading early; that is not a failure here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}

const RULES: &str = "rules:\n  - matchImages: [registry.example.com]\n    provider: docker-config\n    dockerConfig: {path: /etc/docker-config.json}\n";

#[test]
fn the_static_binary_answers_in_an_empty_root() {
    let docker_config = std::fs::read(testdata().join("docker-config.json")).unwrap();
    let files: &[(&str, &[u8])] = &[
        ("etc/rules.yaml", RULES.as_bytes()),
        ("etc/docker-config.json", &docker_config),
    ];
    let root = empty_root(static_binary(), files);
    let input = request(common::API_VERSIONS[0], "registry.example.com/team/app");
    let run = run_in(root.path(), &["--config", "/etc/rules.yaml"], &[], &input);
    let response = run.json();
    assert_eq!(
        response["auth"]["registry.example.com/team"]["password"],
        "testdata-secret-team"
    );
    assert_eq!(
        response["auth"]["registry.example.com"]["username"],
        "robot"
    );
    assert_eq!(
        files_under(root.path()),
        [
            "etc/docker-config.json",
            "etc/rules.yaml",
            "image-credential-provider"
        ]
    );

    // The same root stops the ordinary build: it has no dynamic loader.
    let root = empty_root(
        Path::new(env!("CARGO_BIN_EXE_image-credential-provider")),
        files,
    );
    let run = run_in(root.path(), &["--config", "/etc/rules.yaml"], &[], &input);
    assert_ne!(
        run.code, 0,
        "the dynamic binary ran in an empty root: {}",
        run.stdout
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn the_static_binary_resolves_a_name_through_the_roots_hosts_file() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let port = fake.url.rsplit(':').next().unwrap();
    let root = empty_root(
        static_binary(),
        &[("etc/hosts", b"127.0.0.1 ecr.fake.test\n")],
    );
    let endpoint = format!("http://ecr.fake.test:{port}");
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/app";
    let run = run_in(
        root.path(),
        &["get", image, "--no-cache"],
        &[
            ("AWS_ENDPOINT_URL_ECR", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIAFAKESTATIC"),
            ("AWS_SECRET_ACCESS_KEY", "fake-static-secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        "",
    );
    let response = run.json();
    assert_eq!(
        response["auth"]["123456789012.dkr.ecr.us-east-1.amazonaws.com"]["password"],
        password(1)
    );
    assert_eq!(fake.ecr_calls(), 1);
}
