//! A loopback AWS for the kubelet's service-account-token mode, on the server of
//! [`server`](super::server): STS `AssumeRoleWithWebIdentity` as the query protocol has it
//! (a form-encoded POST, an XML answer, XML errors) that grants a role only to the tokens
//! registered for it, as a role's trust policy would, EKS Auth `AssumeRoleForPodIdentity`
//! ([`eks_auth`](super::eks_auth)) that grants the role of a service account's Pod Identity
//! association, and ECR `GetAuthorizationToken` (and ECR Public's) that answers with a
//! token naming the principal whose keys signed the request. It records every exchange and
//! counts the services' calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::eks_auth::{self, PodIdentityCall};
use super::server::{AMZ_JSON, Fake, Recorded, Reply, aws_error, base64};
pub use super::session::{SESSION_SECONDS, sts_secrets};
use crate::form;
use crate::time::{now, rfc3339};

/// How long the ECR tokens live, as AWS documents them.
pub const ECR_TOKEN_SECONDS: u64 = 12 * 3600;

/// One `AssumeRoleWithWebIdentity` call that arrived.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `RoleArn`.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `WebIdentityToken`: the token that was exchanged.
    pub token: String,
    /// Whether the request carried an `Authorization` header (the exchange needs none).
    pub signed: bool,
    /// The access key id handed out, when the exchange was granted.
    pub access_key_id: Option<String>,
}

#[derive(Default)]
struct State {
    /// (token, role ARN) pairs the trust policies allow.
    grants: Mutex<Vec<(String, String)>>,
    exchanges: Mutex<Vec<Exchange>>,
    /// Access key id handed out, to the role it belongs to.
    issued: Mutex<HashMap<String, String>>,
    throttling: AtomicBool,
    sts_calls: AtomicUsize,
    ecr_calls: AtomicUsize,
    /// The principal of each ECR call: a role ARN, or `node:<access key id>`.
    ecr_principals: Mutex<Vec<String>>,
    eks_auth: eks_auth::State,
}

/// The fake; it serves until the test process ends.
pub struct Aws {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL_ECR`,
    /// `AWS_ENDPOINT_URL_ECR_PUBLIC` or `AWS_ENDPOINT_URL`.
    pub url: String,
    _fake: Fake,
    state: Arc<State>,
}

impl Aws {
    /// Starts the fake; each STS answer takes `sts_delay`, so that concurrent callers
    /// overlap.
    pub fn start(sts_delay: Duration) -> Aws {
        let state = Arc::new(State::default());
        let shared = state.clone();
        let fake = Fake::start(move |request, _| answer(&shared, request, sts_delay));
        Aws {
            url: fake.url.clone(),
            _fake: fake,
            state,
        }
    }

    /// Lets `token` assume `role_arn`.
    pub fn grant(&self, token: &str, role_arn: &str) {
        self.state
            .grants
            .lock()
            .unwrap()
            .push((token.to_owned(), role_arn.to_owned()));
    }

    /// Associates the service account `namespace/account` of `cluster` with `role_arn`,
    /// as an EKS Pod Identity association does.
    pub fn associate(&self, cluster: &str, namespace: &str, account: &str, role_arn: &str) {
        self.state
            .eks_auth
            .associate(cluster, namespace, account, role_arn);
    }

    /// Makes EKS Auth answer the next `calls` calls with `ThrottlingException` (HTTP 429).
    pub fn throttle_eks_auth(&self, calls: usize) {
        self.state.eks_auth.throttle(calls);
    }

    /// Makes EKS Auth refuse the node's credentials from now on (`AccessDeniedException`),
    /// as when the node role lacks `eks-auth:AssumeRoleForPodIdentity`.
    pub fn deny_eks_auth(&self) {
        self.state.eks_auth.deny();
    }

    /// The `AssumeRoleForPodIdentity` calls that arrived, in order.
    pub fn pod_identity_calls(&self) -> Vec<PodIdentityCall> {
        self.state.eks_auth.calls()
    }

    /// How many EKS Auth calls arrived.
    pub fn eks_auth_calls(&self) -> usize {
        self.state.eks_auth.count()
    }

    /// Makes STS answer every exchange from now on with `Throttling`.
    pub fn throttle(&self) {
        self.state.throttling.store(true, Ordering::SeqCst);
    }

    /// The exchanges that arrived, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.exchanges.lock().unwrap().clone()
    }

    /// How many STS calls arrived.
    pub fn sts_calls(&self) -> usize {
        self.state.sts_calls.load(Ordering::SeqCst)
    }

    /// How many `GetAuthorizationToken` calls arrived (ECR and ECR Public).
    pub fn ecr_calls(&self) -> usize {
        self.state.ecr_calls.load(Ordering::SeqCst)
    }

    /// The principal of each `GetAuthorizationToken` call, in order: the role ARN whose
    /// credentials signed it, or `node:<access key id>` for keys STS did not hand out.
    pub fn ecr_principals(&self) -> Vec<String> {
        self.state.ecr_principals.lock().unwrap().clone()
    }
}

/// The password of the `n`th ECR token (1-based), fetched as `principal`.
pub fn ecr_password(n: usize, principal: &str) -> String {
    let who = principal.rsplit('/').next().unwrap_or(principal);
    format!("ecr-token-{n}-for-{who}")
}

fn answer(state: &State, request: &Recorded, sts_delay: Duration) -> Reply {
    match request.header("x-amz-target") {
        Some(target) if target.ends_with(".GetAuthorizationToken") => {
            ecr(state, request, target.starts_with("SpencerFrontendService"))
        }
        _ if eks_auth::is_eks_auth(request) => {
            std::thread::sleep(sts_delay);
            eks_auth::answer(&state.eks_auth, request, |grant| {
                state
                    .issued
                    .lock()
                    .unwrap()
                    .insert(grant.access_key_id.clone(), grant.role.clone());
                state.eks_auth.count()
            })
        }
        _ => {
            std::thread::sleep(sts_delay);
            sts(state, request)
        }
    }
}

fn sts(state: &State, request: &Recorded) -> Reply {
    let call = state.sts_calls.fetch_add(1, Ordering::SeqCst) + 1;
    let form = form(&request.body);
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    if request.method != "POST"
        || !request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
        || field("Action") != "AssumeRoleWithWebIdentity"
        || field("Version") != "2011-06-15"
    {
        return sts_error(
            400,
            "InvalidAction",
            "not an AssumeRoleWithWebIdentity call",
        );
    }
    let mut exchange = Exchange {
        role_arn: field("RoleArn"),
        session_name: field("RoleSessionName"),
        token: field("WebIdentityToken"),
        signed: request.header("authorization").is_some(),
        access_key_id: None,
    };
    let session_ok = (2..=64).contains(&exchange.session_name.len())
        && exchange
            .session_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    let granted = state
        .grants
        .lock()
        .unwrap()
        .iter()
        .any(|(token, role)| *token == exchange.token && *role == exchange.role_arn);
    let reply = if state.throttling.load(Ordering::SeqCst) {
        sts_error(400, "Throttling", "Rate exceeded")
    } else if !session_ok {
        sts_error(
            400,
            "ValidationError",
            "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint",
        )
    } else if !granted {
        sts_error(
            403,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        )
    } else {
        let access_key_id = format!("ASIAFAKESTS{call:09}");
        state
            .issued
            .lock()
            .unwrap()
            .insert(access_key_id.clone(), exchange.role_arn.clone());
        exchange.access_key_id = Some(access_key_id.clone());
        sts_credentials(call, &access_key_id, &exchange)
    };
    state.exchanges.lock().unwrap().push(exchange);
    reply
}

/// An STS error as the query protocol has it.
fn sts_error(status: u16, code: &str, message: &str) -> Reply {
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    Reply::Respond(
        status,
        "text/xml",
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>fake-sts-request</RequestId></ErrorResponse>"
        ),
    )
}

fn sts_credentials(call: usize, access_key_id: &str, exchange: &Exchange) -> Reply {
    let [secret, session_token] = sts_secrets(call);
    let expiration = rfc3339(now() + SESSION_SECONDS);
    let role = &exchange.role_arn;
    let account = role.split(':').nth(4).unwrap_or_default();
    let role_name = role.rsplit('/').next().unwrap_or_default();
    let session = &exchange.session_name;
    Reply::Respond(
        200,
        "text/xml",
        format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <AssumeRoleWithWebIdentityResult>\
             <SubjectFromWebIdentityToken>system:serviceaccount:fake</SubjectFromWebIdentityToken>\
             <Audience>sts.amazonaws.com</Audience>\
             <AssumedRoleUser><Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>\
             <AssumedRoleId>AROAFAKE:{session}</AssumedRoleId></AssumedRoleUser>\
             <Credentials><SessionToken>{session_token}</SessionToken>\
             <SecretAccessKey>{secret}</SecretAccessKey><Expiration>{expiration}</Expiration>\
             <AccessKeyId>{access_key_id}</AccessKeyId></Credentials>\
             <Provider>https://oidc.fake.example</Provider>\
             </AssumeRoleWithWebIdentityResult>\
             <ResponseMetadata><RequestId>fake-sts-request</RequestId></ResponseMetadata>\
             </AssumeRoleWithWebIdentityResponse>"
        ),
    )
}

fn ecr(state: &State, request: &Recorded, public: bool) -> Reply {
    let n = state.ecr_calls.fetch_add(1, Ordering::SeqCst) + 1;
    let Some(access_key_id) = request
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
    else {
        return aws_error(400, "MissingAuthenticationTokenException", "not signed");
    };
    let principal = match state.issued.lock().unwrap().get(access_key_id) {
        Some(role) => role.clone(),
        None => format!("node:{access_key_id}"),
    };
    state.ecr_principals.lock().unwrap().push(principal.clone());
    let token = base64(&format!("AWS:{}", ecr_password(n, &principal)));
    let expires_at = now() + ECR_TOKEN_SECONDS;
    let data = format!(r#"{{"authorizationToken":"{token}","expiresAt":{expires_at}}}"#);
    let body = if public {
        format!(r#"{{"authorizationData":{data}}}"#)
    } else {
        format!(r#"{{"authorizationData":[{data}]}}"#)
    };
    Reply::Respond(200, AMZ_JSON, body)
}

/// The fields of a form-encoded body, decoded.
fn form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (form::decode(name), form::decode(value)))
        .collect()
}
