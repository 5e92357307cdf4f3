//! The registry's `WWW-Authenticate` challenge, parsed leniently and without panics.
//!
//! RFC 7235: `challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`, with
//! `auth-param = token BWS "=" BWS ( token / quoted-string )`, and several challenges may
//! share one header, separated by commas. Real registries add spaces where the grammar
//! has none, leave values unquoted, or quote them with escapes; garbage yields fewer
//! parameters, never a panic.

/// One challenge: a scheme and its parameters (names in lowercase, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme as sent (`Bearer`, `Basic`, ...).
    pub scheme: String,
    /// The parameters, names lowercased.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The first value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a `Bearer` challenge tells a client about where to get a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    /// The token endpoint.
    pub realm: String,
    /// The `service` to ask a token for, when the challenge names one.
    pub service: Option<String>,
}

/// The first `Bearer` challenge with a non-empty `realm` among `headers` (the values of
/// every `WWW-Authenticate` header).
pub fn bearer<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Bearer> {
    headers.into_iter().flat_map(parse).find_map(|challenge| {
        if !challenge.scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let realm = challenge
            .param("realm")
            .filter(|r| !r.is_empty())?
            .to_owned();
        let service = challenge
            .param("service")
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Some(Bearer { realm, service })
    })
}

/// Parses every challenge of one header value.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut cursor = Cursor {
        chars: header.chars().collect(),
        pos: 0,
    };
    let mut challenges = Vec::new();
    loop {
        cursor.skip(|c| c == ',' || is_space(c));
        if cursor.at_end() {
            break;
        }
        let scheme = cursor.token();
        if scheme.is_empty() {
            // Not a token character: skip it and look for the next challenge.
            cursor.pos += 1;
            continue;
        }
        let mut challenge = Challenge {
            scheme,
            params: Vec::new(),
        };
        parse_params(&mut cursor, &mut challenge);
        challenges.push(challenge);
    }
    challenges
}

/// Reads `name = value` pairs until the next challenge's scheme or the end.
fn parse_params(cursor: &mut Cursor, challenge: &mut Challenge) {
    loop {
        cursor.skip(|c| c == ',' || is_space(c));
        let start = cursor.pos;
        let name = cursor.token();
        if name.is_empty() {
            if cursor.at_end() || !skip_garbage(cursor) {
                return;
            }
            continue;
        }
        cursor.skip(is_space);
        if cursor.peek() != Some('=') {
            // A token not followed by `=` starts the next challenge (or is a token68,
            // which a bearer challenge never has): leave it for the caller.
            cursor.pos = start;
            return;
        }
        cursor.pos += 1;
        cursor.skip(is_space);
        let value = if cursor.peek() == Some('"') {
            cursor.quoted()
        } else {
            cursor.until_separator()
        };
        challenge.params.push((name.to_ascii_lowercase(), value));
    }
}

/// Skips a malformed parameter up to the next separator, quoted strings whole. Returns
/// whether anything was skipped.
fn skip_garbage(cursor: &mut Cursor) -> bool {
    let start = cursor.pos;
    while let Some(c) = cursor.peek() {
        match c {
            ',' | ' ' | '\t' => break,
            '"' => {
                cursor.quoted();
            }
            _ => cursor.pos += 1,
        }
    }
    cursor.pos > start
}

struct Cursor {
    chars: Vec<char>,
    pos: usize,
}

impl Cursor {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip(&mut self, mut what: impl FnMut(char) -> bool) {
        while self.peek().is_some_and(&mut what) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> String {
        let start = self.pos;
        self.skip(is_token);
        self.chars[start..self.pos].iter().collect()
    }

    /// An unquoted value: everything up to a comma or a space.
    fn until_separator(&mut self) -> String {
        let start = self.pos;
        self.skip(|c| c != ',' && !is_space(c));
        self.chars[start..self.pos].iter().collect()
    }

    /// A quoted string starting at the opening quote, with `\` escapes; an unterminated
    /// one runs to the end.
    fn quoted(&mut self) -> String {
        self.pos += 1;
        let mut value = String::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                '"' => break,
                '\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.pos += 1;
                    }
                }
                c => value.push(c),
            }
        }
        value
    }
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 7230 `tchar`.
fn is_token(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer_of(header: &str) -> Option<Bearer> {
        bearer([header])
    }

    fn bearer_is(realm: &str, service: Option<&str>) -> Option<Bearer> {
        Some(Bearer {
            realm: realm.to_owned(),
            service: service.map(str::to_owned),
        })
    }

    #[test]
    fn reads_the_acr_challenge() {
        assert_eq!(
            bearer_of(
                r#"Bearer realm="https://myacr.azurecr.io/oauth2/token",service="myacr.azurecr.io""#
            ),
            bearer_is(
                "https://myacr.azurecr.io/oauth2/token",
                Some("myacr.azurecr.io")
            )
        );
    }

    #[test]
    fn tolerates_odd_spacing_case_and_quoting() {
        let expected = bearer_is("https://r.example/token", Some("r.example"));
        for header in [
            r#"Bearer realm=https://r.example/token,service=r.example"#,
            r#"bearer   realm = "https://r.example/token" ,  service= r.example"#,
            "BEARER\trealm=\"https://r.example/token\",\tService=\"r.example\"",
            r#"Bearer Realm="https://r.example/token", service="r.example", scope="repository:x:pull""#,
            r#"Bearer service="r.example",realm="https://r.example/token""#,
            r#"Bearer realm="https://r.example/token",,, service="r.example","#,
            r#"  ,Bearer realm="https://r.example/token",service="r.example"  "#,
            r#"Bearer realm="https://r.example/token",service="r.example",realm="https://evil.example/""#,
        ] {
            assert_eq!(bearer_of(header), expected, "{header}");
        }
    }

    #[test]
    fn handles_escapes_and_unterminated_quotes() {
        assert_eq!(
            bearer_of(r#"Bearer realm="https://r.example/a\"b",service="s\\x""#),
            bearer_is("https://r.example/a\"b", Some("s\\x"))
        );
        assert_eq!(
            bearer_of(r#"Bearer realm="https://r.example/token"#),
            bearer_is("https://r.example/token", None)
        );
        assert_eq!(bearer_of(r#"Bearer realm="x\"#), bearer_is("x", None));
    }

    #[test]
    fn finds_bearer_among_several_challenges() {
        let header = r#"Basic realm="Registry", Bearer realm="https://r.example/token", service="r.example""#;
        let challenges = parse(header);
        assert_eq!(challenges.len(), 2);
        assert_eq!(challenges[0].scheme, "Basic");
        assert_eq!(challenges[0].param("realm"), Some("Registry"));
        assert_eq!(
            bearer_of(header),
            bearer_is("https://r.example/token", Some("r.example"))
        );
        // Across several header lines too.
        assert_eq!(
            bearer([
                r#"Basic realm="x""#,
                r#"Bearer realm="https://r.example/token""#
            ]),
            bearer_is("https://r.example/token", None)
        );
        // A token68 challenge before it does not hide it.
        assert_eq!(
            bearer_of(r#"Negotiate abc== , Bearer realm="https://r.example/t""#),
            bearer_is("https://r.example/t", None)
        );
    }

    #[test]
    fn refuses_what_is_no_bearer_challenge() {
        for header in [
            "",
            "Bearer",
            "Bearer realm=",
            r#"Bearer realm="""#,
            r#"Basic realm="https://r.example/token""#,
            r#"Bearerx realm="https://r.example/token""#,
            r#"realm="https://r.example/token""#,
            ",,,",
            "\"\"\"",
            "=====",
            "Bearer ==== realm",
        ] {
            assert_eq!(bearer_of(header), None, "{header:?}");
        }
    }

    #[test]
    fn survives_garbage() {
        for header in [
            "Bearer realm=\u{0}\u{7f}\u{1f600}",
            "Bearer \u{1f600}=\"x\" realm=\"https://r.example/\"",
            "\u{feff}Bearer realm=\"x\"",
            "Bearer realm=\"\\",
            "Bearer ,=,=,=\"",
            "@@@ Bearer realm=a",
        ] {
            let _ = parse(header);
            let _ = bearer_of(header);
        }
        assert_eq!(bearer_of("@@@ Bearer realm=a"), bearer_is("a", None));
        assert_eq!(
            bearer_of("Bearer \u{1f600}=\"x\" realm=\"https://r.example/\""),
            bearer_is("https://r.example/", None)
        );
        // Pseudo-random headers from the grammar's characters and a few others.
        let alphabet: Vec<char> = "Bearer realm=\"\\, \t=service/:é\u{0}\u{1f600}"
            .chars()
            .collect();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let len = (state % 40) as usize;
            let header: String = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            for challenge in parse(&header) {
                assert!(!challenge.scheme.is_empty(), "{header:?}");
            }
            let _ = bearer_of(&header);
        }
    }
}
