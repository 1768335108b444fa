//! Raft messages of the wallet shards over the cluster's links: each message is
//! one [`PeerCommand::Raft`] call to the target node (mutual TLS, the node's
//! name checked against its certificate), answered with the target's encoded
//! result. A link that fails is "unreachable" to openraft, which backs off and
//! retries on its own.

use super::types::{ShardId, ShardTypes};
use crate::route::commands::{PeerAnswer, PeerCommand, RaftRpc};
use crate::route::ClusterRouter;
use fixit_actors::codec;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Makes the link clients of one shard.
pub struct ShardNetwork {
    pub(crate) shard: ShardId,
    pub(crate) router: Arc<ClusterRouter>,
}

impl RaftNetworkFactory<ShardTypes> for ShardNetwork {
    type Network = ShardPeer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> ShardPeer {
        ShardPeer {
            shard: self.shard,
            target,
            node: node.addr.clone(),
            router: self.router.clone(),
        }
    }
}

/// One shard's messages to one node.
pub struct ShardPeer {
    shard: ShardId,
    target: u64,
    /// The target's cluster name.
    node: String,
    router: Arc<ClusterRouter>,
}

type Failure<E> = RPCError<u64, BasicNode, RaftError<u64, E>>;

impl ShardPeer {
    /// Sends one message and reads the target's `Result<Resp, RaftError<E>>`.
    async fn send<Req, Resp, E>(
        &self,
        request: &Req,
        wrap: fn(Vec<u8>) -> RaftRpc,
        option: &RPCOption,
    ) -> Result<Resp, Failure<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let bytes =
            codec::encode(request).map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        self.send_encoded(bytes, wrap, option).await
    }

    /// [`ShardPeer::send`] of a request already encoded.
    async fn send_encoded<Resp, E>(
        &self,
        bytes: Vec<u8>,
        wrap: fn(Vec<u8>) -> RaftRpc,
        option: &RPCOption,
    ) -> Result<Resp, Failure<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let command = PeerCommand::Raft {
            shard: self.shard,
            rpc: wrap(bytes),
        };
        let request_id = format!("raft-{}", self.shard);
        let call = self.router.call(&self.node, &command, None, &request_id);
        let answer = match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(answer) => answer,
            Err(elapsed) => return Err(RPCError::Unreachable(Unreachable::new(&elapsed))),
        };
        match answer {
            Ok(PeerAnswer::Raft(bytes)) => {
                let result: Result<Resp, RaftError<u64, E>> = codec::decode(&bytes)
                    .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
                result.map_err(|error| {
                    RPCError::RemoteError(RemoteError::new_with_node(
                        self.target,
                        BasicNode::new(self.node.clone()),
                        error,
                    ))
                })
            }
            Ok(other) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(format!(
                    "node {} answered a Raft message with {other:?}",
                    self.node
                )),
            ))),
            Err(error) => Err(RPCError::Unreachable(Unreachable::new(&error))),
        }
    }
}

impl RaftNetwork<ShardTypes> for ShardPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ShardTypes>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, Failure<openraft::error::Infallible>> {
        let bytes =
            codec::encode(&rpc).map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        if let Some(hint) = entries_that_fit(rpc.entries.len(), bytes.len()) {
            // Too big for a link frame: openraft sends fewer entries next.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        self.send_encoded(bytes, RaftRpc::Append, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<ShardTypes>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, Failure<InstallSnapshotError>> {
        self.send(&rpc, RaftRpc::Snapshot, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, Failure<openraft::error::Infallible>> {
        self.send(&rpc, RaftRpc::Vote, &option).await
    }
}

/// Most bytes of one encoded AppendEntries message: three quarters of the
/// default link frame (1 MiB), room for the call's envelope. An entry is a
/// batch of up to [`super::proposer::BATCH_MAX`] ledger operations (at most
/// about 133 KiB), so openraft's 300 entries per message can be far more.
pub const APPEND_BYTES_MAX: usize = 768 * 1024;

/// When `entries` entries encode to `bytes`, more than [`APPEND_BYTES_MAX`]:
/// how many to send instead (at least one; an entry alone always fits).
/// openraft, told the payload is too large, sends that many next. Without
/// it a follower far enough behind was sent a message the link could not
/// frame, again and again, until a snapshot replaced the entries.
pub fn entries_that_fit(entries: usize, bytes: usize) -> Option<u64> {
    if bytes <= APPEND_BYTES_MAX || entries <= 1 {
        return None;
    }
    let per_entry = bytes.div_ceil(entries).max(1);
    Some((APPEND_BYTES_MAX / per_entry).clamp(1, entries - 1) as u64)
}

/// Serves a Raft message for `raft` and encodes its result for the sender.
pub(crate) async fn serve(
    raft: &super::ShardRaft,
    rpc: RaftRpc,
) -> Result<Vec<u8>, codec::CodecError> {
    match rpc {
        RaftRpc::Append(bytes) => codec::encode(&raft.append_entries(codec::decode(&bytes)?).await),
        RaftRpc::Vote(bytes) => codec::encode(&raft.vote(codec::decode(&bytes)?).await),
        RaftRpc::Snapshot(bytes) => {
            codec::encode(&raft.install_snapshot(codec::decode(&bytes)?).await)
        }
    }
}
