//! Reading a docker `config.json` or legacy `.dockercfg`: inline credentials under
//! normalised keys, and the credential helpers it names (`credHelpers`, `credsStore`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine;
use icp_core::{Secret, quote};
use serde_json::{Map, Value};

use crate::keyring::{self, normalize_key};

/// Largest docker config file read; a larger one is refused rather than read whole.
pub const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// What is wrong with a docker config file. Messages name the file and the entry, and
/// never a credential or a piece of the file's content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("docker config {origin}: {cause}")]
    Read {
        /// The file, or wherever else the config came from.
        origin: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_SIZE`].
    #[error("docker config {origin}: larger than {MAX_FILE_SIZE} bytes")]
    TooLarge {
        /// The file, or wherever else the config came from.
        origin: String,
    },
    /// The file is not JSON.
    #[error("docker config {origin}: invalid JSON at line {line} column {column}: {reason}")]
    Json {
        /// The file, or wherever else the config came from.
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected (never any of the file's content).
        reason: String,
    },
    /// The JSON does not have the shape of a docker config.
    #[error("docker config {origin}: {place}: {problem}")]
    Shape {
        /// The file, or wherever else the config came from.
        origin: String,
        /// Where in the file, as in `auths["quay.io"].auth`.
        place: String,
        /// What is wrong there.
        problem: &'static str,
    },
    /// A credential helper name that is not a bare name; such a helper is never run.
    #[error(
        "docker config {origin}: {place}: {name} is not a bare credential helper name (letters, digits, '.', '_', '-')"
    )]
    HelperName {
        /// The file, or wherever else the config came from.
        origin: String,
        /// Where in the file, as in `credHelpers["quay.io"]`.
        place: String,
        /// The name, quoted and cut short.
        name: String,
    },
}

/// One usable entry of a docker config: a normalised key and its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Username for the registry.
    pub username: String,
    /// Password or token for the registry.
    pub password: Secret,
}

/// Everything of a docker config that says where credentials come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// Inline credentials (`auths`, or a legacy file's top level) by normalised key.
    pub auths: BTreeMap<String, Entry>,
    /// `credHelpers`: the helper name for a registry, keyed as [`keyring::registry_key`]
    /// keys registries. An empty name sends the registry back to `auths`, as in docker.
    ///
    /// [`keyring::registry_key`]: crate::keyring::registry_key
    pub cred_helpers: BTreeMap<String, String>,
    /// `credsStore`: the helper for every registry `credHelpers` does not name; `None`
    /// when unset or empty.
    pub creds_store: Option<String>,
}

impl Contents {
    /// The helper docker asks for credentials of `registry` (a key as in
    /// [`Contents::cred_helpers`]): its `credHelpers` entry, else `credsStore`. `None`
    /// means `auths` serve it.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        match self.cred_helpers.get(registry) {
            Some(name) => Some(name.as_str()).filter(|name| !name.is_empty()),
            None => self.creds_store.as_deref(),
        }
    }

    /// Every helper the file names, once each, sorted.
    pub fn helpers(&self) -> BTreeSet<&str> {
        self.cred_helpers
            .values()
            .map(String::as_str)
            .chain(self.creds_store.as_deref())
            .filter(|name| !name.is_empty())
            .collect()
    }
}

/// Longest credential helper name accepted.
pub const MAX_HELPER_NAME: usize = 100;

/// Whether `name` may name a credential helper (the program `docker-credential-<name>`):
/// a bare name of ASCII letters, digits, `.`, `_` and `-`, never a path.
pub fn is_helper_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HELPER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A docker config key (or any server string) as messages show it: userinfo such as
/// `robot:hunter2@` masked, then quoted and cut short with [`icp_core::quote`].
pub fn quote_key(key: &str) -> String {
    let scheme_end = key
        .find("://")
        .filter(|&i| {
            let scheme = &key.as_bytes()[..i];
            scheme.first().is_some_and(u8::is_ascii_alphabetic)
                && scheme
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
        })
        .map_or(0, |i| i + 3);
    // Everything up to the last '@' may be userinfo, however the rest is written.
    match key[scheme_end..].rfind('@') {
        Some(at) => quote(&format!(
            "{}***{}",
            &key[..scheme_end],
            &key[scheme_end + at..]
        )),
        None => quote(key),
    }
}

/// Reads and parses the file at `path`; see [`parse_contents`].
pub fn load(path: &Path) -> Result<Contents, Error> {
    parse_contents(&read_capped(path)?, &icp_core::quote::path(path))
}

/// The inline credentials of a docker config that came from `origin`; see
/// [`parse_contents`]. For configs whose helpers must never run (those a server sent).
pub fn parse(bytes: &[u8], origin: &str) -> Result<BTreeMap<String, Entry>, Error> {
    parse_contents(bytes, origin).map(|contents| contents.auths)
}

/// Parses a docker config that came from `origin` (named in errors).
///
/// A file with `auths`, `credHelpers` or `credsStore` at top level is a `config.json`;
/// any other is a legacy `.dockercfg` with its entries at top level. Entries are keyed by
/// normalised key; where two keys normalise to the same one, the first in sorted order of
/// the written keys wins, as with the kubelet's first try. Entries without a username or
/// password (identity tokens, registries kept in a helper) are left out of `auths`. A
/// helper name that is not a bare name is an error.
pub fn parse_contents(bytes: &[u8], origin: &str) -> Result<Contents, Error> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
        origin: origin.to_owned(),
        line: e.line(),
        column: e.column(),
        reason: json_reason(&e),
    })?;
    let shape = |place: String, problem| Error::Shape {
        origin: origin.to_owned(),
        place,
        problem,
    };
    let Value::Object(top) = value else {
        return Err(shape("top level".into(), "expected a JSON object"));
    };
    let config_json = ["auths", CRED_HELPERS, CREDS_STORE]
        .iter()
        .any(|field| top.contains_key(*field));
    let (entries, prefix) = match top.get("auths") {
        Some(Value::Object(auths)) => (Some(auths), "auths"),
        Some(_) => return Err(shape("auths".into(), "expected an object of registries")),
        None if config_json => (None, "auths"),
        None => (Some(&top), ""),
    };
    let mut contents = Contents::default();
    for (key, entry) in entries.into_iter().flatten() {
        let place = if prefix.is_empty() {
            quote_key(key)
        } else {
            format!("{prefix}[{}]", quote_key(key))
        };
        let Value::Object(entry) = entry else {
            if prefix.is_empty() {
                // A legacy file holds nothing but registries; skip whatever else is there.
                continue;
            }
            return Err(shape(place, "expected an object"));
        };
        let Some(credential) = credential(entry)
            .map_err(|(field, problem)| shape(format!("{place}.{field}"), problem))?
        else {
            tracing::debug!(entry = %place, "docker config entry has no username and password; skipped");
            continue;
        };
        if let Some(normalised) = usable_key(key, &place) {
            contents.auths.entry(normalised).or_insert(credential);
        }
    }
    if config_json {
        contents.cred_helpers = cred_helpers(&top, origin)?;
        contents.creds_store = match top.get(CREDS_STORE) {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) if name.is_empty() => None,
            Some(Value::String(name)) => Some(helper_name(name, CREDS_STORE.into(), origin)?),
            Some(_) => return Err(shape(CREDS_STORE.into(), "expected a helper name")),
        };
    }
    Ok(contents)
}

const CRED_HELPERS: &str = "credHelpers";
const CREDS_STORE: &str = "credsStore";

/// `credHelpers`, keyed by registry. Keys that are not a plain registry (a path, a
/// pattern) could never match an image's registry, in docker or here: skipped.
fn cred_helpers(top: &Map<String, Value>, origin: &str) -> Result<BTreeMap<String, String>, Error> {
    let shape = |place: String, problem| Error::Shape {
        origin: origin.to_owned(),
        place,
        problem,
    };
    let helpers = match top.get(CRED_HELPERS) {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(helpers)) => helpers,
        Some(_) => {
            return Err(shape(
                CRED_HELPERS.into(),
                "expected an object of registries to helper names",
            ));
        }
    };
    let mut out = BTreeMap::new();
    for (key, name) in helpers {
        let place = format!("{CRED_HELPERS}[{}]", quote_key(key));
        let name = match name {
            Value::String(name) if name.is_empty() => String::new(),
            Value::String(name) => helper_name(name, place.clone(), origin)?,
            _ => return Err(shape(place, "expected a helper name")),
        };
        let Some(normalised) = usable_key(key, &place) else {
            continue;
        };
        match keyring::plain_registry(&normalised) {
            Some(registry) => {
                out.entry(registry.to_owned()).or_insert(name);
            }
            None => {
                tracing::warn!(entry = %place, "credHelpers key is not a registry host (no path, no pattern); skipped");
            }
        }
    }
    Ok(out)
}

/// `name` when it is a bare helper name; an error naming `place` otherwise.
fn helper_name(name: &str, place: String, origin: &str) -> Result<String, Error> {
    if is_helper_name(name) {
        Ok(name.to_owned())
    } else {
        Err(Error::HelperName {
            origin: origin.to_owned(),
            place,
            name: quote(name),
        })
    }
}

/// The normalised form of `key`, or `None` (with a warning naming `place`) when the
/// kubelet would not accept it.
fn usable_key(key: &str, place: &str) -> Option<String> {
    match normalize_key(key) {
        Ok(normalised) => Some(normalised),
        Err(error) => {
            // A key with userinfo may carry a password the kubelet's URL parser quotes.
            let reason = if key.contains('@') {
                "not a URL the kubelet accepts".to_owned()
            } else {
                quote(&error.to_string())
            };
            tracing::warn!(entry = %place, %reason, "docker config key is not a registry the kubelet accepts; skipped");
            None
        }
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>, Error> {
    let origin = || icp_core::quote::path(path);
    icp_core::io::read_file(path, MAX_FILE_SIZE).map_err(|cause| match cause.kind() {
        std::io::ErrorKind::FileTooLarge => Error::TooLarge { origin: origin() },
        _ => Error::Read {
            origin: origin(),
            cause,
        },
    })
}

/// serde_json's message for syntax errors says what was expected and where; its
/// messages for other errors can quote content, so those get a generic reason.
fn json_reason(error: &serde_json::Error) -> String {
    match error.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            let message = error.to_string();
            message
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_owned()
        }
        _ => "not a JSON document".to_owned(),
    }
}

/// The credential of one entry: `auth` (base64 of `user:password`) wins over
/// `username`/`password`, as in the kubelet. `Ok(None)` when the entry has neither.
fn credential(entry: &Map<String, Value>) -> Result<Option<Entry>, (&'static str, &'static str)> {
    let string = |field: &'static str| match entry.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err((field, "expected a string")),
    };
    if let Some(auth) = string("auth")?.filter(|a| !a.is_empty()) {
        let decoded = decode_auth(auth).map_err(|_| ("auth", "not valid base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| ("auth", "decoded value is not UTF-8"))?;
        let (username, password) = decoded.split_once(':').ok_or((
            "auth",
            "decoded value has no ':' between username and password",
        ))?;
        return Ok(Some(Entry {
            username: username.to_owned(),
            password: Secret::new(password),
        }));
    }
    let username = string("username")?;
    let password = string("password")?;
    if username.is_none() && password.is_none() {
        return Ok(None);
    }
    Ok(Some(Entry {
        username: username.unwrap_or_default().to_owned(),
        password: Secret::new(password.unwrap_or_default()),
    }))
}

/// The bytes of an `auth` value, decoded as the kubelet decodes it: a value whose
/// space-trimmed form ends in `=` goes to Go's padded standard decoder as it is (so a
/// leading or trailing space is an error), any other value to the unpadded one; both skip
/// `\r` and `\n` wherever they stand, and neither checks the unused bits of the last
/// character.
fn decode_auth(auth: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const PADDED: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    const UNPADDED: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    let engine = if auth.trim().ends_with('=') {
        &PADDED
    } else {
        &UNPADDED
    };
    let unbroken: String = auth.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    engine.decode(unbroken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_str(content: &str) -> Result<Contents, Error> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content.as_bytes()).unwrap();
        load(file.path())
    }

    #[test]
    fn reads_auths_and_legacy_dockercfg() {
        // "dXNlcjpwYXNzOndvcmQ=" is base64 of "user:pass:word".
        let entries = load_str(
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNzOndvcmQ="},
                "quay.io": {"username": "robot", "password": "s3cret"},
                "ghcr.io": {"identitytoken": "x"}}, "credsStore": "desktop"}"#,
        )
        .unwrap()
        .auths;
        assert_eq!(
            entries.keys().collect::<Vec<_>>(),
            ["index.docker.io", "quay.io"]
        );
        assert_eq!(entries["index.docker.io"].username, "user");
        assert_eq!(entries["index.docker.io"].password.expose(), "pass:word");
        assert_eq!(entries["quay.io"].password.expose(), "s3cret");

        let legacy = load_str(
            r#"{"https://registry.example/v1/": {"auth": "dXNlcjpwYXNzOndvcmQ=", "email": "a@b"}}"#,
        )
        .unwrap()
        .auths;
        assert_eq!(legacy.keys().collect::<Vec<_>>(), ["registry.example"]);
    }

    /// The kubelet's `decodeDockerConfigFieldAuth`, case by case.
    #[test]
    fn auth_is_decoded_as_the_kubelet_decodes_it() {
        let decoded = |auth: &str| {
            let content = format!(
                r#"{{"auths": {{"quay.io": {{"auth": {}}}}}}}"#,
                serde_json::json!(auth)
            );
            load_str(&content).map(|contents| {
                let entry = &contents.auths["quay.io"];
                format!("{}:{}", entry.username, entry.password.expose())
            })
        };
        let cases = [
            ("Zm9vOmJhcg==", Some("foo:bar"), "padded"),
            (
                "Zm9vOmJhcg",
                Some("foo:bar"),
                "unpadded goes to the raw decoder",
            ),
            ("Zm9vOmJh\ncg==", Some("foo:bar"), "a line break is skipped"),
            (
                "Zm9v\r\nOmJhcg",
                Some("foo:bar"),
                "CR LF skipped in unpadded data",
            ),
            (
                "Zm9vOmJhcg==\n",
                Some("foo:bar"),
                "a trailing newline is skipped",
            ),
            (
                "Zm9vOmJhcg== ",
                None,
                "a trailing space after padding is an error",
            ),
            (" Zm9vOmJhcg==", None, "a leading space is an error"),
            ("Zm9vOmJhcg= ", None, "wrong padding"),
            ("Zm9vOmJhcg=x", None, "data after padding"),
            ("Zm9vOmJhcg=", None, "short padding"),
            ("Zm9vOmJhcg ", None, "a space in unpadded data"),
            ("Zm9vOmJ=", Some("foo:b"), "unused bits are not checked"),
        ];
        for (auth, want, why) in cases {
            match (decoded(auth), want) {
                (Ok(got), Some(want)) => assert_eq!(got, want, "{why}: {auth:?}"),
                (Err(error), None) => {
                    assert!(
                        error.to_string().contains("not valid base64"),
                        "{why}: {error}"
                    )
                }
                (got, want) => panic!("{why}: {auth:?} gave {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_place_and_never_the_secret() {
        let cases = [
            (
                "{\"auths\": {\n  \"quay.io\": {\"auth\": \"hunter2\"\n",
                "line 3",
            ),
            (
                r#"{"auths": {"quay.io": {"auth": "aHVudGVyMg=="}}}"#,
                "auths[\"quay.io\"].auth: decoded value has no ':'",
            ),
            (
                r#"{"auths": {"quay.io": {"auth": "hunter2!"}}}"#,
                "auths[\"quay.io\"].auth: not valid base64",
            ),
            (
                r#"{"auths": {"quay.io": {"password": ["hunter2"]}}}"#,
                "auths[\"quay.io\"].password: expected a string",
            ),
            (r#"{"auths": "hunter2"}"#, "auths: expected an object"),
            (r#"["hunter2"]"#, "top level: expected a JSON object"),
            (
                r#"{"auths": {"quay.io": "hunter2"}}"#,
                "auths[\"quay.io\"]: expected an object",
            ),
        ];
        for (content, expected) in cases {
            let message = load_str(content).unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(!message.contains("hunter2"), "{message:?} leaks a secret");
        }
    }

    #[test]
    fn reads_credential_helpers_as_docker_does() {
        let contents = load_str(
            r#"{"credHelpers": {"https://index.docker.io/v1/": "pass", "quay.io": "ecr-login",
                "registry.example:5000": "", "quay.io/team": "x", "*.example": "x"},
                "credsStore": "desktop.exe"}"#,
        )
        .unwrap();
        assert!(contents.auths.is_empty());
        assert_eq!(
            contents.cred_helpers.iter().collect::<Vec<_>>(),
            [
                (&"index.docker.io".to_owned(), &"pass".to_owned()),
                (&"quay.io".to_owned(), &"ecr-login".to_owned()),
                (&"registry.example:5000".to_owned(), &String::new()),
            ]
        );
        assert_eq!(contents.helper_for("index.docker.io"), Some("pass"));
        assert_eq!(contents.helper_for("quay.io"), Some("ecr-login"));
        assert_eq!(contents.helper_for("registry.example:5000"), None);
        assert_eq!(contents.helper_for("ghcr.io"), Some("desktop.exe"));
        assert_eq!(
            contents.helpers().into_iter().collect::<Vec<_>>(),
            ["desktop.exe", "ecr-login", "pass"]
        );

        // A config.json holding only helpers is not a legacy file of two registries.
        let only = load_str(r#"{"credsStore": ""}"#).unwrap();
        assert_eq!(only, Contents::default());
    }

    #[test]
    fn helper_names_are_bare_names() {
        for name in ["pass", "ecr-login", "desktop.exe", "my_helper-2"] {
            assert!(is_helper_name(name), "{name}");
        }
        let long = "x".repeat(MAX_HELPER_NAME + 1);
        for name in [
            "../pass",
            "/usr/bin/pass",
            "a/b",
            "pass x",
            "pass;id",
            "",
            &long,
        ] {
            assert!(!is_helper_name(name), "{name}");
        }
        let cases = [
            (
                r#"{"credsStore": "../../bin/sh"}"#,
                "credsStore: \"../../bin/sh\" is not a bare",
            ),
            (
                r#"{"credHelpers": {"quay.io": "a/b"}}"#,
                "credHelpers[\"quay.io\"]: \"a/b\" is not",
            ),
            (
                r#"{"credHelpers": {"quay.io": 1}}"#,
                "credHelpers[\"quay.io\"]: expected a helper name",
            ),
            (
                r#"{"credHelpers": ["pass"]}"#,
                "credHelpers: expected an object",
            ),
            (
                r#"{"credsStore": {}}"#,
                "credsStore: expected a helper name",
            ),
        ];
        for (content, expected) in cases {
            let message = load_str(content).unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        let message = load_str(&format!(
            r#"{{"credsStore": "{}/x"}}"#,
            "a".repeat(3_000_000)
        ))
        .unwrap_err()
        .to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
    }

    #[test]
    fn keys_in_errors_are_cut_short_and_lose_their_userinfo() {
        let huge = format!("registry.example/{}", "a".repeat(3_000_000));
        let message = load_str(&format!(r#"{{"auths": {{"{huge}": {{"auth": "!"}}}}}}"#))
            .unwrap_err()
            .to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(message.contains("(3000017 bytes)"), "{message}");
        assert!(message.ends_with(".auth: not valid base64"), "{message}");

        for key in [
            "https://robot:hunter2@registry.example.com",
            "robot:hunter2@registry.example.com/team",
            "https://robot:hun/ter2@registry.example.com",
            "https://robot:hunter2@@registry.example.com",
        ] {
            for content in [
                format!(r#"{{"auths": {{"{key}": {{"auth": "!"}}}}}}"#),
                format!(r#"{{"credHelpers": {{"{key}": "a b"}}}}"#),
                format!(r#"{{"{key}": {{"auth": "!"}}}}"#),
            ] {
                let message = load_str(&content).unwrap_err().to_string();
                assert!(message.contains("***@registry.example.com"), "{message}");
                assert!(
                    !message.contains("hunter2") && !message.contains("robot"),
                    "{message}"
                );
                assert!(!message.contains("ter2"), "{message}");
            }
        }
        assert_eq!(quote_key("quay.io/a@b"), "\"***@b\"");
        assert_eq!(quote_key("https://quay.io"), "\"https://quay.io\"");
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let message = load(Path::new("/nonexistent/config.json"))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("docker config /nonexistent/config.json: "),
            "{message}"
        );
    }
}
