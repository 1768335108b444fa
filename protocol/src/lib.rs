//! fixit-edge's client protocol: what apps, the CLI and other nodes say to a node.
//!
//! - the records a node answers with ([`ids`], [`geo`], [`job`], [`provider`],
//!   [`ledger`], [`push`]) and who asks ([`principal`]);
//! - the commands, answers, pushes and errors ([`api`]), with each error's HTTP
//!   status and retry hint, and the command table ([`commands`]): each command's
//!   HTTP route, access rule, placement, answer and CLI verb, declared once;
//! - the QUIC frames ([`wire`]) and the one codec every byte goes through
//!   ([`codec`]: bincode 2 over serde, length-prefixed frames with a checked maximum).
//!
//! Nothing here knows actors, storage or HTTP servers: an app depends on this crate
//! (through `fixit-sdk`) without pulling them in.

pub mod api;
pub mod area;
pub mod codec;
pub mod command_spec;
pub mod commands;
pub mod error;
pub mod files;
pub mod geo;
pub mod ids;
pub mod job;
pub mod ledger;
pub mod principal;
pub mod provider;
pub mod push;
pub mod wire;

pub use api::{ApiError, ErrorBody, Push, Request, Response};
pub use error::{CoreError, CoreResult};
