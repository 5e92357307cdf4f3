//! The command line: plugin mode (no subcommand), `get`, `check-config`,
//! `kubelet-config`, `cache`, `install` and `uninstall`, one module each, or a drop-in mode when the binary is run
//! under an official provider's name (`crate::dropin`, which answers in plugin mode).
//! Each command prints its results and returns its [`Outcome`]; `main` alone ends the
//! process with it.

mod cache;
mod check_config;
mod default_rules;
mod explain;
mod fast;
mod get;
mod install;
mod kubelet_config;
pub(crate) mod outcome;
pub(crate) mod plugin;
mod uninstall;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use icp_core::Environment;

pub use outcome::Outcome;

use crate::recorders::Recorders;
use crate::rules::{self, Rules};
use crate::{dropin, logging};

/// A kubelet image credential provider for ECR, ACR, GCR / Artifact Registry and docker
/// config files. With no subcommand (plugin mode, as the kubelet runs it), reads a
/// CredentialProviderRequest on stdin and writes the CredentialProviderResponse on stdout.
#[derive(Parser)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[command(
    name = "image-credential-provider",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ICP_VERSION_DETAIL"), ")"),
    after_help = AFTER_HELP
)]
struct Cli {
    /// Rules file (YAML or JSON); without it, the embedded default rules (default-rules
    /// prints them). check-config needs one, except with --kubelet-config.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Logs on stderr: -v which rule and backend served and for how long, -vv details.
    /// Never a secret.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Plugin mode's options (also `get`'s).
    #[command(flatten)]
    serving: Serving,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The sections of `--help` after the options: the drop-in names and the environment.
const AFTER_HELP: &str = "\
Drop-in mode:
  Run under an official provider's name (a link or copy named ecr-credential-provider,
  acr-credential-provider or auth-provider-gcp, as `install --drop-in NAME` makes), the
  binary takes that provider's command line, flags and environment instead, so that a
  kubelet configuration written for it keeps working: see `NAME --help`.

Environment:
  IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR    the token cache directory (--cache-dir wins)
  IMAGE_CREDENTIAL_PROVIDER_AUDIT_LOG    the audit log (--audit-log wins)
  IMAGE_CREDENTIAL_PROVIDER_METRICS_DIR  the metrics directory (--metrics-dir wins)
  IMAGE_CREDENTIAL_PROVIDER_RESOLVE      host:port:address,...: connect to address for
                                         host:port, as curl --resolve (tests, debugging)
  IMAGE_CREDENTIAL_PROVIDER_AZURE_IMDS_ENDPOINT
                                         the Azure instance metadata service's URL (tests)
  The backends also read their clouds' usual variables (AWS_*, AZURE_*,
  GOOGLE_APPLICATION_CREDENTIALS, GCE_METADATA_HOST) and HTTPS_PROXY, NO_PROXY.";

/// How requests are answered: the token cache, the audit log, the metrics and the
/// audience served. Plugin mode's options (top level, where the kubelet passes them),
/// and `get`'s.
#[derive(clap::Args, Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[command(next_help_heading = "Answering (plugin mode and get)")]
struct Serving {
    /// The token cache directory shared by plugin processes (default: the environment's
    /// IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR, else the rules file's cache.dir, else
    /// /var/cache/image-credential-provider for root, else
    /// $XDG_CACHE_HOME/image-credential-provider).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Fetch every token, and neither read nor write the token cache.
    #[arg(long)]
    no_cache: bool,
    /// Append one JSON line per answer to FILE, never a secret (default: the environment's
    /// IMAGE_CREDENTIAL_PROVIDER_AUDIT_LOG, else the rules file's audit.path).
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// Keep request counts and upstream latencies in DIR/image_credential_provider.prom for
    /// node_exporter's textfile collector (default: the environment's
    /// IMAGE_CREDENTIAL_PROVIDER_METRICS_DIR, else the rules file's metrics.dir).
    #[arg(long, value_name = "DIR")]
    metrics_dir: Option<PathBuf>,
    /// Serve only the rules whose backends take pods' tokens of AUDIENCE (and those that
    /// take none): one instance per audience, as kubelet-config --service-account-tokens
    /// writes them when the rules need several.
    #[arg(long, value_name = "AUDIENCE")]
    audience: Option<String>,
}

impl Serving {
    /// These options, each one not given taken from `top` (given before the command).
    fn or(self, top: Serving) -> Serving {
        Serving {
            cache_dir: self.cache_dir.or(top.cache_dir),
            no_cache: self.no_cache || top.no_cache,
            audit_log: self.audit_log.or(top.audit_log),
            metrics_dir: self.metrics_dir.or(top.metrics_dir),
            audience: self.audience.or(top.audience),
        }
    }

    /// The first option given, as the command line spells it; `None` when none is.
    fn first_given(&self) -> Option<&'static str> {
        [
            (self.cache_dir.is_some(), "--cache-dir"),
            (self.no_cache, "--no-cache"),
            (self.audit_log.is_some(), "--audit-log"),
            (self.metrics_dir.is_some(), "--metrics-dir"),
            (self.audience.is_some(), "--audience"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

#[derive(Subcommand)]
#[cfg_attr(test, derive(Debug, PartialEq))]
enum Command {
    /// Print the response the plugin gives for IMAGE, normalised as the kubelet does
    /// (tag and digest dropped, Docker Hub names expanded).
    Get {
        /// The image, as in a pod spec: `nginx:1.27`, `registry.example:5000/team/app`.
        image: String,
        /// The protocol version to answer in.
        #[arg(long, default_value = "v1", value_parser = ["v1", "v1beta1", "v1alpha1"])]
        api_version: String,
        #[command(flatten)]
        serving: Serving,
    },
    /// Check a rules file (--config FILE) and list every problem in it; or judge a kubelet
    /// CredentialProviderConfig (--kubelet-config FILE|DIR) as the kubelet does, with the
    /// rules of --config when given.
    CheckConfig {
        /// A kubelet CredentialProviderConfig file, or a directory of them (Kubernetes 1.34+).
        #[arg(long, value_name = "FILE|DIR")]
        kubelet_config: Option<PathBuf>,
        /// With --kubelet-config and --config: the provider that runs this binary (default:
        /// the binary's file name).
        #[arg(long, requires = "kubelet_config")]
        name: Option<String>,
    },
    /// Print the kubelet's CredentialProviderConfig that installs this binary for the rules
    /// in force, or write it into a kubelet config directory.
    KubeletConfig {
        /// The provider name: this binary's file name in the kubelet's bin dir (default: the
        /// binary's file name).
        #[arg(long)]
        name: Option<String>,
        /// Write DIR/NAME.yaml instead of printing (a directory given to the kubelet's
        /// --image-credential-provider-config, Kubernetes 1.34+).
        #[arg(long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Ask the kubelet for pods' service account tokens (tokenAttributes), so that
        /// the rules' cloud backends pull as each pod's own identity (Kubernetes 1.34+).
        /// The nodes then need RBAC to request tokens for each audience written (a
        /// ClusterRole with verb request-serviceaccounts-token-audience on the audience as
        /// resource, bound to group system:nodes), else the kubelet pulls without
        /// credentials: docs/per-pod-identity.md has the manifests.
        #[arg(long)]
        service_account_tokens: bool,
    },
    /// Copy this binary into the node's kubelet plugin directory, link the drop-in names
    /// asked for, write the kubelet's credential provider configuration (for the rules of
    /// --config, a path on the node), and print the kubelet flags still missing. Never
    /// restarts the kubelet; `uninstall` takes it all out again.
    Install {
        /// The directory to take as the node's `/` (a DaemonSet's hostPath mount of `/`);
        /// no symbolic link is followed out of it.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// The plugin directory (default: the kubelet's --image-credential-provider-bin-dir,
        /// else /usr/local/libexec/kubernetes/credential-providers).
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// The kubelet's credential provider configuration, a file or a directory (1.34+)
        /// (default: the kubelet's --image-credential-provider-config, else
        /// /etc/kubernetes/credential-providers.yaml).
        #[arg(long, value_name = "PATH")]
        kubelet_config: Option<PathBuf>,
        /// Also install this binary under an official provider's name, replacing that
        /// provider (ecr-credential-provider, acr-credential-provider, auth-provider-gcp);
        /// repeatable.
        #[arg(long, value_name = "NAME")]
        drop_in: Vec<String>,
        /// Ask the kubelet for pods' service account tokens (see kubelet-config).
        #[arg(long)]
        service_account_tokens: bool,
        /// Set the kubelet flags that are missing, in the file the node's kubelet reads
        /// them from (the file kept as a backup that uninstall puts back).
        #[arg(long)]
        set_kubelet_flags: bool,
        /// Print what would be done, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take out what `install` wrote and put back what it replaced; refuses, changing
    /// nothing, when any of it changed since.
    Uninstall {
        /// The directory to take as the node's `/`, as for install.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// The kubelet's credential provider configuration install wrote, when the
        /// kubelet's flags do not name it (as for install).
        #[arg(long, value_name = "PATH")]
        kubelet_config: Option<PathBuf>,
        /// Print what would be done, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Explain, step by step, why a pull of IMAGE gets credentials from this plugin or
    /// not: the kubelet's side (--kubelet-config, the pod), then the rule, backend,
    /// identity and token cache. Nothing is sent anywhere without --live.
    Explain(explain::Args),
    /// Show or empty the token cache.
    #[command(subcommand_required = true, arg_required_else_help = false)]
    Cache {
        /// The token cache directory (default: as in plugin mode: the environment's
        /// IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR, else the rules file's cache.dir, else the
        /// default for the user). Never created here.
        #[arg(long, global = true, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Print the embedded default rules as a commented rules file to start from (the rules
    /// in force without --config).
    DefaultRules,
}

#[derive(Subcommand)]
#[cfg_attr(test, derive(Debug, PartialEq))]
enum CacheAction {
    /// List cached tokens: key, backend, scope, identity, expiry; never the token.
    List,
    /// Remove every cached token.
    Clear,
}

/// What every command is run with: the global options and the environment.
struct Globals {
    /// `--config`.
    config: Option<PathBuf>,
    /// `--cache-dir`.
    cache_dir: Option<PathBuf>,
    /// `--no-cache`.
    no_cache: bool,
    /// `--audit-log`.
    audit_log: Option<PathBuf>,
    /// `--metrics-dir`.
    metrics_dir: Option<PathBuf>,
    /// `--audience`.
    audience: Option<String>,
    /// The environment backends and the cache read: the process's.
    env: Environment,
}

impl Globals {
    /// The rules in force: `--config`'s, or the embedded default.
    fn rules(&self) -> Result<Rules, rules::Problems> {
        let mut rules = rules::load(self.config.as_deref(), &self.env)?;
        rules.audience.clone_from(&self.audience);
        Ok(rules)
    }

    /// The token cache directory in force, or `None` when caching is off.
    fn cache_dir(&self, rules: &Rules) -> Option<PathBuf> {
        crate::cache::dir(
            &rules.cache,
            self.cache_dir.as_deref(),
            self.no_cache,
            &self.env,
        )
    }

    /// The audit log and metrics in force, for answers with the token cache at
    /// `cache_dir`.
    fn recorders(&self, rules: &Rules, cache_dir: Option<&Path>) -> Recorders {
        recorders(
            rules,
            self.audit_log.as_deref(),
            self.metrics_dir.as_deref(),
            cache_dir,
            &self.env,
        )
    }
}

/// The audit log and metrics in force: the flags', else the environment's, else the rules
/// file's; their state kept beside the token cache at `cache_dir`.
fn recorders(
    rules: &Rules,
    audit_log: Option<&Path>,
    metrics_dir: Option<&Path>,
    cache_dir: Option<&Path>,
    env: &Environment,
) -> Recorders {
    Recorders::new(
        crate::audit::path(&rules.audit, audit_log, env).as_deref(),
        crate::metrics::dir(&rules.metrics, metrics_dir, env).as_deref(),
        cache_dir,
    )
}

/// Runs the command line `args` (the program's name first), with the process's
/// environment.
pub fn run(args: Vec<OsString>) -> Outcome {
    let env = Environment::process();
    if let Some(outcome) = dropin::dispatch(&args, &env) {
        return outcome;
    }
    let program = || program_name(&args);
    let parsed = fast::parse(&args).map_or_else(|| Cli::try_parse_from(&args), Ok);
    let mut cli = match parsed {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    logging::init(cli.verbose);
    let serving = match serving(cli.serving, cli.command.as_mut()) {
        Ok(serving) => serving,
        Err(message) => return Outcome::usage(&message, "--help"),
    };
    if cli.command.is_none() && stdin_is_terminal() && args.len() <= 1 {
        return Outcome::usage(NO_REQUEST, "--help");
    }
    let globals = Globals {
        config: cli.config,
        cache_dir: serving.cache_dir,
        no_cache: serving.no_cache,
        audit_log: serving.audit_log,
        metrics_dir: serving.metrics_dir,
        audience: serving.audience,
        env,
    };
    match cli.command {
        None => plugin::run(&globals),
        Some(Command::Get {
            image, api_version, ..
        }) => get::run(&globals, &image, &api_version),
        Some(Command::CheckConfig {
            kubelet_config: Some(path),
            name,
        }) => check_config::kubelet(&globals, &path, &name.unwrap_or_else(program)),
        Some(Command::CheckConfig { .. }) => check_config::rules(&globals),
        Some(Command::KubeletConfig {
            name,
            output,
            service_account_tokens,
        }) => kubelet_config::run(
            &globals,
            &name.unwrap_or_else(program),
            output.as_deref(),
            service_account_tokens,
        ),
        Some(Command::Explain(args)) => explain::run(&globals, args, &program()),
        Some(Command::Cache { action, .. }) => cache::run(&globals, &action),
        Some(Command::DefaultRules) => default_rules::run(),
        Some(Command::Install {
            root,
            bin_dir,
            kubelet_config,
            drop_in,
            service_account_tokens,
            set_kubelet_flags,
            dry_run,
        }) => install::run(
            &globals,
            crate::install::Options {
                root,
                bin_dir,
                rules: None,
                kubelet_config,
                drop_ins: drop_in,
                service_account_tokens,
                set_kubelet_flags,
                dry_run,
            },
        ),
        Some(Command::Uninstall {
            root,
            kubelet_config,
            dry_run,
        }) => uninstall::run(&crate::install::UninstallOptions {
            root,
            kubelet_config,
            dry_run,
        }),
    }
}

/// The line plugin mode answers with when run from a terminal with no arguments, rather
/// than wait for a request no one types.
const NO_REQUEST: &str = "with no subcommand this reads a CredentialProviderRequest (JSON) on stdin, \
     as the kubelet sends it, and stdin is a terminal";

/// Whether stdin is a terminal.
fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only reads the state of descriptor 0.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// The options of answering requests that `command` runs with: those given before it
/// (`top`, where plugin mode takes them) and its own; an error names an option given
/// to a command it does nothing for.
fn serving(top: Serving, command: Option<&mut Command>) -> Result<Serving, String> {
    let refuse = |top: &Serving, name: &str| match top.first_given() {
        Some(flag) => Err(format!(
            "{flag} does nothing for {name}: it is an option of plugin mode (no subcommand) and get"
        )),
        None => Ok(Serving::default()),
    };
    match command {
        None => Ok(top),
        Some(Command::Get { serving, .. }) => Ok(std::mem::take(serving).or(top)),
        Some(Command::Explain(args)) => {
            let others = Serving {
                cache_dir: None,
                no_cache: false,
                ..top
            };
            refuse(&others, "explain").map(|_| Serving {
                cache_dir: args.cache_dir.take().or(top.cache_dir),
                no_cache: args.no_cache || top.no_cache,
                ..Serving::default()
            })
        }
        Some(Command::Cache { cache_dir, .. }) => {
            let cache_dir = cache_dir.take().or(top.cache_dir);
            let others = Serving {
                cache_dir: None,
                ..top
            };
            refuse(&others, "cache").map(|_| Serving {
                cache_dir,
                ..Serving::default()
            })
        }
        Some(command) => refuse(&top, command_name(command)),
    }
}

/// The name a command is given by on the command line.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Get { .. } => "get",
        Command::CheckConfig { .. } => "check-config",
        Command::KubeletConfig { .. } => "kubelet-config",
        Command::Install { .. } => "install",
        Command::Uninstall { .. } => "uninstall",
        Command::Cache { .. } => "cache",
        Command::DefaultRules => "default-rules",
        Command::Explain(_) => "explain",
    }
}

/// This binary's file name in `args`, the provider name the kubelet knows it by.
fn program_name(args: &[OsString]) -> String {
    args.first()
        .map(Path::new)
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .unwrap_or(env!("CARGO_PKG_NAME"))
        .to_owned()
}

/// Help and version go to stdout with exit 0; a usage error is one line and exit 2.
fn usage_error(error: &clap::Error) -> Outcome {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        print!("{error}");
        return Outcome::Success;
    }
    Outcome::usage(&usage_message(&error.render().to_string()), "--help")
}

/// The longest usage error message, so that a huge argument it quotes stays short.
const MAX_USAGE_MESSAGE: usize = 200;

/// clap's rendered error as one line: its first paragraph (the error and the details it
/// lists on the lines below, such as the missing arguments), without its `error:`
/// prefix, then its tips ("a similar subcommand exists: 'check-config'"), cut at
/// [`MAX_USAGE_MESSAGE`] characters.
fn usage_message(rendered: &str) -> String {
    let lines = || rendered.lines().map(str::trim);
    let paragraph: Vec<&str> = lines().take_while(|line| !line.is_empty()).collect();
    let tips = lines().filter_map(|line| line.strip_prefix("tip: "));
    let line = std::iter::once(paragraph.join(" "))
        .chain(tips.map(str::to_owned))
        .collect::<Vec<_>>()
        .join("; ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    icp_core::quote::cut(line, MAX_USAGE_MESSAGE).into_owned()
}
