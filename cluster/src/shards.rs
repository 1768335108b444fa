//! Replicated wallet shards: wallets fall into a fixed number of buckets (by a
//! stable hash of their id), each bucket is one Raft group (openraft) on
//! `replication_factor` nodes, its log and state machine in sled, its messages
//! over the cluster's mutual-TLS QUIC links. A ledger operation is proposed to
//! its bucket's leader and answered once a majority has it on disk and the
//! leader has applied it; reads go through the leader after a read-index check.

pub mod network;
pub mod proposer;
pub mod replace;
pub mod running;
mod storage;
pub mod types;

pub use running::{Group, ShardAudit, ShardView, Shards, ViewDepth};
pub use storage::{open_shard, LogStore, StateMachine};
pub use types::{
    replicas_of, shard_of, BatchedOp, ShardAnswer, ShardId, ShardRaft, ShardTypes, ShardWrite,
};
