//! The running links of a node in a cluster: its TLS identity, the link endpoint
//! serving peers' calls, membership, one link per known member, and outbox
//! delivery.

use super::outbox;
use super::peer_api::PeerHandler;
use super::router::{ClusterRouter, TrafficView};
use super::LocalApi;
use crate::membership::{self, MemberId, Membership, MembershipView};
use crate::shards::{ShardView, Shards, ViewDepth};
use crate::{ClusterEndpoint, ClusterError, LinkLimits, NodeIdentity, PeerState, Peers};
use fixit_actors::clock::SharedClock;
use fixit_actors::config::ClusterSection;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// This node's view of its cluster, for `GET /cluster`: its name and a way to
/// read its peers' links now (empty once the links are stopped).
#[derive(Clone)]
pub struct ClusterStatus {
    /// This node's cluster name.
    pub name: String,
    peers: Weak<Peers>,
    router: Weak<ClusterRouter>,
    membership: watch::Receiver<MembershipView>,
}

impl ClusterStatus {
    /// This node's membership identity and what it knows of the others.
    pub fn membership(&self) -> MembershipView {
        self.membership.borrow().clone()
    }

    /// Every known peer and its link, sorted by name.
    pub fn peer_states(&self) -> Vec<PeerState> {
        self.peers
            .upgrade()
            .map(|peers| peers.peer_states())
            .unwrap_or_default()
    }

    /// The wallet shards this node replicates, as it sees them (empty when
    /// wallets are not replicated or the node is gone).
    pub fn shards(&self, depth: ViewDepth) -> Vec<ShardView> {
        self.router
            .upgrade()
            .and_then(|router| router.shards())
            .map(|shards| shards.views(depth))
            .unwrap_or_default()
    }

    /// Cross-node traffic so far (zeros once the node is gone).
    pub fn traffic(&self) -> TrafficView {
        self.router
            .upgrade()
            .map(|router| router.traffic.view())
            .unwrap_or_default()
    }
}

/// The running links of a node.
pub struct ClusterLinks {
    endpoint: ClusterEndpoint,
    membership: Membership,
    peers: Arc<Peers>,
    router: Arc<ClusterRouter>,
    stop_delivery: watch::Sender<bool>,
    delivery: JoinHandle<()>,
    /// The settings anti-entropy task (stopped with the delivery).
    settings: JoinHandle<()>,
    /// The replicated wallet shards, when started.
    shards: Option<Arc<Shards>>,
}

impl ClusterLinks {
    /// Loads the node's identity from `certs_dir`, binds `listen` with `api` serving
    /// calls from peers, starts membership (announcing to the seeds) and
    /// connecting to the seeds, and starts delivering the outbox. Must be called
    /// inside a tokio runtime.
    pub fn start<A: LocalApi>(
        section: &ClusterSection,
        clock: SharedClock,
        router: Arc<ClusterRouter>,
        api: Arc<A>,
    ) -> Result<ClusterLinks, ClusterError> {
        let identity = NodeIdentity::in_dir(&section.certs_dir, &section.name);
        let limits = LinkLimits {
            calls_per_peer_max: section.calls_per_peer_max,
            // Room for the calls and for the Raft messages' own budget.
            streams_per_connection_max: section
                .calls_per_peer_max
                .saturating_add(crate::peers::RAFT_CALLS_PER_PEER as u32),
            call_duration_max_ms: section.call_timeout_ms,
            ..LinkLimits::default()
        };
        let handler = PeerHandler {
            api: api.clone(),
            router: router.clone(),
        };
        let endpoint = ClusterEndpoint::bind(
            &identity,
            section.listen,
            limits,
            Arc::new(handler),
            clock.clone(),
        )?;
        let seed = seed_of(&section.name);
        let peers = Arc::new(Peers::new(&endpoint, section.seeds.clone(), seed));
        peers.connect_all();
        router.attach(&peers);
        let me = MemberId {
            name: section.name.clone(),
            addr: section.advertise.unwrap_or(endpoint.local_addr()),
            // A new identity on every start, larger than the last one's.
            incarnation: clock.now_ms(),
            rejoins: 0,
        };
        let events = endpoint.take_events().ok_or_else(|| {
            ClusterError::InvalidConfig("the link endpoint's events were taken".into())
        })?;
        let membership = membership::start(
            me,
            &section.membership,
            &section.seeds,
            peers.clone(),
            events,
            clock,
        );
        let (stop_delivery, stopped) = watch::channel(false);
        let delivery = tokio::spawn(outbox::deliver(
            api.node().clone(),
            router.clone(),
            stopped.clone(),
        ));
        let settings = tokio::spawn(super::settings_sync::run(
            api.node().clone(),
            router.clone(),
            stopped,
        ));
        Ok(ClusterLinks {
            endpoint,
            membership,
            peers,
            router,
            stop_delivery,
            delivery,
            settings,
            shards: None,
        })
    }

    /// Starts the replicated wallet shards (replication factor > 1): their
    /// database in `data_dir/shards`, one Raft group per bucket replicated here,
    /// talking over these links.
    pub async fn start_shards(
        &mut self,
        section: &ClusterSection,
        data_dir: &std::path::Path,
        clock: SharedClock,
    ) -> Result<(), ClusterError> {
        if !self.router.wallets_replicated() || self.shards.is_some() {
            return Ok(());
        }
        let shards = Shards::start(section, data_dir, self.router.clone(), clock)
            .await
            .map_err(|error| ClusterError::InvalidConfig(format!("wallet shards: {error}")))?;
        self.shards = Some(shards);
        Ok(())
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
            router: Arc::downgrade(&self.router),
            membership: self.membership.view(),
        }
    }

    /// Closes every outgoing link saying "stopping" (peers show this node left
    /// at once), announces the leave through membership, stops delivering the
    /// outbox, closes the endpoint and waits briefly for the closes. Undelivered
    /// transfers stay in the outbox.
    pub async fn stop(self) {
        let ClusterLinks {
            endpoint,
            membership,
            peers,
            stop_delivery,
            delivery,
            settings,
            shards,
            ..
        } = self;
        if let Some(shards) = shards {
            shards.stop().await;
        }
        peers.close_stopping();
        membership.leave().await;
        stop_delivery.send_replace(true);
        let _ = delivery.await;
        let _ = settings.await;
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
