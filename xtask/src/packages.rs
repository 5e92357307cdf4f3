//! The `.deb` (built with `dpkg-deb`) and the `.rpm` (built with `rpmbuild`) of one file tree:
//! the binary in the plugin directory, the official providers' names as symlinks to it, the
//! example rules as a configuration file the package manager does not overwrite once
//! edited, and the README and licence. No package script: installing or removing a package
//! never touches the kubelet, its flags or its configuration.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::tools;

/// The package's name.
pub const NAME: &str = "image-credential-provider";

/// Where the packages put the binary: a distribution package owns `/usr`, never
/// `/usr/local` (the installer's default, for binaries put there by hand).
pub const BIN_DIR: &str = "/usr/libexec/kubernetes/credential-providers";

/// The example rules, a configuration file of the packages.
pub const RULES: &str = "/etc/kubernetes/image-credential-provider.yaml";

/// The names of the official providers this binary answers under (src/dropin/).
pub const DROP_INS: [&str; 3] = [
    "ecr-credential-provider",
    "acr-credential-provider",
    "auth-provider-gcp",
];

const DOC_DIR: &str = "/usr/share/doc/image-credential-provider";

const SUMMARY: &str =
    "kubelet image credential provider for ECR, ACR, GCR/Artifact Registry and docker config files";

const DESCRIPTION: &str =
    "One kubelet image credential provider exec plugin for every registry a node
pulls from: AWS ECR, Azure ACR, Google GCR and Artifact Registry, and static
credentials from docker config.json files. It also answers under the names
of the official providers (ecr-credential-provider, acr-credential-provider,
auth-provider-gcp), installed as symlinks beside it.
The package changes no kubelet flag and restarts nothing: point the
kubelet's --image-credential-provider-bin-dir at the plugin directory and
its --image-credential-provider-config at a configuration that
`image-credential-provider kubelet-config` writes.";

/// What goes into both packages.
pub struct Contents<'a> {
    /// The release version.
    pub version: &'a str,
    /// The static binary.
    pub binary: &'a [u8],
    /// The example rules.
    pub rules: &'a [u8],
    /// The README.
    pub readme: &'a [u8],
    /// The licence text.
    pub license: &'a [u8],
    /// The Debian architecture (`amd64`, `arm64`).
    pub deb_arch: &'a str,
    /// The RPM architecture (`x86_64`, `aarch64`).
    pub rpm_arch: &'a str,
    /// The commit's time: `SOURCE_DATE_EPOCH` for both builders.
    pub epoch: u64,
}

/// Lays the packages' file tree out under `root`.
fn stage(root: &Path, contents: &Contents) -> Result<()> {
    let put = |path: &str, mode: u32, content: &[u8]| -> Result<()> {
        let path = root.join(&path[1..]);
        fs::create_dir_all(path.parent().expect("a parent"))?;
        fs::write(&path, content)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    put(&format!("{BIN_DIR}/{NAME}"), 0o755, contents.binary)?;
    for name in DROP_INS {
        std::os::unix::fs::symlink(NAME, root.join(&BIN_DIR[1..]).join(name))?;
    }
    put(RULES, 0o644, contents.rules)?;
    put(&format!("{DOC_DIR}/README.md"), 0o644, contents.readme)?;
    put(&format!("{DOC_DIR}/copyright"), 0o644, contents.license)?;
    for dir in walk_dirs(root)? {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn walk_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![dir.to_path_buf()];
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            dirs.extend(walk_dirs(&entry.path())?);
        }
    }
    Ok(dirs)
}

/// Builds the `.deb` in `out` from a staging tree under `work`; returns its file name.
pub fn deb(contents: &Contents, work: &Path, out: &Path) -> Result<String> {
    let root = work.join("deb");
    stage(&root, contents)?;
    let control = root.join("DEBIAN");
    fs::create_dir_all(&control)?;
    let installed_kib = (contents.binary.len()
        + contents.rules.len()
        + contents.readme.len()
        + contents.license.len())
    .div_ceil(1024);
    let description: String = DESCRIPTION
        .lines()
        .map(|line| format!(" {line}\n"))
        .collect();
    fs::write(
        control.join("control"),
        format!(
            "Package: {NAME}\nVersion: {}-1\nArchitecture: {}\n\
             Maintainer: image-credential-provider maintainers <maintainers@image-credential-provider.invalid>\n\
             Installed-Size: {installed_kib}\nSection: admin\nPriority: optional\n\
             Description: {SUMMARY}\n{description}",
            contents.version, contents.deb_arch
        ),
    )?;
    fs::write(control.join("conffiles"), format!("{RULES}\n"))?;
    for file in ["control", "conffiles"] {
        fs::set_permissions(control.join(file), fs::Permissions::from_mode(0o644))?;
    }
    fs::set_permissions(&control, fs::Permissions::from_mode(0o755))?;
    let name = format!("{NAME}_{}-1_{}.deb", contents.version, contents.deb_arch);
    tools::output(
        Command::new("dpkg-deb")
            .env("SOURCE_DATE_EPOCH", contents.epoch.to_string())
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&root)
            .arg(out.join(&name)),
    )?;
    Ok(name)
}

/// Builds the `.rpm` in `out` from a staging tree under `work`; returns its file name.
pub fn rpm(contents: &Contents, work: &Path, out: &Path) -> Result<String> {
    let staging = work.join("rpm-root");
    stage(&staging, contents)?;
    let top = work.join("rpmbuild");
    fs::create_dir_all(&top)?;
    let links: String = DROP_INS
        .iter()
        .map(|name| format!("{BIN_DIR}/{name}\n"))
        .collect();
    let spec = format!(
        "%global debug_package %{{nil}}\n\
         %global __os_install_post %{{nil}}\n\
         %global _build_id_links none\n\
         Name: {NAME}\nVersion: {version}\nRelease: 1\nSummary: {SUMMARY}\n\
         License: Apache-2.0\nBuildArch: {arch}\nAutoReqProv: no\n\n\
         %description\n{DESCRIPTION}\n\n\
         %install\nmkdir -p %{{buildroot}}\ncp -a {staging}/. %{{buildroot}}/\n\n\
         %files\n%defattr(-,root,root,-)\n\
         %dir /etc/kubernetes\n%config(noreplace) {RULES}\n\
         %dir /usr/libexec/kubernetes\n%dir {BIN_DIR}\n{BIN_DIR}/{NAME}\n{links}\
         %dir {DOC_DIR}\n%doc {DOC_DIR}/README.md\n%license {DOC_DIR}/copyright\n",
        version = contents.version,
        arch = contents.rpm_arch,
        staging = staging.display(),
    );
    let spec_path = work.join(format!("{NAME}.spec"));
    fs::write(&spec_path, spec)?;
    let name = format!("{NAME}-{}-1.{}.rpm", contents.version, contents.rpm_arch);
    let define = |macro_: &str, value: &str| format!("{macro_} {value}");
    tools::output(
        Command::new("rpmbuild")
            .env("SOURCE_DATE_EPOCH", contents.epoch.to_string())
            .arg("-bb")
            .arg("--quiet")
            .args(["--define", &define("_topdir", &top.display().to_string())])
            .args(["--define", &define("_rpmdir", &out.display().to_string())])
            .args([
                "--define",
                "_build_name_fmt %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm",
            ])
            .args(["--define", "_binary_payload w6.xzdio"])
            .args(["--define", "_buildhost reproducible"])
            .args(["--define", "use_source_date_epoch_as_buildtime 1"])
            .args(["--define", "clamp_mtime_to_source_date_epoch 1"])
            .args(["--target", contents.rpm_arch])
            .arg(&spec_path),
    )
    .context("rpmbuild")?;
    Ok(name)
}
