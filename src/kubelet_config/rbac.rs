//! The RBAC that lets the nodes request pods' service account tokens for the audiences of
//! `tokenAttributes`: the node authorizer (`ServiceAccountNodeAudienceRestriction`, on by
//! default since Kubernetes 1.33) refuses a kubelet's token request for an audience no pod
//! on the node already uses, unless the nodes are granted the verb
//! `request-serviceaccounts-token-audience` on it. Without it the kubelet gets no token,
//! does not run the plugin, and the pull goes without credentials.
//!
//! `deploy/rbac-service-account-tokens.yaml` is this text for the audiences of ECR and
//! ACR (a test checks it), and `explain` prints it for the audience a pull needs.

/// The name of the ClusterRole and of its ClusterRoleBinding.
pub const NAME: &str = "image-credential-provider-audiences";

/// The ClusterRole granting the nodes tokens of `audiences`, and its binding to the group
/// `system:nodes`, as one YAML text of two documents.
pub fn rbac(audiences: &[&str]) -> String {
    let resources: Vec<String> = audiences
        .iter()
        .map(|audience| serde_json::Value::from(*audience).to_string())
        .collect();
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {NAME}
  labels:
    app.kubernetes.io/name: image-credential-provider
rules:
  - apiGroups: [\"\"]
    resources: [{}]
    verbs: [\"request-serviceaccounts-token-audience\"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {NAME}
  labels:
    app.kubernetes.io/name: image-credential-provider
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {NAME}
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: system:nodes
",
        resources.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_manifest_is_this_text_for_ecr_and_acr() {
        let manifest = include_str!("../../deploy/rbac-service-account-tokens.yaml");
        let body: String = manifest
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(
            body,
            rbac(&["sts.amazonaws.com", "api://AzureADTokenExchange"])
        );
    }
}
