//! The environment a backend reads its settings from, passed in as a value.
//!
//! No backend reads `std::env` itself: the binary hands each one an [`Environment`], the
//! process's own in production, a fixed set of variables in tests (so tests never mutate
//! the process environment, and never need a lock for it).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;

/// Environment variables, read on demand from the process or from a fixed set.
#[derive(Clone, Default)]
pub struct Environment {
    /// `None`: the process's environment, read at each look-up.
    fixed: Option<BTreeMap<OsString, OsString>>,
}

impl Environment {
    /// The process's environment, read at each look-up (nothing is copied up front).
    pub fn process() -> Environment {
        Environment { fixed: None }
    }

    /// No variables at all: a test's starting point.
    pub fn empty() -> Environment {
        Environment {
            fixed: Some(BTreeMap::new()),
        }
    }

    /// Exactly these variables and no others: what a test passes.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Environment
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        Environment {
            fixed: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The same environment with `name` set to `value` (a fixed copy of the process's
    /// environment when this one reads the process's).
    pub fn with(self, name: impl Into<OsString>, value: impl Into<OsString>) -> Environment {
        let mut vars = self.fixed.unwrap_or_else(|| std::env::vars_os().collect());
        vars.insert(name.into(), value.into());
        Environment { fixed: Some(vars) }
    }

    /// The variable `name` as raw bytes, when set (empty included).
    pub fn get_os(&self, name: &str) -> Option<OsString> {
        match &self.fixed {
            None => std::env::var_os(name),
            Some(vars) => vars.get(OsStr::new(name)).cloned(),
        }
    }

    /// The variable `name`, when it is set to valid UTF-8 (empty included).
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_os(name).and_then(|value| value.into_string().ok())
    }

    /// The variable `name`, when it is set to valid UTF-8 that is not empty: most settings
    /// treat an empty variable as unset.
    pub fn non_empty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|value| !value.is_empty())
    }

    /// Every variable of a fixed environment, by name; `None` for the process's, which is
    /// read at each look-up and never listed. For handing the same variables to a library
    /// that takes them as a whole (the AWS SDK).
    pub fn fixed(&self) -> Option<impl Iterator<Item = (&OsStr, &OsStr)>> {
        self.fixed
            .as_ref()
            .map(|vars| vars.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())))
    }
}

/// Names only: values may be secrets (`AWS_SECRET_ACCESS_KEY`, `AZURE_CLIENT_SECRET`).
impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fixed {
            None => f.write_str("Environment(process)"),
            Some(vars) => f.debug_set().entries(vars.keys()).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_environment_holds_only_its_variables_and_never_shows_values() {
        let env = Environment::from_pairs([("A", "1"), ("EMPTY", "")]);
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("EMPTY").as_deref(), Some(""));
        assert_eq!(env.non_empty("EMPTY"), None);
        assert_eq!(env.get("PATH"), None);
        let env = env.with("SECRET", "hunter2");
        assert_eq!(env.get("SECRET").as_deref(), Some("hunter2"));
        let shown = format!("{env:?}");
        assert!(
            shown.contains("SECRET") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn the_process_environment_is_read_at_each_look_up() {
        let env = Environment::process();
        assert_eq!(env.get_os("PATH"), std::env::var_os("PATH"));
        assert_eq!(format!("{env:?}"), "Environment(process)");
    }

    #[test]
    fn only_a_fixed_environment_lists_its_variables() {
        assert!(Environment::process().fixed().is_none());
        let env = Environment::from_pairs([("B", "2"), ("A", "1")]);
        let listed: Vec<(&OsStr, &OsStr)> = env.fixed().unwrap().collect();
        assert_eq!(
            listed,
            [
                (OsStr::new("A"), OsStr::new("1")),
                (OsStr::new("B"), OsStr::new("2"))
            ]
        );
    }
}
