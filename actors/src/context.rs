//! Everything the actors of one node share: config, clock, store, registries, geo index.

use crate::areas::{Areas, WorkAreas};
use crate::clock::SharedClock;
use crate::cluster_hooks::CandidateQuery;
use crate::cluster_hooks::{ClusterHooks, WalletCall, JOB_ID_NODE_SHIFT};
use crate::config::NodeConfig;
use crate::durability::Durability;
use crate::entity::{CallLimits, Registry};
use crate::error::{CoreError, CoreResult};
use crate::faults::Faults;
use crate::geo::GeoIndex;
use crate::geo::Nearby;
use crate::ids::{CustomerId, JobId, ProviderId, WalletId};
use crate::job_actor::JobKind;
use crate::ledger::LedgerOp;
use crate::provider_actor::ProviderKind;
use crate::services::{PushHub, ServiceSlots};
use crate::session_actor::SessionKind;
use crate::store::OpOutcome;
use crate::store::Store;
use crate::wallet_actor::WalletCommand;
use crate::wallet_actor::WalletKind;
use fixit_protocol::area::ZoneEvent;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
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
    /// Bookings refused because no service area for their skill holds them.
    pub bookings_outside_service_area: AtomicU64,
    /// Offers made to providers held by another node (dispatch across a region edge).
    pub offers_across_regions: AtomicU64,
    /// Customer job events sent to the node the customer booked through.
    pub pushes_forwarded: AtomicU64,
    /// Customer job events not forwarded (link slow or down, queue full).
    pub pushes_forward_dropped: AtomicU64,
    /// Providers entering or leaving a zone.
    pub zone_events: AtomicU64,
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

    /// Adds one to `counter`.
    pub fn count(counter: &AtomicU64) {
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
    /// Service areas and zones, indexed (replaced whole on a change).
    pub areas: RwLock<Arc<Areas>>,
    /// Providers' work areas.
    pub work_areas: RwLock<WorkAreas>,
    /// Providers entering and leaving zones, for admin subscribers (a slow one
    /// misses events rather than holding anyone up).
    pub zone_events: tokio::sync::broadcast::Sender<ZoneEvent>,
    /// Providers held by other nodes that searches here found, by the node
    /// holding each (offers and assignments go there). In memory only.
    pub provider_nodes: NodeMap<ProviderId>,
    /// Customers who reach this node through another, by that node: their job
    /// events are forwarded there. In memory only.
    pub customer_nodes: NodeMap<CustomerId>,
    /// The version of every cluster-wide setting held (anti-entropy digests).
    pub settings: Mutex<crate::settings::Versions>,
    /// Where revocations learnt from other nodes go (set by the API).
    pub revocation_sink: RwLock<Option<RevocationSink>>,
    /// One settings change at a time (each updates the areas from the last).
    pub setting_changes: tokio::sync::Mutex<()>,
}

/// A callback that puts an encoded token revocation in force.
pub type RevocationSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Most entries in one [`NodeMap`].
pub const REMOTE_ENTRIES_MAX: usize = 200_000;

/// Which other node each key (a provider, a customer) is reached through, in
/// memory, at most [`REMOTE_ENTRIES_MAX`] (past it an arbitrary entry makes room).
pub struct NodeMap<K>(Mutex<HashMap<K, String>>);

impl<K> Default for NodeMap<K> {
    fn default() -> NodeMap<K> {
        NodeMap(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq + Copy> NodeMap<K> {
    /// The other node `key` is reached through, if any.
    pub fn get(&self, key: K) -> Option<String> {
        self.0.lock().get(&key).cloned()
    }

    /// Notes the node `key` is reached through (`None`: this one).
    pub fn note(&self, key: K, node: Option<&str>) {
        let mut map = self.0.lock();
        let Some(node) = node else {
            map.remove(&key);
            return;
        };
        if map.get(&key).map(String::as_str) == Some(node) {
            return;
        }
        if map.len() >= REMOTE_ENTRIES_MAX && !map.contains_key(&key) {
            if let Some(evicted) = map.keys().next().copied() {
                map.remove(&evicted);
            }
        }
        map.insert(key, node.to_owned());
    }
}

impl NodeContext {
    /// Dispatch candidates in this node's index: available providers of the
    /// skill within the radius, not excluded, whose work area holds the point,
    /// best first.
    pub fn local_candidates(&self, query: &CandidateQuery) -> CoreResult<Vec<Nearby>> {
        let work = self.work_areas.read();
        Ok(crate::areas::candidates(&self.geo.read(), &work, query)?)
    }

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
            if cluster.wallets_replicated() {
                return cluster
                    .wallet_call(wallet, WalletCall::Apply { key, op })
                    .await?
                    .into_op();
            }
            if let Some(home) = cluster.remote_home(wallet) {
                return cluster.apply_remote(home, wallet, key, op).await;
            }
        }
        self.wallets
            .call(wallet, |reply| WalletCommand::Apply { key, op, reply })
            .await
    }

    /// The cluster's hooks when this node's wallets are replicated shards.
    pub fn replicated_wallets(&self) -> Option<&Arc<dyn ClusterHooks>> {
        self.cluster
            .as_ref()
            .filter(|cluster| cluster.wallets_replicated())
    }

    /// A new job id: this node's number in the top bits, a counter below. In a
    /// cluster the counter of a new data dir starts at a random point of the
    /// lower half of its range: a node that lost its disk must not hand out
    /// its old job ids again (a job's ledger keys are made of its id, and the
    /// customers' wallets outlive the disk in their replicated shards).
    pub fn new_job_id(&self) -> CoreResult<JobId> {
        let offset = match &self.cluster {
            Some(_) => self.store.job_id_offset(JOB_ID_NODE_SHIFT - 1)?,
            None => 0,
        };
        let local = offset + self.store.next_id()?;
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
