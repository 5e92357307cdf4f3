//! The Google backend against fakes of Google's services: one test binary, a module per
//! source or concern.

mod dockercfg;
mod hosts;
mod metadata;
mod pod_identity;
mod service_account;
mod support;
