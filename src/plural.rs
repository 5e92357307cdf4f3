//! Counts in messages: `1 rule`, `2 rules`.

/// `n` and the noun `singular`, with the `s` of the plural unless `n` is 1.
pub fn count(n: usize, singular: &str) -> String {
    match n {
        1 => format!("1 {singular}"),
        n => format!("{n} {singular}s"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(super::count(0, "rule"), "0 rules");
        assert_eq!(super::count(1, "rule"), "1 rule");
        assert_eq!(super::count(2, "more problem"), "2 more problems");
    }
}
