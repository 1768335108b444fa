//! The root supervisor: one branch per entity kind plus the services branch.
//! A failed critical branch is restarted within the root's intensity limit (past
//! it the root fails and the node reports itself down); the non-critical services
//! branch is always restarted, after a pause, and never brings the node down.

use crate::context::NodeContext;
use crate::entity::{BranchArgs, EntityBranch};
use crate::intensity::RestartIntensity;
use crate::job_actor::JobKind;
use crate::provider_actor::ProviderKind;
use crate::services::ServicesBranch;
use crate::session_actor::SessionKind;
use crate::wallet_actor::WalletKind;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Pause before the services branch is restarted after it gave up.
const SERVICES_RESTART_DELAY_MS: u64 = 100;

/// The root's branches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BranchName {
    /// Wallet actors.
    Wallets,
    /// Provider actors.
    Providers,
    /// Job actors.
    Jobs,
    /// Customer session actors.
    Sessions,
    /// Notifier and verifier.
    Services,
}

impl BranchName {
    /// Every branch, in start order.
    pub const ALL: [BranchName; 5] = [
        BranchName::Wallets,
        BranchName::Providers,
        BranchName::Jobs,
        BranchName::Sessions,
        BranchName::Services,
    ];

    fn critical(self) -> bool {
        self != BranchName::Services
    }
}

/// Messages of the root.
pub enum RootMessage {
    /// Start a branch again (after a pause).
    Restart(BranchName),
    /// The branches running now, by name.
    Branches(ractor::RpcReplyPort<HashMap<BranchName, ActorId>>),
}

/// The root supervisor.
pub struct Root;

/// The root's state.
pub struct RootState {
    ctx: Arc<NodeContext>,
    intensity: RestartIntensity,
    branches: HashMap<ActorId, BranchName>,
}

async fn spawn_branch(
    name: BranchName,
    ctx: Arc<NodeContext>,
    root: ActorCell,
) -> Result<ActorId, SpawnErr> {
    let args = BranchArgs { ctx };
    let id = match name {
        BranchName::Wallets => {
            Actor::spawn_linked(None, EntityBranch::<WalletKind>::default(), args, root)
                .await?
                .0
                .get_id()
        }
        BranchName::Providers => {
            Actor::spawn_linked(None, EntityBranch::<ProviderKind>::default(), args, root)
                .await?
                .0
                .get_id()
        }
        BranchName::Jobs => {
            Actor::spawn_linked(None, EntityBranch::<JobKind>::default(), args, root)
                .await?
                .0
                .get_id()
        }
        BranchName::Sessions => {
            Actor::spawn_linked(None, EntityBranch::<SessionKind>::default(), args, root)
                .await?
                .0
                .get_id()
        }
        BranchName::Services => Actor::spawn_linked(None, ServicesBranch, args, root)
            .await?
            .0
            .get_id(),
    };
    Ok(id)
}

impl RootState {
    async fn start(
        &mut self,
        myself: &ActorRef<RootMessage>,
        name: BranchName,
    ) -> Result<(), SpawnErr> {
        let id = spawn_branch(name, self.ctx.clone(), myself.get_cell()).await?;
        self.branches.insert(id, name);
        Ok(())
    }
}

impl Actor for Root {
    type Msg = RootMessage;
    type State = RootState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<RootMessage>,
        ctx: Arc<NodeContext>,
    ) -> Result<RootState, ActorProcessingErr> {
        let supervision = &ctx.config.supervision;
        let mut state = RootState {
            intensity: RestartIntensity::new(
                supervision.root_restarts_max,
                supervision.root_restart_window_ms,
            ),
            ctx,
            branches: HashMap::new(),
        };
        for name in BranchName::ALL {
            state.start(&myself, name).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMessage>,
        message: RootMessage,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMessage::Restart(name) => state.start(&myself, name).await?,
            RootMessage::Branches(reply) => {
                let running = state
                    .branches
                    .iter()
                    .map(|(id, name)| (*name, *id))
                    .collect();
                let _ = reply.send(running);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMessage>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, error) = event else {
            return Ok(());
        };
        let Some(name) = state.branches.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.ctx.stats.record_restart("branch");
        if !name.critical() {
            tracing::warn!(branch = ?name, %error, "non-critical branch gave up; restarting after a pause");
            myself.send_after(
                Duration::from_millis(SERVICES_RESTART_DELAY_MS),
                move || RootMessage::Restart(name),
            );
            return Ok(());
        }
        if !state.intensity.allow(state.ctx.clock.now_ms()) {
            tracing::error!(branch = ?name, %error, "root restart intensity exceeded; node stopping");
            return Err(format!("branch {name:?} keeps failing: {error}").into());
        }
        tracing::warn!(branch = ?name, %error, "branch escalated; restarting it");
        state.start(&myself, name).await?;
        Ok(())
    }
}
