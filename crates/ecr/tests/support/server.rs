//! Loopback servers for the ECR tests, in plain std: a small HTTP/1.1 server on 127.0.0.1
//! that plays AWS (errors, throttling and hangs included) and records what it is sent,
//! and moto's server started from the workspace's `.venv-moto`. Shared by the crate's
//! tests and the binary's `tests/ecr.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// The moto server of this test binary, started on first use from the workspace's
/// `.venv-moto`, and ended when the test binary ends.
pub fn moto() -> &'static str {
    static MOTO: OnceLock<(String, Mutex<Child>)> = OnceLock::new();
    &MOTO.get_or_init(start_moto).0
}

fn start_moto() -> (String, Mutex<Child>) {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = manifest_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .unwrap_or(manifest_dir);
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
