//! What the load generator counts: attempts and successes per operation, errors by
//! kind (with `busy` and `rate_limited` apart from real errors), and latencies in
//! HDR histograms (microseconds, 3 significant digits).

use fixit_protocol::api::ApiError;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest latency a histogram holds, in µs (longer ones are clamped to it).
const LATENCY_MAX_US: u64 = 120_000_000;

/// Significant decimal digits the histograms keep.
const HISTOGRAM_DIGITS: u8 = 3;

/// Error kinds that mean "the node refused for now" rather than "something failed".
pub(crate) const REFUSAL_KINDS: [&str; 2] = ["busy", "rate_limited"];

/// Whether an error kind is a refusal (busy or rate-limited), not a real error.
pub(crate) fn is_refusal(kind: &str) -> bool {
    REFUSAL_KINDS.contains(&kind)
}

/// Everything timed or counted. The first group are calls (attempted and ok are
/// counted); the last two are spans between events of one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Connect,
    Subscribe,
    Deposit,
    ProviderOnline,
    LocationUpdate,
    Book,
    Accept,
    Start,
    Complete,
    Balance,
    ProviderOffline,
    JobStatusCheck,
    RequestToOffer,
    RequestToAccepted,
}

impl Op {
    pub(crate) const ALL: [Op; 14] = [
        Op::Connect,
        Op::Subscribe,
        Op::Deposit,
        Op::ProviderOnline,
        Op::LocationUpdate,
        Op::Book,
        Op::Accept,
        Op::Start,
        Op::Complete,
        Op::Balance,
        Op::ProviderOffline,
        Op::JobStatusCheck,
        Op::RequestToOffer,
        Op::RequestToAccepted,
    ];

    /// The name in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Connect => "connect",
            Op::Subscribe => "subscribe",
            Op::Deposit => "deposit",
            Op::ProviderOnline => "provider_online",
            Op::LocationUpdate => "location_update",
            Op::Book => "book",
            Op::Accept => "accept",
            Op::Start => "start",
            Op::Complete => "complete",
            Op::Balance => "balance",
            Op::ProviderOffline => "provider_offline",
            Op::JobStatusCheck => "job_status_check",
            Op::RequestToOffer => "request_to_offer",
            Op::RequestToAccepted => "request_to_accepted",
        }
    }

    /// Setup and checking work is timed whenever it happens; the load itself only
    /// inside the measured window (after the warm-up, before the drain).
    fn timed_outside_window(self) -> bool {
        matches!(
            self,
            Op::Connect
                | Op::Subscribe
                | Op::Deposit
                | Op::ProviderOnline
                | Op::ProviderOffline
                | Op::JobStatusCheck
        )
    }

    /// Whether the op is a call (attempts counted), not a span between events.
    pub(crate) fn is_call(self) -> bool {
        !matches!(self, Op::RequestToOffer | Op::RequestToAccepted)
    }
}

/// Counters of one operation.
#[derive(Default)]
struct Counts {
    attempted: AtomicU64,
    ok: AtomicU64,
    ok_in_window: AtomicU64,
}

/// The generator's shared statistics.
pub(crate) struct Stats {
    counts: Vec<Counts>,
    latencies: Vec<Mutex<Histogram<u64>>>,
    errors: Mutex<BTreeMap<(Op, String), u64>>,
    /// The first message of each (operation, kind), for the report.
    examples: Mutex<BTreeMap<(Op, String), String>>,
    measuring: AtomicBool,
    /// Arrivals (bookings, balance calls) not sent because an in-flight bound was full.
    pub(crate) arrivals_skipped: AtomicU64,
    /// Location ticks skipped because the previous update was still in flight.
    pub(crate) locations_skipped: AtomicU64,
    /// Offers received by providers (each one, re-offers included).
    pub(crate) offers_received: AtomicU64,
    /// Pushes received by customers.
    pub(crate) customer_pushes: AtomicU64,
}

impl Stats {
    pub(crate) fn new() -> Stats {
        let histogram = || {
            Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_MAX_US, HISTOGRAM_DIGITS)
                    .expect("constant histogram bounds are valid"),
            )
        };
        Stats {
            counts: Op::ALL.iter().map(|_| Counts::default()).collect(),
            latencies: Op::ALL.iter().map(|_| histogram()).collect(),
            errors: Mutex::new(BTreeMap::new()),
            examples: Mutex::new(BTreeMap::new()),
            measuring: AtomicBool::new(false),
            arrivals_skipped: AtomicU64::new(0),
            locations_skipped: AtomicU64::new(0),
            offers_received: AtomicU64::new(0),
            customer_pushes: AtomicU64::new(0),
        }
    }

    /// Starts or ends the measured window.
    pub(crate) fn set_measuring(&self, on: bool) {
        self.measuring.store(on, Ordering::SeqCst);
    }

    pub(crate) fn measuring(&self) -> bool {
        self.measuring.load(Ordering::SeqCst)
    }

    /// Records one call that began at `started` with its result.
    pub(crate) fn call<T>(&self, op: Op, started: Instant, result: &Result<T, ApiError>) {
        match result {
            Ok(_) => self.ok(op, started.elapsed()),
            Err(error) => {
                self.failed(op, error.kind());
                self.example(op, error.kind(), &error.to_string());
            }
        }
    }

    /// Keeps `message` if it is the first of its operation and kind.
    pub(crate) fn example(&self, op: Op, kind: &str, message: &str) {
        let mut examples = self
            .examples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        examples
            .entry((op, kind.to_owned()))
            .or_insert_with(|| message.to_owned());
    }

    /// The first message of each (operation, kind).
    pub(crate) fn examples(&self) -> BTreeMap<(Op, String), String> {
        self.examples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Records a successful call (or a span) that took `took`.
    pub(crate) fn ok(&self, op: Op, took: Duration) {
        let counts = &self.counts[op as usize];
        counts.attempted.fetch_add(1, Ordering::Relaxed);
        counts.ok.fetch_add(1, Ordering::Relaxed);
        let measuring = self.measuring();
        if measuring {
            counts.ok_in_window.fetch_add(1, Ordering::Relaxed);
        }
        if measuring || op.timed_outside_window() {
            let micros = (took.as_micros() as u64).clamp(1, LATENCY_MAX_US);
            let mut histogram = self.latencies[op as usize]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            histogram.saturating_record(micros);
        }
    }

    /// Records a failed call and why.
    pub(crate) fn failed(&self, op: Op, kind: &str) {
        self.counts[op as usize]
            .attempted
            .fetch_add(1, Ordering::Relaxed);
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *errors.entry((op, kind.to_owned())).or_default() += 1;
    }

    pub(crate) fn attempted(&self, op: Op) -> u64 {
        self.counts[op as usize].attempted.load(Ordering::Relaxed)
    }

    pub(crate) fn ok_count(&self, op: Op) -> u64 {
        self.counts[op as usize].ok.load(Ordering::Relaxed)
    }

    pub(crate) fn ok_in_window(&self, op: Op) -> u64 {
        self.counts[op as usize]
            .ok_in_window
            .load(Ordering::Relaxed)
    }

    /// Errors by (operation, kind).
    pub(crate) fn errors(&self) -> BTreeMap<(Op, String), u64> {
        self.errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Errors that are not refusals (busy, rate-limited): these fail the run.
    pub(crate) fn real_errors(&self) -> u64 {
        self.errors()
            .iter()
            .filter(|((_, kind), _)| !is_refusal(kind))
            .map(|(_, count)| count)
            .sum()
    }

    /// Refusals (busy and rate-limited) so far.
    pub(crate) fn refusals(&self) -> u64 {
        self.errors()
            .iter()
            .filter(|((_, kind), _)| is_refusal(kind))
            .map(|(_, count)| count)
            .sum()
    }

    /// A copy of one operation's latency histogram.
    pub(crate) fn latency(&self, op: Op) -> Histogram<u64> {
        self.latencies[op as usize]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixit_actors::error::CoreError;

    #[test]
    fn busy_and_rate_limited_are_refusals_not_errors() {
        let stats = Stats::new();
        let busy: Result<(), ApiError> = Err(CoreError::Busy { retry_after_ms: 5 }.into());
        let limited: Result<(), ApiError> = Err(ApiError::RateLimited { retry_after_ms: 5 });
        let conflict: Result<(), ApiError> = Err(CoreError::Conflict("x".into()).into());
        for result in [&busy, &limited, &conflict] {
            stats.call(Op::Book, Instant::now(), result);
        }
        assert_eq!(stats.attempted(Op::Book), 3);
        assert_eq!(stats.ok_count(Op::Book), 0);
        assert_eq!((stats.refusals(), stats.real_errors()), (2, 1));
    }

    #[test]
    fn load_latencies_count_only_inside_the_window() {
        let stats = Stats::new();
        stats.ok(Op::Book, Duration::from_millis(3));
        stats.ok(Op::Deposit, Duration::from_millis(3));
        assert_eq!(stats.latency(Op::Book).len(), 0, "outside the window");
        assert_eq!(stats.latency(Op::Deposit).len(), 1, "setup is always timed");
        stats.set_measuring(true);
        stats.ok(Op::Book, Duration::from_millis(3));
        assert_eq!(stats.latency(Op::Book).len(), 1);
        assert_eq!(stats.ok_in_window(Op::Book), 1);
        assert_eq!(stats.ok_count(Op::Book), 2);
    }
}
