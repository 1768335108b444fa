//! The job actor: holds escrow, offers the job to the nearest available provider,
//! cascades on decline or timeout, and pays out or releases at the end.
//!
//! The decisions are the pure [`dispatch`] machine's: the actor turns its commands
//! into [`Input`]s, steps the machine, and persists and carries out the [`Effect`]s
//! (searches, calls to providers and wallets, pushes), feeding their answers back.

use crate::cluster_hooks::{CandidateQuery, ProviderCall};
use crate::context::{NodeContext, NodeStats};
use crate::dispatch::{self, DispatchLimits, Effect, Input, Offer};
use crate::entity::{EntityKind, Registry};
use crate::error::{CoreError, CoreResult};
use crate::geo::{rank, Nearby};
use crate::ids::{CustomerId, JobId, ProviderId, WalletId};
use crate::job::{Job, JobStatus};
use crate::ledger::LedgerOp;
use crate::provider_actor::ProviderCommand;
use crate::services::{JobEvent, ProviderPush};
use ractor::RpcReplyPort;
use std::sync::Arc;

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
        let (reply, input) = match command {
            JobCommand::Dispatch { reply } => (reply, Input::Dispatch),
            JobCommand::Accept { provider, reply } => (reply, Input::Accept { provider }),
            JobCommand::Decline { provider, reply } => (reply, Input::Decline { provider }),
            JobCommand::Start { provider, reply } => (reply, Input::Start { provider }),
            JobCommand::Complete {
                provider,
                proof,
                reply,
            } => (reply, Input::Complete { provider, proof }),
            JobCommand::Cancel { customer, reply } => (reply, Input::Cancel { customer }),
            JobCommand::Wake { reply } => (reply, Input::Wake),
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
        let result = run(ctx, job, input).await;
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
        let event = JobEvent {
            job: job.id,
            customer: job.customer,
            status: job.status,
            at_ms: ctx.clock.now_ms(),
        };
        forward_event(ctx, &event);
        ctx.services.notify_job(&ctx.stats, event);
    }
    Ok(())
}

/// Sends a job event to the node the customer reaches this one through, if any.
fn forward_event(ctx: &NodeContext, event: &JobEvent) {
    let Some(cluster) = &ctx.cluster else {
        return;
    };
    let Some(node) = ctx.customer_nodes.get(event.customer) else {
        return;
    };
    let counter = if cluster.forward_job_event(&node, event.clone()) {
        &ctx.stats.pushes_forwarded
    } else {
        &ctx.stats.pushes_forward_dropped
    };
    NodeStats::count(counter);
}

/// Steps the dispatch machine from `input` and carries out its effects, feeding the
/// answer of each awaited effect back in, until the machine has nothing left to ask.
async fn run(ctx: &NodeContext, job: &mut Job, input: Input) -> CoreResult<()> {
    let limits = DispatchLimits::from_config(&ctx.config.dispatch);
    let mut input = Some(input);
    while let Some(next_input) = input.take() {
        let (next, effects) = dispatch::step(job, next_input, ctx.clock.now_ms(), &limits)?;
        for effect in effects {
            if let Some(answer) = carry_out(ctx, job, effect).await? {
                input = Some(answer);
            }
        }
        *job = next;
    }
    Ok(())
}

/// Carries out one effect; the answer, for an effect that awaits one.
async fn carry_out(ctx: &NodeContext, job: &mut Job, effect: Effect) -> CoreResult<Option<Input>> {
    let answer = match effect {
        Effect::Persist(next) => {
            save(ctx, job, next)?;
            return Ok(None);
        }
        Effect::Search { round, exclude } => search(ctx, job, round, exclude).await,
        Effect::Offer(offer) => offer_to(ctx, job.id, offer).await,
        Effect::Assign { provider, at_ms } => assign(ctx, job.id, provider, at_ms).await,
        Effect::Capture {
            wallet,
            key,
            amount,
            fee,
            provider,
            proof,
        } => {
            let capture = LedgerOp::Capture {
                amount,
                fee,
                payee: provider.into(),
            };
            match wallet_op(ctx, wallet, key, capture).await {
                Ok(()) => Input::CaptureConfirmed { provider, proof },
                Err(error) => Input::CaptureFailed(error),
            }
        }
        Effect::Release {
            wallet,
            key,
            amount,
        } => release(ctx, job.id, wallet, key, amount).await,
        Effect::AnnounceOffer {
            provider,
            deadline_ms,
        } => {
            announce_offer(ctx, job, provider, deadline_ms);
            return Ok(None);
        }
        Effect::EndOffer { provider } => {
            end_offer(ctx, job.id, provider).await;
            return Ok(None);
        }
        Effect::EndJob { provider } => {
            end_job(ctx, job.id, provider).await;
            return Ok(None);
        }
        Effect::Verify { provider, proof } => {
            ctx.services.verify(&ctx.stats, job.id, provider, proof);
            return Ok(None);
        }
    };
    Ok(Some(answer))
}

async fn wallet_op(
    ctx: &NodeContext,
    wallet: WalletId,
    key: String,
    op: LedgerOp,
) -> CoreResult<()> {
    ctx.wallet_op(wallet, key, op).await.map(drop)
}

/// Calls a provider: through its actor here, or, for a provider a search found on
/// another node, on that node (`remote` is the same command for the wire).
async fn provider_call(
    ctx: &NodeContext,
    provider: ProviderId,
    command: impl FnOnce(RpcReplyPort<CoreResult<()>>) -> ProviderCommand,
    remote: ProviderCall,
) -> CoreResult<()> {
    if let (Some(cluster), Some(node)) = (&ctx.cluster, ctx.provider_nodes.get(provider)) {
        return cluster.provider_remote(node, provider, remote).await;
    }
    let here = ctx.providers.call(provider, command).await;
    match (&ctx.cluster, here) {
        // Not here, and where it is was forgotten (a restart): ask the others.
        (Some(cluster), Err(CoreError::NotFound(_))) => {
            cluster.provider_everywhere(provider, remote).await
        }
        (_, here) => here,
    }
}

/// Tells a provider on another node that `call` (an end signal) happened, in the
/// background and a few times if the node does not answer; with its node
/// unknown here, every other node is told (end signals are no-ops elsewhere).
fn tell_provider_elsewhere(ctx: &NodeContext, provider: ProviderId, call: ProviderCall) {
    let Some(cluster) = ctx.cluster.clone() else {
        return;
    };
    let node = ctx.provider_nodes.get(provider);
    tokio::spawn(async move {
        for attempt in 0..END_SIGNAL_TRIES {
            let told = match &node {
                Some(node) => {
                    cluster
                        .provider_remote(node.clone(), provider, call.clone())
                        .await
                }
                None => cluster.provider_everywhere(provider, call.clone()).await,
            };
            match told {
                Ok(()) => return,
                Err(error) if !error.is_retryable() || attempt + 1 == END_SIGNAL_TRIES => {
                    tracing::info!(%provider, %error, "provider on another node not told that an offer or job ended");
                    return;
                }
                Err(_) => tokio::time::sleep(END_SIGNAL_RETRY).await,
            }
        }
    });
}

/// Tries of an end signal to a provider on another node.
const END_SIGNAL_TRIES: u32 = 3;

/// Pause between two tries.
const END_SIGNAL_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The nearest available candidates not in `exclude`: this node's, and in a
/// cluster those of every node whose regions reach the search circle, ranked
/// together by [`rank`].
async fn search(ctx: &NodeContext, job: &Job, round: u32, exclude: Vec<ProviderId>) -> Input {
    let dispatch = &ctx.config.dispatch;
    let query = CandidateQuery {
        at: job.request.location,
        skill: job.request.skill.clone(),
        // Peers answer at most the nearby limit each.
        limit: dispatch
            .candidates_per_search
            .min(fixit_protocol::commands::NEARBY_LIMIT_MAX),
        radius_m: dispatch.search_radius_m,
        exclude,
    };
    let local = match ctx.local_candidates(&query) {
        Ok(found) => found,
        Err(error) => return Input::SearchFailed(error),
    };
    let mut found: Vec<(Nearby, Option<String>)> =
        local.into_iter().map(|near| (near, None)).collect();
    if let Some(cluster) = &ctx.cluster {
        let remote = cluster.remote_candidates(query).await;
        found.extend(remote.into_iter().map(|(near, node)| (near, Some(node))));
        // One entry per provider (the nearest), then best first.
        found.sort_by(|a, b| a.0.provider.cmp(&b.0.provider).then(rank(&a.0, &b.0)));
        found.dedup_by_key(|(near, _)| near.provider);
        found.sort_by(|a, b| rank(&a.0, &b.0));
        found.truncate(dispatch.candidates_per_search as usize);
    }
    for (near, node) in &found {
        ctx.provider_nodes.note(near.provider, node.as_deref());
    }
    Input::Found {
        round,
        providers: found.into_iter().map(|(near, _)| near.provider).collect(),
    }
}

/// Asks one candidate to hold the offer.
async fn offer_to(ctx: &NodeContext, job: JobId, offer: Offer) -> Input {
    let provider = offer.provider;
    let until_ms = offer.deadline_ms;
    let taken = provider_call(
        ctx,
        provider,
        |reply| ProviderCommand::Offer {
            job,
            until_ms,
            reply,
        },
        ProviderCall::Offer { job, until_ms },
    )
    .await;
    match taken {
        Ok(()) => {
            if ctx.provider_nodes.get(provider).is_some() {
                NodeStats::count(&ctx.stats.offers_across_regions);
            }
            Input::OfferTaken(offer)
        }
        Err(error) => {
            tracing::debug!(%job, %provider, %error, "candidate cannot take the offer");
            if error.is_retryable() && ctx.provider_nodes.get(provider).is_some() {
                // The other node may have applied the offer before its answer
                // was lost: end it there, so the provider is free again.
                tell_provider_elsewhere(ctx, provider, ProviderCall::OfferEnded { job });
            }
            Input::OfferRefused(offer)
        }
    }
}

/// Pushes a stored offer to the provider's device.
fn announce_offer(ctx: &NodeContext, job: &Job, provider: ProviderId, deadline_ms: u64) {
    let push = ProviderPush::Offer {
        job: job.id,
        skill: job.request.skill.clone(),
        location: job.request.location,
        price: job.request.price,
        deadline_ms,
    };
    match (&ctx.cluster, ctx.provider_nodes.get(provider)) {
        (Some(cluster), Some(node)) => {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let call = ProviderCall::Push(push);
                if let Err(error) = cluster.provider_remote(node, provider, call).await {
                    tracing::info!(%provider, %error, "offer push to another node lost; the provider's app reads its status");
                }
            });
        }
        _ => ctx.services.push_provider(&ctx.stats, provider, push),
    }
}

async fn assign(ctx: &NodeContext, job: JobId, provider: ProviderId, at_ms: u64) -> Input {
    match provider_call(
        ctx,
        provider,
        |reply| ProviderCommand::Assign { job, reply },
        ProviderCall::Assign { job },
    )
    .await
    {
        Ok(()) => Input::Assigned { provider, at_ms },
        Err(error) => Input::AssignFailed(error),
    }
}

async fn release(
    ctx: &NodeContext,
    job: JobId,
    wallet: WalletId,
    key: String,
    amount: i64,
) -> Input {
    match wallet_op(ctx, wallet, key, LedgerOp::Release { amount }).await {
        Ok(()) => Input::ReleaseConfirmed,
        Err(error) => {
            if error.is_retryable() {
                tracing::info!(%job, %error, "release deferred");
            }
            Input::ReleaseFailed(error)
        }
    }
}

/// Tells a provider its offer ended; a failure is logged, not fatal (its offer
/// lapses on its own).
async fn end_offer(ctx: &NodeContext, job: JobId, provider: ProviderId) {
    if ctx.provider_nodes.get(provider).is_some() {
        tell_provider_elsewhere(ctx, provider, ProviderCall::OfferEnded { job });
        return;
    }
    ctx.services
        .push_provider(&ctx.stats, provider, ProviderPush::OfferEnded { job });
    let result = provider_call(
        ctx,
        provider,
        |reply| ProviderCommand::OfferEnded { job, reply },
        ProviderCall::OfferEnded { job },
    )
    .await;
    if let Err(error) = result {
        tracing::warn!(%job, %error, "provider not told that the job ended");
    }
}

/// Tells a provider the job it held ended; a failure is logged, not fatal.
async fn end_job(ctx: &NodeContext, job: JobId, provider: ProviderId) {
    if ctx.provider_nodes.get(provider).is_some() {
        tell_provider_elsewhere(ctx, provider, ProviderCall::JobEnded { job });
        return;
    }
    let result = provider_call(
        ctx,
        provider,
        |reply| ProviderCommand::JobEnded { job, reply },
        ProviderCall::JobEnded { job },
    )
    .await;
    if let Err(error) = result {
        tracing::warn!(%job, %error, "provider not told that the job ended");
    }
}
