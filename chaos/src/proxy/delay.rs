//! The delay queue: one task holding delayed datagrams in a heap ordered by due
//! time, sending each when its delay ends, so delays never block the relay.

use crate::proxy::control::Shared;
use crate::proxy::counters::Event;
use crate::proxy::faults::Direction;
use crate::proxy::relay::{send, Route};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant};

/// At most this many datagrams are sent per wake-up before the queue looks at new
/// arrivals and the shutdown signal again (in the spirit of quinn's `IO_LOOP_BOUND`).
const DELIVERIES_PER_WAKE_MAX: usize = 64;

/// A datagram waiting for its delay to end.
pub(crate) struct DelayedDatagram {
    due: Instant,
    direction: Direction,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// The sending side of the delay queue, one clone per relaying task.
#[derive(Clone)]
pub(crate) struct DelaySender {
    shared: Arc<Shared>,
    sender: mpsc::Sender<DelayedDatagram>,
}

impl DelaySender {
    /// Queues `bytes` to go along `route` in `delay_ms`, or drops it (counted as
    /// overflow) when `delayed_max` datagrams are already waiting.
    pub(crate) fn schedule(&self, route: Route<'_>, bytes: &[u8], delay_ms: u64) {
        let counters = &self.shared.counters;
        if !self.shared.reserve_delay_place() {
            counters.record(route.direction, Event::DroppedOverflow);
            return;
        }
        let datagram = DelayedDatagram {
            due: Instant::now() + Duration::from_millis(delay_ms),
            direction: route.direction,
            socket: Arc::clone(route.socket),
            to: route.to,
            bytes: bytes.to_vec(),
        };
        // The channel holds `delayed_max` and every datagram in it holds a place,
        // so it can only fail once the queue has stopped.
        match self.sender.try_send(datagram) {
            Ok(()) => counters.record(route.direction, Event::Delayed),
            Err(_) => {
                self.shared.release_delay_place();
                counters.record(route.direction, Event::DroppedOverflow);
            }
        }
    }
}

/// A queued datagram with its arrival number: equal due times keep arrival order.
struct Queued {
    arrival: u64,
    datagram: DelayedDatagram,
}

impl Queued {
    fn key(&self) -> (Instant, u64) {
        (self.datagram.due, self.arrival)
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// The delay queue's task and the sender that feeds it.
pub(crate) struct DelayQueue {
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<DelayedDatagram>,
    heap: BinaryHeap<Reverse<Queued>>,
    arrivals: u64,
}

impl DelayQueue {
    /// A queue for at most `shared.delayed_max` datagrams, and its sender.
    pub(crate) fn new(shared: Arc<Shared>) -> (DelayQueue, DelaySender) {
        let (sender, receiver) = mpsc::channel(shared.delayed_max);
        let queue = DelayQueue {
            shared: Arc::clone(&shared),
            receiver,
            heap: BinaryHeap::new(),
            arrivals: 0,
        };
        (queue, DelaySender { shared, sender })
    }

    /// Runs until `shutdown` changes or every sender is gone; datagrams still
    /// waiting then are discarded (and stay counted in `delayed_waiting`).
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let next_due = self.heap.peek().map(|Reverse(queued)| queued.datagram.due);
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                () = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)),
                    if next_due.is_some() => self.deliver_due().await,
                received = self.receiver.recv() => match received {
                    Some(datagram) => self.push(datagram),
                    None => break,
                },
            }
        }
    }

    fn push(&mut self, datagram: DelayedDatagram) {
        debug_assert!(
            self.heap.len() < self.shared.delayed_max,
            "delay heap over its cap"
        );
        self.heap.push(Reverse(Queued {
            arrival: self.arrivals,
            datagram,
        }));
        self.arrivals += 1;
    }

    /// Sends the datagrams whose delay has ended, at most
    /// [`DELIVERIES_PER_WAKE_MAX`]; a direction cut meanwhile drops them instead.
    async fn deliver_due(&mut self) {
        let now = Instant::now();
        for _ in 0..DELIVERIES_PER_WAKE_MAX {
            let due = matches!(self.heap.peek(), Some(Reverse(q)) if q.datagram.due <= now);
            let Some(Reverse(queued)) = due.then(|| self.heap.pop()).flatten() else {
                return;
            };
            self.shared.release_delay_place();
            let datagram = queued.datagram;
            if self.shared.faults().cut.cuts(datagram.direction) {
                let counters = &self.shared.counters;
                counters.record(datagram.direction, Event::DroppedCut);
                continue;
            }
            let route = Route {
                direction: datagram.direction,
                socket: &datagram.socket,
                to: datagram.to,
            };
            send(&self.shared, route, &datagram.bytes).await;
        }
    }
}
