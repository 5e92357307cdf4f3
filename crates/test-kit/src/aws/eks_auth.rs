//! EKS Auth `AssumeRoleForPodIdentity` (EKS Pod Identity) as its API reference has it, for
//! the fake of [`sts`](super::sts): `POST /clusters/{clusterName}/assume-role-for-pod-identity`
//! with a JSON `{"token"}`, signed (SigV4, service `eks-auth`) with the node's credentials;
//! the token's `aud` must be `pods.eks.amazonaws.com`, its `exp` in the future, and its
//! service account associated with a role in the cluster. Answers `credentials`,
//! `assumedRoleUser`, `podIdentityAssociation`, `subject` and `audience`, or the API's
//! errors in the REST-JSON shape (`x-amzn-errortype` and `{"message"}`) with their statuses:
//! `AccessDeniedException`, `InvalidTokenException`, `ExpiredTokenException` (400),
//! `ResourceNotFoundException` (404), `ThrottlingException` (429).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::Value;

use super::server::{Recorded, Reply};
use crate::time::now;

/// The audience EKS Auth accepts.
pub const AUDIENCE: &str = "pods.eks.amazonaws.com";

/// One `AssumeRoleForPodIdentity` call that arrived.
#[derive(Debug, Clone)]
pub struct PodIdentityCall {
    /// The cluster of the path.
    pub cluster: String,
    /// The `token` of the body.
    pub token: String,
    /// The access key id that signed the call, if it was signed for `eks-auth`.
    pub signed_by: Option<String>,
    /// The region of the signature's credential scope.
    pub region: Option<String>,
    /// The error code answered, if any.
    pub error: Option<String>,
}

/// The state of the fake EKS Auth.
#[derive(Default)]
pub(super) struct State {
    /// (cluster, namespace, service account, role ARN) of each association.
    associations: Mutex<Vec<(String, String, String, String)>>,
    calls: Mutex<Vec<PodIdentityCall>>,
    count: AtomicUsize,
    /// How many calls to answer with `ThrottlingException` before answering normally.
    throttled: AtomicUsize,
    /// Whether the node's credentials lack `eks-auth:AssumeRoleForPodIdentity`.
    denied: AtomicBool,
}

impl State {
    pub(super) fn associate(&self, cluster: &str, namespace: &str, account: &str, role: &str) {
        self.associations.lock().unwrap().push((
            cluster.into(),
            namespace.into(),
            account.into(),
            role.into(),
        ));
    }

    pub(super) fn throttle(&self, calls: usize) {
        self.throttled.store(calls, Ordering::SeqCst);
    }

    pub(super) fn deny(&self) {
        self.denied.store(true, Ordering::SeqCst);
    }

    pub(super) fn calls(&self) -> Vec<PodIdentityCall> {
        self.calls.lock().unwrap().clone()
    }

    pub(super) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// What a granted call hands out, for [`answer`]'s caller to record.
pub(super) struct Grant {
    /// The role the association names.
    pub role: String,
    /// The access key id the caller must hand out (and remember as the role's).
    pub access_key_id: String,
}

/// Whether `request` is an EKS Auth call.
pub(super) fn is_eks_auth(request: &Recorded) -> bool {
    request.target.starts_with("/clusters/")
}

/// Answers one call; `issue` is told of each grant and returns the `n` of its secrets.
pub(super) fn answer(
    state: &State,
    request: &Recorded,
    issue: impl FnOnce(&Grant) -> usize,
) -> Reply {
    let n = state.count.fetch_add(1, Ordering::SeqCst) + 1;
    let cluster = request
        .target
        .strip_prefix("/clusters/")
        .and_then(|rest| rest.strip_suffix("/assume-role-for-pod-identity"))
        .unwrap_or_default()
        .to_owned();
    let token = serde_json::from_str::<Value>(&request.body)
        .ok()
        .and_then(|body| body["token"].as_str().map(str::to_owned))
        .unwrap_or_default();
    // Credential=<key id>/<date>/<region>/eks-auth/aws4_request
    let scope: Vec<&str> = request
        .header("authorization")
        .filter(|a| a.starts_with("AWS4-HMAC-SHA256 ") && a.contains("/eks-auth/aws4_request"))
        .and_then(|a| a.split("Credential=").nth(1))
        .map(|c| c.split(',').next().unwrap_or_default().split('/').collect())
        .unwrap_or_default();
    let mut call = PodIdentityCall {
        cluster,
        token,
        signed_by: scope.first().map(|id| id.to_string()),
        region: scope.get(2).map(|region| region.to_string()),
        error: None,
    };
    let reply = decide(state, &call, n, issue);
    if let Err((_, code, _)) = &reply {
        call.error = Some((*code).to_owned());
    }
    state.calls.lock().unwrap().push(call);
    match reply {
        Ok(reply) => reply,
        Err((status, code, message)) => error(status, code, &message),
    }
}

type Refusal = (u16, &'static str, String);

fn decide(
    state: &State,
    call: &PodIdentityCall,
    n: usize,
    issue: impl FnOnce(&Grant) -> usize,
) -> Result<Reply, Refusal> {
    if state
        .throttled
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
    {
        return Err((429, "ThrottlingException", "Rate exceeded".into()));
    }
    let valid_cluster = (1..=100).contains(&call.cluster.len())
        && call
            .cluster
            .starts_with(|c: char| c.is_ascii_alphanumeric())
        && call
            .cluster
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_cluster {
        return Err((
            400,
            "InvalidParameterException",
            "clusterName failed to satisfy constraint".into(),
        ));
    }
    let Some(_signer) = &call.signed_by else {
        return Err((
            400,
            "AccessDeniedException",
            "the request is not signed for eks-auth".into(),
        ));
    };
    if state.denied.load(Ordering::SeqCst) {
        return Err((
            400,
            "AccessDeniedException",
            "User: arn:aws:sts::111122223333:assumed-role/node/i-0 is not authorized to perform: \
             eks-auth:AssumeRoleForPodIdentity"
                .into(),
        ));
    }
    let claims = claims(&call.token).ok_or((
        400,
        "InvalidTokenException",
        "The service account token is not a valid JWT".to_owned(),
    ))?;
    let audience_ok = match &claims["aud"] {
        Value::String(aud) => aud == AUDIENCE,
        Value::Array(auds) => auds.iter().any(|aud| aud == AUDIENCE),
        _ => false,
    };
    if !audience_ok {
        return Err((
            400,
            "InvalidTokenException",
            format!("The service account token's audience is not {AUDIENCE}"),
        ));
    }
    if claims["exp"].as_u64().is_some_and(|exp| exp <= now()) {
        return Err((
            400,
            "ExpiredTokenException",
            "The service account token has expired".into(),
        ));
    }
    let namespace = claims["kubernetes.io"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let account = claims["kubernetes.io"]["serviceaccount"]["name"]
        .as_str()
        .unwrap_or_default();
    let role = state
        .associations
        .lock()
        .unwrap()
        .iter()
        .find(|(c, ns, sa, _)| *c == call.cluster && ns == namespace && sa == account)
        .map(|(.., role)| role.clone())
        .ok_or((
            404,
            "ResourceNotFoundException",
            "No Pod Identity Association found for the service account".to_owned(),
        ))?;
    let access_key_id = format!("ASIAFAKEPODID{n:07}");
    let secrets = issue(&Grant {
        role: role.clone(),
        access_key_id: access_key_id.clone(),
    });
    let [secret, session_token] = super::session::sts_secrets(secrets);
    let account_id = role.split(':').nth(4).unwrap_or_default();
    let role_name = role.rsplit('/').next().unwrap_or_default();
    let expiration = now() + super::session::SESSION_SECONDS;
    let body = serde_json::json!({
        "assumedRoleUser": {
            "arn": format!("arn:aws:sts::{account_id}:assumed-role/{role_name}/eks-{}-{n}", call.cluster),
            "assumeRoleId": format!("AROAFAKE:eks-{}-{n}", call.cluster),
        },
        "audience": AUDIENCE,
        "credentials": {
            "accessKeyId": access_key_id,
            "expiration": expiration,
            "secretAccessKey": secret,
            "sessionToken": session_token,
        },
        "podIdentityAssociation": {
            "associationArn": format!("arn:aws:eks:eu-west-1:{account_id}:podidentityassociation/{}/a-{namespace}-{account}", call.cluster),
            "associationId": format!("a-{namespace}-{account}"),
        },
        "subject": {"namespace": namespace, "serviceAccount": account},
    });
    Ok(Reply::Respond(200, "application/json", body.to_string()))
}

/// The claims of a JWT, unverified, as the fake reads them.
fn claims(token: &str) -> Option<Value> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&decoded).ok()
}

/// An EKS Auth error in the REST-JSON shape.
fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::WithHeaders(
        status,
        vec![
            ("content-type", "application/json".to_owned()),
            (
                "x-amzn-errortype",
                format!("{code}:http://internal.amazon.com/coral/"),
            ),
        ],
        serde_json::json!({ "message": message }).to_string(),
    )
}
