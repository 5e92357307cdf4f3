//! RFC 3339 timestamps, as Google's JSON APIs state an expiry (`"2025-01-31T12:00:00Z"`,
//! with optional fractions of a second and an offset instead of `Z`).

use std::time::{Duration, SystemTime};

use icp_core::calendar::{days_in_month, days_since_epoch};

/// The time `text` names, or `None` when it is not an RFC 3339 date-time from 1970 on.
pub fn parse(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't') || bytes[16] != b':' {
        return None;
    }
    let year = digits(text.get(0..4)?)?;
    let month = digits(text.get(5..7)?)?;
    let day = digits(text.get(8..10)?)?;
    let hour = digits(text.get(11..13)?)?;
    let minute = digits(text.get(14..16)?)?;
    let second = digits(text.get(17..19)?)?;
    let mut rest = text.get(19..)?;
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        let kept = &fraction[..end.min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
        rest = &fraction[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (hours, minutes) = rest.get(1..)?.split_once(':')?;
            if hours.len() != 2 || minutes.len() != 2 {
                return None;
            }
            let (hours, minutes) = (digits(hours)?, digits(minutes)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60) as i64
        }
    };
    if year < 1970
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let local = days_since_epoch(year, month, day) as i64 * 86_400
        + (hour * 3600 + minute * 60 + second) as i64;
    let seconds = u64::try_from(local - offset).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// A field of ASCII digits only (no sign, no spaces).
fn digits(field: &str) -> Option<u64> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64, nanos: u32) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos))
    }

    #[test]
    fn reads_googles_forms() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), at(0, 0));
        // `date -u -d 2014-10-02T15:01:23Z +%s`
        assert_eq!(parse("2014-10-02T15:01:23Z"), at(1_412_262_083, 0));
        assert_eq!(
            parse("2014-10-02T15:01:23.045123456Z"),
            at(1_412_262_083, 45_123_456)
        );
        assert_eq!(
            parse("2014-10-02T15:01:23.5Z"),
            at(1_412_262_083, 500_000_000)
        );
        assert_eq!(parse("2014-10-02T17:01:23+02:00"), at(1_412_262_083, 0));
        assert_eq!(parse("2014-10-02T14:31:23-00:30"), at(1_412_262_083, 0));
        // Leap days: `date -u -d 2024-02-29T00:00:00Z +%s`, and 2100 is no leap year.
        assert_eq!(parse("2024-02-29T00:00:00Z"), at(1_709_164_800, 0));
        assert_eq!(parse("2000-03-01T00:00:00Z"), at(951_868_800, 0));
        assert_eq!(parse("2100-02-29T00:00:00Z"), None);
    }

    #[test]
    fn refuses_what_is_not_one() {
        for text in [
            "",
            "2014-10-02",
            "2014-10-02 15:01:23Z",
            "2014-10-02T15:01:23",
            "2014-13-02T15:01:23Z",
            "2014-10-32T15:01:23Z",
            "2014-10-02T24:01:23Z",
            "2014-10-02T15:01:23.Z",
            "2014-10-02T15:01:23+0200",
            "2014-10-02T15:01:23+2:00",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+01:00",
            "+014-10-02T15:01:23Z",
            "2014-10-02T15:01:23Zjunk",
            "2014-1ä-02T15:01:23Z",
            "99999-10-02T15:01:23Z",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn far_future_years_neither_overflow_nor_panic() {
        assert!(parse("9999-12-31T23:59:59.999999999999Z").is_some());
    }
}
