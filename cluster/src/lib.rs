//! Node-to-node links of a fixit-edge cluster: a cluster CA and node certificates,
//! mutual-TLS QUIC endpoints carrying one typed call per stream, peer links that
//! reconnect with backoff, and the pure placement rules (regions and wallet homes).
//!
//! Layers, bottom up: [`names`] and [`placement`] are pure; [`backoff`] is a pure
//! schedule; [`certs`] and [`tls`] make and load key material; [`wire`] is the call
//! format; [`link`] is the QUIC endpoint that serves calls; [`membership`] is the
//! failure detector (SWIM, by foca) over the links' datagrams; [`peers`] keeps
//! one outgoing connection per known member, following membership, and makes
//! calls over it; [`route`]
//! decides where a client request is served, forwards it, serves peers' calls
//! through the [`LocalApi`] trait and delivers the outbox.

pub mod backoff;
pub mod certs;
pub mod error;
pub use fixit_protocol::files;
pub mod link;
pub mod membership;
pub mod names;
pub mod peers;
pub mod placement;
pub mod route;
pub mod shards;
pub mod tls;
pub mod wire;

pub use certs::{ClusterCa, NodeCertPaths};
pub use error::{ClusterError, LinkError};
pub use link::{CallHandler, ClusterEndpoint, LinkLimits};
pub use membership::{MemberId, MemberStatus};
pub use peers::{LinkState, MemberView, PeerState, Peers};
pub use placement::{home_of_wallet, PlacementError, Regions};
pub use route::{ClusterLinks, ClusterRouter, ClusterStatus, LocalApi, TrafficView};
pub use tls::NodeIdentity;
pub use wire::{Envelope, Reply, Target};
