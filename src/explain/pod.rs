//! The pod a pull is explained for: read from a Pod manifest (`--pod FILE`), or given as
//! `--namespace` and `--service-account`. A Pod does not carry its service account's
//! annotations, which the kubelet reads from the ServiceAccount: they come from
//! `--annotation K=V` or from a ServiceAccount document in the same file, and the report
//! says which.

use std::collections::BTreeMap;
use std::path::Path;

use icp_core::{names, quote};
use serde_json::Value;

use super::kubelet::{Pod, ServiceAccount};
use crate::document;

/// Largest Pod manifest read.
const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// The service account of a pod that names none: the one Kubernetes gives it.
const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The namespace of an object that names none.
const DEFAULT_NAMESPACE: &str = "default";

/// The pod, and where what is known of it comes from.
pub struct PodInput {
    /// The pod as the kubelet sees it.
    pub pod: Pod,
    /// Its name, when a manifest gives one.
    pub name: Option<String>,
    /// Where its service account's annotations come from.
    pub annotations_from: String,
}

/// One `--annotation K=V`: `K` an annotation key.
pub fn annotation(arg: &str) -> Result<(String, String), String> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err(format!("--annotation {}: expected KEY=VALUE", quote(arg)));
    };
    if !names::is_annotation_key(key) {
        return Err(format!(
            "--annotation {}: {} is not an annotation key",
            quote(arg),
            quote(key)
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// The pod of `--namespace` (default `default`) and `--service-account`, with the
/// annotations of `--annotation`.
pub fn from_flags(
    namespace: Option<&str>,
    service_account: &str,
    annotations: BTreeMap<String, String>,
) -> Result<PodInput, String> {
    let namespace = namespace.unwrap_or(DEFAULT_NAMESPACE);
    check_names(namespace, service_account)?;
    let annotations_from = match annotations.is_empty() {
        true => "none given (--annotation KEY=VALUE gives them)".to_owned(),
        false => "from --annotation".to_owned(),
    };
    Ok(PodInput {
        pod: Pod {
            namespace: namespace.to_owned(),
            service_account: Some(ServiceAccount {
                name: service_account.to_owned(),
                uid: None,
                annotations,
            }),
        },
        name: None,
        annotations_from,
    })
}

/// The pod of the Pod manifest at `path`; its service account's annotations are
/// `annotations` when any are given, else those of a ServiceAccount document of the same
/// file that names it.
pub fn from_file(path: &Path, annotations: BTreeMap<String, String>) -> Result<PodInput, String> {
    let origin = quote::path(path);
    let bytes = icp_core::io::read_file(path, MAX_FILE_SIZE)
        .map_err(|e| format!("--pod {origin}: cannot read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("--pod {origin}: not valid UTF-8"))?;
    let mut pod: Option<(String, Option<String>, String)> = None;
    let mut accounts: Vec<Value> = Vec::new();
    for value in document::yaml_documents(&text).map_err(|e| format!("--pod {origin}: {e}"))? {
        match value.get("kind").and_then(Value::as_str) {
            Some("Pod") if pod.is_none() => {
                let metadata = &value["metadata"];
                let namespace = text_at(metadata, "namespace").unwrap_or(DEFAULT_NAMESPACE);
                let spec = &value["spec"];
                let account = text_at(spec, "serviceAccountName")
                    .or_else(|| text_at(spec, "serviceAccount"))
                    .unwrap_or(DEFAULT_SERVICE_ACCOUNT);
                pod = Some((
                    namespace.to_owned(),
                    text_at(metadata, "name").map(str::to_owned),
                    account.to_owned(),
                ));
            }
            Some("Pod") => return Err(format!("--pod {origin}: holds more than one Pod")),
            Some("ServiceAccount") => accounts.push(value),
            _ => {}
        }
    }
    let Some((namespace, name, account)) = pod else {
        return Err(format!("--pod {origin}: holds no Pod (kind: Pod)"));
    };
    check_names(&namespace, &account)?;
    let document = accounts.iter().find(|value| {
        let metadata = &value["metadata"];
        text_at(metadata, "name") == Some(account.as_str())
            && text_at(metadata, "namespace").is_none_or(|ns| ns == namespace)
    });
    let uid = document.and_then(|value| text_at(&value["metadata"], "uid").map(str::to_owned));
    let (annotations, annotations_from) = match (annotations.is_empty(), document) {
        (false, Some(_)) => (
            annotations,
            format!("from --annotation (the ServiceAccount document in {origin} is not used)"),
        ),
        (false, None) => (annotations, "from --annotation".to_owned()),
        (true, Some(value)) => (
            account_annotations(&value["metadata"]["annotations"])
                .map_err(|e| format!("--pod {origin}: ServiceAccount {account}: {e}"))?,
            format!("from the ServiceAccount document in {origin}"),
        ),
        (true, None) => (
            BTreeMap::new(),
            format!(
                "none known: a Pod does not carry its service account's annotations; give \
                 --annotation KEY=VALUE or the ServiceAccount {account} as a document of {origin}"
            ),
        ),
    };
    Ok(PodInput {
        pod: Pod {
            namespace,
            service_account: Some(ServiceAccount {
                name: account,
                uid,
                annotations,
            }),
        },
        name,
        annotations_from,
    })
}

/// The string at `key` of `value`, when it is one and not empty.
fn text_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// A ServiceAccount's `metadata.annotations`: a mapping of strings, or nothing.
fn account_annotations(value: &Value) -> Result<BTreeMap<String, String>, String> {
    match value {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                _ => Err(format!("annotation {} is not a string", quote(key))),
            })
            .collect(),
        _ => Err("metadata.annotations is not a mapping".to_owned()),
    }
}

/// Refuses a namespace or service account name Kubernetes would not have.
fn check_names(namespace: &str, service_account: &str) -> Result<(), String> {
    if !names::is_dns1123_label(namespace) {
        return Err(format!(
            "namespace {} is not a namespace name",
            quote(namespace)
        ));
    }
    if !names::is_dns1123_subdomain(service_account) {
        return Err(format!(
            "service account {} is not a service account name",
            quote(service_account)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_arguments() {
        assert_eq!(
            annotation("example.com/role=arn:a=b").unwrap(),
            ("example.com/role".to_owned(), "arn:a=b".to_owned())
        );
        assert!(annotation("no-value").is_err());
        assert!(annotation("bad key=x").is_err());
    }
}
