//! The commands nodes send each other and their answers. Every command travels in
//! one link envelope (encoded by `fixit_protocol::codec`) and is answered with one
//! [`PeerResult`].

use crate::shards::replace::ReplaceStep;
use crate::shards::ShardId;
use fixit_actors::cluster_hooks::{CandidateQuery, ProviderCall, WalletCall, WalletReply};
use fixit_actors::geo::Nearby;
use fixit_actors::ids::{JobId, ProviderId, WalletId};
use fixit_actors::ledger::LedgerOp;
use fixit_actors::services::JobEvent;
use fixit_actors::settings::{Setting, Version};
use fixit_actors::store::{OpOutcome, Transfer};
use fixit_protocol::api::{ApiError, NearbyQuery, Request, Response};
use fixit_protocol::principal::Principal;
use serde::{Deserialize, Serialize};

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
    /// Dispatch candidates held here for a job held by the sender.
    Candidates(CandidateQuery),
    /// A command of a job held by the sender for a provider held here.
    Provider {
        /// The provider.
        provider: ProviderId,
        /// The command.
        call: ProviderCall,
    },
    /// A provider held by the sender declines a job held here (it went offline).
    Decline {
        /// The job.
        job: JobId,
        /// The provider.
        provider: ProviderId,
    },
    /// Job events of jobs held by the sender, for customers connected here.
    JobEvents(Vec<JobEvent>),
    /// The sender's settings digests (anti-entropy).
    SettingsDigests(Vec<u64>),
    /// Settings the sender wants, by key.
    SettingsFetch(Vec<String>),
    /// Settings the sender holds newer than this node.
    SettingsPush(Vec<Setting>),
    /// A Raft message for a wallet shard this node replicates.
    Raft {
        /// The shard.
        shard: ShardId,
        /// The message.
        rpc: RaftRpc,
    },
    /// Whether the receiver holds wallet shard data (asked by a node that has
    /// none before it founds or rejoins its shards).
    ShardsHeld,
    /// A wallet call for the leader of the wallet's shard; a replica that does
    /// not lead it answers [`PeerAnswer::NotLeader`] (and never forwards).
    Shard {
        /// The shard.
        shard: ShardId,
        /// The wallet (in that shard).
        wallet: WalletId,
        /// The call.
        call: WalletCall,
    },
    /// Nothing: a shard replica checking that it can reach another replica it
    /// has not heard from lately (answered [`PeerAnswer::Done`]).
    Ping,
    /// One step of replacing node `old` by node `new` in a shard's voters,
    /// for the shard's leader (answered [`PeerAnswer::Replace`]); a replica
    /// that does not lead it answers [`PeerAnswer::NotLeader`].
    ReplaceReplica {
        /// The shard.
        shard: ShardId,
        /// The node leaving.
        old: String,
        /// The node taking its place.
        new: String,
    },
}

/// An openraft request, encoded by the codec (openraft's own serde types).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRpc {
    /// `AppendEntriesRequest`.
    Append(Vec<u8>),
    /// `VoteRequest`.
    Vote(Vec<u8>),
    /// `InstallSnapshotRequest` (one chunk).
    Snapshot(Vec<u8>),
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
    /// Done.
    Done,
    /// An openraft answer, encoded by the codec.
    Raft(Vec<u8>),
    /// The answer to a wallet call.
    Wallet(WalletReply),
    /// Whether this node holds wallet shard data.
    ShardsHeld(bool),
    /// This node does not lead the shard; the leader it knows of, if any.
    NotLeader {
        /// The leader's node name.
        leader: Option<String>,
    },
    /// This node's setting versions in the buckets whose digests differ.
    SettingVersions {
        /// The buckets compared.
        buckets: Vec<usize>,
        /// The versions held in them (possibly cut short).
        versions: Vec<(String, Version)>,
    },
    /// Settings asked for.
    Settings(Vec<Setting>),
    /// Where the replacement of a replica of a shard stands.
    Replace(ReplaceStep),
}

/// What a node answers another.
pub type PeerResult = Result<PeerAnswer, ApiError>;
