//! `application/x-www-form-urlencoded` fields, as in query strings and form bodies.

/// The decoded value of the first field `name` of `encoded`.
pub fn value(encoded: &str, name: &str) -> Option<String> {
    encoded
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| decode(n) == name)
        .map(|(_, v)| decode(v))
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte (kept as
/// written when `XX` is not hex).
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = text
            .get(i + 1..i + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
