//! What the actors need from a cluster, without knowing the network: where a
//! wallet lives, how to apply an operation to a wallet homed on another node, and
//! a nudge when the outbox has something to deliver. The node assembly (`src/`)
//! implements it over the cluster links.

use crate::error::{CoreError, CoreResult};
use crate::geo::{Coord, Nearby};
use crate::ids::{JobId, ProviderId, Skill, WalletId};
use crate::ledger::{Balance, LedgerEntry, LedgerOp};
use crate::services::{JobEvent, ProviderPush};
use crate::store::OpOutcome;
use serde::{Deserialize, Serialize};
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

    /// Whether wallets live in replicated shards: then every wallet call goes
    /// through [`ClusterHooks::wallet_call`] and none through this node's wallet
    /// actors or store.
    fn wallets_replicated(&self) -> bool;

    /// With replicated wallets: the audit of the shards this node leads now,
    /// summed (over every node, each shard is counted once while leadership
    /// is settled).
    fn led_shards_audit(&self) -> CoreResult<crate::store::Audit>;

    /// A call on a wallet in its replicated shard, served by the shard's leader
    /// (wherever it is) once a majority of the shard's replicas has it.
    fn wallet_call(&self, wallet: WalletId, call: WalletCall)
        -> BoxFuture<CoreResult<WalletReply>>;

    /// Dispatch candidates held by the other nodes whose regions reach the
    /// search circle, each with the node holding it; a node that does not answer
    /// within the link deadline is left out (its providers are not offered).
    fn remote_candidates(&self, query: CandidateQuery) -> BoxFuture<Vec<(Nearby, String)>>;

    /// A command for a provider held by node `node` (offers and assignments of
    /// jobs held here).
    fn provider_remote(
        &self,
        node: String,
        provider: ProviderId,
        call: ProviderCall,
    ) -> BoxFuture<CoreResult<()>>;

    /// A command for a provider whose node is not known here (a restart lost it):
    /// sent to every other node at once; `Ok` if one of them took it. Safe for
    /// the end signals (a node not holding the provider in that state ignores
    /// them) and for an assignment (only the node holding the offer takes it).
    fn provider_everywhere(
        &self,
        provider: ProviderId,
        call: ProviderCall,
    ) -> BoxFuture<CoreResult<()>>;

    /// A provider held here declines a job held by another node (it went offline).
    fn decline_remote(&self, job: JobId, provider: ProviderId) -> BoxFuture<CoreResult<()>>;

    /// Sends a customer's job event to node `node`, where the customer booked
    /// from, without waiting: false when it was dropped (the node's queue full).
    fn forward_job_event(&self, node: &str, event: JobEvent) -> bool;
}

/// A call on a wallet kept in a replicated shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletCall {
    /// Apply a ledger operation under an idempotency key.
    Apply {
        /// Idempotency key.
        key: String,
        /// The operation.
        op: LedgerOp,
    },
    /// The wallet's balance (linearizable).
    Balance,
    /// A page of the wallet's ledger (linearizable).
    History {
        /// First entry wanted.
        from_seq: u64,
        /// Most entries wanted.
        limit: u32,
    },
}

/// The answer to a [`WalletCall`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletReply {
    /// The outcome of an operation.
    Op(OpOutcome),
    /// A balance.
    Balance(Balance),
    /// Ledger entries.
    History(Vec<LedgerEntry>),
}

impl WalletReply {
    fn unexpected(&self, wanted: &str) -> CoreError {
        CoreError::Internal(format!(
            "a wallet call wanting {wanted} was answered {self:?}"
        ))
    }

    /// The outcome, if this answers an operation.
    pub fn into_op(self) -> CoreResult<OpOutcome> {
        match self {
            WalletReply::Op(outcome) => Ok(outcome),
            other => Err(other.unexpected("an outcome")),
        }
    }

    /// The balance, if this answers a balance.
    pub fn into_balance(self) -> CoreResult<Balance> {
        match self {
            WalletReply::Balance(balance) => Ok(balance),
            other => Err(other.unexpected("a balance")),
        }
    }

    /// The entries, if this answers a history.
    pub fn into_history(self) -> CoreResult<Vec<LedgerEntry>> {
        match self {
            WalletReply::History(entries) => Ok(entries),
            other => Err(other.unexpected("ledger entries")),
        }
    }
}

/// A search for dispatch candidates on another node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateQuery {
    /// The job's position.
    pub at: Coord,
    /// The skill wanted.
    pub skill: Skill,
    /// Most candidates.
    pub limit: u32,
    /// Search radius, metres.
    pub radius_m: f64,
    /// Providers not to return (already tried).
    pub exclude: Vec<ProviderId>,
}

/// What a job held on one node asks of a provider held on another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProviderCall {
    /// Hold an offer of `job` until `until_ms`.
    Offer {
        /// The job.
        job: JobId,
        /// Offer deadline, ms since the epoch.
        until_ms: u64,
    },
    /// The offer of `job` ended unaccepted.
    OfferEnded {
        /// The job.
        job: JobId,
    },
    /// The provider holds `job` (it accepted).
    Assign {
        /// The job.
        job: JobId,
    },
    /// `job` ended.
    JobEnded {
        /// The job.
        job: JobId,
    },
    /// A push for the provider's app.
    Push(ProviderPush),
}

/// The node number encoded in a job id (0 for a node outside any cluster).
pub fn node_number_of_job(job_id: u64) -> u16 {
    (job_id >> JOB_ID_NODE_SHIFT) as u16
}
