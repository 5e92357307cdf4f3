//! TEMPORARY, delete at merge: `icp_core::Build` for the backends whose crates do not implement it yet on this branch.
//!
//! The orphan rule keeps the binary from implementing `icp_core::Build` for the crates'
//! own types, so each is wrapped in a newtype that builds with the crate's current
//! constructor and answers through the crate's backend trait. At merge, the table in
//! `backends/table.rs` names the crates' types instead and this file goes.

/// A token backend of crate `$krate`, built by `$build` from its `Config` and the context.
#[allow(
    unused_macros,
    reason = "unused in a binary built without a cloud backend"
)]
macro_rules! token_shim {
    ($shim:ident, $krate:ident, $name:literal, $build:expr) => {
        #[doc = concat!("`", stringify!($krate), "::", stringify!($shim), "`, until it implements `Build`.")]
        pub struct $shim($krate::$shim);

        impl icp_core::Build for $shim {
            const NAME: &'static str = $name;
            const DEFAULT_PATTERNS: &'static [&'static str] = $krate::DEFAULT_PATTERNS;
            type Config = $krate::Config;
            type Error = $krate::Error;

            fn default_config() -> Option<Self::Config> {
                Some(Self::Config::default())
            }

            fn build(config: Self::Config, context: &icp_core::Context<'_>) -> Result<Self, Self::Error> {
                let build: fn(Self::Config, &icp_core::Context<'_>) -> Result<$krate::$shim, Self::Error> =
                    $build;
                build(config, context).map($shim)
            }
        }

        impl icp_core::TokenBackend for $shim {
            type Error = $krate::Error;

            fn serves(&self, image: &icp_core::ImageRef) -> bool {
                icp_core::TokenBackend::serves(&self.0, image)
            }
            fn token_key(&self, request: &icp_core::Request<'_>) -> Result<icp_core::TokenKey, Self::Error> {
                icp_core::TokenBackend::token_key(&self.0, request)
            }
            fn fetch(&self, request: &icp_core::Request<'_>) -> Result<icp_core::Token, Self::Error> {
                icp_core::TokenBackend::fetch(&self.0, request)
            }
            fn check(&self) -> Result<(), Self::Error> {
                icp_core::TokenBackend::check(&self.0)
            }
            fn service_account_token(&self) -> Option<icp_core::ServiceAccountTokenUse> {
                icp_core::TokenBackend::service_account_token(&self.0)
            }
            fn patterns(&self, image: &icp_core::ImageRef) -> Vec<String> {
                icp_core::TokenBackend::patterns(&self.0, image)
            }
        }
    };
}

#[cfg(feature = "ecr")]
token_shim!(Ecr, icp_ecr, "ecr", |config, context| icp_ecr::Ecr::new(
    config,
    context.base_dir
));
#[cfg(feature = "acr")]
token_shim!(Acr, icp_acr, "acr", |config, context| icp_acr::Acr::new(
    config,
    context.base_dir
));
#[cfg(feature = "gcp")]
token_shim!(Gcp, icp_gcp, "gcp", |config, context| icp_gcp::Gcp::new(
    config,
    context.base_dir
));

/// `icp_docker_config::DockerConfig`, until it implements `Build`.
#[cfg(feature = "docker-config")]
pub struct DockerConfig(icp_docker_config::DockerConfig);

#[cfg(feature = "docker-config")]
impl icp_core::Build for DockerConfig {
    const NAME: &'static str = "docker-config";
    type Config = icp_docker_config::Config;
    type Error = icp_docker_config::Error;

    fn default_config() -> Option<Self::Config> {
        None
    }

    fn build(config: Self::Config, context: &icp_core::Context<'_>) -> Result<Self, Self::Error> {
        Ok(DockerConfig(icp_docker_config::DockerConfig::new(
            config,
            context.base_dir,
        )))
    }
}

#[cfg(feature = "docker-config")]
impl icp_core::StaticBackend for DockerConfig {
    type Error = icp_docker_config::Error;

    fn provide(
        &self,
        request: &icp_core::Request<'_>,
    ) -> Result<icp_core::Credentials, Self::Error> {
        icp_core::StaticBackend::provide(&self.0, request)
    }
    fn check(&self) -> Result<(), Self::Error> {
        icp_core::StaticBackend::check(&self.0)
    }
}
