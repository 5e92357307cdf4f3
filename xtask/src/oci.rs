//! The OCI image, written as an OCI image layout archive without a container daemon: the
//! static binary alone in one layer (a `FROM scratch` image), run as a non-root user unless
//! a pod says otherwise.

use anyhow::Result;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

use crate::archive::{self, Entry};

/// Where the binary is in the image; the image's entrypoint.
pub const ENTRYPOINT: &str = "/usr/local/bin/image-credential-provider";

/// The image's user: the conventional non-root uid and gid (distroless's `nonroot`). A pod
/// that installs onto its node runs the image as root instead.
pub const USER: &str = "65532:65532";

/// What the image describes itself with.
pub struct Image<'a> {
    /// The static binary.
    pub binary: &'a [u8],
    /// The release version, the image's tag.
    pub version: &'a str,
    /// The source revision (commit).
    pub revision: &'a str,
    /// Where the source is, when known.
    pub source: Option<&'a str>,
    /// The commit's time, seconds since the epoch: every timestamp of the image.
    pub epoch: u64,
    /// The OCI architecture, `amd64` or `arm64`.
    pub architecture: &'a str,
}

/// The image as an OCI image layout archive (`oci-layout`, `index.json`, `blobs/sha256/`),
/// tagged with the version.
pub fn layout_archive(image: &Image) -> Result<Vec<u8>> {
    let layer_tar = archive::tar(
        vec![
            Entry::dir("usr"),
            Entry::dir("usr/local"),
            Entry::dir("usr/local/bin"),
            Entry::file(&ENTRYPOINT[1..], 0o755, image.binary.to_vec()),
        ],
        image.epoch,
    )?;
    let layer = archive::gzip(&layer_tar)?;
    let created = crate::deps::rfc3339(image.epoch as i64);
    let mut labels = json!({
        "org.opencontainers.image.title": "image-credential-provider",
        "org.opencontainers.image.description": "kubelet image credential provider: `install --root /host` puts it on the node",
        "org.opencontainers.image.version": image.version,
        "org.opencontainers.image.revision": image.revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
    });
    if let Some(source) = image.source {
        labels["org.opencontainers.image.source"] = json!(source);
    }
    let config = json!({
        "created": created,
        "architecture": image.architecture,
        "os": "linux",
        "config": {
            "User": USER,
            "Entrypoint": [ENTRYPOINT],
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(&layer_tar)]},
        "history": [{"created": created, "created_by": "cargo xtask dist"}],
    });
    let config = serde_json::to_vec(&config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
        "annotations": labels,
    }))?;
    let mut manifest_descriptor =
        descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    manifest_descriptor["annotations"] =
        json!({"org.opencontainers.image.ref.name": image.version});
    manifest_descriptor["platform"] = json!({"architecture": image.architecture, "os": "linux"});
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest_descriptor],
    }))?;
    let mut entries = vec![
        Entry::file(
            "oci-layout",
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        Entry::file("index.json", 0o644, index),
        Entry::dir("blobs"),
        Entry::dir("blobs/sha256"),
    ];
    for blob in [config, layer, manifest] {
        let name = format!("blobs/sha256/{}", &digest(&blob)[7..]);
        entries.push(Entry::file(name, 0o644, blob));
    }
    archive::tar(entries, image.epoch)
}

/// `sha256:HEX` of `content`.
fn digest(content: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(content)))
}

fn descriptor(media_type: &str, content: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest(content), "size": content.len()})
}
/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
