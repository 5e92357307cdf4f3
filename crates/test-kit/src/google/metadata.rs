//! A fake GCE metadata server: service accounts with their scopes and tokens, instance
//! attributes, and failures on demand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::{FakeServer, Recorded, Reply};

/// What the metadata fake answers for one service account.
#[derive(Clone)]
pub struct Account {
    /// The scopes its tokens carry.
    pub scopes: Vec<String>,
    /// The lifetime of its tokens, in seconds.
    pub expires_in: u64,
}

impl Account {
    /// An account with the scope of a GKE node's default service account.
    pub fn cloud_platform() -> Account {
        Account {
            scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
            expires_in: 3599,
        }
    }
}

/// How the metadata fake behaves.
#[derive(Clone, Default)]
pub struct Instance {
    /// The service accounts, by name (`default`) or email.
    pub accounts: BTreeMap<String, Account>,
    /// The instance attributes, by name.
    pub attributes: BTreeMap<String, String>,
    /// When set, token requests get this status (and an error body) instead.
    pub token_status: Option<u16>,
    /// How many token requests fail with 503 before one succeeds.
    pub token_unavailable: usize,
    /// A delay before every answer.
    pub delay: Duration,
}

impl Instance {
    /// An instance with its `default` account and the given email alias for it.
    pub fn gke_node() -> Instance {
        let mut instance = Instance::default();
        instance
            .accounts
            .insert("default".into(), Account::cloud_platform());
        instance.accounts.insert(
            "node@project.iam.gserviceaccount.com".into(),
            Account::cloud_platform(),
        );
        instance
    }
}

/// A fake GCE metadata server on `127.0.0.1`: it refuses requests without
/// `Metadata-Flavor: Google` (403) and marks every answer with it, as Google's does.
/// Tokens are `ya29.metadata-<account>-<n>`.
pub struct MetadataFake {
    /// The server, for its address and its requests.
    pub server: FakeServer,
}

impl MetadataFake {
    /// Starts a fake of `instance`.
    pub fn start(instance: Instance) -> MetadataFake {
        let issued = Arc::new(AtomicUsize::new(0));
        let unavailable = Arc::new(AtomicUsize::new(instance.token_unavailable));
        let server = FakeServer::http(move |request| {
            let reply = metadata_reply(&instance, request, &issued, &unavailable);
            reply
                .header("Metadata-Flavor", "Google")
                .header("Server", "Metadata Server for VM")
                .delay(instance.delay)
        });
        MetadataFake { server }
    }

    /// The value for `GCE_METADATA_HOST`.
    pub fn host(&self) -> String {
        self.server.address().to_string()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.server.request_count()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }
}

fn metadata_reply(
    instance: &Instance,
    request: &Recorded,
    issued: &AtomicUsize,
    unavailable: &AtomicUsize,
) -> Reply {
    if request.header("Metadata-Flavor") != Some("Google") {
        return Reply::status(403)
            .header("Content-Type", "text/html")
            .body("Missing required header");
    }
    if request.method != "GET" {
        return Reply::status(405);
    }
    let Some(path) = request.path().strip_prefix("/computeMetadata/v1/instance/") else {
        return Reply::status(404);
    };
    if let Some(name) = path.strip_prefix("attributes/") {
        return match instance.attributes.get(name) {
            Some(value) => Reply::status(200)
                .header("Content-Type", "application/text")
                .body(value.clone()),
            None => Reply::status(404).body("not found"),
        };
    }
    let Some((account, what)) = path
        .strip_prefix("service-accounts/")
        .and_then(|p| p.split_once('/'))
    else {
        return Reply::status(404);
    };
    let Some(details) = instance.accounts.get(account) else {
        return Reply::status(404).body("not found");
    };
    match what {
        "scopes" => Reply::status(200).body(
            details
                .scopes
                .iter()
                .map(|s| format!("{s}\n"))
                .collect::<String>(),
        ),
        "token" => {
            if let Some(status) = instance.token_status {
                return Reply::json(status, r#"{"error":"failed"}"#);
            }
            if unavailable
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Reply::status(503).body("try again");
            }
            let n = issued.fetch_add(1, Ordering::SeqCst);
            Reply::json(
                200,
                format!(
                    r#"{{"access_token":"ya29.metadata-{account}-{n}","expires_in":{},"token_type":"Bearer"}}"#,
                    details.expires_in
                ),
            )
        }
        _ => Reply::status(404),
    }
}
