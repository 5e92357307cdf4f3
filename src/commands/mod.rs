//! The command line: plugin mode (no subcommand), `get`, `check-config`,
//! `kubelet-config` and `cache`, one module each, or a drop-in mode when the binary is run
//! under an official provider's name (`crate::dropin`, which answers in plugin mode).
//! Each command prints its results and returns its [`Outcome`]; `main` alone ends the
//! process with it.

mod cache;
mod check_config;
mod get;
mod kubelet_config;
mod outcome;
pub(crate) mod plugin;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use icp_core::Environment;

pub use outcome::Outcome;

use crate::rules::{self, Rules};
use crate::{dropin, logging};

/// A kubelet image credential provider for ECR, ACR, GCR / Artifact Registry and docker
/// config files. With no subcommand, reads a CredentialProviderRequest on stdin and
/// writes the CredentialProviderResponse on stdout.
#[derive(Parser)]
#[command(name = "image-credential-provider", version)]
struct Cli {
    /// Rules file (YAML or JSON); without it, the embedded default rules (check-config
    /// needs one).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Logs on stderr: -v which rule and backend served and for how long, -vv details.
    /// Never a secret.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// The token cache directory shared by plugin processes (default: the environment's
    /// IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR, else the rules file's cache.dir, else
    /// /var/cache/image-credential-provider for root, else
    /// $XDG_CACHE_HOME/image-credential-provider).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Fetch every token, and neither read nor write the token cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Serve only the rules whose backends take pods' tokens of AUDIENCE (and those that
    /// take none): one instance per audience, as kubelet-config --service-account-tokens
    /// writes them when the rules need several.
    #[arg(long, value_name = "AUDIENCE")]
    audience: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the response the plugin gives for IMAGE, normalised as the kubelet does
    /// (tag and digest dropped, Docker Hub names expanded).
    Get {
        /// The image, as in a pod spec: `nginx:1.27`, `registry.example:5000/team/app`.
        image: String,
        /// The protocol version to answer in.
        #[arg(long, default_value = "v1", value_parser = ["v1", "v1beta1", "v1alpha1"])]
        api_version: String,
    },
    /// Check a rules file (--config FILE) and list every problem in it; or judge a kubelet
    /// CredentialProviderConfig (--kubelet-config) as the kubelet does.
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
        /// the rules' cloud backends pull as each pod's own identity (Kubernetes 1.34+;
        /// the nodes need RBAC for the audience: see the README).
        #[arg(long)]
        service_account_tokens: bool,
    },
    /// Show or empty the token cache.
    #[command(subcommand_required = true, arg_required_else_help = false)]
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
}

#[derive(Subcommand)]
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
}

/// Runs the command line `args` (the program's name first), with the process's
/// environment.
pub fn run(args: Vec<OsString>) -> Outcome {
    let env = Environment::process();
    if let Some(outcome) = dropin::dispatch(&args, &env) {
        return outcome;
    }
    let program = || program_name(&args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    logging::init(cli.verbose);
    let globals = Globals {
        config: cli.config,
        cache_dir: cli.cache_dir,
        no_cache: cli.no_cache,
        audience: cli.audience,
        env,
    };
    match cli.command {
        None => plugin::run(&globals),
        Some(Command::Get { image, api_version }) => get::run(&globals, &image, &api_version),
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
        Some(Command::Cache { action }) => cache::run(&globals, &action),
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
/// prefix, cut at [`MAX_USAGE_MESSAGE`] characters.
fn usage_message(rendered: &str) -> String {
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    let line = paragraph.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    icp_core::quote::cut(line, MAX_USAGE_MESSAGE).into_owned()
}
