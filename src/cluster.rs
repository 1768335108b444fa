//! A node's cluster links at start: its TLS identity, the link endpoint, and one
//! link per configured peer, connected at once and kept up in the background.
//! No command crosses them yet: every incoming call is refused.

use anyhow::Context;
use fixit_actors::clock::SharedClock;
use fixit_actors::config::ClusterSection;
use fixit_cluster::names::validate_node_name;
use fixit_cluster::{
    CallHandler, ClusterEndpoint, Envelope, LinkError, LinkLimits, NodeIdentity, PeerState, Peers,
    Regions,
};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

/// What an incoming call is told until cluster commands exist.
pub const NO_COMMANDS_YET: &str = "no cluster commands yet";

/// Refuses every call from another node: no command is served across nodes yet.
struct RefuseEveryCall;

impl CallHandler for RefuseEveryCall {
    async fn handle(&self, _from: &str, _envelope: Envelope) -> Result<Vec<u8>, LinkError> {
        Err(LinkError::Refused(NO_COMMANDS_YET.into()))
    }
}

/// This node's view of its cluster, for `GET /cluster`: its name and a way to
/// read its peers' links now (empty once the links are stopped).
#[derive(Clone)]
pub struct ClusterStatus {
    /// This node's cluster name.
    pub name: String,
    peers: Weak<Peers>,
}

impl ClusterStatus {
    /// Every configured peer and its link, sorted by name.
    pub fn peer_states(&self) -> Vec<PeerState> {
        self.peers
            .upgrade()
            .map(|peers| peers.peer_states())
            .unwrap_or_default()
    }
}

/// The running links of a node.
pub struct ClusterLinks {
    endpoint: ClusterEndpoint,
    peers: Arc<Peers>,
}

impl ClusterLinks {
    /// Loads the node's identity from `certs_dir`, binds `listen`, and starts
    /// connecting to every peer. Must be called inside a tokio runtime.
    pub fn start(section: &ClusterSection, clock: SharedClock) -> anyhow::Result<ClusterLinks> {
        validate_node_name(&section.name).context("cluster.name")?;
        for name in section.peers.keys() {
            validate_node_name(name).context("cluster.peers")?;
        }
        Regions::new(section.regions.clone()).context("cluster.regions")?;
        let identity = NodeIdentity::in_dir(&section.certs_dir, &section.name);
        let limits = LinkLimits {
            calls_per_peer_max: section.calls_per_peer_max,
            call_duration_max_ms: section.call_timeout_ms,
            ..LinkLimits::default()
        };
        let endpoint = ClusterEndpoint::bind(
            &identity,
            section.listen,
            limits,
            Arc::new(RefuseEveryCall),
            clock,
        )
        .with_context(|| format!("cluster link endpoint on {}", section.listen))?;
        let seed = seed_of(&section.name);
        let peers = Arc::new(Peers::new(&endpoint, section.peers.clone(), seed));
        peers.connect_all();
        Ok(ClusterLinks { endpoint, peers })
    }

    /// Where the link endpoint is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }

    /// A view for the HTTP bridge that does not keep the links alive.
    pub fn status(&self) -> ClusterStatus {
        ClusterStatus {
            name: self.endpoint.name().to_owned(),
            peers: Arc::downgrade(&self.peers),
        }
    }

    /// Stops reconnecting, closes every link and waits briefly for the closes.
    pub async fn stop(self) {
        let ClusterLinks { endpoint, peers } = self;
        drop(peers);
        endpoint.stop().await;
    }
}

/// The reconnect-jitter seed of node `name`: stable across restarts, different
/// per node so peers do not reconnect in step.
fn seed_of(name: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}
