//! `cargo xtask dist`: the release artifacts of one target, from a checkout, into one
//! directory (default `target/dist`):
//!
//! - the static binary `image-credential-provider-VERSION-linux-ARCH`, built as
//!   `cargo build-static` builds it, stripped, with its dependency list in the section
//!   `.dep-v0` in the format of `cargo auditable` (added with `objcopy`);
//! - `image-credential-provider-VERSION-linux-ARCH.tar.gz`: the binary, LICENSE, README.md
//!   and the example rules, reproducible (sorted entries, the commit's time, owner 0, no
//!   names, a gzip header without name or time);
//! - `image-credential-provider-VERSION.cdx.json`: the CycloneDX 1.5 SBOM of the binary;
//! - a `.deb` and an `.rpm` (see [`crate::packages`]);
//! - `image-credential-provider-VERSION-oci.tar`: the OCI image (see [`crate::oci`]);
//! - `SHA256SUMS` over all of them, for `sha256sum -c`.
//!
//! Every date is the commit's, never the clock's.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::archive::{self, Entry};
use crate::{deps, oci, packages, tools};

/// The target built when `--target` is not given.
pub const DEFAULT_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The options of `dist`.
pub struct Options {
    /// The output directory; default `target/dist` in the workspace's target directory.
    pub out: Option<PathBuf>,
    /// The Rust target triple.
    pub target: String,
}

/// The names one target's architecture has.
struct Arch {
    /// In file names and OCI (`amd64`), and for Debian.
    name: &'static str,
    /// For RPM (`x86_64`).
    rpm: &'static str,
}

fn arch(target: &str) -> Result<Arch> {
    match target {
        "x86_64-unknown-linux-gnu" => Ok(Arch {
            name: "amd64",
            rpm: "x86_64",
        }),
        "aarch64-unknown-linux-gnu" => Ok(Arch {
            name: "arm64",
            rpm: "aarch64",
        }),
        _ => bail!(
            "dist builds x86_64-unknown-linux-gnu and aarch64-unknown-linux-gnu, not {target}"
        ),
    }
}

/// The cargo arguments that build the static binary for `target`: `cargo build-static`'s
/// (`.cargo/config.toml`), with `target` for x86_64.
pub fn build_args(target: &str) -> Vec<String> {
    [
        "build",
        "--release",
        "--locked",
        "--target",
        target,
        "--config",
        &format!("target.{target}.rustflags = ['-C', 'target-feature=+crt-static']"),
    ]
    .map(String::from)
    .to_vec()
}

/// The revision the artifacts are built from.
struct Revision {
    /// The commit hash, with `-dirty` when the work tree has changes.
    id: String,
    /// The commit's time, seconds since the epoch.
    epoch: u64,
}

fn revision(workspace: &Path) -> Result<Revision> {
    let git = |args: &[&str]| tools::text(Command::new("git").current_dir(workspace).args(args));
    let commit = git(&["rev-parse", "HEAD"]).context("dist builds from a git checkout")?;
    let epoch = git(&["show", "-s", "--format=%ct", "HEAD"])?
        .parse()
        .context("the commit's time")?;
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    if dirty {
        eprintln!("dist: warning: the work tree has changes; the revision is {commit}-dirty");
    }
    Ok(Revision {
        id: if dirty {
            format!("{commit}-dirty")
        } else {
            commit
        },
        epoch,
    })
}

/// Fails in one line when `target`'s standard library is not installed.
fn require_std(target: &str) -> Result<()> {
    let sysroot = tools::text(Command::new("rustc").args(["--print", "sysroot"]))?;
    if !Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
    {
        bail!(
            "the standard library for {target} is not installed on this machine \
             (`rustup target add {target}` on a release machine; see docs/install.md)"
        );
    }
    Ok(())
}

/// Builds the static binary; returns its path.
fn build(cargo: &Path, workspace: &Path, target: &str) -> Result<PathBuf> {
    let stdout = tools::output(
        Command::new(cargo)
            .current_dir(workspace)
            .args(build_args(target))
            .args(["--package", deps::ROOT, "--bin", deps::ROOT])
            .arg("--message-format=json-render-diagnostics")
            .stderr(std::process::Stdio::inherit()),
    )?;
    String::from_utf8_lossy(&stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == deps::ROOT)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .context("cargo did not name the binary it built")
}

/// Copies the binary to `to` with the audit data in its section `.dep-v0`.
fn embed(binary: &Path, audit_data: &[u8], work: &Path, to: &Path) -> Result<()> {
    let section = work.join("dep-v0");
    fs::write(&section, audit_data)?;
    tools::output(
        Command::new("objcopy")
            .arg("--add-section")
            .arg(format!(".dep-v0={}", section.display()))
            .arg(binary)
            .arg(to),
    )?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Runs `dist`.
pub fn dist(options: &Options) -> Result<()> {
    let started = Instant::now();
    let target = options.target.as_str();
    let arch = arch(target)?;
    require_std(target)?;
    for (tool, package) in [
        ("git", "git"),
        ("objcopy", "binutils"),
        ("dpkg-deb", "dpkg"),
        ("rpmbuild", "rpm"),
    ] {
        tools::require(tool, package)?;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace")?;
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let revision = revision(workspace)?;
    let tree = deps::read(&cargo, workspace, target)?;
    let version = tree.root().version.clone();
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| Path::new(&tree.target_directory).join("dist"));
    let built = build(&cargo, workspace, target)?;

    clear(&out)?;
    let work = out.join(".work");
    fs::create_dir_all(&work)?;
    let base = format!("{}-{version}-linux-{}", deps::ROOT, arch.name);
    let binary_name = base.clone();
    embed(
        &built,
        &deps::audit_data(&tree)?,
        &work,
        &out.join(&binary_name),
    )?;
    let binary = fs::read(out.join(&binary_name))?;
    let read = |path: &str| fs::read(workspace.join(path)).with_context(|| path.to_string());
    let (license, readme, rules) = (
        read("LICENSE")?,
        read("README.md")?,
        read("packaging/rules.example.yaml")?,
    );

    let tarball = format!("{base}.tar.gz");
    let tar = archive::tar(
        vec![
            Entry::dir(&base),
            Entry::file(format!("{base}/{}", deps::ROOT), 0o755, binary.clone()),
            Entry::file(format!("{base}/LICENSE"), 0o644, license.clone()),
            Entry::file(format!("{base}/README.md"), 0o644, readme.clone()),
            Entry::file(format!("{base}/rules.example.yaml"), 0o644, rules.clone()),
        ],
        revision.epoch,
    )?;
    fs::write(out.join(&tarball), archive::gzip(&tar)?)?;

    let sbom = format!("{}-{version}.cdx.json", deps::ROOT);
    fs::write(
        out.join(&sbom),
        deps::cyclonedx(&tree, revision.epoch as i64)?,
    )?;

    let contents = packages::Contents {
        version: &version,
        binary: &binary,
        rules: &rules,
        readme: &readme,
        license: &license,
        deb_arch: arch.name,
        rpm_arch: arch.rpm,
        epoch: revision.epoch,
    };
    let deb = packages::deb(&contents, &work, &out)?;
    let rpm = packages::rpm(&contents, &work, &out)?;

    let image = match arch.name {
        "amd64" => format!("{}-{version}-oci.tar", deps::ROOT),
        other => format!("{}-{version}-{other}-oci.tar", deps::ROOT),
    };
    fs::write(
        out.join(&image),
        oci::layout_archive(&oci::Image {
            binary: &binary,
            version: &version,
            revision: &revision.id,
            source: tree.repository.as_deref(),
            epoch: revision.epoch,
            architecture: arch.name,
        })?,
    )?;
    fs::remove_dir_all(&work)?;

    let mut artifacts = vec![binary_name, tarball, sbom, deb, rpm, image];
    artifacts.sort();
    let mut sums = String::new();
    for name in &artifacts {
        let content = fs::read(out.join(name))?;
        let _ = writeln!(sums, "{}  {name}", oci::hex(&Sha256::digest(&content)));
    }
    fs::write(out.join("SHA256SUMS"), sums)?;

    println!("dist: {} ({target}, {}):", out.display(), revision.id);
    for name in &artifacts {
        let size = fs::metadata(out.join(name))?.len();
        println!("  {size:>10}  {name}");
    }
    println!("  SHA256SUMS");
    println!("dist: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Empties `out` of what an earlier `dist` left there, creating it if needed.
fn clear(out: &Path) -> Result<()> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for entry in fs::read_dir(out)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == ".work" {
            fs::remove_dir_all(entry.path())?;
        } else if name == "SHA256SUMS" || name.starts_with(deps::ROOT) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build is `cargo build-static`'s: the alias in `.cargo/config.toml`, word for word.
    #[test]
    fn the_build_is_the_build_static_alias() {
        let config = include_str!("../../.cargo/config.toml");
        let start = config.find("build-static = [").expect("the alias");
        let alias = &config[start..start + config[start..].find("\n]").expect("its end")];
        // The quoted words: every second piece between double quotes.
        let words: Vec<&str> = alias.split('"').skip(1).step_by(2).collect();
        assert_eq!(words, build_args(DEFAULT_TARGET));
    }

    #[test]
    fn other_targets_are_refused_by_name() {
        let error = arch("x86_64-pc-windows-msvc").err().unwrap().to_string();
        assert!(error.contains("x86_64-pc-windows-msvc"), "{error}");
    }
}
