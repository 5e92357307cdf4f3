//! The client against fake servers on the loopback, trusted through `SSL_CERT_FILE`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use icp_core::Environment;
use icp_http::{Client, Deadline, Error, Limits, Options, RESOLVE_ENV, Request, Retry};
use icp_test_kit::{FakeServer, Reply, TestCa};

struct World {
    /// What every client of the tests is made with: the overrides and proxies below.
    env: Environment,
    ca: TestCa,
    /// Reached as `env.test:443` through the override in the environment.
    env_fake: FakeServer,
    /// The `HTTPS_PROXY`: tunnels to `proxied.test:443` only.
    connect_proxy: ConnectProxy,
    /// What `proxied.test:443` is.
    proxied: FakeServer,
    /// The `HTTP_PROXY`, answering itself.
    http_proxy: FakeServer,
    _dir: tempdir::Dir,
}

/// A `CONNECT` proxy on the loopback that tunnels to the routes it knows and records the
/// head of every request.
struct ConnectProxy {
    address: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    fn start(routes: Vec<(String, SocketAddr)>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let (Ok(client), routes, recorded) = (client, routes.clone(), recorded.clone())
                else {
                    continue;
                };
                std::thread::spawn(move || tunnel(client, &routes, &recorded));
            }
        });
        ConnectProxy { address, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn tunnel(mut client: TcpStream, routes: &[(String, SocketAddr)], heads: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    heads.lock().unwrap().push(head.clone());
    let target = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let Some((_, address)) = routes.iter().find(|(route, _)| *route == target) else {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let Ok(mut server) = TcpStream::connect(address) else {
        return;
    };
    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let (mut client_reader, mut server_writer) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_reader, &mut server_writer);
        let _ = server_writer.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = upstream.join();
}

/// A temporary directory without a dependency: removed when dropped.
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Made once per test binary, before any client reads the environment.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let ca = TestCa::new();
        let dir = std::env::temp_dir().join(format!("icp-http-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let env_fake = FakeServer::https(ca.server_config(&["env.test"]), |_| Reply::status(204));
        let proxied = FakeServer::https(ca.server_config(&["proxied.test"]), |_| {
            Reply::status(200).body("tunnelled")
        });
        let connect_proxy =
            ConnectProxy::start(vec![("proxied.test:443".to_owned(), proxied.address())]);
        let http_proxy = FakeServer::http(|_| Reply::status(200).body("from the proxy"));
        // SAFETY: set once, inside this initialiser, before any test reads the environment
        // (every test starts by calling `world()`). The roots are the one setting the
        // client does not take from the environment it is given: rustls-native-certs
        // reads them from the process's.
        unsafe {
            std::env::set_var("SSL_CERT_FILE", &ca_file);
        }
        let env = Environment::from_pairs([
            (
                RESOLVE_ENV.to_owned(),
                format!("env.test:443:{}", env_fake.address()),
            ),
            (
                "HTTPS_PROXY".to_owned(),
                format!("http://user:p%40ss@{}", connect_proxy.address),
            ),
            ("http_proxy".to_owned(), http_proxy.address().to_string()),
            ("NO_PROXY".to_owned(), "direct.test".to_owned()),
        ]);
        World {
            env,
            ca,
            env_fake,
            connect_proxy,
            proxied,
            http_proxy,
            _dir: tempdir::Dir(dir),
        }
    })
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn client(host: &str, port: u16, address: SocketAddr) -> Client {
    Client::new(Options::default(), &world().env)
        .unwrap()
        .resolve(host, port, address)
}

#[test]
fn https_request_reaches_the_fake_under_its_real_name() {
    let world = world();
    let fake = FakeServer::https(world.ca.server_config(&["registry.test"]), |request| {
        Reply::json(200, format!("{{\"path\":\"{}\"}}", request.path()))
            .header("Www-Authenticate", "Bearer a=b")
    });
    let client = client("registry.test", 443, fake.address());
    let response = block_on(
        client.send(Request::get("https://registry.test/v2/?x=1").header("Accept", "*/*")),
    )
    .unwrap();
    assert_eq!(response.status, 200);
    assert!(response.is_success());
    assert_eq!(response.body, br#"{"path":"/v2/"}"#);
    assert_eq!(response.header("www-authenticate"), Some("Bearer a=b"));
    assert_eq!(response.header("content-type"), Some("application/json"));
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].target.as_str()),
        ("GET", "/v2/?x=1")
    );
    assert_eq!(requests[0].header("host"), Some("registry.test"));
    assert_eq!(requests[0].header("accept"), Some("*/*"));
}

#[test]
fn post_form_and_non_default_port() {
    let world = world();
    let fake = FakeServer::https(world.ca.server_config(&["login.test"]), |request| {
        Reply::status(
            if request.form("client_secret").as_deref() == Some("s p&c") {
                200
            } else {
                401
            },
        )
    });
    let client = client("login.test", 8443, fake.address());
    let request = Request::post("https://login.test:8443/tenant/oauth2/v2.0/token").form(&[
        ("grant_type", "client_credentials"),
        ("client_secret", "s p&c"),
    ]);
    let response = block_on(client.send(request)).unwrap();
    assert_eq!(response.status, 200);
    let recorded = &fake.requests()[0];
    assert_eq!(recorded.header("host"), Some("login.test:8443"));
    assert_eq!(
        recorded.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        recorded.header("content-length"),
        Some(recorded.body.len().to_string().as_str())
    );
}

#[test]
fn plain_http_and_error_statuses_are_responses() {
    world();
    let fake = FakeServer::http(|_| Reply::json(429, "{}").header("Retry-After", "3"));
    let url = format!("http://{}/metadata/identity/oauth2/token", fake.address());
    let response = block_on(
        Client::new(Options::default(), &world().env)
            .unwrap()
            .send(Request::get(url)),
    )
    .unwrap();
    assert_eq!(response.status, 429);
    assert!(!response.is_success());
    assert_eq!(response.header("retry-after"), Some("3"));
}

#[test]
fn the_resolve_environment_variable_is_honoured() {
    let world = world();
    let client = Client::new(Options::default(), &world.env).unwrap();
    let response = block_on(client.send(Request::get("https://env.test/"))).unwrap();
    assert_eq!(response.status, 204);
    assert!(world.env_fake.request_count() >= 1);
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let world = world();
    let fake = FakeServer::https(world.ca.server_config(&["other.test"]), |_| {
        Reply::status(200)
    });
    let error = block_on(
        client("registry.test", 443, fake.address()).send(Request::get("https://registry.test/")),
    )
    .unwrap_err();
    assert!(matches!(error, Error::Tls { .. }), "{error}");
    assert_eq!(fake.request_count(), 0);
}

#[test]
fn a_certificate_from_an_untrusted_ca_is_refused() {
    world();
    let stranger = TestCa::new();
    let fake = FakeServer::https(stranger.server_config(&["registry.test"]), |_| {
        Reply::status(200)
    });
    let error = block_on(
        client("registry.test", 443, fake.address()).send(Request::get("https://registry.test/")),
    )
    .unwrap_err();
    assert!(matches!(error, Error::Tls { .. }), "{error}");
    assert!(error.to_string().contains("registry.test:443"), "{error}");
    assert_eq!(fake.request_count(), 0);
}

#[test]
fn trusting_a_private_ca_replaces_the_platform_roots() {
    let world = world();
    let cluster = TestCa::new();
    let fake = FakeServer::https(cluster.server_config(&["cluster.test"]), |_| {
        Reply::status(204)
    });
    let trusting =
        |pem: &str| client("cluster.test", 443, fake.address()).trusting(pem.as_bytes(), "ca.crt");
    let get = |client: Client| block_on(client.send(Request::get("https://cluster.test/")));
    assert_eq!(get(trusting(cluster.pem()).unwrap()).unwrap().status, 204);
    // The process's roots (the world's CA) are no longer trusted, nor is a stranger.
    let roots_only = FakeServer::https(world.ca.server_config(&["cluster.test"]), |_| {
        Reply::status(204)
    });
    let error = block_on(
        client("cluster.test", 443, roots_only.address())
            .trusting(cluster.pem().as_bytes(), "ca.crt")
            .unwrap()
            .send(Request::get("https://cluster.test/")),
    )
    .unwrap_err();
    assert!(matches!(error, Error::Tls { .. }), "{error}");
    for bad in ["", "not a certificate"] {
        let error = trusting(bad).unwrap_err().to_string();
        assert!(error.contains("ca.crt holds no PEM certificate"), "{error}");
    }
    assert_eq!(fake.request_count(), 1);
}

#[test]
fn a_body_over_the_cap_is_an_error() {
    let world = world();
    let fake = FakeServer::https(world.ca.server_config(&["registry.test"]), |_| {
        Reply::status(200).body(vec![b'x'; 4096])
    });
    let options = Options {
        max_body: 1024,
        ..Options::default()
    };
    let client =
        Client::new(options, &world.env)
            .unwrap()
            .resolve("registry.test", 443, fake.address());
    let error = block_on(client.send(Request::get("https://registry.test/"))).unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { limit: 1024, .. }),
        "{error}"
    );
}

#[test]
fn a_slow_answer_hits_the_deadline() {
    let world = world();
    let fake = FakeServer::https(world.ca.server_config(&["registry.test"]), |_| {
        Reply::status(200).delay(Duration::from_secs(5))
    });
    let request = Request::get("https://registry.test/").timeout(Duration::from_millis(300));
    let error = block_on(client("registry.test", 443, fake.address()).send(request)).unwrap_err();
    assert!(error.is_timeout() && error.is_transient(), "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[test]
fn a_closed_port_is_a_connect_error() {
    world();
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = block_on(
        client("registry.test", 443, address).send(Request::get("https://registry.test/")),
    )
    .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error}");
    assert!(error.is_transient());
}

#[test]
fn bad_urls_and_headers_are_refused_before_connecting() {
    world();
    let client = Client::new(Options::default(), &world().env).unwrap();
    for url in ["ftp://a.test/", "https://user:secret@a.test/", "a.test/v2/"] {
        let error = block_on(client.send(Request::get(url))).unwrap_err();
        assert!(matches!(error, Error::Url(_)), "{url}: {error}");
        assert!(!error.to_string().contains("secret"));
    }
    let fake = FakeServer::http(|_| Reply::status(200));
    let url = format!("http://{}/", fake.address());
    let error = block_on(client.send(Request::get(url).header("bad header", "x"))).unwrap_err();
    assert!(matches!(error, Error::Header(_)), "{error}");
}

#[test]
fn a_route_sends_the_connection_to_another_host_never_through_a_proxy() {
    let world = world();
    let fake = FakeServer::https(world.ca.server_config(&["routed.test"]), |request| {
        Reply::status(200).body(request.header("host").unwrap_or_default().to_owned())
    });
    let port = fake.address().port();
    // `localhost` is looked up (the loopback addresses of /etc/hosts), each tried in turn;
    // the environment's CONNECT proxy, which refuses this host, is not used.
    let client = Client::new(Options::default(), &world.env).unwrap().route(
        "routed.test",
        port,
        "localhost",
    );
    let url = format!("https://routed.test:{port}/");
    let response = block_on(client.send(Request::get(url.as_str()))).unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, format!("routed.test:{port}").as_bytes())
    );
    // An IP address is used as it is; the TLS name stays the request's.
    let client =
        Client::new(Options::default(), &world.env)
            .unwrap()
            .route("other.test", port, "127.0.0.1");
    let error =
        block_on(client.send(Request::get(format!("https://other.test:{port}/")))).unwrap_err();
    assert!(matches!(error, Error::Tls { .. }), "{error}");
    assert_eq!(fake.request_count(), 1);
}

#[test]
fn https_goes_through_the_connect_proxy_of_the_environment() {
    let world = world();
    let client = Client::new(Options::default(), &world.env).unwrap();
    let response = block_on(client.send(Request::get("https://proxied.test/v2/"))).unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, b"tunnelled".as_slice())
    );
    let heads = world.connect_proxy.heads();
    let head = heads
        .iter()
        .find(|h| h.starts_with("CONNECT proxied.test:443 HTTP/1.1\r\n"))
        .expect("a CONNECT");
    assert!(
        head.contains("Proxy-Authorization: Basic dXNlcjpwQHNz\r\n"),
        "{head}"
    );
    let recorded = world.proxied.requests();
    assert!(
        recorded
            .iter()
            .any(|r| r.target == "/v2/" && r.header("host") == Some("proxied.test"))
    );
    assert!(
        recorded
            .iter()
            .all(|r| r.header("proxy-authorization").is_none()),
        "the credentials stay with the proxy"
    );
    // A tunnel the proxy refuses.
    let error = block_on(client.send(Request::get("https://unrouted.test/"))).unwrap_err();
    assert!(matches!(error, Error::Proxy { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("CONNECT unrouted.test:443 answered \"HTTP/1.1 403 Forbidden\""),
        "{error}"
    );
}

#[test]
fn a_connection_is_kept_for_the_next_request_to_the_same_host() {
    let world = world();
    let closing = FakeServer::https(world.ca.server_config(&["closing.test"]), |_| {
        Reply::status(200).header("connection", "close").body("bye")
    });
    let proxy = ConnectProxy::start(vec![
        ("proxied.test:443".to_owned(), world.proxied.address()),
        ("closing.test:443".to_owned(), closing.address()),
    ]);
    let env = Environment::from_pairs([("HTTPS_PROXY", format!("http://{}", proxy.address))]);
    let connects = |host: &str| {
        proxy
            .heads()
            .iter()
            .filter(|head| head.starts_with(&format!("CONNECT {host}:443 ")))
            .count()
    };
    let client = Client::new(Options::default(), &env).unwrap();
    block_on(async {
        for path in ["/v2/", "/oauth2/token", "/v2/"] {
            let response = client
                .send(Request::get(format!("https://proxied.test{path}")))
                .await;
            assert_eq!(response.unwrap().body, b"tunnelled");
        }
    });
    assert_eq!(
        connects("proxied.test"),
        1,
        "one connection, one TLS handshake"
    );
    // A server that closes after each answer gets a new connection for each request.
    block_on(async {
        for _ in 0..2 {
            let response = client.send(Request::get("https://closing.test/")).await;
            assert_eq!(response.unwrap().body, b"bye");
        }
    });
    assert_eq!(connects("closing.test"), 2);
    // Another client (another fetch) has connections of its own.
    let other = Client::new(Options::default(), &env).unwrap();
    block_on(other.send(Request::get("https://proxied.test/v2/"))).unwrap();
    assert_eq!(connects("proxied.test"), 2);
}

#[test]
fn plain_http_goes_to_the_http_proxy_in_absolute_form() {
    let world = world();
    let client = Client::new(Options::default(), &world.env).unwrap();
    let response =
        block_on(client.send(Request::get("http://metadata.test/computeMetadata/v1/?x=1")))
            .unwrap();
    assert_eq!(response.body, b"from the proxy");
    let recorded = world.http_proxy.requests();
    let request = recorded
        .iter()
        .find(|r| r.target.contains("metadata.test"))
        .expect("a proxied request");
    assert_eq!(
        request.target,
        "http://metadata.test/computeMetadata/v1/?x=1"
    );
    assert_eq!(request.header("host"), Some("metadata.test"));
    assert_eq!(request.header("proxy-authorization"), None);
}

/// Bounds with short waits, for the retry policy's tests.
fn quick_limits() -> Limits {
    Limits {
        request: Duration::from_millis(300),
        backoff: Duration::from_millis(10),
        max_wait: Duration::from_secs(1),
        ..Limits::default()
    }
}

/// Sends `GET url` with `retry`, within `budget`.
fn send_with(retry: &Retry, budget: Duration, url: &str) -> Result<icp_http::Response, Error> {
    let client = Client::new(Options::default(), &world().env).unwrap();
    icp_http::run(Deadline::after(budget), |deadline| {
        let client = &client;
        async move { retry.send(client, deadline, || Request::get(url)).await }
    })
    .unwrap()
}

/// A fake answering with `replies` in turn, then with the last one.
fn answering(replies: Vec<Reply>) -> FakeServer {
    let served = AtomicUsize::new(0);
    FakeServer::http(move |_| {
        let n = served.fetch_add(1, Ordering::SeqCst);
        replies[n.min(replies.len() - 1)].clone()
    })
}

#[test]
fn the_retry_policy_tries_429_and_5xx_again_and_honours_retry_after() {
    let fake = answering(vec![
        Reply::status(503),
        Reply::status(429).header("Retry-After", "0"),
        Reply::status(200),
    ]);
    let url = format!("http://{}/", fake.address());
    let response = send_with(&Retry::new(&quick_limits()), Duration::from_secs(10), &url).unwrap();
    assert_eq!((response.status, fake.request_count()), (200, 3));
    // A status the policy does not name is an answer at once.
    let fake = answering(vec![Reply::status(404), Reply::status(200)]);
    let url = format!("http://{}/", fake.address());
    let response = send_with(&Retry::new(&quick_limits()), Duration::from_secs(10), &url).unwrap();
    assert_eq!((response.status, fake.request_count()), (404, 1));
    // Unless the policy names it.
    let fake = answering(vec![Reply::status(404), Reply::status(200)]);
    let url = format!("http://{}/", fake.address());
    let retry = Retry::new(&quick_limits()).on_status(|s| s == 404);
    let response = send_with(&retry, Duration::from_secs(10), &url).unwrap();
    assert_eq!((response.status, fake.request_count()), (200, 2));
}

#[test]
fn the_retry_policy_gives_back_the_last_answer() {
    // Attempts run out.
    let fake = answering(vec![Reply::status(500)]);
    let url = format!("http://{}/", fake.address());
    let response = send_with(&Retry::new(&quick_limits()), Duration::from_secs(10), &url).unwrap();
    assert_eq!((response.status, fake.request_count()), (500, 3));
    // A Retry-After over the longest wait, in seconds or as an HTTP date.
    for after in ["3600", "Fri, 01 Jan 2100 00:00:00 GMT"] {
        let fake = answering(vec![Reply::status(429).header("Retry-After", after)]);
        let url = format!("http://{}/", fake.address());
        let response =
            send_with(&Retry::new(&quick_limits()), Duration::from_secs(10), &url).unwrap();
        assert_eq!((response.status, fake.request_count()), (429, 1), "{after}");
    }
    // A wait that would pass the deadline.
    let fake = answering(vec![Reply::status(503).header("Retry-After", "1")]);
    let url = format!("http://{}/", fake.address());
    let started = std::time::Instant::now();
    let response = send_with(
        &Retry::new(&quick_limits()),
        Duration::from_millis(500),
        &url,
    )
    .unwrap();
    assert_eq!((response.status, fake.request_count()), (503, 1));
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn an_unreachable_service_is_tried_again_unless_the_policy_says_not() {
    let fake = answering(vec![Reply::status(200).delay(Duration::from_secs(5))]);
    let url = format!("http://{}/", fake.address());
    let error = send_with(&Retry::new(&quick_limits()), Duration::from_secs(10), &url).unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(fake.request_count(), 3);
    let fake = answering(vec![Reply::status(200).delay(Duration::from_secs(5))]);
    let url = format!("http://{}/", fake.address());
    let retry = Retry::new(&quick_limits()).unreachable(false);
    let error = send_with(&retry, Duration::from_secs(10), &url).unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(fake.request_count(), 1);
}
