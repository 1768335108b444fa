//! The cluster certificate authority: makes and loads the CA, and issues node
//! certificates signed by it (rcgen), written as PEM files (keys mode 0600).

use crate::error::{file_error, ClusterError};
use crate::names::validate_node_name;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// File name of the CA certificate inside a certificate directory.
pub const CA_CERT_FILE: &str = "ca-cert.pem";

/// File name of the CA private key inside a certificate directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Common name of every cluster CA certificate.
pub const CA_COMMON_NAME: &str = "fixit-edge cluster CA";

/// Names every node certificate carries besides the node's own, so a node can
/// also be reached by its loopback address in tests and single-host setups.
pub const NODE_EXTRA_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The cluster CA: its certificate (PEM) and its signing key.
pub struct ClusterCa {
    cert_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// Where a node's certificate and key are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCertPaths {
    /// `<dir>/<name>-cert.pem`.
    pub cert: PathBuf,
    /// `<dir>/<name>-key.pem` (mode 0600).
    pub key: PathBuf,
}

impl NodeCertPaths {
    /// The paths `issue_node` writes for node `name` in `dir`.
    pub fn in_dir(dir: &Path, name: &str) -> NodeCertPaths {
        NodeCertPaths {
            cert: dir.join(format!("{name}-cert.pem")),
            key: dir.join(format!("{name}-key.pem")),
        }
    }
}

impl ClusterCa {
    /// Makes a new CA key and self-signed CA certificate and writes them to `dir`
    /// (created if missing). Refuses to overwrite an existing CA.
    pub fn create(dir: &Path) -> Result<ClusterCa, ClusterError> {
        let key = KeyPair::generate().map_err(generate_error)?;
        let params = ca_params();
        let cert = params.self_signed(&key).map_err(generate_error)?;
        let cert_path = dir.join(CA_CERT_FILE);
        write_new(&dir.join(CA_KEY_FILE), &key.serialize_pem(), true)?;
        write_new(&cert_path, &cert.pem(), false)?;
        tracing::info!(cert = %cert_path.display(), "made a cluster CA");
        Ok(ClusterCa {
            cert_path,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads the CA that `create` wrote to `dir`.
    pub fn load(dir: &Path) -> Result<ClusterCa, ClusterError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let key_pem = read_text(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| file_error(&key_path, e))?;
        let cert_pem = read_text(&cert_path)?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| file_error(&cert_path, e))?;
        Ok(ClusterCa { cert_path, issuer })
    }

    /// The CA certificate file every node trusts.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Issues a certificate for node `name` (SAN: the name, then [`NODE_EXTRA_NAMES`])
    /// for both server and client authentication, and writes it with its new key to
    /// `dir`. Refuses to overwrite existing files.
    pub fn issue_node(&self, name: &str, dir: &Path) -> Result<NodeCertPaths, ClusterError> {
        validate_node_name(name)?;
        let mut names = vec![name.to_owned()];
        names.extend(NODE_EXTRA_NAMES.iter().map(|n| n.to_string()));
        let mut params = CertificateParams::new(names).map_err(generate_error)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(generate_error)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_error)?;
        let paths = NodeCertPaths::in_dir(dir, name);
        write_new(&paths.key, &key.serialize_pem(), true)?;
        write_new(&paths.cert, &cert.pem(), false)?;
        tracing::info!(node = name, cert = %paths.cert.display(), "issued a node certificate");
        Ok(paths)
    }
}

/// The CA's parameters: a CA for any path length, signing certificates only.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn generate_error(error: rcgen::Error) -> ClusterError {
    ClusterError::Generate(error.to_string())
}

fn read_text(path: &Path) -> Result<String, ClusterError> {
    std::fs::read_to_string(path).map_err(|e| file_error(path, e))
}

/// Writes a new file (never overwrites); `private` files get mode 0600.
fn write_new(path: &Path, text: &str, private: bool) -> Result<(), ClusterError> {
    crate::files::write_new(path, text, private).map_err(|e| file_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_is_made_loaded_and_issues_node_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::create(dir.path()).unwrap();
        assert!(ClusterCa::create(dir.path()).is_err(), "no overwrite");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let paths = ca.issue_node("node-a", dir.path()).unwrap();
        assert_eq!(paths, NodeCertPaths::in_dir(dir.path(), "node-a"));
        let loaded = ClusterCa::load(dir.path()).unwrap();
        assert!(loaded.issue_node("node-b", dir.path()).is_ok());
        assert!(matches!(
            loaded.issue_node("Bad_Name", dir.path()),
            Err(ClusterError::InvalidNodeName(_))
        ));
        assert!(ca.issue_node("node-a", dir.path()).is_err(), "no overwrite");
    }
}
