//! Runs the tests' fakes of Azure AD, IMDS and ACR registries on the loopback, and prints
//! the environment that sends the plugin to them (`export NAME='value'` lines), until
//! killed. For trying the binary by hand and for timing one `get`:
//!
//! ```sh
//! cargo run -q -p icp-acr --example fake_azure > /tmp/fake-azure.env &
//! sleep 5; . /tmp/fake-azure.env
//! target/release/image-credential-provider --no-cache get myacr.azurecr.io/app
//! ```

#[path = "../tests/world/mod.rs"]
mod world;

use std::io::Write;

fn main() {
    let world = world::World::new();
    let mut out = std::io::stdout().lock();
    writeln!(out, "export SSL_CERT_FILE='{}'", world::ca_file().display()).unwrap();
    for (name, value) in world.env() {
        writeln!(out, "export {name}='{value}'").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    loop {
        std::thread::park();
    }
}
