//! `install` and `uninstall`: this binary put into a node's kubelet plugin directory, with
//! the drop-in names asked for and the kubelet's credential provider configuration, and
//! taken out again. Returns what it did (or would do) as data; never prints.
//!
//! Every path is a node path resolved inside `--root` ([`root`]). What `install` writes
//! is recorded in a manifest beside the kubelet's configuration ([`manifest`]) with its
//! fingerprint; a file it replaces is kept beside it as a backup (a hard link: the same
//! bytes, mode, owner and times) and `uninstall` puts that back. Nothing is written when
//! anything planned cannot be (an untrusted or read-only directory, a file `install` did
//! not write that has changed); the kubelet is never restarted.

mod flags;
mod manifest;
mod root;

pub use manifest::BACKUP_SUFFIX;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use icp_core::Environment;

use crate::kubelet_config;
use flags::Flags;
use manifest::{DIRECTORY, Entry, Manifest};
use root::Root;

/// The name this binary is installed under, the provider name in the kubelet's
/// configuration.
pub const NAME: &str = env!("CARGO_PKG_NAME");
/// The plugin directory when the node's kubelet names none.
pub const DEFAULT_BIN_DIR: &str = "/usr/local/libexec/kubernetes/credential-providers";
/// The kubelet's configuration when the node's kubelet names none: a file, which every
/// kubelet since 1.26 reads (a directory needs 1.34).
pub const DEFAULT_CONFIG: &str = "/etc/kubernetes/credential-providers.yaml";

/// What `install` is asked to do.
#[derive(Debug, Default)]
pub struct Options {
    /// The directory taken as the node's `/`.
    pub root: PathBuf,
    /// The plugin directory (node path), instead of the kubelet's or the default.
    pub bin_dir: Option<PathBuf>,
    /// The rules file (node path) the kubelet's configuration runs this binary with.
    pub rules: Option<PathBuf>,
    /// The kubelet's configuration (node path: a file, or a directory for 1.34+), instead
    /// of the kubelet's or the default.
    pub kubelet_config: Option<PathBuf>,
    /// The official providers' names to link to this binary.
    pub drop_ins: Vec<String>,
    /// Ask the kubelet for pods' service account tokens.
    pub service_account_tokens: bool,
    /// Set the kubelet's flags that are missing.
    pub set_kubelet_flags: bool,
    /// Say what would be done, and do nothing.
    pub dry_run: bool,
}

/// What was done, or would be.
#[derive(Debug, Default)]
pub struct Report {
    /// Each change, in order.
    pub steps: Vec<Step>,
    /// The kubelet flags still missing (`--name=value`), and where they go.
    pub missing_flags: Vec<(String, String)>,
    /// Whether the kubelet must be restarted to read what changed (its configuration or
    /// flags).
    pub restart: bool,
    /// Anything else the operator should know, one line each.
    pub notes: Vec<String>,
}

/// One change.
#[derive(Debug)]
pub struct Step {
    /// What is done.
    pub action: Action,
    /// The node path.
    pub path: PathBuf,
    /// What it is: `the binary`, `drop-in`, ...
    pub what: String,
}

/// What is done to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A directory created.
    Create,
    /// A file or link written where there was none, or replacing what `install` wrote.
    Write,
    /// A file or link written over the node's own, which is kept as its backup.
    Replace,
    /// Already as it should be.
    Unchanged,
    /// The backup put back.
    Restore,
    /// Removed.
    Remove,
}

/// What the binary is called in steps and the manifest.
const BINARY: &str = "the binary";
/// What the kubelet's configuration is called.
const CONFIGURATION: &str = "the kubelet's credential provider configuration";
/// What a file of kubelet flags is called.
const FLAGS: &str = "kubelet flags";

/// Whether the kubelet must restart to read a change to `what`: it reads its flags and
/// its credential provider configuration only when it starts (a plugin binary, at each
/// run).
fn restarts(what: &str) -> bool {
    what == CONFIGURATION || what == FLAGS
}

/// What `install` writes at one path.
enum Content {
    /// A regular file with its mode.
    File(Vec<u8>, u32),
    /// A symbolic link to the target.
    Symlink(PathBuf),
}

impl Content {
    fn fingerprint(&self) -> String {
        match self {
            Content::File(bytes, _) => manifest::file_fingerprint(bytes),
            Content::Symlink(target) => manifest::symlink_fingerprint(target),
        }
    }
}

/// One change planned.
enum Op {
    CreateDir(PathBuf),
    Put {
        path: PathBuf,
        content: Content,
        what: String,
        /// The backup's fingerprint: made now (`Some` with `make`), carried over from an
        /// earlier install, or none.
        backup: Option<String>,
        make_backup: bool,
    },
    Unchanged(Option<Entry>, PathBuf, String),
    Undo(Entry),
}

/// The node as it was before `install`: files an earlier install wrote are read as they
/// were before it, and planned edits as they will be.
pub struct View<'a> {
    root: &'a Root,
    before: Option<&'a Manifest>,
    texts: BTreeMap<PathBuf, String>,
}

impl View<'_> {
    /// The text of node file `node`, or `None` when there is none.
    fn read(&self, node: &Path) -> anyhow::Result<Option<String>> {
        let path = self.root.resolve(node)?;
        if let Some(text) = self.texts.get(&path) {
            return Ok(Some(text.clone()));
        }
        match self.before.and_then(|m| m.entry(&path)) {
            Some(entry) if entry.backup.is_some() => {
                root::read_host(&self.root.host(&manifest::backup_path(&path)))
            }
            Some(_) => Ok(None),
            None => self.root.read(node),
        }
    }

    /// Whether the node path `node` is a directory.
    fn is_dir(&self, node: &Path) -> anyhow::Result<bool> {
        let host = self.root.host(&self.root.resolve_all(node)?);
        Ok(fs::metadata(host).is_ok_and(|m| m.is_dir()))
    }
}

/// Where the kubelet's configuration is, and the manifest beside it.
struct Location {
    /// As the kubelet's flag names it.
    arg: String,
    /// The file written (resolved): `arg`, or `arg/NAME.yaml` when `arg` is a directory.
    file: PathBuf,
    /// Whether `arg` is a directory.
    directory: bool,
    /// The manifest (resolved).
    manifest: PathBuf,
}

fn locate(root: &Root, flags: &Flags, kubelet_config: Option<&Path>) -> anyhow::Result<Location> {
    let arg = match (kubelet_config, &flags.config) {
        (Some(path), _) => node_arg(path)?,
        (None, Some(setting)) => setting.value.clone(),
        (None, None) => DEFAULT_CONFIG.to_owned(),
    };
    let view = View {
        root,
        before: None,
        texts: BTreeMap::new(),
    };
    let directory = arg.ends_with('/') || view.is_dir(Path::new(&arg))?;
    let file = if directory {
        root.resolve_all(Path::new(&arg))?
            .join(format!("{NAME}.yaml"))
    } else {
        root.resolve(Path::new(&arg))?
    };
    let manifest = file.with_file_name(manifest::FILE_NAME);
    let arg = match arg.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    };
    Ok(Location {
        arg,
        file,
        directory,
        manifest,
    })
}

/// A node path given on the command line, as a flag value: absolute, UTF-8.
fn node_arg(path: &Path) -> anyhow::Result<String> {
    let path = std::path::absolute(path).with_context(|| path.display().to_string())?;
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{}: not UTF-8", path.display()))
}

/// The kubelet's `--image-credential-provider-config` on this node, found as `install`
/// finds it: its value, and the file that sets it (`None` for k3s's and RKE2's default).
pub fn kubelet_config_flag() -> anyhow::Result<Option<(String, Option<PathBuf>)>> {
    let root = Root::new(Path::new("/"))?;
    let view = View {
        root: &root,
        before: None,
        texts: BTreeMap::new(),
    };
    Ok(Flags::read(&view)?
        .config
        .map(|setting| (setting.value, setting.file)))
}

/// `install`: see the module documentation.
pub fn install(options: &Options, env: &Environment) -> anyhow::Result<Report> {
    let root = Root::new(&options.root)?;
    let drop_in_names: Vec<&str> = crate::backends::TABLE
        .iter()
        .filter_map(|row| row.drop_in)
        .map(|mode| mode.program)
        .collect();
    for name in &options.drop_ins {
        if !drop_in_names.contains(&name.as_str()) {
            bail!(
                "--drop-in {name:?}: this binary has no such drop-in mode (it has: {})",
                drop_in_names.join(", ")
            );
        }
    }
    let now = View {
        root: &root,
        before: None,
        texts: BTreeMap::new(),
    };
    let location = locate(
        &root,
        &Flags::read(&now)?,
        options.kubelet_config.as_deref(),
    )?;
    root.check_trusted(location.manifest.parent().expect("a file in a directory"))?;
    let old = Manifest::read(&root.host(&location.manifest))?;
    if let Some(old) = &old {
        verify(&root, old)?;
    }
    let mut view = View {
        root: &root,
        before: old.as_ref(),
        texts: BTreeMap::new(),
    };
    // The flags as they were before an earlier install set them, to set them again; or
    // as they are, when they are left alone.
    let flags = Flags::read(if options.set_kubelet_flags {
        &view
    } else {
        &now
    })?;
    let bin_arg = match (&options.bin_dir, &flags.bin_dir) {
        (Some(path), _) => node_arg(path)?,
        (None, Some(setting)) => setting.value.clone(),
        (None, None) => DEFAULT_BIN_DIR.to_owned(),
    };
    let bin_dir = root.resolve_all(Path::new(&bin_arg))?;
    writable(&root, &bin_dir, "the plugin directory")?;

    let mut report = Report::default();
    let mut planned: Vec<(PathBuf, Content, String)> = Vec::new();
    let exe = std::env::current_exe().context("finding this binary")?;
    let bytes = fs::read(&exe).with_context(|| format!("reading {}", exe.display()))?;
    planned.push((
        bin_dir.join(NAME),
        Content::File(bytes, 0o755),
        BINARY.to_owned(),
    ));
    for name in &options.drop_ins {
        planned.push((
            bin_dir.join(name),
            Content::Symlink(PathBuf::from(NAME)),
            format!("drop-in {name}"),
        ));
    }
    if let Some(text) = configuration(&root, &location, old.as_ref(), options, env, &mut report)? {
        planned.push((
            location.file.clone(),
            Content::File(text.into_bytes(), 0o644),
            CONFIGURATION.to_owned(),
        ));
    }

    let wanted = [
        (flags::BIN_DIR, bin_arg),
        (flags::CONFIG, location.arg.clone()),
    ];
    let missing: Vec<&(&str, String)> = wanted
        .iter()
        .filter(|(name, value)| {
            flags
                .get(name)
                .is_none_or(|s| s.value.trim_end_matches('/') != value)
        })
        .collect();
    for (name, value) in &missing {
        let target = flags.target(&view, name);
        if options.set_kubelet_flags {
            let target = target?;
            let (file, text) = flags::edit(&view, &target, name, value)?;
            view.texts.insert(file, text);
            if target.file() == Path::new(flags::NODEADM_ENVIRONMENT) {
                report.notes.push(format!(
                    "nodeadm writes {} again at every boot: put --{name}={value} in the \
                     NodeConfig's spec.kubelet.flags to keep it",
                    flags::NODEADM_ENVIRONMENT
                ));
            }
        } else {
            let place = match target {
                Ok(target) => target.describe(),
                Err(error) => format!("by hand: {error}"),
            };
            report
                .missing_flags
                .push((format!("--{name}={value}"), place));
        }
    }
    if options.set_kubelet_flags && !missing.is_empty() {
        let edited = Flags::read(&view)?;
        for (name, value) in &wanted {
            if edited.get(name).is_none_or(|s| &s.value != value) {
                bail!(
                    "could not set --{name}={value} in this node's kubelet flags: set it by hand"
                );
            }
        }
        for (path, text) in std::mem::take(&mut view.texts) {
            let mode = [manifest::backup_path(&path), path.clone()]
                .iter()
                .find_map(|p| fs::symlink_metadata(root.host(p)).ok())
                .filter(fs::Metadata::is_file)
                .map_or(0o644, |m| m.mode() & 0o7777);
            planned.push((
                path,
                Content::File(text.into_bytes(), mode),
                FLAGS.to_owned(),
            ));
        }
    }

    let ops = plan(
        &root,
        old.as_ref(),
        &location.manifest,
        planned,
        !options.set_kubelet_flags,
    )?;
    report.restart = ops.iter().any(|op| match op {
        Op::Put { what, .. } => restarts(what),
        Op::Undo(entry) => restarts(&entry.what),
        _ => false,
    });
    execute(
        &root,
        ops,
        old,
        &location.manifest,
        options.dry_run,
        &mut report,
    )?;
    Ok(report)
}

/// The kubelet's configuration to write at `location.file`, or `None` when the node's own
/// is kept (it runs a drop-in name asked for); fails when the node's own would be replaced.
fn configuration(
    root: &Root,
    location: &Location,
    old: Option<&Manifest>,
    options: &Options,
    env: &Environment,
    report: &mut Report,
) -> anyhow::Result<Option<String>> {
    let host = root.host(&location.file);
    let ours = old.is_some_and(|m| m.entry(&location.file).is_some());
    if !ours && !kubelet_config::replaceable(&host)? {
        let names = kubelet_config::provider_names(&root.host(&root.resolve_all(&location.file)?));
        if let Some(name) = options.drop_ins.iter().find(|n| names.contains(n)) {
            report.notes.push(format!(
                "kept {}: its provider {name} runs this binary under that name",
                location.file.display()
            ));
            return Ok(None);
        }
        bail!(
            "{} is the node's own credential provider configuration (providers: {}), which \
             install does not replace: install under one of those names with --drop-in NAME, \
             or give --kubelet-config a file or directory of your own",
            location.file.display(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    let rules = options
        .rules
        .as_deref()
        .map(|rules| -> anyhow::Result<(PathBuf, PathBuf)> {
            let arg = PathBuf::from(node_arg(rules)?);
            Ok((root.host(&root.resolve_all(&arg)?), arg))
        })
        .transpose()?;
    let text = kubelet_config::configuration_as(
        rules.as_ref().map(|(host, _)| host.as_path()),
        rules.as_ref().map(|(_, arg)| arg.as_path()),
        NAME,
        options.service_account_tokens,
        env,
    )?;
    if location.directory {
        let dir = host.parent().expect("a file in a directory");
        if dir.is_dir() {
            links_stay_inside(root, location.file.parent().expect("a directory"))?;
            kubelet_config::judge_in_directory(dir, &host, &text)?;
        }
    }
    Ok(Some(text))
}

/// Fails when a symbolic link in the node directory `dir` (resolved) leads out of the
/// root, which reading the directory's files as the kubelet does would follow.
fn links_stay_inside(root: &Root, dir: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(root.host(dir)).with_context(|| dir.display().to_string())? {
        let name = entry
            .with_context(|| dir.display().to_string())?
            .file_name();
        let node = dir.join(&name);
        let host = root.host(&node);
        if !fs::symlink_metadata(&host).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        let inside = root.host(&root.resolve_all(&node)?);
        if fs::canonicalize(&host).is_ok_and(|followed| followed != inside) {
            bail!(
                "{} is a symbolic link out of the node's root: not reading it",
                node.display()
            );
        }
    }
    Ok(())
}

/// Fails unless the node directory `dir` (resolved), or its nearest existing ancestor for
/// one to be created, can be trusted and written to.
fn writable(root: &Root, dir: &Path, what: &str) -> anyhow::Result<()> {
    root.check_trusted(dir)?;
    let existing = dir
        .ancestors()
        .find(|d| fs::symlink_metadata(root.host(d)).is_ok())
        .unwrap_or(Path::new("/"));
    let host = CString::new(root.host(existing).as_os_str().as_bytes())
        .context("a path with a NUL byte")?;
    // SAFETY: `host` is a NUL-terminated path; faccessat reads it and nothing else.
    let result =
        unsafe { libc::faccessat(libc::AT_FDCWD, host.as_ptr(), libc::W_OK, libc::AT_EACCESS) };
    if result != 0 {
        let error = std::io::Error::last_os_error();
        if existing == dir {
            bail!(
                "{what} {} is not writable on this node ({error})",
                dir.display()
            );
        }
        bail!(
            "{what} {} cannot be created: {} is not writable on this node ({error})",
            dir.display(),
            existing.display()
        );
    }
    Ok(())
}

/// The changes that turn the node into `planned`, from what an earlier install (`old`)
/// left (the kubelet flags it set kept as they are with `keep_flags`, else undone when not
/// planned again); checks every directory written to, and that no backup would be
/// overwritten.
fn plan(
    root: &Root,
    old: Option<&Manifest>,
    manifest_path: &Path,
    planned: Vec<(PathBuf, Content, String)>,
    keep_flags: bool,
) -> anyhow::Result<Vec<Op>> {
    let mut ops = Vec::new();
    let mut dirs: Vec<&Path> = planned
        .iter()
        .filter_map(|(path, _, _)| path.parent())
        .collect();
    dirs.push(manifest_path.parent().expect("a file in a directory"));
    let mut created: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        writable(root, dir, "the directory")?;
        let missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|d| fs::symlink_metadata(root.host(d)).is_err())
            .collect();
        for d in missing.into_iter().rev() {
            if !created.iter().any(|c| c == d) {
                created.push(d.to_owned());
                ops.push(Op::CreateDir(d.to_owned()));
            }
        }
    }
    for (path, content, what) in planned {
        let host = root.host(&path);
        let entry = old.and_then(|m| m.entry(&path)).cloned();
        let current = manifest::fingerprint(&host)?;
        let wanted = content.fingerprint();
        if current.as_deref() == Some(wanted.as_str()) {
            ops.push(Op::Unchanged(entry, path, what));
            continue;
        }
        let (backup, make_backup) = match (&entry, &current) {
            (Some(entry), _) => (entry.backup.clone(), false),
            (None, None) => (None, false),
            (None, Some(fingerprint)) => {
                let backup = root.host(&manifest::backup_path(&path));
                if fs::symlink_metadata(&backup).is_ok() {
                    bail!(
                        "{} exists, and install did not make it: restore or remove it first",
                        manifest::backup_path(&path).display()
                    );
                }
                (Some(fingerprint.clone()), true)
            }
        };
        ops.push(Op::Put {
            path,
            content,
            what,
            backup,
            make_backup,
        });
    }
    if let Some(old) = old {
        for entry in old.entries.iter().rev() {
            let kept = ops.iter().any(|op| match op {
                Op::Put { path, .. } | Op::Unchanged(_, path, _) => *path == entry.path,
                _ => false,
            });
            if kept || entry.wrote == DIRECTORY {
                continue;
            }
            if keep_flags && entry.what == FLAGS {
                let (path, what) = (entry.path.clone(), entry.what.clone());
                ops.push(Op::Unchanged(Some(entry.clone()), path, what));
            } else {
                ops.push(Op::Undo(entry.clone()));
            }
        }
    }
    Ok(ops)
}

/// Does `ops` (or, with `dry_run`, only reports them), then writes the manifest of what
/// install wrote; after a failure, the manifest of what was done so far.
fn execute(
    root: &Root,
    ops: Vec<Op>,
    old: Option<Manifest>,
    manifest_path: &Path,
    dry_run: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (mut entries, old_files): (Vec<Entry>, Vec<Entry>) = old
        .map(|m| m.entries.into_iter().partition(|e| e.wrote == DIRECTORY))
        .unwrap_or_default();
    let mut files = Vec::new();
    let mut result = Ok(());
    for op in ops {
        let step = match op {
            Op::CreateDir(path) => {
                if !dry_run {
                    result = create_dir(root, &path);
                }
                entries.push(Entry {
                    path: path.clone(),
                    what: "directory".to_owned(),
                    wrote: DIRECTORY.to_owned(),
                    backup: None,
                });
                Step {
                    action: Action::Create,
                    path,
                    what: "directory".to_owned(),
                }
            }
            Op::Put {
                path,
                content,
                what,
                backup,
                make_backup,
            } => {
                if !dry_run {
                    result = put(root, &path, &content, make_backup);
                }
                files.push(Entry {
                    path: path.clone(),
                    what: what.clone(),
                    wrote: content.fingerprint(),
                    backup: backup.clone(),
                });
                let action = if make_backup {
                    Action::Replace
                } else {
                    Action::Write
                };
                Step { action, path, what }
            }
            Op::Unchanged(entry, path, what) => {
                files.extend(entry);
                Step {
                    action: Action::Unchanged,
                    path,
                    what,
                }
            }
            Op::Undo(entry) => {
                if !dry_run {
                    result = undo(root, &entry);
                }
                undo_step(entry)
            }
        };
        if result.is_err() {
            break;
        }
        report.steps.push(step);
    }
    if dry_run {
        return result;
    }
    if result.is_err() {
        // What was done, and what an earlier install wrote that was not reached.
        let done = |path: &Path| report.steps.iter().any(|s| s.path == path);
        files.retain(|entry| done(&entry.path));
        files.extend(old_files.into_iter().filter(|entry| !done(&entry.path)));
    }
    entries.extend(files);
    let manifest = Manifest { entries };
    let host = root.host(manifest_path);
    let temporary = host.with_file_name(format!(
        ".{}.{}.tmp",
        manifest::FILE_NAME,
        std::process::id()
    ));
    let written =
        icp_core::io::write_atomically(&host, &temporary, manifest.text().as_bytes(), 0o644)
            .with_context(|| format!("writing {}", manifest_path.display()));
    result.and(written)
}

/// The step that undoes `entry`.
fn undo_step(entry: Entry) -> Step {
    let action = if entry.backup.is_some() {
        Action::Restore
    } else {
        Action::Remove
    };
    Step {
        action,
        path: entry.path,
        what: entry.what,
    }
}

fn create_dir(root: &Root, path: &Path) -> anyhow::Result<()> {
    let host = root.host(path);
    fs::create_dir(&host)
        .and_then(|()| fs::set_permissions(&host, fs::Permissions::from_mode(0o755)))
        .with_context(|| format!("creating {}", path.display()))
}

/// Writes `content` at node path `path` atomically, first keeping what is there as its
/// backup (a hard link) when `make_backup`.
fn put(root: &Root, path: &Path, content: &Content, make_backup: bool) -> anyhow::Result<()> {
    let host = root.host(path);
    let context = || format!("writing {}", path.display());
    let backup = root.host(&manifest::backup_path(path));
    if make_backup {
        fs::hard_link(&host, &backup).with_context(context)?;
    }
    let result = write(&host, content).with_context(context);
    if result.is_err() && make_backup {
        let _ = fs::remove_file(&backup);
    }
    result
}

/// Writes `content` at `host` atomically: a file with its mode, or a symbolic link.
fn write(host: &Path, content: &Content) -> std::io::Result<()> {
    let name = host.file_name().expect("a file name").to_string_lossy();
    let temporary = host.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    match content {
        Content::File(bytes, mode) => {
            icp_core::io::write_atomically(host, &temporary, bytes, *mode)?;
            // The mode the file was created with went through the umask.
            if fs::metadata(host)?.mode() & 0o7777 != *mode {
                fs::set_permissions(host, fs::Permissions::from_mode(*mode))?;
            }
            Ok(())
        }
        Content::Symlink(target) => {
            let result = std::os::unix::fs::symlink(target, &temporary)
                .and_then(|()| fs::rename(&temporary, host));
            if result.is_err() {
                let _ = fs::remove_file(&temporary);
            }
            result
        }
    }
}

/// Puts back the backup of `entry`'s path, or removes what install wrote there (a
/// directory only when empty).
fn undo(root: &Root, entry: &Entry) -> anyhow::Result<()> {
    let host = root.host(&entry.path);
    let context = || format!("uninstalling {}", entry.path.display());
    if entry.wrote == DIRECTORY {
        return match fs::remove_dir(&host) {
            Err(error)
                if error.kind() != std::io::ErrorKind::DirectoryNotEmpty
                    && !root::is_absent(&error) =>
            {
                Err(error).with_context(context)
            }
            _ => Ok(()),
        };
    }
    match &entry.backup {
        Some(_) => fs::rename(root.host(&manifest::backup_path(&entry.path)), &host),
        None => fs::remove_file(&host),
    }
    .with_context(context)
}

/// Fails, changing nothing, unless every path in `manifest` holds what install wrote and
/// every backup what it kept.
fn verify(root: &Root, manifest: &Manifest) -> anyhow::Result<()> {
    for entry in &manifest.entries {
        root.check_trusted(entry.path.parent().unwrap_or(Path::new("/")))?;
        if entry.wrote == DIRECTORY {
            continue;
        }
        if manifest::fingerprint(&root.host(&entry.path))?.as_deref() != Some(&entry.wrote) {
            bail!(
                "{} is not what install wrote there (it changed since): leaving this \
                 installation as it is",
                entry.path.display()
            );
        }
        let backup = manifest::backup_path(&entry.path);
        if let Some(kept) = &entry.backup
            && manifest::fingerprint(&root.host(&backup))?.as_ref() != Some(kept)
        {
            bail!(
                "{} is not the backup install kept (it changed since): leaving this \
                 installation as it is",
                backup.display()
            );
        }
    }
    Ok(())
}

/// What `uninstall` is asked to do.
#[derive(Debug, Default)]
pub struct UninstallOptions {
    /// The directory taken as the node's `/`.
    pub root: PathBuf,
    /// The kubelet's configuration `install` wrote (node path), when the kubelet's flags
    /// do not name it.
    pub kubelet_config: Option<PathBuf>,
    /// Say what would be done, and do nothing.
    pub dry_run: bool,
}

/// `uninstall`: puts back what `install` replaced and removes what it wrote, or fails,
/// changing nothing, when any of it changed since. Without a manifest there is nothing to
/// do, which is no error: uninstalling twice is uninstalling once.
pub fn uninstall(options: &UninstallOptions) -> anyhow::Result<Report> {
    let root = Root::new(&options.root)?;
    let now = View {
        root: &root,
        before: None,
        texts: BTreeMap::new(),
    };
    let location = locate(
        &root,
        &Flags::read(&now)?,
        options.kubelet_config.as_deref(),
    )?;
    root.check_trusted(location.manifest.parent().expect("a file in a directory"))?;
    let mut report = Report::default();
    let Some(manifest) = Manifest::read(&root.host(&location.manifest))? else {
        // Done already (a DaemonSet's pod run again), or never installed here.
        report.notes.push(format!(
            "nothing to uninstall: no {} (install keeps it beside the kubelet's credential \
             provider configuration; give uninstall the --root and --kubelet-config install had)",
            location.manifest.display()
        ));
        return Ok(report);
    };
    verify(&root, &manifest)?;
    let (dirs, files): (Vec<&Entry>, Vec<&Entry>) =
        manifest.entries.iter().partition(|e| e.wrote == DIRECTORY);
    for entry in files.iter().rev() {
        if !options.dry_run {
            undo(&root, entry)?;
        }
        report.restart |= restarts(&entry.what);
        report.steps.push(undo_step((*entry).clone()));
    }
    if !options.dry_run {
        fs::remove_file(root.host(&location.manifest))
            .with_context(|| format!("removing {}", location.manifest.display()))?;
    }
    report.steps.push(Step {
        action: Action::Remove,
        path: location.manifest.clone(),
        what: "the install manifest".to_owned(),
    });
    for entry in dirs.iter().rev() {
        if !options.dry_run {
            undo(&root, entry)?;
        }
        if options.dry_run || fs::symlink_metadata(root.host(&entry.path)).is_err() {
            report.steps.push(undo_step((*entry).clone()));
        } else {
            report
                .notes
                .push(format!("kept {}: not empty", entry.path.display()));
        }
    }
    Ok(report)
}
