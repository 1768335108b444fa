//! Everything the actors of one node share: config, clock, store, registries, geo index.

use crate::clock::SharedClock;
use crate::cluster_hooks::{ClusterHooks, JOB_ID_NODE_SHIFT};
use crate::config::NodeConfig;
use crate::durability::Durability;
use crate::entity::{CallLimits, Registry};
use crate::error::{CoreError, CoreResult};
use crate::faults::Faults;
use crate::geo::GeoIndex;
use crate::ids::{JobId, WalletId};
use crate::job_actor::JobKind;
use crate::ledger::LedgerOp;
use crate::provider_actor::ProviderKind;
use crate::services::{PushHub, ServiceSlots};
use crate::session_actor::SessionKind;
use crate::store::OpOutcome;
use crate::store::Store;
use crate::wallet_actor::WalletCommand;
use crate::wallet_actor::WalletKind;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of the node's actors.
#[derive(Debug, Default)]
pub struct NodeStats {
    restarts: Mutex<BTreeMap<&'static str, u64>>,
    /// Pushes handed to clients.
    pub pushes_sent: AtomicU64,
    /// Pushes dropped (no listener, full channel, or notifier down).
    pub pushes_dropped: AtomicU64,
    /// Proofs of work checked.
    pub verifications: AtomicU64,
}

impl NodeStats {
    /// Notes one restart of an actor of `kind`.
    pub fn record_restart(&self, kind: &'static str) {
        *self.restarts.lock().entry(kind).or_default() += 1;
    }

    /// Restarts so far, by kind.
    pub fn restarts(&self) -> BTreeMap<&'static str, u64> {
        self.restarts.lock().clone()
    }

    /// Restarts so far of one kind.
    pub fn restarts_of(&self, kind: &str) -> u64 {
        self.restarts.lock().get(kind).copied().unwrap_or(0)
    }

    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The shared parts of one node.
pub struct NodeContext {
    /// Validated configuration.
    pub config: NodeConfig,
    /// Time source.
    pub clock: SharedClock,
    /// The sled database.
    pub store: Store,
    /// Group-commit writer: replies wait for it.
    pub durability: Durability,
    /// Armed faults (tests and chaos).
    pub faults: Faults,
    /// Available providers by cell and skill.
    pub geo: RwLock<GeoIndex>,
    /// Counters.
    pub stats: NodeStats,
    /// Bounds on calls.
    pub limits: Arc<CallLimits>,
    /// Wallet actors.
    pub wallets: Registry<WalletKind>,
    /// Provider actors.
    pub providers: Registry<ProviderKind>,
    /// Job actors.
    pub jobs: Registry<JobKind>,
    /// Customer session actors.
    pub sessions: Registry<SessionKind>,
    /// Notifier and verifier, while they run.
    pub services: ServiceSlots,
    /// Push channels of connected providers.
    pub pushes: PushHub,
    /// The cluster this node belongs to, if any.
    pub cluster: Option<Arc<dyn ClusterHooks>>,
}

impl NodeContext {
    /// The home node of `wallet` when that is another node.
    pub fn remote_home(&self, wallet: WalletId) -> Option<String> {
        self.cluster.as_ref()?.remote_home(wallet)
    }

    /// Applies a ledger operation to `wallet` wherever it lives: through its actor
    /// here, or over the cluster link to its home node.
    pub async fn wallet_op(
        &self,
        wallet: WalletId,
        key: String,
        op: LedgerOp,
    ) -> CoreResult<OpOutcome> {
        if let Some(cluster) = &self.cluster {
            if let Some(home) = cluster.remote_home(wallet) {
                return cluster.apply_remote(home, wallet, key, op).await;
            }
        }
        self.wallets
            .call(wallet, |reply| WalletCommand::Apply { key, op, reply })
            .await
    }

    /// A new job id: this node's number in the top bits, a counter below.
    pub fn new_job_id(&self) -> CoreResult<JobId> {
        let local = self.store.next_id()?;
        if local >= 1 << JOB_ID_NODE_SHIFT {
            return Err(CoreError::Internal(
                "this node has used up its job id space".into(),
            ));
        }
        let base = self.cluster.as_ref().map_or(0, |cluster| {
            u64::from(cluster.node_number()) << JOB_ID_NODE_SHIFT
        });
        Ok(JobId(base | local))
    }
}
