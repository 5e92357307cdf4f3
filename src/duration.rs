//! Durations as Go writes and reads them (`time.Duration.String`, `time.ParseDuration`),
//! which is what the protocol's `cacheDuration` and the rules file's `cacheDuration` hold.
//!
//! A Go duration is an int64 of nanoseconds, so nothing beyond [`GO_MAX`]
//! (`2562047h47m16.854775807s`, about 292 years) can be read by the kubelet: [`format`]
//! never writes more, and [`parse`] refuses what Go refuses.

use std::time::Duration;

/// The longest duration Go's `time.Duration` holds: 2^63 - 1 nanoseconds.
pub const GO_MAX: Duration = Duration::from_nanos(i64::MAX as u64);

/// Formats whole seconds as Go does: `0s`, `45s`, `1m30s`, `6h0m0s`. Sub-second parts
/// are dropped, a cache duration has no use for them; anything longer than [`GO_MAX`] is
/// written as the whole seconds of [`GO_MAX`] (`2562047h47m16s`), which Go still reads.
pub fn format(duration: Duration) -> String {
    let secs = duration.min(GO_MAX).as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// Parses a non-negative Go duration such as `10m`, `1h30m`, `1.5h`, `90s` or `0`,
/// exactly as `time.ParseDuration` reads it: in nanoseconds, refusing what overflows.
pub fn parse(text: &str) -> Result<Duration, String> {
    let quoted = icp_core::quote(text);
    let invalid = || format!("{quoted} is not a Go duration such as \"10m\", \"1h30m\" or \"90s\"");
    if text.starts_with('-') && text != "-0" {
        return Err(format!("{quoted} is negative"));
    }
    let mut rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let too_long = || format!("{quoted} is longer than Go's limit of 2562047h47m16.854775807s");
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (whole, after_whole) = leading_int(rest).ok_or_else(too_long)?;
        let has_whole = after_whole.len() != rest.len();
        rest = after_whole;
        let (fraction, scale, has_fraction) = match rest.strip_prefix('.') {
            Some(after_dot) => {
                let (fraction, scale, after_fraction) = leading_fraction(after_dot);
                let has_fraction = after_fraction.len() != after_dot.len();
                rest = after_fraction;
                (fraction, scale, has_fraction)
            }
            None => (0, 1.0, false),
        };
        if !has_whole && !has_fraction {
            return Err(invalid());
        }
        let unit_end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let nanos_per_unit: u64 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_end..];
        let mut nanos = whole.checked_mul(nanos_per_unit).ok_or_else(too_long)?;
        if fraction > 0 {
            // As Go does: float64 arithmetic for the fraction, which is below one unit.
            let part = (fraction as f64 * (nanos_per_unit as f64 / scale)) as u64;
            nanos = nanos.checked_add(part).ok_or_else(too_long)?;
        }
        total = total.checked_add(nanos).ok_or_else(too_long)?;
    }
    if total > GO_MAX.as_nanos() as u64 {
        return Err(too_long());
    }
    Ok(Duration::from_nanos(total))
}

/// The leading decimal digits of `text` as a number and what follows them; `None` when
/// the number does not fit in 63 bits, as Go's `leadingInt` refuses it.
fn leading_int(text: &str) -> Option<(u64, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let mut value: u64 = 0;
    for digit in text[..end].bytes() {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
        if value > i64::MAX as u64 {
            return None;
        }
    }
    Some((value, &text[end..]))
}

/// The leading digits of a fraction, as Go's `leadingFraction` reads them: the value and
/// its scale (10^digits) while they fit, the further digits ignored.
fn leading_fraction(text: &str) -> (u64, f64, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (mut value, mut scale, mut overflowed) = (0u64, 1.0f64, false);
    for digit in text[..end].bytes() {
        if overflowed {
            continue;
        }
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit - b'0')))
            .filter(|v| *v <= i64::MAX as u64)
        {
            Some(next) => {
                value = next;
                scale *= 10.0;
            }
            None => overflowed = true,
        }
    }
    (value, scale, &text[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_go() {
        let cases = [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m0s"),
            (90, "1m30s"),
            (3600, "1h0m0s"),
            (21600, "6h0m0s"),
            (43199, "11h59m59s"),
            (90000, "25h0m0s"),
        ];
        for (secs, text) in cases {
            assert_eq!(format(Duration::from_secs(secs)), text);
        }
        assert_eq!(format(Duration::from_millis(1999)), "1s");
    }

    #[test]
    fn never_formats_beyond_what_go_reads() {
        for too_long in [
            Duration::from_secs(100_000_000_000),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
            GO_MAX,
        ] {
            let text = format(too_long);
            assert_eq!(text, "2562047h47m16s");
            assert!(parse(&text).is_ok(), "{text}");
        }
    }

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("0s", 0),
            ("10m", 600_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("90s", 90_000_000_000),
            ("+5s", 5_000_000_000),
            ("1h0m0s", 3_600_000_000_000),
            ("500ms", 500_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("1\u{b5}s", 1_000),
            ("2562047h47m16.854775807s", i64::MAX as u64),
            ("9223372036854775807ns", i64::MAX as u64),
            ("0.000000001s", 1),
            ("1.00000000000000000000000001s", 1_000_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse(text), Ok(Duration::from_nanos(nanos)), "{text}");
        }
        for bad in [
            "",
            "+",
            "10",
            "1d",
            "10 minutes",
            "-1m",
            "m",
            ".s",
            "1..5s",
            "1hh",
            "1e3s",
            "999999999999h",
            "2562047h47m16.854775808s",
            "9223372036854775808ns",
            "27278871h25m32s",
            "99999999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_quote_a_short_excerpt() {
        let long = format!("{}x", "9".repeat(1 << 20));
        assert!(parse(&long).unwrap_err().len() < 300);
    }

    #[test]
    fn round_trips() {
        for secs in [0, 1, 61, 3599, 3601, 43200] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
    }
}
