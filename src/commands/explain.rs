//! `explain IMAGE [--kubelet-config FILE|DIR] [--pod POD.yaml | --namespace NS
//! --service-account SA] [--annotation K=V]... [--token-file FILE] [--live]`: why a pull
//! gets credentials from this plugin or not, step by step ([`crate::explain`]), as
//! numbered lines and a verdict on stdout. Exit 0 whatever the verdict; bad input is one
//! line on stderr and exit 2.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use icp_core::{Secret, quote};

use super::{Globals, Outcome};
use crate::explain::{self, Input, Report, pod};

/// The largest service account token file read.
const MAX_TOKEN_SIZE: u64 = 64 * 1024;

/// The command line of `explain`.
#[derive(clap::Args)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Args {
    /// The image, as in a pod spec: `nginx:1.27`, `registry.example:5000/team/app`.
    image: String,
    /// The kubelet's CredentialProviderConfig file, or a directory of them (1.34+): explain
    /// the kubelet's side too.
    #[arg(long, value_name = "FILE|DIR")]
    kubelet_config: Option<PathBuf>,
    /// The provider name this binary runs under in the kubelet's configuration (default:
    /// the binary's file name).
    #[arg(long)]
    name: Option<String>,
    /// A Pod manifest (its namespace and serviceAccountName); its service account's
    /// annotations come from --annotation or a ServiceAccount document in the same file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["namespace", "service_account"])]
    pod: Option<PathBuf>,
    /// The pod's namespace (default: default).
    #[arg(long, value_name = "NS", requires = "service_account")]
    namespace: Option<String>,
    /// The pod's service account.
    #[arg(long, value_name = "SA")]
    service_account: Option<String>,
    /// An annotation of the pod's service account; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    annotation: Vec<String>,
    /// The pod's service account token (a projected token for the kubelet's audience):
    /// names the service account and its uid; sent only with --live.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Fetch, as the plugin does when the kubelet runs it (with --token-file's token), and
    /// report the result; without it nothing is sent anywhere.
    #[arg(long)]
    live: bool,
    /// The token cache directory to look in (and, with --live, to use), as in plugin mode
    /// (default: the environment's IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR, else the rules
    /// file's cache.dir, else the default for the user).
    #[arg(long, value_name = "DIR")]
    pub(super) cache_dir: Option<PathBuf>,
    /// Neither look in nor (with --live) use the token cache.
    #[arg(long)]
    pub(super) no_cache: bool,
}

/// Explains the pull of `args.image`, with `program` the provider name by default.
pub fn run(globals: &Globals, args: Args, program: &str) -> Outcome {
    match input(globals, args, program) {
        Ok(input) => {
            print(&explain::explain(input));
            Outcome::Success
        }
        Err(message) => {
            eprintln!("error: {message}");
            Outcome::Usage
        }
    }
}

/// The input of the explanation, or why the command line cannot be explained.
fn input(globals: &Globals, args: Args, program: &str) -> Result<Input, String> {
    let image = icp_core::ImageRef::parse(&args.image).map_err(|error| {
        format!(
            "image {} is not a valid image reference: {error}",
            quote(&args.image)
        )
    })?;
    let annotations: BTreeMap<String, String> = args
        .annotation
        .iter()
        .map(|arg| pod::annotation(arg))
        .collect::<Result<_, _>>()?;
    if !annotations.is_empty()
        && args.pod.is_none()
        && args.service_account.is_none()
        && args.token_file.is_none()
    {
        return Err(
            "--annotation needs the pod: --pod FILE, --service-account SA or --token-file FILE"
                .to_owned(),
        );
    }
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let pod = match (&args.pod, &args.service_account, &token) {
        (Some(path), _, _) => Some(pod::from_file(path, annotations)?),
        (None, Some(account), _) => Some(pod::from_flags(
            args.namespace.as_deref(),
            account,
            annotations,
        )?),
        (None, None, Some(token)) if !annotations.is_empty() => Some(pod::from_flags(
            Some(&token.namespace),
            &token.name,
            annotations,
        )?),
        (None, None, _) => None,
    };
    if let Some(path) = &args.kubelet_config {
        explain::readable(path).map_err(|e| format!("--kubelet-config {e}"))?;
    }
    let rules = globals.rules().map_err(|problems| problems.to_string())?;
    let cache_dir = globals.cache_dir(&rules);
    Ok(Input {
        image,
        kubelet_config: args.kubelet_config,
        name: args.name.unwrap_or_else(|| program.to_owned()),
        rules_path: globals.config.clone(),
        rules,
        cache_dir,
        pod,
        token,
        live: args.live,
        env: globals.env.clone(),
    })
}

/// The service account of the token in `path`, read from its claims; never shown.
fn read_token(path: &Path) -> Result<icp_core::ServiceAccount, String> {
    let origin = quote::path(path);
    let bytes = icp_core::io::read_file(path, MAX_TOKEN_SIZE)
        .map_err(|e| format!("--token-file {origin}: cannot read: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("--token-file {origin}: not valid UTF-8"))?;
    icp_core::ServiceAccount::from_token(Secret::new(text.trim()), BTreeMap::new())
        .map_err(|e| format!("--token-file {origin}: {e}"))
}

/// The report on stdout: numbered steps, their details indented, and the verdict.
fn print(report: &Report) {
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    for (number, step) in report.steps.iter().enumerate() {
        text.push_str(&format!("{}. {}\n", number + 1, step.line));
        for detail in &step.details {
            text.push_str(&format!("   {detail}\n"));
        }
    }
    text.push_str(&format!("verdict: {}\n", report.verdict));
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
