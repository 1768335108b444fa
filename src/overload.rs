//! Overload shedding: a probe task measures how late the async runtime runs a
//! short timer. That lateness is the time any ready task — a request, an actor's
//! message, a connection's packets — waits for a worker thread, so it grows as
//! soon as the node has more work than cores. While it is above
//! `limits.overload_lag_ms`, requests that would start new work (bookings,
//! locations, reads, deposits) are answered `Busy` with a retry hint, and requests
//! that finish work already admitted (accept, start, complete, cancel, decline,
//! going offline) are still served: admitted jobs finish instead of lapsing while
//! new ones queue behind them.

use fixit_actors::error::CoreError;
use fixit_protocol::api::{ApiError, Request};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How often the probe's timer is due.
const PROBE_EVERY: Duration = Duration::from_millis(5);

/// The smoothed lag falls by 1/DECAY of its distance to each new sample (and rises
/// to a larger sample at once): a stall is seen at once, a recovery within some
/// tens of probes.
const DECAY: u64 = 8;

/// The runtime's measured lateness and the shedding decision.
pub struct Overload {
    /// Smoothed lateness of the probe's timer, in µs.
    lag_us: AtomicU64,
    /// Shedding starts above this lag, in µs (0: never).
    threshold_us: u64,
    retry_after_ms: u64,
    /// Requests answered `Busy` because of the lag.
    shed: AtomicU64,
}

impl Overload {
    /// Sheds above `threshold` of lag (zero: never sheds, still measures). The
    /// probe runs on the current tokio runtime, if any, until the `Overload` is
    /// dropped.
    pub fn start(threshold: Duration, retry_after_ms: u64) -> Arc<Overload> {
        let overload = Arc::new(Overload {
            lag_us: AtomicU64::new(0),
            threshold_us: threshold.as_micros() as u64,
            retry_after_ms,
            shed: AtomicU64::new(0),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(probe(Arc::downgrade(&overload)));
        }
        overload
    }

    /// The smoothed lateness of the runtime.
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.lag_us.load(Ordering::Relaxed))
    }

    /// Requests shed so far.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// `Busy` for a request that starts new work while the runtime lags past the
    /// threshold; requests that finish admitted work always pass.
    pub fn admit(&self, request: &Request) -> Result<(), ApiError> {
        if self.threshold_us == 0
            || !starts_new_work(request)
            || self.lag_us.load(Ordering::Relaxed) <= self.threshold_us
        {
            return Ok(());
        }
        self.shed.fetch_add(1, Ordering::Relaxed);
        Err(ApiError::Core(CoreError::Busy {
            retry_after_ms: self.retry_after_ms,
        }))
    }

    fn record(&self, late: Duration) {
        let late = late.as_micros() as u64;
        let lag = self.lag_us.load(Ordering::Relaxed);
        let next = if late >= lag {
            late
        } else {
            lag - (lag - late) / DECAY
        };
        self.lag_us.store(next, Ordering::Relaxed);
    }
}

/// Whether serving `request` adds work (and so may wait for a quieter moment)
/// rather than finishing work the node already admitted.
fn starts_new_work(request: &Request) -> bool {
    !matches!(
        request,
        Request::Accept { .. }
            | Request::Decline { .. }
            | Request::Start { .. }
            | Request::Complete { .. }
            | Request::CancelJob { .. }
            | Request::ProviderOffline { .. }
    )
}

/// Measures the timer's lateness every [`PROBE_EVERY`] while `overload` lives.
async fn probe(overload: Weak<Overload>) {
    // Bounded by the Overload's life: the loop ends once it is dropped.
    loop {
        let due = Instant::now() + PROBE_EVERY;
        tokio::time::sleep_until(due).await;
        let late = Instant::now().saturating_duration_since(due);
        match overload.upgrade() {
            Some(overload) => overload.record(late),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> Request {
        Request::Location {
            provider: 1,
            lat: 59.33,
            lon: 18.06,
        }
    }

    fn accept() -> Request {
        Request::Accept {
            provider: 1,
            job: 1,
        }
    }

    #[test]
    fn past_the_threshold_new_work_is_busy_and_admitted_work_goes_on() {
        let overload = Overload::start(Duration::from_millis(100), 30);
        overload.record(Duration::from_millis(250));
        match overload.admit(&location()) {
            Err(ApiError::Core(CoreError::Busy { retry_after_ms })) => {
                assert_eq!(retry_after_ms, 30)
            }
            other => panic!("expected busy, got {other:?}"),
        }
        assert!(overload.admit(&accept()).is_ok());
        assert_eq!(overload.shed(), 1);
    }

    #[test]
    fn the_lag_rises_at_once_and_falls_back_gradually() {
        let overload = Overload::start(Duration::from_millis(100), 30);
        overload.record(Duration::from_millis(800));
        assert_eq!(overload.lag(), Duration::from_millis(800));
        overload.record(Duration::ZERO);
        assert_eq!(overload.lag(), Duration::from_millis(700));
        for _ in 0..40 {
            overload.record(Duration::ZERO);
        }
        assert!(overload.lag() < Duration::from_millis(100));
        assert!(overload.admit(&location()).is_ok());
    }

    #[test]
    fn a_zero_threshold_never_sheds() {
        let overload = Overload::start(Duration::ZERO, 30);
        overload.record(Duration::from_secs(5));
        assert!(overload.admit(&location()).is_ok());
        assert_eq!(overload.shed(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_is_measured_by_the_probe() {
        let overload = Overload::start(Duration::from_millis(50), 30);
        // Let the probe arm its first timer, then keep the only thread busy.
        tokio::time::sleep(Duration::from_millis(20)).await;
        std::thread::sleep(Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            overload.lag() >= Duration::from_millis(200),
            "lag {:?}",
            overload.lag()
        );
        assert!(overload.admit(&location()).is_err());
    }
}
