//! The provider actor: one provider's status and location, kept in storage and in
//! the geo index of available providers.

use crate::context::NodeContext;
use crate::entity::{EntityKind, Registry};
use crate::error::{CoreError, CoreResult};
use crate::geo::Coord;
use crate::ids::{JobId, ProviderId, Skill};
use crate::job_actor::JobCommand;
use crate::provider::Provider;
use ractor::RpcReplyPort;
use std::sync::Arc;

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
    /// New position.
    Locate {
        /// Where.
        at: Coord,
        /// Answer, once durable.
        reply: RpcReplyPort<CoreResult<Provider>>,
    },
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

fn persist(ctx: &NodeContext, provider: &Provider) -> CoreResult<()> {
    ctx.store
        .put_by_id(&ctx.store.providers, provider.id.0, provider)?;
    let mut geo = ctx.geo.write();
    match provider.location {
        Some(at) if provider.searchable() => geo.upsert(provider.id, at, &provider.skills),
        _ => {
            geo.remove(provider.id);
        }
    }
    Ok(())
}

/// Applies `change` to a copy, stores it, and only then makes it the state.
fn change<T>(
    ctx: &NodeContext,
    state: &mut Option<Provider>,
    id: ProviderId,
    change: impl FnOnce(&mut Provider) -> CoreResult<T>,
) -> CoreResult<(T, Provider)> {
    let mut next = state
        .clone()
        .ok_or_else(|| CoreError::NotFound(id.to_string()))?;
    let result = change(&mut next)?;
    if state.as_ref() != Some(&next) {
        persist(ctx, &next)?;
        *state = Some(next.clone());
    }
    Ok((result, next))
}

impl EntityKind for ProviderKind {
    type Id = ProviderId;
    type Command = ProviderCommand;
    type State = Option<Provider>;
    const KIND: &'static str = "provider";
    const FAILPOINT: &'static str = crate::failpoints::PROVIDER_HANDLE;

    fn raw_id(id: ProviderId) -> u64 {
        id.0
    }

    fn registry(ctx: &NodeContext) -> &Registry<Self> {
        &ctx.providers
    }

    async fn load(id: ProviderId, ctx: &Arc<NodeContext>) -> CoreResult<Option<Provider>> {
        ctx.store.get_by_id(&ctx.store.providers, id.0)
    }

    async fn handle(
        id: ProviderId,
        state: &mut Option<Provider>,
        command: ProviderCommand,
        ctx: &Arc<NodeContext>,
    ) {
        let now_ms = ctx.clock.now_ms();
        match command {
            ProviderCommand::Online { skills, reply } => {
                if state.is_none() {
                    *state = Some(Provider::new(id));
                }
                let result = change(ctx, state, id, |p| p.go_online(skills)).map(|(_, p)| p);
                ctx.durability.reply(reply, result).await;
            }
            ProviderCommand::Offline { reply } => {
                let result = change(ctx, state, id, Provider::go_offline);
                if let Ok((Some(job), _)) = &result {
                    decline_in_background(ctx, *job, id);
                }
                ctx.durability.reply(reply, result.map(|(_, p)| p)).await;
            }
            ProviderCommand::Locate { at, reply } => {
                let result = change(ctx, state, id, |p| {
                    p.move_to(at);
                    Ok(())
                });
                ctx.durability.reply(reply, result.map(|(_, p)| p)).await;
            }
            ProviderCommand::Offer {
                job,
                until_ms,
                reply,
            } => {
                let result = change(ctx, state, id, |p| p.offer(job, until_ms, now_ms));
                ctx.durability.reply(reply, result.map(drop)).await;
            }
            ProviderCommand::OfferEnded { job, reply } => {
                let result = change(ctx, state, id, |p| {
                    p.offer_ended(job);
                    Ok(())
                });
                ctx.durability.reply(reply, result.map(drop)).await;
            }
            ProviderCommand::Assign { job, reply } => {
                let result = change(ctx, state, id, |p| p.assign(job));
                ctx.durability.reply(reply, result.map(drop)).await;
            }
            ProviderCommand::JobEnded { job, reply } => {
                let result = change(ctx, state, id, |p| {
                    p.job_ended(job);
                    Ok(())
                });
                ctx.durability.reply(reply, result.map(drop)).await;
            }
            ProviderCommand::Get { reply } => {
                let _ = reply.send(
                    state
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
        let declined = ctx
            .jobs
            .call(job, |reply| JobCommand::Decline { provider, reply })
            .await;
        if let Err(error) = declined {
            tracing::info!(%job, %provider, %error, "decline on going offline not delivered; the offer deadline will cascade");
        }
    });
}
