//! Admission control: a token bucket per principal and per source address
//! (governor), and a bound on requests in flight. Past any of them the answer is an
//! explicit retry-after, never a queue.

use fixit_actors::config::RateLimitsSection;
use fixit_actors::error::CoreError;
use fixit_protocol::api::ApiError;
use fixit_protocol::principal::Principal;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Admissions between sweeps of idle rate-limiter keys (bounds their memory).
const SWEEP_EVERY: u64 = 100_000;

/// Retry hint when the node-wide in-flight bound is reached.
const INFLIGHT_RETRY_AFTER_MS: u64 = 20;

/// Rate limits and the in-flight bound of one node.
pub struct Admission {
    principals: DefaultKeyedRateLimiter<Principal>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    inflight: Arc<Semaphore>,
    clock: DefaultClock,
    admitted: AtomicU64,
}

fn quota(per_s: u32, burst: u32) -> Quota {
    let per_s = NonZeroU32::new(per_s).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_s).allow_burst(burst)
}

impl Admission {
    /// Limits from config.
    pub fn new(limits: &RateLimitsSection, inflight_max: u32) -> Admission {
        Admission {
            principals: governor::RateLimiter::keyed(quota(
                limits.principal_per_s,
                limits.principal_burst,
            )),
            addresses: governor::RateLimiter::keyed(quota(
                limits.address_per_s,
                limits.address_burst,
            )),
            inflight: Arc::new(Semaphore::new(inflight_max as usize)),
            clock: DefaultClock::default(),
            admitted: AtomicU64::new(0),
        }
    }

    /// Admits one request or says when to retry. Hold the permit while it runs.
    pub fn admit(
        &self,
        principal: &Principal,
        source: IpAddr,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        self.check(&self.addresses, &source)?;
        self.check(&self.principals, principal)?;
        if self.admitted.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.principals.retain_recent();
            self.addresses.retain_recent();
        }
        self.inflight.clone().try_acquire_owned().map_err(|_| {
            ApiError::Core(CoreError::Busy {
                retry_after_ms: INFLIGHT_RETRY_AFTER_MS,
            })
        })
    }

    /// Admits a connection-level action (e.g. opening a push stream) from an address.
    pub fn admit_address(&self, source: IpAddr) -> Result<(), ApiError> {
        self.check(&self.addresses, &source)
    }

    fn check<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), ApiError> {
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::RateLimited {
                retry_after_ms: (wait.as_millis() as u64).max(1),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn a_burst_past_the_limit_is_told_when_to_retry_and_others_still_pass() {
        let limits = RateLimitsSection {
            principal_per_s: 1,
            principal_burst: 3,
            address_per_s: 1_000,
            address_burst: 1_000,
        };
        let admission = Admission::new(&limits, 100);
        let noisy = Principal {
            role: Role::Customer,
            sub: 1,
        };
        let quiet = Principal {
            role: Role::Customer,
            sub: 2,
        };
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let mut permits = Vec::new();
        for _ in 0..3 {
            permits.push(admission.admit(&noisy, here).unwrap());
        }
        match admission.admit(&noisy, here) {
            Err(ApiError::RateLimited { retry_after_ms }) => {
                assert!((1..=1_000).contains(&retry_after_ms))
            }
            other => panic!("expected rate limit, got {other:?}"),
        }
        assert!(
            admission.admit(&quiet, here).is_ok(),
            "another principal is served"
        );
    }

    #[test]
    fn the_inflight_bound_answers_busy() {
        let limits = RateLimitsSection {
            principal_per_s: 1_000,
            principal_burst: 1_000,
            address_per_s: 1_000,
            address_burst: 1_000,
        };
        let admission = Admission::new(&limits, 2);
        let who = Principal {
            role: Role::Admin,
            sub: 0,
        };
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let _a = admission.admit(&who, here).unwrap();
        let b = admission.admit(&who, here).unwrap();
        assert!(matches!(
            admission.admit(&who, here),
            Err(ApiError::Core(CoreError::Busy { .. }))
        ));
        drop(b);
        assert!(admission.admit(&who, here).is_ok());
    }
}
