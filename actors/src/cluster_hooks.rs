//! What the actors need from a cluster, without knowing the network: where a
//! wallet lives, how to apply an operation to a wallet homed on another node, and
//! a nudge when the outbox has something to deliver. The node assembly (`src/`)
//! implements it over the cluster links.

use crate::error::CoreResult;
use crate::ids::WalletId;
use crate::ledger::LedgerOp;
use crate::store::OpOutcome;
use std::future::Future;
use std::pin::Pin;

/// A boxed future that can cross threads.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Bits of a job id below the node number: ids made by one node count up in them
/// (2^37, about 137 billion jobs per node). With the 16-bit node number on top, a
/// job id stays below 2^53, so JSON clients that read numbers as doubles
/// (JavaScript) see every id exactly.
pub const JOB_ID_NODE_SHIFT: u32 = 37;

/// The cluster as the actors see it.
pub trait ClusterHooks: Send + Sync + 'static {
    /// This node's number in the cluster (never 0): the top 16 bits of every job id
    /// it makes, so a job id tells which node holds the job.
    fn node_number(&self) -> u16;

    /// The home node of `wallet` when that is another node; `None` when it is this one.
    fn remote_home(&self, wallet: WalletId) -> Option<String>;

    /// Applies `op` under `key` to `wallet` on its home node `home`.
    fn apply_remote(
        &self,
        home: String,
        wallet: WalletId,
        key: String,
        op: LedgerOp,
    ) -> BoxFuture<CoreResult<OpOutcome>>;

    /// A capture wrote transfers to the outbox: deliver them soon.
    fn transfers_queued(&self);
}

/// The node number encoded in a job id (0 for a node outside any cluster).
pub fn node_number_of_job(job_id: u64) -> u16 {
    (job_id >> JOB_ID_NODE_SHIFT) as u16
}
