//! Chaos tooling for fixit-edge (see the chaos issue and docs/CHAOS.md).
//!
//! * [`checker`]: the **invariant checker**, run after each chaos scenario or on
//!   its own: reads stopped nodes' sled dirs (copies; the originals are never
//!   changed) and the clients' acknowledged operations, and decides conservation,
//!   no negative balance, exactly-once, single assignment and durability.
//! * [`proxy`]: the **fault proxy**, a UDP relay placed between nodes that drops a
//!   percentage of datagrams, adds delay with jitter, and cuts a link in one or
//!   both directions (a partition) and heals it, at run time, with every random
//!   choice drawn from a seed so a run can be replayed. It counts what it did per
//!   direction for the chaos report's `faults_injected`.
//!
//! ```no_run
//! # async fn example(node_b: std::net::SocketAddr) -> Result<(), fixit_chaos::proxy::ProxyError> {
//! use fixit_chaos::proxy::{FaultProxy, Faults, ProxyConfig};
//!
//! // Node A talks to `proxy.local_addr()` instead of node B.
//! let proxy = FaultProxy::start(ProxyConfig::new(node_b, 42), Faults::loss(20)).await?;
//! proxy.partition(); // nothing passes either way
//! proxy.heal(); // back to 20% loss
//! let counts = proxy.stop().await;
//! println!("faults injected: {}", counts.faults_injected());
//! # Ok(())
//! # }
//! ```

pub mod checker;
pub mod harness;
pub mod proxy;
