//! The kubelet's glob matching of `matchImages` entries and `auth` keys.
//!
//! The kubelet (`pkg/credentialprovider`, `URLsMatchStr`) puts `https://` in front of the
//! pattern and of the image, parses both as URLs, and then requires
//!
//! - the same port (a pattern without a port matches no image that has one),
//! - the same number of dot-separated host labels,
//! - each host label to match its pattern label as a `filepath.Match` glob, so `*` never
//!   crosses a dot, and the comparison is case-sensitive,
//! - the pattern's path to be a plain string prefix of the image's path
//!   (`registry.example/team` also matches `registry.example/teammate`).
//!
//! [`urls_match_str`] is that function, and [`SchemelessUrl`] Go's URL parsing reproduced
//! closely enough that odd input fails or matches as it does in the kubelet. [`Pattern`]
//! is the stricter form this project accepts in its own rules file: it refuses what
//! parses but means something else than it seems (`?`, `#`, `@`, a scheme). [`Glob`] is
//! the one reading of a label's Go glob, which matches, and which also says whether one
//! glob covers another ([`SchemelessUrl::covers`]), as `check-config --kubelet-config`
//! asks.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

/// Why a string is not a usable pattern (or target) for glob matching.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Empty pattern.
    #[error("pattern is empty")]
    Empty,
    /// A byte that Go's URL parser refuses (control character, invalid host character,
    /// bad percent-escape, non-numeric port).
    #[error("{0}")]
    Url(String),
    /// A host label is not a valid `filepath.Match` glob.
    #[error("host label {} is not a valid glob", crate::quote(.0))]
    Glob(String),
    /// Accepted by the kubelet, but means something other than it seems; refused in rules.
    #[error("{0}")]
    Misleading(String),
}

/// A URL as Go's `url.Parse("https://" + s)` sees it (the kubelet's
/// `ParseSchemelessURL`), reduced to what matching uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemelessUrl {
    /// The host split at dots, percent-escapes decoded: `["*", "gcr", "io"]`.
    pub labels: Vec<String>,
    /// The port, empty when there is none.
    pub port: String,
    /// The path, percent-escapes decoded: empty or starting with `/`.
    pub path: String,
}

impl SchemelessUrl {
    /// Parses `s` as the kubelet does, failing where Go's URL parser fails: a control
    /// character, a bad percent-escape, a host character or port Go refuses, or invalid
    /// userinfo. The query and fragment are dropped.
    pub fn parse(s: &str) -> Result<SchemelessUrl, PatternError> {
        if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(PatternError::Url("control character in URL".into()));
        }
        // url.Parse cuts the fragment, then the query, then splits authority and path.
        let (s, fragment) = s.split_once('#').unwrap_or((s, ""));
        let s = s.split_once('?').map_or(s, |(before, _)| before);
        let (authority, path) = match s.find('/') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let host = parse_go_host(host)?;
        if let Some(userinfo) = userinfo {
            let valid = |c: char| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c);
            if !userinfo.chars().all(valid) {
                return Err(PatternError::Url("invalid userinfo".into()));
            }
            unescape(userinfo, Escape::Other)?;
        }
        let path = unescape(path, Escape::Other)?;
        unescape(fragment, Escape::Other)?;
        let (host, port) = split_host_port(&host);
        Ok(SchemelessUrl {
            labels: host.split('.').map(str::to_owned).collect(),
            port: port.to_owned(),
            path: path.into_owned(),
        })
    }
}

/// Go's `parseHost`: the port after the last colon (or after `]`) must be digits, and the
/// host may hold only the characters `url.Parse` allows there; escapes are decoded.
fn parse_go_host(host: &str) -> Result<Cow<'_, str>, PatternError> {
    let colon_port = if host.starts_with('[') {
        let close = host
            .rfind(']')
            .ok_or_else(|| PatternError::Url("missing ']' in host".into()))?;
        &host[close + 1..]
    } else {
        host.rfind(':').map_or("", |i| &host[i..])
    };
    let port_ok = colon_port.is_empty()
        || (colon_port.starts_with(':') && colon_port[1..].bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return Err(PatternError::Url(format!(
            "invalid port {} after host",
            crate::quote(colon_port)
        )));
    }
    // An IPv6 zone (`[fe80::1%25eth0]`) may escape more than the rest of a host.
    if let (true, Some(close)) = (host.starts_with('['), host.rfind(']'))
        && let Some(zone) = host[..close].find("%25")
    {
        return Ok(Cow::Owned(
            unescape(&host[..zone], Escape::Host)?.into_owned()
                + &unescape(&host[zone..close], Escape::Zone)?
                + &unescape(&host[close..], Escape::Host)?,
        ));
    }
    unescape(host, Escape::Host)
}

/// Where in a URL [`unescape`] decodes, as Go's `unescape` modes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    Host,
    Zone,
    Other,
}

/// Whether Go refuses byte `b` unescaped in a host.
fn host_refuses(b: u8) -> bool {
    !(b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&b))
}

/// Go's `unescape`: every `%` needs two hex digits; a host may escape only non-ASCII
/// bytes (and `%25`), and refuses the ASCII characters [`host_refuses`].
fn unescape(s: &str, mode: Escape) -> Result<Cow<'_, str>, PatternError> {
    let bytes = s.as_bytes();
    if !bytes.contains(&b'%') {
        if mode != Escape::Other
            && let Some(&b) = bytes.iter().find(|&&b| b < 0x80 && host_refuses(b))
        {
            return Err(invalid_host_character(b));
        }
        return Ok(Cow::Borrowed(s));
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let escape = &bytes[i..bytes.len().min(i + 3)];
            let bad = || {
                PatternError::Url(format!(
                    "invalid URL escape {:?}",
                    String::from_utf8_lossy(escape)
                ))
            };
            let (Some(high), Some(low)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) else {
                return Err(bad());
            };
            let value = high << 4 | low;
            let refused = match mode {
                Escape::Host => high < 8 && escape != b"%25",
                Escape::Zone => escape != b"%25" && value != b' ' && host_refuses(value),
                Escape::Other => false,
            };
            if refused {
                return Err(bad());
            }
            out.push(value);
            i += 3;
        } else {
            if mode != Escape::Other && b < 0x80 && host_refuses(b) {
                return Err(invalid_host_character(b));
            }
            out.push(b);
            i += 1;
        }
    }
    Ok(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

fn invalid_host_character(b: u8) -> PatternError {
    PatternError::Url(format!("invalid character {:?} in host name", b as char))
}

/// Go's `net.SplitHostPort`, falling back to the whole host and no port on error, as the
/// kubelet's `SplitURL` does.
fn split_host_port(hostport: &str) -> (&str, &str) {
    let Some(colon) = hostport.rfind(':') else {
        return (hostport, "");
    };
    let (host, inner_start, inner_end) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(end) if end + 1 == colon => (&hostport[1..end], 1, end + 1),
            _ => return (hostport, ""),
        }
    } else {
        let host = &hostport[..colon];
        if host.contains(':') {
            return (hostport, "");
        }
        (host, 0, 0)
    };
    if hostport[inner_start..].contains('[') || hostport[inner_end..].contains(']') {
        return (hostport, "");
    }
    (host, &hostport[colon + 1..])
}

/// One step of a Go `filepath.Match` glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobToken {
    /// `*`: any run of characters.
    Star,
    /// `?`: any one character.
    Any,
    /// A character or a class: one character in these inclusive ranges.
    In(Vec<(char, char)>),
}

/// One host label of a kubelet glob, read as Go's `filepath.Match` reads a pattern: the
/// one reading of Go globs, for matching images and for judging which glob covers which.
///
/// A label without a class (`[...]`), the usual kind, is matched as written; its steps
/// are read only when asked for ([`Glob::tokens`]).
#[derive(Debug, Clone)]
pub struct Glob {
    label: String,
    tokens: OnceLock<Vec<GlobToken>>,
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.label == other.label
    }
}

impl Eq for Glob {}

impl Glob {
    /// Reads `label`, or fails where Go fails (`ErrBadPattern`: the kubelet then matches
    /// no image with it). Escapes and negated classes cannot occur: Go's URL parser
    /// refuses `\` and `^` in a host, so they are refused here too; `!` is no negation in
    /// Go, and stays a character.
    pub fn parse(label: &str) -> Result<Glob, PatternError> {
        let tokens = if label.contains(['[', '\\']) {
            OnceLock::from(read_class_glob(label)?)
        } else {
            OnceLock::new()
        };
        Ok(Glob {
            label: label.to_owned(),
            tokens,
        })
    }

    /// The steps of the glob.
    pub fn tokens(&self) -> &[GlobToken] {
        self.tokens.get_or_init(|| {
            self.label
                .chars()
                .map(|c| match c {
                    '*' => GlobToken::Star,
                    '?' => GlobToken::Any,
                    c => GlobToken::In(vec![(c, c)]),
                })
                .collect()
        })
    }

    /// Whether `text` matches, as `filepath.Match` says (case-sensitively; `*` and `?`
    /// take any character, as a host label holds no `/`).
    pub fn matches(&self, text: &str) -> bool {
        if self.tokens.get().is_none() {
            if !self.label.contains(['*', '?']) {
                return self.label == text;
            }
            let steps: Vec<char> = self.label.chars().collect();
            return match_steps(
                &steps,
                text,
                |&step, c| step == '?' || step == c,
                |&step| step == '*',
            );
        }
        match_steps(self.tokens(), text, GlobToken::takes_char, |step| {
            *step == GlobToken::Star
        })
    }

    /// Whether this glob matches every string `inner` matches, decided on the globs
    /// themselves: a `*` absorbs any run of the inner glob, `?` any one character or
    /// class, a class or character the characters it contains. What this says is covered
    /// is covered; the rare globs it cannot prove covered are not.
    pub fn covers(&self, inner: &Glob) -> bool {
        let (outer, inner) = (self.tokens(), inner.tokens());
        let width = inner.len() + 1;
        // covered[i * width + j]: outer[i..] covers inner[j..].
        let mut covered = vec![false; (outer.len() + 1) * width];
        covered[outer.len() * width + inner.len()] = true;
        for i in (0..outer.len()).rev() {
            for j in (0..=inner.len()).rev() {
                covered[i * width + j] = match &outer[i] {
                    GlobToken::Star => {
                        covered[(i + 1) * width + j]
                            || (j < inner.len() && covered[i * width + j + 1])
                    }
                    single => {
                        j < inner.len()
                            && takes(single, &inner[j])
                            && covered[(i + 1) * width + j + 1]
                    }
                };
            }
        }
        covered[0]
    }
}

/// Reads a label that has a class or an escape into its steps, as `filepath.Match` does.
fn read_class_glob(label: &str) -> Result<Vec<GlobToken>, PatternError> {
    let bad = || PatternError::Glob(label.to_owned());
    let mut tokens = Vec::new();
    let mut chars = label.chars().peekable();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '*' => GlobToken::Star,
            '?' => GlobToken::Any,
            '\\' => return Err(bad()),
            '[' => {
                let mut ranges = Vec::new();
                loop {
                    if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
                        break;
                    }
                    let end = |c: Option<char>| {
                        c.filter(|c| !matches!(c, '-' | ']' | '\\' | '^'))
                            .ok_or_else(bad)
                    };
                    let low = end(chars.next())?;
                    let high = match chars.next_if_eq(&'-') {
                        Some(_) => end(chars.next())?,
                        None => low,
                    };
                    chars.peek().ok_or_else(bad)?;
                    ranges.push((low, high));
                }
                GlobToken::In(ranges)
            }
            c => GlobToken::In(vec![(c, c)]),
        });
    }
    Ok(tokens)
}

/// Whether `text` matches the glob `steps`, where `is_star` tells a `*` step and `takes`
/// whether any other step takes a character: the greedy match, going back to the last
/// `*` on a mismatch, which needs no memory and decides as `filepath.Match` does.
fn match_steps<S>(
    steps: &[S],
    text: &str,
    takes: impl Fn(&S, char) -> bool,
    is_star: impl Fn(&S) -> bool,
) -> bool {
    let (mut step, mut at) = (0, 0);
    // The step after the last `*` seen, and where in the text that `*` stopped.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(s) = steps.get(step) {
            if is_star(s) {
                star = Some((step + 1, at));
                step += 1;
                continue;
            }
            if let Some(c) = text[at..].chars().next()
                && takes(s, c)
            {
                step += 1;
                at += c.len_utf8();
                continue;
            }
        } else if at == text.len() {
            return true;
        }
        // A mismatch: the last `*` takes one more character, or there is no match.
        match star {
            Some((after, stopped)) if stopped < text.len() => {
                let taken = stopped + text[stopped..].chars().next().map_or(1, char::len_utf8);
                star = Some((after, taken));
                (step, at) = (after, taken);
            }
            _ => return false,
        }
    }
}

impl GlobToken {
    /// Whether this step takes the character `c`.
    fn takes_char(&self, c: char) -> bool {
        match self {
            GlobToken::Star | GlobToken::Any => true,
            GlobToken::In(ranges) => ranges.iter().any(|&(low, high)| low <= c && c <= high),
        }
    }
}

/// Whether every character `inner` takes, `outer` takes.
fn takes(outer: &GlobToken, inner: &GlobToken) -> bool {
    match (outer, inner) {
        (GlobToken::Any, GlobToken::Any | GlobToken::In(_)) => true,
        (GlobToken::In(outer), GlobToken::In(inner)) => inner.iter().all(|&(low, high)| {
            // Extend what the outer ranges cover from `low` on, until it stops growing.
            let mut next = low as u32;
            loop {
                let before = next;
                for &(a, b) in outer {
                    if a as u32 <= next && next <= b as u32 {
                        next = b as u32 + 1;
                    }
                }
                if low > high || next > high as u32 {
                    return true;
                }
                if next == before {
                    return false;
                }
            }
        }),
        _ => false,
    }
}

impl SchemelessUrl {
    /// Whether kubelet glob `self` matches every image kubelet glob `inner` matches: the
    /// same port and number of labels, a path that is a prefix of the inner one, and each
    /// label covering the inner one ([`Glob::covers`]).
    pub fn covers(&self, inner: &SchemelessUrl) -> bool {
        self.port == inner.port
            && self.labels.len() == inner.labels.len()
            && inner.path.starts_with(&self.path)
            && self.labels.iter().zip(&inner.labels).all(|(o, i)| {
                match (Glob::parse(o), Glob::parse(i)) {
                    (Ok(o), Ok(i)) => o.covers(&i),
                    _ => false,
                }
            })
    }
}

/// Whether the kubelet's URL parsing accepts `s` (schemeless) at all: an `auth` key or
/// docker config entry it refuses is ignored there, with a log line.
pub fn check_url(s: &str) -> Result<(), PatternError> {
    SchemelessUrl::parse(s).map(drop)
}

/// The kubelet's `URLsMatchStr(glob, target)`: whether the schemeless URL `target` (an
/// image name) matches the schemeless URL glob `glob`. Errors where the kubelet's would.
pub fn urls_match_str(glob: &str, target: &str) -> Result<bool, PatternError> {
    let glob = SchemelessUrl::parse(glob)?;
    let target = SchemelessUrl::parse(target)?;
    if glob.port != target.port
        || glob.labels.len() != target.labels.len()
        || !target.path.starts_with(&glob.path)
    {
        return Ok(false);
    }
    for (pattern, label) in glob.labels.iter().zip(&target.labels) {
        if !Glob::parse(pattern)?.matches(label) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A `matchImages` pattern of this project's rules file, checked and compiled once.
///
/// It matches exactly as the kubelet matches the same string in its own
/// `CredentialProviderConfig`, and is refused where the kubelet would quietly read it
/// some other way than it reads.
#[derive(Clone)]
pub struct Pattern {
    text: String,
    labels: Vec<Glob>,
    port: String,
    path: String,
}

impl Pattern {
    /// Checks and compiles a pattern such as `*.registry.example:5000/team`.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.contains("://") {
            return Err(PatternError::Misleading(
                "a pattern has no scheme: drop the \"https://\"".into(),
            ));
        }
        if let Some(c) = text
            .chars()
            .find(|c| matches!(c, '?' | '#' | '@' | '%') || c.is_whitespace())
        {
            return Err(PatternError::Misleading(format!(
                "character {c:?} is not allowed in a pattern (the kubelet would read it as part of a URL, not of a glob)"
            )));
        }
        let url = SchemelessUrl::parse(text)?;
        if url.labels.iter().any(String::is_empty) {
            return Err(PatternError::Misleading("a host label is empty".into()));
        }
        let labels = url
            .labels
            .iter()
            .map(|l| Glob::parse(l))
            .collect::<Result<_, _>>()?;
        Ok(Pattern {
            text: text.to_owned(),
            labels,
            port: url.port,
            path: url.path,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has a path, so that it covers only part of a registry.
    pub fn has_path(&self) -> bool {
        !self.path.is_empty()
    }

    /// Whether `image` (an image name, as the kubelet sends it) matches.
    pub fn matches(&self, image: &str) -> bool {
        SchemelessUrl::parse(image).is_ok_and(|target| self.matches_url(&target))
    }

    /// [`Pattern::matches`] for an image name already parsed, to set one name against
    /// many patterns.
    pub fn matches_url(&self, target: &SchemelessUrl) -> bool {
        self.port == target.port
            && self.labels.len() == target.labels.len()
            && target.path.starts_with(&self.path)
            && self
                .labels
                .iter()
                .zip(&target.labels)
                .all(|(p, l)| p.matches(l))
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_url_parsing_quirks() {
        // A query or fragment is cut off before the host is read, as in Go.
        assert_eq!(urls_match_str("k?.io", "k"), Ok(true));
        // Userinfo is dropped.
        assert_eq!(urls_match_str("user@quay.io", "quay.io/x"), Ok(true));
        // A non-numeric port and a bad host byte are errors.
        assert!(urls_match_str("quay.io:abc", "quay.io").is_err());
        assert!(urls_match_str("quay io", "quay.io").is_err());
        assert!(urls_match_str("quay.io", "quay.io/\u{7}").is_err());
        // Too many colons: the whole host is one label and there is no port.
        assert_eq!(urls_match_str("a:b:1", "a:b:1"), Ok(true));
        assert_eq!(urls_match_str("[::1]:5000", "[::1]:5000/app"), Ok(true));
        assert_eq!(urls_match_str("[::1]:5000", "[::1]:5001/app"), Ok(false));
        // Userinfo, escapes in the host, the path and the fragment are checked as Go does.
        assert!(check_url("a b@quay.io").is_err());
        assert!(check_url("us\u{e9}r@quay.io").is_err());
        assert!(check_url("quay.io#%zz").is_err());
        assert!(check_url("%invalid%").is_err());
        assert!(check_url("a%41.io").is_err());
        assert_eq!(check_url("a%25b.io"), Ok(()));
        assert_eq!(check_url("[fe80::1%25eth0]:5000"), Ok(()));
        assert_eq!(urls_match_str("caf%C3%A9.io", "caf\u{e9}.io/x"), Ok(true));
        let url = SchemelessUrl::parse("u:p@*.example:5000/a%2Fb?q#f").unwrap();
        assert_eq!(url.labels, ["*", "example"]);
        assert_eq!((url.port.as_str(), url.path.as_str()), ("5000", "/a/b"));
    }

    #[test]
    fn go_glob_syntax_per_label() {
        assert_eq!(urls_match_str("reg-[ab].io", "reg-a.io"), Ok(true));
        // `!` is no negation in Go, and `^` and `\\` are refused in a host by Go's URL parser.
        assert_eq!(urls_match_str("reg-[!a].io", "reg-!.io"), Ok(true));
        assert_eq!(urls_match_str("reg-[!a].io", "reg-c.io"), Ok(false));
        assert!(urls_match_str("reg-[^ab].io", "reg-c.io").is_err());
        assert!(urls_match_str("a\\*b.io", "a*b.io").is_err());
        assert_eq!(urls_match_str("reg-[a-c].io", "reg-b.io"), Ok(true));
        assert_eq!(urls_match_str("**.io", "anything.io"), Ok(true));
        assert_eq!(urls_match_str("a**b.io", "ab.io"), Ok(true));
        assert!(urls_match_str("reg-[ab.io", "reg-a.io").is_err());
        assert!(urls_match_str("reg-[].io", "reg-a.io").is_err());
    }

    #[test]
    fn rule_patterns_refuse_what_misleads() {
        for bad in [
            "",
            "https://quay.io",
            "quay.io?x",
            "quay.io#x",
            "user@quay.io",
            "quay.io/a b",
            "a..io",
            ".io",
            "q:x",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        let pattern = Pattern::parse("*.corp.example:5000/team").unwrap();
        assert!(pattern.has_path());
        assert!(pattern.matches("r.corp.example:5000/team/app"));
        assert!(pattern.matches("r.corp.example:5000/teammate"));
        assert!(!pattern.matches("r.corp.example/team/app"));
        assert!(!pattern.matches("r.corp.example:5000/other"));
        assert!(!Pattern::parse("Quay.io").unwrap().matches("quay.io/x"));
    }

    fn label(outer: &str, inner: &str) -> bool {
        Glob::parse(outer)
            .unwrap()
            .covers(&Glob::parse(inner).unwrap())
    }

    #[test]
    fn go_glob_syntax() {
        assert_eq!(
            Glob::parse("a*").unwrap().tokens(),
            [GlobToken::In(vec![('a', 'a')]), GlobToken::Star]
        );
        assert_eq!(
            Glob::parse("[a-c!]").unwrap().tokens(),
            [GlobToken::In(vec![('a', 'c'), ('!', '!')])]
        );
        for bad in ["[", "[a", "[]", "[a-]", "[-a]", "[a-", "a\\*"] {
            assert!(Glob::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_coverage() {
        let covered = [
            ("*", "*-docker"),
            ("*", "*"),
            ("*-docker", "us-docker"),
            ("*-docker", "*-docker"),
            ("ecr*", "ecr-fips"),
            ("ecr*", "ecr*"),
            ("a*", "ab*"),
            ("a?", "ab"),
            ("?", "[xy]"),
            ("[a-c]", "b"),
            ("[a-cd-f]", "[b-e]"),
            ("**", "*"),
        ];
        for (outer, inner) in covered {
            assert!(label(outer, inner), "{outer} covers {inner}");
        }
        let not_covered = [
            ("ecr", "ecr*"),
            ("ecr", "ECR"),
            ("?", "*"),
            ("*b", "*"),
            ("a?", "a*"),
            ("[a-c]", "[b-e]"),
            ("[ab]", "?"),
            ("us-docker", "*-docker"),
        ];
        for (outer, inner) in not_covered {
            assert!(!label(outer, inner), "{outer} does not cover {inner}");
        }
    }

    #[test]
    fn url_coverage_compares_label_count_port_and_path_prefix() {
        let url = |s| SchemelessUrl::parse(s).unwrap();
        assert!(url("*.gcr.io").covers(&url("us.gcr.io/team")));
        assert!(url("gcr.io/team").covers(&url("gcr.io/team/app")));
        assert!(!url("gcr.io/team").covers(&url("gcr.io")));
        assert!(!url("*.gcr.io").covers(&url("gcr.io")));
        assert!(!url("reg.io").covers(&url("reg.io:5000")));
        assert!(url("reg.io:5000").covers(&url("reg.io:5000/x")));
        assert!(!url("*.dkr.ecr.*.amazonaws.com").covers(&url("*.dkr.ecr*.*.amazonaws.com")));
    }
}
