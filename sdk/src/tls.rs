//! The client side of the node's TLS: trust exactly the node's pinned certificate.

use quinn::crypto::rustls::QuicClientConfig;
use std::path::Path;
use std::sync::Arc;

pub use fixit_net::TlsError;

/// A client TLS config that trusts exactly the certificates of the PEM file at
/// `server_cert_pem` (the node listener's self-signed certificate, or a bundle
/// of every node's for a client that fails over between nodes) and nothing
/// else; TLS 1.3 with ALPN [`fixit_protocol::wire::ALPN`].
pub fn client_crypto(server_cert_pem: &Path) -> Result<Arc<QuicClientConfig>, TlsError> {
    fixit_net::tls::pinned_client_config(server_cert_pem, fixit_protocol::wire::ALPN)
}
