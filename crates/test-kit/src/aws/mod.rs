//! Fakes of AWS on the loopback, for the ECR backend's tests and the binary's.
//!
//! - [`server`]: the plain HTTP/1.1 server they run on, and the shapes of ECR's answers
//!   and of AWS errors, for tests that script their own answers;
//! - [`sts`]: STS `AssumeRoleWithWebIdentity` granting roles only to the tokens their trust
//!   policies name, and ECR answering with a token that names the signing principal;
//! - [`eks_auth`]: EKS Auth `AssumeRoleForPodIdentity` (EKS Pod Identity), served by the
//!   fake of [`sts`];
//! - [`session`]: the temporary credentials STS and EKS Auth hand out;
//! - [`counting`]: ECR and STS answering anyone, counting calls, slow or stuck on demand;
//! - [`instance_metadata`]: the EC2 instance metadata service (IMDSv2);
//! - [`moto`](mod@moto): moto's server, the AWS emulator.

pub mod counting;
pub mod eks_auth;
pub mod instance_metadata;
pub mod moto;
pub mod server;
pub mod session;
pub mod sts;

pub use instance_metadata::imds;
pub use moto::moto;
pub use server::{AMZ_JSON, Fake, Recorded, Reply, aws_error, base64, ecr_answer};
