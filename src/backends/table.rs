//! The backend table: one [`Row`] per backend built into this binary, made from the
//! backend's type alone (its [`icp_core::Build`] implementation), and everything derived
//! from it: the names of every backend, the rule section keys, the log targets and the
//! drop-in modes.
//!
//! Adding a backend is one line of [`backends!`] below (and its crate as an optional
//! dependency behind a cargo feature of the backend's name); see "Adding a backend" in
//! docs/development.md.

use std::cell::LazyCell;
use std::path::Path;
use std::time::Duration;

use icp_core::{Build, Context, Environment, StaticBackend, TokenBackend};
use serde_json::Value;

use super::{Backend, Failure};
use crate::cache::SAFETY_MARGIN;
use crate::dropin::Mode;
use crate::plugin::STATIC_CACHE_DURATION;

/// Every backend this project has, each once: `"name" => kind Type`, and `, drop_in
/// module` when the binary run under its official provider's name takes that provider's
/// command line (`crate::dropin::module::MODE`). The name is the backend's cargo feature
/// and its `Build::NAME`; the kind is `statics` or `token`, the trait it implements.
macro_rules! backends {
    ($($name:literal => $kind:ident $backend:ty $(, drop_in $mode:ident)?;)*) => {
        /// Every backend this project has, built into this binary or not, so that a rule
        /// naming one that is left out gets a message saying which cargo feature builds it
        /// (the feature has the backend's name).
        pub const NAMES: &[&str] = &[$($name),*];

        /// The backends built into this binary. Their order is the order of the embedded
        /// default rules.
        pub const TABLE: &[Row] = &[$(
            #[cfg(feature = $name)]
            Row::$kind::<$backend>(backends!(@drop_in $($mode)?)),
        )*];
    };
    (@drop_in) => { None };
    (@drop_in $mode:ident) => { Some(&crate::dropin::$mode::MODE) };
}

backends! {
    "docker-config" => statics icp_docker_config::DockerConfig;
    "ecr" => token icp_ecr::Ecr, drop_in ecr;
    "acr" => token icp_acr::Acr, drop_in acr;
    "gcp" => token icp_gcp::Gcp, drop_in gcp;
    "quay" => token icp_exchange::Quay;
    "jfrog" => token icp_exchange::Jfrog;
    "cloudsmith" => token icp_exchange::Cloudsmith;
    "vault" => token icp_exchange::Vault;
    "tokenExchange" => token icp_exchange::TokenExchange;
}

/// How a rule's backend is built, once its section is read: called at most once, when
/// a rule naming the backend first matches an image (or by `check-config`).
pub type Recipe = Box<dyn FnOnce() -> Result<Backend, Failure>>;

/// The backend of a rule, built on first use.
pub type Lazy = LazyCell<Result<Backend, Failure>, Recipe>;

/// How a [`Row`] reads a rule's section: the section, the rules file's directory, the
/// environment and the rule's `cacheDuration`, to a recipe or the problem.
type Prepare = fn(Option<Value>, &Path, &Environment, Option<Duration>) -> Result<Recipe, String>;

/// One backend this binary can build.
pub struct Row {
    /// The name a rule's `provider` field gives: `ecr`. The rule's settings for it are
    /// under [`section_key`] of the name.
    pub name: &'static str,
    /// The `matchImages` of its embedded default rule: the well-known registry hosts it
    /// serves with no configuration; empty for a backend that needs configuration.
    pub default_patterns: &'static [&'static str],
    /// The annotation keys with which a pod asks for its own identity through this
    /// backend ([`Build::POD_IDENTITY_ANNOTATIONS`]).
    pub pod_identity_annotations: &'static [&'static str],
    /// Reads a rule's section (`None` when the rule has none) into the backend's typed
    /// settings, and returns how to build it with them, relative paths resolved against
    /// the given directory, with the rule's `cacheDuration`. The error is the problem with
    /// the section.
    prepare: Prepare,
    /// The backend type's name, whose first part is its crate: a log target.
    type_name: fn() -> &'static str,
    /// The drop-in mode of the backend's official provider, if this binary has one.
    pub(crate) drop_in: Option<&'static Mode>,
}

impl Row {
    /// The row of a backend answering from static material.
    #[allow(
        dead_code,
        reason = "unused in a binary built without a backend of the kind"
    )]
    pub const fn statics<B>(drop_in: Option<&'static Mode>) -> Row
    where
        B: Build + StaticBackend + 'static,
        B::Config: 'static,
    {
        Row {
            name: B::NAME,
            default_patterns: B::DEFAULT_PATTERNS,
            pod_identity_annotations: B::POD_IDENTITY_ANNOTATIONS,
            prepare: prepare::<B, StaticKind>,
            type_name: std::any::type_name::<B>,
            drop_in,
        }
    }

    /// The row of a backend fetching tokens.
    #[allow(
        dead_code,
        reason = "unused in a binary built without a backend of the kind"
    )]
    pub const fn token<B>(drop_in: Option<&'static Mode>) -> Row
    where
        B: Build + TokenBackend + 'static,
        B::Config: 'static,
    {
        Row {
            name: B::NAME,
            default_patterns: B::DEFAULT_PATTERNS,
            pod_identity_annotations: B::POD_IDENTITY_ANNOTATIONS,
            prepare: prepare::<B, TokenKind>,
            type_name: std::any::type_name::<B>,
            drop_in,
        }
    }

    /// The backend of a rule with `section` (`None` when it has none) and
    /// `cache_duration` (its `cacheDuration`), built on first use with `base_dir` and
    /// `env`; the error is the problem with the section.
    pub fn lazy(
        &self,
        section: Option<Value>,
        base_dir: &Path,
        env: &Environment,
        cache_duration: Option<Duration>,
    ) -> Result<Lazy, String> {
        (self.prepare)(section, base_dir, env, cache_duration).map(LazyCell::new)
    }

    /// The crate the backend is in, whose logs `-v` shows.
    pub fn crate_name(&self) -> &'static str {
        let type_name = (self.type_name)();
        type_name.split("::").next().unwrap_or(type_name)
    }
}

/// How a backend of each kind becomes a [`Backend`].
trait Kind<B> {
    fn wrap(backend: B) -> Backend;
}

#[allow(
    dead_code,
    reason = "unused in a binary built without a backend of the kind"
)]
struct StaticKind;

impl<B: StaticBackend + 'static> Kind<B> for StaticKind {
    fn wrap(backend: B) -> Backend {
        Backend::statics(backend)
    }
}

#[allow(
    dead_code,
    reason = "unused in a binary built without a backend of the kind"
)]
struct TokenKind;

impl<B: TokenBackend + 'static> Kind<B> for TokenKind {
    fn wrap(backend: B) -> Backend {
        Backend::tokens(backend)
    }
}

/// How long a token whose service states no expiry is taken to live: the rule's
/// `cacheDuration` (default [`STATIC_CACHE_DURATION`], as for credentials that do not
/// expire) plus the cache's [`SAFETY_MARGIN`], so that such a token is used, by the token
/// cache and the kubelet, for `cacheDuration` after it was fetched.
pub fn default_lifetime(cache_duration: Option<Duration>) -> Duration {
    cache_duration.unwrap_or(STATIC_CACHE_DURATION) + SAFETY_MARGIN
}

/// [`Row::prepare`] of backend `B`: its settings from the section, or its default.
fn prepare<B, K>(
    section: Option<Value>,
    base_dir: &Path,
    env: &Environment,
    cache_duration: Option<Duration>,
) -> Result<Recipe, String>
where
    B: Build + 'static,
    B::Config: 'static,
    K: Kind<B>,
{
    let config = match section {
        Some(section) => serde_json::from_value(section).map_err(|e| e.to_string())?,
        None => B::default_config().ok_or_else(|| {
            format!(
                "the {} provider needs a {} section",
                B::NAME,
                section_key(B::NAME)
            )
        })?,
    };
    let (base_dir, env) = (base_dir.to_owned(), env.clone());
    Ok(Box::new(move || {
        let context = Context {
            base_dir: &base_dir,
            env: &env,
        };
        B::build(config, &context)
            .map(|backend| K::wrap(backend.with_default_lifetime(default_lifetime(cache_duration))))
            .map_err(Failure::new)
    }))
}

/// The built-in backend called `name`, or why there is none.
pub fn find(name: &str) -> Result<&'static Row, String> {
    if let Some(row) = TABLE.iter().find(|row| row.name == name) {
        return Ok(row);
    }
    if NAMES.contains(&name) {
        return Err(format!(
            "provider {name:?} is not built into this binary (cargo feature {name:?})"
        ));
    }
    Err(format!(
        "unknown provider {}: expected one of {}",
        icp_core::quote(name),
        NAMES.join(", ")
    ))
}

/// The key of a backend's settings in a rule: its name in camelCase, `dockerConfig` for
/// `docker-config`.
pub fn section_key(name: &str) -> String {
    let mut words = name.split('-');
    let first = words.next().unwrap_or_default().to_owned();
    words.fold(first, |mut key, word| {
        let mut chars = word.chars();
        key.extend(chars.next().map(|c| c.to_ascii_uppercase()));
        key.push_str(chars.as_str());
        key
    })
}

/// The crates of the backends built in, whose logs `-v` shows besides the binary's and
/// the shared `icp_*` crates'.
pub fn log_targets() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(Row::crate_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_backend_is_named() {
        for row in TABLE {
            assert!(NAMES.contains(&row.name), "{}", row.name);
        }
    }

    #[test]
    fn section_keys_are_camel_case_names() {
        let keys: Vec<String> = NAMES.iter().map(|name| section_key(name)).collect();
        assert_eq!(
            keys,
            [
                "dockerConfig",
                "ecr",
                "acr",
                "gcp",
                "quay",
                "jfrog",
                "cloudsmith",
                "vault",
                "tokenExchange"
            ]
        );
    }

    #[test]
    fn a_drop_in_mode_belongs_to_a_built_backend() {
        for row in TABLE {
            if let Some(mode) = row.drop_in {
                assert!(mode.program.contains(row.name), "{}", mode.program);
            }
            assert!(!row.crate_name().is_empty());
        }
    }
}
