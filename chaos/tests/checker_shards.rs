//! The invariant checker against replicated wallet shards in real sled
//! databases: three nodes' `shards/` written as three replicas of one shard would
//! be (log entries, applied index, the ledger they applied), then checked as
//! stopped nodes. Replicas that agree pass; a replica that missed writes, two
//! replicas with different states at one index, and two leaders writing in one
//! term each break the invariant that says so.

use fixit_actors::codec;
use fixit_actors::ids::WalletId;
use fixit_actors::ledger::LedgerOp;
use fixit_actors::store::Store;
use fixit_chaos::checker::{check, AckedDeposit, Acknowledged, CheckOutcome, NodeDir};
use fixit_cluster::placement::node_number;
use fixit_cluster::shards::{open_shard, ShardId, ShardTypes, ShardWrite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use std::path::Path;

const SHARD: ShardId = ShardId(0);
/// One bucket: every wallet falls in shard w0.
const BUCKETS: u32 = 1;
const WALLET: WalletId = WalletId(7);

/// One log entry: its leader (term, node name) and a deposit (`None`: a leader's
/// blank entry).
#[derive(Clone, Copy)]
struct Logged {
    term: u64,
    leader: &'static str,
    deposit: Option<i64>,
}

const fn write(term: u64, leader: &'static str, amount: i64) -> Logged {
    Logged {
        term,
        leader,
        deposit: Some(amount),
    }
}

const fn blank(term: u64, leader: &'static str) -> Logged {
    Logged {
        term,
        leader,
        deposit: None,
    }
}

/// The deposit key of log index `index`.
fn key(index: u64) -> String {
    format!("dep-{index}")
}

/// Writes node `dir`: an empty node store, and in `shards/` a replica of w0
/// whose log is `log` (index 1 on) and which applied the first `applied` entries.
fn replica(dir: &Path, log: &[Logged], applied: u64) {
    drop(Store::open(dir, 16 << 20).expect("node store"));
    let shards = dir.join("shards");
    let db = fixit_actors::store::open_db(&shards, 16 << 20).expect("shards db");
    let grouped = fixit_actors::sled_gate::GroupFlushed::new(db.clone());
    let (_log, state) = open_shard(&grouped, &shards, SHARD, BUCKETS).expect("shard");
    let raft_log = db.open_tree("w0/raft_log").expect("log tree");
    for (index, logged) in (1u64..).zip(log) {
        let leader = u64::from(node_number(logged.leader));
        let log_id = LogId::new(CommittedLeaderId::new(logged.term, leader), index);
        let payload = match logged.deposit {
            Some(amount) => EntryPayload::Normal(ShardWrite::Op {
                wallet: WALLET,
                key: key(index),
                op: LedgerOp::Deposit { amount },
                now_ms: index,
            }),
            None => EntryPayload::Blank,
        };
        let entry: Entry<ShardTypes> = Entry { log_id, payload };
        let value = codec::encode(&entry).expect("entry encodes");
        raft_log
            .insert(index.to_be_bytes(), value)
            .expect("entry written");
        if index > applied {
            continue;
        }
        if let Some(amount) = logged.deposit {
            let op = LedgerOp::Deposit { amount };
            let here = |_: WalletId| None;
            state
                .store()
                .apply(WALLET, &key(index), &op, index, &here)
                .expect("deposit applies");
        }
        let applied_tree = db.open_tree("w0/raft_sm").expect("state tree");
        let value = codec::encode(&log_id).expect("log id encodes");
        applied_tree
            .insert("applied", value)
            .expect("applied written");
    }
    db.flush().expect("flushed");
}

/// Three nodes with the given (log, applied) replicas; checks them against the
/// acknowledged deposits of `acked` (indexes of the first log).
fn check_replicas(replicas: [(&[Logged], u64); 3], acked: &[u64]) -> CheckOutcome {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for (name, (log, applied)) in ["a", "b", "c"].into_iter().zip(replicas) {
        let dir = root.path().join(name);
        replica(&dir, log, applied);
        nodes.push(NodeDir {
            name: name.into(),
            dir,
        });
    }
    let first = replicas[0].0;
    let acked = Acknowledged {
        deposits: acked
            .iter()
            .map(|index| AckedDeposit {
                wallet: WALLET.0,
                key: key(*index),
                amount: first[*index as usize - 1].deposit.expect("a deposit"),
            })
            .collect(),
        ..Acknowledged::default()
    };
    check(&nodes, &acked).expect("checks")
}

const AGREED: [Logged; 4] = [
    blank(1, "a"),
    write(1, "a", 100),
    write(1, "a", 50),
    write(1, "a", 25),
];

#[test]
fn replicas_that_agree_pass_and_the_shard_is_the_ledger() {
    let outcome = check_replicas([(&AGREED, 4), (&AGREED, 4), (&AGREED, 4)], &[2, 3, 4]);
    assert!(outcome.holds(), "{outcome:#?}");
    assert_eq!(
        (outcome.totals.shards, outcome.totals.shard_replicas),
        (1, 3)
    );
    // The shard is counted once, not once per replica.
    assert_eq!(outcome.totals.balances, 175);
    assert_eq!(outcome.totals.external, 175);
    assert_eq!(outcome.totals.wallets, 1);
}

#[test]
fn a_replica_behind_by_writes_is_named_and_one_behind_by_a_blank_entry_is_not() {
    // A new leader's blank entry that one replica did not apply changes nothing.
    let mut later = AGREED.to_vec();
    later.push(blank(2, "b"));
    let outcome = check_replicas([(&later, 5), (&later, 5), (&later, 4)], &[2, 3, 4]);
    assert!(outcome.holds(), "{outcome:#?}");
    // c applied two writes fewer: not caught up. The shard's state is the
    // replica that applied most, so no acknowledged deposit is lost.
    let outcome = check_replicas([(&AGREED, 4), (&AGREED, 4), (&AGREED, 2)], &[2, 3, 4]);
    assert_eq!(outcome.failed(), ["replicas_agree"], "{outcome:#?}");
    let said = &outcome.violations["replicas_agree"][0];
    assert!(
        said.contains("replica on c") && said.contains("misses 2 writes"),
        "{said}"
    );
    assert_eq!(outcome.acked_lost, 0);
}

#[test]
fn replicas_with_different_states_at_one_index_break_agreement() {
    // c's entry 4 was written by the same leader yet says another amount: the
    // states differ at the same applied index.
    let mut other = AGREED;
    other[3] = write(1, "a", 26);
    let outcome = check_replicas([(&AGREED, 4), (&AGREED, 4), (&other, 4)], &[2, 3]);
    assert!(outcome.failed().contains(&"replicas_agree"), "{outcome:#?}");
    assert!(outcome.violations["replicas_agree"][0].contains("hold different states"));
}

#[test]
fn two_leaders_applying_different_entries_is_a_split_brain() {
    // c applied entries 3 and 4 of leader a in term 2; a and b hold entries of
    // leader b in term 3 there (as after a wiped node voted for a replica that
    // lacked what c had committed with it).
    let winner = [
        blank(1, "a"),
        write(1, "a", 100),
        blank(3, "b"),
        write(3, "b", 7),
    ];
    let loser = [
        blank(1, "a"),
        write(1, "a", 100),
        blank(2, "a"),
        write(2, "a", 50),
    ];
    let outcome = check_replicas([(&winner, 4), (&winner, 4), (&loser, 4)], &[2]);
    let failed = outcome.failed();
    assert!(failed.contains(&"single_leader_per_term"), "{outcome:#?}");
    assert!(failed.contains(&"replicas_agree"), "{outcome:#?}");
    let said = outcome.violations["single_leader_per_term"].join("\n");
    assert!(said.contains("split brain"), "{said}");
    // Two leaders in one term, even when nothing applied differs, is reported.
    let first = [blank(1, "a"), write(1, "a", 100), write(1, "b", 5)];
    let outcome = check_replicas([(&first, 3), (&first, 3), (&first, 3)], &[2]);
    assert_eq!(outcome.failed(), ["single_leader_per_term"], "{outcome:#?}");
}
