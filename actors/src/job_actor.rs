//! The job actor: holds escrow, offers the job to the nearest available provider,
//! cascades on decline or timeout, and pays out or releases at the end.

use crate::context::NodeContext;
use crate::entity::{EntityKind, Registry};
use crate::error::{CoreError, CoreResult};
use crate::ids::{CustomerId, JobId, ProviderId, WalletId};
use crate::job::{Job, JobStatus};
use crate::ledger::LedgerOp;
use crate::provider_actor::ProviderCommand;
use crate::services::{JobEvent, ProviderPush};
use ractor::RpcReplyPort;
use std::sync::Arc;

/// Searches in one dispatch before the job waits for the next wake-up (each search
/// excludes the candidates the previous one found unavailable).
const DISPATCH_ROUNDS_MAX: usize = 4;

/// Deadline ticks to wait before retrying a step that failed for a retryable reason.
const RETRY_TICKS: u64 = 4;

/// Commands of a job.
pub enum JobCommand {
    /// Make the first offer (after booking).
    Dispatch {
        /// Answer: the job after the attempt.
        reply: RpcReplyPort<CoreResult<Job>>,
    },
    /// The offered provider accepts.
    Accept {
        /// Who accepts.
        provider: ProviderId,
        /// Answer.
        reply: RpcReplyPort<CoreResult<Job>>,
    },
    /// The offered provider declines.
    Decline {
        /// Who declines.
        provider: ProviderId,
        /// Answer.
        reply: RpcReplyPort<CoreResult<Job>>,
    },
    /// The assigned provider starts work.
    Start {
        /// Who starts.
        provider: ProviderId,
        /// Answer.
        reply: RpcReplyPort<CoreResult<Job>>,
    },
    /// The assigned provider finished: capture the payment.
    Complete {
        /// Who completes.
        provider: ProviderId,
        /// Proof of work for the verifier.
        proof: Vec<u8>,
        /// Answer.
        reply: RpcReplyPort<CoreResult<Job>>,
    },
    /// The customer cancels: release the hold.
    Cancel {
        /// Who cancels (must own the job).
        customer: CustomerId,
        /// Answer.
        reply: RpcReplyPort<CoreResult<Job>>,
    },
    /// A timer is due: lapse an expired offer or retry a step.
    Wake {
        /// Answer.
        reply: RpcReplyPort<CoreResult<Job>>,
    },
    /// Current record.
    Get {
        /// Answer.
        reply: RpcReplyPort<CoreResult<Job>>,
    },
    /// The verifier's verdict on the proof of work.
    Verified {
        /// Whether the proof held.
        ok: bool,
    },
}

/// The job entity kind.
pub struct JobKind;

impl EntityKind for JobKind {
    type Id = JobId;
    type Command = JobCommand;
    type State = Job;
    const KIND: &'static str = "job";
    const FAILPOINT: &'static str = crate::failpoints::JOB_HANDLE;

    fn raw_id(id: JobId) -> u64 {
        id.0
    }

    fn registry(ctx: &NodeContext) -> &Registry<Self> {
        &ctx.jobs
    }

    async fn load(id: JobId, ctx: &Arc<NodeContext>) -> CoreResult<Job> {
        ctx.store
            .get_by_id(&ctx.store.jobs, id.0)?
            .ok_or_else(|| CoreError::NotFound(id.to_string()))
    }

    /// Settled: completed and verified, or cancelled/expired with the hold released.
    fn finished(job: &Job) -> bool {
        match job.status {
            JobStatus::Completed { .. } => job.verified.is_some(),
            JobStatus::Cancelled | JobStatus::Expired => !job.release_pending(),
            _ => false,
        }
    }

    async fn handle(_id: JobId, job: &mut Job, command: JobCommand, ctx: &Arc<NodeContext>) {
        let (reply, result) = match command {
            JobCommand::Dispatch { reply } => (reply, advance(ctx, job).await),
            JobCommand::Accept { provider, reply } => (reply, accept(ctx, job, provider).await),
            JobCommand::Decline { provider, reply } => (reply, decline(ctx, job, provider).await),
            JobCommand::Start { provider, reply } => (reply, start(ctx, job, provider)),
            JobCommand::Complete {
                provider,
                proof,
                reply,
            } => (reply, complete(ctx, job, provider, proof).await),
            JobCommand::Cancel { customer, reply } => (reply, cancel(ctx, job, customer).await),
            JobCommand::Wake { reply } => (reply, wake(ctx, job).await),
            JobCommand::Get { reply } => {
                let _ = reply.send(Ok(job.clone()));
                return;
            }
            JobCommand::Verified { ok } => {
                let mut next = job.clone();
                next.verified = Some(ok);
                if let Err(error) = save(ctx, job, next) {
                    tracing::warn!(job = %job.id, %error, "verification result not stored");
                }
                return;
            }
        };
        let answer = result.map(|()| job.clone());
        ctx.durability.reply(reply, answer).await;
    }
}

/// Stores `next` (moving its timer) and makes it the state; tells the customer.
fn save(ctx: &NodeContext, job: &mut Job, next: Job) -> CoreResult<()> {
    ctx.store
        .put_job(next.id, &next, job.wake_at_ms, next.wake_at_ms)?;
    let changed = next.status != job.status;
    *job = next;
    if changed {
        ctx.services.notify_job(
            &ctx.stats,
            JobEvent {
                job: job.id,
                customer: job.customer,
                status: job.status,
                at_ms: ctx.clock.now_ms(),
            },
        );
    }
    Ok(())
}

async fn wallet_op(
    ctx: &NodeContext,
    wallet: WalletId,
    key: String,
    op: LedgerOp,
) -> CoreResult<()> {
    ctx.wallet_op(wallet, key, op).await.map(drop)
}

async fn provider_call(
    ctx: &NodeContext,
    provider: ProviderId,
    command: impl FnOnce(RpcReplyPort<CoreResult<()>>) -> ProviderCommand,
) -> CoreResult<()> {
    ctx.providers.call(provider, command).await
}

/// Tells a provider an offer or job ended; a failure is logged, not fatal (its
/// offer lapses on its own).
async fn release_provider(ctx: &NodeContext, job: JobId, status: JobStatus) {
    let result = match status {
        JobStatus::Offered { provider, .. } => {
            ctx.services
                .push_provider(&ctx.stats, provider, ProviderPush::OfferEnded { job });
            provider_call(ctx, provider, |reply| ProviderCommand::OfferEnded {
                job,
                reply,
            })
            .await
        }
        JobStatus::Accepted { provider }
        | JobStatus::InProgress { provider }
        | JobStatus::Completed { provider } => {
            provider_call(ctx, provider, |reply| ProviderCommand::JobEnded {
                job,
                reply,
            })
            .await
        }
        _ => Ok(()),
    };
    if let Err(error) = result {
        tracing::warn!(%job, %error, "provider not told that the job ended");
    }
}

fn schedule_retry(ctx: &NodeContext, job: &mut Job) -> CoreResult<()> {
    let mut next = job.clone();
    let tick_ms = ctx.config.dispatch.deadline_tick_ms;
    next.wake_at_ms = Some(ctx.clock.now_ms() + tick_ms * RETRY_TICKS);
    save(ctx, job, next)
}

/// Offers a Requested job to the nearest available candidate, or expires it.
async fn advance(ctx: &NodeContext, job: &mut Job) -> CoreResult<()> {
    let dispatch = &ctx.config.dispatch;
    for _ in 0..DISPATCH_ROUNDS_MAX {
        if job.status != JobStatus::Requested {
            return Ok(());
        }
        if job.offers >= dispatch.offer_tries_max {
            return expire(ctx, job).await;
        }
        let candidates = ctx.geo.read().nearby(
            job.request.location,
            &job.request.skill,
            dispatch.candidates_per_search as usize,
            dispatch.search_radius_m,
            &|provider| job.tried.contains(&provider),
        )?;
        if candidates.is_empty() {
            return expire(ctx, job).await;
        }
        for candidate in candidates {
            if offer(ctx, job, candidate.provider).await? {
                return Ok(());
            }
        }
    }
    schedule_retry(ctx, job)
}

/// Offers the job to one provider; false when the provider could not take it.
async fn offer(ctx: &NodeContext, job: &mut Job, provider: ProviderId) -> CoreResult<bool> {
    let now_ms = ctx.clock.now_ms();
    let timeout_ms = ctx.config.dispatch.offer_timeout_ms;
    let mut next = job.clone();
    next.offer_to(provider, now_ms, timeout_ms)?;
    let until_ms = now_ms + timeout_ms;
    let id = job.id;
    let taken = provider_call(ctx, provider, |reply| ProviderCommand::Offer {
        job: id,
        until_ms,
        reply,
    })
    .await;
    if let Err(error) = taken {
        tracing::debug!(job = %id, %provider, %error, "candidate cannot take the offer");
        job.passed_over(provider);
        return Ok(false);
    }
    save(ctx, job, next)?;
    let push = ProviderPush::Offer {
        job: id,
        skill: job.request.skill.clone(),
        location: job.request.location,
        price: job.request.price,
        deadline_ms: until_ms,
    };
    ctx.services.push_provider(&ctx.stats, provider, push);
    Ok(true)
}

/// When a deferred step is tried again.
fn retry_at(ctx: &NodeContext) -> u64 {
    ctx.clock.now_ms() + ctx.config.dispatch.deadline_tick_ms * RETRY_TICKS
}

/// Marks the job Expired (stored first, see [`Job::expire`]), then releases its hold.
async fn expire(ctx: &NodeContext, job: &mut Job) -> CoreResult<()> {
    let mut next = job.clone();
    next.expire(retry_at(ctx))?;
    save(ctx, job, next)?;
    settle_release(ctx, job).await
}

/// Releases the hold of a job that ended unpaid (its end already stored); a
/// release that cannot be confirmed now is retried by the job's timer, under the
/// same idempotency key, until it is.
async fn settle_release(ctx: &NodeContext, job: &mut Job) -> CoreResult<()> {
    let release = LedgerOp::Release {
        amount: job.request.price,
    };
    match wallet_op(ctx, job.customer.into(), job.release_key(), release).await {
        Ok(()) => {
            let mut next = job.clone();
            next.wake_at_ms = None;
            save(ctx, job, next)
        }
        Err(error) if error.is_retryable() => {
            tracing::info!(job = %job.id, %error, "release deferred");
            schedule_retry(ctx, job)
        }
        Err(error) => Err(CoreError::Internal(format!(
            "release of {} refused: {error}",
            job.id
        ))),
    }
}

async fn accept(ctx: &NodeContext, job: &mut Job, provider: ProviderId) -> CoreResult<()> {
    if job.status == (JobStatus::Accepted { provider }) {
        return Ok(()); // a retry of an accept that succeeded
    }
    let mut next = job.clone();
    next.accept(provider, ctx.clock.now_ms())?;
    let id = job.id;
    provider_call(ctx, provider, |reply| ProviderCommand::Assign {
        job: id,
        reply,
    })
    .await?;
    save(ctx, job, next)
}

async fn decline(ctx: &NodeContext, job: &mut Job, provider: ProviderId) -> CoreResult<()> {
    let mut next = job.clone();
    next.decline(provider)?;
    let previous = job.status;
    save(ctx, job, next)?;
    release_provider(ctx, job.id, previous).await;
    advance(ctx, job).await
}

fn start(ctx: &NodeContext, job: &mut Job, provider: ProviderId) -> CoreResult<()> {
    let mut next = job.clone();
    next.start(provider)?;
    save(ctx, job, next)
}

async fn complete(
    ctx: &NodeContext,
    job: &mut Job,
    provider: ProviderId,
    proof: Vec<u8>,
) -> CoreResult<()> {
    job.check_complete(provider)?;
    let capture = LedgerOp::Capture {
        amount: job.request.price,
        fee: job.fee,
        payee: provider.into(),
    };
    wallet_op(ctx, job.customer.into(), job.capture_key(), capture).await?;
    let mut next = job.clone();
    next.complete(provider)?;
    save(ctx, job, next)?;
    release_provider(ctx, job.id, job.status).await;
    ctx.services.verify(&ctx.stats, job.id, provider, proof);
    Ok(())
}

async fn cancel(ctx: &NodeContext, job: &mut Job, customer: CustomerId) -> CoreResult<()> {
    if job.status == JobStatus::Cancelled && job.customer == customer {
        return Ok(()); // a retry of a cancel that succeeded
    }
    let previous = job.status;
    let mut next = job.clone();
    next.cancel(customer, retry_at(ctx))?;
    save(ctx, job, next)?;
    release_provider(ctx, job.id, previous).await;
    settle_release(ctx, job).await
}

async fn wake(ctx: &NodeContext, job: &mut Job) -> CoreResult<()> {
    let now_ms = ctx.clock.now_ms();
    if job.wake_at_ms.is_none_or(|at| at > now_ms) {
        return Ok(());
    }
    if job.release_pending() {
        return settle_release(ctx, job).await;
    }
    let previous = job.status;
    let mut next = job.clone();
    if next.lapse_offer(now_ms).is_some() {
        save(ctx, job, next)?;
        release_provider(ctx, job.id, previous).await;
    }
    if job.status == JobStatus::Requested {
        return advance(ctx, job).await;
    }
    // A stale timer (the job moved on): drop it.
    let mut next = job.clone();
    next.wake_at_ms = None;
    save(ctx, job, next)
}
