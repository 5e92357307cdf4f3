//! Registry credentials from docker `config.json` and legacy `.dockercfg` files: inline
//! in `auths`, or from the credential helpers the file names (`credHelpers`,
//! `credsStore`).
//!
//! The backend reads the file on every call (it is small, and the kubelet calls rarely),
//! and answers with every credential the kubelet will need for the images it reuses the
//! answer for. Which source serves a registry follows docker: its `credHelpers` entry,
//! else `credsStore`, and `auths` only when neither names a helper (an empty
//! `credHelpers` entry sends its registry back to `auths`). Inline entries are matched as
//! the kubelet's own keyring does (see [`icp_docker_auth::keyring::select`]); a helper is
//! asked for the image's registry only, except under `cacheKeyType: Global` (see
//! [`DockerConfig`]). Credentials do not expire: the binary picks the cache duration.
//!
//! - [`helper`]: finding and asking a credential helper;
//! - [`child`]: running a program bounded in time and output.

mod child;
pub mod helper;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use icp_core::{
    AuthEntry, Build, CacheKeyType, Context, Credentials, Environment, Request, StaticBackend,
};
use icp_docker_auth::file::{Contents, quote_key};
use icp_docker_auth::{Entry, file, keyring};

use crate::helper::{CALL_TIMEOUT, Helper};

/// Longest all helper calls of one request may take together (under `Global`, several
/// run, [`PARALLEL`] at a time), well inside the kubelet's one-minute limit.
pub const BUDGET: Duration = Duration::from_secs(20);
/// Most helper calls run at once.
pub const PARALLEL: usize = 4;

/// The `dockerConfig` section of a rule.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The docker `config.json` or `.dockercfg` file; relative to the rules file.
    pub path: PathBuf,
    /// Where credential helpers are looked up; relative to the rules file. Without it,
    /// the absolute directories of the plugin's `PATH`.
    #[serde(default)]
    pub helper_dir: Option<PathBuf>,
}

/// What can go wrong: the file, or a helper. No message holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is missing, unreadable or malformed.
    #[error(transparent)]
    File(#[from] icp_docker_auth::Error),
    /// A credential helper is missing, failed, hung or answered nonsense.
    #[error(transparent)]
    Helper(#[from] helper::Error),
    /// The helper calls of one request together took longer than [`BUDGET`].
    #[error("credential helpers did not all answer within {0:?}")]
    Budget(Duration),
}

impl icp_core::BackendError for Error {
    /// A broken file is the rule's configuration; a helper's failure is of its own kind
    /// (see [`helper::Error::kind`]); running out of the budget, a timeout.
    fn kind(&self) -> icp_core::ErrorKind {
        match self {
            Error::File(_) => icp_core::ErrorKind::Config,
            Error::Helper(error) => error.kind(),
            Error::Budget(_) => icp_core::ErrorKind::Timeout,
        }
    }
}

/// The docker-config backend for one file.
///
/// What it answers for an image of registry R, by `cacheKeyType`:
///
/// - `Image` and `Registry`: when a helper serves R, that helper's credential for R
///   alone (one helper call); otherwise the inline entries [`keyring::select`] picks.
/// - `Global`: what docker's "all credentials" holds: every server `credsStore` lists
///   (`list`, then `get` for each), every `credHelpers` registry, R's helper if neither
///   covered R, and the inline entries of registries no helper serves. The kubelet
///   reuses a `Global` answer for every image, so an answer for R alone would leave the
///   other registries without credentials until it expires.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    helper_dir: Option<PathBuf>,
    /// Where `PATH` comes from, for helpers without a `helperDir`.
    env: Environment,
}

impl Build for DockerConfig {
    const NAME: &'static str = "docker-config";
    type Config = Config;
    type Error = Error;

    /// None: a rule must name the file.
    fn default_config() -> Option<Config> {
        None
    }

    /// A backend reading `config.path`, with `config.helper_dir`, both resolved against the
    /// base directory when relative, and looking helpers up on the environment's `PATH`
    /// without one. The file is read when credentials are asked for, or by `check`: building
    /// never fails.
    fn build(config: Config, context: &Context<'_>) -> Result<DockerConfig, Error> {
        Ok(DockerConfig::new(
            config,
            context.base_dir,
            context.env.clone(),
        ))
    }
}

impl DockerConfig {
    /// [`Build::build`]: the backend for a rule's `config`, relative paths against
    /// `base_dir`, credential helpers looked up in `env`'s `PATH`.
    pub fn new(config: Config, base_dir: &Path, env: Environment) -> Self {
        DockerConfig {
            path: base_dir.join(config.path),
            helper_dir: config.helper_dir.map(|dir| base_dir.join(dir)),
            env,
        }
    }

    /// The file this backend reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn locate(&self, name: &str) -> Result<Helper, Error> {
        Ok(Helper::locate(name, self.helper_dir.as_deref(), &self.env)?)
    }

    /// The answer under `Global`; see [`DockerConfig`].
    fn everything(&self, contents: &Contents, registry: &str) -> Result<Vec<AuthEntry>, Error> {
        let deadline = Instant::now() + BUDGET;
        let helpers = contents
            .helpers()
            .into_iter()
            .map(|name| Ok((name, self.locate(name)?)))
            .collect::<Result<BTreeMap<&str, Helper>, Error>>()?;
        // Pattern -> (helper, server); later sources replace earlier ones, as in docker.
        let mut calls: BTreeMap<String, (&Helper, String)> = BTreeMap::new();
        if let Some(store) = contents.creds_store.as_deref() {
            let store = &helpers[store];
            for server in store.list(time_left(deadline)?)? {
                let pattern = match keyring::normalize_key(&server) {
                    Ok(key) => keyring::plain_registry(&key).unwrap_or(key),
                    Err(_) => {
                        tracing::warn!(helper = %store.name(), server = %quote_key(&server), "credential store lists a server the kubelet would not accept; skipped");
                        continue;
                    }
                };
                calls.entry(pattern).or_insert((store, server));
            }
        }
        for (key, name) in &contents.cred_helpers {
            match helpers.get(name.as_str()) {
                Some(helper) => {
                    calls.insert(key.clone(), (helper, server_of(key)));
                }
                None => {
                    calls.remove(key);
                }
            }
        }
        if let Some(name) = contents.helper_for(registry) {
            calls
                .entry(registry.to_owned())
                .or_insert((&helpers[name], server_of(registry)));
        }

        let mut auth: Vec<AuthEntry> = contents
            .auths
            .iter()
            .filter(|(key, _)| {
                let host = key.split('/').next().unwrap_or_default();
                contents.helper_for(keyring::registry_key(host)).is_none()
                    && !calls.contains_key(*key)
            })
            .map(|(key, entry)| auth_entry(key, entry.clone()))
            .collect();
        auth.extend(ask_all(calls, deadline)?);
        Ok(auth)
    }
}

impl StaticBackend for DockerConfig {
    type Error = Error;

    /// Reads and parses the file, and finds every helper it names (without running any).
    fn check(&self) -> Result<(), Error> {
        let contents = file::load(&self.path)?;
        for name in contents.helpers() {
            self.locate(name)?;
        }
        Ok(())
    }

    fn provide(&self, request: &Request<'_>) -> Result<Credentials, Error> {
        let contents = file::load(&self.path)?;
        let registry = keyring::registry_key(request.image.registry());
        let mut auth = match (request.cache_key_type, contents.helper_for(registry)) {
            (CacheKeyType::Global, _) => self.everything(&contents, registry)?,
            (_, Some(name)) => {
                tracing::debug!(
                    helper = name,
                    registry,
                    "a credential helper serves the registry"
                );
                self.locate(name)?
                    .get(&server_of(registry), CALL_TIMEOUT)?
                    .map(|entry| auth_entry(registry, entry))
                    .into_iter()
                    .collect()
            }
            (cache_key_type, None) => keyring::select(
                contents.auths.keys().map(String::as_str),
                request.image,
                cache_key_type,
            )
            .into_iter()
            .map(|key| auth_entry(key, contents.auths[key].clone()))
            .collect(),
        };
        // The kubelet tries keys in reverse lexical order, so more specific paths come first.
        auth.sort_unstable_by(|a, b| b.pattern.cmp(&a.pattern));
        Ok(Credentials {
            auth,
            expires_at: None,
        })
    }
}

/// The server docker sends a helper for the registry `key`.
fn server_of(key: &str) -> String {
    keyring::helper_server(key).to_owned()
}

fn auth_entry(pattern: &str, entry: Entry) -> AuthEntry {
    AuthEntry {
        pattern: pattern.to_owned(),
        username: entry.username,
        password: entry.password,
    }
}

/// The time a helper call may take: [`CALL_TIMEOUT`], or what is left before `deadline`.
fn time_left(deadline: Instant) -> Result<Duration, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Budget(BUDGET));
    }
    Ok(left.min(CALL_TIMEOUT))
}

/// Runs every `get` of `calls` ([`PARALLEL`] at a time) and returns the credentials found
/// under their patterns. The first failure (in pattern order) is the answer; no new call
/// starts once one has failed.
fn ask_all(
    calls: BTreeMap<String, (&Helper, String)>,
    deadline: Instant,
) -> Result<Vec<AuthEntry>, Error> {
    let calls: Vec<(String, &Helper, String)> = calls
        .into_iter()
        .map(|(pattern, (helper, server))| (pattern, helper, server))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let ask = || {
        use std::sync::atomic::Ordering::Relaxed;
        let mut answers = Vec::new();
        while !failed.load(Relaxed) {
            let index = next.fetch_add(1, Relaxed);
            let Some((_, helper, server)) = calls.get(index) else {
                break;
            };
            let answer = time_left(deadline).and_then(|timeout| Ok(helper.get(server, timeout)?));
            failed.fetch_or(answer.is_err(), Relaxed);
            answers.push((index, answer));
        }
        answers
    };
    let mut answers: Vec<(usize, Result<Option<Entry>, Error>)> = if calls.len() <= 1 {
        ask()
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..PARALLEL.min(calls.len()))
                .map(|_| scope.spawn(ask))
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| {
                    worker
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    };
    answers.sort_unstable_by_key(|(index, _)| *index);
    let mut auth = Vec::new();
    for (index, answer) in answers {
        if let Some(entry) = answer? {
            auth.push(auth_entry(&calls[index].0, entry));
        }
    }
    Ok(auth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use icp_core::ImageRef;
    use std::collections::BTreeMap as Map;
    use std::os::unix::fs::PermissionsExt;

    /// A helper script answering `get` from `creds` (server -> "user:secret") and `list`
    /// with their servers, logging each call to `calls.log`.
    fn fake_helper(dir: &Path, name: &str, creds: &[(&str, &str)]) {
        let mut cases = String::new();
        for (server, cred) in creds {
            let (user, secret) = cred.split_once(':').unwrap();
            cases.push_str(&format!(
                "  '{server}') echo '{{\"ServerURL\":\"{server}\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' ;;\n"
            ));
        }
        let list: Vec<String> = creds
            .iter()
            .map(|(server, _)| format!("\"{server}\":\"x\""))
            .collect();
        let script = format!(
            "#!/bin/sh\nread -r server\necho \"{name} $1 $server\" >> {log}\n\
             [ \"$1\" = list ] && {{ echo '{{{list}}}'; exit 0; }}\n\
             case \"$server\" in\n{cases}  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
            log = dir.join("calls.log").display(),
            list = list.join(","),
        );
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn backend(dir: &Path, config: &str) -> DockerConfig {
        std::fs::write(dir.join("config.json"), config).unwrap();
        let context = Context {
            base_dir: dir,
            env: &Environment::from_pairs([("PATH", "")]),
        };
        DockerConfig::build(
            Config {
                path: "config.json".into(),
                helper_dir: Some(".".into()),
            },
            &context,
        )
        .unwrap()
    }

    fn answer(
        backend: &DockerConfig,
        image: &str,
        cache_key_type: CacheKeyType,
    ) -> Map<String, String> {
        let image = ImageRef::parse(image).unwrap();
        let request = Request {
            cache_key_type,
            ..Request::new(&image)
        };
        backend
            .provide(&request)
            .unwrap()
            .auth
            .into_iter()
            .map(|entry| {
                (
                    entry.pattern,
                    format!("{}:{}", entry.username, entry.password.expose()),
                )
            })
            .collect()
    }

    fn calls(dir: &Path) -> Vec<String> {
        let log = std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default();
        std::fs::remove_file(dir.join("calls.log")).ok();
        let mut calls: Vec<String> = log.lines().map(str::to_owned).collect();
        calls.sort();
        calls
    }

    /// "dXNlcjpmaWxl" is base64 of "user:file".
    const CONFIG: &str = r#"{
        "auths": {"a.example": {"auth": "dXNlcjpmaWxl"}, "b.example": {"auth": "dXNlcjpmaWxl"},
                  "d.example": {"auth": "dXNlcjpmaWxl"}, "d.example/team": {"auth": "dXNlcjpmaWxl"}},
        "credHelpers": {"a.example": "one", "d.example": "", "https://index.docker.io/v1/": "one"},
        "credsStore": "store"}"#;

    #[test]
    fn a_helper_for_the_registry_wins_then_the_store_then_auths() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        fake_helper(
            dir,
            "one",
            &[
                ("a.example", "one:a"),
                ("https://index.docker.io/v1/", "one:hub"),
            ],
        );
        fake_helper(
            dir,
            "store",
            &[("b.example", "store:b"), ("s.example", "store:s")],
        );
        let backend = backend(dir, CONFIG);
        for cache_key_type in [CacheKeyType::Image, CacheKeyType::Registry] {
            let answer = |image| answer(&backend, image, cache_key_type);
            assert_eq!(
                answer("a.example/app"),
                Map::from([("a.example".into(), "one:a".into())])
            );
            assert_eq!(calls(dir), ["one get a.example"]);
            assert_eq!(
                answer("b.example/app"),
                Map::from([("b.example".into(), "store:b".into())])
            );
            assert_eq!(calls(dir), ["store get b.example"]);
            // The store holds nothing for c.example; auths are not asked, as in docker.
            assert_eq!(answer("c.example/app"), Map::new());
            assert_eq!(calls(dir), ["store get c.example"]);
            assert_eq!(
                answer("nginx"),
                Map::from([("index.docker.io".into(), "one:hub".into())])
            );
            assert_eq!(calls(dir), ["one get https://index.docker.io/v1/"]);
            // An empty credHelpers entry sends d.example back to auths.
            let d = answer("d.example/team/app");
            assert_eq!(d["d.example/team"], "user:file");
            assert_eq!(calls(dir), Vec::<String>::new());
        }
    }

    #[test]
    fn global_holds_what_docker_calls_all_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        fake_helper(
            dir,
            "one",
            &[
                ("a.example", "one:a"),
                ("https://index.docker.io/v1/", "one:hub"),
            ],
        );
        fake_helper(
            dir,
            "store",
            &[
                ("b.example", "store:b"),
                ("https://s.example", "store:s"),
                ("a.example", "store:a"),
                ("d.example", "store:d"),
            ],
        );
        let backend = backend(dir, CONFIG);
        let expected = Map::from([
            ("a.example".into(), "one:a".into()),
            ("b.example".into(), "store:b".into()),
            ("s.example".into(), "store:s".into()),
            ("index.docker.io".into(), "one:hub".into()),
            ("d.example".into(), "user:file".into()),
            ("d.example/team".into(), "user:file".into()),
        ]);
        assert_eq!(
            answer(&backend, "b.example/app", CacheKeyType::Global),
            expected
        );
        assert_eq!(
            calls(dir),
            [
                "one get a.example",
                "one get https://index.docker.io/v1/",
                "store get b.example",
                "store get https://s.example",
                "store list ",
            ]
        );
        // A registry the store does not list is still asked for the image at hand.
        assert_eq!(
            answer(&backend, "c.example/app", CacheKeyType::Global),
            expected
        );
        assert!(calls(dir).contains(&"store get c.example".to_owned()));

        let no_store = backend_without_store(dir);
        let answer = answer(&no_store, "nginx", CacheKeyType::Global);
        assert_eq!(
            answer.keys().collect::<Vec<_>>(),
            [
                "a.example",
                "b.example",
                "d.example",
                "d.example/team",
                "index.docker.io"
            ]
        );
        assert_eq!(answer["b.example"], "user:file");
    }

    fn backend_without_store(dir: &Path) -> DockerConfig {
        backend(
            dir,
            &CONFIG.replace(r#""credsStore": "store""#, r#""credsStore": """#),
        )
    }

    #[test]
    fn check_finds_every_helper_without_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        fake_helper(dir, "one", &[]);
        let backend = backend(dir, CONFIG);
        let message = backend.check().unwrap_err().to_string();
        assert!(
            message.starts_with("docker-credential-store: not found in "),
            "{message}"
        );
        fake_helper(dir, "store", &[]);
        backend.check().unwrap();
        assert_eq!(calls(dir), Vec::<String>::new());
    }
}
