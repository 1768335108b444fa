//! Domain actors of a fixit-edge node: wallets, providers, jobs and customer sessions,
//! their supervision tree, the geo index, the ledger rules and the sled store.
//!
//! Pure logic ([`ledger`], [`job`] (from `fixit-protocol`), [`provider`], [`geo`], [`intensity`]) is plain
//! functions over plain state; the actors ([`wallet_actor`], [`provider_actor`],
//! [`job_actor`], [`session_actor`], [`services`]) receive, call that logic, persist
//! through [`store`], and reply once [`durability`] says the change is on disk.
//! [`node::Node`] assembles them under the [`root`] supervisor.

pub mod areas;
pub mod booking;
pub mod clock;
pub mod cluster_hooks;
pub mod config;
pub mod context;
pub mod dispatch;
pub mod durability;
pub mod entity;
pub mod failpoints;
pub mod faults;
pub mod geo;
pub mod intensity;
pub mod job_actor;
pub mod ledger;
pub mod node;
pub mod provider;
pub mod provider_actor;
pub mod root;
pub mod services;
pub mod session_actor;
pub mod settings;
pub mod sled_gate;
pub mod store;
pub mod wallet_actor;

pub use error::{CoreError, CoreResult};
// The records, errors and codec every side of the protocol shares live in
// `fixit-protocol`; they are re-exported under their old paths here.
pub use fixit_protocol::{codec, error, ids, job};
pub use node::Node;
