//! Durations as Go writes and reads them (`time.Duration.String`, `time.ParseDuration`),
//! which is what the protocol's `cacheDuration` and the rules file's `cacheDuration` hold.

use std::time::Duration;

/// Formats whole seconds as Go does: `0s`, `45s`, `1m30s`, `6h0m0s`. Sub-second parts
/// are dropped; a cache duration has no use for them.
pub fn format(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// Parses a non-negative Go duration such as `10m`, `1h30m`, `1.5h`, `90s` or `0`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a Go duration such as \"10m\", \"1h30m\" or \"90s\"");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.starts_with('-') {
        return Err(format!("{text:?} is negative"));
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        let unit_end = rest[number_end..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |i| number_end + i);
        let unit = &rest[number_end..unit_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += value * seconds_per_unit;
        rest = &rest[unit_end..];
    }
    // Go's Duration is an int64 of nanoseconds: about 292 years.
    if total > 9.2e9 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(total))
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
    fn parses_go_durations() {
        let cases = [
            ("0", 0.0),
            ("0s", 0.0),
            ("10m", 600.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("90s", 90.0),
            ("+5s", 5.0),
            ("1h0m0s", 3600.0),
            ("500ms", 0.5),
            (".5s", 0.5),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse(text).unwrap(),
                Duration::from_secs_f64(secs),
                "{text}"
            );
        }
        for bad in [
            "",
            "10",
            "1d",
            "10 minutes",
            "-1m",
            "m",
            "1..5s",
            "1hh",
            "1e3s",
            "999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trips() {
        for secs in [0, 1, 61, 3599, 3601, 43200] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
    }
}
