//! The server the AWS fakes run on, in plain std: a small HTTP/1.1 server on 127.0.0.1
//! that answers through a handler (errors, throttling and hangs included), records what
//! it is sent, and refuses `CONNECT` as a proxy would; and the shapes of ECR's answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, `GET`, `PUT`, `CONNECT`, ...
    pub method: String,
    /// The request target: a path, or `host:port` for `CONNECT`.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Recorded {
    /// The value of header `name`, given in lowercase.
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
    /// Answers with this status, headers and body; the content type is `text/plain` unless
    /// the headers name one.
    WithHeaders(u16, Vec<(&'static str, String)>, String),
    /// Never answers, and keeps the connection open until the client gives up.
    Hang,
}

type Handler = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 that answers through a handler and records every
/// request. The handler gets the request and its 0-based number.
pub struct Fake {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Fake {
    /// Starts a server answering through `handler`; it serves until the test process ends.
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
                if !headers.iter().any(|(name, _)| *name == "content-type") {
                    headers.push(("content-type", "text/plain".to_owned()));
                }
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

/// `text` in standard base64, as AWS encodes tokens.
pub fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
