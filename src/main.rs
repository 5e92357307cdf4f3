//! `image-credential-provider`'s command line: plugin mode (no subcommand), `get`,
//! `check-config` and `cache`, or a drop-in mode when the binary is run under an official
//! provider's name. The work is done by the library (`src/lib.rs`).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use image_credential_provider::protocol::{ApiVersion, Request};
use image_credential_provider::rules::{self, Rules};
use image_credential_provider::{cache, dropin, duration, exit, kubelet_config, logging, plugin};

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

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(code) = dropin::dispatch(&args) {
        return code;
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    logging::init(cli.verbose);
    match &cli.command {
        None => exit::finish(load_rules(&cli).and_then(|rules| {
            let cache_dir = cli.cache_dir(&rules);
            plugin::serve(
                std::io::stdin().lock(),
                std::io::stdout().lock(),
                &rules,
                cache_dir.as_deref(),
            )
        })),
        Some(Command::Get { image, api_version }) => exit::finish(get(&cli, image, api_version)),
        Some(Command::CheckConfig {
            kubelet_config: Some(path),
            name,
        }) => kubelet_config::check_command(path, cli.config.as_deref(), name.as_deref()),
        Some(Command::CheckConfig { .. }) => check_config(cli.config.as_deref()),
        Some(Command::KubeletConfig {
            name,
            output,
            service_account_tokens,
        }) => exit::finish(kubelet_config::write(
            cli.config.as_deref(),
            name.as_deref(),
            output.as_deref(),
            *service_account_tokens,
        )),
        Some(Command::Cache { action }) => exit::finish(cache_command(&cli, action)),
    }
}

impl Cli {
    /// The token cache directory in force, or `None` when caching is off.
    fn cache_dir(&self, rules: &Rules) -> Option<PathBuf> {
        cache::dir(&rules.cache, self.cache_dir.as_deref(), self.no_cache)
    }
}

fn load_rules(cli: &Cli) -> anyhow::Result<Rules> {
    Ok(rules::load(cli.config.as_deref(), false)?)
}

fn get(cli: &Cli, image: &str, api_version: &str) -> anyhow::Result<()> {
    let image = icp_core::ImageRef::parse(image).with_context(|| {
        format!(
            "image {} is not a valid image reference",
            icp_core::quote(image)
        )
    })?;
    let request = Request {
        api_version: ApiVersion::from_short(api_version).context("unknown API version")?,
        image: image.name(),
        service_account: None,
    };
    let rules = load_rules(cli)?;
    let cache_dir = cli.cache_dir(&rules);
    plugin::respond(
        &request,
        std::io::stdout().lock(),
        &rules,
        cache_dir.as_deref(),
    )
}

fn cache_command(cli: &Cli, action: &CacheAction) -> anyhow::Result<()> {
    let rules = load_rules(cli)?;
    let dir = cli
        .cache_dir(&rules)
        .context("the token cache is turned off")?;
    let cache = cache::Cache::open(&dir)
        .with_context(|| format!("token cache {} is unusable", dir.display()))?;
    match action {
        CacheAction::List => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "KEY\tBACKEND\tSCOPE\tIDENTITY\tEXPIRES")?;
            for entry in cache
                .list()
                .with_context(|| format!("listing {}", dir.display()))?
            {
                let expires = match entry
                    .expires_at
                    .duration_since(std::time::SystemTime::now())
                {
                    Ok(left) => format!("in {}", duration::format(left)),
                    Err(_) => "expired".to_owned(),
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{expires}",
                    entry.key, entry.backend, entry.scope, entry.identity
                )?;
            }
        }
        CacheAction::Clear => {
            let removed = cache
                .clear()
                .with_context(|| format!("clearing {}", dir.display()))?;
            println!("removed {removed} cached tokens from {}", dir.display());
        }
    }
    Ok(())
}

fn check_config(path: Option<&std::path::Path>) -> ExitCode {
    let Some(path) = path else {
        return exit::usage("check-config needs --config FILE", "--help");
    };
    match rules::load(Some(path), true) {
        Ok(rules) => {
            println!("{}: {} rules, no problems", rules.origin, rules.rules.len());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems.problems {
                eprintln!("error: {}: {problem}", problems.origin);
            }
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout with exit 0; a usage error is one line and exit 2.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        print!("{error}");
        return ExitCode::SUCCESS;
    }
    exit::usage(&usage_message(&error.render().to_string()), "--help")
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
    match line.char_indices().nth(MAX_USAGE_MESSAGE) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}
