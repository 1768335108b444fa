//! One outgoing link per configured peer: connected on first use and kept up in
//! the background (keep-alive, idle timeout, reconnect with jittered backoff), and
//! calls over it, bounded per peer and by each envelope's deadline.

mod exchange;
mod slot;

use crate::backoff::{self, SplitMix64};
use crate::error::LinkError;
use crate::link::{ClusterEndpoint, Connector};
use crate::wire::Envelope;
use fixit_actors::failpoints::{self, Fault};
use serde::Serialize;
use slot::Slot;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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

/// One peer's row in [`Peers::peer_states`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerState {
    /// The peer's node name.
    pub name: String,
    /// Its configured address.
    pub addr: SocketAddr,
    /// Its link.
    pub state: LinkState,
    /// Smoothed round-trip time while up, in ms.
    pub rtt_ms: Option<u64>,
}

/// The links to every configured peer. Dropping it stops the background
/// reconnects and closes the links it opened.
pub struct Peers {
    connector: Connector,
    slots: BTreeMap<String, Arc<Slot>>,
    seed: u64,
    shutdown: watch::Sender<bool>,
}

impl Peers {
    /// Links over `endpoint` to the peers `name → address` (this node's own name
    /// is skipped). `seed` drives the reconnect jitter; it is logged so a run can be
    /// repeated.
    pub fn new(
        endpoint: &ClusterEndpoint,
        peers: BTreeMap<String, SocketAddr>,
        seed: u64,
    ) -> Peers {
        let connector = endpoint.connector();
        let calls_max = connector.limits.calls_per_peer_max as usize;
        let slots = peers
            .into_iter()
            .filter(|(name, _)| *name != connector.local_name)
            .map(|(name, addr)| (name.clone(), Arc::new(Slot::new(name, addr, calls_max))))
            .collect();
        tracing::info!(node = %connector.local_name, seed, "cluster peers configured");
        Peers {
            connector,
            slots,
            seed,
            shutdown: watch::channel(false).0,
        }
    }

    /// Starts connecting to every peer now instead of on first use.
    pub fn connect_all(&self) {
        for slot in self.slots.values() {
            self.start(slot);
        }
    }

    /// Every configured peer and its link, sorted by name.
    pub fn peer_states(&self) -> Vec<PeerState> {
        self.slots.values().map(|slot| slot.state()).collect()
    }

    /// Sends `envelope` to `peer` (its `from` is set to this node) and waits for the
    /// reply until the envelope's deadline. A peer known to be down answers
    /// `Unavailable` at once; past `calls_per_peer_max` calls in flight, `Busy`.
    pub async fn call(&self, peer: &str, mut envelope: Envelope) -> Result<Vec<u8>, LinkError> {
        let slot = self
            .slots
            .get(peer)
            .ok_or_else(|| LinkError::UnknownPeer(peer.to_owned()))?;
        let remaining_ms = envelope
            .deadline_ms
            .saturating_sub(self.connector.clock.now_ms());
        if remaining_ms == 0 {
            return Err(LinkError::DeadlineExceeded);
        }
        let _permit = slot
            .calls
            .clone()
            .try_acquire_owned()
            .map_err(|_| LinkError::Busy {
                retry_after_ms: self.connector.limits.busy_retry_after_ms,
            })?;
        self.start(slot);
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
            let rng = SplitMix64::new(self.seed ^ slot::name_hash(&slot.name));
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

/// Keeps one peer's link up until shutdown: connect, wait for the link to die,
/// back off (jittered, capped at `backoff.max_ms`), reconnect.
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
        let attempt = tokio::select! {
            attempt = connector.connect(&slot.name, slot.addr) => attempt,
            _ = shutdown.changed() => return,
        };
        match attempt {
            Ok(connection) => {
                failures = 0;
                slot.set_up(connection.clone());
                tracing::info!(peer = %slot.name, "cluster link up");
                let reason = tokio::select! {
                    reason = connection.closed() => reason.to_string(),
                    _ = shutdown.changed() => {
                        connection.close(quinn::VarInt::from_u32(crate::link::CLOSE_STOPPING), b"peers dropped");
                        return;
                    }
                };
                slot.set_down(connector.clock.now_ms(), format!("link lost: {reason}"));
            }
            Err(reason) => slot.set_down(connector.clock.now_ms(), reason),
        }
        failures = failures.saturating_add(1);
        let delay_ms = backoff::delay_ms(connector.limits.backoff, failures, rng.next_u64());
        tracing::info!(peer = %slot.name, failures, delay_ms, "cluster link down; reconnecting after backoff");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
