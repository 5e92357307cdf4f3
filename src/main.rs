//! `image-credential-provider`: a kubelet image credential provider exec plugin.
//!
//! The main path, top to bottom: parse the command line; in plugin mode read one
//! `CredentialProviderRequest` from stdin ([`protocol`]), load the rules ([`config`]),
//! find the first rule that serves the image and ask its backend ([`plugin`],
//! [`backends`]), and write one `CredentialProviderResponse` to stdout. Any error is one
//! line on stderr and a non-zero exit, with nothing on stdout.

mod backends;
mod cache;
mod dropin;
mod duration;
mod kubelet_config;
mod plugin;
mod protocol;
mod rules;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::protocol::{ApiVersion, Request};
use crate::rules::Rules;

/// A kubelet image credential provider for ECR, ACR, GCR / Artifact Registry and docker
/// config files. With no subcommand, reads a CredentialProviderRequest on stdin and
/// writes the CredentialProviderResponse on stdout.
#[derive(Parser)]
#[command(name = "image-credential-provider", version)]
struct Cli {
    /// Rules file (YAML or JSON); without it, the embedded default rules.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Logs on stderr: -v which rule and backend served and for how long, -vv details.
    /// Never a secret.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// The token cache directory shared by plugin processes (default: the rules file's
    /// cache.dir, else /var/cache/image-credential-provider for root, else
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
    },
    /// Show or empty the token cache.
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
    let mut cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    init_logging(cli.verbose);
    match cli.command.take() {
        None => {
            finish(load_rules(&cli).and_then(|rules| serve_stdin(&rules, cli.cache_dir(&rules))))
        }
        Some(Command::Get { image, api_version }) => finish(get(&cli, &image, &api_version)),
        Some(Command::CheckConfig {
            kubelet_config: Some(path),
            name,
        }) => kubelet_config::check_command(&path, cli.config.as_deref(), name.as_deref()),
        Some(Command::CheckConfig { .. }) => check_config(cli.config),
        Some(Command::KubeletConfig { name, output }) => {
            kubelet_config::write_command(cli.config.as_deref(), name.as_deref(), output.as_deref())
        }
        Some(Command::Cache { action }) => finish(cache_command(&cli, action)),
    }
}

impl Cli {
    /// The token cache directory in force, or `None` when caching is off.
    fn cache_dir(&self, rules: &Rules) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        rules.cache_dir(self.cache_dir.as_deref())
    }
}

fn load_rules(cli: &Cli) -> anyhow::Result<Rules> {
    Ok(rules::load(cli.config.as_deref(), false)?)
}

/// Plugin mode: one request from stdin, one response to stdout.
pub(crate) fn serve_stdin(rules: &Rules, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let request = protocol::read_request(std::io::stdin().lock())?;
    respond(&request, rules, cache_dir)
}

fn get(cli: &Cli, image: &str, api_version: &str) -> anyhow::Result<()> {
    let image = icp_core::ImageRef::parse(image)
        .with_context(|| format!("image {image:?} is not a valid image reference"))?;
    let request = Request {
        api_version: ApiVersion::from_short(api_version).context("unknown API version")?,
        image: image.name(),
        service_account_token: None,
        service_account_annotations: Default::default(),
    };
    let rules = load_rules(cli)?;
    respond(&request, &rules, cli.cache_dir(&rules))
}

fn respond(request: &Request, rules: &Rules, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let response = plugin::answer(request, rules, cache_dir.as_deref())?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(response.to_json().as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the response to stdout")
}

fn cache_command(cli: &Cli, action: CacheAction) -> anyhow::Result<()> {
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

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("error: check-config needs --config FILE");
        return ExitCode::from(2);
    };
    match rules::load(Some(&path), true) {
        Ok(rules) => {
            println!(
                "{}: {} rules, no problems",
                path.display(),
                rules.rules.len()
            );
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

/// Exit 0 on success; otherwise the error and its causes as one line on stderr, exit 1.
pub(crate) fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let line = format!("{error:#}").replace(['\n', '\r'], " ");
            eprintln!("error: {line}");
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
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or("error: invalid usage");
    eprintln!("{first} (see --help)");
    ExitCode::from(2)
}

/// Logs of this project's crates at the level `-v` asks for. Other crates (SDKs, HTTP
/// and TLS stacks) are silent by default, so an error stays one line, and with `-v` log
/// warnings only: no library's debug output, which may carry headers or bodies, ever
/// reaches stderr.
fn init_logging(verbosity: u8) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = match verbosity {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let ours = [
        "image_credential_provider",
        "icp_core",
        "icp_docker_auth",
        "icp_docker_config",
        "icp_http",
        "icp_ecr",
        "icp_acr",
        "icp_gcp",
    ];
    let others = if verbosity == 0 {
        tracing_subscriber::filter::LevelFilter::OFF
    } else {
        tracing_subscriber::filter::LevelFilter::WARN
    };
    let filter = ours.into_iter().fold(
        tracing_subscriber::filter::Targets::new().with_default(others),
        |filter, target| filter.with_target(target, level),
    );
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .without_time(),
        )
        .with(filter)
        .init();
}
