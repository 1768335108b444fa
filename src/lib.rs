//! fixit-edge's node assembly and client access: the API every transport shares
//! (admission, authorization, dispatch to the actors), the QUIC listener, the HTTP
//! bridge, the CLI client, the demo's and tests' local cluster, and the chaos
//! harness. Protocol types, the SDK, tokens, routing and the load generator are
//! the `fixit-protocol`, `fixit-sdk`, `fixit-auth`, `fixit-cluster` and `fixit-load`
//! crates.

pub mod api;
pub mod audit;
pub mod cli_client;
pub mod http;
pub mod limits;
pub mod overload;
pub mod quic;
pub mod server;
pub mod tls;

// Bearer tokens, the load generator and its simulated city live in their own
// crates; the binary's modules reach them under these names.
pub use fixit_auth as auth;
pub use fixit_load as load;
pub use fixit_load::city;
pub use fixit_load::local_cluster;
