//! Errors of the cluster crate: [`LinkError`] travels on the wire as a call's
//! failure; [`ClusterError`] is a local setup failure (certificates, TLS, bind).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a cross-node call failed. Serializable: a remote node's failure arrives as
/// one of these in the [`Reply`](crate::wire::Reply). Nothing changed on the remote
/// side unless the handler itself says so inside `Refused`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LinkError {
    /// The peer cannot be reached now (link down or lost mid-call); retry later.
    #[error("peer {peer} unavailable: {reason}")]
    Unavailable {
        /// The peer's node name.
        peer: String,
        /// What is known about the failure.
        reason: String,
    },
    /// Too many calls in flight to (or at) that peer; retry after the hint.
    #[error("busy: retry after {retry_after_ms} ms")]
    Busy {
        /// Suggested wait before retrying, in ms.
        retry_after_ms: u64,
    },
    /// The call's deadline passed before it was answered (or before it was sent).
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The remote handler refused the command (its own error text).
    #[error("refused: {0}")]
    Refused(String),
    /// A frame could not be read, decoded or written (the sender's fault).
    #[error("bad frame: {0}")]
    BadFrame(String),
}

/// A local setup step failed: nothing was sent to any peer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A node name is not 1–63 characters of `[a-z0-9-]` (or is reserved).
    #[error("invalid node name {0:?}: expected 1 to 63 characters of [a-z0-9-], no hyphen at either end, not all digits, not \"localhost\"")]
    InvalidNodeName(String),
    /// A certificate or key file could not be read, written or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A certificate could not be generated or signed.
    #[error("certificate generation: {0}")]
    Generate(String),
    /// rustls or quinn refused the material or the settings.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The cluster section of a node's config is inconsistent (bad names or
    /// regions, two nodes sharing a node number).
    #[error("invalid cluster config: {0}")]
    InvalidConfig(String),
    /// A limit is out of its valid range.
    #[error("invalid limit {name}: {reason}")]
    InvalidLimit {
        /// The field.
        name: &'static str,
        /// The valid range.
        reason: &'static str,
    },
    /// The UDP socket could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// A [`ClusterError::File`] for `path`.
pub(crate) fn file_error(path: &Path, reason: impl ToString) -> ClusterError {
    ClusterError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// A [`ClusterError::Tls`] from any displayable error.
pub(crate) fn tls_error(error: impl ToString) -> ClusterError {
    ClusterError::Tls(error.to_string())
}

impl From<fixit_net::TlsError> for ClusterError {
    fn from(error: fixit_net::TlsError) -> Self {
        match error {
            fixit_net::TlsError::File { path, reason } => ClusterError::File { path, reason },
            fixit_net::TlsError::Config(reason) => ClusterError::Tls(reason),
        }
    }
}
