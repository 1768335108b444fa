//! What every simulated user shares: the target, the local endpoints, the
//! statistics, the job book, the run's timeline, and the two ways calls are made
//! (once, timed; or retried a bounded number of times while the node refuses).

use super::connect::{pause_for, Connectors};
use super::jobs::Jobs;
use super::stats::{is_refusal, Op, Stats};
use super::target::Target;
use crate::city::Rng;
use fixit_actors::error::CoreError;
use fixit_protocol::api::ApiError;
use std::future::Future;
use std::time::{Duration, Instant};

/// Longest wait for one answer before the call counts as failed (`unavailable`).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Tries of a setup or checking call the node refuses (busy, rate-limited, unavailable).
const SETUP_TRIES_MAX: u32 = 60;

/// Tries at finding a spot some node owns (a cluster's regions may not tile the city).
const SPOT_TRIES_MAX: u32 = 1_000;

/// The phases of a run, fixed once setup is done.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeline {
    /// Load starts (warm-up begins).
    pub(crate) start: Instant,
    /// The measured window begins.
    pub(crate) warmup_end: Instant,
    /// No new load after this; the drain begins.
    pub(crate) load_end: Instant,
    /// Providers stop taking offers by this time at the latest.
    pub(crate) drain_end: Instant,
}

/// The shared state of a run.
pub(crate) struct Sim {
    pub(crate) target: Target,
    pub(crate) connectors: Connectors,
    pub(crate) stats: Stats,
    pub(crate) jobs: Jobs,
    /// A provider's pause between accepting, starting and completing (mean).
    pub(crate) think: Duration,
    /// Tells this run's idempotency keys apart from earlier runs on the same data.
    pub(crate) run_id: String,
    pub(crate) seed: u64,
}

impl Sim {
    /// A spot in the city some node owns, and that node.
    pub(crate) fn owned_spot(&self, rng: &mut Rng) -> Option<((f64, f64), usize)> {
        (0..SPOT_TRIES_MAX).find_map(|_| {
            let at = rng.spot();
            self.target.owner_of(at).map(|node| (at, node))
        })
    }
}

/// `call` with an upper bound on the wait: no answer in [`CALL_TIMEOUT`] is
/// `unavailable`.
pub(crate) async fn within<T>(
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::Core(CoreError::Unavailable(format!(
            "no answer within {} s",
            CALL_TIMEOUT.as_secs()
        )))),
    }
}

/// Calls once and records it under `op`, timed from `started`.
pub(crate) async fn once<T>(
    stats: &Stats,
    op: Op,
    started: Instant,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let result = within(call).await;
    stats.call(op, started, &result);
    result
}

/// Tries of one check after the run (a check that keeps failing is reported, not
/// hammered).
pub(crate) const CHECK_TRIES_MAX: u32 = 3;

/// How long [`retrying_up_to`] keeps retrying refusals before they count as tries.
const REFUSALS_WAIT_MAX: Duration = Duration::from_secs(120);

/// Calls until the node serves it, waiting as told while it refuses (bounded);
/// every try is recorded. `None`: a real error, or refused every time.
pub(crate) async fn retrying<T, F, Fut>(stats: &Stats, op: Op, call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    retrying_up_to(SETUP_TRIES_MAX, stats, op, call).await
}

/// [`retrying`] with at most `tries` tries.
pub(crate) async fn retrying_up_to<T, F, Fut>(
    tries: u32,
    stats: &Stats,
    op: Op,
    mut call: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    // Refusals (busy, rate-limited) say the node is there and when to come back:
    // they are retried for a bounded time rather than a few tries, so a check
    // phase that outruns a rate limit waits instead of giving up.
    let refusals_until = Instant::now() + REFUSALS_WAIT_MAX;
    let mut failures = 0;
    while failures < tries {
        match once(stats, op, Instant::now(), call()).await {
            Ok(value) => return Some(value),
            Err(error) if error.retry_after_ms().is_some() => {
                if !is_refusal(error.kind()) || Instant::now() >= refusals_until {
                    failures += 1;
                }
                pause_for(&error).await
            }
            Err(_) => return None,
        }
    }
    None
}
