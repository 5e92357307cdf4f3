//! A loopback stand-in for the two AWS APIs the ECR backend calls, counting each call:
//! ECR `GetAuthorizationToken` (JSON 1.1 protocol) and STS `AssumeRole` /
//! `AssumeRoleWithWebIdentity` (query protocol), granted to anyone. It answers as the
//! services do, slowly when told to, and can hang the first calls to stand in for a
//! stuck upstream, go down mid-way ([`FakeAws::go_down`]), or throttle ECR calls as a
//! quota spent does (`ThrottlingException`). The tests of the token cache count its calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::server::{AMZ_JSON, Fake, Recorded, Reply, aws_error, base64};
use crate::time::now;

/// The fake; it serves until the test process ends.
pub struct FakeAws {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_ECR` and `AWS_ENDPOINT_URL_STS`.
    pub url: String,
    _fake: Fake,
    state: Arc<State>,
}

struct State {
    ecr_calls: AtomicUsize,
    sts_calls: AtomicUsize,
    delay: Duration,
    hang_first: usize,
    /// How ECR answers now: [`UP`], [`HANG`], or an error status.
    mode: AtomicU16,
    /// The lifetime of the tokens handed out, in seconds.
    lifetime: AtomicU64,
    /// ECR calls are answered with `ThrottlingException`.
    throttle: AtomicBool,
}

/// [`State::mode`]: answering.
const UP: u16 = 0;
/// [`State::mode`]: never answering.
const HANG: u16 = 1;

/// How a fake that went down answers `GetAuthorizationToken`.
#[derive(Debug, Clone, Copy)]
pub enum Down {
    /// Never: the connection stays open without an answer.
    Hang,
    /// With this HTTP status and the AWS error ECR gives with it (`ServerException` for
    /// 500, `ServiceUnavailableException` for 503, `AccessDeniedException` for 403, ...).
    Status(u16),
}

impl FakeAws {
    /// Starts a fake whose ECR answers take `delay`, and whose first `hang_first` ECR
    /// calls never get an answer.
    pub fn start(delay: Duration, hang_first: usize) -> FakeAws {
        let state = Arc::new(State {
            ecr_calls: AtomicUsize::new(0),
            sts_calls: AtomicUsize::new(0),
            delay,
            hang_first,
            mode: AtomicU16::new(UP),
            lifetime: AtomicU64::new(12 * 3600),
            throttle: AtomicBool::new(false),
        });
        let shared = state.clone();
        let fake = Fake::start(move |request, _| answer(&shared, request));
        FakeAws {
            url: fake.url.clone(),
            _fake: fake,
            state,
        }
    }

    /// How many `GetAuthorizationToken` calls arrived.
    pub fn ecr_calls(&self) -> usize {
        self.state.ecr_calls.load(Ordering::SeqCst)
    }

    /// From now on, answers `GetAuthorizationToken` as `down` says.
    pub fn go_down(&self, down: Down) {
        let mode = match down {
            Down::Hang => HANG,
            Down::Status(status) => status,
        };
        self.state.mode.store(mode, Ordering::SeqCst);
    }

    /// From now on, answers `GetAuthorizationToken` again.
    pub fn come_back(&self) {
        self.state.mode.store(UP, Ordering::SeqCst);
    }

    /// From now on, hands out tokens that expire `seconds` after they are fetched (12
    /// hours until then, as ECR's do).
    pub fn token_lifetime(&self, seconds: u64) {
        self.state.lifetime.store(seconds, Ordering::SeqCst);
    }

    /// Whether ECR calls are answered with `ThrottlingException` (HTTP 400), counted all
    /// the same, from now on.
    pub fn throttle(&self, on: bool) {
        self.state.throttle.store(on, Ordering::SeqCst);
    }

    /// How many STS calls arrived.
    pub fn sts_calls(&self) -> usize {
        self.state.sts_calls.load(Ordering::SeqCst)
    }
}

fn answer(state: &State, request: &Recorded) -> Reply {
    let is_ecr = request
        .header("x-amz-target")
        .is_some_and(|target| target.ends_with("GetAuthorizationToken"));
    let (status, content_type, body) = if is_ecr {
        let call = state.ecr_calls.fetch_add(1, Ordering::SeqCst) + 1;
        match state.mode.load(Ordering::SeqCst) {
            _ if call <= state.hang_first => return Reply::Hang,
            UP => {}
            HANG => return Reply::Hang,
            status => return aws_error(status, ecr_error_code(status), "the fake is down"),
        }
        std::thread::sleep(state.delay);
        if state.throttle.load(Ordering::SeqCst) {
            (
                400,
                AMZ_JSON,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
            )
        } else {
            let lifetime = state.lifetime.load(Ordering::SeqCst);
            (200, AMZ_JSON, ecr_token(call, lifetime))
        }
    } else if request.body.contains("Action=AssumeRole") {
        state.sts_calls.fetch_add(1, Ordering::SeqCst);
        let web_identity = request.body.contains("Action=AssumeRoleWithWebIdentity");
        (200, "text/xml", sts_credentials(web_identity))
    } else {
        (400, "text/plain", String::new())
    };
    let request_id = format!("fake-{}", state.ecr_calls.load(Ordering::SeqCst));
    Reply::WithHeaders(
        status,
        vec![
            ("content-type", content_type.to_owned()),
            ("x-amzn-requestid", request_id),
        ],
        body,
    )
}

/// The password of the `n`th token the fake hands out.
pub fn password(n: usize) -> String {
    format!("fake-ecr-token-{n}")
}

/// The AWS error code ECR answers with `status`.
fn ecr_error_code(status: u16) -> &'static str {
    match status {
        401 | 403 => "AccessDeniedException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        500..=599 => "ServerException",
        _ => "InvalidParameterException",
    }
}

fn ecr_token(n: usize, lifetime: u64) -> String {
    let token = base64(&format!("AWS:{}", password(n)));
    let expires = now() + lifetime;
    format!(
        r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{expires},"proxyEndpoint":"https://111122223333.dkr.ecr.us-east-1.amazonaws.com"}}]}}"#
    )
}

fn sts_credentials(web_identity: bool) -> String {
    let action = if web_identity {
        "AssumeRoleWithWebIdentity"
    } else {
        "AssumeRole"
    };
    format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>\
         <Credentials><AccessKeyId>ASIAFAKEASSUMED</AccessKeyId><SecretAccessKey>fake-assumed-secret</SecretAccessKey>\
         <SessionToken>fake-session-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>\
         <AssumedRoleUser><AssumedRoleId>AROAFAKE:session</AssumedRoleId><Arn>arn:aws:sts::111122223333:assumed-role/r/session</Arn></AssumedRoleUser>\
         </{action}Result><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></{action}Response>"
    )
}
