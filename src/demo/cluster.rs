//! The demo's three nodes on loopback in this process, and how the simulation
//! talks to them: through each node's API (`Api::handle`), so requests are routed
//! and forwarded exactly as a client's would be. A node can be stopped and
//! started again mid-run (`--kill-node-at-s`): its slot is empty meanwhile, and
//! calls to it fail as [`CallError::NodeDown`].

use super::city;
use super::DemoArgs;
use anyhow::Context;
use fixit_actors::clock::SystemClock;
use fixit_actors::config::NodeConfig;
use fixit_actors::ids::WalletId;
use fixit_cluster::{ClusterRouter, TrafficView};
use fixit_edge::api::{ApiError, Request, Response};
use fixit_edge::auth::{Principal, Role};
use fixit_edge::local_cluster::{free_link_addrs, free_tcp_addrs, local_cluster};
use fixit_edge::server::RunningNode;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most tries of one request that keeps being told to retry later.
const TRIES_MAX: u32 = 40;

/// Longest pause between two tries, whatever the retry hint says.
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(500);

/// Longest wait for every node to reach every other at start.
const LINKS_WAIT_MAX: Duration = Duration::from_secs(20);

/// Wallet ids searched for one homed on a given node (each node wins about a third).
const HOME_SEARCH_MAX: u64 = 1_000;

/// Longest wait for calls cut by a node's stop to let go of it.
const RELEASE_WAIT_MAX: Duration = Duration::from_secs(5);

/// Why a call of the simulation was not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// Its node was down, or went down while the call was under way (the call
    /// was cut, as by a dropped connection: it may or may not have been served).
    #[error("the node is down")]
    NodeDown,
    /// The node answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl CallError {
    /// When to retry, for errors the node says a retry can cure.
    pub(crate) fn retry_after_ms(&self) -> Option<u64> {
        match self {
            CallError::NodeDown => None,
            CallError::Api(error) => error.retry_after_ms(),
        }
    }
}

/// Whether a node is up, and how many times it has started: a call or an
/// online session made with one start of a node ends with that start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeState {
    pub(crate) up: bool,
    pub(crate) starts: u64,
}

impl NodeState {
    /// Whether the node went down or started again since `self` was read.
    fn left_by(self, now: &NodeState) -> bool {
        !now.up || now.starts != self.starts
    }
}

/// One node's place: its config (to start it again) and, while it is up, the
/// running node.
struct Slot {
    name: String,
    config: NodeConfig,
    running: RwLock<Option<Arc<RunningNode>>>,
    state: watch::Sender<NodeState>,
    /// Cross-node traffic of its earlier starts (a start counts from zero).
    earlier_traffic: Mutex<TrafficView>,
}

/// The nodes, in node-name order (a, b, c).
pub(crate) struct DemoCluster {
    slots: Vec<Slot>,
    /// Node a's router, for placement (every node has the same region map and
    /// data nodes; a is never stopped).
    placement: Arc<ClusterRouter>,
}

impl DemoCluster {
    /// Makes certificates and configs in `dir` and starts the nodes; node a listens
    /// for clients where `args` says, the others on port 0 — except a node to be
    /// stopped mid-run, which gets fixed free ports so it comes back on them.
    pub(crate) async fn start(dir: &Path, args: &DemoArgs) -> anyhow::Result<DemoCluster> {
        let configs = local_cluster(dir, &city::regions()).context("configuring the cluster")?;
        let mut starts = Vec::with_capacity(configs.len());
        let mut kept = Vec::with_capacity(configs.len());
        for (index, mut config) in configs.into_iter().enumerate() {
            config.dispatch.offer_timeout_ms = 3_000;
            config.passivation.entity_idle_ms = 30_000;
            config.server.dashboard_open = true;
            config.geo.service_areas = vec![city::service_area()];
            config.geo.zones = vec![city::station_zone()];
            if let Some(cluster) = config.cluster.as_mut() {
                cluster.replication_factor = args.replication_factor;
            }
            if index == 0 {
                config.server.http_listen = args.http_listen;
                config.server.quic_listen = args.quic_listen;
            } else if args.kill_node_at_s.is_some() && config.node.id == args.kill_node {
                config.server.http_listen = free_tcp_addrs(1)?[0];
                config.server.quic_listen = free_link_addrs(1)?[0];
            }
            kept.push(config.clone());
            let name = config.node.id.clone();
            starts.push(async move {
                RunningNode::start(config, Arc::new(SystemClock))
                    .await
                    .with_context(|| format!("starting node {name}"))
            });
        }
        // All at once: with replicated wallets a fresh node waits out elections
        // before its shards start (docs/CLUSTER.md), and they may wait together.
        let nodes = futures::future::join_all(starts)
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        let placement = nodes
            .first()
            .and_then(|node| node.api().cluster().cloned())
            .context("node a must be a cluster member")?;
        anyhow::ensure!(
            nodes.iter().all(|node| node.api().cluster().is_some()),
            "every demo node must be a cluster member"
        );
        let slots = kept
            .into_iter()
            .zip(nodes)
            .map(|(config, node)| Slot {
                name: config.node.id.clone(),
                config,
                running: RwLock::new(Some(Arc::new(node))),
                state: watch::Sender::new(NodeState {
                    up: true,
                    starts: 1,
                }),
                earlier_traffic: Mutex::default(),
            })
            .collect();
        Ok(DemoCluster { slots, placement })
    }

    /// How many nodes.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Node number `index` (0 = a) and its start, unless it is down.
    fn node_at(&self, index: usize) -> Option<(Arc<RunningNode>, NodeState)> {
        let slot = &self.slots[index];
        let running = slot.running.read().unwrap_or_else(PoisonError::into_inner);
        // Read together with the slot: a stop empties it and marks the state
        // down under the write lock.
        let state = *slot.state.borrow();
        running.clone().map(|node| (node, state))
    }

    /// Node number `index` (0 = a), unless it is down.
    pub(crate) fn node(&self, index: usize) -> Option<Arc<RunningNode>> {
        self.node_at(index).map(|(node, _)| node)
    }

    /// Whether node `index` is up, and its start.
    pub(crate) fn state(&self, index: usize) -> NodeState {
        *self.slots[index].state.borrow()
    }

    /// The nodes that are up, with their numbers.
    pub(crate) fn live(&self) -> Vec<(usize, Arc<RunningNode>)> {
        (0..self.len())
            .filter_map(|index| self.node(index).map(|node| (index, node)))
            .collect()
    }

    /// Every node, when all are up (the end of a run).
    pub(crate) fn all_up(&self) -> anyhow::Result<Vec<Arc<RunningNode>>> {
        (0..self.len())
            .map(|index| {
                self.node(index)
                    .with_context(|| format!("node {} is down", self.name(index)))
            })
            .collect()
    }

    /// A node's router, unless it is down.
    pub(crate) fn router(&self, index: usize) -> Option<Arc<ClusterRouter>> {
        self.node(index)
            .and_then(|node| node.api().cluster().cloned())
    }

    /// Node `index`'s cross-node traffic over all its starts.
    pub(crate) fn traffic(&self, index: usize) -> TrafficView {
        let earlier = self.slots[index]
            .earlier_traffic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match self.router(index) {
            Some(router) => add_traffic(earlier, &router.traffic.view()),
            None => earlier,
        }
    }

    /// The router placement is read from (node a's).
    pub(crate) fn placement(&self) -> &ClusterRouter {
        &self.placement
    }

    /// The name of node `index`.
    pub(crate) fn name(&self, index: usize) -> &str {
        &self.slots[index].name
    }

    /// The index of the node called `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        (0..self.len()).find(|index| self.name(*index) == name)
    }

    /// The node owning a position (positions outside every region: node a, which
    /// then serves them itself, as any node does with unmapped positions).
    pub(crate) fn owner_of(&self, (lat, lon): (f64, f64)) -> usize {
        self.placement
            .regions()
            .owner_of(lat, lon)
            .ok()
            .flatten()
            .and_then(|name| self.index_of(name))
            .unwrap_or(0)
    }

    /// The node a wallet lives on.
    pub(crate) fn home_of(&self, wallet: WalletId) -> usize {
        self.index_of(self.placement.home_of(wallet)).unwrap_or(0)
    }

    /// Waits until node `index` is up; false if it is still down at `until`.
    pub(crate) async fn wait_up(&self, index: usize, until: Instant) -> bool {
        let mut state = self.slots[index].state.subscribe();
        let up = tokio::time::timeout_at(until.into(), state.wait_for(|now| now.up)).await;
        matches!(up, Ok(Ok(_)))
    }

    /// Waits until node `index` goes down or starts again after `since`.
    pub(crate) async fn left(&self, index: usize, since: NodeState) {
        let mut state = self.slots[index].state.subscribe();
        let _ = state.wait_for(|now| since.left_by(now)).await;
    }

    /// Stops node `index` abruptly ([`RunningNode::kill`]): its slot empties at
    /// once, calls under way to it are cut, then it stops (its data dir stays).
    pub(crate) async fn kill(&self, index: usize) -> anyhow::Result<()> {
        let slot = &self.slots[index];
        let running = {
            let mut running = slot.running.write().unwrap_or_else(PoisonError::into_inner);
            slot.state.send_modify(|state| state.up = false);
            running.take()
        }
        .with_context(|| format!("node {} is already down", slot.name))?;
        let running = sole_owner(running, RELEASE_WAIT_MAX)
            .await
            .with_context(|| format!("calls still hold node {}", slot.name))?;
        if let Some(router) = running.api().cluster() {
            let mut earlier = slot
                .earlier_traffic
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *earlier = add_traffic(earlier.clone(), &router.traffic.view());
        }
        running
            .kill()
            .await
            .with_context(|| format!("stopping node {}", slot.name))
    }

    /// Starts node `index` again from its config and data dir.
    pub(crate) async fn restart(&self, index: usize) -> anyhow::Result<()> {
        let slot = &self.slots[index];
        let node = RunningNode::start(slot.config.clone(), Arc::new(SystemClock))
            .await
            .with_context(|| format!("starting node {} again", slot.name))?;
        let mut running = slot.running.write().unwrap_or_else(PoisonError::into_inner);
        *running = Some(Arc::new(node));
        slot.state.send_modify(|state| {
            state.up = true;
            state.starts += 1;
        });
        Ok(())
    }

    /// Waits until every node has served a wallet call forwarded to every other
    /// node, so the simulation starts on working links.
    pub(crate) async fn wait_linked(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let admin = Principal {
            role: Role::Admin,
            sub: 0,
        };
        for from in 0..self.len() {
            for to in (0..self.len()).filter(|to| *to != from) {
                let wallet = (1..=HOME_SEARCH_MAX)
                    .find(|id| self.home_of(WalletId(*id)) == to)
                    .context("no wallet id homed on a node")?;
                let request = Request::Balance { wallet };
                let request_id = format!("demo-link-{}-{}", self.name(from), self.name(to));
                match self
                    .send(from, &admin, demo_address(0), request, &request_id)
                    .await
                {
                    Ok(_)
                    | Err(CallError::Api(ApiError::Core(
                        fixit_actors::error::CoreError::NotFound(_),
                    ))) => {}
                    Err(error) => anyhow::bail!(
                        "node {} cannot reach node {} after {:?}: {error}",
                        self.name(from),
                        self.name(to),
                        started.elapsed()
                    ),
                }
                anyhow::ensure!(
                    started.elapsed() < LINKS_WAIT_MAX,
                    "the links took longer than {LINKS_WAIT_MAX:?} to come up"
                );
            }
        }
        Ok(())
    }

    /// Shuts every node that is up down, all at once (one after the other, the
    /// last ones would spend their shutdown reconnecting to the first).
    pub(crate) async fn shutdown(self) -> anyhow::Result<()> {
        let stops = self.slots.into_iter().filter_map(|slot| {
            let running = slot
                .running
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)?;
            Some(async move {
                sole_owner(running, RELEASE_WAIT_MAX)
                    .await
                    .with_context(|| format!("calls still hold node {}", slot.name))?
                    .shutdown()
                    .await
            })
        });
        futures::future::join_all(stops)
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()?;
        Ok(())
    }

    /// Sends one request to node `index`'s API as a client would, retrying (a
    /// bounded number of times, honouring the hint) while it is told to retry
    /// later: busy, rate limited, or a peer not reachable yet.
    pub(crate) async fn send(
        &self,
        index: usize,
        principal: &Principal,
        source: IpAddr,
        request: Request,
        request_id: &str,
    ) -> Result<Response, CallError> {
        let mut tries = 1;
        loop {
            let answer = self
                .send_once(index, principal, source, request.clone(), request_id)
                .await;
            match answer.as_ref().err().and_then(CallError::retry_after_ms) {
                Some(retry_after_ms) if tries < TRIES_MAX => {
                    tries += 1;
                    let pause = Duration::from_millis(retry_after_ms).min(RETRY_PAUSE_MAX);
                    tokio::time::sleep(pause).await;
                }
                _ => return answer,
            }
        }
    }

    /// Sends one request to node `index`'s API once; cut if the node stops
    /// meanwhile.
    pub(crate) async fn send_once(
        &self,
        index: usize,
        principal: &Principal,
        source: IpAddr,
        request: Request,
        request_id: &str,
    ) -> Result<Response, CallError> {
        let (node, since) = self.node_at(index).ok_or(CallError::NodeDown)?;
        tokio::select! {
            answer = node.api().handle(principal, source, request, request_id) => {
                answer.map_err(CallError::Api)
            }
            () = self.left(index, since) => Err(CallError::NodeDown),
        }
    }
}

/// Two nodes' or two starts' traffic, added up.
fn add_traffic(mut total: TrafficView, more: &TrafficView) -> TrafficView {
    total.forwarded_out += more.forwarded_out;
    total.forwarded_in += more.forwarded_in;
    total.wallet_calls_out += more.wallet_calls_out;
    total.wallet_calls_in += more.wallet_calls_in;
    total.transfers_delivered += more.transfers_delivered;
    total.transfers_received += more.transfers_received;
    total.nearby_fanouts += more.nearby_fanouts;
    total.calls_failed += more.calls_failed;
    total.job_events_lost += more.job_events_lost;
    total.candidate_fanouts += more.candidate_fanouts;
    total
}

/// The value of `shared` once no one else holds it, waiting at most `wait`.
pub(crate) async fn sole_owner<T>(mut shared: Arc<T>, wait: Duration) -> Option<T> {
    let deadline = Instant::now() + wait;
    loop {
        match Arc::try_unwrap(shared) {
            Ok(owned) => return Some(owned),
            Err(still_shared) if Instant::now() < deadline => {
                shared = still_shared;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return None,
        }
    }
}

/// The address simulated client `id` calls from: one per client (as phones would
/// be), in 127/8 so it stays a loopback address.
pub(crate) fn demo_address(id: u64) -> IpAddr {
    let [_, _, _, _, _, high, middle, low] = id.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(127, high, middle, low))
}
