//! What the GCP crate's integration tests share besides the fakes of Google's services
//! (`icp_test_kit::google`): requests and environments as the binary makes them.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use icp_test_kit::google::MetadataFake;

/// The kubelet's request for `image`, as the binary hands it to a backend.
pub fn request(image: &icp_core::ImageRef) -> icp_core::Request<'_> {
    icp_core::Request::new(image)
}

/// An environment that points at `metadata` and names no credential file.
pub fn environment(metadata: &MetadataFake) -> icp_gcp::Environment {
    icp_gcp::Environment {
        metadata_host: Some(metadata.host()),
        ..icp_gcp::Environment::default()
    }
}
