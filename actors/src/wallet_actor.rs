//! The wallet actor: serializes one wallet's ledger operations and answers only
//! once they are durable.

use crate::context::NodeContext;
use crate::entity::{EntityKind, Registry};
use crate::error::{CoreError, CoreResult};
use crate::failpoints::{self, Fault};
use crate::ids::WalletId;
use crate::ledger::{Balance, LedgerEntry, LedgerOp};
use crate::store::OpOutcome;
use ractor::RpcReplyPort;
use std::sync::Arc;

/// Fault-injection name of the point right after a wallet's transaction commits
/// and before it replies: a crash there must not apply a retry twice.
pub const COMMITTED_FAULT_KIND: &str = "wallet-committed";

/// Commands of a wallet.
pub enum WalletCommand {
    /// Apply a ledger operation under an idempotency key.
    Apply {
        /// Idempotency key.
        key: String,
        /// The operation.
        op: LedgerOp,
        /// Answer, sent once durable.
        reply: RpcReplyPort<CoreResult<OpOutcome>>,
    },
    /// Current balance.
    Balance {
        /// Answer.
        reply: RpcReplyPort<CoreResult<Balance>>,
    },
    /// A page of the ledger.
    History {
        /// First entry wanted.
        from_seq: u64,
        /// Most entries wanted.
        limit: usize,
        /// Answer.
        reply: RpcReplyPort<CoreResult<Vec<LedgerEntry>>>,
    },
}

/// The wallet entity kind.
pub struct WalletKind;

/// A wallet actor's state: whether the wallet exists in storage.
pub struct WalletState {
    exists: bool,
}

impl EntityKind for WalletKind {
    type Id = WalletId;
    type Command = WalletCommand;
    type State = WalletState;
    const KIND: &'static str = "wallet";
    const FAILPOINT: &'static str = crate::failpoints::WALLET_HANDLE;

    fn raw_id(id: WalletId) -> u64 {
        id.0
    }

    fn registry(ctx: &NodeContext) -> &Registry<Self> {
        &ctx.wallets
    }

    async fn load(id: WalletId, ctx: &Arc<NodeContext>) -> CoreResult<WalletState> {
        let record = ctx.store.wallet_record(id)?;
        Ok(WalletState {
            exists: record.next_seq > 0,
        })
    }

    async fn handle(
        id: WalletId,
        state: &mut WalletState,
        command: WalletCommand,
        ctx: &Arc<NodeContext>,
    ) {
        match command {
            WalletCommand::Apply { key, op, reply } => {
                let home = |wallet| ctx.remote_home(wallet);
                let result = match failpoints::check(failpoints::STORE_APPLY, &ctx.config.node.id) {
                    Some(Fault::Error) => Err(CoreError::Unavailable(
                        "storage: injected transaction failure".into(),
                    )),
                    fault => {
                        if let Some(Fault::Delay(delay)) = fault {
                            tokio::time::sleep(delay).await;
                        }
                        ctx.store.apply(id, &key, &op, ctx.clock.now_ms(), &home)
                    }
                };
                state.exists |= result.is_ok();
                // Chaos hook: a crash after the commit, before the reply.
                ctx.faults.check(COMMITTED_FAULT_KIND, id.0);
                let queued = result.is_ok() && matches!(op, LedgerOp::Capture { .. });
                ctx.durability.reply(reply, result).await;
                if let (true, Some(cluster)) = (queued, &ctx.cluster) {
                    cluster.transfers_queued();
                }
            }
            WalletCommand::Balance { reply } => {
                // Read from storage: captures by other wallets credit this one.
                let record = ctx.store.wallet_record(id);
                let result = record.and_then(|record| {
                    if record.next_seq == 0 {
                        Err(CoreError::NotFound(id.to_string()))
                    } else {
                        Ok(record.balance)
                    }
                });
                let _ = reply.send(result);
            }
            WalletCommand::History {
                from_seq,
                limit,
                reply,
            } => {
                let _ = reply.send(ctx.store.history(id, from_seq, limit));
            }
        }
    }
}
