//! The Gregorian calendar arithmetic that reading a UTC date needs (HTTP dates, RFC 3339
//! timestamps), for dates from 1970 on.

/// Whether `year` has a 29th of February.
fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// The days of `month` (1 to 12) in `year`.
pub fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a valid date from 1970 on.
pub fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let leap_days_before = |y: u64| y / 4 - y / 100 + y / 400;
    let years = (year - 1970) * 365 + leap_days_before(year - 1) - leap_days_before(1969);
    let months: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    years + months + day - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_days_as_the_calendar_does() {
        assert_eq!(days_since_epoch(1970, 1, 1), 0);
        assert_eq!(days_since_epoch(1972, 3, 1), 365 + 365 + 31 + 29);
        assert_eq!(days_since_epoch(2000, 3, 1), 11_017);
        assert_eq!(days_since_epoch(2026, 11, 30), 20_787);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2026, 4), 30);
    }
}
