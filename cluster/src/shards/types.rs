//! What a shard's Raft log carries and answers, and the pure placement of
//! wallet buckets: which bucket a wallet is in, which nodes replicate a bucket.

use crate::placement::rendezvous_weight;
use fixit_actors::error::CoreError;
use fixit_actors::ids::WalletId;
use fixit_actors::ledger::{LedgerOp, Transfer};
use fixit_actors::store::OpOutcome;
use serde::{Deserialize, Serialize};
use std::io::Cursor;

openraft::declare_raft_types!(
    /// The Raft types of a wallet shard: node ids are cluster node numbers, a
    /// node's address is its cluster name (the links know where it is).
    pub ShardTypes:
        D = ShardWrite,
        R = ShardAnswer,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<ShardTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft instance of one shard.
pub type ShardRaft = openraft::Raft<ShardTypes>;

/// Number of a wallet bucket (a shard): `0..buckets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId(pub u32);

impl ShardId {
    /// The shard's name in transfers, trees and logs: `w<n>`.
    pub fn name(self) -> String {
        format!("w{}", self.0)
    }

    /// The shard a name from [`ShardId::name`] stands for.
    pub fn parse(name: &str) -> Option<ShardId> {
        let digits = name.strip_prefix('w')?;
        if digits.is_empty() || digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        digits.parse().ok().map(ShardId)
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// A state change proposed to a shard's log. Applying one is deterministic
/// (the proposer stamps the time) and idempotent (ledger operations carry their
/// idempotency key, transfers their id), so a replica that replays entries it
/// had applied before a crash changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardWrite {
    /// A ledger operation on a wallet of the shard.
    Op {
        /// The wallet (in this shard).
        wallet: WalletId,
        /// Its idempotency key.
        key: String,
        /// The operation.
        op: LedgerOp,
        /// The proposer's clock when it proposed, ms since the epoch.
        now_ms: u64,
    },
    /// Outbox transfers their receiving shards acknowledged: forget them.
    Delivered(Vec<Transfer>),
    /// Ledger operations proposed together (see the proposer): applied in
    /// order, each answered on its own, in one transaction with the entry's
    /// applied mark (all or none of them after a crash).
    Batch(Vec<BatchedOp>),
}

/// One ledger operation of a [`ShardWrite::Batch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchedOp {
    /// The wallet (in this shard).
    pub wallet: WalletId,
    /// Its idempotency key.
    pub key: String,
    /// The operation.
    pub op: LedgerOp,
    /// The proposer's clock when it was proposed, ms since the epoch.
    pub now_ms: u64,
}

/// What applying a [`ShardWrite`] answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardAnswer {
    /// The ledger's answer to an operation (a refusal is an answer too: every
    /// replica refuses it alike and nothing changed).
    Op(Result<OpOutcome, CoreError>),
    /// The ledger's answer to each operation of a batch, in order.
    Batch(Vec<Result<OpOutcome, CoreError>>),
    /// Transfers forgotten.
    Done,
    /// A membership or blank entry.
    Nothing,
}

/// The bucket of a wallet: a stable hash of its id modulo `buckets` (the same
/// in every process and version, so every node agrees without asking).
pub fn shard_of(wallet: WalletId, buckets: u32) -> ShardId {
    ShardId((rendezvous_weight("wallet-bucket", wallet.0) % u64::from(buckets.max(1))) as u32)
}

/// The nodes that replicate `shard`: the `factor` data nodes with the highest
/// rendezvous weight for it (all of them when there are fewer), sorted by name.
/// Adding a node moves only the replicas the new node now wins.
pub fn replicas_of(shard: ShardId, nodes: &[String], factor: usize) -> Vec<String> {
    let mut ranked: Vec<(u64, &String)> = nodes
        .iter()
        .map(|node| (rendezvous_weight(node, u64::from(shard.0) | 1 << 40), node))
        .collect();
    ranked.sort_by(|(weight_a, node_a), (weight_b, node_b)| {
        weight_b.cmp(weight_a).then_with(|| node_a.cmp(node_b))
    });
    let mut chosen: Vec<String> = ranked
        .into_iter()
        .take(factor.max(1))
        .map(|(_, node)| node.clone())
        .collect();
    chosen.sort();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_round_trip_and_odd_names_are_refused() {
        for n in [0, 7, 15, 1000] {
            assert_eq!(ShardId::parse(&ShardId(n).name()), Some(ShardId(n)));
        }
        for odd in ["", "w", "w01", "x1", "w-1", "w1a", "node-a"] {
            assert_eq!(ShardId::parse(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn wallets_spread_over_every_bucket_and_replicas_are_stable() {
        let mut counts = [0u32; 16];
        for wallet in 0..16_000u64 {
            counts[shard_of(WalletId(wallet), 16).0 as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (700..1300).contains(&n)),
            "{counts:?}"
        );
        let nodes: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let mut led = std::collections::BTreeMap::new();
        for shard in 0..16 {
            let replicas = replicas_of(ShardId(shard), &nodes, 3);
            assert_eq!(replicas.len(), 3);
            *led.entry(replicas[0].clone()).or_insert(0) += 1;
            // Adding a node keeps at least two of the three replicas.
            let mut more = nodes.clone();
            more.push("f".into());
            let moved = replicas_of(ShardId(shard), &more, 3);
            let kept = moved.iter().filter(|node| replicas.contains(node)).count();
            assert!(kept >= 2, "{replicas:?} → {moved:?}");
        }
        assert_eq!(
            replicas_of(ShardId(3), &nodes[..2], 3),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(led.len() >= 2, "{led:?}");
    }
}
