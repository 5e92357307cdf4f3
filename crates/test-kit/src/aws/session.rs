//! The temporary credentials the AWS fakes hand out (STS's and EKS Auth's): how long they
//! live, and their secrets, which must never show on stderr.

/// How long the credentials STS hands out live, as AWS's default session does.
pub const SESSION_SECONDS: u64 = 3600;

/// The secret key and the session token of the `n`th credentials the fakes hand out: what must
/// never show on stderr.
pub fn sts_secrets(n: usize) -> [String; 2] {
    [
        format!("fake-sts-secret-key-{n}"),
        format!("fake-sts-session-token-{n}"),
    ]
}
