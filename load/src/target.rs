//! What the load runs against: a node it spawns (`--spawn-node`), a running node
//! (`--config FILE`) or a running cluster (`--cluster DIR`, every `*.toml` in it):
//! each node's QUIC and HTTP addresses and pinned certificate, the regions that
//! place providers, and the key that signs the simulated users' tokens.

use super::spawn::SpawnedNode;
use super::LoadArgs;
use anyhow::Context;
use fixit_actors::config::NodeConfig;
use fixit_auth::{now_s, Principal, TokenKey};
use fixit_cluster::Regions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Connections (and WebSockets) beyond the simulated users a spawned node allows
/// (admins, checks).
const CONNECTIONS_MARGIN: u32 = 1_000;

/// Rate limits of a spawned node: high enough that one generator on one address
/// is never limited, so the run measures the node, not its limiter.
const SPAWNED_ADDRESS_PER_S: u32 = 1_000_000;
const SPAWNED_PRINCIPAL_PER_S: u32 = 100_000;

/// sled page cache of a spawned node (shipped: 256 MiB): sled's cache lives in the
/// node's heap, so every cached byte counts against the node's RSS target, while
/// reads past it are served from the OS page cache, which does not.
const SPAWNED_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Idle time after which a spawned node's entity actors stop (shipped: 300 s). A
/// finished job's actor otherwise stays resident for five minutes: at 200
/// bookings/s that is 60 k live job actors at steady state. An actor that stopped
/// is reloaded from storage on its next command.
const SPAWNED_ENTITY_IDLE_MS: u64 = 30_000;

/// Tokens outlive the run by this much.
const TOKEN_SLACK_S: u64 = 3_600;

/// One node under load.
pub(crate) struct NodeEndpoint {
    pub(crate) name: String,
    pub(crate) quic: SocketAddr,
    pub(crate) http: SocketAddr,
    pub(crate) cert: PathBuf,
}

/// How the target was chosen, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    SpawnNode,
    Config,
    Cluster,
}

/// The nodes under load.
pub(crate) struct Target {
    pub(crate) mode: Mode,
    pub(crate) nodes: Vec<NodeEndpoint>,
    regions: Option<Regions>,
    tokens: TokenKey,
    token_ttl_s: u64,
    /// The child node of `--spawn-node`, for the caller to take and stop.
    pub(crate) spawned: Option<Spawned>,
}

/// A spawned node and its temporary directory: the node is stopped (SIGTERM) when
/// this is dropped, then the directory is removed.
pub(crate) struct Spawned {
    pub(crate) node: SpawnedNode,
    _dir: tempfile::TempDir,
}

impl Target {
    /// Opens the target the arguments name (exactly one of the three modes).
    pub(crate) async fn open(args: &LoadArgs, run_s: u64) -> anyhow::Result<Target> {
        match (&args.config, &args.cluster, args.spawn_node) {
            (None, None, true) => Target::spawn(args, run_s).await,
            (Some(file), None, false) => {
                Target::from_configs(Mode::Config, std::slice::from_ref(file), run_s)
            }
            (None, Some(dir), false) => {
                Target::from_configs(Mode::Cluster, &cluster_files(dir)?, run_s)
            }
            _ => anyhow::bail!("name exactly one of --spawn-node, --config FILE, --cluster DIR"),
        }
    }

    async fn spawn(args: &LoadArgs, run_s: u64) -> anyhow::Result<Target> {
        let dir = tempfile::tempdir().context("making a temporary dir for the node")?;
        let config = spawned_config(&dir.path().join("data"), args);
        let binary = std::env::current_exe().context("locating the fixit binary")?;
        let spawned = SpawnedNode::start(&binary, config, dir.path()).await?;
        let node = NodeEndpoint {
            name: spawned.config.node.id.clone(),
            quic: spawned.quic,
            http: spawned.http,
            cert: spawned.config.server.tls_cert_file.clone(),
        };
        let tokens = TokenKey::load_or_create(&spawned.config.auth.secret_file)?;
        let token_ttl_s = (run_s + TOKEN_SLACK_S).min(spawned.config.auth.token_ttl_max_s);
        Ok(Target {
            mode: Mode::SpawnNode,
            nodes: vec![node],
            regions: None,
            tokens,
            token_ttl_s,
            spawned: Some(Spawned {
                node: spawned,
                _dir: dir,
            }),
        })
    }

    fn from_configs(mode: Mode, files: &[PathBuf], run_s: u64) -> anyhow::Result<Target> {
        let configs: Vec<NodeConfig> = files
            .iter()
            .map(|file| NodeConfig::load(file))
            .collect::<Result<_, _>>()?;
        let first = configs.first().context("no node config")?;
        let regions = match (&first.cluster, mode) {
            (Some(cluster), Mode::Cluster) => Some(Regions::new(cluster.regions.clone())?),
            _ => None,
        };
        let secret = &first.auth.secret_file;
        anyhow::ensure!(
            configs.iter().all(|c| c.auth.secret_file == *secret),
            "the nodes do not share one token secret file"
        );
        anyhow::ensure!(
            secret.exists(),
            "{} does not exist: start the node(s) first",
            secret.display()
        );
        let tokens = TokenKey::load_or_create(secret)?;
        let token_ttl_s = (run_s + TOKEN_SLACK_S).min(first.auth.token_ttl_max_s);
        let nodes = configs
            .iter()
            .map(|config| NodeEndpoint {
                name: config
                    .cluster
                    .as_ref()
                    .map_or_else(|| config.node.id.clone(), |c| c.name.clone()),
                quic: config.server.quic_listen,
                http: config.server.http_listen,
                cert: config.server.tls_cert_file.clone(),
            })
            .collect();
        Ok(Target {
            mode,
            nodes,
            regions,
            tokens,
            token_ttl_s,
            spawned: None,
        })
    }

    /// A token for `principal`, valid past the end of the run.
    pub(crate) fn token(&self, principal: Principal) -> String {
        self.tokens.issue(principal, now_s() + self.token_ttl_s)
    }

    /// The node (index) owning a position; on a single node, that node. `None`
    /// when no region covers it.
    pub(crate) fn owner_of(&self, at: (f64, f64)) -> Option<usize> {
        let Some(regions) = &self.regions else {
            return Some(0);
        };
        let owner = regions.owner_of(at.0, at.1).ok()??;
        self.nodes.iter().position(|node| node.name == owner)
    }
}

/// Every `*.toml` of a cluster directory, sorted.
fn cluster_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no *.toml in {}", dir.display());
    Ok(files)
}

/// The config of a spawned node: the single-node defaults on `data_dir`, listeners
/// on free loopback ports, connections and in-flight bounds sized for the users,
/// rate limits raised so the run measures the node rather than its limiter (the
/// generator is one address and the admins deposit for everyone), and a smaller
/// sled cache and shorter entity idle time so the node's memory holds its working
/// set rather than what it finished with (docs/PERFORMANCE.md, memory).
pub(crate) fn spawned_config(data_dir: &Path, args: &LoadArgs) -> NodeConfig {
    let mut config = NodeConfig::single_node(data_dir);
    config.node.id = "load-1".to_owned();
    config.server.quic_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.http_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let users = u32::try_from(args.customers + args.providers).unwrap_or(u32::MAX);
    let connections = users.saturating_add(CONNECTIONS_MARGIN).min(1_000_000);
    config.server.connections_max = connections.max(config.server.connections_max);
    config.server.websockets_max = connections.max(config.server.websockets_max);
    let inflight = connections.saturating_mul(2).min(10_000_000);
    config.server.requests_inflight_max = inflight.max(config.server.requests_inflight_max);
    config.limits.node_inflight_max = inflight.max(config.limits.node_inflight_max);
    config.rate_limits.address_per_s = SPAWNED_ADDRESS_PER_S;
    config.rate_limits.address_burst = SPAWNED_ADDRESS_PER_S;
    config.rate_limits.principal_per_s = SPAWNED_PRINCIPAL_PER_S;
    config.rate_limits.principal_burst = SPAWNED_PRINCIPAL_PER_S;
    config.storage.cache_bytes = SPAWNED_CACHE_BYTES;
    config.passivation.entity_idle_ms = SPAWNED_ENTITY_IDLE_MS;
    config
}
