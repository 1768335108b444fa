//! Non-critical services: the notifier (pushes to clients) and the verifier (checks
//! proof of work), under their own supervisor. Their failure may delay a push or a
//! verification, never a payment: callers only ever `cast` to them.

use crate::context::{NodeContext, NodeStats};
use crate::error::CoreError;
use crate::failpoints;
use crate::ids::{JobId, ProviderId};
use crate::intensity::RestartIntensity;
use crate::job_actor::JobCommand;
use crate::session_actor::SessionCommand;
use parking_lot::RwLock;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

pub use fixit_protocol::push::{JobEvent, ProviderPush, PROOF_BYTES_MAX};

/// Pushes one provider's channel holds before further pushes are dropped.
pub const PROVIDER_PUSHES_MAX: usize = 64;

/// Push channels of connected providers.
#[derive(Default)]
pub struct PushHub {
    channels: RwLock<HashMap<ProviderId, mpsc::Sender<ProviderPush>>>,
}

impl PushHub {
    /// Connects a provider's app; replaces an earlier connection.
    pub fn subscribe(&self, provider: ProviderId) -> mpsc::Receiver<ProviderPush> {
        let (sender, receiver) = mpsc::channel(PROVIDER_PUSHES_MAX);
        self.channels.write().insert(provider, sender);
        receiver
    }

    fn send(&self, provider: ProviderId, push: ProviderPush) -> bool {
        let sender = self.channels.read().get(&provider).cloned();
        match sender.map(|sender| sender.try_send(push)) {
            Some(Ok(())) => true,
            Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                self.channels.write().remove(&provider);
                false
            }
            _ => false,
        }
    }
}

/// References to the running notifier and verifier.
#[derive(Default)]
pub struct ServiceSlots {
    notifier: RwLock<Option<ActorRef<NotifierMessage>>>,
    verifier: RwLock<Option<ActorRef<VerifierMessage>>>,
}

impl ServiceSlots {
    /// Whether both the notifier and the verifier are running now.
    pub fn running(&self) -> bool {
        let up = |status: Option<ractor::ActorStatus>| status == Some(ractor::ActorStatus::Running);
        up(self
            .notifier
            .read()
            .as_ref()
            .map(|actor| actor.get_status()))
            && up(self
                .verifier
                .read()
                .as_ref()
                .map(|actor| actor.get_status()))
    }

    /// Hands a job event to the notifier; dropped (and counted) if it is down.
    pub fn notify_job(&self, stats: &NodeStats, event: JobEvent) {
        self.to_notifier(stats, NotifierMessage::Job(event));
    }

    /// Hands a provider push to the notifier; dropped (and counted) if it is down.
    pub fn push_provider(&self, stats: &NodeStats, provider: ProviderId, push: ProviderPush) {
        self.to_notifier(stats, NotifierMessage::Provider(provider, push));
    }

    fn to_notifier(&self, stats: &NodeStats, message: NotifierMessage) {
        let sent = self
            .notifier
            .read()
            .as_ref()
            .is_some_and(|notifier| notifier.cast(message).is_ok());
        if !sent {
            NodeStats::count(&stats.pushes_dropped);
        }
    }

    /// Hands a proof of work to the verifier; skipped (and logged) if it is down.
    pub fn verify(&self, stats: &NodeStats, job: JobId, provider: ProviderId, proof: Vec<u8>) {
        let message = VerifierMessage {
            job,
            provider,
            proof,
        };
        let sent = self
            .verifier
            .read()
            .as_ref()
            .is_some_and(|verifier| verifier.cast(message).is_ok());
        if !sent {
            tracing::warn!(%job, "verifier down; proof not checked");
            NodeStats::count(&stats.pushes_dropped);
        }
    }
}

/// Messages of the notifier.
pub enum NotifierMessage {
    /// A job event for the customer's session.
    Job(JobEvent),
    /// A push for a provider's app.
    Provider(ProviderId, ProviderPush),
}

/// Delivers pushes to customer sessions and provider apps.
pub struct Notifier;

impl Actor for Notifier {
    type Msg = NotifierMessage;
    type State = Arc<NodeContext>;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<NotifierMessage>,
        ctx: Arc<NodeContext>,
    ) -> Result<Arc<NodeContext>, ActorProcessingErr> {
        *ctx.services.notifier.write() = Some(myself);
        Ok(ctx)
    }

    async fn handle(
        &self,
        _myself: ActorRef<NotifierMessage>,
        message: NotifierMessage,
        ctx: &mut Arc<NodeContext>,
    ) -> Result<(), ActorProcessingErr> {
        ctx.faults.check("notifier", 0);
        failpoints::panic_point(failpoints::NOTIFIER_PUSH, &ctx.config.node.id);
        match message {
            NotifierMessage::Job(event) => {
                // Only connected customers have a live session; others read job status.
                if ctx.sessions.is_live(event.customer) {
                    let customer = event.customer;
                    if !ctx
                        .sessions
                        .cast(customer, SessionCommand::Event(event))
                        .await
                    {
                        NodeStats::count(&ctx.stats.pushes_dropped);
                    }
                }
            }
            NotifierMessage::Provider(provider, push) => {
                let counter = if ctx.pushes.send(provider, push) {
                    &ctx.stats.pushes_sent
                } else {
                    &ctx.stats.pushes_dropped
                };
                NodeStats::count(counter);
            }
        }
        Ok(())
    }
}

/// A proof of work to check.
pub struct VerifierMessage {
    job: JobId,
    provider: ProviderId,
    proof: Vec<u8>,
}

/// Checks providers' proofs of completed work and records the verdict on the job.
pub struct Verifier;

/// The verdict on one proof: present and within size. (Richer checks, such as a
/// customer-issued completion code or a photo hash, plug in here.)
pub fn proof_holds(proof: &[u8]) -> bool {
    !proof.is_empty() && proof.len() <= PROOF_BYTES_MAX
}

impl Actor for Verifier {
    type Msg = VerifierMessage;
    type State = Arc<NodeContext>;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<VerifierMessage>,
        ctx: Arc<NodeContext>,
    ) -> Result<Arc<NodeContext>, ActorProcessingErr> {
        *ctx.services.verifier.write() = Some(myself);
        Ok(ctx)
    }

    async fn handle(
        &self,
        _myself: ActorRef<VerifierMessage>,
        message: VerifierMessage,
        ctx: &mut Arc<NodeContext>,
    ) -> Result<(), ActorProcessingErr> {
        ctx.faults.check("verifier", 0);
        failpoints::panic_point(failpoints::VERIFIER_VERIFY, &ctx.config.node.id);
        let ok = proof_holds(&message.proof);
        NodeStats::count(&ctx.stats.verifications);
        tracing::debug!(job = %message.job, provider = %message.provider, ok, "proof checked");
        ctx.jobs
            .cast(message.job, JobCommand::Verified { ok })
            .await;
        Ok(())
    }
}

/// Which service an actor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Notifier,
    Verifier,
}

/// Supervisor of the notifier and verifier: one-for-one, with an intensity limit.
pub struct ServicesBranch;

/// The services supervisor's state.
pub struct ServicesState {
    ctx: Arc<NodeContext>,
    intensity: RestartIntensity,
    running: HashMap<ractor::ActorId, Service>,
}

impl ServicesState {
    async fn start(
        &mut self,
        myself: &ActorRef<()>,
        service: Service,
    ) -> Result<(), ractor::SpawnErr> {
        let cell = myself.get_cell();
        let ctx = self.ctx.clone();
        let id = match service {
            Service::Notifier => Actor::spawn_linked(None, Notifier, ctx, cell)
                .await?
                .0
                .get_id(),
            Service::Verifier => Actor::spawn_linked(None, Verifier, ctx, cell)
                .await?
                .0
                .get_id(),
        };
        self.running.insert(id, service);
        Ok(())
    }
}

impl Actor for ServicesBranch {
    type Msg = ();
    type State = ServicesState;
    type Arguments = crate::entity::BranchArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: crate::entity::BranchArgs,
    ) -> Result<ServicesState, ActorProcessingErr> {
        let supervision = &args.ctx.config.supervision;
        let mut state = ServicesState {
            intensity: RestartIntensity::new(
                supervision.branch_restarts_max,
                supervision.branch_restart_window_ms,
            ),
            ctx: args.ctx,
            running: HashMap::new(),
        };
        state.start(&myself, Service::Notifier).await?;
        state.start(&myself, Service::Verifier).await?;
        Ok(state)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut ServicesState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, error) = event else {
            return Ok(());
        };
        let Some(service) = state.running.remove(&cell.get_id()) else {
            return Ok(());
        };
        let kind = match service {
            Service::Notifier => "notifier",
            Service::Verifier => "verifier",
        };
        state.ctx.stats.record_restart(kind);
        if !state.intensity.allow(state.ctx.clock.now_ms()) {
            return Err(Box::new(CoreError::Internal(format!(
                "services branch: restart intensity exceeded ({kind} failed: {error})"
            ))));
        }
        tracing::warn!(service = kind, %error, "service failed; restarting");
        state.start(&myself, service).await?;
        Ok(())
    }
}
