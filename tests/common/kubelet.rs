//! How the kubelet reads a plugin's answer (`pkg/credentialprovider/plugin`), as a
//! model: `tests/conformance.rs` checks the model against every case the kubelet's own
//! code gives, and then every answer of ours against the model.

pub mod service_account;

use icp_core::pattern::urls_match_str;
use serde_json::Value;

/// What the kubelet ends up with for one image.
#[derive(Debug, PartialEq, Eq)]
pub struct Observed {
    /// Credentials, in the order the kubelet tries them.
    pub credentials: Vec<(String, String)>,
    /// The `auth` keys (as written) that served the image, sorted.
    pub matched_keys: Vec<String>,
}

/// Reads a plugin run's outcome for `image` as the kubelet does; `Err` is what the
/// kubelet would log instead of using any credential.
pub fn read(
    api_version: &str,
    image: &str,
    exit_code: i32,
    stdout: &str,
) -> Result<Observed, String> {
    if exit_code != 0 {
        return Err(format!("exit status {exit_code}"));
    }
    let value: Value =
        serde_json::from_str(stdout).map_err(|e| format!("json parse error: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("cannot unmarshal non-object".into());
    };
    let actual_version = fields
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if actual_version != api_version {
        return Err(format!("apiVersion did not match: {actual_version}"));
    }
    if fields.get("kind").and_then(Value::as_str) != Some("CredentialProviderResponse") {
        return Err("error decoding: kind".into());
    }
    match fields.get("cacheDuration") {
        None => {}
        Some(Value::String(text)) if go_duration(text) => {}
        Some(_) => return Err("error decoding: cacheDuration".into()),
    }
    let cache_key_type = fields
        .get("cacheKeyType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(cache_key_type, "Image" | "Registry" | "Global") {
        return Err(format!("invalid cacheKeyType {cache_key_type:?}"));
    }
    let mut entries = Vec::new();
    match fields.get("auth") {
        None | Some(Value::Null) => {}
        Some(Value::Object(auth)) => {
            for (key, entry) in auth {
                let Value::Object(entry) = entry else {
                    return Err("error decoding: auth entry".into());
                };
                let field = |name| {
                    entry
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                entries.push((
                    normalise(key),
                    key.clone(),
                    (field("username"), field("password")),
                ));
            }
        }
        Some(_) => return Err("error decoding: auth".into()),
    }
    Ok(lookup(entries, image))
}

/// The keyring lookup: every normalised key that glob-matches, most specific (reverse
/// lexical) first; failing that, Docker Hub credentials for Docker Hub images.
fn lookup(mut entries: Vec<(String, String, (String, String))>, image: &str) -> Observed {
    entries.sort_by(|a, b| b.0.cmp(&a.0));
    let mut matched: Vec<_> = entries
        .iter()
        .filter(|(key, ..)| urls_match_str(key, image).unwrap_or(false))
        .collect();
    if matched.is_empty() && docker_hub_image(image) {
        matched = entries
            .iter()
            .filter(|(key, ..)| key == "index.docker.io")
            .collect();
    }
    let credentials = matched
        .iter()
        .map(|(.., credential)| credential.clone())
        .collect();
    let mut matched_keys: Vec<String> = matched
        .iter()
        .map(|(_, written, _)| written.clone())
        .collect();
    matched_keys.sort();
    Observed {
        credentials,
        matched_keys,
    }
}

fn normalise(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = key.split_at(key.find('/').unwrap_or(key.len()));
    let path = if path.starts_with("/v1/") || path.starts_with("/v2/") {
        &path[3..]
    } else {
        path
    };
    if path.is_empty() || path == "/" {
        host.to_owned()
    } else {
        format!("{host}{path}")
    }
}

fn docker_hub_image(image: &str) -> bool {
    match image.split_once('/') {
        None => !image.is_empty(),
        Some((first, _)) => {
            first == "docker.io" || first == "index.docker.io" || !first.contains(['.', ':'])
        }
    }
}

/// Whether Go's `time.ParseDuration` accepts `text` (negative durations included).
fn go_duration(text: &str) -> bool {
    let rest = text.strip_prefix(['-', '+']).unwrap_or(text);
    if rest == "0" {
        return true;
    }
    let mut rest = rest;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 || rest[..digits] == *"." {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "\u{b5}s", "\u{3bc}s", "ms", "s", "m", "h"]
            .into_iter()
            .filter(|u| rest.starts_with(u))
            .max_by_key(|u| u.len());
        match unit {
            Some(unit) => rest = &rest[unit.len()..],
            None => return false,
        }
    }
    true
}
