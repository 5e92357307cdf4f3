//! Kubernetes names and annotation keys, judged as apimachinery's validation judges them,
//! for every place that checks one (rule sections, the kubelet's `tokenAttributes`).

/// The longest DNS subdomain (`IsDNS1123Subdomain`).
const MAX_SUBDOMAIN: usize = 253;
/// The longest DNS label, and the longest name part of a qualified name.
const MAX_LABEL: usize = 63;

/// Whether `key` is a Kubernetes annotation key: apimachinery checks an annotation key as
/// a qualified name after lowering its case, so `Example.com/Key` is one.
pub fn is_annotation_key(key: &str) -> bool {
    qualified_name_problems(&key.to_lowercase()).is_empty()
}

/// apimachinery's `IsQualifiedName`: an optional DNS subdomain prefix and `/`, then a name
/// of at most 63 alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric. One
/// message per broken rule, in apimachinery's words.
pub fn qualified_name_problems(key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts[..] {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_owned());
            } else {
                problems.extend(subdomain_problems(prefix).map(|p| format!("prefix part {p}")));
            }
            name
        }
        _ => {
            return vec![
                "a qualified name is a name with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
                    .to_owned(),
            ];
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_owned());
    } else if name.len() > MAX_LABEL {
        problems.push(format!("name part must be no more than {MAX_LABEL} bytes"));
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let inner_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !(inner_ok && edge(name.chars().next()) && edge(name.chars().last())) {
        problems.push(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                .to_owned(),
        );
    }
    problems
}

/// apimachinery's `IsDNS1123Subdomain`: lowercase labels of alphanumerics and `-`,
/// joined by dots, at most 253 bytes.
pub fn subdomain_problems(value: &str) -> impl Iterator<Item = &'static str> {
    let too_long = value.len() > MAX_SUBDOMAIN;
    let pattern_ok = value.split('.').all(is_label_shape);
    [
        too_long.then_some("must be no more than 253 bytes"),
        (!pattern_ok).then_some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ),
    ]
    .into_iter()
    .flatten()
}

/// Whether `value` is a DNS subdomain (`IsDNS1123Subdomain`): what a service account's
/// name must be.
pub fn is_dns1123_subdomain(value: &str) -> bool {
    subdomain_problems(value).next().is_none()
}

/// Whether `value` is a DNS label (`IsDNS1123Label`): what a namespace's name must be.
pub fn is_dns1123_label(value: &str) -> bool {
    value.len() <= MAX_LABEL && is_label_shape(value)
}

/// Lowercase alphanumerics and `-`, starting and ending alphanumeric (no length check).
fn is_label_shape(label: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    edge(label.chars().next())
        && edge(label.chars().last())
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_as_apimachinery_judges_them() {
        assert!(qualified_name_problems("now-with-dashes/simple").is_empty());
        assert!(qualified_name_problems("example.com/my.key_1").is_empty());
        assert_eq!(qualified_name_problems("cantendwithadash-").len(), 1);
        assert_eq!(qualified_name_problems("/name").len(), 1);
        assert_eq!(qualified_name_problems("a/b/c").len(), 1);
        assert_eq!(qualified_name_problems("bad_prefix/name").len(), 1);
        assert_eq!(qualified_name_problems("").len(), 2);
        assert_eq!(qualified_name_problems(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn annotation_keys_are_judged_in_lower_case() {
        for key in [
            "eks.amazonaws.com/ecr-role-arn",
            "kubernetes.azure.com/acr-client-id",
            "iam.gke.io/gcp-service-account",
            "Example.COM/Key",
            "x",
            "a.b_c-d",
        ] {
            assert!(is_annotation_key(key), "{key}");
        }
        for key in [
            "",
            "-x",
            "x-",
            "a/b/c",
            "/x",
            "x/",
            "bad_prefix/x",
            "a b",
            "é",
        ] {
            assert!(!is_annotation_key(key), "{key}");
        }
        assert!(!is_annotation_key(&"a".repeat(64)));
        assert!(!is_annotation_key(&format!("{}/x", "a".repeat(254))));
    }

    #[test]
    fn namespaces_are_labels_and_service_accounts_subdomains() {
        assert!(is_dns1123_label("team-a"));
        assert!(!is_dns1123_label("team.a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(!is_dns1123_label("a/b"));
        assert!(is_dns1123_subdomain("app.v1"));
        assert!(!is_dns1123_subdomain("App"));
        assert!(!is_dns1123_subdomain("a\u{1b}[31m"));
        assert!(!is_dns1123_subdomain(""));
    }

    #[test]
    fn lowercase_dns_labels() {
        for good in ["a", "gcr", "us-east1", "0x", &"a".repeat(63)] {
            assert!(is_dns1123_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
    }
}
