//! `cargo xtask dist` end to end, and the manifests of `deploy/` against what it builds.
//!
//! One `dist` run serves every test (the static binary is built once per test run, as
//! `tests/static_binary.rs` builds it, then reused); the reproducibility test runs `dist` a
//! second time into another directory and compares. The packages are installed into
//! scratch roots (`dpkg --root`, `rpm --root --dbpath`), never into this machine's `/`;
//! both need root, as CI has. A missing tool fails the test and names `.ci/setup`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const NAME: &str = "image-credential-provider";
const BIN_DIR: &str = "usr/libexec/kubernetes/credential-providers";
const RULES: &str = "etc/kubernetes/image-credential-provider.yaml";
const DROP_INS: [&str; 3] = [
    "acr-credential-provider",
    "auth-provider-gcp",
    "ecr-credential-provider",
];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Fails naming `.ci/setup` when `program` is not on `PATH`.
fn need(program: &str, package: &str) {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join(program).is_file());
    assert!(
        found,
        "`{program}` is not installed (Debian package {package}): run .ci/setup"
    );
}

/// Runs `command`, asserting it succeeds; returns its output.
fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|error| {
        panic!("cannot run {:?}: {error}", command.get_program());
    });
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `xtask dist --out out`.
fn dist_into(out: &Path) -> Output {
    let _ = std::fs::remove_dir_all(out);
    run(Command::new(env!("CARGO_BIN_EXE_xtask"))
        .env("CARGO", env!("CARGO"))
        .args(["dist", "--out"])
        .arg(out)
        .current_dir(workspace())
        .stderr(Stdio::inherit()))
}

/// The output directory of the one shared `dist` run.
fn dist() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dist-a");
        dist_into(&out);
        out
    })
}

fn artifact(name: &str) -> PathBuf {
    dist().join(name)
}

fn binary_name() -> String {
    format!("{NAME}-{VERSION}-linux-amd64")
}

fn binary() -> Vec<u8> {
    std::fs::read(artifact(&binary_name())).unwrap()
}

fn git(args: &[&str]) -> String {
    let output = run(Command::new("git").args(args).current_dir(workspace()));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// One entry of a ustar archive.
struct TarEntry {
    name: String,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    type_flag: u8,
    user_names: [u8; 64],
    content: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let digits = std::str::from_utf8(field).unwrap();
    u64::from_str_radix(digits.trim_matches(['\0', ' ']), 8).unwrap()
}

/// The entries of a ustar archive, in order.
fn untar(archive: &[u8]) -> Vec<TarEntry> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= archive.len() && archive[at] != 0 {
        let header = &archive[at..at + 512];
        assert_eq!(&header[257..263], b"ustar\0", "a ustar header");
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let size = octal(&header[124..136]) as usize;
        entries.push(TarEntry {
            name: String::from_utf8(header[..name_end].to_vec()).unwrap(),
            mode: octal(&header[100..108]) as u32,
            uid: octal(&header[108..116]),
            gid: octal(&header[116..124]),
            mtime: octal(&header[136..148]),
            type_flag: header[156],
            user_names: header[265..329].try_into().unwrap(),
            content: archive[at + 512..at + 512 + size].to_vec(),
        });
        at += 512 + size.next_multiple_of(512);
    }
    entries
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn every_artifact_is_in_sha256sums_and_sha256sum_verifies_them() {
    need("sha256sum", "coreutils");
    let mut names: Vec<String> = std::fs::read_dir(dist())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let artifacts = [
        format!("{NAME}-{VERSION}-1.x86_64.rpm"),
        binary_name(),
        format!("{NAME}-{VERSION}-linux-amd64.tar.gz"),
        format!("{NAME}-{VERSION}-oci.tar"),
        format!("{NAME}-{VERSION}.cdx.json"),
        format!("{NAME}_{VERSION}-1_amd64.deb"),
    ];
    let mut expected: Vec<String> = artifacts.to_vec();
    expected.push("SHA256SUMS".into());
    expected.sort();
    assert_eq!(names, expected, "the artifacts, and nothing else");
    let sums = std::fs::read_to_string(artifact("SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    assert_eq!(listed, artifacts, "every artifact, sorted");
    let check = run(Command::new("sha256sum")
        .args(["--strict", "-c", "SHA256SUMS"])
        .current_dir(dist()));
    assert_eq!(
        String::from_utf8_lossy(&check.stdout)
            .matches(": OK")
            .count(),
        artifacts.len()
    );
}

#[test]
fn the_tarball_is_reproducible_and_holds_no_time_owner_or_name() {
    let first = dist();
    let second = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dist-b");
    dist_into(&second);
    let tarball = format!("{NAME}-{VERSION}-linux-amd64.tar.gz");
    let bytes = std::fs::read(first.join(&tarball)).unwrap();
    assert!(
        bytes == std::fs::read(second.join(&tarball)).unwrap(),
        "the tarball rebuilt differs"
    );
    // The other artifacts are reproducible too: the same SHA256SUMS.
    assert_eq!(
        std::fs::read_to_string(first.join("SHA256SUMS")).unwrap(),
        std::fs::read_to_string(second.join("SHA256SUMS")).unwrap()
    );

    assert_eq!(&bytes[..4], [0x1f, 0x8b, 8, 0], "gzip without a file name");
    assert_eq!(&bytes[4..8], [0; 4], "gzip without a time");
    let commit_time: u64 = git(&["show", "-s", "--format=%ct", "HEAD"])
        .parse()
        .unwrap();
    let entries = untar(&gunzip(&bytes));
    let base = format!("{NAME}-{VERSION}-linux-amd64");
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{base}/"),
            format!("{base}/LICENSE"),
            format!("{base}/README.md"),
            format!("{base}/{NAME}"),
            format!("{base}/rules.example.yaml"),
        ]
    );
    for entry in &entries {
        assert_eq!((entry.uid, entry.gid), (0, 0), "{}", entry.name);
        assert_eq!(entry.user_names, [0; 64], "{}: no user names", entry.name);
        assert_eq!(
            entry.mtime, commit_time,
            "{}: the commit's time",
            entry.name
        );
    }
    let file = |suffix: &str| {
        entries
            .iter()
            .find(|e| e.name == format!("{base}/{suffix}"))
            .unwrap()
    };
    assert_eq!(file(NAME).content, binary());
    assert_eq!(file(NAME).mode, 0o755);
    for (inside, path) in [
        ("LICENSE", "LICENSE"),
        ("README.md", "README.md"),
        ("rules.example.yaml", "packaging/rules.example.yaml"),
    ] {
        assert_eq!(
            file(inside).content,
            std::fs::read(workspace().join(path)).unwrap()
        );
        assert_eq!(file(inside).mode, 0o644);
    }
}

/// The sections of an ELF64 little-endian file, by name: `(offset, size)`.
fn sections(elf: &[u8]) -> BTreeMap<String, (usize, usize)> {
    assert_eq!(&elf[..6], b"\x7fELF\x02\x01", "ELF64 little-endian");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (start, size, count, names) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| start + i * size;
    let strings = u64_at(header(names) + 0x18);
    (0..count)
        .map(|i| {
            let name_at = strings + u32_at(header(i));
            let end = elf[name_at..].iter().position(|b| *b == 0).unwrap();
            let name = String::from_utf8(elf[name_at..name_at + end].to_vec()).unwrap();
            (name, (u64_at(header(i) + 0x18), u64_at(header(i) + 0x20)))
        })
        .collect()
}

/// The audit data in `.dep-v0`, read as `cargo auditable`'s readers read it.
fn audit_data(elf: &[u8]) -> Value {
    let (offset, size) = sections(elf)[".dep-v0"];
    let mut text = Vec::new();
    flate2::read::ZlibDecoder::new(&elf[offset..offset + size])
        .read_to_end(&mut text)
        .unwrap();
    serde_json::from_slice(&text).unwrap()
}

#[test]
fn the_binary_is_stripped_and_carries_its_dependency_list_for_scanners() {
    let elf = binary();
    let sections = sections(&elf);
    assert!(!sections.contains_key(".symtab"), "the binary is stripped");
    let audit = audit_data(&elf);
    let packages = audit["packages"].as_array().unwrap();
    // What auditable-serde checks when it reads the data: one root, indices in range,
    // known sources and kinds, no cycle.
    let roots: Vec<&Value> = packages.iter().filter(|p| p["root"] == true).collect();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["name"], NAME);
    assert_eq!(roots[0]["version"], VERSION);
    for package in packages {
        assert!(
            ["crates.io", "git", "local", "registry"]
                .contains(&package["source"].as_str().unwrap())
        );
        assert!(package.get("kind").is_none() || package["kind"] == "build");
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            assert!((dep.as_u64().unwrap() as usize) < packages.len());
        }
    }
    fn acyclic(packages: &[Value], at: usize, path: &mut Vec<usize>, done: &mut BTreeSet<usize>) {
        assert!(
            !path.contains(&at),
            "a dependency cycle through {}",
            packages[at]["name"]
        );
        if !done.insert(at) {
            return;
        }
        path.push(at);
        for dep in packages[at]["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
        {
            acyclic(packages, dep.as_u64().unwrap() as usize, path, done);
        }
        path.pop();
    }
    let root = packages.iter().position(|p| p["root"] == true).unwrap();
    acyclic(packages, root, &mut Vec::new(), &mut BTreeSet::new());

    let in_binary: BTreeSet<String> = packages
        .iter()
        .filter(|p| p.get("kind").is_none())
        .map(|p| {
            format!(
                "{}@{}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    for name in ["icp-core", "serde_json", "rustls", "tokio"] {
        assert!(
            in_binary.iter().any(|p| p.starts_with(&format!("{name}@"))),
            "{name} is in the binary's list"
        );
    }
    for name in ["tempfile", "icp-test-kit", "xtask", "flate2"] {
        assert!(
            !in_binary.iter().any(|p| p.starts_with(&format!("{name}@"))),
            "{name} (dev or tooling only) is not in the binary's list"
        );
    }
    // The SBOM lists the same packages.
    let sbom: Value = serde_json::from_slice(
        &std::fs::read(artifact(&format!("{NAME}-{VERSION}.cdx.json"))).unwrap(),
    )
    .unwrap();
    let mut listed: BTreeSet<String> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["scope"] == "required")
        .map(|c| {
            format!(
                "{}@{}",
                c["name"].as_str().unwrap(),
                c["version"].as_str().unwrap()
            )
        })
        .collect();
    listed.insert(format!("{NAME}@{VERSION}"));
    assert_eq!(listed, in_binary);
    // The reader scanners use (auditable-info, as in cargo-audit) gets the same list back,
    // after its own checks (one root, no cycle, valid indices and versions).
    let info = auditable_info::audit_info_from_file(
        &artifact(&binary_name()),
        auditable_info::Limits {
            input_file_size: 64 << 20,
            decompressed_json_size: 8 << 20,
        },
    )
    .expect("auditable-info reads the binary");
    let read: BTreeSet<String> = info
        .packages
        .iter()
        .filter(|p| p.kind == auditable_serde::DependencyKind::Runtime)
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect();
    assert_eq!(read, in_binary);
    assert_eq!(info.packages.len(), packages.len());
    // objcopy, as a scanner without an ELF reader would, finds the same bytes.
    need("objcopy", "binutils");
    let dumped = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dep-v0.dump");
    run(Command::new("objcopy")
        .arg(format!("--dump-section=.dep-v0={}", dumped.display()))
        .arg(artifact(&binary_name()))
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("objcopy.out")));
    let (offset, size) = sections[".dep-v0"];
    assert_eq!(std::fs::read(dumped).unwrap(), elf[offset..offset + size]);
}

#[test]
fn the_sbom_is_cyclonedx_1_5_of_the_binarys_tree() {
    let sbom: Value = serde_json::from_slice(
        &std::fs::read(artifact(&format!("{NAME}-{VERSION}.cdx.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    assert_eq!(sbom["version"], 1);
    let timestamp = sbom["metadata"]["timestamp"].as_str().unwrap();
    assert!(
        timestamp.len() == 20 && timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
        "an RFC 3339 date-time: {timestamp}"
    );
    let root = &sbom["metadata"]["component"];
    assert_eq!(root["type"], "application");
    assert_eq!(root["purl"], format!("pkg:cargo/{NAME}@{VERSION}"));
    assert_eq!(root["licenses"][0]["expression"], "Apache-2.0");
    assert!(sbom["metadata"]["tools"]["components"].is_array());
    let components = sbom["components"].as_array().unwrap();
    assert!(
        components.len() > 50,
        "the whole tree, not the direct dependencies"
    );
    let mut refs = BTreeSet::from([root["bom-ref"].as_str().unwrap().to_string()]);
    for component in components {
        let (name, version) = (
            component["name"].as_str().unwrap(),
            component["version"].as_str().unwrap(),
        );
        assert_eq!(component["type"], "library");
        assert_eq!(component["purl"], format!("pkg:cargo/{name}@{version}"));
        assert_eq!(component["bom-ref"], component["purl"]);
        assert!(["required", "excluded"].contains(&component["scope"].as_str().unwrap()));
        for license in component["licenses"].as_array().into_iter().flatten() {
            let expression = license["expression"].as_str().unwrap();
            assert!(
                !expression.contains('/'),
                "an SPDX expression: {expression}"
            );
        }
        assert!(
            refs.insert(component["bom-ref"].as_str().unwrap().to_string()),
            "unique bom-ref"
        );
        let allowed: BTreeSet<&str> = component
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(allowed.is_subset(&BTreeSet::from([
            "type", "bom-ref", "name", "version", "purl", "scope", "licenses"
        ])));
    }
    let dependencies = sbom["dependencies"].as_array().unwrap();
    assert_eq!(dependencies.len(), refs.len(), "one entry per component");
    for dependency in dependencies {
        assert!(refs.contains(dependency["ref"].as_str().unwrap()));
        for on in dependency["dependsOn"].as_array().unwrap() {
            assert!(refs.contains(on.as_str().unwrap()), "{on} is a component");
        }
    }
}

/// What a scratch root holds besides the package database: each path with its kind,
/// mode and content.
fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if skip.iter().any(|s| relative.starts_with(s)) {
                continue;
            }
            let meta = path.symlink_metadata().unwrap();
            let what = if meta.is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", meta.permissions().mode())
            } else {
                format!("file {:o} {} bytes", meta.permissions().mode(), meta.len())
            };
            out.insert(relative, what);
        }
    }
    out
}

/// A scratch root with the directories a distribution's base system owns.
fn scratch_root(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["etc", "usr/libexec", "usr/share/doc", "var/lib"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    root
}

/// Checks an installed package's files in `root`.
fn check_installed(root: &Path) {
    assert_eq!(
        std::fs::read(root.join(BIN_DIR).join(NAME)).unwrap(),
        binary()
    );
    let mode = std::fs::metadata(root.join(BIN_DIR).join(NAME))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    for name in DROP_INS {
        assert_eq!(
            std::fs::read_link(root.join(BIN_DIR).join(name)).unwrap(),
            Path::new(NAME),
            "{name} is a symlink to the binary"
        );
    }
    // Under a drop-in name the binary runs as that official provider.
    let version =
        run(Command::new(root.join(BIN_DIR).join("ecr-credential-provider")).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("ecr-credential-provider version v{VERSION} (image-credential-provider)")
    );
    assert_eq!(
        std::fs::read(root.join(RULES)).unwrap(),
        std::fs::read(workspace().join("packaging/rules.example.yaml")).unwrap()
    );
}

/// The drop-in names the packages install are the modes of src/dropin/.
#[test]
fn the_packages_drop_in_names_are_the_binarys_modes() {
    let mut programs = BTreeSet::new();
    for entry in std::fs::read_dir(workspace().join("src/dropin")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for rest in text.split("program: \"").skip(1) {
            programs.insert(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    assert_eq!(programs, BTreeSet::from(DROP_INS.map(String::from)));
}

#[test]
fn the_deb_installs_keeps_edited_rules_on_upgrade_and_purges_cleanly() {
    need("dpkg", "dpkg");
    let root = scratch_root("deb-root");
    let admin = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(dir)).unwrap();
    }
    for file in ["status", "available"] {
        std::fs::write(admin.join(file), "").unwrap();
    }
    let dpkg = |args: &[&str]| {
        run(Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(args)
            .stdin(Stdio::null()))
    };
    // The base directories belong to a package, as on a real system (base-files), so
    // that purging ours does not take them as unowned.
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scratch-base");
    let _ = std::fs::remove_dir_all(&base);
    for dir in ["DEBIAN", "etc", "usr/libexec", "usr/share/doc", "var/lib"] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    std::fs::write(
        base.join("DEBIAN/control"),
        "Package: scratch-base\nVersion: 1\nArchitecture: all\nMaintainer: tests <tests@invalid>\n\
         Description: the base directories of a scratch root\n",
    )
    .unwrap();
    let base_deb = base.with_extension("deb");
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&base)
        .arg(&base_deb));
    dpkg(&["-i", base_deb.to_str().unwrap()]);
    let before = snapshot(&root, &["var/lib/dpkg"]);
    let deb = artifact(&format!("{NAME}_{VERSION}-1_amd64.deb"));
    dpkg(&["-i", deb.to_str().unwrap()]);
    check_installed(&root);
    let conffiles = run(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args(["-W", "-f=${Conffiles}", NAME]));
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains(&format!("/{RULES} ")),
        "the rules are a conffile"
    );
    dpkg(&["--purge", NAME]);
    assert_eq!(
        snapshot(&root, &["var/lib/dpkg"]),
        before,
        "install and purge leave nothing"
    );

    // Edited rules survive a reinstall (an upgrade's path) and a remove; purge takes them.
    dpkg(&["-i", deb.to_str().unwrap()]);
    let edited = "# edited by the operator\nrules: []\n";
    std::fs::write(root.join(RULES), edited).unwrap();
    dpkg(&["-i", deb.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(root.join(RULES)).unwrap(), edited);
    dpkg(&["-r", NAME]);
    assert!(!root.join(BIN_DIR).join(NAME).exists());
    assert_eq!(std::fs::read_to_string(root.join(RULES)).unwrap(), edited);
    dpkg(&["--purge", NAME]);
    assert_eq!(snapshot(&root, &["var/lib/dpkg"]), before);
}

#[test]
fn the_rpm_installs_keeps_edited_rules_on_upgrade_and_erases_cleanly() {
    need("rpm", "rpm");
    let root = scratch_root("rpm-root");
    let rpm = |args: &[&str]| {
        run(Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args(["--dbpath", "/var/lib/rpm"])
            .args(args))
    };
    rpm(&["--initdb"]);
    let before = snapshot(&root, &["var/lib/rpm"]);
    let package = artifact(&format!("{NAME}-{VERSION}-1.x86_64.rpm"));
    let package = package.to_str().unwrap();
    rpm(&["-i", package]);
    check_installed(&root);
    let config = rpm(&["-qc", NAME]);
    assert_eq!(
        String::from_utf8_lossy(&config.stdout).trim(),
        format!("/{RULES}")
    );
    rpm(&["-e", NAME]);
    assert_eq!(
        snapshot(&root, &["var/lib/rpm"]),
        before,
        "install and erase leave nothing"
    );

    // %config(noreplace): edited rules survive an upgrade; erasing keeps them as .rpmsave.
    rpm(&["-i", package]);
    let edited = "# edited by the operator\nrules: []\n";
    std::fs::write(root.join(RULES), edited).unwrap();
    rpm(&["-U", "--replacepkgs", package]);
    assert_eq!(std::fs::read_to_string(root.join(RULES)).unwrap(), edited);
    assert!(!root.join(format!("{RULES}.rpmnew")).exists());
    rpm(&["-e", NAME]);
    let saved = root.join(format!("{RULES}.rpmsave"));
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), edited);
    std::fs::remove_file(saved).unwrap();
    std::fs::remove_dir(root.join("etc/kubernetes")).unwrap();
    assert_eq!(snapshot(&root, &["var/lib/rpm"]), before);
}

/// A plain-HTTP `docker-registry` on 127.0.0.1, killed when dropped.
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
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let config = format!(
        "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\n\
         http: {{addr: \"{address}\"}}\n",
        dir.join("data").display()
    );
    std::fs::write(dir.join("registry.yml"), config).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("registry.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry starts");
    let registry = Registry { child, address };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&registry.address).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    registry
}

#[test]
fn the_oci_image_goes_to_a_registry_and_back_with_its_entrypoint_and_labels() {
    need("docker-registry", "docker-registry");
    need("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let registry = start_registry(dir.path());
    let reference = format!("docker://{}/{NAME}:{VERSION}", registry.address);
    let archive = artifact(&format!("{NAME}-{VERSION}-oci.tar"));
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(&reference));

    let inspect: Value = serde_json::from_slice(
        &run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &reference])).stdout,
    )
    .unwrap();
    let labels = &inspect["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap();
    assert!(
        revision.starts_with(&git(&["rev-parse", "HEAD"])),
        "{revision}"
    );
    assert_eq!(
        (inspect["Architecture"].as_str(), inspect["Os"].as_str()),
        (Some("amd64"), Some("linux"))
    );
    assert_eq!(
        inspect["Layers"].as_array().unwrap().len(),
        1,
        "the binary alone"
    );
    let config: Value = serde_json::from_slice(
        &run(Command::new("skopeo").args([
            "inspect",
            "--config",
            "--tls-verify=false",
            &reference,
        ]))
        .stdout,
    )
    .unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!([format!("/usr/local/bin/{NAME}")])
    );
    assert_eq!(
        config["config"]["User"], "65532:65532",
        "non-root by default"
    );

    // Pulled back, its one layer holds the binary and nothing else.
    let pulled = dir.path().join("pulled");
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", &reference])
        .arg(format!("oci:{}:{VERSION}", pulled.display())));
    let blob =
        |digest: &str| std::fs::read(pulled.join("blobs/sha256").join(&digest[7..])).unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layer = untar(&gunzip(&blob(
        manifest["layers"][0]["digest"].as_str().unwrap(),
    )));
    let files: Vec<&TarEntry> = layer.iter().filter(|e| e.type_flag == b'0').collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].name, format!("usr/local/bin/{NAME}"));
    assert_eq!(files[0].content, binary());
    assert_eq!(files[0].mode, 0o755);
}

/// The documents of a multi-document YAML file.
fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(workspace().join(path)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap())
        .collect()
}

fn kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents.iter().find(|d| d["kind"] == kind).unwrap()
}

#[test]
fn the_deploy_manifests_validate_against_the_kubernetes_openapi_schemas() {
    let validate = workspace().join(".venv-k8s/bin/kubernetes-validate");
    assert!(
        validate.is_file(),
        "{} is missing: run .ci/setup (it creates .venv-k8s)",
        validate.display()
    );
    let manifests = [
        "deploy/daemonset.yaml",
        "deploy/rbac-service-account-tokens.yaml",
    ];
    // 1.34, where per-pod service account tokens for credential providers are on by
    // default, and the newest release the validator knows.
    for version in ["1.34.0", "1.37.0"] {
        run(Command::new(&validate)
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(manifests)
            .current_dir(workspace()));
    }
    // The validator refuses what the API server would: an unknown field.
    let broken = Path::new(env!("CARGO_TARGET_TMPDIR")).join("broken-daemonset.yaml");
    let text = std::fs::read_to_string(workspace().join(manifests[0])).unwrap();
    std::fs::write(&broken, text.replace("hostPath:", "hostPathh:")).unwrap();
    let output = Command::new(&validate)
        .args(["--strict", "--quiet", "--kubernetes-version", "1.37.0"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "a misspelt field passes the validator"
    );
}

#[test]
fn the_daemonset_runs_the_images_installer_on_the_host_root() {
    let documents = documents("deploy/daemonset.yaml");
    let daemonset = kind(&documents, "DaemonSet");
    let service_account = kind(&documents, "ServiceAccount");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        service_account["metadata"]["name"]
    );
    assert_eq!(
        daemonset["metadata"]["namespace"],
        service_account["metadata"]["namespace"]
    );
    let install = pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "install")
        .unwrap();

    // The image dist builds: this version's tag, run through its entrypoint (the binary).
    let image = install["image"].as_str().unwrap();
    assert!(image.ends_with(&format!("/{NAME}:{VERSION}")), "{image}");
    assert!(
        install.get("command").is_none(),
        "the image's entrypoint runs"
    );
    assert_eq!(
        pod["nodeSelector"]["kubernetes.io/arch"], "amd64",
        "the image's architecture"
    );

    // The installer's flags, as issue 18 names them, with --root at the host's `/`.
    let args: Vec<&str> = install["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "install");
    let known = [
        "--root",
        "--bin-dir",
        "--config",
        "--kubelet-config",
        "--service-account-tokens",
        "--dry-run",
    ];
    for flag in args.iter().filter(|a| a.starts_with('-')) {
        assert!(known.contains(flag), "install has no flag {flag}");
    }
    let root = args[args.iter().position(|a| *a == "--root").unwrap() + 1];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["hostPath"]["path"] == "/")
        .expect("a hostPath volume of the node's /");
    let mount = install["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the install container mounts it");
    assert_eq!(mount["mountPath"], root);
    assert!(
        mount.get("readOnly").is_none_or(|r| r == false),
        "install writes the node's files"
    );
    assert_eq!(
        install["securityContext"]["runAsUser"], 0,
        "writing the node's files takes root"
    );
}

#[test]
fn the_rbac_grants_nodes_the_audiences_the_binary_asks_tokens_for() {
    let documents = documents("deploy/rbac-service-account-tokens.yaml");
    let role = kind(&documents, "ClusterRole");
    let binding = kind(&documents, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["subjects"][0]["kind"], "Group");
    assert_eq!(binding["subjects"][0]["name"], "system:nodes");
    let rule = &role["rules"][0];
    assert_eq!(
        rule["verbs"],
        serde_json::json!(["request-serviceaccounts-token-audience"])
    );
    assert_eq!(rule["apiGroups"], serde_json::json!([""]));
    let resources: BTreeSet<&str> = rule["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    // The audiences are those the binary's kubelet-config writes for its cloud backends.
    let dir = tempfile::tempdir().unwrap();
    for (provider, pattern) in [
        ("ecr", "*.dkr.ecr.*.amazonaws.com"),
        ("acr", "*.azurecr.io"),
    ] {
        let rules = dir.path().join(format!("{provider}.yaml"));
        std::fs::write(
            &rules,
            format!("rules:\n  - matchImages: [\"{pattern}\"]\n    provider: {provider}\n"),
        )
        .unwrap();
        let config = run(Command::new(artifact(&binary_name()))
            .args(["kubelet-config", "--service-account-tokens", "--config"])
            .arg(&rules));
        let config: Value = serde_yaml_ng::from_slice(&config.stdout).unwrap();
        let audience = config["providers"][0]["tokenAttributes"]["serviceAccountTokenAudience"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            resources.contains(audience.as_str()),
            "{audience} is granted"
        );
    }
}

#[test]
fn the_example_rules_pass_check_config() {
    run(Command::new(artifact(&binary_name()))
        .args(["check-config", "--config"])
        .arg(workspace().join("packaging/rules.example.yaml")));
}

#[test]
fn a_target_whose_standard_library_is_missing_is_refused_in_one_line() {
    let target = "aarch64-unknown-linux-gnu";
    let sysroot = run(Command::new("rustc").args(["--print", "sysroot"]));
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    if Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(target)
        .exists()
    {
        eprintln!("{target}'s standard library is installed here: nothing to refuse");
        return;
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dist-aarch64");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .env("CARGO", env!("CARGO"))
        .args(["dist", "--target", target, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(target) && stderr.contains("not installed"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn a_missing_packaging_tool_is_named_with_ci_setup() {
    // A PATH with every tool dist runs but rpmbuild.
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("path-without-rpmbuild");
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["rustc", "git", "objcopy", "dpkg-deb"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
            .unwrap_or_else(|| panic!("`{tool}` is not installed: run .ci/setup"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dist-without-rpmbuild");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .env("CARGO", env!("CARGO"))
        .env("PATH", &bin)
        .args(["dist", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "error: `rpmbuild` is not installed (Debian package rpm): run .ci/setup"
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn the_install_page_names_every_artifact() {
    let page = std::fs::read_to_string(workspace().join("docs/install.md")).unwrap();
    let sums = std::fs::read_to_string(artifact("SHA256SUMS")).unwrap();
    for name in sums.lines().map(|line| line.split_once("  ").unwrap().1) {
        assert!(
            page.contains(&format!("`{name}`")),
            "docs/install.md does not name {name}"
        );
    }
    for path in [
        "deploy/daemonset.yaml",
        "deploy/rbac-service-account-tokens.yaml",
    ] {
        assert!(page.contains(path), "docs/install.md does not name {path}");
        assert!(workspace().join(path).is_file());
    }
}
