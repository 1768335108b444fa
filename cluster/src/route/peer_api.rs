//! The handler that serves the commands other nodes send this one ([`PeerCommand`]):
//! each arrives in one link envelope and is answered with one [`PeerResult`].

use super::commands::{PeerAnswer, PeerCommand, PeerResult};
use super::nearby::nearby_here;
use super::router::{ClusterRouter, Traffic};
use super::LocalApi;
use crate::{CallHandler, Envelope, LinkError};
use fixit_actors::codec;
use fixit_actors::error::CoreError;
use fixit_actors::ids::{CustomerId, WalletId};
use fixit_actors::ledger::LedgerOp;
use fixit_protocol::api::ApiError;
use fixit_protocol::principal::Role;
use std::sync::Arc;

/// Serves commands from other nodes through this node's API.
pub(crate) struct PeerHandler<A> {
    pub(crate) api: Arc<A>,
    pub(crate) router: Arc<ClusterRouter>,
}

impl<A: LocalApi> PeerHandler<A> {
    fn wallet_here(&self, wallet: WalletId) -> Result<(), ApiError> {
        if self.router.wallets_replicated() {
            // Any node takes it: the wallet's shard leader serves it.
            return Ok(());
        }
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
            PeerCommand::Candidates(query) => Ok(PeerAnswer::Nearby(node.candidates(&query)?)),
            PeerCommand::Provider { provider, call } => {
                node.provider_remote(provider, call).await?;
                Ok(PeerAnswer::Done)
            }
            PeerCommand::Decline { job, provider } => {
                node.decline(provider, job).await?;
                Ok(PeerAnswer::Done)
            }
            PeerCommand::JobEvents(events) => {
                node.deliver_job_events(events);
                Ok(PeerAnswer::Done)
            }
            PeerCommand::SettingsDigests(theirs) => {
                Ok(super::settings_sync::answer_digests(node, &theirs))
            }
            PeerCommand::SettingsFetch(keys) => Ok(PeerAnswer::Settings(
                super::settings_sync::answer_fetch(node, &keys)?,
            )),
            PeerCommand::SettingsPush(settings) => {
                node.merge_settings(settings).await?;
                Ok(PeerAnswer::Done)
            }
            PeerCommand::Ping => Ok(PeerAnswer::Done),
            PeerCommand::ShardsHeld => Ok(PeerAnswer::ShardsHeld(
                self.router.shards_or_unavailable()?.holds_data(),
            )),
            PeerCommand::Raft { shard, rpc } => {
                self.router
                    .shards_or_unavailable()?
                    .serve_raft(shard, rpc)
                    .await
            }
            PeerCommand::Shard {
                shard,
                wallet,
                call,
            } => {
                self.router
                    .shards_or_unavailable()?
                    .serve_peer(shard, wallet, call)
                    .await
            }
            PeerCommand::ReplaceReplica { shard, old, new } => {
                self.router
                    .shards_or_unavailable()?
                    .serve_replace(shard, &old, &new)
                    .await
            }
        }
    }
}

impl<A: LocalApi> CallHandler for PeerHandler<A> {
    async fn handle(&self, from: &str, envelope: Envelope) -> Result<Vec<u8>, LinkError> {
        self.router.heard_from(from);
        let command: PeerCommand = codec::decode(&envelope.command)
            .map_err(|error| LinkError::BadFrame(format!("command: {error}")))?;
        if let PeerCommand::Client { principal, .. } = &command {
            if principal.role == Role::Customer {
                // The customer is connected there: their job events go there.
                let customer = CustomerId(principal.sub);
                self.api
                    .node()
                    .context()
                    .customer_nodes
                    .note(customer, Some(from));
            }
        }
        let result = self.serve(command, &envelope.request_id).await;
        codec::encode(&result).map_err(|error| LinkError::Refused(error.to_string()))
    }
}
