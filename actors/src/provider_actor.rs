//! The provider actor: one provider's status and location, kept in storage and in
//! the geo index of available providers.
//!
//! A position is soft state. A location update changes the actor's record and the
//! geo index at once and is answered without waiting for storage; the record is
//! written when status or skills change (those replies wait for a durable flush),
//! on a provider's first position, and for moves at most once per
//! `storage.provider_position_write_interval_ms`, with one backstop write per
//! interval so the last position of a provider that stops moving is stored too
//! (see [`PositionWrites`]). A provider restarted from storage, or a node
//! restarted, starts from a position up to one interval old, which its next
//! update (about a second later) replaces. Reads of the stored record (the
//! dashboard's provider list) lag by the same bound.

use crate::context::{NodeContext, NodeStats};
use crate::entity::{EntityKind, Registry};
use crate::error::{CoreError, CoreResult};
use crate::geo::Coord;
use crate::ids::{JobId, ProviderId, Skill};
use crate::job_actor::JobCommand;
use crate::provider::{MoveWrite, PositionWrites, Provider};
use fixit_protocol::area::ZoneEvent;
use ractor::RpcReplyPort;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Attempts to deliver one backstop write to a provider's actor (it may be busy at
/// that moment); past them the position waits for the provider's next move.
const BACKSTOP_ATTEMPTS_MAX: u32 = 3;

/// Commands of a provider.
pub enum ProviderCommand {
    /// Go online with these skills.
    Online {
        /// Skills offered.
        skills: Vec<Skill>,
        /// Answer, once durable.
        reply: RpcReplyPort<CoreResult<Provider>>,
    },
    /// Go offline (declines a pending offer).
    Offline {
        /// Answer, once durable.
        reply: RpcReplyPort<CoreResult<Provider>>,
    },
    /// New position: soft state, answered at once (see the module doc).
    Locate {
        /// Where.
        at: Coord,
        /// Answer, once the actor and the geo index hold the position.
        reply: RpcReplyPort<CoreResult<Provider>>,
    },
    /// Write the record if a move is not stored yet (the backstop the actor
    /// schedules for itself after a move it kept in memory).
    StorePosition,
    /// A job is offered until `until_ms` (from the job actor).
    Offer {
        /// The job.
        job: JobId,
        /// Offer deadline.
        until_ms: u64,
        /// Answer.
        reply: RpcReplyPort<CoreResult<()>>,
    },
    /// The offer for `job` ended unaccepted (from the job actor).
    OfferEnded {
        /// The job.
        job: JobId,
        /// Answer.
        reply: RpcReplyPort<CoreResult<()>>,
    },
    /// The provider accepted `job` (from the job actor).
    Assign {
        /// The job.
        job: JobId,
        /// Answer.
        reply: RpcReplyPort<CoreResult<()>>,
    },
    /// `job` ended: completed or cancelled (from the job actor).
    JobEnded {
        /// The job.
        job: JobId,
        /// Answer.
        reply: RpcReplyPort<CoreResult<()>>,
    },
    /// Current record.
    Get {
        /// Answer.
        reply: RpcReplyPort<CoreResult<Provider>>,
    },
}

/// The provider entity kind.
pub struct ProviderKind;

/// A provider actor's state: the record (none for a provider never seen) and when
/// it was written.
#[derive(Debug, Default)]
pub struct ProviderState {
    record: Option<Provider>,
    writes: PositionWrites,
}

fn store(ctx: &NodeContext, provider: &Provider) -> CoreResult<()> {
    ctx.store
        .put_by_id(&ctx.store.providers, provider.id.0, provider)
}

fn index(ctx: &NodeContext, provider: &Provider) {
    let mut geo = ctx.geo.write();
    match provider.location {
        Some(at) if provider.searchable() => geo.upsert(provider.id, at, &provider.skills),
        _ => {
            geo.remove(provider.id);
        }
    }
}

/// Applies `change` to a copy, stores it, and only then makes it the state.
fn change<T>(
    ctx: &NodeContext,
    state: &mut ProviderState,
    id: ProviderId,
    now_ms: u64,
    change: impl FnOnce(&mut Provider) -> CoreResult<T>,
) -> CoreResult<(T, Provider)> {
    let mut next = state
        .record
        .clone()
        .ok_or_else(|| CoreError::NotFound(id.to_string()))?;
    let result = change(&mut next)?;
    if state.record.as_ref() != Some(&next) {
        store(ctx, &next)?;
        state.writes.stored(now_ms);
        index(ctx, &next);
        state.record = Some(next.clone());
    }
    Ok((result, next))
}

/// Moves the provider: the geo index at once, storage now or later (module doc).
fn locate(
    ctx: &Arc<NodeContext>,
    state: &mut ProviderState,
    id: ProviderId,
    at: Coord,
    now_ms: u64,
) -> CoreResult<Provider> {
    let current = state
        .record
        .as_ref()
        .ok_or_else(|| CoreError::NotFound(id.to_string()))?;
    let from = current.location;
    let mut next = current.clone();
    next.move_to(at);
    let interval_ms = ctx.config.storage.provider_position_write_interval_ms;
    match state.writes.on_move(current, &next, now_ms, interval_ms) {
        MoveWrite::Unchanged => return Ok(next),
        MoveWrite::Now => {
            store(ctx, &next)?;
            state.writes.stored(now_ms);
        }
        MoveWrite::Later { arm_backstop } => {
            if arm_backstop {
                schedule_backstop(ctx, id, Duration::from_millis(interval_ms));
            }
        }
    }
    index(ctx, &next);
    state.record = Some(next.clone());
    zone_moves(ctx, id, from, at, now_ms);
    Ok(next)
}

/// Tells admin subscribers which zones the provider entered and left by moving
/// from `from` to `to`.
fn zone_moves(ctx: &NodeContext, id: ProviderId, from: Option<Coord>, to: Coord, now_ms: u64) {
    let areas = ctx.areas.read().clone();
    if !areas.has_zones() {
        return;
    }
    let before = from.map(|at| areas.zones_at(at)).unwrap_or_default();
    let after = areas.zones_at(to);
    let entered = after.difference(&before).map(|zone| (zone, true));
    let left = before.difference(&after).map(|zone| (zone, false));
    for (zone, entered) in entered.chain(left) {
        NodeStats::count(&ctx.stats.zone_events);
        // No subscriber is not an error: the event is counted either way.
        let _ = ctx.zone_events.send(ZoneEvent {
            provider: id,
            zone: zone.clone(),
            entered,
            at_ms: now_ms,
        });
    }
}

/// Writes the record if a move is still only in memory.
fn store_position(ctx: &NodeContext, state: &mut ProviderState, now_ms: u64) {
    if !state.writes.backstop_due() {
        return;
    }
    let Some(record) = &state.record else {
        return;
    };
    match store(ctx, record) {
        Ok(()) => state.writes.stored(now_ms),
        Err(error) => {
            tracing::warn!(provider = %record.id, %error, "position not stored; the next move retries")
        }
    }
}

/// Asks the provider's actor, `after` from now, to write a position it holds only
/// in memory. Holds the node weakly, so a node shutting down is not kept alive.
fn schedule_backstop(ctx: &Arc<NodeContext>, id: ProviderId, after: Duration) {
    let node: Weak<NodeContext> = Arc::downgrade(ctx);
    tokio::spawn(async move {
        for _ in 0..BACKSTOP_ATTEMPTS_MAX {
            tokio::time::sleep(after).await;
            let Some(ctx) = node.upgrade() else {
                return;
            };
            // A provider no longer live has nothing unsaved: it passivated (idle
            // long after its last write) or restarted from storage.
            if !ctx.providers.is_live(id)
                || ctx.providers.cast(id, ProviderCommand::StorePosition).await
            {
                return;
            }
        }
    });
}

impl EntityKind for ProviderKind {
    type Id = ProviderId;
    type Command = ProviderCommand;
    type State = ProviderState;
    const KIND: &'static str = "provider";
    const FAILPOINT: &'static str = crate::failpoints::PROVIDER_HANDLE;

    fn raw_id(id: ProviderId) -> u64 {
        id.0
    }

    fn registry(ctx: &NodeContext) -> &Registry<Self> {
        &ctx.providers
    }

    async fn load(id: ProviderId, ctx: &Arc<NodeContext>) -> CoreResult<ProviderState> {
        let record = ctx.store.get_by_id(&ctx.store.providers, id.0)?;
        Ok(ProviderState {
            record,
            writes: PositionWrites::default(),
        })
    }

    async fn handle(
        id: ProviderId,
        state: &mut ProviderState,
        command: ProviderCommand,
        ctx: &Arc<NodeContext>,
    ) {
        let now_ms = ctx.clock.now_ms();
        match command {
            ProviderCommand::Online { skills, reply } => {
                if state.record.is_none() {
                    state.record = Some(Provider::new(id));
                }
                let result =
                    change(ctx, state, id, now_ms, |p| p.go_online(skills)).map(|(_, p)| p);
                ctx.durability.reply(reply, result).await;
            }
            ProviderCommand::Offline { reply } => {
                let result = change(ctx, state, id, now_ms, Provider::go_offline);
                if let Ok((Some(job), _)) = &result {
                    decline_in_background(ctx, *job, id);
                }
                ctx.durability.reply(reply, result.map(|(_, p)| p)).await;
            }
            ProviderCommand::Locate { at, reply } => {
                let _ = reply.send(locate(ctx, state, id, at, now_ms));
            }
            ProviderCommand::StorePosition => store_position(ctx, state, now_ms),
            ProviderCommand::Offer {
                job,
                until_ms,
                reply,
            } => {
                let result = change(ctx, state, id, now_ms, |p| p.offer(job, until_ms, now_ms));
                ctx.durability.reply(reply, result.map(drop)).await;
            }
            ProviderCommand::OfferEnded { job, reply } => {
                let result = change(ctx, state, id, now_ms, |p| {
                    p.offer_ended(job);
                    Ok(())
                });
                ctx.durability.reply(reply, result.map(drop)).await;
            }
            ProviderCommand::Assign { job, reply } => {
                let result = change(ctx, state, id, now_ms, |p| p.assign(job));
                ctx.durability.reply(reply, result.map(drop)).await;
            }
            ProviderCommand::JobEnded { job, reply } => {
                let result = change(ctx, state, id, now_ms, |p| {
                    p.job_ended(job);
                    Ok(())
                });
                ctx.durability.reply(reply, result.map(drop)).await;
            }
            ProviderCommand::Get { reply } => {
                let _ = reply.send(
                    state
                        .record
                        .clone()
                        .ok_or_else(|| CoreError::NotFound(id.to_string())),
                );
            }
        }
    }
}

/// Tells the job that its offer was declined, without blocking this provider (the
/// job actor may be calling this provider at the same moment).
fn decline_in_background(ctx: &Arc<NodeContext>, job: JobId, provider: ProviderId) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let elsewhere = ctx.cluster.as_ref().filter(|cluster| {
            crate::cluster_hooks::node_number_of_job(job.0) != cluster.node_number()
        });
        let declined = match elsewhere {
            Some(cluster) => cluster.decline_remote(job, provider).await,
            None => ctx
                .jobs
                .call(job, |reply| JobCommand::Decline { provider, reply })
                .await
                .map(drop),
        };
        if let Err(error) = declined {
            tracing::info!(%job, %provider, %error, "decline on going offline not delivered; the offer deadline will cascade");
        }
    });
}
