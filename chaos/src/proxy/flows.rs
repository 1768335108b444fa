//! The table of client flows: one entry per client source address, bounded, with
//! the least recently active idle flow evicted to make room. Plain state over a
//! caller-supplied clock, no I/O.

use std::collections::HashMap;
use std::net::SocketAddr;

/// Whether a new flow fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// There is room: insert it.
    Room,
    /// The table is full; this flow is idle and the least recently active: remove
    /// it, then insert.
    Evict(SocketAddr),
    /// The table is full of flows active within the idle time: refuse.
    Full,
}

struct Entry<T> {
    value: T,
    last_active_ms: u64,
}

/// Flows by client address, at most `flows_max` of them.
pub(crate) struct FlowTable<T> {
    entries: HashMap<SocketAddr, Entry<T>>,
    flows_max: usize,
    flow_idle_ms: u64,
    opened: u64,
}

impl<T> FlowTable<T> {
    /// An empty table holding at most `flows_max` flows, where a flow counts as
    /// idle once nothing came from its client for `flow_idle_ms`.
    pub(crate) fn new(flows_max: usize, flow_idle_ms: u64) -> FlowTable<T> {
        FlowTable {
            entries: HashMap::new(),
            flows_max,
            flow_idle_ms,
            opened: 0,
        }
    }

    /// The flow of `client`, marked active at `now_ms`.
    pub(crate) fn active(&mut self, client: SocketAddr, now_ms: u64) -> Option<&mut T> {
        let entry = self.entries.get_mut(&client)?;
        entry.last_active_ms = entry.last_active_ms.max(now_ms);
        Some(&mut entry.value)
    }

    /// Whether a new flow can be inserted at `now_ms`, and what to evict first.
    pub(crate) fn admission(&self, now_ms: u64) -> Admission {
        if self.entries.len() < self.flows_max {
            return Admission::Room;
        }
        let least_recent = self
            .entries
            .iter()
            .min_by_key(|(client, entry)| (entry.last_active_ms, **client));
        match least_recent {
            Some((client, entry))
                if now_ms.saturating_sub(entry.last_active_ms) >= self.flow_idle_ms =>
            {
                Admission::Evict(*client)
            }
            _ => Admission::Full,
        }
    }

    /// Inserts the flow of `client` (call only after [`FlowTable::admission`] made
    /// room) and returns its ordinal: 0 for the first flow ever opened, then 1, …
    pub(crate) fn insert(&mut self, client: SocketAddr, value: T, now_ms: u64) -> u64 {
        debug_assert!(
            self.entries.len() < self.flows_max,
            "flow table over its cap"
        );
        debug_assert!(!self.entries.contains_key(&client), "flow inserted twice");
        self.entries.insert(
            client,
            Entry {
                value,
                last_active_ms: now_ms,
            },
        );
        let ordinal = self.opened;
        self.opened += 1;
        ordinal
    }

    /// The ordinal the next inserted flow will get.
    pub(crate) fn next_ordinal(&self) -> u64 {
        self.opened
    }

    /// Removes the flow of `client`.
    pub(crate) fn remove(&mut self, client: SocketAddr) -> Option<T> {
        self.entries.remove(&client).map(|entry| entry.value)
    }

    /// How many flows are open.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn flows_are_numbered_in_opening_order_and_found_again() {
        let mut table = FlowTable::new(4, 1_000);
        assert_eq!(table.insert(addr(1), "a", 0), 0);
        assert_eq!(table.insert(addr(2), "b", 0), 1);
        assert_eq!(table.active(addr(1), 5), Some(&mut "a"));
        assert_eq!(table.active(addr(3), 5), None);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_full_table_refuses_until_a_flow_is_idle_then_evicts_the_least_recent() {
        let mut table = FlowTable::new(2, 100);
        table.insert(addr(1), (), 0);
        table.insert(addr(2), (), 10);
        assert_eq!(table.admission(50), Admission::Full);
        table.active(addr(1), 60);
        // addr(2) was last active at 10, addr(1) at 60.
        assert_eq!(table.admission(109), Admission::Full);
        assert_eq!(table.admission(110), Admission::Evict(addr(2)));
        assert!(table.remove(addr(2)).is_some());
        assert_eq!(table.admission(110), Admission::Room);
        assert_eq!(table.insert(addr(3), (), 110), 2);
    }
}
