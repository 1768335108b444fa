//! The job's dispatch machine: offers, declines, timeouts, expiry, cancel and the
//! settlement of the escrow hold as one pure function, [`step`].
//!
//! [`step`] takes the job, one [`Input`] and the time, and returns the next job and
//! the [`Effect`]s to carry out, in order. It reads no clock, calls no actor and does
//! no IO: the job actor feeds it inputs (its commands, timer wake-ups, and the
//! answers to the effects it carried out), and persists and carries out the effects.
//! An effect that needs an answer (a search, an offer, an assignment, a capture or a
//! release) is always the last of its step; the actor feeds the answer back as the
//! next input. A refused input changes nothing: [`step`] answers it with the
//! [`CoreError`] of the job's own transition (see [`crate::job`]).
//!
//! The cascade: a dispatch searches for the nearest free candidates not yet tried
//! (round 0), offers the job to them one by one until one takes the offer, and
//! searches again (the next round) when none could; after [`DISPATCH_ROUNDS_MAX`]
//! rounds the job waits for its timer. No candidate at all, or
//! `offer_tries_max` offers made, expires the job and releases its hold.

use crate::config::DispatchSection;
use crate::error::{CoreError, CoreResult};
use crate::ids::{CustomerId, ProviderId, WalletId};
use crate::job::{Job, JobStatus};

/// Searches in one dispatch before the job waits for its next wake-up (each search
/// excludes the candidates the previous one found unavailable).
pub const DISPATCH_ROUNDS_MAX: u32 = 4;

/// Deadline ticks to wait before retrying a step that failed for a retryable reason.
pub const RETRY_TICKS: u64 = 4;

/// The limits the machine works within (from the `dispatch` config section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatchLimits {
    /// Time a provider has to accept an offer.
    pub offer_timeout_ms: u64,
    /// Offers made for one job before it expires.
    pub offer_tries_max: u32,
    /// Searches in one dispatch before the job waits for its timer.
    pub rounds_max: u32,
    /// Wait before a deferred step (a dispatch that found no one free, a release
    /// not yet confirmed) is tried again.
    pub retry_delay_ms: u64,
}

impl DispatchLimits {
    /// The limits the job actor uses with this config: [`DISPATCH_ROUNDS_MAX`]
    /// rounds, retries [`RETRY_TICKS`] deadline ticks later.
    pub fn from_config(dispatch: &DispatchSection) -> DispatchLimits {
        DispatchLimits {
            offer_timeout_ms: dispatch.offer_timeout_ms,
            offer_tries_max: dispatch.offer_tries_max,
            rounds_max: DISPATCH_ROUNDS_MAX,
            retry_delay_ms: dispatch.deadline_tick_ms.saturating_mul(RETRY_TICKS),
        }
    }
}

/// An offer to one candidate, and where the cascade stands when it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The candidate offered the job.
    pub provider: ProviderId,
    /// When the offer is made, ms since the epoch.
    pub at_ms: u64,
    /// Until when the candidate may accept, ms since the epoch.
    pub deadline_ms: u64,
    /// The search round that found the candidate, from 0.
    pub round: u32,
    /// The round's candidates not offered yet, nearest first.
    pub rest: Vec<ProviderId>,
}

/// What the machine is told: a command, a timer, or the answer to an [`Effect`].
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Make the first offer (after booking), or look for a candidate again.
    Dispatch,
    /// The offered provider accepts.
    Accept {
        /// Who accepts.
        provider: ProviderId,
    },
    /// The offered provider declines.
    Decline {
        /// Who declines.
        provider: ProviderId,
    },
    /// The assigned provider starts work.
    Start {
        /// Who starts.
        provider: ProviderId,
    },
    /// The assigned provider finished: capture the payment.
    Complete {
        /// Who completes.
        provider: ProviderId,
        /// Proof of work, handed on to the verifier once paid.
        proof: Vec<u8>,
    },
    /// The customer cancels: release the hold.
    Cancel {
        /// Who cancels (must own the job).
        customer: CustomerId,
    },
    /// The job's timer is due (or may be): lapse an expired offer or retry a step.
    Wake,
    /// Answer to [`Effect::Search`]: the candidates found, nearest first.
    Found {
        /// The round of the search.
        round: u32,
        /// The candidates, nearest first (none: the job expires).
        providers: Vec<ProviderId>,
    },
    /// Answer to [`Effect::Search`]: the search failed.
    SearchFailed(CoreError),
    /// Answer to [`Effect::Offer`]: the candidate holds the offer.
    OfferTaken(Offer),
    /// Answer to [`Effect::Offer`]: the candidate could not take it.
    OfferRefused(Offer),
    /// Answer to [`Effect::Assign`]: the provider holds the job.
    Assigned {
        /// The provider.
        provider: ProviderId,
        /// When the accept was asked for, ms (as in the effect).
        at_ms: u64,
    },
    /// Answer to [`Effect::Assign`]: the provider could not take the job.
    AssignFailed(CoreError),
    /// Answer to [`Effect::Capture`]: the payment is captured.
    CaptureConfirmed {
        /// The provider paid.
        provider: ProviderId,
        /// The proof of work (as in the effect).
        proof: Vec<u8>,
    },
    /// Answer to [`Effect::Capture`]: the capture was not confirmed.
    CaptureFailed(CoreError),
    /// Answer to [`Effect::Release`]: the hold is released.
    ReleaseConfirmed,
    /// Answer to [`Effect::Release`]: the release was not confirmed.
    ReleaseFailed(CoreError),
}

/// What the job actor must do, in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Store this record of the job (its `wake_at_ms` is its timer) and tell the
    /// customer if its status changed.
    Persist(Job),
    /// Find the nearest free candidates for the job; answer [`Input::Found`] or
    /// [`Input::SearchFailed`].
    Search {
        /// The round of the search, from 0.
        round: u32,
        /// Providers not to return: already offered or found unavailable.
        exclude: Vec<ProviderId>,
    },
    /// Ask the candidate to hold the offer; answer [`Input::OfferTaken`] or
    /// [`Input::OfferRefused`] with the same offer.
    Offer(Offer),
    /// Push the offer (stored by now) to the provider's device.
    AnnounceOffer {
        /// The provider holding the offer.
        provider: ProviderId,
        /// Until when it may accept, ms.
        deadline_ms: u64,
    },
    /// Tell the provider its offer ended (a failure is only logged).
    EndOffer {
        /// The provider that held the offer.
        provider: ProviderId,
    },
    /// Tell the provider the job ended (a failure is only logged).
    EndJob {
        /// The provider that held the job.
        provider: ProviderId,
    },
    /// Assign the job to the accepting provider; answer [`Input::Assigned`] or
    /// [`Input::AssignFailed`].
    Assign {
        /// The provider.
        provider: ProviderId,
        /// When the accept was asked for, ms.
        at_ms: u64,
    },
    /// Capture the held price to the provider, minus the fee; answer
    /// [`Input::CaptureConfirmed`] or [`Input::CaptureFailed`].
    Capture {
        /// The customer's wallet holding the price.
        wallet: WalletId,
        /// Idempotency key: the same for every try.
        key: String,
        /// The price, in minor units.
        amount: i64,
        /// The platform's fee, in minor units.
        fee: i64,
        /// The provider paid.
        provider: ProviderId,
        /// The proof of work, for the verifier once paid.
        proof: Vec<u8>,
    },
    /// Release the held price back to the customer; answer
    /// [`Input::ReleaseConfirmed`] or [`Input::ReleaseFailed`].
    Release {
        /// The customer's wallet holding the price.
        wallet: WalletId,
        /// Idempotency key: the same for every try.
        key: String,
        /// The price, in minor units.
        amount: i64,
    },
    /// Hand the proof of work to the verifier.
    Verify {
        /// The provider paid.
        provider: ProviderId,
        /// The proof.
        proof: Vec<u8>,
    },
}

impl Effect {
    /// True for the effects whose answer is the next input.
    pub fn awaits_answer(&self) -> bool {
        matches!(
            self,
            Effect::Search { .. }
                | Effect::Offer(_)
                | Effect::Assign { .. }
                | Effect::Capture { .. }
                | Effect::Release { .. }
        )
    }
}

/// One step of the machine: the job after `input` at `now_ms`, and what to do.
///
/// Refused inputs change nothing and give the typed error of the job's transition
/// (a [`CoreError::Conflict`] for a wrong state, `NotFound` for a stranger's
/// cancel), or the error the effect's answer carried.
pub fn step(
    job: &Job,
    input: Input,
    now_ms: u64,
    limits: &DispatchLimits,
) -> CoreResult<(Job, Vec<Effect>)> {
    let mut machine = Machine {
        job: job.clone(),
        effects: Vec::new(),
        now_ms,
        limits,
    };
    machine.apply(input)?;
    Ok((machine.job, machine.effects))
}

/// The job being stepped and the effects gathered so far.
struct Machine<'a> {
    job: Job,
    effects: Vec<Effect>,
    now_ms: u64,
    limits: &'a DispatchLimits,
}

impl Machine<'_> {
    fn apply(&mut self, input: Input) -> CoreResult<()> {
        match input {
            Input::Dispatch => self.begin_round(0),
            Input::Accept { provider } => self.accept(provider),
            Input::Decline { provider } => self.decline(provider),
            Input::Start { provider } => self.start(provider),
            Input::Complete { provider, proof } => self.complete(provider, proof),
            Input::Cancel { customer } => self.cancel(customer),
            Input::Wake => self.wake(),
            Input::Found { round, providers } => self.found(round, providers),
            Input::OfferTaken(offer) => self.offer_taken(offer),
            Input::OfferRefused(offer) => self.offer_refused(offer),
            Input::Assigned { provider, at_ms } => self.assigned(provider, at_ms),
            Input::CaptureConfirmed { provider, proof } => self.captured(provider, proof),
            Input::ReleaseConfirmed => self.released(),
            Input::ReleaseFailed(error) => self.release_failed(error),
            Input::SearchFailed(error)
            | Input::AssignFailed(error)
            | Input::CaptureFailed(error) => Err(error),
        }
    }

    fn persist(&mut self) {
        self.effects.push(Effect::Persist(self.job.clone()));
    }

    fn retry_at_ms(&self) -> u64 {
        self.now_ms.saturating_add(self.limits.retry_delay_ms)
    }

    /// Tells the provider a status it held ended.
    fn end_for_provider(&mut self, previous: JobStatus) {
        let effect = match previous {
            JobStatus::Offered { provider, .. } => Effect::EndOffer { provider },
            JobStatus::Accepted { provider }
            | JobStatus::InProgress { provider }
            | JobStatus::Completed { provider } => Effect::EndJob { provider },
            JobStatus::Requested | JobStatus::Cancelled | JobStatus::Expired => return,
        };
        self.effects.push(effect);
    }

    /// Starts search round `round` of a Requested job, or expires it once it had
    /// all its offers; anything but Requested is left alone.
    fn begin_round(&mut self, round: u32) -> CoreResult<()> {
        if self.job.status != JobStatus::Requested {
            return Ok(());
        }
        if self.job.offers >= self.limits.offer_tries_max {
            return self.expire();
        }
        self.effects.push(Effect::Search {
            round,
            exclude: self.job.tried.clone(),
        });
        Ok(())
    }

    fn found(&mut self, round: u32, providers: Vec<ProviderId>) -> CoreResult<()> {
        if self.job.status != JobStatus::Requested {
            return Ok(()); // a stale answer: the job moved on
        }
        if providers.is_empty() {
            return self.expire();
        }
        self.offer_next(round, providers)
    }

    /// Offers the job to the round's nearest candidate not tried yet; with none
    /// left, searches again, or waits for the timer after the last round.
    fn offer_next(&mut self, round: u32, candidates: Vec<ProviderId>) -> CoreResult<()> {
        let mut candidates = candidates.into_iter();
        let Some(provider) = candidates.find(|p| !self.job.tried.contains(p)) else {
            return self.next_round(round);
        };
        self.effects.push(Effect::Offer(Offer {
            provider,
            at_ms: self.now_ms,
            deadline_ms: self.now_ms.saturating_add(self.limits.offer_timeout_ms),
            round,
            rest: candidates.collect(),
        }));
        Ok(())
    }

    fn next_round(&mut self, round: u32) -> CoreResult<()> {
        let next = round.saturating_add(1);
        if next < self.limits.rounds_max {
            return self.begin_round(next);
        }
        self.schedule_retry();
        Ok(())
    }

    fn schedule_retry(&mut self) {
        self.job.wake_at_ms = Some(self.retry_at_ms());
        self.persist();
    }

    fn offer_taken(&mut self, offer: Offer) -> CoreResult<()> {
        self.job
            .offer_to(offer.provider, offer.at_ms, self.limits.offer_timeout_ms)?;
        self.persist();
        self.effects.push(Effect::AnnounceOffer {
            provider: offer.provider,
            deadline_ms: offer.deadline_ms,
        });
        Ok(())
    }

    fn offer_refused(&mut self, offer: Offer) -> CoreResult<()> {
        if self.job.status != JobStatus::Requested {
            return Ok(()); // a stale answer: the job moved on
        }
        self.job.passed_over(offer.provider);
        self.offer_next(offer.round, offer.rest)
    }

    /// Marks the job Expired (stored first, see [`Job::expire`]), then releases its hold.
    fn expire(&mut self) -> CoreResult<()> {
        self.job.expire(self.retry_at_ms())?;
        self.persist();
        self.release();
        Ok(())
    }

    fn release(&mut self) {
        self.effects.push(Effect::Release {
            wallet: self.job.customer.into(),
            key: self.job.release_key(),
            amount: self.job.request.price,
        });
    }

    fn released(&mut self) -> CoreResult<()> {
        self.job.wake_at_ms = None;
        self.persist();
        Ok(())
    }

    /// A release not confirmed now is retried by the job's timer, under the same
    /// idempotency key, until it is; a refusal is a bug.
    fn release_failed(&mut self, error: CoreError) -> CoreResult<()> {
        if !error.is_retryable() {
            return Err(CoreError::Internal(format!(
                "release of {} refused: {error}",
                self.job.id
            )));
        }
        self.schedule_retry();
        Ok(())
    }

    fn accept(&mut self, provider: ProviderId) -> CoreResult<()> {
        if self.job.status == (JobStatus::Accepted { provider }) {
            return Ok(()); // a retry of an accept that succeeded
        }
        self.job.clone().accept(provider, self.now_ms)?;
        self.effects.push(Effect::Assign {
            provider,
            at_ms: self.now_ms,
        });
        Ok(())
    }

    fn assigned(&mut self, provider: ProviderId, at_ms: u64) -> CoreResult<()> {
        self.job.accept(provider, at_ms)?;
        self.persist();
        Ok(())
    }

    fn decline(&mut self, provider: ProviderId) -> CoreResult<()> {
        let previous = self.job.status;
        self.job.decline(provider)?;
        self.persist();
        self.end_for_provider(previous);
        self.begin_round(0)
    }

    fn start(&mut self, provider: ProviderId) -> CoreResult<()> {
        self.job.start(provider)?;
        self.persist();
        Ok(())
    }

    fn complete(&mut self, provider: ProviderId, proof: Vec<u8>) -> CoreResult<()> {
        self.job.check_complete(provider)?;
        self.effects.push(Effect::Capture {
            wallet: self.job.customer.into(),
            key: self.job.capture_key(),
            amount: self.job.request.price,
            fee: self.job.fee,
            provider,
            proof,
        });
        Ok(())
    }

    fn captured(&mut self, provider: ProviderId, proof: Vec<u8>) -> CoreResult<()> {
        self.job.complete(provider)?;
        self.persist();
        self.end_for_provider(self.job.status);
        self.effects.push(Effect::Verify { provider, proof });
        Ok(())
    }

    fn cancel(&mut self, customer: CustomerId) -> CoreResult<()> {
        if self.job.status == JobStatus::Cancelled && self.job.customer == customer {
            return Ok(()); // a retry of a cancel that succeeded
        }
        let previous = self.job.status;
        self.job.cancel(customer, self.retry_at_ms())?;
        self.persist();
        self.end_for_provider(previous);
        self.release();
        Ok(())
    }

    /// A due timer: retries an unconfirmed release, lapses an offer past its
    /// deadline, dispatches a Requested job again, or drops a stale timer.
    fn wake(&mut self) -> CoreResult<()> {
        if self.job.wake_at_ms.is_none_or(|at| at > self.now_ms) {
            return Ok(());
        }
        if self.job.release_pending() {
            self.release();
            return Ok(());
        }
        let previous = self.job.status;
        if self.job.lapse_offer(self.now_ms).is_some() {
            self.persist();
            self.end_for_provider(previous);
        }
        if self.job.status == JobStatus::Requested {
            return self.begin_round(0);
        }
        // A stale timer (the job moved on): drop it.
        self.job.wake_at_ms = None;
        self.persist();
        Ok(())
    }
}
