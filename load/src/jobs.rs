//! What the generator saw of each job, keyed by job id: when the booking was sent,
//! when its first offer reached a provider and when it was accepted (these come from
//! different tasks in any order), which provider accepted it and which jobs were
//! completed, for the request→offer and request→accepted spans and the checks after
//! the run.

use super::stats::{Op, Stats};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Most jobs whose stamps are kept at once (bounds memory if offers never come).
const STAMPED_JOBS_MAX: usize = 2_000_000;

/// Instants of one job's events, as far as seen.
#[derive(Default)]
struct Stamps {
    requested: Option<Instant>,
    offered: Option<Instant>,
    accepted: Option<Instant>,
    offer_timed: bool,
}

#[derive(Default)]
struct Book {
    stamps: HashMap<u64, Stamps>,
    accepted_by: HashMap<u64, u64>,
    completed: Vec<(u64, u64)>,
    double_assignments: Vec<u64>,
}

/// The job book shared by customers and providers.
#[derive(Default)]
pub(crate) struct Jobs {
    book: Mutex<Book>,
    /// Bookings answered with a job.
    pub(crate) booked: AtomicU64,
    /// Jobs accepted and not yet completed (or given up) by their provider.
    pub(crate) working: AtomicU64,
    /// Bookings sent and not yet answered.
    pub(crate) booking_inflight: AtomicU64,
    /// Stamps not kept because the book was full.
    pub(crate) stamps_dropped: AtomicU64,
}

impl Jobs {
    fn with_stamps(&self, job: u64, stats: &Stats, mark: impl FnOnce(&mut Stamps)) {
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        if !book.stamps.contains_key(&job) && book.stamps.len() >= STAMPED_JOBS_MAX {
            self.stamps_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let stamps = book.stamps.entry(job).or_default();
        mark(stamps);
        let Some(requested) = stamps.requested else {
            return;
        };
        if let (Some(offered), false) = (stamps.offered, stamps.offer_timed) {
            stamps.offer_timed = true;
            stats.ok(
                Op::RequestToOffer,
                offered.saturating_duration_since(requested),
            );
        }
        if let Some(accepted) = stamps.accepted {
            stats.ok(
                Op::RequestToAccepted,
                accepted.saturating_duration_since(requested),
            );
            book.stamps.remove(&job);
        }
    }

    /// The booking sent at `requested` was answered with `job`.
    pub(crate) fn booked(&self, job: u64, requested: Instant, stats: &Stats) {
        self.booked.fetch_add(1, Ordering::Relaxed);
        self.with_stamps(job, stats, |stamps| stamps.requested = Some(requested));
    }

    /// An offer of `job` reached a provider now (only the first one is timed).
    pub(crate) fn offered(&self, job: u64, stats: &Stats) {
        let now = Instant::now();
        self.with_stamps(job, stats, |stamps| {
            stamps.offered.get_or_insert(now);
        });
    }

    /// `provider`'s accept of `job` was answered ok now.
    pub(crate) fn accepted(&self, job: u64, provider: u64, stats: &Stats) {
        let now = Instant::now();
        {
            let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(first) = book.accepted_by.insert(job, provider) {
                if first != provider {
                    book.double_assignments.push(job);
                }
            }
        }
        self.working.fetch_add(1, Ordering::SeqCst);
        self.with_stamps(job, stats, |stamps| stamps.accepted = Some(now));
    }

    /// The provider is done with an accepted job, completed (`true`) or not.
    pub(crate) fn finished(&self, job: u64, provider: u64, completed: bool) {
        if completed {
            let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
            book.completed.push((job, provider));
        }
        self.working.fetch_sub(1, Ordering::SeqCst);
    }

    /// Jobs the generator saw completed, with their provider.
    pub(crate) fn completed(&self) -> Vec<(u64, u64)> {
        let book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        book.completed.clone()
    }

    /// Jobs accepted by two different providers (single assignment broken).
    pub(crate) fn double_assignments(&self) -> Vec<u64> {
        let book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        book.double_assignments.clone()
    }

    /// Jobs accepted so far.
    pub(crate) fn accepted_count(&self) -> u64 {
        let book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        book.accepted_by.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_timed_whichever_event_comes_first() {
        let (jobs, stats) = (Jobs::default(), Stats::new());
        stats.set_measuring(true);
        let requested = Instant::now();
        jobs.offered(7, &stats);
        jobs.booked(7, requested, &stats);
        jobs.offered(7, &stats);
        jobs.accepted(7, 100, &stats);
        jobs.finished(7, 100, true);
        jobs.booked(8, requested, &stats);
        jobs.offered(8, &stats);
        assert_eq!(
            stats.latency(Op::RequestToOffer).len(),
            2,
            "first offers only"
        );
        assert_eq!(stats.latency(Op::RequestToAccepted).len(), 1);
        assert_eq!(jobs.completed(), vec![(7, 100)]);
        assert!(jobs.double_assignments().is_empty());
        jobs.accepted(7, 101, &stats);
        assert_eq!(jobs.double_assignments(), vec![7]);
    }
}
