//! The AWS SDK's HTTP client: [`icp_http::Client`], the one HTTP/TLS stack of the binary,
//! behind the SDK's `HttpClient` and `HttpConnector` traits.
//!
//! So the ECR, ECR Public and STS clients and the credential providers (instance metadata,
//! container endpoints, web identity) send through the kit's client: its proxies
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` of the backend's environment), its root
//! certificates (read on the first `https://` request, never before), and its kept-alive
//! connections. Its failures become the SDK's connector errors of the matching kind
//! (timeout, I/O, user, other), which the SDK's retry classifier reads.

use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use icp_http::Method;

/// The SDK's HTTP client: every connector it makes sends through one [`icp_http::Client`].
#[derive(Debug, Clone)]
pub(crate) struct Sdk {
    client: Arc<icp_http::Client>,
}

impl Sdk {
    /// Sends the SDK's requests through `client`.
    pub fn new(client: icp_http::Client) -> Sdk {
        Sdk {
            client: Arc::new(client),
        }
    }
}

impl HttpClient for Sdk {
    /// A connector with the SDK's connect and read timeouts (the client's own where the
    /// SDK sets none).
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            client: self.client.clone(),
            connect_timeout: settings.connect_timeout(),
            read_timeout: settings.read_timeout(),
        })
    }
}

/// One connector: the shared client and the SDK's timeouts.
#[derive(Debug)]
struct Connector {
    client: Arc<icp_http::Client>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        let request = self.request(request);
        HttpConnectorFuture::new(async move {
            let response = client.send(request?).await.map_err(connector_error)?;
            self::response(response)
        })
    }
}

impl Connector {
    /// The SDK's request as the kit's, with the SDK's timeouts: the connection within the
    /// connect timeout, the whole exchange within the connect and read timeouts together.
    fn request(&self, request: HttpRequest) -> Result<icp_http::Request, ConnectorError> {
        let user = |what: &str| ConnectorError::user(what.to_owned().into());
        let method = Method::from_bytes(request.method().as_bytes())
            .map_err(|_| user("invalid HTTP method"))?;
        let body = request
            .body()
            .bytes()
            .ok_or_else(|| user("a streaming request body is not supported"))?
            .to_vec();
        let mut out = icp_http::Request::new(method, request.uri());
        for (name, value) in request.headers() {
            if !name.eq_ignore_ascii_case("host") {
                out = out.header(name, value);
            }
        }
        out = out.raw_body(body);
        let connect = self
            .connect_timeout
            .unwrap_or(self.client.options().connect_timeout);
        out = out.connect_timeout(connect);
        if let Some(read) = self.read_timeout {
            out = out.timeout(connect + read);
        }
        Ok(out)
    }
}

/// The kit's response as the SDK's. A header value that is not visible ASCII (which no
/// AWS header is) is left out.
fn response(response: icp_http::Response) -> Result<HttpResponse, ConnectorError> {
    let status = StatusCode::try_from(response.status)
        .map_err(|error| ConnectorError::other(error.into(), None))?;
    let mut out = HttpResponse::new(status, SdkBody::from(response.body));
    for (name, value) in response.headers {
        let _ = out.headers_mut().try_append(name, value);
    }
    Ok(out)
}

/// The SDK's kind of each failure: timeouts as timeouts, failures to reach the service or
/// to finish the exchange as I/O (both retried), a request the kit refuses as the user's,
/// the rest (no root certificates, an answer over the size cap) as other.
fn connector_error(error: icp_http::Error) -> ConnectorError {
    use icp_http::Error::*;
    match error {
        ConnectTimeout { .. } | Timeout { .. } => ConnectorError::timeout(error.into()),
        Dns { .. } | Connect { .. } | Tls { .. } | Proxy { .. } | Http { .. } => {
            ConnectorError::io(error.into())
        }
        Url(_) | Header(_) => ConnectorError::user(error.into()),
        Resolve(_) | Roots(_) | TooLarge { .. } => ConnectorError::other(error.into(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_the_kinds_the_retry_classifier_reads() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let timeout = connector_error(icp_http::Error::ConnectTimeout {
            authority: "a:443".into(),
            timeout: Duration::from_secs(1),
        });
        assert!(timeout.is_timeout());
        let refused = connector_error(icp_http::Error::Connect {
            authority: "a:443".into(),
            cause: io(),
        });
        assert!(refused.is_io());
        let tls = connector_error(icp_http::Error::Tls {
            authority: "a:443".into(),
            cause: io(),
        });
        assert!(tls.is_io());
        let url = connector_error(icp_http::Error::Url("no host".into()));
        assert!(url.is_user());
        let roots = connector_error(icp_http::Error::Roots("none".into()));
        assert!(!roots.is_io() && !roots.is_timeout() && !roots.is_user());
    }
}
