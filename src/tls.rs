//! TLS of the node's client listener: its self-signed certificate (made once, kept
//! as PEM beside the node's data) and its rustls config, TLS 1.3 only with ALPN
//! [`ALPN`]. Clients pin that certificate (`fixit_sdk::tls::client_crypto`).

use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

pub use fixit_protocol::wire::{ALPN, SERVER_NAME};

/// Subject alternative names of a made certificate.
pub const SUBJECT_ALT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate chain and its private key.
pub type CertifiedKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// TLS material could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read, written or parsed, or rustls
    /// refused the material (see [`fixit_net::TlsError`]).
    #[error(transparent)]
    Material(#[from] fixit_net::TlsError),
    /// The self-signed certificate could not be generated.
    #[error("certificate generation: {0}")]
    Generate(String),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    fixit_net::tls::file_error(path, reason).into()
}

/// Reads the certificate and key at the given paths; if both are missing, makes a
/// self-signed certificate for [`SUBJECT_ALT_NAMES`] and writes both (key mode 0600).
/// Exactly one of them missing is an error: nothing is overwritten.
pub fn load_or_create(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => create(cert_path, key_path)?,
        (true, true) => {}
        (false, true) => return Err(file_error(cert_path, "missing while its key exists")),
        (true, false) => return Err(file_error(key_path, "missing while its certificate exists")),
    }
    let key = fixit_net::tls::read_private_key(key_path)?;
    Ok((fixit_net::tls::read_certificates(cert_path)?, key))
}

fn create(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names: Vec<String> = SUBJECT_ALT_NAMES.iter().map(|n| n.to_string()).collect();
    let made =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_new(key_path, &made.signing_key.serialize_pem(), true)?;
    write_new(cert_path, &made.cert.pem(), false)?;
    tracing::info!(cert = %cert_path.display(), "made a self-signed client-listener certificate");
    Ok(())
}

fn write_new(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    fixit_cluster::files::write_new(path, text, private).map_err(|e| file_error(path, e))
}

/// The listener's TLS config: TLS 1.3, no client certificates, ALPN [`ALPN`].
pub fn server_crypto(certified: CertifiedKey) -> Result<Arc<QuicServerConfig>, TlsError> {
    let (certificates, key) = certified;
    let no_client_auth = rustls::server::WebPkiClientVerifier::no_client_auth();
    Ok(fixit_net::tls::quic_server_config(
        no_client_auth,
        certificates,
        key,
        ALPN,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_made_once_with_a_private_key_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls/cert.pem");
        let key = dir.path().join("tls/key.pem");
        let (made, _) = load_or_create(&cert, &key).unwrap();
        let (again, _) = load_or_create(&cert, &key).unwrap();
        assert_eq!(made, again, "the second call reads, it does not remake");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(server_crypto(load_or_create(&cert, &key).unwrap()).is_ok());
        assert!(fixit_sdk::tls::client_crypto(&cert).is_ok());
    }

    #[test]
    fn half_present_or_garbage_material_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "not a key").unwrap();
        assert!(matches!(
            load_or_create(&cert, &key),
            Err(TlsError::Material(fixit_net::TlsError::File { .. }))
        ));
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(load_or_create(&cert, &key).is_err());
        assert!(fixit_sdk::tls::client_crypto(&cert).is_err());
    }
}
