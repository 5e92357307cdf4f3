//! The ECR backend's integration tests, one test binary: against small fakes of AWS on
//! 127.0.0.1 ([`fakes`]), against moto's emulator ([`moto`](mod@moto)), and in the
//! kubelet's service-account-token mode ([`service_account`], and EKS Pod Identity in
//! [`pod_identity`]). Each test passes the
//! backend an environment of its own; none changes the process's.

mod fakes;
mod moto;
mod pod_identity;
mod service_account;
mod support;
