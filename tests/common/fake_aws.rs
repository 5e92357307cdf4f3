//! A loopback stand-in for the two AWS APIs the ECR backend calls, counting each call:
//! ECR `GetAuthorizationToken` (JSON 1.1 protocol) and STS `AssumeRole` /
//! `AssumeRoleWithWebIdentity` (query protocol). It answers as the services do, slowly
//! when told to, and can hang the first calls to stand in for a stuck upstream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

/// The fake; it serves until the test process ends.
pub struct FakeAws {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_ECR` and `AWS_ENDPOINT_URL_STS`.
    pub url: String,
    state: Arc<State>,
}

struct State {
    ecr_calls: AtomicUsize,
    sts_calls: AtomicUsize,
    delay: Duration,
    hang_first: usize,
}

impl FakeAws {
    /// Starts a fake whose ECR answers take `delay`, and whose first `hang_first` ECR
    /// calls never get an answer.
    pub fn start(delay: Duration, hang_first: usize) -> FakeAws {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            ecr_calls: AtomicUsize::new(0),
            sts_calls: AtomicUsize::new(0),
            delay,
            hang_first,
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        FakeAws { url, state }
    }

    /// How many `GetAuthorizationToken` calls arrived.
    pub fn ecr_calls(&self) -> usize {
        self.state.ecr_calls.load(Ordering::SeqCst)
    }

    /// How many STS calls arrived.
    pub fn sts_calls(&self) -> usize {
        self.state.sts_calls.load(Ordering::SeqCst)
    }
}

/// Serves one keep-alive connection.
fn serve(stream: TcpStream, state: &State) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        let mut target = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "x-amz-target" => target = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body);
        let (content_type, answer) = if target.ends_with("GetAuthorizationToken") {
            let call = state.ecr_calls.fetch_add(1, Ordering::SeqCst) + 1;
            if call <= state.hang_first {
                std::thread::sleep(Duration::from_secs(120));
                return;
            }
            std::thread::sleep(state.delay);
            ("application/x-amz-json-1.1", ecr_token(call))
        } else if body.contains("Action=AssumeRole") {
            state.sts_calls.fetch_add(1, Ordering::SeqCst);
            (
                "text/xml",
                sts_credentials(body.contains("Action=AssumeRoleWithWebIdentity")),
            )
        } else {
            ("text/plain", String::new())
        };
        let status = if answer.is_empty() {
            "400 Bad Request"
        } else {
            "200 OK"
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-amzn-requestid: fake-{}\r\n\r\n{answer}",
            answer.len(),
            state.ecr_calls.load(Ordering::SeqCst)
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The password of the `n`th token the fake hands out.
pub fn password(n: usize) -> String {
    format!("fake-ecr-token-{n}")
}

fn ecr_token(n: usize) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", password(n)));
    let expires = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 12 * 3600;
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
