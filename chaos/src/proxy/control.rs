//! The state the proxy's tasks share, and the cloneable handle that changes the
//! faults and reads the counters while the proxy runs.

use crate::proxy::counters::{Counters, ProxyCounts};
use crate::proxy::faults::{Cut, Faults};
use crate::proxy::ProxyError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Shared by the listener, the flow readers, the delay queue and every handle.
pub(crate) struct Shared {
    faults: Mutex<Faults>,
    pub(crate) counters: Counters,
    /// Datagrams in the delay queue (in its channel or its heap), at most `delayed_max`.
    pub(crate) delayed_waiting: AtomicUsize,
    pub(crate) delayed_max: usize,
}

impl Shared {
    pub(crate) fn new(faults: Faults, delayed_max: usize) -> Shared {
        Shared {
            faults: Mutex::new(faults),
            counters: Counters::default(),
            delayed_waiting: AtomicUsize::new(0),
            delayed_max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Faults> {
        // Faults is plain data: a panic while it was held cannot leave it half-written.
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The faults in force now.
    pub(crate) fn faults(&self) -> Faults {
        *self.lock()
    }

    /// Reserves a place in the delay queue; false when it is full.
    pub(crate) fn reserve_delay_place(&self) -> bool {
        self.delayed_waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < self.delayed_max).then_some(waiting + 1)
            })
            .is_ok()
    }

    /// Gives back a place reserved with [`Shared::reserve_delay_place`].
    pub(crate) fn release_delay_place(&self) {
        let before = self.delayed_waiting.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "delay queue place released twice");
    }
}

/// A handle on a running proxy's faults and counters; cheap to clone and usable
/// from any task. It stays valid after the proxy stops (changes then have no effect).
#[derive(Clone)]
pub struct FaultControl {
    shared: Arc<Shared>,
}

impl FaultControl {
    pub(crate) fn new(shared: Arc<Shared>) -> FaultControl {
        FaultControl { shared }
    }

    /// Replaces the faults; they apply to every datagram read from now on (and a
    /// cut also to delayed datagrams whose delay ends from now on). Out-of-range
    /// faults are refused and the faults in force stay as they were.
    pub fn set(&self, faults: Faults) -> Result<(), ProxyError> {
        faults.validate()?;
        *self.shared.lock() = faults;
        Ok(())
    }

    /// The faults in force now.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Cuts the link in `cut`'s directions, keeping the loss and delay settings.
    pub fn cut(&self, cut: Cut) {
        self.shared.lock().cut = cut;
    }

    /// Cuts both directions: nothing passes until [`FaultControl::heal`].
    pub fn partition(&self) {
        self.cut(Cut::Both);
    }

    /// Removes any cut, keeping the loss and delay settings.
    pub fn heal(&self) {
        self.cut(Cut::None);
    }

    /// The counters now.
    pub fn counts(&self) -> ProxyCounts {
        let waiting = self.shared.delayed_waiting.load(Ordering::Acquire);
        self.shared.counters.snapshot(waiting as u64)
    }
}
