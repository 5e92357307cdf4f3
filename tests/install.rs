//! `install` and `uninstall` run as a node's operator runs them, against fake node roots
//! laid out as kubeadm, EKS (Amazon Linux 2023, nodeadm), AKS (Ubuntu), GKE
//! (Container-Optimized OS), k3s and RKE2 nodes lay out the kubelet's flags and plugin
//! directories. Each root is compared, as a listing of every path with its type, mode,
//! owner and checksum, before and after.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use common::{Plugin, Run, testdata};
use sha2::{Digest, Sha256};

const BINARY: &str = env!("CARGO_BIN_EXE_image-credential-provider");
const RULES: &str = "/etc/kubernetes/image-credential-provider.yaml";
const KUBEADM_BIN_DIR: &str = "/usr/local/libexec/kubernetes/credential-providers";
const KUBEADM_CONFIG: &str = "/etc/kubernetes/credential-providers.yaml";

/// A fake node's `/`.
pub(crate) struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    /// An empty root with the directories every node has.
    pub(crate) fn new() -> Node {
        let node = Node {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::set_permissions(node.root(), fs::Permissions::from_mode(0o755)).unwrap();
        for dir in ["etc", "usr/local/bin", "var/lib"] {
            node.mkdir(dir);
        }
        node
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The path of node path `path` here.
    pub(crate) fn path(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    fn mkdir(&self, path: &str) {
        fs::create_dir_all(self.path(path)).unwrap();
    }

    /// Writes node file `path` with `text` and `mode`, creating its directories.
    pub(crate) fn write(&self, path: &str, text: &str, mode: u32) {
        let file = self.path(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, text).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub(crate) fn read(&self, path: &str) -> String {
        fs::read_to_string(self.path(path)).unwrap()
    }

    /// The rules file at [`RULES`], with the docker config it names.
    fn with_rules(self) -> Node {
        let rules = fs::read_to_string(testdata().join("rules.yaml")).unwrap();
        self.write(RULES, &rules, 0o644);
        let docker = fs::read_to_string(testdata().join("docker-config.json")).unwrap();
        self.write("/etc/kubernetes/docker-config.json", &docker, 0o600);
        self
    }

    /// Every path under the root with its type, mode, owner and content's checksum (a
    /// link's target): what must come back byte for byte.
    pub(crate) fn listing(&self) -> BTreeMap<String, String> {
        let mut listing = BTreeMap::new();
        let mut todo = vec![self.root().to_owned()];
        while let Some(dir) = todo.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let what = if meta.file_type().is_symlink() {
                    format!("link {}", fs::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    todo.push(path.clone());
                    "dir".to_owned()
                } else {
                    let digest = Sha256::digest(fs::read(&path).unwrap());
                    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                    format!("file {hex}")
                };
                let name = path
                    .strip_prefix(self.root())
                    .unwrap()
                    .display()
                    .to_string();
                let mode = meta.mode() & 0o7777;
                let owner = (meta.uid(), meta.gid());
                listing.insert(name, format!("{what} {mode:04o} {owner:?}"));
            }
        }
        listing
    }

    fn install(&self, args: &[&str]) -> Run {
        self.run("install", args)
    }

    fn uninstall(&self, args: &[&str]) -> Run {
        self.run("uninstall", args)
    }

    fn run(&self, command: &str, args: &[&str]) -> Run {
        let mut all = vec![command, "--root", self.root().to_str().unwrap()];
        all.extend(args);
        Plugin::new(all).run()
    }
}

/// A kubeadm node (Debian packages): the kubelet's drop-in reads kubeadm's flags and
/// `/etc/default/kubelet`; no credential provider flags yet.
pub(crate) fn kubeadm() -> Node {
    let node = Node::new();
    node.write(
        "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
        "# Note: This dropin only works with kubeadm and kubelet v1.11+\n\
         [Service]\n\
         Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"\n\
         Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\n\
         EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n\
         EnvironmentFile=-/etc/default/kubelet\n\
         ExecStart=\n\
         ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n",
        0o644,
    );
    node.write(
        "/var/lib/kubelet/kubeadm-flags.env",
        "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.10\"\n",
        0o644,
    );
    node.write("/etc/default/kubelet", "KUBELET_EXTRA_ARGS=\n", 0o640);
    node.write(
        "/etc/kubernetes/kubelet.conf",
        "apiVersion: v1\nkind: Config\n",
        0o600,
    );
    node.with_rules()
}

/// An EKS node on Amazon Linux 2023: nodeadm's flags name its own plugin directory and
/// configuration, which runs the official `ecr-credential-provider`.
pub(crate) fn eks_al2023() -> Node {
    let node = Node::new();
    node.write(
        "/etc/eks/kubelet/environment",
        "NODEADM_KUBELET_ARGS=\"--node-ip=10.0.0.5 --hostname-override=ip-10-0-0-5.ec2.internal --image-credential-provider-bin-dir=/etc/eks/image-credential-provider --image-credential-provider-config=/etc/eks/image-credential-provider/config.json --node-labels=eks.amazonaws.com/nodegroup=workers\"\n",
        0o644,
    );
    node.write(
        "/etc/kubernetes/kubelet/config.json",
        "{\"apiVersion\":\"kubelet.config.k8s.io/v1beta1\",\"kind\":\"KubeletConfiguration\",\"maxPods\":58}\n",
        0o644,
    );
    node.write(
        "/etc/eks/image-credential-provider/config.json",
        r#"{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{"name":"ecr-credential-provider","matchImages":["*.dkr.ecr.*.amazonaws.com","*.dkr.ecr.*.amazonaws.com.cn"],"defaultCacheDuration":"12h","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}]}"#,
        0o644,
    );
    node.write(
        "/etc/eks/image-credential-provider/ecr-credential-provider",
        "#!/bin/sh\necho official\n",
        0o755,
    );
    node
}

/// An AKS node (Ubuntu): `/etc/default/kubelet`'s `KUBELET_FLAGS` name the plugin
/// directory of the official `acr-credential-provider`.
pub(crate) fn aks_ubuntu() -> Node {
    let node = Node::new();
    node.write(
        "/etc/systemd/system/kubelet.service.d/10-componentconfig.conf",
        "[Service]\nEnvironment=\"KUBELET_CONFIG_FILE_FLAGS=--config /etc/default/kubeletconfig.json\"\n",
        0o644,
    );
    node.write(
        "/etc/default/kubelet",
        "KUBELET_FLAGS=--address=0.0.0.0 --cloud-provider=external --image-credential-provider-bin-dir=/var/lib/kubelet/credential-provider --image-credential-provider-config=/var/lib/kubelet/credential-provider-config.yaml --max-pods=110\n\
         KUBELET_REGISTER_SCHEDULABLE=true\n",
        0o644,
    );
    node.write(
        "/var/lib/kubelet/credential-provider-config.yaml",
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: acr-credential-provider\n    matchImages:\n      - \"*.azurecr.io\"\n    defaultCacheDuration: 10m\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    args:\n      - /etc/kubernetes/azure.json\n",
        0o644,
    );
    node.write(
        "/var/lib/kubelet/credential-provider/acr-credential-provider",
        "#!/bin/sh\necho official\n",
        0o755,
    );
    node
}

/// A GKE node on Container-Optimized OS: `KUBELET_OPTS` name `/home/kubernetes/bin`,
/// which the test mounts read-only.
pub(crate) fn gke_cos() -> Node {
    let node = Node::new();
    node.write(
        "/etc/default/kubelet",
        "KUBELET_OPTS=\"--v=2 --cloud-provider=external --image-credential-provider-config=/etc/srv/kubernetes/cri_auth_config.yaml --image-credential-provider-bin-dir=/home/kubernetes/bin\"\n",
        0o644,
    );
    node.write(
        "/etc/srv/kubernetes/cri_auth_config.yaml",
        "kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n  - name: auth-provider-gcp\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages:\n    - \"gcr.io\"\n    - \"*.pkg.dev\"\n    defaultCacheDuration: 1m\n    args:\n    - get-credentials\n    - --v=3\n",
        0o644,
    );
    node.write(
        "/home/kubernetes/bin/auth-provider-gcp",
        "#!/bin/sh\n",
        0o755,
    );
    node
}

/// A k3s (or RKE2) node: its config file, and nothing of the credential provider yet.
pub(crate) fn rancher(name: &str) -> Node {
    let node = Node::new();
    node.write(
        &format!("/etc/rancher/{name}/config.yaml"),
        "write-kubeconfig-mode: \"0600\"\nkubelet-arg:\n  - \"max-pods=200\"\nnode-label:\n  - \"pool=workers\"\n",
        0o600,
    );
    node.mkdir(&format!("/var/lib/rancher/{name}/agent"));
    node.with_rules()
}

/// Asserts `run` succeeded, and returns its stdout.
fn ok(run: &Run) -> &str {
    assert_eq!(
        run.code, 0,
        "stderr: {}\nstdout: {}",
        run.stderr, run.stdout
    );
    assert_eq!(run.stderr, "");
    &run.stdout
}

fn assert_installed_binary(node: &Node, bin_dir: &str) {
    let installed = node.path(&format!("{bin_dir}/image-credential-provider"));
    assert_eq!(fs::read(&installed).unwrap(), fs::read(BINARY).unwrap());
    assert_eq!(fs::metadata(&installed).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn kubeadm_install_prints_the_missing_flags_and_uninstall_leaves_the_root_as_it_was() {
    let node = kubeadm();
    let before = node.listing();
    let run = node.install(&["--config", RULES]);
    let out = ok(&run);
    assert_installed_binary(&node, KUBEADM_BIN_DIR);
    assert!(
        out.contains(&format!("created {KUBEADM_BIN_DIR} (directory)")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "wrote {KUBEADM_BIN_DIR}/image-credential-provider (the binary)"
        )),
        "{out}"
    );
    for flag in [
        format!(
            "missing kubelet flag: --image-credential-provider-bin-dir={KUBEADM_BIN_DIR} (add it to KUBELET_EXTRA_ARGS in /etc/default/kubelet"
        ),
        format!(
            "missing kubelet flag: --image-credential-provider-config={KUBEADM_CONFIG} (add it to KUBELET_EXTRA_ARGS in /etc/default/kubelet"
        ),
    ] {
        assert!(out.contains(&flag), "{out}");
    }
    assert!(
        out.contains("restart the kubelet once the flags above are set"),
        "{out}"
    );
    // The configuration runs the installed binary with the rules, as the node names them.
    let config = node.read(KUBEADM_CONFIG);
    assert!(
        config.contains(&format!("  - \"--config\"\n  - \"{RULES}\"\n")),
        "{config}"
    );
    assert!(
        config.contains("- name: \"image-credential-provider\""),
        "{config}"
    );
    let check = Plugin::new([
        "check-config",
        "--kubelet-config",
        node.path(KUBEADM_CONFIG).to_str().unwrap(),
    ])
    .run();
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert_eq!(node.read("/etc/default/kubelet"), "KUBELET_EXTRA_ARGS=\n");

    let run = node.uninstall(&[]);
    let out = ok(&run);
    assert!(
        out.contains(&format!(
            "removed {KUBEADM_BIN_DIR}/image-credential-provider (the binary)"
        )),
        "{out}"
    );
    assert_eq!(node.listing(), before);
}

#[test]
fn set_kubelet_flags_keeps_a_backup_that_uninstall_puts_back() {
    let node = kubeadm();
    let before = node.listing();
    let out = ok(&node.install(&["--config", RULES, "--set-kubelet-flags"])).to_owned();
    assert!(!out.contains("missing kubelet flag"), "{out}");
    assert!(out.contains("replaced /etc/default/kubelet (kubelet flags; the node's own kept as /etc/default/kubelet.before-image-credential-provider)"), "{out}");
    assert_eq!(
        node.read("/etc/default/kubelet"),
        format!(
            "KUBELET_EXTRA_ARGS=\"--image-credential-provider-bin-dir={KUBEADM_BIN_DIR} --image-credential-provider-config={KUBEADM_CONFIG}\"\n"
        )
    );
    let flags = fs::metadata(node.path("/etc/default/kubelet")).unwrap();
    assert_eq!(
        flags.mode() & 0o7777,
        0o640,
        "the flags file keeps its mode"
    );
    let backup = node.path("/etc/default/kubelet.before-image-credential-provider");
    assert_eq!(
        fs::read_to_string(&backup).unwrap(),
        "KUBELET_EXTRA_ARGS=\n"
    );
    assert_eq!(fs::metadata(&backup).unwrap().mode() & 0o7777, 0o640);

    // Installing again (a DaemonSet's pod restarted) changes nothing.
    let installed = node.listing();
    let again = ok(&node.install(&["--config", RULES, "--set-kubelet-flags"])).to_owned();
    assert!(
        !again.contains("wrote") && !again.contains("replaced"),
        "{again}"
    );
    assert!(!again.contains("restart"), "{again}");
    assert_eq!(node.listing(), installed);
    // Nor does installing again without --set-kubelet-flags: it leaves the flags alone.
    let again = ok(&node.install(&["--config", RULES])).to_owned();
    assert!(
        again.contains("unchanged /etc/default/kubelet (kubelet flags)"),
        "{again}"
    );
    assert!(
        !again.contains("missing") && !again.contains("restart"),
        "{again}"
    );
    assert_eq!(node.listing(), installed);

    let out = ok(&node.uninstall(&[])).to_owned();
    assert!(
        out.contains("restored /etc/default/kubelet (kubelet flags)"),
        "{out}"
    );
    assert_eq!(node.listing(), before);
}

#[test]
fn dry_run_changes_nothing() {
    let node = kubeadm();
    let before = node.listing();
    let out =
        ok(&node.install(&["--config", RULES, "--set-kubelet-flags", "--dry-run"])).to_owned();
    assert!(
        out.contains(&format!(
            "would write {KUBEADM_BIN_DIR}/image-credential-provider (the binary)"
        )),
        "{out}"
    );
    assert!(
        out.contains("would replace /etc/default/kubelet (kubelet flags"),
        "{out}"
    );
    assert_eq!(node.listing(), before);

    ok(&node.install(&["--config", RULES, "--set-kubelet-flags"]));
    let installed = node.listing();
    let out = ok(&node.uninstall(&["--dry-run"])).to_owned();
    assert!(
        out.contains("would restore /etc/default/kubelet (kubelet flags)"),
        "{out}"
    );
    assert_eq!(node.listing(), installed);
    ok(&node.uninstall(&[]));
    assert_eq!(node.listing(), before);
}

#[test]
fn uninstall_refuses_a_file_it_did_not_write() {
    let node = kubeadm();
    // Nothing installed: nothing to do, and no error (a DaemonSet may run it twice).
    let before = node.listing();
    let out = ok(&node.uninstall(&[])).to_owned();
    assert!(
        out.starts_with(
            "nothing to uninstall: no /etc/kubernetes/image-credential-provider.install-manifest"
        ),
        "{out}"
    );
    assert_eq!(node.listing(), before);
    ok(&node.install(&["--config", RULES, "--set-kubelet-flags"]));
    // A manifest others could have written is not taken for install's.
    let manifest = node.path("/etc/kubernetes/image-credential-provider.install-manifest");
    fs::set_permissions(&manifest, fs::Permissions::from_mode(0o666)).unwrap();
    node.uninstall(&[]).assert_error(1, "not trusted");
    fs::set_permissions(&manifest, fs::Permissions::from_mode(0o644)).unwrap();
    let binary = format!("{KUBEADM_BIN_DIR}/image-credential-provider");
    node.write(&binary, "#!/bin/sh\necho someone else's\n", 0o755);
    let changed = node.listing();
    node.uninstall(&[])
        .assert_error(1, &format!("{binary} is not what install wrote there"));
    assert_eq!(
        node.listing(),
        changed,
        "a refused uninstall changes nothing"
    );
    // Nor does install replace it without a word.
    node.install(&["--config", RULES])
        .assert_error(1, &format!("{binary} is not what install wrote there"));
    assert_eq!(node.listing(), changed);
}

#[test]
fn eks_al2023_keeps_nodeadm_configuration_and_replaces_the_official_binary_by_name() {
    let node = eks_al2023();
    let before = node.listing();
    node.install(&[]).assert_error(
        1,
        "/etc/eks/image-credential-provider/config.json is the node's own credential provider configuration (providers: ecr-credential-provider)",
    );
    assert_eq!(node.listing(), before);

    let out = ok(&node.install(&["--drop-in", "ecr-credential-provider"])).to_owned();
    assert_installed_binary(&node, "/etc/eks/image-credential-provider");
    assert!(out.contains("replaced /etc/eks/image-credential-provider/ecr-credential-provider (drop-in ecr-credential-provider; the node's own kept as /etc/eks/image-credential-provider/ecr-credential-provider.before-image-credential-provider)"), "{out}");
    assert!(out.contains("kept /etc/eks/image-credential-provider/config.json: its provider ecr-credential-provider runs this binary under that name"), "{out}");
    assert!(
        !out.contains("missing") && !out.contains("restart"),
        "{out}"
    );
    let link = node.path("/etc/eks/image-credential-provider/ecr-credential-provider");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("image-credential-provider")
    );
    let version = Plugin::at(&link, ["--version"]).run();
    assert!(
        version
            .stdout
            .starts_with("ecr-credential-provider version"),
        "{}",
        version.stdout
    );

    ok(&node.uninstall(&[]));
    assert_eq!(node.listing(), before);
}

#[test]
fn aks_ubuntu_replaces_the_official_binary_by_name() {
    let node = aks_ubuntu();
    let before = node.listing();
    let out = ok(&node.install(&["--drop-in", "acr-credential-provider"])).to_owned();
    assert_installed_binary(&node, "/var/lib/kubelet/credential-provider");
    assert!(out.contains("replaced /var/lib/kubelet/credential-provider/acr-credential-provider (drop-in acr-credential-provider"), "{out}");
    assert!(!out.contains("missing"), "{out}");
    ok(&node.uninstall(&[]));
    assert_eq!(node.listing(), before);
}

#[test]
fn gke_cos_says_the_plugin_directory_is_not_writable() {
    let node = gke_cos();
    let before = node.listing();
    let bin_dir = node.path("/home/kubernetes/bin");
    // The plugin directory read-only, as a read-only mount makes it, in a mount namespace
    // of this run alone.
    let run = Plugin::at(
        Path::new("unshare"),
        [
            "--mount",
            "sh",
            "-c",
            "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\" && shift && exec \"$@\"",
            "sh",
            bin_dir.to_str().unwrap(),
            BINARY,
            "install",
            "--root",
            node.root().to_str().unwrap(),
            "--drop-in",
            "auth-provider-gcp",
        ],
    )
    .run();
    run.assert_error(
        1,
        "the plugin directory /home/kubernetes/bin is not writable on this node (Read-only file system",
    );
    assert_eq!(node.listing(), before);
}

#[test]
fn k3s_uses_its_default_directories_and_needs_no_flags() {
    let node = rancher("k3s");
    let before = node.listing();
    let out = ok(&node.install(&["--config", RULES])).to_owned();
    assert_installed_binary(&node, "/var/lib/rancher/credentialprovider/bin");
    assert!(out.contains("wrote /var/lib/rancher/credentialprovider/config.yaml (the kubelet's credential provider configuration)"), "{out}");
    assert!(!out.contains("missing"), "{out}");
    assert!(out.contains("restart the kubelet to apply this"), "{out}");
    ok(&node.uninstall(&[]));
    assert_eq!(node.listing(), before);
}

#[test]
fn rke2_with_a_directory_of_its_own_sets_kubelet_arg() {
    let node = rancher("rke2");
    let before = node.listing();
    let out = ok(&node.install(&[
        "--config",
        RULES,
        "--bin-dir",
        "/opt/credential-providers",
        "--set-kubelet-flags",
    ]))
    .to_owned();
    assert_installed_binary(&node, "/opt/credential-providers");
    assert_eq!(
        node.read("/etc/rancher/rke2/config.yaml"),
        "write-kubeconfig-mode: \"0600\"\nkubelet-arg:\n  - \"max-pods=200\"\n  - \"image-credential-provider-bin-dir=/opt/credential-providers\"\nnode-label:\n  - \"pool=workers\"\n"
    );
    assert!(
        out.contains("replaced /etc/rancher/rke2/config.yaml (kubelet flags"),
        "{out}"
    );
    ok(&node.uninstall(&[]));
    assert_eq!(node.listing(), before);
}

#[test]
fn the_root_is_never_left_through_a_symlink() {
    let outside = tempfile::tempdir().unwrap();
    let node = kubeadm();
    // /usr/local on the node links to an absolute path: on the node, inside its root.
    fs::remove_dir_all(node.path("/usr/local")).unwrap();
    symlink(outside.path(), node.path("/usr/local")).unwrap();
    let before = node.listing();
    ok(&node.install(&["--config", RULES]));
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside the root"
    );
    let inside = format!(
        "{}/libexec/kubernetes/credential-providers",
        outside.path().display()
    );
    assert_installed_binary(&node, &inside);
    ok(&node.uninstall(&[]));
    assert_eq!(node.listing(), before);
}

#[test]
fn a_directory_others_can_write_to_is_refused() {
    let node = kubeadm();
    fs::set_permissions(
        node.path("/etc/kubernetes"),
        fs::Permissions::from_mode(0o775),
    )
    .unwrap();
    let before = node.listing();
    node.install(&["--config", RULES]).assert_error(
        1,
        "not writing under /etc/kubernetes: its mode 0775 lets others write to it",
    );
    assert_eq!(node.listing(), before);
}

#[test]
fn an_upgrade_replaces_the_binary_and_keeps_the_first_backups() {
    let node = aks_ubuntu();
    let before = node.listing();
    ok(&node.install(&["--drop-in", "acr-credential-provider"]));
    // A newer build: the same program with other bytes (an ELF file ignores what follows it).
    let newer_dir = tempfile::tempdir().unwrap();
    let newer = newer_dir.path().join("image-credential-provider");
    let mut bytes = fs::read(BINARY).unwrap();
    bytes.extend_from_slice(b"newer");
    fs::write(&newer, &bytes).unwrap();
    fs::set_permissions(&newer, fs::Permissions::from_mode(0o755)).unwrap();
    let root = node.root().to_str().unwrap();
    let run = Plugin::at(
        &newer,
        [
            "install",
            "--root",
            root,
            "--drop-in",
            "acr-credential-provider",
        ],
    )
    .run();
    let out = ok(&run);
    let bin_dir = "/var/lib/kubelet/credential-provider";
    assert!(
        out.contains(&format!(
            "wrote {bin_dir}/image-credential-provider (the binary)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "unchanged {bin_dir}/acr-credential-provider (drop-in acr-credential-provider)"
        )),
        "{out}"
    );
    assert_eq!(
        fs::read(node.path(&format!("{bin_dir}/image-credential-provider"))).unwrap(),
        bytes
    );
    ok(&node.uninstall(&[]));
    assert_eq!(node.listing(), before, "the official binary is back");
}

#[test]
fn a_configuration_directory_gets_a_file_of_its_own() {
    let node = kubeadm();
    node.write(
        "/etc/kubernetes/credential-providers.d/other.yaml",
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: other\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  matchImages: [\"other.example\"]\n  defaultCacheDuration: 1m\n",
        0o644,
    );
    let before = node.listing();
    let dir = "/etc/kubernetes/credential-providers.d";
    let out = ok(&node.install(&["--config", RULES, "--kubelet-config", dir])).to_owned();
    assert!(out.contains(&format!("wrote {dir}/image-credential-provider.yaml (the kubelet's credential provider configuration)")), "{out}");
    assert!(
        out.contains(&format!(
            "missing kubelet flag: --image-credential-provider-config={dir} ("
        )),
        "{out}"
    );
    let check = Plugin::new([
        "check-config",
        "--kubelet-config",
        node.path(dir).to_str().unwrap(),
    ])
    .run();
    assert_eq!(check.code, 0, "{}", check.stderr);
    ok(&node.uninstall(&["--kubelet-config", dir]));
    assert_eq!(node.listing(), before);

    // A link in it that leads out of the root is not followed.
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("x.yaml"), "providers: []\n").unwrap();
    symlink(
        outside.path().join("x.yaml"),
        node.path(&format!("{dir}/x.yaml")),
    )
    .unwrap();
    let before = node.listing();
    node.install(&["--config", RULES, "--kubelet-config", dir])
        .assert_error(
            1,
            &format!("{dir}/x.yaml is a symbolic link out of the node's root"),
        );
    assert_eq!(node.listing(), before);
}
