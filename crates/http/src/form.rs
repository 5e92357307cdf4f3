//! `application/x-www-form-urlencoded` encoding, for request bodies and query strings.

use std::fmt::Write;

/// Encodes `pairs` as `application/x-www-form-urlencoded` (`a=1&b=x%2By`): unreserved
/// characters as they are, a space as `+`, every other byte as `%XX`. The result also
/// serves as a URL query string.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, name);
        out.push('=');
        encode_into(&mut out, value);
    }
    out
}

fn encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::form_encode;

    #[test]
    fn encodes_reserved_and_non_ascii_bytes() {
        assert_eq!(
            form_encode(&[("scope", "https://a.example/.default"), ("x y", "1+1=2&é")]),
            "scope=https%3A%2F%2Fa.example%2F.default&x+y=1%2B1%3D2%26%C3%A9"
        );
        assert_eq!(form_encode(&[]), "");
        assert_eq!(form_encode(&[("a", "")]), "a=");
    }
}
