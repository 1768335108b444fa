//! QUIC endpoint plumbing shared by every fixit-edge endpoint — the node's client
//! listener, the SDK's client endpoints and the cluster's node links — so each is
//! written once: UDP sockets with raised kernel buffers ([`socket`]) and rustls
//! configs on ring, TLS 1.3 only ([`tls`]).

pub mod socket;
pub mod tls;

pub use tls::TlsError;
