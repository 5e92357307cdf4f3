//! A pod asking for its own identity where the rule serving it does not give it: its
//! service account carries an annotation with which a backend's official provider pulls
//! as the pod (`iam.gke.io/enable-wi-image-pull`, `eks.amazonaws.com/ecr-role-arn`, ...:
//! each backend's [`icp_core::Build::POD_IDENTITY_ANNOTATIONS`], listed by the backend
//! table), but the rule that matched does not read it, so the pull is made with the rule's
//! own identity (the node's, or another backend's). Noted at `-v`, with the annotation's
//! key and the rule, never its value.

use icp_core::{ServiceAccount, ServiceAccountTokenUse};

use crate::backends::TABLE;
use crate::rules::Rule;

/// Notes at `-v` each annotation of `account` that asks for the pod's own identity and
/// that `rule`'s backend, which reads the annotations of `token_use` (none without),
/// does not use.
pub fn note_unused(
    account: &ServiceAccount,
    rule: &Rule,
    token_use: Option<&ServiceAccountTokenUse>,
) {
    for (owner, key) in unused(account, token_use) {
        tracing::info!(
            annotation = key,
            read_by = owner,
            rule = rule.index,
            provider = %rule.backend_name,
            "the service account asks for the pod's own identity with this annotation, but the rule that matched does not use it: the pull gets the rule's own identity (see docs/per-pod-identity.md)"
        );
    }
}

/// The backends' pod identity annotations `account` sets (to anything but `false`) that
/// `token_use` does not read, with the backend each belongs to.
fn unused<'a>(
    account: &'a ServiceAccount,
    token_use: Option<&'a ServiceAccountTokenUse>,
) -> impl Iterator<Item = (&'static str, &'static str)> + 'a {
    TABLE
        .iter()
        .flat_map(|row| {
            row.pod_identity_annotations
                .iter()
                .map(|key| (row.name, *key))
        })
        .filter(move |(_, key)| {
            account
                .annotation(key)
                .is_some_and(|value| !value.eq_ignore_ascii_case("false"))
        })
        .filter(move |(_, key)| {
            !token_use.is_some_and(|used| used.annotation_keys.iter().any(|k| k == key))
        })
}

#[cfg(all(test, feature = "gcp", feature = "ecr"))]
mod tests {
    use std::collections::BTreeMap;

    use icp_core::Secret;

    use super::*;

    fn account(annotations: &[(&str, &str)]) -> ServiceAccount {
        let token =
            icp_test_kit::azure::service_account_token("team-a", "app", "aud", 4_000_000_000);
        let annotations: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServiceAccount::from_token(Secret::new(token), annotations).unwrap()
    }

    #[test]
    fn an_annotation_asking_for_the_pods_identity_is_noted_unless_the_rule_reads_it() {
        let gke = account(&[(icp_gcp::ENABLE_ANNOTATION, "true")]);
        assert_eq!(
            unused(&gke, None).collect::<Vec<_>>(),
            [("gcp", icp_gcp::ENABLE_ANNOTATION)]
        );
        let reads = ServiceAccountTokenUse {
            audience: "p.svc.id.goog".to_owned(),
            annotation_keys: vec![icp_gcp::ENABLE_ANNOTATION.to_owned()],
        };
        assert_eq!(unused(&gke, Some(&reads)).count(), 0);
        let opted_out = account(&[(icp_gcp::ENABLE_ANNOTATION, "false")]);
        assert_eq!(unused(&opted_out, None).count(), 0);
        let eks = account(&[
            (icp_ecr::ROLE_ANNOTATION, "arn:aws:iam::123456789012:role/r"),
            ("example.com/other", "x"),
        ]);
        assert_eq!(
            unused(&eks, Some(&reads)).collect::<Vec<_>>(),
            [("ecr", icp_ecr::ROLE_ANNOTATION)]
        );
        assert_eq!(unused(&account(&[]), None).count(), 0);
    }
}
