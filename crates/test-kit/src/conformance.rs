//! The kubelet's own cases (`testdata/conformance/`, described in its README): where
//! they are, and each file read whole, typed or as JSON values.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The directory of the case files: the workspace's `testdata/conformance`.
pub fn dir() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = kit
        .ancestors()
        .nth(2)
        .expect("crates/test-kit in a workspace");
    workspace.join("testdata").join("conformance")
}

/// The cases of `file` (as `plugin_io_cases.json`) as `T`.
pub fn load<T: DeserializeOwned>(file: &str) -> T {
    let path = dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The cases of `file` as a JSON value.
pub fn value(file: &str) -> serde_json::Value {
    load(file)
}

/// One case of `match_cases.json`: whether `pattern` matches `image` by the kubelet's
/// rule `via` (`matchImages`, `URLsMatchStr` or `keyring`).
#[derive(Debug, Clone, Deserialize)]
pub struct MatchCase {
    /// A `matchImages` pattern, or a key of a docker config or `auth` map.
    pub pattern: String,
    /// The image, as the kubelet passes it.
    pub image: String,
    /// Whether the kubelet finds a match.
    #[serde(rename = "match")]
    pub expected: bool,
    /// Which of the kubelet's matching rules the case is for.
    pub via: String,
}

/// Every case of `match_cases.json`.
pub fn match_cases() -> Vec<MatchCase> {
    load("match_cases.json")
}
