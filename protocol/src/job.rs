//! The job state machine: Requested → Offered → Accepted → InProgress → Completed,
//! or Cancelled / Expired. Pure transitions; the job actor does the side effects.

use crate::error::{CoreError, CoreResult};
use crate::geo::Coord;
use crate::ids::{CustomerId, JobId, ProviderId, Skill};
use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum JobStatus {
    /// Waiting for an offer to be made (or re-made after a decline or timeout).
    Requested,
    /// Offered to one provider until the deadline.
    Offered {
        /// The provider holding the offer.
        provider: ProviderId,
        /// Offer deadline, in ms since the epoch.
        deadline_ms: u64,
    },
    /// Accepted by the provider.
    Accepted {
        /// The assigned provider.
        provider: ProviderId,
    },
    /// Work has started.
    InProgress {
        /// The assigned provider.
        provider: ProviderId,
    },
    /// Work done and paid.
    Completed {
        /// The provider who was paid.
        provider: ProviderId,
    },
    /// Cancelled by the customer; the hold is released (while `wake_at_ms` is set,
    /// the release is not yet confirmed and is retried).
    Cancelled,
    /// No provider took it; the hold is released (as for `Cancelled`).
    Expired,
}

impl JobStatus {
    /// True for Completed, Cancelled and Expired.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Completed { .. } | JobStatus::Cancelled | JobStatus::Expired
        )
    }

    /// A short lowercase name of the status.
    pub fn name(&self) -> &'static str {
        match self {
            JobStatus::Requested => "requested",
            JobStatus::Offered { .. } => "offered",
            JobStatus::Accepted { .. } => "accepted",
            JobStatus::InProgress { .. } => "in_progress",
            JobStatus::Completed { .. } => "completed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Expired => "expired",
        }
    }

    /// The provider involved, if any.
    pub fn provider(&self) -> Option<ProviderId> {
        match *self {
            JobStatus::Offered { provider, .. }
            | JobStatus::Accepted { provider }
            | JobStatus::InProgress { provider }
            | JobStatus::Completed { provider } => Some(provider),
            _ => None,
        }
    }
}

/// What a customer asks for; encoded and compared when a request key is reused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobRequest {
    /// The skill needed.
    pub skill: Skill,
    /// Where.
    pub location: Coord,
    /// The price, in minor units, held in escrow at booking.
    pub price: i64,
}

/// A job's stored record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Job {
    /// Which job.
    pub id: JobId,
    /// Who asked.
    pub customer: CustomerId,
    /// What was asked.
    pub request: JobRequest,
    /// Platform fee taken on completion, in minor units.
    pub fee: i64,
    /// Current status.
    pub status: JobStatus,
    /// Providers already offered or found unavailable: not offered again.
    pub tried: Vec<ProviderId>,
    /// Offers made so far.
    pub offers: u32,
    /// Idempotency key of the escrow hold on the customer's wallet.
    pub hold_key: String,
    /// When the job actor must look at the job again (offer deadline or retry), ms.
    pub wake_at_ms: Option<u64>,
    /// Result of the proof-of-work check, once the verifier has answered.
    pub verified: Option<bool>,
    /// Created, ms since the epoch.
    pub created_ms: u64,
    /// The zone whose multiplier priced the job (`request.price` is the price
    /// held, after it), if any.
    pub zone: Option<crate::area::ZoneCharge>,
}

/// Why `provider` may not act on `job` now, naming no one else: `forbidden` when
/// the job is offered to or held by another provider, else `conflict` with the
/// job's state by name.
fn not_allowed_to(job: &Job, provider: ProviderId, action: &str) -> CoreError {
    match job.status.provider() {
        Some(holder) if holder != provider => CoreError::Forbidden(format!(
            "job {} is not offered to or held by this provider",
            job.id
        )),
        _ => not_allowed(job, action),
    }
}

/// The job's state does not allow `action`; the message names the state only.
fn not_allowed(job: &Job, action: &str) -> CoreError {
    CoreError::Conflict(format!(
        "job {} cannot {action} while {}",
        job.id,
        job.status.name()
    ))
}

impl Job {
    /// Idempotency key of the release of this job's hold.
    pub fn release_key(&self) -> String {
        format!("{}-release", self.id)
    }

    /// Idempotency key of the capture that pays for this job.
    pub fn capture_key(&self) -> String {
        format!("{}-capture", self.id)
    }

    /// Offers the job to `provider` until `now_ms + timeout_ms`.
    pub fn offer_to(
        &mut self,
        provider: ProviderId,
        now_ms: u64,
        timeout_ms: u64,
    ) -> CoreResult<()> {
        if self.status != JobStatus::Requested {
            return Err(not_allowed(self, "be offered"));
        }
        let deadline_ms = now_ms.saturating_add(timeout_ms);
        self.status = JobStatus::Offered {
            provider,
            deadline_ms,
        };
        self.offers += 1;
        self.passed_over(provider);
        self.wake_at_ms = Some(deadline_ms);
        Ok(())
    }

    /// Notes a provider that must not be offered this job again.
    pub fn passed_over(&mut self, provider: ProviderId) {
        if !self.tried.contains(&provider) {
            self.tried.push(provider);
        }
    }

    /// The offered provider accepts before the deadline.
    pub fn accept(&mut self, provider: ProviderId, now_ms: u64) -> CoreResult<()> {
        match self.status {
            JobStatus::Offered {
                provider: offered,
                deadline_ms,
            } if offered == provider && now_ms < deadline_ms => {
                self.status = JobStatus::Accepted { provider };
                self.wake_at_ms = None;
                Ok(())
            }
            JobStatus::Offered {
                provider: offered, ..
            } if offered == provider => Err(CoreError::Conflict(format!(
                "the offer of {} has expired",
                self.id
            ))),
            _ => Err(not_allowed_to(self, provider, "be accepted")),
        }
    }

    /// The offered provider declines: back to Requested for the next candidate.
    pub fn decline(&mut self, provider: ProviderId) -> CoreResult<()> {
        match self.status {
            JobStatus::Offered {
                provider: offered, ..
            } if offered == provider => {
                self.status = JobStatus::Requested;
                self.wake_at_ms = None;
                Ok(())
            }
            _ => Err(not_allowed_to(self, provider, "be declined")),
        }
    }

    /// If the offer's deadline has passed, returns to Requested and names who held it.
    pub fn lapse_offer(&mut self, now_ms: u64) -> Option<ProviderId> {
        match self.status {
            JobStatus::Offered {
                provider,
                deadline_ms,
            } if now_ms >= deadline_ms => {
                self.status = JobStatus::Requested;
                self.wake_at_ms = None;
                Some(provider)
            }
            _ => None,
        }
    }

    /// The assigned provider starts work.
    pub fn start(&mut self, provider: ProviderId) -> CoreResult<()> {
        match self.status {
            JobStatus::Accepted { provider: assigned } if assigned == provider => {
                self.status = JobStatus::InProgress { provider };
                Ok(())
            }
            _ => Err(not_allowed_to(self, provider, "be started")),
        }
    }

    /// Checks that `provider` may complete the job now.
    pub fn check_complete(&self, provider: ProviderId) -> CoreResult<()> {
        match self.status {
            JobStatus::InProgress { provider: assigned } if assigned == provider => Ok(()),
            _ => Err(not_allowed_to(self, provider, "be completed")),
        }
    }

    /// Work done (after the capture succeeded).
    pub fn complete(&mut self, provider: ProviderId) -> CoreResult<()> {
        self.check_complete(provider)?;
        self.status = JobStatus::Completed { provider };
        Ok(())
    }

    /// Checks that the customer may cancel now (before work starts).
    pub fn check_cancel(&self, customer: CustomerId) -> CoreResult<()> {
        if customer != self.customer {
            return Err(CoreError::NotFound(self.id.to_string()));
        }
        match self.status {
            JobStatus::Requested | JobStatus::Offered { .. } | JobStatus::Accepted { .. } => Ok(()),
            _ => Err(not_allowed(self, "be cancelled")),
        }
    }

    /// Cancelled, with the release of the hold due by `release_due_ms`. Stored
    /// *before* the release is sent: a release whose answer is lost (a timeout, a
    /// failed flush) is retried by the job's timer, and the job, already ended, is
    /// never offered again — so a late release can never meet a capture.
    pub fn cancel(&mut self, customer: CustomerId, release_due_ms: u64) -> CoreResult<()> {
        self.check_cancel(customer)?;
        self.status = JobStatus::Cancelled;
        self.wake_at_ms = Some(release_due_ms);
        Ok(())
    }

    /// Expired, with the release of the hold due by `release_due_ms` (as for
    /// [`Job::cancel`]).
    pub fn expire(&mut self, release_due_ms: u64) -> CoreResult<()> {
        if self.status != JobStatus::Requested {
            return Err(not_allowed(self, "expire"));
        }
        self.status = JobStatus::Expired;
        self.wake_at_ms = Some(release_due_ms);
        Ok(())
    }

    /// Whether the job ended unpaid and the release of its hold is not yet confirmed.
    pub fn release_pending(&self) -> bool {
        matches!(self.status, JobStatus::Cancelled | JobStatus::Expired)
            && self.wake_at_ms.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            id: JobId(1),
            customer: CustomerId(10),
            request: JobRequest {
                skill: Skill::new("plumber").unwrap(),
                location: Coord::new(0.0, 0.0).unwrap(),
                price: 1_000,
            },
            fee: 100,
            status: JobStatus::Requested,
            tried: vec![],
            offers: 0,
            hold_key: "k".into(),
            wake_at_ms: None,
            verified: None,
            created_ms: 0,
            zone: None,
        }
    }

    #[test]
    fn offer_accept_start_complete() {
        let mut job = job();
        let p = ProviderId(5);
        job.offer_to(p, 1_000, 500).unwrap();
        assert!(
            job.accept(ProviderId(6), 1_100).is_err(),
            "only the offered provider"
        );
        assert!(job.accept(p, 1_500).is_err(), "deadline passed");
        job.accept(p, 1_499).unwrap();
        assert!(job.accept(p, 1_499).is_err(), "accepting twice");
        assert!(job.check_complete(p).is_err(), "not started");
        job.start(p).unwrap();
        job.complete(p).unwrap();
        assert!(job.status.is_terminal());
        assert!(job.check_cancel(CustomerId(10)).is_err());
    }

    #[test]
    fn decline_and_lapse_return_to_requested() {
        let mut job = job();
        job.offer_to(ProviderId(1), 0, 100).unwrap();
        job.decline(ProviderId(1)).unwrap();
        job.offer_to(ProviderId(2), 0, 100).unwrap();
        assert_eq!(job.lapse_offer(99), None);
        assert_eq!(job.lapse_offer(100), Some(ProviderId(2)));
        assert_eq!(job.tried, vec![ProviderId(1), ProviderId(2)]);
        assert_eq!(job.offers, 2);
        assert!(job.check_cancel(CustomerId(11)).is_err(), "not the owner");
        job.cancel(CustomerId(10), 500).unwrap();
        assert!(
            job.release_pending(),
            "ended before the release is confirmed"
        );
        assert!(job.expire(500).is_err());
        assert!(
            job.offer_to(ProviderId(3), 0, 100).is_err(),
            "never offered again"
        );
    }
}
