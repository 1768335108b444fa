//! Tests of a shard's storage: openraft's own storage suite, the ledger through
//! a snapshot to a fresh replica, restarts and interrupted installs.

use super::*;
use fixit_actors::ledger::{LedgerOp, Transfer};
use openraft::storage::RaftLogStorageExt;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Membership};
use std::collections::BTreeSet;
use tempfile::TempDir;

/// Buckets of the tests' shards.
const BUCKETS: u32 = 16;

/// A shard in a fresh database of its own; the directory lives as long as it.
struct TempShard {
    log: LogStore,
    state: StateMachine,
    db: sled::Db,
    dir: TempDir,
}

/// Opens `shard` in a fresh database.
fn temp_shard(shard: ShardId) -> TempShard {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .expect("open sled");
    let (log, state) =
        open_shard(&GroupFlushed::new(db.clone()), dir.path(), shard, BUCKETS).expect("open shard");
    TempShard {
        log,
        state,
        db,
        dir,
    }
}

/// Builds fresh shards for openraft's storage suite; the temp dir is the guard.
struct TempShardBuilder;

impl StoreBuilder<ShardTypes, LogStore, StateMachine, TempDir> for TempShardBuilder {
    async fn build(&self) -> StorageResult<(TempDir, LogStore, StateMachine)> {
        let shard = temp_shard(ShardId(0));
        Ok((shard.dir, shard.log, shard.state))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    // The suite makes its own runtimes: run it outside one.
    if let Err(error) = Suite::test_all(TempShardBuilder) {
        panic!("openraft's storage suite: {error}");
    }
}

fn log_id(index: u64) -> ShardLogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn op_entry(index: u64, wallet: WalletId, key: &str, op: LedgerOp) -> Entry<ShardTypes> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(ShardWrite::Op {
            wallet,
            key: key.into(),
            op,
            now_ms: 1_700_000_000_000 + index,
        }),
    }
}

fn membership_entry(index: u64) -> Entry<ShardTypes> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1, 2, 3])], None)),
    }
}

/// A payer in one shard and a payee in another.
fn payer_and_payee() -> (WalletId, ShardId, WalletId, ShardId) {
    let payer = WalletId(1);
    let payer_shard = shard_of(payer, BUCKETS);
    let payee = (2..)
        .map(WalletId)
        .find(|wallet| shard_of(*wallet, BUCKETS) != payer_shard)
        .expect("a wallet of another shard");
    (payer, payer_shard, payee, shard_of(payee, BUCKETS))
}

/// Deposit 1000, hold 600, capture 600 (fee 60) to a payee of another shard.
fn ledger_entries(payer: WalletId, payee: WalletId) -> Vec<Entry<ShardTypes>> {
    vec![
        membership_entry(1),
        op_entry(2, payer, "deposit-1", LedgerOp::Deposit { amount: 1_000 }),
        op_entry(3, payer, "hold-1", LedgerOp::Hold { amount: 600 }),
        op_entry(
            4,
            payer,
            "capture-1",
            LedgerOp::Capture {
                amount: 600,
                fee: 60,
                payee,
            },
        ),
    ]
}

#[tokio::test]
async fn a_snapshot_carries_the_ledger_and_its_outbox_to_a_fresh_replica() {
    let (payer, shard, payee, payee_shard) = payer_and_payee();
    let mut leader = temp_shard(shard);
    let answers = leader
        .state
        .apply(ledger_entries(payer, payee))
        .await
        .expect("apply");
    assert_eq!(answers[0], ShardAnswer::Nothing);
    for answer in &answers[1..] {
        assert!(matches!(answer, ShardAnswer::Op(Ok(_))), "{answer:?}");
    }
    let sent = leader
        .state
        .store()
        .outbox_transfers_to(&payee_shard.name(), 10)
        .expect("outbox");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].to_wallet, sent[0].amount), (payee, 540));

    let snapshot = leader
        .state
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(4)));
    let current = leader.state.get_current_snapshot().await.expect("read");
    assert_eq!(
        current.map(|current| current.meta),
        Some(snapshot.meta.clone())
    );

    let mut follower = temp_shard(shard);
    let mut received = follower
        .state
        .begin_receiving_snapshot()
        .await
        .expect("begin");
    *received = *snapshot.snapshot;
    follower
        .state
        .install_snapshot(&snapshot.meta, received)
        .await
        .expect("install");
    let digest = |state: &StateMachine| state.store().digest().expect("digest");
    assert_eq!(digest(&follower.state), digest(&leader.state));
    assert_eq!(
        follower.state.applied_state().await.expect("applied"),
        leader.state.applied_state().await.expect("applied")
    );
    assert_eq!(follower.state.applied_index().expect("index"), Some(4));
    assert_eq!(
        follower
            .state
            .store()
            .outbox_transfers_to(&payee_shard.name(), 10)
            .expect("outbox"),
        sent
    );

    let delivered = Entry {
        log_id: log_id(5),
        payload: EntryPayload::Normal(ShardWrite::Delivered(sent.clone())),
    };
    let answers = follower.state.apply([delivered]).await.expect("apply");
    assert_eq!(answers, vec![ShardAnswer::Done]);
    let left: Vec<Transfer> = follower
        .state
        .store()
        .outbox_transfers_to(&payee_shard.name(), 10)
        .expect("outbox");
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(follower.state.applied_index().expect("index"), Some(5));
}

#[tokio::test]
async fn an_entry_applied_again_answers_alike_and_changes_nothing() {
    let (payer, shard, payee, _) = payer_and_payee();
    let mut replica = temp_shard(shard);
    let first = replica
        .state
        .apply(ledger_entries(payer, payee))
        .await
        .expect("apply");
    let digest = replica.state.store().digest().expect("digest");
    let again = replica
        .state
        .apply(ledger_entries(payer, payee))
        .await
        .expect("apply again");
    assert_eq!(again, first);
    assert_eq!(replica.state.store().digest().expect("digest"), digest);
}

#[tokio::test]
async fn a_restart_keeps_the_vote_the_log_and_what_was_applied() {
    let (payer, shard, payee, _) = payer_and_payee();
    let TempShard {
        mut log,
        mut state,
        db,
        dir,
    } = temp_shard(shard);
    let vote = Vote::new(7, 2);
    log.save_vote(&vote).await.expect("vote");
    log.blocking_append(ledger_entries(payer, payee))
        .await
        .expect("append");
    log.purge(log_id(1)).await.expect("purge");
    state
        .apply(ledger_entries(payer, payee))
        .await
        .expect("apply");
    let digest = state.store().digest().expect("digest");
    drop((log, state, db));

    let db = sled::Config::new().path(dir.path()).open().expect("reopen");
    let (mut log, mut state) =
        open_shard(&GroupFlushed::new(db.clone()), dir.path(), shard, BUCKETS).expect("open");
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    assert_eq!(
        log.get_log_state().await.expect("state"),
        LogState {
            last_purged_log_id: Some(log_id(1)),
            last_log_id: Some(log_id(4)),
        }
    );
    let entries = log.try_get_log_entries(..).await.expect("entries");
    assert_eq!(
        entries
            .iter()
            .map(|entry| entry.log_id.index)
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(
        state.applied_state().await.expect("applied").0,
        Some(log_id(4))
    );
    assert_eq!(state.store().digest().expect("digest"), digest);
}

#[tokio::test]
async fn an_install_cut_by_a_crash_is_finished_at_open() {
    let (payer, shard, payee, _) = payer_and_payee();
    let mut leader = temp_shard(shard);
    leader
        .state
        .apply(ledger_entries(payer, payee))
        .await
        .expect("apply");
    let snapshot = leader
        .state
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");

    let follower = temp_shard(shard);
    let stream = snapshot.snapshot.into_inner();
    stage_install(&follower.db, &follower.state.meta, &snapshot.meta, &stream).expect("stage");
    // The crash: nothing imported yet.
    assert_eq!(follower.state.applied_index().expect("index"), None);

    let (_, mut state) = open_shard(
        &GroupFlushed::new(follower.db.clone()),
        follower.dir.path(),
        shard,
        BUCKETS,
    )
    .expect("open");
    assert_eq!(state.applied_index().expect("index"), Some(4));
    assert_eq!(
        state.store().digest().expect("digest"),
        leader.state.store().digest().expect("digest")
    );
    let current = state.get_current_snapshot().await.expect("read");
    assert_eq!(current.map(|current| current.meta), Some(snapshot.meta));
    assert_eq!(state.meta.get(PENDING_META_KEY).expect("read"), None);
}

fn sample_meta() -> ShardSnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(9)),
        last_membership: StoredMembership::new(
            Some(log_id(1)),
            Membership::new(vec![BTreeSet::from([1, 2, 3])], None),
        ),
        snapshot_id: "1-9-42".into(),
    }
}

fn sample_trees() -> StoreTrees {
    let records = |count: u8| -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..count).map(|n| (vec![n], vec![n; 100])).collect()
    };
    vec![
        ("wallets".into(), records(30)),
        ("ledger".into(), Vec::new()),
        ("outbox".into(), records(7)),
    ]
}

#[test]
fn snapshot_streams_round_trip_in_chunks_and_cut_streams_are_refused() {
    let meta = sample_meta();
    let whole = encode_snapshot(&meta, sample_trees(), usize::MAX).expect("encode");
    // Chunks of about 250 bytes: the 30 wallets span several.
    let chunked = encode_snapshot(&meta, sample_trees(), 250).expect("encode");
    assert!(chunked.len() > whole.len());
    for stream in [&whole, &chunked] {
        let (decoded_meta, trees) = decode_snapshot(stream).expect("decode");
        assert_eq!(decoded_meta, meta);
        assert_eq!(trees, sample_trees());
    }
    for cut in [1, chunked.len() / 2, chunked.len() - 1] {
        assert!(decode_snapshot(&chunked[..cut]).is_err(), "cut at {cut}");
    }
    let mut trailing = whole.clone();
    trailing.push(0);
    assert!(matches!(
        decode_snapshot(&trailing),
        Err(StorageFault::Malformed(_))
    ));
}

#[test]
fn a_record_too_large_to_decode_is_refused_when_encoding() {
    let huge = vec![(
        "ledger".to_string(),
        vec![(vec![1], vec![0; codec::DECODE_BYTES_MAX])],
    )];
    assert!(matches!(
        encode_snapshot(&sample_meta(), huge, SNAPSHOT_CHUNK_BYTES),
        Err(CodecError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn refusals_are_answers_and_still_count_as_applied() {
    let (payer, shard, payee, _) = payer_and_payee();
    let mut replica = temp_shard(shard);
    let answers = replica
        .state
        .apply([
            op_entry(1, payer, "hold-1", LedgerOp::Hold { amount: 5 }),
            op_entry(2, payee, "deposit-1", LedgerOp::Deposit { amount: 5 }),
        ])
        .await
        .expect("apply");
    assert!(
        matches!(
            answers[0],
            ShardAnswer::Op(Err(CoreError::InsufficientFunds { .. }))
        ),
        "{answers:?}"
    );
    // A wallet of another shard: refused alike on every replica, not an I/O fault.
    assert!(
        matches!(&answers[1], ShardAnswer::Op(Err(CoreError::Unavailable(message)))
            if !message.starts_with(STORE_IO_PREFIX)),
        "{answers:?}"
    );
    assert_eq!(replica.state.applied_index().expect("index"), Some(2));
}
