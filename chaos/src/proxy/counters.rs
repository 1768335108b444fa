//! What the proxy did to each datagram, counted per direction, for the chaos
//! report's `faults_injected`.

use crate::proxy::faults::Direction;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts for one direction. Once nothing is waiting in the delay queue,
/// `received = forwarded + dropped_loss + dropped_cut + dropped_overflow + send_failed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionCounts {
    /// Datagrams the proxy read in this direction.
    pub received: u64,
    /// Datagrams sent on (at once or after their delay).
    pub forwarded: u64,
    /// Datagrams put in the delay queue (each is later forwarded or cut).
    pub delayed: u64,
    /// Datagrams dropped by random loss.
    pub dropped_loss: u64,
    /// Datagrams dropped because their direction was cut, on arrival or when their
    /// delay ended.
    pub dropped_cut: u64,
    /// Datagrams dropped because a bound was reached: the delay queue was full, or
    /// (towards the upstream) a new client found the flow table full.
    pub dropped_overflow: u64,
    /// Datagrams whose send failed (an error from the operating system).
    pub send_failed: u64,
}

impl DirectionCounts {
    /// The faults this direction suffered: losses, cuts and delays (a delayed
    /// datagram that is then cut counts once for each).
    pub fn faults_injected(&self) -> u64 {
        self.dropped_loss + self.dropped_cut + self.delayed
    }
}

/// A snapshot of a proxy's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCounts {
    /// From clients towards the upstream.
    pub to_upstream: DirectionCounts,
    /// From the upstream back to clients.
    pub from_upstream: DirectionCounts,
    /// Client flows opened since the start.
    pub flows_opened: u64,
    /// Idle flows evicted to make room for new ones.
    pub flows_evicted: u64,
    /// Datagrams in the delay queue at the moment of the snapshot.
    pub delayed_waiting: u64,
}

impl ProxyCounts {
    /// The counts of one direction.
    pub fn direction(&self, direction: Direction) -> &DirectionCounts {
        match direction {
            Direction::ToUpstream => &self.to_upstream,
            Direction::FromUpstream => &self.from_upstream,
        }
    }

    /// All faults injected, both directions: losses, cuts and delays.
    pub fn faults_injected(&self) -> u64 {
        self.to_upstream.faults_injected() + self.from_upstream.faults_injected()
    }
}

/// One counted event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Received,
    Forwarded,
    Delayed,
    DroppedLoss,
    DroppedCut,
    DroppedOverflow,
    SendFailed,
}

#[derive(Default)]
struct DirectionCounters {
    received: AtomicU64,
    forwarded: AtomicU64,
    delayed: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_cut: AtomicU64,
    dropped_overflow: AtomicU64,
    send_failed: AtomicU64,
}

impl DirectionCounters {
    fn counter(&self, event: Event) -> &AtomicU64 {
        match event {
            Event::Received => &self.received,
            Event::Forwarded => &self.forwarded,
            Event::Delayed => &self.delayed,
            Event::DroppedLoss => &self.dropped_loss,
            Event::DroppedCut => &self.dropped_cut,
            Event::DroppedOverflow => &self.dropped_overflow,
            Event::SendFailed => &self.send_failed,
        }
    }

    fn snapshot(&self) -> DirectionCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        DirectionCounts {
            received: read(&self.received),
            forwarded: read(&self.forwarded),
            delayed: read(&self.delayed),
            dropped_loss: read(&self.dropped_loss),
            dropped_cut: read(&self.dropped_cut),
            dropped_overflow: read(&self.dropped_overflow),
            send_failed: read(&self.send_failed),
        }
    }
}

/// The live counters, shared by the proxy's tasks.
#[derive(Default)]
pub(crate) struct Counters {
    to_upstream: DirectionCounters,
    from_upstream: DirectionCounters,
    flows_opened: AtomicU64,
    flows_evicted: AtomicU64,
}

impl Counters {
    /// Counts one `event` in `direction`.
    pub(crate) fn record(&self, direction: Direction, event: Event) {
        let counters = match direction {
            Direction::ToUpstream => &self.to_upstream,
            Direction::FromUpstream => &self.from_upstream,
        };
        counters.counter(event).fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a flow opened.
    pub(crate) fn flow_opened(&self) {
        self.flows_opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a flow evicted.
    pub(crate) fn flow_evicted(&self) {
        self.flows_evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now, with `delayed_waiting` datagrams in the delay queue.
    pub(crate) fn snapshot(&self, delayed_waiting: u64) -> ProxyCounts {
        ProxyCounts {
            to_upstream: self.to_upstream.snapshot(),
            from_upstream: self.from_upstream.snapshot(),
            flows_opened: self.flows_opened.load(Ordering::Relaxed),
            flows_evicted: self.flows_evicted.load(Ordering::Relaxed),
            delayed_waiting,
        }
    }
}
