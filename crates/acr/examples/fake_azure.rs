//! Runs the tests' fakes of Azure AD, IMDS and ACR registries on the loopback, and prints
//! the environment that sends the plugin to them (`export NAME='value'` lines), until
//! killed. For trying the binary by hand and for timing one `get`:
//!
//! ```sh
//! cargo run -q -p icp-acr --example fake_azure > /tmp/fake-azure.env &
//! sleep 5; . /tmp/fake-azure.env
//! target/release/image-credential-provider --no-cache get myacr.azurecr.io/app
//! ```

use std::io::Write;

use icp_test_kit::azure::{World, ca_file};

fn main() {
    let world = World::new();
    let mut out = std::io::stdout().lock();
    writeln!(out, "export SSL_CERT_FILE='{}'", ca_file().display()).unwrap();
    for (name, value) in world.env() {
        writeln!(out, "export {name}='{value}'").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    loop {
        std::thread::park();
    }
}
