//! The process harness: a three-node cluster of real `fixit node` child processes
//! (this binary) on loopback, with a fault proxy on every link direction, that a
//! scenario can `kill -9`, stop, restart, partition and degrade — and whose
//! failpoints it arms over each node's HTTP bridge (`/v1/admin/failpoints`).
//!
//! Node x reaches node y through proxy x→y (its `[cluster.seeds]` entry names the
//! proxy, which relays to y's link listener), so a partition of one node cuts the
//! four proxies touching it, and packet loss is set on all six. Client listeners
//! and link listeners have fixed ports, so a restarted node is found where it was.
//! Every node runs with the run's replication factor; a node's client TLS
//! identity lives beside its config, not in its data dir, so a node whose data
//! dir is deleted (disk-loss) comes back as the same node to its clients.

use crate::checker::NodeDir;
use crate::proxy::{FaultProxy, Faults, ProxyConfig};
use anyhow::Context;
use fixit_actors::config::NodeConfig;
use fixit_auth::{now_s, Principal, Role, TokenKey};
use fixit_cluster::Regions;
use fixit_load::local_cluster::{free_link_addrs, free_tcp_addrs, local_cluster};
use fixit_load::spawn::SpawnedNode;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A chaos run's offer timeout: short, so cascades happen within a run.
const OFFER_TIMEOUT_MS: u64 = 2_000;

/// Longest cross-node call in a chaos cluster, in ms.
const CALL_TIMEOUT_MS: u64 = 1_500;

/// Rate limits of a chaos node: the harness is one address, and its admins deposit
/// for everyone; the run tests faults, not the limiter.
const RATE_PER_S: u32 = 1_000_000;

/// Tokens outlive a run by this much.
const TOKEN_TTL_S: u64 = 6 * 3_600;

/// An environment variable whose value, when set, is the nodes' log filter
/// (`RUST_LOG` of each `fixit node`; e.g. `warn,openraft=info` to see elections
/// in `nodes/<name>/node.log`).
pub(crate) const NODE_LOG_ENV: &str = "FIXIT_CHAOS_NODE_LOG";

/// Longest wait for one admin HTTP call.
const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One node of the cluster: its config and, while it runs, its process.
pub(crate) struct ChaosNode {
    pub(crate) name: String,
    pub(crate) config: NodeConfig,
    /// Where its `node.toml` and `node.log` are.
    dir: PathBuf,
    process: Option<SpawnedNode>,
}

impl ChaosNode {
    pub(crate) fn quic(&self) -> SocketAddr {
        self.config.server.quic_listen
    }

    fn http(&self) -> SocketAddr {
        self.config.server.http_listen
    }

    pub(crate) fn running(&self) -> bool {
        self.process.is_some()
    }
}

/// The cluster under test.
pub(crate) struct ChaosCluster {
    pub(crate) nodes: Vec<ChaosNode>,
    /// (from, to) → the proxy node `from` reaches node `to` through.
    proxies: BTreeMap<(String, String), FaultProxy>,
    binary: PathBuf,
    pub(crate) regions: Regions,
    pub(crate) tokens: TokenKey,
    http: reqwest::Client,
    /// Processes killed with SIGKILL and restarted, for the report.
    pub(crate) kills: u64,
    pub(crate) restarts: u64,
    /// Data dirs deleted (disk-loss), for the report.
    pub(crate) disks_lost: u64,
    /// Replicas of each wallet bucket (1: not replicated).
    pub(crate) replication_factor: u32,
    /// Wallet buckets (shards when replicated).
    pub(crate) wallet_buckets: u32,
}

impl ChaosCluster {
    /// Makes certificates and configs under `dir`, puts a proxy (seeded from
    /// `seed`) on each link direction, and starts every node with wallets in
    /// `replication_factor` replicas.
    pub(crate) async fn start(
        binary: &Path,
        dir: &Path,
        seed: u64,
        replication_factor: u32,
    ) -> anyhow::Result<Self> {
        let regions_map = fixit_load::city::regions();
        let mut configs = local_cluster(dir, &regions_map).context("configuring the cluster")?;
        let client_ports = free_link_addrs(configs.len())?;
        let http_ports = free_tcp_addrs(configs.len())?;
        let links: BTreeMap<String, SocketAddr> = configs
            .iter()
            .filter_map(|config| {
                let cluster = config.cluster.as_ref()?;
                Some((cluster.name.clone(), cluster.listen))
            })
            .collect();
        let mut proxies = BTreeMap::new();
        for (index, config) in configs.iter_mut().enumerate() {
            let name = config.node.id.clone();
            config.server.quic_listen = client_ports[index];
            config.server.http_listen = http_ports[index];
            config.dispatch.offer_timeout_ms = OFFER_TIMEOUT_MS;
            config.rate_limits.address_per_s = RATE_PER_S;
            config.rate_limits.address_burst = RATE_PER_S;
            config.rate_limits.principal_per_s = RATE_PER_S;
            config.rate_limits.principal_burst = RATE_PER_S;
            let own = dir.join("nodes").join(&name);
            config.server.tls_cert_file = own.join("client-tls-cert.pem");
            config.server.tls_key_file = own.join("client-tls-key.pem");
            let cluster = config.cluster.as_mut().context("a cluster section")?;
            cluster.call_timeout_ms = CALL_TIMEOUT_MS;
            cluster.replication_factor = replication_factor;
            for (peer, addr) in cluster.seeds.iter_mut() {
                let proxy_seed =
                    seed ^ fixit_cluster::placement::rendezvous_weight(peer, index as u64);
                let proxy =
                    FaultProxy::start(ProxyConfig::new(links[peer], proxy_seed), Faults::default())
                        .await
                        .with_context(|| format!("proxy {name}→{peer}"))?;
                *addr = proxy.local_addr();
                proxies.insert((name.clone(), peer.clone()), proxy);
            }
        }
        let tokens = TokenKey::load_or_create(&configs[0].auth.secret_file)?;
        let wallet_buckets = configs[0]
            .cluster
            .as_ref()
            .map_or_else(fixit_actors::config::default_wallet_buckets, |cluster| {
                cluster.wallet_buckets
            });
        let nodes = configs
            .into_iter()
            .map(|config| ChaosNode {
                name: config.node.id.clone(),
                dir: dir.join("nodes").join(&config.node.id),
                config,
                process: None,
            })
            .collect();
        let mut cluster = ChaosCluster {
            nodes,
            proxies,
            binary: binary.to_owned(),
            regions: Regions::new(regions_map)?,
            tokens,
            http: reqwest::Client::builder()
                .timeout(ADMIN_CALL_TIMEOUT)
                .no_proxy()
                .build()?,
            kills: 0,
            restarts: 0,
            disks_lost: 0,
            replication_factor,
            wallet_buckets,
        };
        for index in 0..cluster.nodes.len() {
            cluster.start_node(index).await?;
        }
        Ok(cluster)
    }

    /// Node `index`'s HTTP bridge.
    pub(crate) fn http_addr(&self, index: usize) -> SocketAddr {
        self.nodes[index].http()
    }

    /// The harness's HTTP client (loopback only, a deadline per call).
    pub(crate) fn http_client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// A QUIC client of node `index`, as an admin.
    pub(crate) async fn admin_client(&self, index: usize) -> anyhow::Result<fixit_sdk::Client> {
        let node = &self.nodes[index];
        let connector =
            fixit_sdk::Connector::new(&node.config.server.tls_cert_file, "127.0.0.1:0".parse()?)?;
        let token = self.token(Principal {
            role: Role::Admin,
            sub: 0,
        });
        Ok(connector.connect(node.quic(), &token).await?)
    }

    /// Node names in order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.name.clone()).collect()
    }

    /// The index of node `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// A token for `principal`, valid for the run.
    pub(crate) fn token(&self, principal: Principal) -> String {
        self.tokens.issue(principal, now_s() + TOKEN_TTL_S)
    }

    /// The data dirs, for the checker.
    pub(crate) fn data_dirs(&self) -> Vec<NodeDir> {
        self.nodes
            .iter()
            .map(|node| NodeDir {
                name: node.name.clone(),
                dir: node.config.node.data_dir.clone(),
            })
            .collect()
    }

    /// Starts node `index` (again).
    pub(crate) async fn start_node(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        anyhow::ensure!(node.process.is_none(), "node {} runs already", node.name);
        std::fs::create_dir_all(&node.dir)?;
        // The nodes' log filter, when the run is being looked into.
        let filter = std::env::var(NODE_LOG_ENV).ok();
        let env: Vec<(&str, &str)> = filter.iter().map(|f| ("RUST_LOG", f.as_str())).collect();
        let process =
            SpawnedNode::start_with_env(&self.binary, node.config.clone(), &node.dir, &env)
                .await
                .with_context(|| format!("starting node {}", node.name))?;
        node.process = Some(process);
        Ok(())
    }

    /// `kill -9` node `index`.
    pub(crate) fn kill9(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        let mut process = node.process.take().context("the node is not running")?;
        process.kill9()?;
        self.kills += 1;
        Ok(())
    }

    /// Deletes the data dir of node `index`, which must be stopped (a lost disk).
    pub(crate) fn delete_data(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &self.nodes[index];
        anyhow::ensure!(node.process.is_none(), "node {} still runs", node.name);
        let dir = &node.config.node.data_dir;
        std::fs::remove_dir_all(dir).with_context(|| format!("deleting {}", dir.display()))?;
        self.disks_lost += 1;
        Ok(())
    }

    /// The running nodes that do not answer `/ready` (within the admin call
    /// limit): hung.
    pub(crate) async fn unanswering(&self) -> Vec<String> {
        let mut hung = Vec::new();
        for node in self.nodes.iter().filter(|node| node.running()) {
            let ready = self
                .http
                .get(format!("http://{}/ready", node.http()))
                .send()
                .await;
            if !ready.is_ok_and(|answer| answer.status().is_success()) {
                hung.push(node.name.clone());
            }
        }
        hung
    }

    /// Whether wallets are replicated.
    pub(crate) fn replicated(&self) -> bool {
        self.replication_factor > 1
    }

    /// The indexes of the running nodes other than `index`.
    pub(crate) fn others_running(&self, index: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|other| *other != index && self.nodes[*other].running())
            .collect()
    }

    /// `kill -9` node `index` because it stopped answering: not a fault injected.
    pub(crate) fn kill_hung(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        node.process
            .take()
            .context("the node is not running")?
            .kill9()?;
        Ok(())
    }

    /// SIGTERM node `index` and wait for its exit; whether it exited cleanly.
    pub(crate) async fn stop_node(&mut self, index: usize) -> anyhow::Result<bool> {
        let node = &mut self.nodes[index];
        let Some(mut process) = node.process.take() else {
            return Ok(true);
        };
        Ok(process.stop().await?.success())
    }

    /// Stops node `index` (SIGTERM) and starts it again.
    pub(crate) async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        self.stop_node(index).await?;
        self.start_node(index).await?;
        self.restarts += 1;
        Ok(())
    }

    /// Cuts every link into and out of node `name` (both directions of the four
    /// proxies touching it).
    pub(crate) fn partition(&self, name: &str) {
        for ((from, to), proxy) in &self.proxies {
            if from == name || to == name {
                proxy.partition();
            }
        }
    }

    /// Every proxy back to no fault.
    pub(crate) fn heal_all(&self) -> anyhow::Result<()> {
        for proxy in self.proxies.values() {
            proxy.set(Faults::default())?;
            proxy.heal();
        }
        Ok(())
    }

    /// `faults` on every link direction.
    pub(crate) fn degrade_all(&self, faults: Faults) -> anyhow::Result<()> {
        for proxy in self.proxies.values() {
            proxy.set(faults)?;
        }
        Ok(())
    }

    /// Datagrams the proxies dropped (loss, cuts), by kind.
    pub(crate) fn proxy_faults(&self) -> BTreeMap<String, u64> {
        let mut faults = BTreeMap::new();
        for proxy in self.proxies.values() {
            let counts = proxy.counts();
            for direction in [counts.to_upstream, counts.from_upstream] {
                *faults.entry("proxy_datagram_lost".into()).or_default() += direction.dropped_loss;
                *faults.entry("proxy_datagram_cut".into()).or_default() += direction.dropped_cut;
            }
        }
        faults.retain(|_, count| *count > 0);
        faults
    }

    /// Arms failpoints (name → `fail` actions, or "off") on every running node.
    pub(crate) async fn arm(&self, failpoints: &BTreeMap<String, String>) -> anyhow::Result<()> {
        if failpoints.is_empty() {
            return Ok(());
        }
        let body = serde_json::json!({ "failpoints": failpoints });
        for node in self.nodes.iter().filter(|node| node.running()) {
            let answer = match self
                .admin(node, reqwest::Method::PUT)
                .json(&body)
                .send()
                .await
            {
                // A node that does not answer in time is hung: the run goes on
                // and says so (`nodes_answering`) rather than stop without a report.
                Err(error) if error.is_timeout() => {
                    tracing::warn!(node = %node.name, %error, "arming failpoints: no answer");
                    continue;
                }
                answer => {
                    answer.with_context(|| format!("arming failpoints on node {}", node.name))?
                }
            };
            let status = answer.status();
            anyhow::ensure!(
                status.is_success(),
                "node {} refused the failpoints: {status} {}",
                node.name,
                answer.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Faults injected so far by failpoint name, summed over the running nodes.
    pub(crate) async fn injected(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut injected = BTreeMap::new();
        for node in self.nodes.iter().filter(|node| node.running()) {
            let answer: serde_json::Value = self
                .admin(node, reqwest::Method::GET)
                .send()
                .await
                .with_context(|| format!("reading failpoints of node {}", node.name))?
                .error_for_status()?
                .json()
                .await?;
            if let Some(counts) = answer["injected"].as_object() {
                for (name, count) in counts {
                    *injected.entry(name.clone()).or_default() += count.as_u64().unwrap_or(0);
                }
            }
        }
        Ok(injected)
    }

    fn admin(&self, node: &ChaosNode, method: reqwest::Method) -> reqwest::RequestBuilder {
        let token = self.token(Principal {
            role: Role::Admin,
            sub: 0,
        });
        self.http
            .request(
                method,
                format!("http://{}/v1/admin/failpoints", node.http()),
            )
            .bearer_auth(token)
    }

    /// SIGTERMs every running node — in turn, or at once when wallets are
    /// replicated (so that an election among the last nodes running writes as
    /// little as possible to shards' logs after the first node stopped) — and
    /// waits; whether all exited cleanly. The proxies stop.
    pub(crate) async fn stop_all(&mut self) -> anyhow::Result<bool> {
        let mut clean = true;
        if self.replicated() {
            let mut processes: Vec<SpawnedNode> = self
                .nodes
                .iter_mut()
                .filter_map(|node| node.process.take())
                .collect();
            let stops = processes.iter_mut().map(|process| process.stop());
            for stopped in futures::future::join_all(stops).await {
                clean &= stopped?.success();
            }
        }
        for index in 0..self.nodes.len() {
            clean &= self.stop_node(index).await?;
        }
        for proxy in std::mem::take(&mut self.proxies).into_values() {
            proxy.stop().await;
        }
        Ok(clean)
    }
}
