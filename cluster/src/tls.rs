//! Mutual TLS between nodes: both sides present a certificate signed by the
//! cluster CA and accept only certificates signed by it; ALPN [`ALPN`], TLS 1.3.

use crate::error::{file_error, tls_error, ClusterError};
use crate::names::{is_valid_node_name, validate_node_name};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The application protocol of node-to-node links, negotiated in the handshake.
pub const ALPN: &[u8] = b"fixit-cluster/1";

/// One node's name and the files of its TLS identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// This node's name (validated), as in its certificate.
    pub name: String,
    /// The cluster CA certificate: the only trust anchor.
    pub ca_cert: PathBuf,
    /// This node's certificate, signed by the CA.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

impl NodeIdentity {
    /// The identity of node `name` whose files `ClusterCa::create` and
    /// `ClusterCa::issue_node` wrote to `dir`.
    pub fn in_dir(dir: &Path, name: &str) -> NodeIdentity {
        let paths = crate::certs::NodeCertPaths::in_dir(dir, name);
        NodeIdentity {
            name: name.to_owned(),
            ca_cert: dir.join(crate::certs::CA_CERT_FILE),
            cert: paths.cert,
            key: paths.key,
        }
    }
}

/// The certificates of a PEM file, in order; at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClusterError> {
    Ok(fixit_net::tls::read_certificates(path)?)
}

/// A root store holding only the cluster CA.
fn cluster_roots(ca_cert: &Path) -> Result<Arc<rustls::RootCertStore>, ClusterError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_certificates(ca_cert)? {
        roots.add(certificate).map_err(|e| file_error(ca_cert, e))?;
    }
    Ok(Arc::new(roots))
}

fn own_certificate(
    identity: &NodeIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ClusterError> {
    validate_node_name(&identity.name)?;
    let key = fixit_net::tls::read_private_key(&identity.key)?;
    Ok((read_certificates(&identity.cert)?, key))
}

/// The accepting side: presents this node's certificate and requires a client
/// certificate signed by the cluster CA.
pub fn server_crypto(identity: &NodeIdentity) -> Result<Arc<QuicServerConfig>, ClusterError> {
    let (certificates, key) = own_certificate(identity)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(
        cluster_roots(&identity.ca_cert)?,
        fixit_net::tls::crypto_provider(),
    )
    .build()
    .map_err(tls_error)?;
    quic_server_config(verifier, certificates, key, ALPN)
}

/// A QUIC server config on ring with TLS 1.3 only (see [`fixit_net::tls`]).
pub fn quic_server_config(
    client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    certificates: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<Arc<QuicServerConfig>, ClusterError> {
    Ok(fixit_net::tls::quic_server_config(
        client_verifier,
        certificates,
        key,
        alpn,
    )?)
}

/// The connecting side: presents this node's certificate and checks the server's
/// against the cluster CA and the peer's node name (the server name used to connect).
pub fn client_crypto(identity: &NodeIdentity) -> Result<Arc<QuicClientConfig>, ClusterError> {
    let (certificates, key) = own_certificate(identity)?;
    let config = fixit_net::tls::client_builder(cluster_roots(&identity.ca_cert)?)?
        .with_client_auth_cert(certificates, key)
        .map_err(tls_error)?;
    Ok(fixit_net::tls::quic_client_config(config, ALPN)?)
}

/// The node name in a certificate the handshake already verified: its first DNS
/// subject alternative name that is a valid node name (`issue_node` puts it first).
pub fn node_name_of(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let names = parsed.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) if is_valid_node_name(dns) => {
                Some((*dns).to_owned())
            }
            _ => None,
        })
}

/// The verified node name of a connection's peer, if it presented a certificate.
pub fn peer_name(connection: &quinn::Connection) -> Option<String> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_name_of(chain.first()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::ClusterCa;

    #[test]
    fn configs_build_from_issued_material_and_the_name_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::create(dir.path()).unwrap();
        ca.issue_node("node-a", dir.path()).unwrap();
        let identity = NodeIdentity::in_dir(dir.path(), "node-a");
        assert!(server_crypto(&identity).is_ok());
        assert!(client_crypto(&identity).is_ok());
        let certificate = read_certificates(&identity.cert).unwrap().remove(0);
        assert_eq!(node_name_of(&certificate).as_deref(), Some("node-a"));
        let ca_certificate = read_certificates(&identity.ca_cert).unwrap().remove(0);
        assert_eq!(node_name_of(&ca_certificate), None);
    }
}
