//! One outgoing link per known peer — the seeds from the config and every
//! member membership learns of: connected on first use and kept up in the
//! background (keep-alive, idle timeout, reconnect with jittered backoff while
//! unreachable), following membership (a member declared down or left fails calls
//! at once; a new incarnation replaces the old connection at once; a peer that
//! connects in is reconnected to without waiting out the backoff), and calls over
//! it, bounded per peer and by each envelope's deadline.

mod exchange;
mod slot;

use crate::backoff::{self, SplitMix64};
use crate::error::LinkError;
use crate::link::{
    read_datagrams, ClusterEndpoint, Connector, LinkEvent, CLOSE_REPLACED, CLOSE_STOPPING,
};
use crate::membership::{MemberId, MemberStatus};
use crate::wire::{Envelope, Target};
use bytes::Bytes;
use fixit_actors::failpoints::{self, Fault};
use serde::Serialize;
pub(crate) use slot::name_hash;
use slot::Slot;
pub(crate) use slot::RAFT_CALLS_PER_PEER;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most peers one node keeps links to (seeds and learnt members together).
pub const PEERS_MAX: usize = 1_024;

/// A handshake under way is started over when the peer shows it is reachable
/// only after this long (so a burst of news does not restart it again and again).
const HANDSHAKE_RESTART_AFTER: Duration = Duration::from_millis(150);

/// How a peer's link is, for operators (`GET /cluster`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum LinkState {
    /// No call has needed the peer yet, so no connection was tried.
    Idle,
    /// Connected: calls go through.
    Up,
    /// A first connection attempt is under way.
    Connecting,
    /// Not connected; reconnect attempts continue in the background.
    Down {
        /// Since when the peer has been unreachable, in ms since the Unix epoch.
        since_ms: u64,
        /// The latest failure.
        last_error: String,
    },
}

/// A peer as membership sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Alive, suspect, down or left.
    pub status: MemberStatus,
    /// Its incarnation (changes on every start).
    pub incarnation: u64,
    /// Since when it has this status, in ms since the Unix epoch.
    pub since_ms: u64,
}

/// One peer's row in [`Peers::peer_states`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerState {
    /// The peer's node name.
    pub name: String,
    /// The address this node reaches it at.
    pub addr: SocketAddr,
    /// Its link.
    pub state: LinkState,
    /// Smoothed round-trip time while up, in ms.
    pub rtt_ms: Option<u64>,
    /// Its membership, once heard of (`None`: a seed not heard from yet).
    pub member: Option<MemberView>,
    /// The latest link failure, kept after the link recovers.
    pub last_error: Option<String>,
    /// When that failure was, in ms since the Unix epoch.
    pub last_error_ms: Option<u64>,
}

/// The links to every known peer. Dropping it stops the background reconnects
/// and closes the links it opened.
pub struct Peers {
    connector: Connector,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    /// Configured addresses: a seed is always reached where its config says.
    seeds: BTreeMap<String, SocketAddr>,
    /// The latest connection each peer opened to this node: membership
    /// datagrams go back on it while this node's own link is not up.
    inbound: std::sync::Mutex<BTreeMap<String, quinn::Connection>>,
    /// When each peer was last heard from: a membership datagram it sent, or a
    /// call it made (see [`Peers::heard_within`]).
    heard: std::sync::Mutex<BTreeMap<String, Instant>>,
    seed: u64,
    shutdown: watch::Sender<bool>,
}

impl Peers {
    /// Links over `endpoint`, first to the seeds `name → address` (this node's
    /// own name is skipped); members learnt later are added as they appear.
    /// `seed` drives the reconnect jitter; it is logged so a run can be repeated.
    pub fn new(
        endpoint: &ClusterEndpoint,
        seeds: BTreeMap<String, SocketAddr>,
        seed: u64,
    ) -> Peers {
        let connector = endpoint.connector();
        let seeds: BTreeMap<String, SocketAddr> = seeds
            .into_iter()
            .filter(|(name, _)| *name != connector.local_name)
            .collect();
        let calls_max = connector.limits.calls_per_peer_max as usize;
        let slots = seeds
            .iter()
            .map(|(name, addr)| {
                (
                    name.clone(),
                    Arc::new(Slot::new(name.clone(), *addr, calls_max)),
                )
            })
            .collect();
        tracing::info!(node = %connector.local_name, seed, "cluster seeds configured");
        Peers {
            connector,
            slots: RwLock::new(slots),
            seeds,
            inbound: std::sync::Mutex::new(BTreeMap::new()),
            heard: std::sync::Mutex::new(BTreeMap::new()),
            seed,
            shutdown: watch::channel(false).0,
        }
    }

    /// Starts connecting to every known peer now instead of on first use.
    pub fn connect_all(&self) {
        for slot in self.all_slots() {
            self.start(&slot);
        }
    }

    /// Every known peer and its link, sorted by name.
    pub fn peer_states(&self) -> Vec<PeerState> {
        self.all_slots().iter().map(|slot| slot.state()).collect()
    }

    /// Peer `name` (authenticated by its certificate) was just heard from.
    pub(crate) fn heard_from(&self, name: &str) {
        let now = Instant::now();
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = heard.get_mut(name) {
            *at = now;
        } else if heard.len() < PEERS_MAX {
            heard.insert(name.to_owned(), now);
        }
    }

    /// Whether calls to peer `name` go out at all: it is a known member that
    /// membership has not declared down or left.
    pub fn reachable(&self, name: &str) -> bool {
        self.slot(name)
            .is_some_and(|slot| slot.refuse_if_not_member().is_ok())
    }

    /// Whether peer `name` was heard from within `window`: whether this node
    /// is in contact with it (what a replica checks before it stands for
    /// election).
    pub fn heard_within(&self, name: &str, window: Duration) -> bool {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        heard.get(name).is_some_and(|at| at.elapsed() <= window)
    }

    /// The names of every known peer, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read_slots().keys().cloned().collect()
    }

    fn read_slots(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Slot>>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner())
    }

    fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.read_slots().values().cloned().collect()
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.read_slots().get(name).cloned()
    }

    /// The slot of member `id`, made on first sight (reached at its configured
    /// address if it is a seed, else at the one it advertises). `None` past
    /// [`PEERS_MAX`] or for this node.
    fn slot_for(&self, id: &MemberId) -> Option<Arc<Slot>> {
        if id.name == self.connector.local_name {
            return None;
        }
        if let Some(slot) = self.slot(&id.name) {
            return Some(slot);
        }
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= PEERS_MAX && !slots.contains_key(&id.name) {
            tracing::warn!(peer = %id.name, "cluster member ignored: at PEERS_MAX links");
            return None;
        }
        let addr = self.seeds.get(&id.name).copied().unwrap_or(id.addr);
        let calls_max = self.connector.limits.calls_per_peer_max as usize;
        let slot = slots
            .entry(id.name.clone())
            .or_insert_with(|| Arc::new(Slot::new(id.name.clone(), addr, calls_max)))
            .clone();
        Some(slot)
    }

    /// The node is stopping: reconnects end and every outgoing link closes
    /// saying so, so peers show this node left at once; membership's leave
    /// datagrams then go back on the peers' inbound connections.
    pub(crate) fn close_stopping(&self) {
        self.shutdown.send_replace(true);
        for slot in self.all_slots() {
            slot.close_stopping();
        }
    }

    /// Sends one membership datagram to `to` over this node's link to it (set up
    /// on demand; the datagram waits briefly for it), and with `twice` a copy over
    /// the connection `to` opened to this node.
    pub(crate) fn send_datagram(&self, to: &MemberId, bytes: Bytes, twice: bool) {
        let Some(slot) = self.slot_for(to) else {
            return;
        };
        self.start(&slot);
        let inbound = self
            .inbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&to.name)
            .filter(|connection| connection.close_reason().is_none())
            .cloned();
        if let Err(error) = slot.send_datagram(bytes, inbound, twice, self.connector.clock.now_ms())
        {
            tracing::debug!(peer = %to.name, %error, "membership datagram not sent");
        }
    }

    /// Membership's news of a member: its links follow. A member seen with a new
    /// incarnation gets a fresh connection at once; one that is alive again is
    /// reconnected to without waiting out the backoff.
    pub(crate) fn member_changed(&self, id: &MemberId, status: MemberStatus, since_ms: u64) {
        let Some(slot) = self.slot_for(id) else {
            return;
        };
        // A member that is not a seed is reached where it advertises, even after
        // a restart on another address.
        let moved = !self.seeds.contains_key(&id.name) && slot.set_addr(id.addr);
        if moved {
            slot.request_replace();
        }
        let stale = slot.set_member(id, status, since_ms) || moved;
        if stale || (status.reachable() && !slot.is_up()) {
            slot.wake.notify_one();
        }
        self.start(&slot);
    }

    /// Node `name` connected in over `connection`: it is reachable, so a link in
    /// backoff or stuck in a handshake retries now, and membership datagrams may
    /// go back on that connection meanwhile.
    pub(crate) fn connected_in(&self, name: &str, connection: quinn::Connection) {
        {
            let mut inbound = self.inbound.lock().unwrap_or_else(|e| e.into_inner());
            if inbound.len() < PEERS_MAX || inbound.contains_key(name) {
                inbound.insert(name.to_owned(), connection);
            }
        }
        if let Some(slot) = self.slot(name) {
            if !slot.is_up() {
                slot.wake.notify_one();
            }
        }
    }

    /// Sends `envelope` to `peer` (its `from` is set to this node) and waits for the
    /// reply until the envelope's deadline. A peer known to be down answers
    /// `Unavailable` at once; past `calls_per_peer_max` calls in flight, `Busy`.
    pub async fn call(&self, peer: &str, mut envelope: Envelope) -> Result<Vec<u8>, LinkError> {
        let slot = self.slot(peer).ok_or_else(|| LinkError::Unavailable {
            peer: peer.to_owned(),
            reason: "not a known member of the cluster".to_owned(),
        })?;
        slot.refuse_if_not_member()?;
        let remaining_ms = envelope
            .deadline_ms
            .saturating_sub(self.connector.clock.now_ms());
        if remaining_ms == 0 {
            return Err(LinkError::DeadlineExceeded);
        }
        let budget = match envelope.target {
            Target::Raft => &slot.raft_calls,
            _ => &slot.calls,
        };
        let _permit = budget
            .clone()
            .try_acquire_owned()
            .map_err(|_| LinkError::Busy {
                retry_after_ms: self.connector.limits.busy_retry_after_ms,
            })?;
        self.start(&slot);
        envelope.from.clone_from(&self.connector.local_name);
        match failpoints::check(failpoints::LINK_SEND, &self.connector.local_name) {
            Some(Fault::Drop) => {
                return Err(LinkError::Unavailable {
                    peer: peer.to_owned(),
                    reason: "failpoint: the call was dropped before sending".into(),
                })
            }
            Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
            _ => {}
        }
        let frame_bytes_max = self.connector.limits.frame_bytes_max as usize;
        let call = async {
            let connection = slot.connection().await?;
            exchange::exchange(&connection, &envelope, frame_bytes_max, peer).await
        };
        tokio::time::timeout(Duration::from_millis(remaining_ms), call)
            .await
            .unwrap_or(Err(LinkError::DeadlineExceeded))
    }

    /// Spawns the peer's link task once.
    fn start(&self, slot: &Arc<Slot>) {
        if slot.mark_started() {
            let rng = SplitMix64::new(self.seed ^ name_hash(&slot.name));
            let task = maintain(
                slot.clone(),
                self.connector.clone(),
                rng,
                self.shutdown.subscribe(),
            );
            tokio::spawn(task);
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Keeps one peer's link up until shutdown: connect, wait for the link to die
/// (or for membership to ask for a fresh one), back off (jittered, capped at
/// `backoff.max_ms`; cut short when the peer shows it is reachable), reconnect.
async fn maintain(
    slot: Arc<Slot>,
    connector: Connector,
    mut rng: SplitMix64,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    // Bounded by the `Peers`' life: every wait below also ends at shutdown.
    while !*shutdown.borrow() {
        slot.set_connecting();
        let started = tokio::time::Instant::now();
        let connecting = connector.connect(&slot.name, slot.addr());
        tokio::pin!(connecting);
        // Bounded by the connect timeout.
        let attempt = loop {
            tokio::select! {
                attempt = &mut connecting => break Some(attempt),
                // The peer showed it is reachable: a handshake that has waited a
                // while (on a retransmission to a dead process) starts over.
                _ = slot.wake.notified() => {
                    if started.elapsed() >= HANDSHAKE_RESTART_AFTER {
                        break None;
                    }
                }
                _ = shutdown.changed() => return,
            }
        };
        let Some(attempt) = attempt else {
            continue;
        };
        match attempt {
            Ok(connection) => {
                failures = 0;
                for datagram in slot.set_up(connection.clone(), connector.clock.now_ms()) {
                    let _ = connection.send_datagram(datagram);
                }
                tokio::spawn(read_datagrams(
                    connection.clone(),
                    slot.name.as_str().into(),
                    connector.events.clone(),
                ));
                tracing::info!(peer = %slot.name, "cluster link up");
                match hold(&slot, &connection, &mut shutdown).await {
                    Held::Shutdown => {
                        connection.close(quinn::VarInt::from_u32(CLOSE_STOPPING), b"peers dropped");
                        return;
                    }
                    Held::Replaced => {
                        connection
                            .close(quinn::VarInt::from_u32(CLOSE_REPLACED), b"peer restarted");
                        slot.note_error(
                            connector.clock.now_ms(),
                            "replaced: the peer restarted".into(),
                        );
                        tracing::info!(peer = %slot.name, "cluster link replaced: new incarnation");
                        continue;
                    }
                    Held::Closed(reason) => {
                        if is_stopping(&reason) {
                            connector.report(LinkEvent::Stopping {
                                from: slot.name.as_str().into(),
                            });
                        }
                        slot.set_down(connector.clock.now_ms(), format!("link lost: {reason}"));
                    }
                }
            }
            Err(reason) => slot.set_down(connector.clock.now_ms(), reason),
        }
        failures = failures.saturating_add(1);
        let delay_ms = backoff::delay_ms(connector.limits.backoff, failures, rng.next_u64());
        tracing::info!(peer = %slot.name, failures, delay_ms, "cluster link down; reconnecting after backoff");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
            _ = slot.wake.notified() => {
                failures = 0;
                tracing::info!(peer = %slot.name, "cluster peer reachable again; reconnecting now");
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// How holding a connection ended.
enum Held {
    Shutdown,
    /// Membership saw a newer incarnation than the one connected to.
    Replaced,
    Closed(quinn::ConnectionError),
}

async fn hold(
    slot: &Slot,
    connection: &quinn::Connection,
    shutdown: &mut watch::Receiver<bool>,
) -> Held {
    // Bounded by the connection's life (its idle timeout) and shutdown.
    loop {
        tokio::select! {
            reason = connection.closed() => return Held::Closed(reason),
            _ = slot.wake.notified() => {
                if slot.take_replace() {
                    return Held::Replaced;
                }
            }
            _ = shutdown.changed() => return Held::Shutdown,
        }
    }
}

/// Whether a link closed because the peer said it is stopping.
pub(crate) fn is_stopping(reason: &quinn::ConnectionError) -> bool {
    matches!(reason, quinn::ConnectionError::ApplicationClosed(close)
        if close.error_code == quinn::VarInt::from_u32(CLOSE_STOPPING))
}
