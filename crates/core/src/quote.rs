//! Quoting input in messages: escaped, so it stays on one line, and cut short, so a huge
//! or hostile input never floods stderr.

/// The most characters of an input a message quotes.
pub const MAX_QUOTED_CHARS: usize = 80;

/// `text` as a message quotes it: escaped like a Rust string literal (quotes, control
/// characters and line breaks made visible) and cut after [`MAX_QUOTED_CHARS`]
/// characters, with the full length in bytes noted.
///
/// Only for input that is not secret: an image name, a file key, a field value.
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
}

/// A file's path as messages show it: as it is when it holds nothing [`quote`] would
/// escape (the common case, so messages read `error: /etc/a.yaml: ...`), else quoted by
/// [`quote`], so a file named `a\nerror: forged.yaml` never starts a line of its own.
pub fn path(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    let quoted = quote(&text);
    if !text.is_empty() && quoted.len() == text.len() + 2 && quoted[1..quoted.len() - 1] == *text {
        text.into_owned()
    } else {
        quoted
    }
}

/// `text` cut after `max` characters, with `...` where it was cut: the one way a long
/// message, problem or upstream text is shortened.
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]).into(),
        None => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_escaped_whole() {
        assert_eq!(quote("a.io/b"), "\"a.io/b\"");
        assert_eq!(quote("a\nb\"c"), "\"a\\nb\\\"c\"");
    }

    #[test]
    fn a_path_is_quoted_only_when_it_holds_something_to_escape() {
        use std::path::Path;
        assert_eq!(path(Path::new("/etc/a b/é.yaml")), "/etc/a b/é.yaml");
        assert_eq!(
            path(Path::new("d/a\nerror: forged.yaml")),
            "\"d/a\\nerror: forged.yaml\""
        );
        for name in ["a\u{2028}b", "a\u{85}b", "a\"b", "a\\b", "a\rb", ""] {
            let shown = path(Path::new(name));
            assert!(
                shown.starts_with('"') && !shown.contains(['\n', '\r', '\u{85}', '\u{2028}']),
                "{shown}"
            );
        }
    }

    #[test]
    fn cut_keeps_short_text_and_marks_a_cut() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc...");
        assert_eq!(cut("ééé", 2), "éé...");
    }

    #[test]
    fn long_text_is_cut_with_its_length() {
        let long = "é".repeat(1_000_000);
        let quoted = quote(&long);
        assert_eq!(
            quoted.chars().filter(|c| *c == 'é').count(),
            MAX_QUOTED_CHARS
        );
        assert!(quoted.ends_with("... (2000000 bytes)"), "{quoted}");
        assert!(quoted.len() < 300);
    }
}
