//! Where things live in the cluster and how this node reaches them: the region
//! map, wallet homes, node numbers (carried in job ids), and typed calls to peers.
//! It is also the actors' [`ClusterHooks`].

use super::commands::{PeerAnswer, PeerCommand, PeerResult};
use crate::error::ClusterError;
use crate::names::validate_node_name;
use crate::placement::{home_of_wallet, node_number};
use crate::shards::Shards;
use crate::{Envelope, LinkError, Peers, Regions, Target};
use fixit_actors::clock::SharedClock;
use fixit_actors::cluster_hooks::{node_number_of_job, BoxFuture, ClusterHooks};
use fixit_actors::cluster_hooks::{CandidateQuery, ProviderCall, WalletCall, WalletReply};
use fixit_actors::codec;
use fixit_actors::config::ClusterSection;
use fixit_actors::error::{CoreError, CoreResult};
use fixit_actors::geo::Nearby;
use fixit_actors::ids::{JobId, ProviderId, WalletId};
use fixit_actors::ledger::LedgerOp;
use fixit_actors::services::JobEvent;
use fixit_actors::store::OpOutcome;
use fixit_protocol::api::ApiError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use tokio::sync::Notify;

/// Cross-node traffic of this node, for `GET /cluster` and the dashboard.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Client requests this node forwarded to the node that owns them.
    pub forwarded_out: AtomicU64,
    /// Client requests other nodes forwarded here.
    pub forwarded_in: AtomicU64,
    /// Ledger operations sent to wallets homed on other nodes.
    pub wallet_calls_out: AtomicU64,
    /// Ledger operations other nodes sent to wallets homed here.
    pub wallet_calls_in: AtomicU64,
    /// Outbox transfers delivered to (and acknowledged by) other nodes.
    pub transfers_delivered: AtomicU64,
    /// Transfers from other nodes credited here (a redelivery counts again).
    pub transfers_received: AtomicU64,
    /// Nearby searches that asked other nodes.
    pub nearby_fanouts: AtomicU64,
    /// Calls to peers that failed (down, busy, deadline).
    pub calls_failed: AtomicU64,
    /// Customer job events a peer did not take (down, busy, deadline).
    pub job_events_lost: AtomicU64,
    /// Dispatch candidate searches that asked other nodes.
    pub candidate_fanouts: AtomicU64,
}

/// A snapshot of [`Traffic`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrafficView {
    /// See [`Traffic::forwarded_out`].
    pub forwarded_out: u64,
    /// See [`Traffic::forwarded_in`].
    pub forwarded_in: u64,
    /// See [`Traffic::wallet_calls_out`].
    pub wallet_calls_out: u64,
    /// See [`Traffic::wallet_calls_in`].
    pub wallet_calls_in: u64,
    /// See [`Traffic::transfers_delivered`].
    pub transfers_delivered: u64,
    /// See [`Traffic::transfers_received`].
    pub transfers_received: u64,
    /// See [`Traffic::nearby_fanouts`].
    pub nearby_fanouts: u64,
    /// See [`Traffic::calls_failed`].
    pub calls_failed: u64,
    /// See [`Traffic::job_events_lost`].
    pub job_events_lost: u64,
    /// See [`Traffic::candidate_fanouts`].
    pub candidate_fanouts: u64,
}

impl Traffic {
    /// The counters now.
    pub fn view(&self) -> TrafficView {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TrafficView {
            forwarded_out: read(&self.forwarded_out),
            forwarded_in: read(&self.forwarded_in),
            wallet_calls_out: read(&self.wallet_calls_out),
            wallet_calls_in: read(&self.wallet_calls_in),
            transfers_delivered: read(&self.transfers_delivered),
            transfers_received: read(&self.transfers_received),
            nearby_fanouts: read(&self.nearby_fanouts),
            calls_failed: read(&self.calls_failed),
            job_events_lost: read(&self.job_events_lost),
            candidate_fanouts: read(&self.candidate_fanouts),
        }
    }

    /// Adds one to `counter`.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The wallet homes of a cluster: the nodes its region map names (every data
/// node owns a region; a member named nowhere there only forwards), or, with no
/// region map, this node and its seeds. Sorted, each once.
pub fn wallet_homes(section: &ClusterSection) -> Vec<String> {
    let mut nodes: Vec<String> = if section.regions.is_empty() {
        section
            .seeds
            .keys()
            .chain([&section.name])
            .cloned()
            .collect()
    } else {
        section.regions.values().cloned().collect()
    };
    nodes.sort();
    nodes.dedup();
    nodes
}

/// The cluster as this node sees it.
pub struct ClusterRouter {
    name: String,
    regions: Regions,
    /// The data nodes, sorted: the wallet-home candidates.
    nodes: Vec<String>,
    /// Node number → node name.
    numbers: BTreeMap<u16, String>,
    number: u16,
    call_timeout_ms: u64,
    clock: SharedClock,
    peers: OnceLock<Weak<Peers>>,
    /// Whether wallets are kept in replicated shards (replication factor > 1).
    replicated: bool,
    /// Wallet buckets (shards) when replicated.
    wallet_buckets: u32,
    /// The running wallet shards, once started.
    shards: OnceLock<Weak<Shards>>,
    /// Wakes the outbox delivery task.
    pub(crate) outbox_waker: Notify,
    /// Cross-node traffic counters.
    pub traffic: Traffic,
    /// Job events on their way to the nodes customers are connected to.
    pub(crate) job_events: super::pushes::EventQueues,
}

impl ClusterRouter {
    /// The router for a validated `[cluster]` section. Refuses invalid names and
    /// regions, and two nodes whose names share a node number.
    pub fn new(
        section: &ClusterSection,
        clock: SharedClock,
    ) -> Result<ClusterRouter, ClusterError> {
        let invalid = |field: &str, error: &dyn std::fmt::Display| {
            ClusterError::InvalidConfig(format!("{field}: {error}"))
        };
        validate_node_name(&section.name).map_err(|e| invalid("cluster.name", &e))?;
        for name in section.seeds.keys() {
            validate_node_name(name).map_err(|e| invalid("cluster.seeds", &e))?;
        }
        let regions =
            Regions::new(section.regions.clone()).map_err(|e| invalid("cluster.regions", &e))?;
        let nodes = wallet_homes(section);
        let mut named: Vec<&String> = nodes
            .iter()
            .chain(section.seeds.keys())
            .chain([&section.name])
            .collect();
        named.sort();
        named.dedup();
        let mut numbers = BTreeMap::new();
        for node in named {
            if let Some(other) = numbers.insert(node_number(node), node.clone()) {
                return Err(ClusterError::InvalidConfig(format!(
                    "cluster: nodes {other:?} and {node:?} share node number {}; rename one",
                    node_number(node)
                )));
            }
        }
        Ok(ClusterRouter {
            name: section.name.clone(),
            number: node_number(&section.name),
            regions,
            nodes,
            numbers,
            call_timeout_ms: section.call_timeout_ms,
            clock,
            peers: OnceLock::new(),
            replicated: section.replication_factor > 1,
            wallet_buckets: section.wallet_buckets,
            shards: OnceLock::new(),
            outbox_waker: Notify::new(),
            traffic: Traffic::default(),
            job_events: Default::default(),
        })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster's data nodes (wallet homes), sorted.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The region map.
    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    /// Every other node this node knows of: the data nodes and every member the
    /// links know (joined through a seed), sorted.
    pub fn other_nodes(&self) -> Vec<String> {
        let mut names: std::collections::BTreeSet<String> = self.nodes.iter().cloned().collect();
        if let Some(peers) = self.peers.get().and_then(Weak::upgrade) {
            names.extend(peers.names());
        }
        names.remove(self.name());
        names.into_iter().collect()
    }

    /// Peer `name` just made a call to this node, or answered one.
    pub(crate) fn heard_from(&self, name: &str) {
        if let Some(peers) = self.peers.get().and_then(Weak::upgrade) {
            peers.heard_from(name);
        }
    }

    /// Whether calls to peer `name` go out at all (a known member, not
    /// declared down or left); `false` once the links have stopped.
    pub fn reachable(&self, name: &str) -> bool {
        self.peers
            .get()
            .and_then(Weak::upgrade)
            .is_some_and(|peers| peers.reachable(name))
    }

    /// Whether peer `name` was heard from within `window` (a membership
    /// datagram or a call); `false` once the links have stopped.
    pub fn heard_within(&self, name: &str, window: std::time::Duration) -> bool {
        self.peers
            .get()
            .and_then(Weak::upgrade)
            .is_some_and(|peers| peers.heard_within(name, window))
    }

    /// Lets calls go out over `peers` (held weakly: once the links stop, calls
    /// answer `Unavailable`).
    pub(crate) fn attach(&self, peers: &Arc<Peers>) {
        let _ = self.peers.set(Arc::downgrade(peers));
    }

    /// Lets wallet calls go to the shards (held weakly: once they stop, wallet
    /// calls answer `Unavailable`).
    pub(crate) fn attach_shards(&self, shards: &Arc<Shards>) {
        let _ = self.shards.set(Arc::downgrade(shards));
    }

    /// Whether wallets are kept in replicated shards.
    pub fn wallets_replicated(&self) -> bool {
        self.replicated
    }

    /// Where a wallet's ledger is written: its shard (`w<n>`) when wallets are
    /// replicated, else its home node. Two wallets in the same place are paid
    /// within one transaction; between places a capture goes through the outbox.
    pub fn wallet_place(&self, wallet: WalletId) -> String {
        if self.replicated {
            crate::shards::shard_of(wallet, self.wallet_buckets).name()
        } else {
            self.home_of(wallet).to_owned()
        }
    }

    /// The running wallet shards, if replicated and started.
    pub fn shards(&self) -> Option<Arc<Shards>> {
        self.shards.get().and_then(Weak::upgrade)
    }

    /// The running shards, or why a wallet call cannot be served.
    pub(crate) fn shards_or_unavailable(&self) -> Result<Arc<Shards>, CoreError> {
        self.shards().ok_or_else(|| {
            CoreError::Unavailable(format!(
                "node {}: the wallet shards are not running",
                self.name
            ))
        })
    }

    /// The node that owns a position, when it is another node. Invalid degrees and
    /// unmapped positions stay here (the local command gives the typed error or
    /// serves it).
    pub fn remote_owner_of(&self, lat: f64, lon: f64) -> Option<String> {
        let owner = self.regions.owner_of(lat, lon).ok().flatten()?;
        (owner != self.name).then(|| owner.to_owned())
    }

    /// The home node of a wallet.
    pub fn home_of(&self, wallet: WalletId) -> &str {
        home_of_wallet(wallet.0, &self.nodes).unwrap_or(&self.name)
    }

    /// The node holding a job, when it is another node (from the id's node number;
    /// an unknown number stays here, where it is not found).
    pub fn remote_holder_of_job(&self, job: u64) -> Option<String> {
        let holder = self.numbers.get(&node_number_of_job(job))?;
        (*holder != self.name).then(|| holder.clone())
    }

    /// Sends `command` to node `peer` and decodes its answer. Link failures become
    /// typed, retryable API errors.
    pub async fn call(
        &self,
        peer: &str,
        command: &PeerCommand,
        idempotency_key: Option<String>,
        request_id: &str,
    ) -> PeerResult {
        let result = self
            .call_link(peer, command, idempotency_key, request_id)
            .await;
        if result.is_err() {
            Traffic::count(&self.traffic.calls_failed);
        } else {
            self.heard_from(peer);
        }
        result
    }

    async fn call_link(
        &self,
        peer: &str,
        command: &PeerCommand,
        idempotency_key: Option<String>,
        request_id: &str,
    ) -> PeerResult {
        let peers = self
            .peers
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| unavailable(peer, "cluster links are not running"))?;
        let envelope = Envelope {
            target: target_of(command),
            command: codec::encode(command)
                .map_err(|error| ApiError::Core(CoreError::Internal(error.to_string())))?,
            idempotency_key,
            request_id: request_id.to_owned(),
            deadline_ms: self.clock.now_ms() + self.call_timeout_ms,
            from: self.name.clone(),
        };
        let bytes = peers.call(peer, envelope).await.map_err(|error| {
            ApiError::Core(match error {
                LinkError::Busy { retry_after_ms } => CoreError::Busy { retry_after_ms },
                LinkError::Unavailable { .. } | LinkError::DeadlineExceeded => {
                    CoreError::Unavailable(format!("node {peer}: {error}"))
                }
                other => CoreError::Internal(format!("node {peer}: {other}")),
            })
        })?;
        codec::decode::<PeerResult>(&bytes).map_err(|error| {
            ApiError::Core(CoreError::Internal(format!(
                "node {peer} answered something unreadable: {error}"
            )))
        })?
    }
}

fn unavailable(peer: &str, why: &str) -> ApiError {
    ApiError::Core(CoreError::Unavailable(format!("node {peer}: {why}")))
}

fn target_of(command: &PeerCommand) -> Target {
    match command {
        PeerCommand::WalletOp { wallet, .. } => Target::Wallet(wallet.0),
        PeerCommand::Transfer(transfer) => Target::Wallet(transfer.to_wallet.0),
        PeerCommand::Client { .. }
        | PeerCommand::Nearby(_)
        | PeerCommand::Candidates(_)
        | PeerCommand::Provider { .. }
        | PeerCommand::Decline { .. }
        | PeerCommand::JobEvents(_)
        | PeerCommand::SettingsDigests(_)
        | PeerCommand::SettingsFetch(_)
        | PeerCommand::SettingsPush(_)
        | PeerCommand::Shard { .. }
        | PeerCommand::ShardsHeld
        | PeerCommand::ReplaceReplica { .. } => Target::Node,
        PeerCommand::Raft { .. } | PeerCommand::Ping => Target::Raft,
    }
}

/// The router as the actors' cluster hooks (held weakly by nobody: the node owns it).
pub struct Hooks(pub Arc<ClusterRouter>);

impl ClusterHooks for Hooks {
    fn node_number(&self) -> u16 {
        self.0.number
    }

    fn remote_home(&self, wallet: WalletId) -> Option<String> {
        if self.0.replicated {
            return None;
        }
        let home = self.0.home_of(wallet);
        (home != self.0.name).then(|| home.to_owned())
    }

    fn apply_remote(
        &self,
        home: String,
        wallet: WalletId,
        key: String,
        op: LedgerOp,
    ) -> BoxFuture<CoreResult<OpOutcome>> {
        let router = self.0.clone();
        Box::pin(async move {
            Traffic::count(&router.traffic.wallet_calls_out);
            let request_id = format!("{}-w{}-{key}", router.name, wallet.0);
            let command = PeerCommand::WalletOp {
                wallet,
                key: key.clone(),
                op,
            };
            match router.call(&home, &command, Some(key), &request_id).await {
                Ok(PeerAnswer::Op(outcome)) => Ok(outcome),
                Ok(other) => Err(CoreError::Internal(format!(
                    "node {home} answered a wallet operation with {other:?}"
                ))),
                Err(ApiError::Core(error)) => Err(error),
                Err(other) => Err(CoreError::Internal(format!("node {home}: {other}"))),
            }
        })
    }

    fn transfers_queued(&self) {
        self.0.outbox_waker.notify_one();
        if let Some(shards) = self.0.shards() {
            shards.outbox_waker.notify_one();
        }
    }

    fn wallets_replicated(&self) -> bool {
        self.0.replicated
    }

    fn led_shards_audit(&self) -> CoreResult<fixit_actors::store::Audit> {
        self.0.shards_or_unavailable()?.led_audit()
    }

    fn wallet_call(
        &self,
        wallet: WalletId,
        call: WalletCall,
    ) -> BoxFuture<CoreResult<WalletReply>> {
        let router = self.0.clone();
        Box::pin(async move { router.shards_or_unavailable()?.call(wallet, call).await })
    }

    fn remote_candidates(&self, query: CandidateQuery) -> BoxFuture<Vec<(Nearby, String)>> {
        let router = self.0.clone();
        Box::pin(async move { router.candidates_across(query).await })
    }

    fn provider_remote(
        &self,
        node: String,
        provider: ProviderId,
        call: ProviderCall,
    ) -> BoxFuture<CoreResult<()>> {
        let router = self.0.clone();
        Box::pin(async move {
            let request_id = format!("{}-p{}", router.name, provider.0);
            let command = PeerCommand::Provider { provider, call };
            done(&node, router.call(&node, &command, None, &request_id).await)
        })
    }

    fn provider_everywhere(
        &self,
        provider: ProviderId,
        call: ProviderCall,
    ) -> BoxFuture<CoreResult<()>> {
        let router = self.0.clone();
        Box::pin(async move {
            let mut asks = tokio::task::JoinSet::new();
            for node in router.other_nodes() {
                let router = router.clone();
                let call = call.clone();
                asks.spawn(async move {
                    let request_id = format!("{}-p{}", router.name, provider.0);
                    let command = PeerCommand::Provider { provider, call };
                    done(&node, router.call(&node, &command, None, &request_id).await)
                });
            }
            let mut last = Err(CoreError::NotFound(provider.to_string()));
            while let Some(joined) = asks.join_next().await {
                match joined {
                    Ok(Ok(())) => return Ok(()),
                    Ok(error) => last = error,
                    Err(error) => tracing::warn!(%error, "a provider call leg panicked"),
                }
            }
            last
        })
    }

    fn decline_remote(&self, job: JobId, provider: ProviderId) -> BoxFuture<CoreResult<()>> {
        let router = self.0.clone();
        Box::pin(async move {
            let Some(node) = router.remote_holder_of_job(job.0) else {
                return Err(CoreError::NotFound(job.to_string()));
            };
            let request_id = format!("{}-d{}", router.name, job.0);
            let command = PeerCommand::Decline { job, provider };
            done(&node, router.call(&node, &command, None, &request_id).await)
        })
    }

    fn forward_job_event(&self, node: &str, event: JobEvent) -> bool {
        self.0.job_events.send(&self.0, node, event)
    }
}

/// A peer's `Done` as `Ok`, its error as the core error it carries.
fn done(node: &str, result: PeerResult) -> CoreResult<()> {
    match result {
        Ok(PeerAnswer::Done) => Ok(()),
        Ok(other) => Err(CoreError::Internal(format!(
            "node {node} answered a provider call with {other:?}"
        ))),
        Err(ApiError::Core(error)) => Err(error),
        Err(other) => Err(CoreError::Internal(format!("node {node}: {other}"))),
    }
}
