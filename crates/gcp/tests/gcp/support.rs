//! What the GCP crate's integration tests share besides the fakes of Google's services
//! (`icp_test_kit::google`): requests and environments as the binary makes them.

use icp_core::Environment;
use icp_test_kit::google::MetadataFake;

/// The kubelet's request for `image`, as the binary hands it to a backend.
pub fn request(image: &icp_core::ImageRef) -> icp_core::Request<'_> {
    icp_core::Request::new(image)
}

/// An environment that points at `metadata` and names no credential file.
pub fn environment(metadata: &MetadataFake) -> Environment {
    Environment::from_pairs([("GCE_METADATA_HOST", metadata.host())])
}

/// An environment with no variable at all: no credential file, the default metadata
/// server.
pub fn no_env() -> Environment {
    Environment::from_pairs(Vec::<(String, String)>::new())
}
