//! `get IMAGE [--api-version V]`: the response the plugin gives for an image.

use anyhow::Context;

use super::{Globals, Outcome};
use crate::protocol::{ApiVersion, PluginRequest};

/// Prints the response for `image`, normalised as the kubelet does, in `api_version`.
pub fn run(globals: &Globals, image: &str, api_version: &str) -> Outcome {
    Outcome::of(get(globals, image, api_version))
}

fn get(globals: &Globals, image: &str, api_version: &str) -> anyhow::Result<()> {
    let image = icp_core::ImageRef::parse(image).with_context(|| {
        format!(
            "image {} is not a valid image reference",
            icp_core::quote(image)
        )
    })?;
    let request = PluginRequest {
        api_version: ApiVersion::from_short(api_version).context("unknown API version")?,
        image: image.name(),
        service_account: None,
    };
    let rules = globals.rules()?;
    let cache_dir = globals.cache_dir(&rules);
    crate::plugin::respond(
        &request,
        std::io::stdout().lock(),
        &rules,
        cache_dir.as_deref(),
        &globals.recorders(&rules, cache_dir.as_deref()),
    )
}
