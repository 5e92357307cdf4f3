//! What the ECR crate's integration tests share: a clean AWS environment per test, a small
//! HTTP/1.1 server on 127.0.0.1 that plays AWS (errors, throttling and hangs included) and
//! counts what it is sent, and a moto server started from the project's venv.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use icp_core::{CacheKeyType, ImageRef, Request, Token, TokenSource};
use icp_ecr::{Config, Ecr, Error, Limits};

/// Limits small enough that a hang or a throttling loop ends quickly in a test.
pub fn quick_limits() -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        attempt_timeout: Duration::from_secs(3),
        operation_timeout: Duration::from_secs(8),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        credentials_timeout: Duration::from_secs(2),
    }
}

/// A backend for `config` with [`quick_limits`].
pub fn backend(config: Config) -> Ecr {
    Ecr::new(config, Path::new("/"))
        .unwrap()
        .with_limits(quick_limits())
}

/// Fetches the token for `image` as the binary would: only if the backend serves it.
pub fn fetch(backend: &Ecr, image: &str) -> Result<Token, Error> {
    let image = ImageRef::parse(image).unwrap();
    assert!(backend.serves(&image), "{image} should be served");
    let annotations = BTreeMap::new();
    let request = Request {
        image: &image,
        cache_key_type: CacheKeyType::Registry,
        service_account_token: None,
        service_account_annotations: &annotations,
    };
    backend.fetch(&request)
}

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Variables that would let the developer's own AWS setup or proxy leak into a test.
fn leaky(name: &str) -> bool {
    name.starts_with("AWS_")
        || name.eq_ignore_ascii_case("HTTPS_PROXY")
        || name.eq_ignore_ascii_case("HTTP_PROXY")
        || name.eq_ignore_ascii_case("ALL_PROXY")
        || name.eq_ignore_ascii_case("NO_PROXY")
}

/// The process environment of one test, restored when dropped. Every test of a test binary
/// holds the same lock while it exists, so no two tests see each other's variables.
pub struct TestEnv {
    saved: Vec<(String, Option<String>)>,
    home: tempfile::TempDir,
    _lock: MutexGuard<'static, ()>,
}

impl TestEnv {
    /// A clean AWS environment: no `AWS_*` or proxy variables, an empty home directory (so
    /// no `~/.aws` is read), instance metadata disabled, then `vars` on top.
    pub fn new(vars: &[(&str, &str)]) -> TestEnv {
        let lock = ENV_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let home = tempfile::tempdir().unwrap();
        let mut names: Vec<String> = std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| leaky(k))
            .collect();
        names.push("HOME".into());
        names.extend(vars.iter().map(|(k, _)| k.to_string()));
        names.extend(
            [
                "AWS_EC2_METADATA_DISABLED",
                "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE",
            ]
            .map(String::from),
        );
        names.sort();
        names.dedup();
        let saved = names
            .iter()
            .map(|k| (k.clone(), std::env::var(k).ok()))
            .collect();
        let env = TestEnv {
            saved,
            home,
            _lock: lock,
        };
        for name in &names {
            set(name, None);
        }
        set("HOME", Some(env.home.path().to_str().unwrap()));
        set(
            "AWS_CONFIG_FILE",
            Some(env.home.path().join("no-config").to_str().unwrap()),
        );
        set(
            "AWS_SHARED_CREDENTIALS_FILE",
            Some(env.home.path().join("no-credentials").to_str().unwrap()),
        );
        set("AWS_EC2_METADATA_DISABLED", Some("true"));
        for (name, value) in vars {
            set(name, Some(value));
        }
        env
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for (name, value) in &self.saved {
            set(name, value.as_deref());
        }
    }
}

fn set(name: &str, value: Option<&str>) {
    // SAFETY: every test in a test binary of this crate holds ENV_LOCK while it reads or
    // changes the environment, and each fetch's runtime and threads end before it returns.
    unsafe {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
}

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, `GET`, `PUT`, `CONNECT`, ...
    pub method: String,
    /// The request target: a path, or `host:port` for `CONNECT`.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a fake does with a request.
pub enum Reply {
    /// Answers with this status, content type and body.
    Respond(u16, &'static str, String),
    /// Answers with this status, extra headers and a `text/plain` body.
    WithHeaders(u16, Vec<(&'static str, String)>, String),
    /// Never answers, and keeps the connection open until the client gives up.
    Hang,
}

type Handler = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 that answers through a handler and records every
/// request. The handler gets the request and its 0-based number.
pub struct Fake {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Fake {
    pub fn start(handler: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, recorded) = (handler.clone(), recorded.clone());
                std::thread::spawn(move || serve(stream, &*handler, &recorded));
            }
        });
        Fake { url, requests }
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The requests that arrived, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, recorded: &Mutex<Vec<Recorded>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        let number = {
            let mut all = recorded.lock().unwrap();
            all.push(request.clone());
            all.len() - 1
        };
        match handler(&request, number) {
            Reply::Respond(status, content_type, body) => {
                if !respond(
                    &mut writer,
                    &request,
                    status,
                    &[("content-type", content_type.to_owned())],
                    &body,
                ) {
                    return;
                }
            }
            Reply::WithHeaders(status, headers, body) => {
                let mut headers = headers;
                headers.push(("content-type", "text/plain".to_owned()));
                if !respond(&mut writer, &request, status, &headers, &body) {
                    return;
                }
            }
            Reply::Hang => {
                let mut sink = Vec::new();
                let _ = reader.read_to_end(&mut sink);
                return;
            }
        }
    }
}

/// Writes one response; whether the connection stays open for another request.
fn respond(
    writer: &mut TcpStream,
    request: &Recorded,
    status: u16,
    headers: &[(&str, String)],
    body: &str,
) -> bool {
    let close = request.method == "CONNECT";
    let mut response = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    let connection = if close { "close" } else { "keep-alive" };
    response.push_str(&format!(
        "content-length: {}\r\nconnection: {connection}\r\n\r\n{body}",
        body.len()
    ));
    writer.write_all(response.as_bytes()).is_ok() && !close
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// The `x-amz-json-1.1` content type of ECR's and ECR Public's API.
pub const AMZ_JSON: &str = "application/x-amz-json-1.1";

/// An ECR `GetAuthorizationToken` answer for `user:password`, expiring at `expires_at`
/// (seconds since the epoch).
pub fn ecr_answer(user_password: &str, expires_at: u64) -> Reply {
    let token = base64(user_password);
    Reply::Respond(
        200,
        AMZ_JSON,
        format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{expires_at},"proxyEndpoint":"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"}}]}}"#
        ),
    )
}

/// An AWS JSON-protocol error answer.
pub fn aws_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::Respond(
        status,
        AMZ_JSON,
        format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
    )
}

pub fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The moto server of this test binary, started on first use from `$REPO/.venv-moto`.
pub fn moto() -> &'static str {
    static MOTO: OnceLock<(String, Mutex<Child>)> = OnceLock::new();
    &MOTO.get_or_init(start_moto).0
}

fn start_moto() -> (String, Mutex<Child>) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let moto_server = repo.join(".venv-moto/bin/moto_server");
    assert!(
        moto_server.exists(),
        "moto is not installed at {}: run .ci/setup (it creates .venv-moto with `pip install 'moto[server]'`)",
        moto_server.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The shell ends moto when this test process ends and closes its stdin.
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid"#)
        .arg(&moto_server)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto_server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (url, Mutex::new(child))
}
