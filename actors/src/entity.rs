//! Entity actors (one per wallet, provider, job or customer session): the registry
//! that activates them on demand, the gate that bounds their in-flight commands and
//! passivates them when idle, and the branch supervisor that restarts them.

use crate::context::NodeContext;
use crate::error::{CoreError, CoreResult};
use crate::failpoints;
use crate::intensity::RestartIntensity;
use parking_lot::RwLock;
use ractor::{
    rpc::CallResult, Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Attempts to find an open actor for an entity before giving up (an actor may be
/// passivating at the moment a command arrives; the next attempt starts a new one).
const ENTER_ATTEMPTS_MAX: usize = 4;

/// One kind of entity: how it loads, how it handles commands.
pub trait EntityKind: Send + Sync + Sized + 'static {
    /// The entity's id.
    type Id: Copy + Eq + Hash + Debug + Display + Send + Sync + 'static;
    /// Commands it handles.
    type Command: Send + 'static;
    /// Its in-memory state, rebuilt from storage at every (re)start.
    type State: Send + 'static;
    /// Name used in logs, metrics and fault injection ("wallet", ...).
    const KIND: &'static str;
    /// The failpoint hit before each command (see [`crate::failpoints`]).
    const FAILPOINT: &'static str;

    /// The id as a number, for fault injection and metrics.
    fn raw_id(id: Self::Id) -> u64;

    /// This kind's registry in the node.
    fn registry(ctx: &NodeContext) -> &Registry<Self>;

    /// Loads the state from storage (the actor's `pre_start`).
    fn load(
        id: Self::Id,
        ctx: &Arc<NodeContext>,
    ) -> impl Future<Output = CoreResult<Self::State>> + Send;

    /// Handles one command.
    fn handle(
        id: Self::Id,
        state: &mut Self::State,
        command: Self::Command,
        ctx: &Arc<NodeContext>,
    ) -> impl Future<Output = ()> + Send;

    /// Whether the entity may stop when idle (a session with a connected client may not).
    fn may_passivate(_state: &Self::State) -> bool {
        true
    }

    /// Whether the entity reached an end after which nothing will change it (a
    /// settled job): its actor stops as soon as no command waits for it, instead
    /// of staying resident for the idle time. A later command loads it again.
    fn finished(_state: &Self::State) -> bool {
        false
    }
}

/// Messages an entity actor receives.
pub enum Envelope<C> {
    /// A command, counted by the gate.
    Command(C),
    /// The branch found the entity idle: stop if still idle.
    Passivate,
}

const CLOSED: u32 = 1 << 31;

/// Counts an entity actor's in-flight commands; closed once it passivates.
#[derive(Debug)]
pub struct Gate {
    inflight: AtomicU32,
    last_active_ms: AtomicU64,
}

enum Refusal {
    Busy,
    Closed,
}

impl Gate {
    fn new(now_ms: u64) -> Gate {
        Gate {
            inflight: AtomicU32::new(0),
            last_active_ms: AtomicU64::new(now_ms),
        }
    }

    fn try_enter(&self, inflight_max: u32) -> Result<(), Refusal> {
        self.inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count & CLOSED == 0 && count < inflight_max).then_some(count + 1)
            })
            .map(drop)
            .map_err(|count| {
                if count & CLOSED != 0 {
                    Refusal::Closed
                } else {
                    Refusal::Busy
                }
            })
    }

    /// The command taken up at `taken_ms` is done.
    fn leave(&self, taken_ms: u64) {
        self.last_active_ms.store(taken_ms, Ordering::Relaxed);
        self.inflight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Gives back an entry whose message never reached the actor.
    fn undo_enter(&self) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
    }

    fn is_idle(&self, now_ms: u64, idle_ms: u64) -> bool {
        self.inflight.load(Ordering::Acquire) == 0
            && now_ms.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)) >= idle_ms
    }

    fn try_close(&self) -> bool {
        self.inflight
            .compare_exchange(0, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn is_closed(&self) -> bool {
        self.inflight.load(Ordering::Acquire) & CLOSED != 0
    }
}

/// A live entity actor and its gate.
pub struct Slot<K: EntityKind> {
    actor: ActorRef<Envelope<K::Command>>,
    gate: Arc<Gate>,
}

impl<K: EntityKind> Clone for Slot<K> {
    fn clone(&self) -> Self {
        Slot {
            actor: self.actor.clone(),
            gate: self.gate.clone(),
        }
    }
}

/// Messages of a branch supervisor.
pub enum BranchMessage<K: EntityKind> {
    /// Return the live actor of an entity, starting it (from storage) if needed.
    Activate(K::Id, RpcReplyPort<CoreResult<Slot<K>>>),
    /// Ask idle entities to stop; replies with how many were asked.
    Sweep(Option<RpcReplyPort<usize>>),
}

/// Bounds on calls into entities, shared by all registries of a node.
#[derive(Debug)]
pub struct CallLimits {
    /// In-flight commands per entity.
    pub entity_inflight_max: u32,
    /// In-flight commands on the node.
    pub node_inflight_max: u32,
    /// Retry hint for `Busy`.
    pub busy_retry_after_ms: u64,
    /// How long a caller waits for an answer.
    pub call_timeout: Duration,
    node_inflight: AtomicU32,
}

impl CallLimits {
    /// Limits from config values.
    pub fn new(
        entity_inflight_max: u32,
        node_inflight_max: u32,
        busy_retry_after_ms: u64,
        call_timeout: Duration,
    ) -> CallLimits {
        CallLimits {
            entity_inflight_max,
            node_inflight_max,
            busy_retry_after_ms,
            call_timeout,
            node_inflight: AtomicU32::new(0),
        }
    }

    fn busy(&self) -> CoreError {
        CoreError::Busy {
            retry_after_ms: self.busy_retry_after_ms,
        }
    }

    /// Commands in flight on the node now.
    pub fn node_inflight(&self) -> u32 {
        self.node_inflight.load(Ordering::Relaxed)
    }

    fn acquire(&self) -> CoreResult<NodePermit<'_>> {
        self.node_inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < self.node_inflight_max).then_some(count + 1)
            })
            .map(|_| NodePermit(self))
            .map_err(|_| self.busy())
    }
}

struct NodePermit<'a>(&'a CallLimits);

impl Drop for NodePermit<'_> {
    fn drop(&mut self) {
        self.0.node_inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Finds or starts the actor of an entity and calls it within the limits.
pub struct Registry<K: EntityKind> {
    live: RwLock<HashMap<K::Id, Slot<K>>>,
    branch: RwLock<Option<ActorRef<BranchMessage<K>>>>,
    limits: Arc<CallLimits>,
}

impl<K: EntityKind> Registry<K> {
    /// An empty registry; the branch registers itself when it starts.
    pub fn new(limits: Arc<CallLimits>) -> Registry<K> {
        Registry {
            live: RwLock::new(HashMap::new()),
            branch: RwLock::new(None),
            limits,
        }
    }

    /// Entity actors alive now.
    pub fn live_count(&self) -> usize {
        self.live.read().len()
    }

    /// Whether the entity has a live actor.
    pub fn is_live(&self, id: K::Id) -> bool {
        self.live.read().contains_key(&id)
    }

    /// The branch supervisor's id, while it runs.
    pub fn branch_id(&self) -> Option<ActorId> {
        self.branch.read().as_ref().map(|branch| branch.get_id())
    }

    /// Asks the branch to passivate idle entities; returns how many were asked.
    pub async fn sweep(&self) -> usize {
        let Some(branch) = self.branch.read().clone() else {
            return 0;
        };
        match branch
            .call(
                |reply| BranchMessage::Sweep(Some(reply)),
                Some(self.limits.call_timeout),
            )
            .await
        {
            Ok(CallResult::Success(asked)) => asked,
            _ => 0,
        }
    }

    /// Sends a command built around a reply port and waits for the answer.
    pub async fn call<R: Send + 'static>(
        &self,
        id: K::Id,
        command: impl FnOnce(RpcReplyPort<CoreResult<R>>) -> K::Command,
    ) -> CoreResult<R> {
        let _permit = self.limits.acquire()?;
        let slot = self.enter(id).await?;
        let answer = slot
            .actor
            .call(
                |reply| Envelope::Command(command(reply)),
                Some(self.limits.call_timeout),
            )
            .await;
        match answer {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(CoreError::Unavailable(format!(
                "{} {id} did not answer within {} ms; retry with the same idempotency key",
                K::KIND,
                self.limits.call_timeout.as_millis()
            ))),
            Ok(CallResult::SenderError) => Err(restarting::<K>(id)),
            Err(_) => {
                slot.gate.undo_enter();
                Err(restarting::<K>(id))
            }
        }
    }

    /// Sends a command without waiting; dropped (and false returned) when over a limit.
    pub async fn cast(&self, id: K::Id, command: K::Command) -> bool {
        let Ok(_permit) = self.limits.acquire() else {
            return false;
        };
        match self.enter(id).await {
            Ok(slot) => match slot.actor.send_message(Envelope::Command(command)) {
                Ok(()) => true,
                Err(_) => {
                    slot.gate.undo_enter();
                    false
                }
            },
            Err(_) => false,
        }
    }

    async fn enter(&self, id: K::Id) -> CoreResult<Slot<K>> {
        for _ in 0..ENTER_ATTEMPTS_MAX {
            let found = self.live.read().get(&id).cloned();
            let slot = match found {
                Some(slot) => slot,
                None => self.activate(id).await?,
            };
            match slot.gate.try_enter(self.limits.entity_inflight_max) {
                Ok(()) => return Ok(slot),
                Err(Refusal::Busy) => return Err(self.limits.busy()),
                Err(Refusal::Closed) => self.forget(id, slot.actor.get_id()),
            }
        }
        Err(restarting::<K>(id))
    }

    async fn activate(&self, id: K::Id) -> CoreResult<Slot<K>> {
        let branch =
            self.branch.read().clone().ok_or_else(|| {
                CoreError::Unavailable(format!("{} branch is restarting", K::KIND))
            })?;
        match branch
            .call(
                |reply| BranchMessage::Activate(id, reply),
                Some(self.limits.call_timeout),
            )
            .await
        {
            Ok(CallResult::Success(slot)) => slot,
            _ => Err(CoreError::Unavailable(format!(
                "{} branch is restarting",
                K::KIND
            ))),
        }
    }

    fn forget(&self, id: K::Id, actor: ActorId) {
        let mut live = self.live.write();
        if live
            .get(&id)
            .is_some_and(|slot| slot.actor.get_id() == actor)
        {
            live.remove(&id);
        }
    }
}

fn restarting<K: EntityKind>(id: K::Id) -> CoreError {
    CoreError::Unavailable(format!(
        "{} {id} stopped while handling the request and is being restarted; retry with the same idempotency key",
        K::KIND
    ))
}

/// Start-up arguments of an entity actor.
pub struct EntityArgs<K: EntityKind> {
    id: K::Id,
    ctx: Arc<NodeContext>,
    gate: Arc<Gate>,
}

/// The actor shell around every entity kind: fault check, handle, gate accounting.
pub struct EntityShell<K>(PhantomData<fn() -> K>);

/// An entity actor's state inside the shell.
pub struct ShellState<K: EntityKind> {
    args: EntityArgs<K>,
    state: K::State,
}

impl<K: EntityKind> Actor for EntityShell<K> {
    type Msg = Envelope<K::Command>;
    type State = ShellState<K>;
    type Arguments = EntityArgs<K>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: EntityArgs<K>,
    ) -> Result<ShellState<K>, ActorProcessingErr> {
        let state = K::load(args.id, &args.ctx)
            .await
            .map_err(|error| Box::new(error) as ActorProcessingErr)?;
        Ok(ShellState { args, state })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        shell: &mut ShellState<K>,
    ) -> Result<(), ActorProcessingErr> {
        let ShellState { args, state } = shell;
        match message {
            Envelope::Command(command) => {
                args.ctx.faults.check(K::KIND, K::raw_id(args.id));
                failpoints::entity_panic_point(
                    K::FAILPOINT,
                    &args.ctx.config.node.id,
                    K::raw_id(args.id),
                );
                args.ctx.faults.stall(K::KIND, K::raw_id(args.id)).await;
                // Activity is stamped when the command is taken up, not after it:
                // the caller already has its reply by then, and a tail delayed on
                // a loaded machine must not make the entity look newer than its
                // last command (the in-flight count guards the command itself).
                let taken_ms = args.ctx.clock.now_ms();
                K::handle(args.id, state, command, &args.ctx).await;
                args.gate.leave(taken_ms);
                if K::finished(state) && args.gate.try_close() {
                    myself.stop(Some("finished".into()));
                }
            }
            Envelope::Passivate => {
                let idle_ms = args.ctx.config.passivation.entity_idle_ms;
                let now_ms = args.ctx.clock.now_ms();
                if K::may_passivate(state)
                    && args.gate.is_idle(now_ms, idle_ms)
                    && args.gate.try_close()
                {
                    myself.stop(Some("passivated".into()));
                }
            }
        }
        Ok(())
    }
}

/// Start-up arguments of a branch supervisor.
pub struct BranchArgs {
    /// The node.
    pub ctx: Arc<NodeContext>,
}

/// A branch supervisor for one entity kind: one-for-one restarts with an intensity
/// limit; past it, the branch fails and its parent decides.
pub struct EntityBranch<K>(PhantomData<fn() -> K>);

impl<K> Default for EntityBranch<K> {
    fn default() -> Self {
        EntityBranch(PhantomData)
    }
}

/// A branch supervisor's state.
pub struct BranchState<K: EntityKind> {
    ctx: Arc<NodeContext>,
    intensity: RestartIntensity,
    entity_of: HashMap<ActorId, K::Id>,
}

impl<K: EntityKind> BranchState<K> {
    async fn start_entity(
        &mut self,
        myself: &ActorRef<BranchMessage<K>>,
        id: K::Id,
    ) -> CoreResult<Slot<K>> {
        let gate = Arc::new(Gate::new(self.ctx.clock.now_ms()));
        let args = EntityArgs {
            id,
            ctx: self.ctx.clone(),
            gate: gate.clone(),
        };
        let spawned =
            Actor::spawn_linked(None, EntityShell::<K>(PhantomData), args, myself.get_cell()).await;
        let (actor, _) = spawned.map_err(|error| match error {
            ractor::SpawnErr::StartupFailed(cause) => match cause.downcast::<CoreError>() {
                Ok(error) => *error,
                Err(cause) => CoreError::Unavailable(format!("{} {id}: {cause}", K::KIND)),
            },
            other => CoreError::Unavailable(format!("{} {id}: {other}", K::KIND)),
        })?;
        self.entity_of.insert(actor.get_id(), id);
        let slot = Slot { actor, gate };
        K::registry(&self.ctx).live.write().insert(id, slot.clone());
        Ok(slot)
    }

    fn sweep(&self) -> usize {
        let registry = K::registry(&self.ctx);
        let idle_ms = self.ctx.config.passivation.entity_idle_ms;
        let now_ms = self.ctx.clock.now_ms();
        let idle: Vec<Slot<K>> = registry
            .live
            .read()
            .values()
            .filter(|slot| slot.gate.is_idle(now_ms, idle_ms))
            .cloned()
            .collect();
        idle.iter()
            .filter(|slot| slot.actor.send_message(Envelope::Passivate).is_ok())
            .count()
    }
}

impl<K: EntityKind> Actor for EntityBranch<K> {
    type Msg = BranchMessage<K>;
    type State = BranchState<K>;
    type Arguments = BranchArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: BranchArgs,
    ) -> Result<BranchState<K>, ActorProcessingErr> {
        let ctx = args.ctx;
        let registry = K::registry(&ctx);
        registry.live.write().clear();
        *registry.branch.write() = Some(myself.clone());
        let supervision = &ctx.config.supervision;
        let intensity = RestartIntensity::new(
            supervision.branch_restarts_max,
            supervision.branch_restart_window_ms,
        );
        let sweep_every = Duration::from_millis(ctx.config.passivation.sweep_interval_ms);
        myself.send_interval(sweep_every, || BranchMessage::Sweep(None));
        Ok(BranchState {
            ctx,
            intensity,
            entity_of: HashMap::new(),
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut BranchState<K>,
    ) -> Result<(), ActorProcessingErr> {
        let registry = K::registry(&state.ctx);
        let mut branch = registry.branch.write();
        if branch
            .as_ref()
            .is_some_and(|b| b.get_id() == myself.get_id())
        {
            *branch = None;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut BranchState<K>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            BranchMessage::Activate(id, reply) => {
                let live = K::registry(&state.ctx).live.read().get(&id).cloned();
                let slot = match live {
                    Some(slot) if !slot.gate.is_closed() => Ok(slot),
                    _ => state.start_entity(&myself, id).await,
                };
                let _ = reply.send(slot);
            }
            BranchMessage::Sweep(reply) => {
                let asked = state.sweep();
                if let Some(reply) = reply {
                    let _ = reply.send(asked);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut BranchState<K>,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(id) = state.entity_of.remove(&cell.get_id()) else {
                    return Ok(());
                };
                K::registry(&state.ctx).forget(id, cell.get_id());
                state.ctx.stats.record_restart(K::KIND);
                if !state.intensity.allow(state.ctx.clock.now_ms()) {
                    tracing::error!(kind = K::KIND, %id, %error, "restart intensity exceeded; escalating");
                    return Err(format!(
                        "{} branch: restart intensity exceeded ({id} failed: {error})",
                        K::KIND
                    )
                    .into());
                }
                tracing::warn!(kind = K::KIND, %id, %error, "entity failed; restarting from storage");
                if let Err(error) = state.start_entity(&myself, id).await {
                    tracing::warn!(kind = K::KIND, %id, %error, "restart failed; will start on next command");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(id) = state.entity_of.remove(&cell.get_id()) {
                    K::registry(&state.ctx).forget(id, cell.get_id());
                }
            }
            _ => {}
        }
        Ok(())
    }
}
