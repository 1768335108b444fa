//! One peer's shared link state: the current connection (if any), whether the
//! peer is known down (by its link or by membership), datagrams waiting for a
//! connection, and its call bound.

use super::{LinkState, MemberView, PeerState};
use crate::error::LinkError;
use crate::membership::{MemberId, MemberStatus};
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify, Semaphore};

/// Datagrams kept while a peer's link is being set up; older ones are dropped.
const PENDING_DATAGRAMS_MAX: usize = 32;

/// A datagram that waited longer than this for a connection is stale, in ms.
const PENDING_DATAGRAM_AGE_MAX_MS: u64 = 1_000;

/// The link as the background task last saw it, and the peer as membership sees it.
#[derive(Clone, Debug, Default)]
struct Link {
    connection: Option<quinn::Connection>,
    connecting: bool,
    /// Since when and why the peer is unreachable; `None` until a failure.
    down: Option<(u64, String)>,
    /// The member's identity and status, once membership has heard of it.
    member: Option<(MemberId, MemberStatus, u64)>,
    /// The incarnation the current connection was opened to (0: unknown).
    connected_incarnation: u64,
    /// Membership saw a new incarnation after the current connection was opened.
    replace: bool,
}

/// Raft messages that may be in flight to one peer (several shards, each with
/// a few appends or a snapshot chunk outstanding).
pub(crate) const RAFT_CALLS_PER_PEER: usize = 64;

/// One peer.
pub(super) struct Slot {
    pub(super) name: String,
    /// Where the peer is reached (a non-seed member may move on restart).
    addr: Mutex<SocketAddr>,
    /// Calls in flight to this peer.
    pub(super) calls: Arc<Semaphore>,
    /// Raft messages in flight to this peer: a budget of their own, so client
    /// traffic filling `calls` never starves heartbeats into a false election.
    pub(super) raft_calls: Arc<Semaphore>,
    link: watch::Sender<Link>,
    started: AtomicBool,
    /// Wakes the link task: reconnect now (backoff skipped), or replace a
    /// connection opened to an older incarnation.
    pub(super) wake: Notify,
    pending: Mutex<VecDeque<(u64, Bytes)>>,
    /// The latest link failure, kept after recovery: (ms since the epoch, why).
    last_error: Mutex<Option<(u64, String)>>,
}

impl Slot {
    pub(super) fn new(name: String, addr: SocketAddr, calls_max: usize) -> Slot {
        Slot {
            name,
            addr: Mutex::new(addr),
            calls: Arc::new(Semaphore::new(calls_max)),
            raft_calls: Arc::new(Semaphore::new(RAFT_CALLS_PER_PEER)),
            link: watch::channel(Link::default()).0,
            started: AtomicBool::new(false),
            wake: Notify::new(),
            pending: Mutex::new(VecDeque::new()),
            last_error: Mutex::new(None),
        }
    }

    /// Where the peer is reached now.
    pub(super) fn addr(&self) -> SocketAddr {
        *self.addr.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer is reached at `addr` from now on; whether that changed anything.
    pub(super) fn set_addr(&self, addr: SocketAddr) -> bool {
        let mut current = self.addr.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *current != addr;
        *current = addr;
        changed
    }

    /// Records a link failure to show, without marking the peer unreachable.
    pub(super) fn note_error(&self, now_ms: u64, reason: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some((now_ms, reason));
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

    /// The link is up; returns the datagrams that waited for it (fresh ones only).
    pub(super) fn set_up(&self, connection: quinn::Connection, now_ms: u64) -> Vec<Bytes> {
        // Under the pending lock, so a datagram queued concurrently is either
        // drained here or sees the connection.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.link.send_modify(|link| {
            link.connected_incarnation =
                link.member.as_ref().map_or(0, |(id, _, _)| id.incarnation);
            link.connection = Some(connection);
            link.connecting = false;
            link.down = None;
            link.replace = false;
        });
        pending
            .drain(..)
            .filter(|(queued_ms, _)| {
                now_ms.saturating_sub(*queued_ms) <= PENDING_DATAGRAM_AGE_MAX_MS
            })
            .map(|(_, bytes)| bytes)
            .collect()
    }

    /// Records a failure; a peer already down keeps its first `since_ms`.
    pub(super) fn set_down(&self, now_ms: u64, reason: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some((now_ms, reason.clone()));
        self.link.send_modify(|link| {
            let since_ms = link.down.as_ref().map_or(now_ms, |(since_ms, _)| *since_ms);
            link.connection = None;
            link.connecting = false;
            link.down = Some((since_ms, reason));
        });
    }

    /// Membership's news of this peer. Returns whether the current connection was
    /// opened to an older incarnation (the peer restarted: replace it).
    pub(super) fn set_member(&self, id: &MemberId, status: MemberStatus, since_ms: u64) -> bool {
        let mut stale = false;
        self.link.send_modify(|link| {
            let known = link
                .member
                .as_ref()
                .map_or(0, |(known, _, _)| known.incarnation);
            stale = link.connection.is_some()
                && known != 0
                && id.incarnation != known
                && link.connected_incarnation != id.incarnation;
            link.member = Some((id.clone(), status, since_ms));
            if stale {
                drop_for_replacement(link);
            }
        });
        stale
    }

    /// The current connection goes to the wrong place (the peer moved): it is
    /// replaced.
    pub(super) fn request_replace(&self) {
        self.link.send_modify(|link| {
            if link.connection.is_some() {
                drop_for_replacement(link);
            }
        });
    }

    /// Whether membership asked for the current connection to be replaced (and
    /// clears the request).
    pub(super) fn take_replace(&self) -> bool {
        let mut replace = false;
        self.link.send_if_modified(|link| {
            replace = std::mem::take(&mut link.replace);
            false
        });
        replace
    }

    /// Closes the link saying this node is stopping (the peer shows it left at
    /// once); membership datagrams then go on the peer's inbound connection.
    pub(super) fn close_stopping(&self) {
        self.link.send_modify(|link| {
            if let Some(connection) = link.connection.take() {
                connection.close(
                    quinn::VarInt::from_u32(crate::link::CLOSE_STOPPING),
                    b"node stopping",
                );
            }
        });
    }

    /// Whether the link is connected.
    pub(super) fn is_up(&self) -> bool {
        self.link.borrow().connection.is_some()
    }

    /// Sends a membership datagram now — over this node's link and, with `twice`,
    /// a copy over the peer's `inbound` connection too (another connection puts
    /// it in another packet, so the two are lost independently); over whichever
    /// of the two is open — or keeps it until the link is up.
    pub(super) fn send_datagram(
        &self,
        bytes: Bytes,
        inbound: Option<quinn::Connection>,
        twice: bool,
        now_ms: u64,
    ) -> Result<(), String> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let open = |connection: &quinn::Connection| connection.close_reason().is_none();
        let own = self.link.borrow().connection.clone().filter(open);
        let send = |connection: quinn::Connection, bytes: Bytes| {
            connection
                .send_datagram(bytes)
                .map_err(|error| error.to_string())
        };
        match (own, inbound) {
            (Some(own), Some(inbound)) if twice => {
                let copy = send(inbound, bytes.clone());
                send(own, bytes).and(copy)
            }
            (Some(connection), _) | (None, Some(connection)) => send(connection, bytes),
            (None, None) => {
                if pending.len() >= PENDING_DATAGRAMS_MAX {
                    pending.pop_front();
                }
                pending.push_back((now_ms, bytes));
                Ok(())
            }
        }
    }

    /// The live connection; `Unavailable` at once if the peer is declared down or
    /// left, or its link is down. Only a first connection attempt is waited for
    /// (the caller bounds the wait).
    pub(super) async fn connection(&self) -> Result<quinn::Connection, LinkError> {
        let mut seen = self.link.subscribe();
        let link = seen
            .wait_for(|link| {
                link.connection.is_some() || link.down.is_some() || !member_reachable(link)
            })
            .await
            .map_err(|_| self.unavailable("link task ended".to_owned()))?;
        if let Some((_, status, since_ms)) =
            link.member.as_ref().filter(|_| !member_reachable(&link))
        {
            return Err(self.unavailable(format!(
                "declared {} by membership since {since_ms} ms",
                status.label()
            )));
        }
        match (&link.connection, &link.down) {
            (Some(connection), _) => Ok(connection.clone()),
            (None, Some((_, reason))) => Err(self.unavailable(reason.clone())),
            (None, None) => Err(self.unavailable("not connected".to_owned())),
        }
    }

    /// `Unavailable` at once, without waiting, if membership says the peer is
    /// down or left.
    pub(super) fn refuse_if_not_member(&self) -> Result<(), LinkError> {
        let link = self.link.borrow();
        match &link.member {
            Some((_, status, since_ms)) if !status.reachable() => Err(self.unavailable(format!(
                "declared {} by membership since {since_ms} ms",
                status.label()
            ))),
            _ => Ok(()),
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
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        PeerState {
            name: self.name.clone(),
            addr: self.addr(),
            state,
            rtt_ms: link
                .connection
                .as_ref()
                .map(|connection| connection.rtt().as_millis() as u64),
            member: link
                .member
                .as_ref()
                .map(|(id, status, since_ms)| MemberView {
                    status: *status,
                    incarnation: id.incarnation,
                    since_ms: *since_ms,
                }),
            last_error_ms: last_error.as_ref().map(|(at_ms, _)| *at_ms),
            last_error: last_error.map(|(_, reason)| reason),
        }
    }
}

/// Nothing more goes out on a connection to a dead process or an old address:
/// datagrams take the peer's inbound connection and calls wait (within their
/// deadline) for the fresh one the link task opens.
fn drop_for_replacement(link: &mut Link) {
    link.connection = None;
    link.connecting = true;
    link.replace = true;
}

fn member_reachable(link: &Link) -> bool {
    link.member
        .as_ref()
        .is_none_or(|(_, status, _)| status.reachable())
}

/// FNV-1a 64 of a peer name: mixes the name into the jitter seed so peers that
/// fail together draw different delays.
pub(crate) fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
