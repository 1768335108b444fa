//! The commands nodes send each other, and the handler that serves them. Every
//! command travels in one link envelope (encoded by `fixit_protocol::codec`) and is
//! answered with one [`PeerResult`].

use super::forward::nearby_here;
use super::router::{ClusterRouter, Traffic};
use super::LocalApi;
use crate::{CallHandler, Envelope, LinkError};
use fixit_actors::codec;
use fixit_actors::error::CoreError;
use fixit_actors::geo::Nearby;
use fixit_actors::ids::WalletId;
use fixit_actors::ledger::LedgerOp;
use fixit_actors::store::{OpOutcome, Transfer};
use fixit_protocol::api::{ApiError, NearbyQuery, Request, Response};
use fixit_protocol::principal::Principal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A command from another node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerCommand {
    /// A client request the sending node forwarded to the node that owns it. The
    /// sender authenticated the principal; this node authorizes again.
    Client {
        /// Who sent it.
        principal: Principal,
        /// What they asked.
        request: Request,
    },
    /// A ledger operation on a wallet homed here (holds, releases and captures of
    /// jobs held elsewhere).
    WalletOp {
        /// The wallet.
        wallet: WalletId,
        /// Idempotency key.
        key: String,
        /// The operation.
        op: LedgerOp,
    },
    /// An outbox transfer to a wallet homed here; applied once per transfer id.
    Transfer(Transfer),
    /// A nearby search in this node's index only (one leg of a scatter–gather).
    Nearby(NearbyQuery),
}

/// A successful answer to a [`PeerCommand`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerAnswer {
    /// The answer to a forwarded client request.
    Response(Response),
    /// The outcome of a ledger operation or transfer.
    Op(OpOutcome),
    /// Providers found here.
    Nearby(Vec<Nearby>),
}

/// What a node answers another.
pub type PeerResult = Result<PeerAnswer, ApiError>;

/// Serves commands from other nodes through this node's API.
pub(crate) struct PeerHandler<A> {
    pub(crate) api: Arc<A>,
    pub(crate) router: Arc<ClusterRouter>,
}

impl<A: LocalApi> PeerHandler<A> {
    fn wallet_here(&self, wallet: WalletId) -> Result<(), ApiError> {
        let home = self.router.home_of(wallet);
        if home == self.router.name() {
            Ok(())
        } else {
            // The nodes disagree about placement (a config change in progress).
            Err(ApiError::Core(CoreError::Unavailable(format!(
                "wallet {} is homed on {home}, not on {}",
                wallet.0,
                self.router.name()
            ))))
        }
    }

    async fn serve(&self, command: PeerCommand, request_id: &str) -> PeerResult {
        let node = self.api.node();
        let traffic = &self.router.traffic;
        match command {
            PeerCommand::Client { principal, request } => {
                Traffic::count(&traffic.forwarded_in);
                let response = self
                    .api
                    .serve_forwarded(&principal, request, request_id)
                    .await?;
                Ok(PeerAnswer::Response(response))
            }
            PeerCommand::WalletOp { wallet, key, op } => {
                if matches!(op, LedgerOp::TransferIn { .. }) {
                    return Err(ApiError::BadRequest(
                        "transfers arrive as Transfer commands".into(),
                    ));
                }
                self.wallet_here(wallet)?;
                Traffic::count(&traffic.wallet_calls_in);
                Ok(PeerAnswer::Op(node.wallet_op(wallet, &key, op).await?))
            }
            PeerCommand::Transfer(transfer) => {
                self.wallet_here(transfer.to_wallet)?;
                let outcome = node
                    .wallet_op(transfer.to_wallet, &transfer.id, transfer.op())
                    .await?;
                Traffic::count(&traffic.transfers_received);
                tracing::debug!(transfer = %transfer.id, amount = transfer.amount, "transfer credited");
                Ok(PeerAnswer::Op(outcome))
            }
            PeerCommand::Nearby(query) => Ok(PeerAnswer::Nearby(nearby_here(node, &query)?)),
        }
    }
}

impl<A: LocalApi> CallHandler for PeerHandler<A> {
    async fn handle(&self, _from: &str, envelope: Envelope) -> Result<Vec<u8>, LinkError> {
        let command: PeerCommand = codec::decode(&envelope.command)
            .map_err(|error| LinkError::BadFrame(format!("command: {error}")))?;
        let result = self.serve(command, &envelope.request_id).await;
        codec::encode(&result).map_err(|error| LinkError::Refused(error.to_string()))
    }
}
