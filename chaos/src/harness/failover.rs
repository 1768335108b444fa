//! Failovers of replicated wallet shards, measured from the clients' side. Each
//! fault that takes a node away (a kill, a stop, a partition, a disk loss) is
//! recorded with the shards that node led just before (from `GET /cluster`); a
//! shard has failed over at the first acknowledged write to one of its wallets
//! that went out after the fault (`failover_ms`). From the fault, a probe writes to
//! each of those shards through the other nodes every [`PROBE_EVERY`] so the
//! moment is seen within that much, whatever the load does. A fault's failover
//! window runs from the fault to its last shard's failover; the calls outside
//! every window give `served_pct_outside_failover`.
//!
//! Pure bookkeeping over instants: the driver feeds it, the report reads it.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A shard not written within this long after a fault has not failed over
/// (counted as missed, and its window ends here).
pub(crate) const FAILOVER_MAX: Duration = Duration::from_secs(20);

/// Pause between two tries of a probe's write.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(50);

/// Client calls and acknowledged writes kept (about 80 bytes each); past it
/// they are counted as dropped and the figures cover the first ones.
const MARKS_MAX: usize = 1_000_000;

/// A fault that took a node away from the shards it led.
pub(crate) struct Fault {
    pub(crate) victim: String,
    /// `kill`, `stop`, `partition` or `disk-loss`.
    pub(crate) kind: &'static str,
    pub(crate) at: Instant,
    pub(crate) at_unix_ms: u64,
    /// The shards the victim led just before.
    pub(crate) led: BTreeSet<u32>,
}

/// One client call, for the served share outside the failover windows.
struct CallMark {
    started: Instant,
    ended: Instant,
    served: bool,
    wallet: bool,
}

/// What the driver saw of failovers.
#[derive(Default)]
pub(crate) struct Tracker {
    faults: Vec<Fault>,
    /// Acknowledged writes: (shard, when the call went out, when it was answered).
    writes: Vec<(u32, Instant, Instant)>,
    calls: Vec<CallMark>,
    dropped: u64,
}

impl Tracker {
    pub(crate) fn fault(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// A write to a wallet of `shard` that went out at `started` was acknowledged at `acked`.
    pub(crate) fn write_acked(&mut self, shard: u32, started: Instant, acked: Instant) {
        if self.writes.len() < MARKS_MAX {
            self.writes.push((shard, started, acked));
        } else {
            self.dropped += 1;
        }
    }

    /// A client call from `started` to `ended`; whether it was served, whether
    /// it was a wallet call (balance or deposit).
    pub(crate) fn call(&mut self, started: Instant, ended: Instant, served: bool, wallet: bool) {
        if self.calls.len() < MARKS_MAX {
            self.calls.push(CallMark {
                started,
                ended,
                served,
                wallet,
            });
        } else {
            self.dropped += 1;
        }
    }

    /// When the first write to `shard` that went out at or after `since` was
    /// acknowledged, if one was within [`FAILOVER_MAX`].
    pub(crate) fn first_write(&self, shard: u32, since: Instant) -> Option<Instant> {
        self.writes
            .iter()
            .filter(|(written, started, acked)| {
                *written == shard && *started >= since && *acked <= since + FAILOVER_MAX
            })
            .map(|(_, _, acked)| *acked)
            .min()
    }

    /// Failover of each shard of `fault`, in ms (`None`: not within the limit).
    fn shards_of(&self, fault: &Fault) -> BTreeMap<u32, Option<u64>> {
        fault
            .led
            .iter()
            .map(|shard| {
                let first = self.first_write(*shard, fault.at);
                let ms = first.map(|acked| acked.duration_since(fault.at).as_millis() as u64);
                (*shard, ms)
            })
            .collect()
    }

    /// The failover windows: from each fault to its last shard's failover.
    fn windows(&self) -> Vec<(Instant, Instant)> {
        self.faults
            .iter()
            .filter(|fault| !fault.led.is_empty())
            .map(|fault| {
                let longest = self
                    .shards_of(fault)
                    .values()
                    .map(|ms| ms.map_or(FAILOVER_MAX, Duration::from_millis))
                    .max()
                    .unwrap_or_default();
                (fault.at, fault.at + longest)
            })
            .collect()
    }

    /// The share of the calls (wallet calls only, with `wallet_only`) outside
    /// every failover window that were served, in percent.
    fn served_pct(&self, windows: &[(Instant, Instant)], wallet_only: bool) -> Option<f64> {
        let outside = self.calls.iter().filter(|call| {
            (call.wallet || !wallet_only)
                && !windows
                    .iter()
                    .any(|(from, to)| call.started <= *to && call.ended >= *from)
        });
        let (mut attempted, mut served) = (0u64, 0u64);
        for call in outside {
            attempted += 1;
            served += u64::from(call.served);
        }
        (attempted > 0).then(|| (served as f64 * 10_000.0 / attempted as f64).round() / 100.0)
    }

    pub(crate) fn report(&self) -> FailoverReport {
        let mut samples = Vec::new();
        let mut failovers = Vec::new();
        for fault in &self.faults {
            let shards = self.shards_of(fault);
            samples.extend(shards.values().copied());
            failovers.push(FaultFailover {
                victim: fault.victim.clone(),
                kind: fault.kind,
                at_ms: fault.at_unix_ms,
                shards: shards
                    .into_iter()
                    .map(|(shard, ms)| (format!("w{shard}"), ms))
                    .collect(),
            });
        }
        let windows = self.windows();
        FailoverReport {
            failover_ms: Percentiles::of(&samples),
            failovers,
            served_pct_outside_failover: self.served_pct(&windows, false),
            wallet_served_pct_outside_failover: self.served_pct(&windows, true),
            marks_dropped: self.dropped,
        }
    }
}

/// A distribution of failovers, in ms.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Percentiles {
    /// Shards that failed over within the limit.
    pub(crate) count: usize,
    /// Shards that did not.
    pub(crate) missed: usize,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
}

impl Percentiles {
    /// `None` when there is no sample at all (no fault took a leader away).
    fn of(samples: &[Option<u64>]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        let mut seen: Vec<u64> = samples.iter().flatten().copied().collect();
        seen.sort_unstable();
        let at = |share: f64| {
            let rank = ((share * seen.len() as f64).ceil() as usize).max(1);
            seen.get(rank - 1).copied().unwrap_or(0)
        };
        Some(Percentiles {
            count: seen.len(),
            missed: samples.len() - seen.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: seen.last().copied().unwrap_or(0),
        })
    }
}

/// One fault's failover.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FaultFailover {
    victim: String,
    kind: &'static str,
    /// When, in ms since the Unix epoch (to set beside the nodes' logs).
    at_ms: u64,
    /// Each shard the victim led → ms to its first acknowledged write after the
    /// fault (`null`: none within the limit).
    shards: BTreeMap<String, Option<u64>>,
}

/// The failover part of a scenario's report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FailoverReport {
    /// Over every shard of every fault: fault → first acknowledged write to it
    /// (`null` when no fault took a leader away: no failover happened).
    pub(crate) failover_ms: Option<Percentiles>,
    pub(crate) failovers: Vec<FaultFailover>,
    /// Client calls outside every failover window that were served (answered,
    /// or refused for their own fault), in percent.
    pub(crate) served_pct_outside_failover: Option<f64>,
    /// The same over wallet calls (balances, deposits) only: regions are not
    /// replicated, so a dead node's region calls fail until it returns.
    pub(crate) wallet_served_pct_outside_failover: Option<f64>,
    /// Calls and writes not kept past the limit.
    pub(crate) marks_dropped: u64,
}

impl FailoverReport {
    /// Whether every shard of every fault failed over within the limit.
    pub(crate) fn complete(&self) -> bool {
        self.failover_ms
            .as_ref()
            .is_none_or(|failover| failover.missed == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(at: Instant, led: &[u32]) -> Fault {
        Fault {
            victim: "c".into(),
            kind: "kill",
            at,
            at_unix_ms: 0,
            led: led.iter().copied().collect(),
        }
    }

    #[test]
    fn a_shard_fails_over_at_its_first_write_sent_after_the_fault() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut tracker = Tracker::default();
        tracker.fault(fault(ms(1_000), &[1, 2, 3]));
        // Sent before the fault: does not count, even answered after it.
        tracker.write_acked(1, ms(990), ms(1_010));
        tracker.write_acked(1, ms(1_100), ms(2_200));
        tracker.write_acked(1, ms(1_300), ms(1_900));
        tracker.write_acked(2, ms(1_500), ms(1_600));
        // Shard 3 is never written: missed.
        tracker.call(ms(100), ms(120), true, true);
        tracker.call(ms(500), ms(1_200), false, true);
        tracker.call(ms(1_200), ms(1_300), false, true);
        tracker.call(ms(30_000), ms(30_010), false, false);
        let report = tracker.report();
        let failover = report.failover_ms.as_ref().expect("a failover");
        assert_eq!((failover.count, failover.missed), (2, 1));
        assert_eq!((failover.p50, failover.max), (600, 900));
        assert!(!report.complete());
        // The window runs to the limit (shard 3 missed): only the first and last
        // calls are outside it; the last was not served.
        assert_eq!(report.served_pct_outside_failover, Some(50.0));
        assert_eq!(report.wallet_served_pct_outside_failover, Some(100.0));
    }

    #[test]
    fn no_leader_lost_means_no_failover() {
        let mut tracker = Tracker::default();
        let now = Instant::now();
        tracker.fault(fault(now, &[]));
        tracker.call(now, now, true, true);
        let report = tracker.report();
        assert!(report.failover_ms.is_none());
        assert!(report.complete());
        assert_eq!(report.served_pct_outside_failover, Some(100.0));
    }
}
