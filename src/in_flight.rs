//! At most one call in flight per node metadata service: a service such as Azure IMDS
//! limits concurrent calls per machine (5 for managed identity tokens), and the cache's
//! single flight is per token, not per service. A fetch through a node's metadata service
//! ([`icp_core::TokenBackend::metadata_service`]) holds the service's lock under the cache
//! directory, the same kind of lock as the cache's ([`Cache::lock`]: released when the
//! process ends, waited for at most [`crate::cache::LOCK_WAIT`]).

use icp_core::TokenKey;

use crate::cache::{Cache, Lock};

/// The name the locks of metadata services go by in the cache, never a backend's.
const OWNER: &str = "metadata-service";

/// Takes the lock of metadata service `service` for the node; `None` when the wait ran
/// out or the lock file is unusable (the caller then calls the service uncoordinated).
pub fn lock(cache: &Cache, service: &str) -> Option<Lock> {
    let key = TokenKey {
        identity: String::new(),
        scope: service.to_owned(),
    };
    cache.lock(OWNER, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_service() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let held = lock(&cache, "azure-imds").unwrap();
        let other = lock(&cache, "gce-metadata");
        assert!(other.is_some(), "another service is not held up");
        let (sender, receiver) = std::sync::mpsc::channel();
        let dir = root.path().to_owned();
        let waiter = std::thread::spawn(move || {
            let cache = Cache::open(&dir).unwrap();
            let lock = lock(&cache, "azure-imds");
            sender.send(()).unwrap();
            lock.is_some()
        });
        assert!(
            receiver
                .recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the second caller waits"
        );
        drop(held);
        assert!(waiter.join().unwrap());
    }
}
