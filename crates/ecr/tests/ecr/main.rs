//! The ECR backend's integration tests, one test binary: against small fakes of AWS on
//! 127.0.0.1 ([`fakes`]), against moto's emulator ([`moto`](mod@moto)), and in the
//! kubelet's service-account-token mode ([`service_account`]). Each test passes the
//! backend an environment of its own; none changes the process's.

mod fakes;
mod moto;
mod service_account;
mod support;
