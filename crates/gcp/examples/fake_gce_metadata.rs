//! Runs the tests' fake of the GCE metadata server (a GKE node's default service account)
//! on the loopback and prints the environment that sends the plugin to it (an
//! `export NAME='value'` line), until killed. For trying the binary by hand and for
//! timing one `get` (bench/run):
//!
//! ```sh
//! cargo run -q -p icp-gcp --example fake_gce_metadata > /tmp/fake-gce.env &
//! sleep 5; . /tmp/fake-gce.env
//! target/release/image-credential-provider --no-cache get gcr.io/project/app
//! ```

use std::io::Write;

use icp_test_kit::google::{Instance, MetadataFake};

fn main() {
    let fake = MetadataFake::start(Instance::gke_node());
    let mut out = std::io::stdout().lock();
    writeln!(out, "export GCE_METADATA_HOST='{}'", fake.host()).unwrap();
    out.flush().unwrap();
    drop(out);
    loop {
        std::thread::park();
    }
}
