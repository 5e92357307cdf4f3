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

/// Whether Go's `time.ParseDuration` accepts `text` (negative durations included): a
/// port of its algorithm, so a duration beyond an int64 of nanoseconds
/// (`2562047h47m16.854775807s`) is refused as the kubelet refuses it.
pub fn go_duration(text: &str) -> bool {
    go_duration_nanos(text).is_some()
}

/// The nanoseconds Go's `time.ParseDuration` reads in `text`, or `None` where it fails.
pub fn go_duration_nanos(text: &str) -> Option<i64> {
    const OVERFLOW: u64 = 1 << 63;
    let negative = text.starts_with('-');
    let mut s = text.strip_prefix(['-', '+']).unwrap_or(text);
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s.starts_with('.') || s.starts_with(|c: char| c.is_ascii_digit())) {
            return None;
        }
        // leadingInt
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let mut v: u64 = 0;
        for d in s[..digits].bytes() {
            if v > OVERFLOW / 10 {
                return None;
            }
            v = v * 10 + u64::from(d - b'0');
            if v > OVERFLOW {
                return None;
            }
        }
        let pre = digits != 0;
        s = &s[digits..];
        // leadingFraction
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let mut overflow = false;
            for d in rest[..digits].bytes() {
                if overflow {
                    continue;
                }
                if f > (OVERFLOW - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(d - b'0');
                if y > OVERFLOW {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            post = digits != 0;
            s = &rest[digits..];
        }
        if !pre && !post {
            return None;
        }
        let unit_end = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit: u64 = match &s[..unit_end] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        s = &s[unit_end..];
        if v > OVERFLOW / unit {
            return None;
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > OVERFLOW {
                return None;
            }
        }
        total = total.checked_add(v)?;
        if total > OVERFLOW {
            return None;
        }
    }
    if negative {
        Some((total as i64).wrapping_neg())
    } else if total > OVERFLOW - 1 {
        None
    } else {
        Some(total as i64)
    }
}
