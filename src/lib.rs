//! fixit-edge's node assembly and client access: the API every transport shares,
//! tokens, admission control, the QUIC client protocol and SDK, and the HTTP bridge.

pub mod api;
pub mod auth;
pub mod chaos;
pub mod city;
pub mod cli_client;
pub mod http;
pub mod limits;
pub mod load;
pub mod local_cluster;
pub mod overload;
pub mod quic;
pub mod server;
pub mod tls;
