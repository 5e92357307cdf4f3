//! The client: connections kept alive per host for the client's life, every request
//! bounded in time and size.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use icp_core::Environment;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proxy::{Proxies, Proxy};
use crate::resolve::Overrides;
use crate::{Error, Request, Response, tls};

/// Default bounds of every request a [`Client`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Longest time for the TCP connection and the TLS handshake together.
    pub connect_timeout: Duration,
    /// Longest time for the whole exchange, connection and body included.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_body: usize,
}

impl Default for Options {
    /// 3 s to connect, 10 s in all, 1 MiB of body.
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            max_body: 1 << 20,
        }
    }
}

/// An HTTP/1.1 client over rustls. A connection is kept alive after a request for the
/// next one to the same scheme, host and port, for the client's life; nothing is retried
/// or followed (redirects come back as responses).
#[derive(Debug)]
pub struct Client {
    options: Options,
    overrides: Overrides,
    proxies: Proxies,
    tls: OnceLock<Arc<ClientConfig>>,
    /// Connections kept alive after a request, for the next one to the same host.
    idle: Mutex<Vec<(PoolKey, Connection)>>,
}

impl Client {
    /// A client with `options`, the address overrides of [`crate::RESOLVE_ENV`] and the
    /// proxies of `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (or their lowercase forms),
    /// all read from `env`. Reads no file and opens nothing: the root certificates are
    /// loaded on the first `https://` request (from `SSL_CERT_FILE` or `SSL_CERT_DIR` when
    /// the process has them, as `rustls-native-certs` reads them).
    pub fn new(options: Options, env: &Environment) -> Result<Client, Error> {
        Ok(Client {
            options,
            overrides: Overrides::from_env(env)?,
            proxies: Proxies::from_env(env)?,
            tls: OnceLock::new(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Adds an address override (as an entry of [`crate::RESOLVE_ENV`] does): connections
    /// to `host:port` go to `address`.
    pub fn resolve(mut self, host: &str, port: u16, address: SocketAddr) -> Client {
        self.overrides.add(host, port, address);
        self
    }

    /// Adds a route: connections to `host:port` go to `to:port` (`to` a host name, looked
    /// up when connecting within the connect timeout, or an IP address), never through a
    /// proxy; the request, its `Host` and its TLS server name stay `host`'s. The address
    /// overrides apply to `to`.
    pub fn route(mut self, host: &str, port: u16, to: &str) -> Client {
        self.overrides.add_route(host, port, to);
        self
    }

    /// Trusts only the certificates of the PEM bundle `pem` (a private CA's, such as a
    /// cluster's) instead of the platform's roots; `source` names the bundle in errors.
    pub fn trusting(self, pem: &[u8], source: &str) -> Result<Client, Error> {
        let config = tls::client_config_trusting(pem, source)?;
        Ok(Client {
            tls: OnceLock::from(config),
            ..self
        })
    }

    /// The bounds requests are sent with unless they override them.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Sends `request` and reads the whole response, within the request's deadline. Any
    /// status is a response; only a failure to get one is an error.
    pub async fn send(&self, request: Request) -> Result<Response, Error> {
        let target = Target::parse(&request.url)?;
        let timeout = request.timeout.unwrap_or(self.options.timeout);
        match tokio::time::timeout(timeout, self.exchange(&target, request)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                authority: target.authority(),
                timeout,
            }),
        }
    }

    async fn exchange(&self, target: &Target, request: Request) -> Result<Response, Error> {
        let connect_timeout = request
            .connect_timeout
            .unwrap_or(self.options.connect_timeout);
        // An address override (a test or debugging aid) goes straight to its address, a
        // route straight to its host.
        let direct = self.overrides.lookup(&target.host, target.port).is_some()
            || self.overrides.route(&target.host, target.port).is_some();
        let proxy = if direct {
            None
        } else {
            self.proxies.for_target(target.https, &target.host)
        };
        let http = build_request(target, request, proxy.filter(|_| !target.https))?;
        let key = (target.https, target.host.clone(), target.port);
        // A kept-alive connection to the same host first; a request it could not even
        // take (the server closed it meanwhile) goes on a new one.
        let mut http = http;
        if let Some(mut connection) = self.idle(&key)
            && connection.sender.ready().await.is_ok()
        {
            match connection.sender.try_send_request(http).await {
                Ok(response) => return self.read(target, key, connection, response).await,
                Err(mut error) => match error.take_message() {
                    Some(unsent) => http = unsent,
                    None => return Err(http_error(target, error.into_error())),
                },
            }
        }
        let connect = async {
            let mut tcp = match proxy {
                Some(proxy) => self.connect_tcp(&proxy.host, proxy.port).await?,
                None => self.connect_tcp(&target.host, target.port).await?,
            };
            if let Some(proxy) = proxy.filter(|_| target.https) {
                tunnel(&mut tcp, target, proxy).await?;
            }
            if !target.https {
                return Ok(Stream::Plain(tcp));
            }
            let config = self.tls_config()?;
            let name = ServerName::try_from(target.host.clone()).map_err(|_| {
                Error::Url(format!(
                    "{} is not a valid TLS server name",
                    icp_core::quote(&target.host)
                ))
            })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|cause| Error::Tls {
                    authority: target.authority(),
                    cause,
                })?;
            Ok(Stream::Tls(Box::new(tls)))
        };
        let stream = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| Error::ConnectTimeout {
                authority: target.authority(),
                timeout: connect_timeout,
            })??;
        let mut connection = match stream {
            Stream::Plain(stream) => Connection::open(target, stream).await?,
            Stream::Tls(stream) => Connection::open(target, *stream).await?,
        };
        let response = connection.sender.send_request(http).await;
        match response {
            Ok(response) => self.read(target, key, connection, response).await,
            Err(cause) => Err(http_error(target, cause)),
        }
    }

    /// A kept-alive connection to `key`'s host, if one is still open.
    fn idle(&self, key: &PoolKey) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(position) = idle.iter().position(|(k, _)| k == key) {
            let (_, connection) = idle.swap_remove(position);
            if !connection.sender.is_closed() {
                return Some(connection);
            }
        }
        None
    }

    /// Reads the whole body of `response`, then keeps `connection` for the next request
    /// to the same host when the exchange left it open.
    async fn read(
        &self,
        target: &Target,
        key: PoolKey,
        connection: Connection,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<Response, Error> {
        let (parts, body) = response.into_parts();
        let limit = self.options.max_body;
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|cause| {
                if cause.is::<LengthLimitError>() {
                    Error::TooLarge {
                        authority: target.authority(),
                        limit,
                    }
                } else {
                    Error::Http {
                        authority: target.authority(),
                        cause,
                    }
                }
            })?
            .to_bytes()
            .to_vec();
        // Once the body is read, hyper readies the connection for another request unless
        // either side asked to close it (which the next request's wait for it finds).
        if !connection.sender.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((key, connection));
        }
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(Response {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    }

    fn tls_config(&self) -> Result<Arc<ClientConfig>, Error> {
        if let Some(config) = self.tls.get() {
            return Ok(config.clone());
        }
        let config = tls::client_config()?;
        Ok(self.tls.get_or_init(|| config).clone())
    }

    async fn connect_tcp(&self, host: &str, port: u16) -> Result<TcpStream, Error> {
        let host = self.overrides.route(host, port).unwrap_or(host);
        let addresses: Vec<SocketAddr> = if let Some(address) = self.overrides.lookup(host, port) {
            vec![address]
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|cause| Error::Dns {
                    host: host.to_owned(),
                    cause,
                })?
                .collect()
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(error) => last = error,
            }
        }
        Err(Error::Connect {
            authority: authority(host, port),
            cause: last,
        })
    }
}

/// What a kept-alive connection is kept for: scheme, host and port.
type PoolKey = (bool, String, u16);

/// One HTTP/1.1 connection: the handle requests are sent on, and the task that drives it,
/// aborted when the connection is dropped (with the client, or when a request's deadline
/// drops it mid-exchange).
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl Connection {
    async fn open<S>(target: &Target, stream: S) -> Result<Connection, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|cause| http_error(target, cause))?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, task })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn http_error(target: &Target, cause: hyper::Error) -> Error {
    Error::Http {
        authority: target.authority(),
        cause: Box::new(cause),
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The parts of a request URL the client needs.
struct Target {
    https: bool,
    /// The host, without brackets for an IPv6 address.
    host: String,
    port: u16,
    /// What goes in the `Host` header.
    host_header: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, Error> {
        let uri: Uri = url.parse().map_err(|_| Error::Url("not a URL".into()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Error::Url("the scheme must be http or https".into())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| Error::Url("no host".into()))?;
        if authority.as_str().contains('@') {
            return Err(Error::Url(
                "user information is not allowed in a URL".into(),
            ));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(Error::Url("no host".into()));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let path_and_query = if path_and_query.is_empty() {
            "/"
        } else {
            path_and_query
        };
        Ok(Target {
            https,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            host_header: authority.as_str().to_owned(),
            path_and_query: path_and_query.to_owned(),
        })
    }

    fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

/// `host:port`, with brackets for an IPv6 address.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Opens a `CONNECT` tunnel to `target` through `proxy` on `stream`.
async fn tunnel(stream: &mut TcpStream, target: &Target, proxy: &Proxy) -> Result<(), Error> {
    let io_error = |cause| Error::Connect {
        authority: proxy.authority(),
        cause,
    };
    let refused = |reason: String| Error::Proxy {
        proxy: proxy.authority(),
        reason,
    };
    let mut head = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", target.authority());
    if let Some(authorization) = &proxy.authorization {
        head.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io_error)?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        if answer.len() > 16 * 1024 {
            return Err(refused("the answer to CONNECT is too long".into()));
        }
        let read = stream.read(&mut chunk).await.map_err(io_error)?;
        if read == 0 {
            return Err(refused("closed the connection during CONNECT".into()));
        }
        answer.extend_from_slice(&chunk[..read]);
    }
    let status_line = String::from_utf8_lossy(&answer);
    let status_line = status_line.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        let shown: String = status_line
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        Err(refused(format!(
            "CONNECT {} answered {shown:?}",
            target.authority()
        )))
    }
}

/// The request as hyper sends it: origin-form, or absolute-form with the proxy's
/// credentials when it goes to a plain HTTP `proxy`.
fn build_request(
    target: &Target,
    request: Request,
    proxy: Option<&Proxy>,
) -> Result<hyper::Request<Full<Bytes>>, Error> {
    let uri = match proxy {
        Some(_) => format!("http://{}{}", target.host_header, target.path_and_query),
        None => target.path_and_query.clone(),
    };
    let mut builder = hyper::Request::builder()
        .method(request.method)
        .uri(uri)
        .header(hyper::header::HOST, target.host_header.as_str());
    if let Some(authorization) = proxy.and_then(|p| p.authorization.as_deref()) {
        builder = builder.header(hyper::header::PROXY_AUTHORIZATION, authorization);
    }
    for (name, value) in &request.headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::Header(name.clone()))?;
        let value = hyper::header::HeaderValue::from_str(value)
            .map_err(|_| Error::Header(name.to_string()))?;
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|_| Error::Url("cannot build the request".into()))
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn parses_targets() {
        let target = Target::parse("https://myacr.azurecr.io/v2/").unwrap();
        assert!(target.https);
        assert_eq!(
            (
                target.host.as_str(),
                target.port,
                target.path_and_query.as_str()
            ),
            ("myacr.azurecr.io", 443, "/v2/")
        );
        assert_eq!(target.host_header, "myacr.azurecr.io");
        let target =
            Target::parse("http://169.254.169.254/metadata/identity/oauth2/token?a=b").unwrap();
        assert_eq!(
            (target.port, target.path_and_query.as_str()),
            (80, "/metadata/identity/oauth2/token?a=b")
        );
        let target = Target::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (
                target.host.as_str(),
                target.port,
                target.path_and_query.as_str()
            ),
            ("::1", 8080, "/")
        );
        assert_eq!(
            (target.host_header.as_str(), target.authority()),
            ("[::1]:8080", "[::1]:8080".to_owned())
        );
        for bad in [
            "ftp://a.example/",
            "/relative",
            "https://user:pw@a.example/",
            "not a url",
            "https:///x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
