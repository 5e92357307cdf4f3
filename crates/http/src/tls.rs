//! The rustls client configuration: aws-lc-rs, platform roots (or given ones), HTTP/1.1.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::Error;

/// Builds the client configuration trusting the platform's roots, or those of
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` when set.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, Error> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(loaded.certs);
    if roots.is_empty() {
        let why = match loaded.errors.first() {
            Some(error) => error.to_string(),
            None if ignored > 0 => format!("{ignored} certificates could not be parsed"),
            None => "the platform store is empty (set SSL_CERT_FILE)".to_owned(),
        };
        return Err(Error::Roots(why));
    }
    with_roots(roots)
}

/// Builds the client configuration trusting only the certificates of the PEM bundle `pem`
/// (a cluster's CA, say); `source` names it in errors.
pub(crate) fn client_config_trusting(pem: &[u8], source: &str) -> Result<Arc<ClientConfig>, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::Roots(format!("{source}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Roots(format!("{source}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Roots(format!("{source} holds no PEM certificate")));
    }
    with_roots(roots)
}

fn with_roots(roots: RootCertStore) -> Result<Arc<ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Roots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
