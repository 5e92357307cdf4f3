//! The binary's integration tests, in one test binary: the built plugin run as the kubelet
//! runs it (its command line, its protocol, its cache, its drop-in modes), and the
//! library's serve path in-process. Backend behaviour is tested in each backend's crate.
//!
//! One binary links the SDKs once instead of once per file. A module that needs a backend
//! is compiled only when the binary is built with it, so every backend alone, and none,
//! builds and passes its tests (`.ci/run` runs each).

mod common;

#[cfg(feature = "acr")]
mod acr;
#[cfg(feature = "ecr")]
mod cache;
#[cfg(feature = "docker-config")]
mod cli;
#[cfg(feature = "docker-config")]
mod conformance;
#[cfg(feature = "docker-config")]
mod docker_config;
#[cfg(all(
    feature = "docker-config",
    feature = "ecr",
    feature = "acr",
    feature = "gcp",
    feature = "quay",
    feature = "jfrog",
    feature = "cloudsmith",
    feature = "vault",
    feature = "tokenExchange"
))]
mod docs;
#[cfg(all(feature = "ecr", feature = "acr", feature = "gcp"))]
mod dropin;
#[cfg(feature = "ecr")]
mod ecr;
#[cfg(any(
    feature = "quay",
    feature = "jfrog",
    feature = "cloudsmith",
    feature = "vault",
    feature = "tokenExchange"
))]
mod exchange;
#[cfg(all(feature = "docker-config", feature = "ecr"))]
mod explain;
#[cfg(feature = "ecr")]
mod fleet;
#[cfg(feature = "gcp")]
mod gcp;
#[cfg(all(
    feature = "docker-config",
    feature = "ecr",
    feature = "acr",
    feature = "gcp"
))]
mod install;
#[cfg(all(feature = "docker-config", feature = "ecr"))]
mod kubelet_config;
#[cfg(all(
    feature = "docker-config",
    feature = "ecr",
    feature = "acr",
    feature = "gcp"
))]
mod migration;
#[cfg(feature = "ecr")]
mod observe;
#[cfg(feature = "docker-config")]
mod registry;
mod security;
mod serve;
#[cfg(feature = "ecr")]
mod stale;
#[cfg(all(feature = "docker-config", feature = "ecr"))]
mod static_binary;
