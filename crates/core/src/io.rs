//! Reading input whole, but never more of it than a limit.

use std::io::{self, Read};

/// Reads `input` to its end, or fails with [`io::ErrorKind::FileTooLarge`] ("larger than
/// `max` bytes") as soon as it holds more than `max` bytes; a hostile or broken file or
/// stream is never read whole.
pub fn read_capped(input: impl Read, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::read_capped;

    #[test]
    fn reads_up_to_the_limit_and_no_further() {
        assert_eq!(read_capped(&b"12345"[..], 5).unwrap(), b"12345");
        let error = read_capped(&b"123456"[..], 5).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(error.to_string(), "larger than 5 bytes");
    }
}
