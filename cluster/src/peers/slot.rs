//! One peer's shared link state: the current connection (if any), whether the
//! peer is known down, and its call bound.

use super::{LinkState, PeerState};
use crate::error::LinkError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};

/// The link as the background task last saw it.
#[derive(Clone, Debug, Default)]
struct Link {
    connection: Option<quinn::Connection>,
    connecting: bool,
    /// Since when and why the peer is unreachable; `None` until a failure.
    down: Option<(u64, String)>,
}

/// One configured peer.
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) addr: SocketAddr,
    /// Calls in flight to this peer.
    pub(super) calls: Arc<Semaphore>,
    link: watch::Sender<Link>,
    started: AtomicBool,
}

impl Slot {
    pub(super) fn new(name: String, addr: SocketAddr, calls_max: usize) -> Slot {
        Slot {
            name,
            addr,
            calls: Arc::new(Semaphore::new(calls_max)),
            link: watch::channel(Link::default()).0,
            started: AtomicBool::new(false),
        }
    }

    /// True exactly once: for the caller that must start the link task.
    pub(super) fn mark_started(&self) -> bool {
        !self.started.swap(true, Ordering::SeqCst)
    }

    pub(super) fn set_connecting(&self) {
        self.link.send_modify(|link| {
            link.connection = None;
            link.connecting = true;
        });
    }

    pub(super) fn set_up(&self, connection: quinn::Connection) {
        self.link.send_replace(Link {
            connection: Some(connection),
            connecting: false,
            down: None,
        });
    }

    /// Records a failure; a peer already down keeps its first `since_ms`.
    pub(super) fn set_down(&self, now_ms: u64, reason: String) {
        self.link.send_modify(|link| {
            let since_ms = link.down.as_ref().map_or(now_ms, |(since_ms, _)| *since_ms);
            link.connection = None;
            link.connecting = false;
            link.down = Some((since_ms, reason));
        });
    }

    /// The live connection; `Unavailable` at once if the peer is known down. Only
    /// a first connection attempt is waited for (the caller bounds the wait).
    pub(super) async fn connection(&self) -> Result<quinn::Connection, LinkError> {
        let mut seen = self.link.subscribe();
        let link = seen
            .wait_for(|link| link.connection.is_some() || link.down.is_some())
            .await
            .map_err(|_| self.unavailable("link task ended".to_owned()))?;
        match (&link.connection, &link.down) {
            (Some(connection), _) => Ok(connection.clone()),
            (None, Some((_, reason))) => Err(self.unavailable(reason.clone())),
            (None, None) => Err(self.unavailable("not connected".to_owned())),
        }
    }

    pub(super) fn unavailable(&self, reason: String) -> LinkError {
        LinkError::Unavailable {
            peer: self.name.clone(),
            reason,
        }
    }

    pub(super) fn state(&self) -> PeerState {
        let link = self.link.borrow();
        let started = self.started.load(Ordering::SeqCst);
        let state = match (&link.connection, link.connecting, &link.down) {
            (Some(_), _, _) => LinkState::Up,
            (None, true, None) => LinkState::Connecting,
            (None, _, Some((since_ms, last_error))) => LinkState::Down {
                since_ms: *since_ms,
                last_error: last_error.clone(),
            },
            (None, false, None) if started => LinkState::Connecting,
            (None, false, None) => LinkState::Idle,
        };
        PeerState {
            name: self.name.clone(),
            addr: self.addr,
            state,
            rtt_ms: link
                .connection
                .as_ref()
                .map(|connection| connection.rtt().as_millis() as u64),
        }
    }
}

/// FNV-1a 64 of a peer name: mixes the name into the jitter seed so peers that
/// fail together draw different delays.
pub(super) fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
