//! moto's server, the AWS emulator the ECR tests run against, started from the
//! workspace's `.venv-moto` (made by `.ci/setup`).

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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
    // The shell ends moto when this test process ends and closes its stdin. moto runs
    // without the developer's AWS settings (an `AWS_PROFILE` it cannot find makes it answer
    // every call with HTTP 500) or proxies.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid"#)
        .arg(&moto_server)
        .arg(port.to_string())
        .stdin(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        let leaky = name.to_str().is_some_and(|name| {
            name.starts_with("AWS_") || name.to_ascii_uppercase().ends_with("_PROXY")
        });
        if leaky {
            command.env_remove(name);
        }
    }
    let child = command.spawn().unwrap();
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
