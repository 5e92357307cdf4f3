//! The rustls client configuration: aws-lc-rs, the trusted roots of [`crate::roots`] (or
//! given ones), HTTP/1.1.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::Error;
use crate::roots::{self, Sources};

/// Builds the client configuration trusting the roots of `SSL_CERT_FILE` / `SSL_CERT_DIR`
/// when set, else the platform's. Reads the bundle file only; the directories are read
/// when there is no bundle, or when a server's certificate has an issuer the bundle lacks.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, Error> {
    config_for(Sources::from_process())
}

/// The client configuration trusting the roots of `sources`.
fn config_for(sources: Sources) -> Result<Arc<ClientConfig>, Error> {
    // aws-lc's CPU feature detection, which the build leaves to its first user.
    aws_lc_rs::init();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    let unreadable = match &sources.file {
        Some(file) => roots::add_file(&mut roots, file).err(),
        None => None,
    };
    let mut dirs = sources.dirs;
    if roots.is_empty() {
        roots::add_dirs(&mut roots, &dirs);
        dirs.clear();
    }
    if roots.is_empty() {
        return Err(unreadable.unwrap_or_else(|| {
            Error::Roots(match &sources.file {
                Some(file) => format!("{} holds no certificate", file.display()),
                None => "no bundle file, and no certificate in the certificate directories (set SSL_CERT_FILE)".to_owned(),
            })
        }));
    }
    let roots = Arc::new(roots);
    let verifier = Arc::new(Verifier {
        bundle: verifier(roots.clone(), &provider)?,
        extended: OnceLock::new(),
        bundle_roots: roots,
        dirs,
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Roots(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Builds the client configuration trusting only the certificates of the PEM bundle `pem`
/// (a cluster's CA, say); `source` names it in errors.
pub(crate) fn client_config_trusting(pem: &[u8], source: &str) -> Result<Arc<ClientConfig>, Error> {
    use rustls::pki_types::pem::PemObject;
    // aws-lc's CPU feature detection, which the build leaves to its first user.
    aws_lc_rs::init();
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
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Roots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn verifier(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, Error> {
    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| Error::Roots(e.to_string()))
}

/// rustls's own WebPKI verification against the bundle's roots; a certificate whose
/// issuer is unknown there (or whose issuer's name is there, with another key) is verified
/// again against the bundle's and the directories' roots, read then (once).
#[derive(Debug)]
struct Verifier {
    bundle: Arc<WebPkiServerVerifier>,
    /// The bundle and the directories, once read; `None` when they add nothing.
    extended: OnceLock<Option<Arc<WebPkiServerVerifier>>>,
    /// The bundle's roots, shared with `bundle`: copied only if the directories are read.
    bundle_roots: Arc<RootCertStore>,
    dirs: Vec<PathBuf>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn extended(&self) -> Option<&Arc<WebPkiServerVerifier>> {
        self.extended
            .get_or_init(|| {
                let mut roots = RootCertStore::clone(&self.bundle_roots);
                let before = roots.len();
                roots::add_dirs(&mut roots, &self.dirs);
                (roots.len() > before)
                    .then(|| verifier(Arc::new(roots), &self.provider).ok())
                    .flatten()
            })
            .as_ref()
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verify = |verifier: &WebPkiServerVerifier| {
            verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        };
        match verify(&self.bundle) {
            Err(rustls::Error::InvalidCertificate(
                error @ (CertificateError::UnknownIssuer | CertificateError::BadSignature),
            )) if !self.dirs.is_empty() => match self.extended() {
                Some(extended) => verify(extended),
                None => Err(rustls::Error::InvalidCertificate(error)),
            },
            result => result,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.bundle.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.bundle.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.bundle.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icp_test_kit::{FakeServer, Reply, TestCa};

    /// Whether a TLS handshake with `server` as `roots.test` succeeds with `sources`.
    fn handshake(sources: Sources, server: &FakeServer) -> Result<(), String> {
        let config = config_for(sources).map_err(|e| e.to_string())?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let tcp = tokio::net::TcpStream::connect(server.address())
                    .await
                    .unwrap();
                let name = ServerName::try_from("roots.test").unwrap();
                tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
    }

    #[test]
    fn the_directories_are_read_when_the_bundle_lacks_the_issuer() {
        let (ours, other) = (TestCa::new(), TestCa::new());
        let server = FakeServer::https(ours.server_config(&["roots.test"]), |_| Reply::status(200));
        let dir = std::env::temp_dir().join(format!("icp-http-roots-{}", std::process::id()));
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        let bundle = dir.join("bundle.pem");
        std::fs::write(&bundle, other.pem()).unwrap();
        std::fs::write(certs.join("0a1b2c3d.0"), ours.pem()).unwrap();
        let with = |dirs: Vec<PathBuf>| Sources {
            file: Some(bundle.clone()),
            dirs,
        };

        // The test CAs share their name: the bundle's has another key.
        let error = handshake(with(vec![]), &server).unwrap_err();
        assert!(error.contains("invalid peer certificate"), "{error}");
        handshake(with(vec![certs.clone()]), &server).unwrap();
        let error = handshake(with(vec![dir.join("empty")]), &server).unwrap_err();
        assert!(error.contains("invalid peer certificate"), "{error}");
        // No bundle: the directories are the roots.
        let no_bundle = Sources {
            file: Some(dir.join("missing.pem")),
            dirs: vec![certs.clone()],
        };
        handshake(no_bundle, &server).unwrap();
        let nothing = Sources {
            file: Some(dir.join("missing.pem")),
            dirs: vec![],
        };
        let error = handshake(nothing, &server).unwrap_err();
        assert!(error.contains("missing.pem"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
