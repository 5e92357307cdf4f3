//! The kubelet's two credential provider flags as a node sets them, read from the files
//! the kubelet's service takes its command line from, and set there on request.
//!
//! Read, in the order the kubelet's command line has them (the last one wins): the systemd
//! drop-ins of `kubelet.service` (`Environment=`, `ExecStart=`), kubeadm's
//! `/var/lib/kubelet/kubeadm-flags.env`, nodeadm's `/etc/eks/kubelet/environment` (EKS on
//! Amazon Linux 2023: its `/etc/kubernetes/kubelet/config.json` is a KubeletConfiguration,
//! which has no field for these), `/etc/default/kubelet` (kubeadm's Debian packages, AKS,
//! GKE) and `/etc/sysconfig/kubelet` (kubeadm's RPM packages); on k3s and RKE2, their
//! defaults, then the keys of the same names and `kubelet-arg` in
//! `/etc/rancher/{k3s,rke2}/config.yaml`.

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::Value;

use super::View;

/// The kubelet's flag naming the plugin directory.
pub const BIN_DIR: &str = "image-credential-provider-bin-dir";
/// The kubelet's flag naming its credential provider configuration.
pub const CONFIG: &str = "image-credential-provider-config";
/// nodeadm's file of kubelet flags, which it writes again at every boot.
pub const NODEADM_ENVIRONMENT: &str = "/etc/eks/kubelet/environment";

const SYSTEMD_DIRS: [&str; 3] = [
    "/usr/lib/systemd/system/kubelet.service.d",
    "/lib/systemd/system/kubelet.service.d",
    "/etc/systemd/system/kubelet.service.d",
];
const ENV_FILES: [&str; 4] = [
    "/var/lib/kubelet/kubeadm-flags.env",
    NODEADM_ENVIRONMENT,
    "/etc/default/kubelet",
    "/etc/sysconfig/kubelet",
];
/// The files whose `KUBELET_EXTRA_ARGS` kubeadm's kubelet service appends.
const EXTRA_ARGS_FILES: [&str; 2] = ["/etc/default/kubelet", "/etc/sysconfig/kubelet"];
const EXTRA_ARGS: &str = "KUBELET_EXTRA_ARGS";
/// k3s and RKE2: their configuration directory, and the defaults of the two flags.
const RANCHER: [(&str, &str); 2] = [("k3s", "/etc/rancher/k3s"), ("rke2", "/etc/rancher/rke2")];
const RANCHER_BIN_DIR: &str = "/var/lib/rancher/credentialprovider/bin";
const RANCHER_CONFIG: &str = "/var/lib/rancher/credentialprovider/config.yaml";
const KUBELET_ARG: &str = "kubelet-arg";

/// One flag's value and where it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The value.
    pub value: String,
    /// The file that sets it; `None` for k3s's and RKE2's default.
    pub file: Option<PathBuf>,
}

/// The credential provider flags a node's kubelet runs with.
#[derive(Debug, Default)]
pub struct Flags {
    /// `--image-credential-provider-bin-dir`.
    pub bin_dir: Option<Setting>,
    /// `--image-credential-provider-config`.
    pub config: Option<Setting>,
    /// k3s or RKE2: the name and its `config.yaml`.
    pub rancher: Option<(&'static str, PathBuf)>,
    /// The files the kubelet's systemd drop-ins read with `EnvironmentFile=`.
    environment_files: Vec<PathBuf>,
}

/// Where a flag is set, or would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Its value `old` in `file` is replaced.
    Replace { file: PathBuf, old: String },
    /// It is added to `KUBELET_EXTRA_ARGS` in `file`.
    ExtraArgs { file: PathBuf },
    /// It is added to `kubelet-arg` in k3s's or RKE2's `file`.
    KubeletArg { file: PathBuf },
}

impl Target {
    /// The file.
    pub fn file(&self) -> &Path {
        match self {
            Target::Replace { file, .. }
            | Target::ExtraArgs { file }
            | Target::KubeletArg { file } => file,
        }
    }

    /// Where, in words: `KUBELET_EXTRA_ARGS in /etc/default/kubelet`.
    pub fn describe(&self) -> String {
        match self {
            Target::Replace { file, .. } => format!("{}", file.display()),
            Target::ExtraArgs { file } => format!("{EXTRA_ARGS} in {}", file.display()),
            Target::KubeletArg { file } => format!("{KUBELET_ARG} in {}", file.display()),
        }
    }
}

impl Flags {
    /// The flags the node in `view` sets.
    pub fn read(view: &View) -> anyhow::Result<Flags> {
        let mut flags = Flags::default();
        for dir in SYSTEMD_DIRS {
            for file in view.root.list(Path::new(dir), ".conf")? {
                if let Some(text) = view.read(&file)? {
                    flags.scan(&text, &file);
                }
            }
        }
        for file in ENV_FILES.map(Path::new) {
            if let Some(text) = view.read(file)? {
                flags.scan(&text, file);
            }
        }
        for (name, dir) in RANCHER {
            if !view.is_dir(Path::new(dir))? {
                continue;
            }
            let file = Path::new(dir).join("config.yaml");
            flags.bin_dir = Some(Setting {
                value: RANCHER_BIN_DIR.to_owned(),
                file: None,
            });
            flags.config = Some(Setting {
                value: RANCHER_CONFIG.to_owned(),
                file: None,
            });
            if let Some(text) = view.read(&file)? {
                flags.scan_rancher(&text, &file)?;
            }
            flags.rancher = Some((name, file));
            break;
        }
        Ok(flags)
    }

    /// The setting of flag `name` ([`BIN_DIR`] or [`CONFIG`]).
    pub fn get(&self, name: &str) -> Option<&Setting> {
        if name == BIN_DIR {
            self.bin_dir.as_ref()
        } else {
            self.config.as_ref()
        }
    }

    fn set(&mut self, name: &str, value: &str, file: &Path) {
        let setting = Some(Setting {
            value: value.to_owned(),
            file: Some(file.to_owned()),
        });
        if name == BIN_DIR {
            self.bin_dir = setting;
        } else {
            self.config = setting;
        }
    }

    /// The flags on the command line lines of an environment file or a systemd unit.
    fn scan(&mut self, text: &str, file: &Path) {
        for line in logical_lines(text) {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(path) = line.strip_prefix("EnvironmentFile=") {
                let path = path.trim().trim_start_matches('-');
                self.environment_files.push(PathBuf::from(path));
                continue;
            }
            let tokens: Vec<String> = shell_words(line)
                .iter()
                .flat_map(|word| {
                    strip_assignment(strip_assignment(word))
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect();
            for (i, token) in tokens.iter().enumerate() {
                for name in [BIN_DIR, CONFIG] {
                    let Some(rest) = token.strip_prefix("--").and_then(|t| t.strip_prefix(name))
                    else {
                        continue;
                    };
                    if let Some(value) = rest.strip_prefix('=') {
                        self.set(name, value, file);
                    } else if rest.is_empty()
                        && let Some(value) = tokens.get(i + 1)
                    {
                        self.set(name, value, file);
                    }
                }
            }
        }
    }

    /// The flags in k3s's or RKE2's `config.yaml`.
    fn scan_rancher(&mut self, text: &str, file: &Path) -> anyhow::Result<()> {
        let (document, _) = crate::document::yaml(text)
            .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
        for name in [BIN_DIR, CONFIG] {
            if let Some(Value::String(value)) = document.get(name) {
                self.set(name, value, file);
            }
        }
        let args = match document.get(KUBELET_ARG) {
            Some(Value::String(arg)) => vec![arg.as_str()],
            Some(Value::Array(args)) => args.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for arg in args {
            let arg = arg.trim_start_matches('-');
            for name in [BIN_DIR, CONFIG] {
                if let Some(value) = arg.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                    self.set(name, value, file);
                }
            }
        }
        Ok(())
    }

    /// Where flag `name` is set on this node, or would be added.
    pub fn target(&self, view: &View, name: &str) -> anyhow::Result<Target> {
        if let Some(Setting {
            value,
            file: Some(file),
        }) = self.get(name)
        {
            return Ok(Target::Replace {
                file: file.clone(),
                old: value.clone(),
            });
        }
        if let Some((_, file)) = &self.rancher {
            return Ok(Target::KubeletArg { file: file.clone() });
        }
        for file in EXTRA_ARGS_FILES.map(Path::new) {
            if view.read(file)?.is_some() {
                return Ok(Target::ExtraArgs {
                    file: file.to_owned(),
                });
            }
        }
        match EXTRA_ARGS_FILES
            .map(Path::new)
            .into_iter()
            .find(|file| self.environment_files.iter().any(|f| f == file))
        {
            Some(file) => Ok(Target::ExtraArgs {
                file: file.to_owned(),
            }),
            None => bail!(
                "no file of this node's kubelet service takes extra flags \
                 ({EXTRA_ARGS} in {} or {}, or k3s's or RKE2's config.yaml)",
                EXTRA_ARGS_FILES[0],
                EXTRA_ARGS_FILES[1]
            ),
        }
    }
}

/// The file (resolved node path) that sets flag `name` to `value` at `target`, and its
/// text then, the text read from `view`.
pub fn edit(
    view: &View,
    target: &Target,
    name: &str,
    value: &str,
) -> anyhow::Result<(PathBuf, String)> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || "\"'\\$`#;".contains(c))
    {
        bail!("{value:?} cannot be written in a flags file as it is: set --{name} by hand");
    }
    let file = view.root.resolve(target.file())?;
    let text = view.read(&file)?.unwrap_or_default();
    let edited = match target {
        Target::Replace { old, .. } => {
            let assignment = format!("{name}={old}");
            let Some(at) = text.rfind(&assignment) else {
                bail!(
                    "{} sets {name} otherwise than as {name}=VALUE: set it by hand",
                    file.display()
                );
            };
            format!(
                "{}{name}={value}{}",
                &text[..at],
                &text[at + assignment.len()..]
            )
        }
        Target::ExtraArgs { .. } => {
            add_extra_arg(&text, &format!("--{name}={value}")).ok_or_else(|| {
                anyhow::anyhow!(
                    "{EXTRA_ARGS} in {} is not simple enough to edit: set --{name} by hand",
                    file.display()
                )
            })?
        }
        Target::KubeletArg { .. } => add_kubelet_arg(&text, &format!("{name}={value}"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{KUBELET_ARG} in {} is not a plain list: set {name} by hand",
                    file.display()
                )
            })?,
    };
    Ok((file, edited))
}

/// `text` with `flag` appended to its last `KUBELET_EXTRA_ARGS=` line (a line added when
/// there is none), or `None` when that line's value is not a plain or wholly quoted word
/// list.
fn add_extra_arg(text: &str, flag: &str) -> Option<String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let found = lines.iter().rposition(|line| {
        let line = line.trim_start();
        line.strip_prefix("export ")
            .unwrap_or(line)
            .trim_start()
            .starts_with(&format!("{EXTRA_ARGS}="))
    });
    let Some(index) = found else {
        let mut text = text.to_owned();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{EXTRA_ARGS}=\"{flag}\"\n"));
        return Some(text);
    };
    let line = &lines[index];
    let ending = &line[line.trim_end().len()..];
    let (key, value) = line.trim_end().split_once('=')?;
    let words = match value.as_bytes() {
        [] => String::new(),
        [quote @ (b'"' | b'\''), inner @ .., last] if last == quote => {
            let inner = std::str::from_utf8(inner).ok()?;
            if inner.contains(['"', '\'', '\\']) {
                return None;
            }
            inner.trim_end().to_owned()
        }
        _ if !value.contains(['"', '\'', '\\', '$', '`', ' ', '\t']) => value.to_owned(),
        _ => return None,
    };
    let separator = if words.is_empty() { "" } else { " " };
    lines[index] = format!("{key}=\"{words}{separator}{flag}\"{ending}");
    Some(lines.concat())
}

/// `text` (k3s's or RKE2's `config.yaml`) with `arg` added to its `kubelet-arg` block list
/// (the key added when there is none), or `None` when `kubelet-arg` is written otherwise.
fn add_kubelet_arg(text: &str, arg: &str) -> Option<String> {
    let item = Value::from(arg).to_string();
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let key = format!("{KUBELET_ARG}:");
    let Some(index) = lines.iter().position(|line| line.starts_with(&key)) else {
        let mut text = text.to_owned();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{key}\n- {item}\n"));
        return Some(text);
    };
    let rest = lines[index][key.len()..].trim();
    if !rest.is_empty() && !rest.starts_with('#') {
        return None;
    }
    let (mut last, mut indent) = (index, String::new());
    for (i, line) in lines.iter().enumerate().skip(index + 1) {
        let trimmed = line.trim_start();
        if trimmed.starts_with("- ") || trimmed.trim_end() == "-" {
            if last == index {
                indent = line[..line.len() - trimmed.len()].to_owned();
            }
            last = i;
        } else if !(trimmed.is_empty() || trimmed.starts_with('#')) {
            break;
        }
    }
    if !lines[last].ends_with('\n') {
        lines[last].push('\n');
    }
    lines.insert(last + 1, format!("{indent}- {item}\n"));
    Some(lines.concat())
}

/// The lines of `text`, a line ending in `\` joined with the next.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// `word` without a leading `NAME=` (a shell variable or a systemd setting name).
fn strip_assignment(word: &str) -> &str {
    match word.split_once('=') {
        Some((name, rest))
            if !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            rest
        }
        _ => word,
    }
}

/// `line` split into words as a shell (and systemd) splits them: at unquoted white space,
/// quotes removed, `\` escaping the next character outside single quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_a_shell_splits_them() {
        assert_eq!(
            shell_words(r#"A="--x=1 --y=2" 'b c' d\ e"#),
            ["A=--x=1 --y=2", "b c", "d e"]
        );
    }

    #[test]
    fn extra_args_are_appended_inside_the_quotes_or_on_a_new_line() {
        let add = |text: &str| add_extra_arg(text, "--f=v");
        assert_eq!(
            add("KUBELET_EXTRA_ARGS=\n").unwrap(),
            "KUBELET_EXTRA_ARGS=\"--f=v\"\n"
        );
        assert_eq!(
            add("KUBELET_EXTRA_ARGS=\"--a=b\"\n").unwrap(),
            "KUBELET_EXTRA_ARGS=\"--a=b --f=v\"\n"
        );
        assert_eq!(add("X=1").unwrap(), "X=1\nKUBELET_EXTRA_ARGS=\"--f=v\"\n");
        assert_eq!(add("KUBELET_EXTRA_ARGS=$OTHER\n"), None);
    }

    #[test]
    fn kubelet_args_are_added_to_the_block_list() {
        let add = |text: &str| add_kubelet_arg(text, "f=v");
        assert_eq!(add("").unwrap(), "kubelet-arg:\n- \"f=v\"\n");
        assert_eq!(
            add("kubelet-arg:\n  - \"a=b\"\nnode-label: []\n").unwrap(),
            "kubelet-arg:\n  - \"a=b\"\n  - \"f=v\"\nnode-label: []\n"
        );
        assert_eq!(add("kubelet-arg: [\"a=b\"]\n"), None);
    }
}
