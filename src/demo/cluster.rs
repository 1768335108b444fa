//! The demo's three nodes on loopback in this process, and how the simulation
//! talks to them: through each node's API (`Api::handle`), so requests are routed
//! and forwarded exactly as a client's would be.

use super::city;
use super::DemoArgs;
use anyhow::Context;
use fixit_actors::clock::SystemClock;
use fixit_actors::ids::WalletId;
use fixit_cluster::ClusterRouter;
use fixit_edge::api::{ApiError, Request, Response};
use fixit_edge::auth::{Principal, Role};
use fixit_edge::local_cluster::local_cluster;
use fixit_edge::server::RunningNode;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most tries of one request that keeps being told to retry later.
const TRIES_MAX: u32 = 40;

/// Longest pause between two tries, whatever the retry hint says.
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(500);

/// Longest wait for every node to reach every other at start.
const LINKS_WAIT_MAX: Duration = Duration::from_secs(20);

/// Wallet ids searched for one homed on a given node (each node wins about a third).
const HOME_SEARCH_MAX: u64 = 1_000;

/// The running nodes, in node-name order (a, b, c).
pub(crate) struct DemoCluster {
    nodes: Vec<RunningNode>,
}

impl DemoCluster {
    /// Makes certificates and configs in `dir` and starts the nodes; node a listens
    /// for clients where `args` says, the others on port 0.
    pub(crate) async fn start(dir: &Path, args: &DemoArgs) -> anyhow::Result<DemoCluster> {
        let configs = local_cluster(dir, &city::regions()).context("configuring the cluster")?;
        let mut starts = Vec::with_capacity(configs.len());
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
            }
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
        let cluster = DemoCluster { nodes };
        anyhow::ensure!(
            cluster
                .nodes
                .iter()
                .all(|node| node.api().cluster().is_some()),
            "every demo node must be a cluster member"
        );
        Ok(cluster)
    }

    /// Every node, in name order.
    pub(crate) fn nodes(&self) -> &[RunningNode] {
        &self.nodes
    }

    /// Node number `index` (0 = a).
    pub(crate) fn node(&self, index: usize) -> &RunningNode {
        &self.nodes[index]
    }

    /// A node's router.
    pub(crate) fn router(&self, index: usize) -> &Arc<ClusterRouter> {
        self.nodes[index]
            .api()
            .cluster()
            .expect("checked at start: every demo node is in the cluster")
    }

    /// The name of node `index`.
    pub(crate) fn name(&self, index: usize) -> &str {
        self.router(index).name()
    }

    /// The index of the node called `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|index| self.name(*index) == name)
    }

    /// The node owning a position (positions outside every region: node a, which
    /// then serves them itself, as any node does with unmapped positions).
    pub(crate) fn owner_of(&self, (lat, lon): (f64, f64)) -> usize {
        self.router(0)
            .regions()
            .owner_of(lat, lon)
            .ok()
            .flatten()
            .and_then(|name| self.index_of(name))
            .unwrap_or(0)
    }

    /// The node a wallet lives on.
    pub(crate) fn home_of(&self, wallet: WalletId) -> usize {
        self.index_of(self.router(0).home_of(wallet)).unwrap_or(0)
    }

    /// Waits until every node has served a wallet call forwarded to every other
    /// node, so the simulation starts on working links.
    pub(crate) async fn wait_linked(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let admin = Principal {
            role: Role::Admin,
            sub: 0,
        };
        for from in 0..self.nodes.len() {
            for to in (0..self.nodes.len()).filter(|to| *to != from) {
                let wallet = (1..=HOME_SEARCH_MAX)
                    .find(|id| self.home_of(WalletId(*id)) == to)
                    .context("no wallet id homed on a node")?;
                let request = Request::Balance { wallet };
                let request_id = format!("demo-link-{}-{}", self.name(from), self.name(to));
                match send(
                    self.node(from),
                    &admin,
                    demo_address(0),
                    request,
                    &request_id,
                )
                .await
                {
                    Ok(_) | Err(ApiError::Core(fixit_actors::error::CoreError::NotFound(_))) => {}
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

    /// Shuts every node down, all at once (one after the other, the last ones
    /// would spend their shutdown reconnecting to the first).
    pub(crate) async fn shutdown(self) -> anyhow::Result<()> {
        let stops = self.nodes.into_iter().map(RunningNode::shutdown);
        futures::future::join_all(stops)
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()?;
        Ok(())
    }
}

/// Sends one request to `node`'s API as a client would, retrying (a bounded number
/// of times, honouring the hint) while it is told to retry later: busy, rate
/// limited, or a peer not reachable yet.
pub(crate) async fn send(
    node: &RunningNode,
    principal: &Principal,
    source: IpAddr,
    request: Request,
    request_id: &str,
) -> Result<Response, ApiError> {
    let mut tries = 1;
    loop {
        let answer = node
            .api()
            .handle(principal, source, request.clone(), request_id)
            .await;
        match answer.as_ref().err().and_then(ApiError::retry_after_ms) {
            Some(retry_after_ms) if tries < TRIES_MAX => {
                tries += 1;
                let pause = Duration::from_millis(retry_after_ms).min(RETRY_PAUSE_MAX);
                tokio::time::sleep(pause).await;
            }
            _ => return answer,
        }
    }
}

/// The address simulated client `id` calls from: one per client (as phones would
/// be), in 127/8 so it stays a loopback address.
pub(crate) fn demo_address(id: u64) -> IpAddr {
    let [_, _, _, _, _, high, middle, low] = id.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(127, high, middle, low))
}
