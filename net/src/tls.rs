//! rustls configs for QUIC endpoints, all on ring with TLS 1.3 only: reading PEM
//! certificates, a server config with a given client-certificate verifier, and a
//! client config that trusts exactly one pinned certificate.

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// TLS material could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls or quinn refused the material (e.g. a key that does not match).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A [`TlsError::File`] for `path`.
pub fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn config_error(error: impl ToString) -> TlsError {
    TlsError::Config(error.to_string())
}

/// The crypto provider every endpoint uses: ring (no C build of aws-lc).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order; at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certificates.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certificates)
}

/// The private key of a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

/// A QUIC server config with TLS 1.3 only, the given client-certificate verifier
/// and one ALPN protocol: the one place both listeners (node links and clients) get
/// their server TLS from.
pub fn quic_server_config(
    client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    certificates: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<Arc<QuicServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(certificates, key)
        .map_err(config_error)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(
        QuicServerConfig::try_from(config).map_err(config_error)?,
    ))
}

/// A QUIC client config built from a rustls client config builder that has its
/// roots and client authentication set, with TLS 1.3 only and one ALPN protocol.
pub fn quic_client_config(
    mut config: rustls::ClientConfig,
    alpn: &[u8],
) -> Result<Arc<QuicClientConfig>, TlsError> {
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(
        QuicClientConfig::try_from(config).map_err(config_error)?,
    ))
}

/// A rustls client config builder on [`crypto_provider`], TLS 1.3 only, that
/// trusts exactly `roots`.
pub fn client_builder(
    roots: Arc<rustls::RootCertStore>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, TlsError>
{
    Ok(
        rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_root_certificates(roots),
    )
}

/// A client config, without a client certificate, that trusts exactly the
/// certificates of the PEM file at `pinned_pem` (one node's, or a bundle of
/// several nodes' for a client that may talk to any of them) and nothing else.
pub fn pinned_client_config(
    pinned_pem: &Path,
    alpn: &[u8],
) -> Result<Arc<QuicClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for pinned in read_certificates(pinned_pem)? {
        roots.add(pinned).map_err(|e| file_error(pinned_pem, e))?;
    }
    let config = client_builder(Arc::new(roots))?.with_no_client_auth();
    quic_client_config(config, alpn)
}

/// The QUIC endpoint configuration of a node's listener: its stateless-reset key
/// and its connection-id key are derived from the node's private key, so they are
/// the same after a restart. A client (or a peer node) still holding a connection
/// to the process that died then gets a stateless reset on its next packet and
/// learns at once that the connection is gone, instead of waiting out the idle
/// timeout. (quinn drops packets whose connection id its generator does not
/// recognise, so the id key must survive the restart too.)
pub fn endpoint_config(key: &PrivateKeyDer<'_>) -> quinn::EndpointConfig {
    let secret = derive(key, b"fixit-edge stateless reset key v1");
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_ref());
    let mut config = quinn::EndpointConfig::new(Arc::new(reset_key));
    let id_secret = derive(key, b"fixit-edge connection id key v1");
    let mut id_key = [0u8; 8];
    id_key.copy_from_slice(&id_secret.as_ref()[..8]);
    let id_key = u64::from_le_bytes(id_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(id_key))
    });
    config
}

/// SHA-256 of `label` and the key's secret bytes.
fn derive(key: &PrivateKeyDer<'_>, label: &[u8]) -> ring::digest::Digest {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(label);
    context.update(key.secret_der());
    context.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_certificate_makes_a_client_config_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&cert, made.cert.pem()).unwrap();
        assert_eq!(read_certificates(&cert).unwrap().len(), 1);
        assert!(pinned_client_config(&cert, b"x/1").is_ok());
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(matches!(
            pinned_client_config(&cert, b"x/1"),
            Err(TlsError::File { .. })
        ));
        assert!(read_certificates(&dir.path().join("missing.pem")).is_err());
    }
}
