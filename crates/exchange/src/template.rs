//! Vault secret path templates: `secret/data/registry/{namespace}/{serviceAccount}`.
//!
//! A template is checked when the backend is built: only the two placeholders, no empty,
//! `.` or `..` segment, and only characters a Vault path takes without escaping. The
//! values put in are a namespace (a DNS label) and a service account name (a DNS
//! subdomain), as [`icp_core::ServiceAccount`] has checked them, so the path stays inside
//! the template's.

use icp_core::{ServiceAccount, quote};

/// The placeholders a template may hold.
const PLACEHOLDERS: [&str; 2] = ["{namespace}", "{serviceAccount}"];

/// A checked path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// Checks `template`, the value of the rule field `field`.
    pub fn parse(field: &str, template: &str) -> Result<Template, String> {
        let bad = |why: &str| format!("{field} {} {why}", quote(template));
        let mut bare = template.to_owned();
        for placeholder in PLACEHOLDERS {
            bare = bare.replace(placeholder, "x");
        }
        if bare.contains(['{', '}']) {
            return Err(bad(
                "has a placeholder other than {namespace} and {serviceAccount}",
            ));
        }
        if !bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        {
            return Err(bad(
                "may hold only letters, digits, '-', '_', '.' and '/' besides its placeholders",
            ));
        }
        if bare
            .split('/')
            .any(|segment| matches!(segment, "" | "." | ".."))
        {
            return Err(bad(
                "must be a relative path with no empty, '.' or '..' segment",
            ));
        }
        Ok(Template(template.to_owned()))
    }

    /// The path for `account`.
    pub fn render(&self, account: &ServiceAccount) -> String {
        self.0
            .replace("{namespace}", &account.namespace)
            .replace("{serviceAccount}", &account.name)
    }

    /// Whether the path depends on the service account.
    pub fn is_per_account(&self) -> bool {
        PLACEHOLDERS.iter().any(|p| self.0.contains(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        for good in [
            "secret/data/registry/{namespace}/{serviceAccount}",
            "registry/{namespace}",
            "kv/data/pull",
        ] {
            assert!(Template::parse("secretPath", good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("secret/{pod}", "placeholder other"),
            ("secret/{namespace", "placeholder other"),
            ("/secret/x", "relative path"),
            ("secret//x", "relative path"),
            ("secret/../sys/x", "relative path"),
            ("secret/x/", "relative path"),
            ("secret/x?list=true", "may hold only"),
            ("secret/a b", "may hold only"),
            ("", "relative path"),
        ] {
            let error = Template::parse("secretPath", bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(
            !Template::parse("p", "kv/data/pull")
                .unwrap()
                .is_per_account()
        );
        assert!(
            Template::parse("p", "kv/{namespace}")
                .unwrap()
                .is_per_account()
        );
    }
}
