//! Runs the tests' fakes of Azure AD, IMDS, ACR registries and an AKS identity-binding
//! endpoint on the loopback, and prints
//! the environment that sends the plugin to them (`export NAME='value'` lines), until
//! killed. For trying the binary by hand and for timing one `get`:
//!
//! ```sh
//! cargo run -q -p icp-acr --example fake_azure > /tmp/fake-azure.env &
//! sleep 5; . /tmp/fake-azure.env
//! target/release/image-credential-provider --no-cache get myacr.azurecr.io/app
//! ```

use std::io::Write;

use icp_test_kit::azure::{World, ca_file, cluster_ca_file};

fn main() {
    let world = World::new();
    let mut out = std::io::stdout().lock();
    writeln!(out, "export SSL_CERT_FILE='{}'", ca_file().display()).unwrap();
    for (name, value) in world.env() {
        writeln!(out, "export {name}='{value}'").unwrap();
    }
    // Not a variable the plugin reads: the `identityBindings.caFile` of a rule for the
    // identity-binding endpoint (`ib.prod-dns-1a2b3c.hcp.eastus.azmk8s.io`).
    writeln!(
        out,
        "export FAKE_CLUSTER_CA='{}'",
        cluster_ca_file().display()
    )
    .unwrap();
    out.flush().unwrap();
    drop(out);
    loop {
        std::thread::park();
    }
}
