//! Per-node fault injection: make one entity or service panic on its next messages.
//!
//! Used by tests and chaos runs to prove containment. Per node (not global like
//! `fail` failpoints), so nodes and tests in one process do not disturb each other.
//! Costs one atomic load per message while nothing is armed.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How a targeted actor misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// Panic on every message until cleared.
    PanicAlways,
    /// Panic on the next N messages.
    PanicTimes(u32),
    /// Sleep this long before each of the next N messages (a slow dependency).
    StallTimes {
        /// Sleep per message.
        ms: u64,
        /// Messages affected.
        times: u32,
    },
}

/// The node's armed faults.
#[derive(Debug, Default)]
pub struct Faults {
    armed: AtomicBool,
    targets: Mutex<HashMap<(&'static str, u64), FaultMode>>,
    injected: AtomicU64,
}

impl Faults {
    /// Arms a fault for the actor of `kind` (e.g. "wallet") with entity id `id`
    /// (services use id 0).
    pub fn arm(&self, kind: &'static str, id: u64, mode: FaultMode) {
        self.targets.lock().insert((kind, id), mode);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Disarms one target.
    pub fn clear(&self, kind: &'static str, id: u64) {
        let mut targets = self.targets.lock();
        targets.remove(&(kind, id));
        self.armed.store(!targets.is_empty(), Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Panics if a panic is armed for this actor (called at the top of its handler).
    pub fn check(&self, kind: &'static str, id: u64) {
        if !self.armed.load(Ordering::Relaxed) {
            return;
        }
        if let Some(FaultMode::PanicAlways | FaultMode::PanicTimes(_)) = self.take(kind, id, false)
        {
            self.injected.fetch_add(1, Ordering::Relaxed);
            panic!("injected fault in {kind} {id}");
        }
    }

    /// Sleeps if a stall is armed for this actor.
    pub async fn stall(&self, kind: &'static str, id: u64) {
        if !self.armed.load(Ordering::Relaxed) {
            return;
        }
        if let Some(FaultMode::StallTimes { ms, .. }) = self.take(kind, id, true) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }

    fn take(&self, kind: &'static str, id: u64, stall: bool) -> Option<FaultMode> {
        let mut targets = self.targets.lock();
        let mode = targets.get_mut(&(kind, id))?;
        let is_stall = matches!(mode, FaultMode::StallTimes { .. });
        if is_stall != stall {
            return None;
        }
        let taken = *mode;
        let left = match mode {
            FaultMode::PanicTimes(left) | FaultMode::StallTimes { times: left, .. } => left,
            FaultMode::PanicAlways => return Some(taken),
        };
        *left = left.saturating_sub(1);
        if *left == 0 {
            targets.remove(&(kind, id));
            self.armed.store(!targets.is_empty(), Ordering::SeqCst);
        }
        Some(taken)
    }
}
