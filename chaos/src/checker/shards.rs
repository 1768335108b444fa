//! The replicated wallet shards of stopped nodes: every replica in a node's
//! (copied) `shards/` database, opened as the node opens it, and the invariants
//! only replicas have.
//!
//! - `replicas_agree`: replicas of a shard that applied the same log index hold
//!   the same state (the digest of every record of their ledger store). At the end
//!   every replica of a shard applied the same index; a replica that applied less
//!   is reported, with how many writes it misses — unless the entries it misses
//!   change no state (a new leader's blank entry, a membership entry: what an
//!   election among the last nodes still running during the stop writes), and then
//!   its digest must still equal the others'. Every voter of a shard (from the
//!   last membership entry of its logs) that is among the checked nodes holds a
//!   replica of it.
//! - `single_leader_per_term`: across every replica's log of a shard, all entries
//!   of one term were written by one leader node (no split brain); along each log
//!   the leader ids never go back; and no two replicas applied different entries
//!   at one index. openraft's default leader ids are (term, node), which allows a
//!   second leader to be elected in a term (the later one is the valid one): two
//!   leaders in one term whose applied entries agree are reported as that, two
//!   replicas that applied different entries at one index as a split brain.
//! - `single_home` also covers placement: a wallet's entries are in the shard its
//!   id falls in.

use super::{Findings, Ledger, CACHE_BYTES};
use fixit_actors::error::{CoreError, CoreResult};
use fixit_actors::ids::WalletId;
use fixit_cluster::placement::node_number;
use fixit_cluster::shards::{open_shard, shard_of, LogStore, ShardId};
use openraft::{EntryPayload, RaftLogReader};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Where a node keeps its shards' database, under its data dir.
pub(super) const SHARDS_DIR: &str = "shards";

/// One entry of a replica's log, as far as the checks need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Logged {
    index: u64,
    term: u64,
    /// The node id of the leader that wrote it.
    leader: u64,
    /// Whether it carries a write (a ledger operation, delivered transfers), as
    /// opposed to a leader's blank entry or a membership change.
    writes: bool,
}

/// One replica of one shard, read from a stopped node's copy.
pub(super) struct Replica {
    node: String,
    shard: ShardId,
    /// The last log index it applied.
    applied: Option<u64>,
    digest: u64,
    pub(super) ledger: Ledger,
    /// Its log, in index order (entries before its last snapshot are purged).
    log: Vec<Logged>,
    /// The voters of the last membership entry in its log.
    voters: Option<BTreeSet<u64>>,
}

/// Reads every shard replica in `dir`, the copy of a node's `shards/`.
pub(super) fn read_replicas(node: &str, dir: &Path) -> CoreResult<Vec<Replica>> {
    let db =
        fixit_actors::sled_gate::GroupFlushed::new(fixit_actors::store::open_db(dir, CACHE_BYTES)?);
    let shards: BTreeSet<ShardId> = db
        .db()
        .tree_names()
        .iter()
        .filter_map(|name| {
            let name = std::str::from_utf8(name).ok()?;
            ShardId::parse(name.split_once('/')?.0)
        })
        .collect();
    // The bucket count only matters to applying entries, which the checker never does.
    let buckets = shards.iter().map(|shard| shard.0 + 1).max().unwrap_or(1);
    let mut replicas = Vec::with_capacity(shards.len());
    for shard in shards {
        let (mut log, state) = open_shard(&db, dir, shard, buckets)?;
        let (log, voters) = read_log(&mut log)?;
        replicas.push(Replica {
            node: node.to_owned(),
            shard,
            applied: state.applied_index()?,
            digest: state.store().digest()?,
            ledger: Ledger::read(state.store())?,
            log,
            voters,
        });
    }
    Ok(replicas)
}

/// Every entry of a replica's log, and the voters of its last membership entry.
fn read_log(log: &mut LogStore) -> CoreResult<(Vec<Logged>, Option<BTreeSet<u64>>)> {
    // The store answers from sled without waiting on anything: the future is
    // ready when first polled, so no runtime is needed.
    let entries = futures::executor::block_on(log.try_get_log_entries(..))
        .map_err(|error| CoreError::Internal(format!("reading a shard's log: {error}")))?;
    let mut voters = None;
    let logged = entries
        .iter()
        .map(|entry| {
            if let EntryPayload::Membership(membership) = &entry.payload {
                voters = Some(membership.voter_ids().collect());
            }
            Logged {
                index: entry.log_id.index,
                term: entry.log_id.leader_id.term,
                leader: entry.log_id.leader_id.node_id,
                writes: matches!(entry.payload, EntryPayload::Normal(_)),
            }
        })
        .collect();
    Ok((logged, voters))
}

/// The replicas of each shard.
pub(super) fn by_shard<'a>(replicas: &[&'a Replica]) -> BTreeMap<ShardId, Vec<&'a Replica>> {
    let mut shards: BTreeMap<ShardId, Vec<&'a Replica>> = BTreeMap::new();
    for replica in replicas {
        shards.entry(replica.shard).or_default().push(replica);
    }
    shards
}

/// The shard's state: the replica that applied the highest index (the first by
/// node name among equals; `replicas_agree` says whether they are equal).
pub(super) fn state_of<'a>(replicas: &[&'a Replica]) -> &'a Replica {
    let mut best = replicas[0];
    for replica in &replicas[1..] {
        if replica.applied > best.applied {
            best = replica;
        }
    }
    best
}

/// A node id's name among the checked nodes, else `#id`.
fn name_of(id: u64, names: &[&str]) -> String {
    names
        .iter()
        .find(|name| u64::from(node_number(name)) == id)
        .map_or_else(|| format!("#{id}"), |name| (*name).to_owned())
}

/// `replicas_agree` over every shard.
pub(super) fn judge_agreement(
    shards: &BTreeMap<ShardId, Vec<&Replica>>,
    names: &[&str],
    findings: &mut Findings,
) {
    for (shard, replicas) in shards {
        let best = state_of(replicas);
        for replica in replicas {
            if replica.applied == best.applied {
                if replica.digest != best.digest {
                    findings.violated("replicas_agree", || {
                        format!(
                            "shard {shard}: replicas on {} and {} both applied index {:?} but hold different states (digests {:x} and {:x})",
                            best.node, replica.node, best.applied, best.digest, replica.digest
                        )
                    });
                }
                continue;
            }
            if let Some(behind) = behind(replica, best) {
                findings.violated("replicas_agree", || {
                    format!(
                        "shard {shard}: the replica on {} applied index {:?}, the one on {} applied {:?}: {behind}",
                        replica.node, replica.applied, best.node, best.applied
                    )
                });
            }
        }
        let voters = best.voters.iter().flatten();
        for voter in voters.map(|id| name_of(*id, names)) {
            let checked = names.contains(&voter.as_str());
            if checked && !replicas.iter().any(|replica| replica.node == voter) {
                findings.violated("replicas_agree", || {
                    format!("shard {shard}: node {voter} is a voter but holds no replica of it")
                });
            }
        }
    }
}

/// Why `replica` (which applied less than `best`) does not agree with it, if it
/// does not: the entries it misses write, cannot be read, or its state differs.
fn behind(replica: &Replica, best: &Replica) -> Option<String> {
    let from = replica.applied.map_or(0, |applied| applied + 1);
    let to = best.applied.unwrap_or(0);
    let missed: Vec<&Logged> = best
        .log
        .iter()
        .filter(|entry| (from..=to).contains(&entry.index))
        .collect();
    if missed.len() as u64 != to + 1 - from {
        return Some(format!(
            "entries {from}..={to} are no longer in the log of {} (purged behind a snapshot): it cannot be shown they change nothing",
            best.node
        ));
    }
    let writes = missed.iter().filter(|entry| entry.writes).count();
    if writes > 0 {
        return Some(format!(
            "{} misses {writes} writes (it did not catch up)",
            replica.node
        ));
    }
    (replica.digest != best.digest).then(|| {
        format!(
            "the {} entries between change no state, yet the digests differ ({:x} and {:x})",
            missed.len(),
            replica.digest,
            best.digest
        )
    })
}

/// `single_leader_per_term` over every shard.
pub(super) fn judge_leaders(
    shards: &BTreeMap<ShardId, Vec<&Replica>>,
    names: &[&str],
    findings: &mut Findings,
) {
    for (shard, replicas) in shards {
        let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for replica in replicas {
            for pair in replica.log.windows(2) {
                let (before, after) = (pair[0], pair[1]);
                if (after.term, after.leader) < (before.term, before.leader) {
                    findings.violated("single_leader_per_term", || {
                        format!(
                            "shard {shard}: in the log of {}, entry {} of leader ({}, {}) follows entry {} of leader ({}, {})",
                            replica.node,
                            after.index,
                            after.term,
                            name_of(after.leader, names),
                            before.index,
                            before.term,
                            name_of(before.leader, names)
                        )
                    });
                }
            }
            for entry in &replica.log {
                leaders.entry(entry.term).or_default().insert(entry.leader);
            }
        }
        let split = applied_conflicts(replicas);
        for (term, nodes) in leaders.iter().filter(|(_, nodes)| nodes.len() > 1) {
            let nodes: Vec<String> = nodes.iter().map(|id| name_of(*id, names)).collect();
            findings.violated("single_leader_per_term", || {
                let applied = if split.is_empty() {
                    "the entries the replicas applied agree (openraft's default leader ids allow a second leader in a term; the later one is the valid one)"
                } else {
                    "and replicas applied different entries (below)"
                };
                format!("shard {shard}, term {term}: entries written by leaders {nodes:?}; {applied}")
            });
        }
        for conflict in split {
            findings.violated("single_leader_per_term", || {
                format!("shard {shard}: split brain: {conflict}")
            });
        }
    }
}

/// Indexes that two replicas both applied with entries of different leaders.
fn applied_conflicts(replicas: &[&Replica]) -> Vec<String> {
    let mut conflicts = Vec::new();
    for (i, first) in replicas.iter().enumerate() {
        for second in &replicas[i + 1..] {
            let both = first.applied.min(second.applied).unwrap_or(0);
            let theirs: BTreeMap<u64, &Logged> = second
                .log
                .iter()
                .filter(|entry| entry.index <= both)
                .map(|entry| (entry.index, entry))
                .collect();
            for mine in first.log.iter().filter(|entry| entry.index <= both) {
                let Some(other) = theirs.get(&mine.index) else {
                    continue;
                };
                if (mine.term, mine.leader) != (other.term, other.leader) {
                    conflicts.push(format!(
                        "{} and {} both applied index {}, written by leaders ({}, #{}) and ({}, #{})",
                        first.node,
                        second.node,
                        mine.index,
                        mine.term,
                        mine.leader,
                        other.term,
                        other.leader
                    ));
                }
            }
        }
    }
    conflicts
}

/// Placement: every wallet of a shard's state falls in that shard (reported as
/// `single_home`: the wallet's ledger is not where every node looks for it).
pub(super) fn judge_placement(shards: &BTreeMap<ShardId, Vec<&Replica>>, findings: &mut Findings) {
    let buckets = shards.keys().map(|shard| shard.0 + 1).max().unwrap_or(0);
    let contiguous = shards.len() as u32 == buckets;
    if !contiguous {
        // Some bucket has no replica on the checked nodes: its count is unknown.
        return;
    }
    for (shard, replicas) in shards {
        let wallets: BTreeSet<WalletId> = state_of(replicas)
            .ledger
            .entries
            .iter()
            .map(|(wallet, _)| *wallet)
            .collect();
        for wallet in wallets {
            let home = shard_of(wallet, buckets);
            if home != *shard {
                findings.violated("single_home", || {
                    format!(
                        "wallet {} is kept in shard {shard}, but falls in {home}",
                        wallet.0
                    )
                });
            }
        }
    }
}
