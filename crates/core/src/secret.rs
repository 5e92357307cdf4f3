//! A string that never shows itself in logs or debug output.

use std::fmt;

/// How many characters in a row of a secret make a fragment of it that
/// [`Secret::remove_from`] removes: short enough for a part cut short, long enough that
/// ordinary words and names never match by chance.
pub const MIN_FRAGMENT: usize = 12;

/// A password, token or key.
///
/// `Debug` prints `<redacted>` and there is no `Display`, so a secret that ends up in a
/// log line or an error message by accident shows nothing. Read it with [`Secret::expose`]
/// only where it must leave the process: the plugin's response, or a request to the cloud.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every fragment of this secret removed: each run of token characters
    /// (letters, digits, `-`, `_`, `.`, `=`, `+`, `/`) that shares [`MIN_FRAGMENT`]
    /// characters in a row with the secret is replaced by `[token removed]`. That takes
    /// out the whole, each dot-separated part of a JWT, and a part an upstream cut short;
    /// for error texts of upstream services that may echo what they were sent.
    pub fn remove_from(&self, text: &str) -> String {
        let is_token_char = |c: char| c.is_ascii_alphanumeric() || "-_.=+/".contains(c);
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(is_token_char) {
            out.push_str(&rest[..start]);
            let run = &rest[start..];
            let end = run.find(|c| !is_token_char(c)).unwrap_or(run.len());
            let (run, after) = run.split_at(end);
            if self.shares_a_fragment(run) {
                out.push_str("[token removed]");
            } else {
                out.push_str(run);
            }
            rest = after;
        }
        out.push_str(rest);
        out
    }

    /// Whether `run` (ASCII) holds [`MIN_FRAGMENT`] characters in a row of the secret.
    fn shares_a_fragment(&self, run: &str) -> bool {
        run.len() >= MIN_FRAGMENT
            && (0..=run.len() - MIN_FRAGMENT).any(|at| self.0.contains(&run[at..at + MIN_FRAGMENT]))
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<redacted>)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn every_fragment_of_a_token_is_removed_from_a_text() {
        let header = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9";
        let payload = "eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6dGVhbTphcHAifQ";
        let signature = "c2lnbmF0dXJlLWJ5dGVzLW9mLXRoZS1rZXk";
        let token = Secret::new(format!("{header}.{payload}.{signature}"));
        let text = format!(
            "InvalidIdentityToken: the token {} is invalid; header {header}; cut {}...; payload={payload}",
            token.expose(),
            &signature[..14]
        );
        let cleaned = token.remove_from(&text);
        for part in [header, payload, signature, &signature[..14]] {
            assert!(!cleaned.contains(part), "{cleaned}");
        }
        assert_eq!(
            cleaned,
            "InvalidIdentityToken: the token [token removed] is invalid; header [token removed]; cut [token removed]; [token removed]"
        );
        assert_eq!(
            token.remove_from("AssumeRoleWithWebIdentity failed: é"),
            "AssumeRoleWithWebIdentity failed: é"
        );
    }
}
