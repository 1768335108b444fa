//! A wallet shard's Raft storage in sled: the log and the vote ([`LogStore`]),
//! and the ledger state machine with its snapshots ([`StateMachine`]). Every
//! tree of shard `w<n>` is named `w<n>/…`, so the shards of a node share one
//! database and one fsync.
//!
//! A snapshot is a stream of separately encoded records (a header with the
//! snapshot's meta, chunks of one store tree's records, an end record with the
//! count), so no single value comes near the codec's decode limit.

use super::types::{shard_of, BatchedOp, ShardAnswer, ShardId, ShardTypes, ShardWrite};
use fixit_actors::codec::{self, CodecError};
use fixit_actors::error::{CoreError, CoreResult};
use fixit_actors::ids::WalletId;
use fixit_actors::sled_gate::{self, GroupFlushed};
use fixit_actors::store::{LedgerCommand, Mark, OpOutcome, Store};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend,
    RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

/// The shard's log: key = index (big-endian `u64`), value = encoded entry.
const LOG_TREE: &str = "raft_log";
/// The log's state: vote, committed and last purged log ids.
const STATE_TREE: &str = "raft_state";
/// The state machine's Raft meta: last applied, membership, snapshots.
const SM_TREE: &str = "raft_sm";

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"last_purged";
const APPLIED_KEY: &[u8] = b"applied";
const MEMBERSHIP_KEY: &[u8] = b"membership";
const SNAPSHOT_META_KEY: &[u8] = b"snapshot_meta";
const SNAPSHOT_DATA_KEY: &[u8] = b"snapshot_data";
/// A received snapshot being installed: present only between its arrival and
/// the end of its import; a restart finds it and finishes the import.
const PENDING_META_KEY: &[u8] = b"pending_meta";
const PENDING_DATA_KEY: &[u8] = b"pending_data";

/// Version of the snapshot stream; a stream of another version is refused.
const SNAPSHOT_FORMAT: u32 = 1;
/// Key and value bytes gathered into one snapshot chunk: far under the codec's
/// decode limit, so a chunk of ordinary records always decodes.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// How [`Store`] marks an I/O failure (`CoreError::Unavailable("storage: …")`),
/// as opposed to an answer every replica gives alike.
const STORE_IO_PREFIX: &str = "storage:";

type NodeId = u64;
type ShardLogId = LogId<NodeId>;
type ShardMembership = StoredMembership<NodeId, BasicNode>;
type ShardSnapshotMeta = SnapshotMeta<NodeId, BasicNode>;
type StorageResult<T> = Result<T, StorageError<NodeId>>;
/// A store's records, tree by tree ([`Store::export`]).
type StoreTrees = Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>;

/// What went wrong in a shard's storage, before it is told to openraft (as a
/// [`StorageError`], which stops the Raft node) or to the node (as a [`CoreError`]).
#[derive(Debug, thiserror::Error)]
enum StorageFault {
    /// The database failed.
    #[error("storage: {0}")]
    Disk(#[from] sled::Error),
    /// A stored record or a snapshot record does not encode or decode.
    #[error("record: {0}")]
    Codec(#[from] CodecError),
    /// The ledger store failed.
    #[error("store: {0}")]
    Store(#[from] CoreError),
    /// A blocking task (snapshot export, encoding, import) panicked.
    #[error("blocking task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A snapshot stream of another version.
    #[error("snapshot format {0} is not this version's ({SNAPSHOT_FORMAT})")]
    Format(u32),
    /// A snapshot stream that is cut, reordered or not the one its meta describes.
    #[error("malformed snapshot: {0}")]
    Malformed(&'static str),
    /// A snapshot builder asked to build a second time (its copy is gone).
    #[error("this snapshot builder already built its snapshot")]
    BuilderSpent,
}

impl From<StorageFault> for CoreError {
    fn from(fault: StorageFault) -> Self {
        match fault {
            StorageFault::Disk(error) => CoreError::Unavailable(format!("storage: {error}")),
            StorageFault::Store(error) => error,
            other => CoreError::Internal(format!("shard storage: {other}")),
        }
    }
}

/// Openraft's error for `fault`, met doing `verb` to `subject`.
fn storage_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    fault: impl Into<StorageFault>,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, &fault.into()).into()
}

/// [`storage_error`] for `map_err`.
fn io<E: Into<StorageFault>>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(E) -> StorageError<NodeId> {
    move |fault| storage_error(subject, verb, fault)
}

/// Opens (or creates) the log and the state machine of `shard` in `db`, a shard
/// of `buckets` (wallets of other buckets are paid through outbox transfers).
/// Finishes a snapshot install a crash interrupted.
pub fn open_shard(
    db: &GroupFlushed,
    dir: &Path,
    shard: ShardId,
    buckets: u32,
) -> CoreResult<(LogStore, StateMachine)> {
    let prefix = format!("{}/", shard.name());
    let tree = |name: &str| -> CoreResult<sled::Tree> {
        Ok(db
            .db()
            .open_tree(format!("{prefix}{name}"))
            .map_err(StorageFault::from)?)
    };
    let log_store = LogStore {
        db: db.clone(),
        log: tree(LOG_TREE)?,
        state: tree(STATE_TREE)?,
    };
    let state_machine = StateMachine {
        shard,
        buckets,
        db: db.clone(),
        store: Store::open_in(db.db().clone(), &prefix, dir)?,
        meta: tree(SM_TREE)?,
        snapshot_lock: Arc::default(),
    };
    resume_install(
        state_machine.db.db(),
        &state_machine.store,
        &state_machine.meta,
    )?;
    Ok((log_store, state_machine))
}

/// Reads and decodes one record of `tree`.
fn read_record<T: DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, StorageFault> {
    match tree.get(key)? {
        Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
        None => Ok(None),
    }
}

/// Encodes and writes one record of `tree` (not flushed).
fn write_record<T: Serialize>(
    tree: &sled::Tree,
    key: &[u8],
    value: &T,
) -> Result<(), StorageFault> {
    tree.insert(key, codec::encode(value)?)?;
    Ok(())
}

/// The log key of `index`: big-endian, so the tree's order is the log's.
fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

// ---------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------

/// A shard's Raft log and vote in sled. Clones share the trees (a clone is the
/// log reader of the replication tasks).
#[derive(Clone)]
pub struct LogStore {
    db: GroupFlushed,
    log: sled::Tree,
    state: sled::Tree,
}

impl LogStore {
    /// The id of the last entry present, if any.
    fn last_entry_id(&self) -> Result<Option<ShardLogId>, StorageFault> {
        match self.log.last()? {
            Some((_, bytes)) => Ok(Some(codec::decode::<Entry<ShardTypes>>(&bytes)?.log_id)),
            None => Ok(None),
        }
    }

    /// Removes every entry whose index is in `range`, in one batch.
    fn remove_entries(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), StorageFault> {
        let mut writes: Writes = Vec::new();
        for key in self.log.range(range).keys() {
            writes.push((key?.to_vec(), None));
        }
        write_atomically(&self.log, &writes)
    }
}

impl RaftLogReader<ShardTypes> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<ShardTypes>>> {
        let start = match range.start_bound() {
            Bound::Included(start) => *start,
            Bound::Excluded(start) => match start.checked_add(1) {
                Some(start) => start,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(end) => Bound::Included(index_key(*end)),
            Bound::Excluded(end) => Bound::Excluded(index_key(*end)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for value in self
            .log
            .range((Bound::Included(index_key(start)), end))
            .values()
        {
            let value = value.map_err(io(ErrorSubject::Logs, ErrorVerb::Read))?;
            entries.push(codec::decode(&value).map_err(io(ErrorSubject::Logs, ErrorVerb::Read))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<ShardTypes> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<ShardTypes>> {
        let last_purged_log_id: Option<ShardLogId> = read_record(&self.state, PURGED_KEY)
            .map_err(io(ErrorSubject::Logs, ErrorVerb::Read))?;
        let last_entry = self
            .last_entry_id()
            .map_err(io(ErrorSubject::Logs, ErrorVerb::Read))?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last_entry.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Durable before it returns: a vote forgotten in a crash could let this
    /// node vote twice in one term.
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        write_record(&self.state, VOTE_KEY, vote)
            .map_err(io(ErrorSubject::Vote, ErrorVerb::Write))?;
        self.db
            .flush()
            .await
            .map_err(io(ErrorSubject::Vote, ErrorVerb::Write))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        read_record(&self.state, VOTE_KEY).map_err(io(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Not flushed: a committed id lost in a crash only means fewer entries
    /// re-applied at start (the rest are applied once the leader says so again).
    async fn save_committed(&mut self, committed: Option<ShardLogId>) -> StorageResult<()> {
        match committed {
            Some(log_id) => write_record(&self.state, COMMITTED_KEY, &log_id),
            None => self
                .state
                .remove(COMMITTED_KEY)
                .map(drop)
                .map_err(StorageFault::from),
        }
        .map_err(io(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> StorageResult<Option<ShardLogId>> {
        read_record(&self.state, COMMITTED_KEY).map_err(io(ErrorSubject::Store, ErrorVerb::Read))
    }

    /// All entries in one batch and one fsync; the callback is told only after
    /// the fsync (a follower acknowledges what the callback reports, and an
    /// acknowledged entry counts toward a commit of money).
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<ShardTypes>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<ShardTypes>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut writes: Writes = Vec::new();
        for entry in entries {
            let value = codec::encode(&entry)
                .map_err(io(ErrorSubject::Log(entry.log_id), ErrorVerb::Write))?;
            writes.push((index_key(entry.log_id.index).to_vec(), Some(value)));
        }
        write_atomically(&self.log, &writes).map_err(io(ErrorSubject::Logs, ErrorVerb::Write))?;
        match self.db.flush().await {
            Ok(_) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let reported = storage_error(ErrorSubject::Logs, ErrorVerb::Write, error.clone());
                callback.log_io_completed(Err(std::io::Error::other(error)));
                Err(reported)
            }
        }
    }

    /// Removes the entries from `log_id.index` on, durably (a conflicting entry
    /// must not come back after a crash once newer ones were acknowledged).
    async fn truncate(&mut self, log_id: ShardLogId) -> StorageResult<()> {
        self.remove_entries(index_key(log_id.index)..)
            .map_err(io(ErrorSubject::Logs, ErrorVerb::Delete))?;
        self.db
            .flush()
            .await
            .map_err(io(ErrorSubject::Logs, ErrorVerb::Delete))?;
        Ok(())
    }

    /// Records `log_id` as the last purged, then removes the entries up to it.
    /// Not flushed: sled keeps its writes' order through a crash, so the mark
    /// is never lost while the entries are gone; entries that come back are
    /// covered by the snapshot, made durable before any purge.
    async fn purge(&mut self, log_id: ShardLogId) -> StorageResult<()> {
        write_record(&self.state, PURGED_KEY, &log_id)
            .map_err(io(ErrorSubject::Logs, ErrorVerb::Write))?;
        self.remove_entries(..=index_key(log_id.index))
            .map_err(io(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}

// ---------------------------------------------------------------------------
// The state machine
// ---------------------------------------------------------------------------

/// A shard's state machine: its ledger [`Store`] and, beside it, the last
/// applied log id, the last membership and the current snapshot.
pub struct StateMachine {
    shard: ShardId,
    buckets: u32,
    db: GroupFlushed,
    store: Store,
    meta: sled::Tree,
    /// Held while the current snapshot is replaced: a snapshot built from an
    /// older state may finish after a newer one was installed.
    snapshot_lock: Arc<tokio::sync::Mutex<()>>,
}

impl StateMachine {
    /// The shard's ledger store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Index of the last log entry applied, `None` before the first.
    pub fn applied_index(&self) -> CoreResult<Option<u64>> {
        let applied: Option<ShardLogId> = read_record(&self.meta, APPLIED_KEY)?;
        Ok(applied.map(|log_id| log_id.index))
    }

    /// Where a wallet lives, seen from this shard: `None` here, else the name of
    /// its shard (the `to_node` of transfers to it).
    fn home(&self) -> impl Fn(WalletId) -> Option<String> + Sync {
        let (shard, buckets) = (self.shard, self.buckets);
        move |wallet| {
            let home = shard_of(wallet, buckets);
            (home != shard).then(|| home.name())
        }
    }

    /// Applies one entry and records it as the last applied.
    ///
    /// Not flushed: the log is durable. A batch of ledger operations is
    /// applied and recorded as applied in one transaction (re-applied half-way
    /// after a crash, an operation refused the first time could see the later
    /// ones' effects). Any other entry re-applied after a crash changes nothing
    /// (a single ledger operation carries its idempotency key, and sled keeps
    /// its writes' order through a crash, so the entries after it are not
    /// durable either; removing a delivered transfer twice removes nothing).
    fn apply_entry(&self, entry: Entry<ShardTypes>) -> Result<ShardAnswer, StorageFault> {
        let log_id = entry.log_id;
        let mut writes: Writes = vec![(APPLIED_KEY.to_vec(), Some(codec::encode(&log_id)?))];
        let answer = match entry.payload {
            EntryPayload::Blank => ShardAnswer::Nothing,
            EntryPayload::Normal(ShardWrite::Batch(ops)) => {
                let applied = [(APPLIED_KEY.to_vec(), codec::encode(&log_id)?)];
                return self.apply_batch_entry(&ops, &applied);
            }
            EntryPayload::Normal(write) => self.apply_write(write)?,
            EntryPayload::Membership(membership) => {
                let stored = StoredMembership::new(Some(log_id), membership);
                writes.push((MEMBERSHIP_KEY.to_vec(), Some(codec::encode(&stored)?)));
                ShardAnswer::Nothing
            }
        };
        write_atomically(&self.meta, &writes)?;
        Ok(answer)
    }

    /// Applies a batch of ledger operations and `applied` (the applied mark)
    /// in one transaction. The ledger's refusals are answers; an I/O failure
    /// or a failed batch stops this replica (no replica may answer differently).
    fn apply_batch_entry(
        &self,
        ops: &[BatchedOp],
        applied: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<ShardAnswer, StorageFault> {
        let commands: Vec<LedgerCommand<'_>> = ops
            .iter()
            .map(|op| LedgerCommand {
                wallet: op.wallet,
                key: &op.key,
                op: &op.op,
                now_ms: op.now_ms,
            })
            .collect();
        let mark = Mark {
            tree: &self.meta,
            records: applied,
        };
        let answers = self.store.apply_many(&commands, &self.home(), &mark)?;
        Ok(ShardAnswer::Batch(answers))
    }

    /// Applies one application write other than a batch. The ledger's
    /// refusals are answers (every replica refuses alike); its I/O failures
    /// are not: they stop this replica.
    fn apply_write(&self, write: ShardWrite) -> Result<ShardAnswer, StorageFault> {
        match write {
            ShardWrite::Op {
                wallet,
                key,
                op,
                now_ms,
            } => self
                .apply_op(&BatchedOp {
                    wallet,
                    key,
                    op,
                    now_ms,
                })
                .map(ShardAnswer::Op),
            ShardWrite::Batch(ops) => {
                // Batches come through `apply_entry`, which marks them applied
                // in the same transaction; a batch here has no entry to mark.
                Err(StorageFault::Store(CoreError::Internal(format!(
                    "a batch of {} operations reached apply_write",
                    ops.len()
                ))))
            }
            ShardWrite::Delivered(transfers) => {
                for transfer in &transfers {
                    self.store.remove_transfer(transfer)?;
                }
                Ok(ShardAnswer::Done)
            }
        }
    }

    /// Applies one ledger operation: the ledger's answer, refusals included;
    /// an I/O failure is an error (it stops this replica).
    fn apply_op(&self, op: &BatchedOp) -> Result<Result<OpOutcome, CoreError>, StorageFault> {
        match self
            .store
            .apply(op.wallet, &op.key, &op.op, op.now_ms, &self.home())
        {
            Err(CoreError::Unavailable(message)) if message.starts_with(STORE_IO_PREFIX) => {
                Err(CoreError::Unavailable(message).into())
            }
            answer => Ok(answer),
        }
    }

    /// The last applied log id and membership.
    fn applied(&self) -> Result<(Option<ShardLogId>, ShardMembership), StorageFault> {
        Ok((
            read_record(&self.meta, APPLIED_KEY)?,
            read_record(&self.meta, MEMBERSHIP_KEY)?.unwrap_or_default(),
        ))
    }

    /// A copy of the state as of now: the store's records with the applied
    /// log id and membership they reflect.
    async fn view(&self) -> Result<StateView, StorageFault> {
        let (applied, membership) = self.applied()?;
        let store = self.store.clone();
        let trees = tokio::task::spawn_blocking(move || store.export()).await??;
        Ok(StateView {
            applied,
            membership,
            trees,
        })
    }
}

impl RaftStateMachine<ShardTypes> for StateMachine {
    type SnapshotBuilder = ShardSnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<ShardLogId>, ShardMembership)> {
        self.applied()
            .map_err(io(ErrorSubject::StateMachine, ErrorVerb::Read))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<ShardAnswer>>
    where
        I: IntoIterator<Item = Entry<ShardTypes>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut answers = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let answer = self
                .apply_entry(entry)
                .map_err(io(ErrorSubject::Apply(log_id), ErrorVerb::Write))?;
            answers.push(answer);
        }
        Ok(answers)
    }

    /// Copies the state here, between two applies (openraft builds the
    /// snapshot in another task, while entries go on being applied).
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        ShardSnapshotBuilder {
            view: Some(self.view().await),
            db: self.db.clone(),
            meta: self.meta.clone(),
            snapshot_lock: self.snapshot_lock.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Stages the snapshot durably, then replaces the store's records by its
    /// records and makes it the current snapshot (a crash in between finishes
    /// the import at the next [`open_shard`]).
    async fn install_snapshot(
        &mut self,
        meta: &ShardSnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let stream = snapshot.into_inner();
        let (header, _) = decode_snapshot(&stream).map_err(io(subject.clone(), ErrorVerb::Read))?;
        if header != *meta {
            let fault = StorageFault::Malformed("its header is not the meta it came with");
            return Err(storage_error(subject, ErrorVerb::Read, fault));
        }
        let _replacing = self.snapshot_lock.lock().await;
        let (db, store, tree) = (self.db.clone(), self.store.clone(), self.meta.clone());
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StorageFault> {
            stage_install(db.db(), &tree, &meta, &stream)?;
            finish_install(db.db(), &store, &tree, &meta, &stream)
        })
        .await
        .map_err(StorageFault::from)
        .and_then(|installed| installed)
        .map_err(io(subject, ErrorVerb::Write))
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<ShardTypes>>> {
        let subject = ErrorSubject::Snapshot(None);
        let Some(meta) = read_record::<ShardSnapshotMeta>(&self.meta, SNAPSHOT_META_KEY)
            .map_err(io(subject.clone(), ErrorVerb::Read))?
        else {
            return Ok(None);
        };
        let stream = self
            .meta
            .get(SNAPSHOT_DATA_KEY)
            .map_err(io(subject.clone(), ErrorVerb::Read))?
            .ok_or(StorageFault::Malformed(
                "its meta is stored but not its data",
            ))
            .map_err(io(subject, ErrorVerb::Read))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stream.to_vec())),
        }))
    }
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

/// The state a snapshot is made of, copied between two applies.
struct StateView {
    applied: Option<ShardLogId>,
    membership: ShardMembership,
    trees: StoreTrees,
}

/// Builds a shard's snapshot from the state copied when it was made.
pub struct ShardSnapshotBuilder {
    /// The copy (or why it could not be made); taken by the build.
    view: Option<Result<StateView, StorageFault>>,
    db: GroupFlushed,
    meta: sled::Tree,
    snapshot_lock: Arc<tokio::sync::Mutex<()>>,
}

impl RaftSnapshotBuilder<ShardTypes> for ShardSnapshotBuilder {
    /// Encodes the copy, saves it as the current snapshot (unless a newer one
    /// was installed meanwhile) and fsyncs before returning: openraft may purge
    /// the log up to the snapshot next.
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<ShardTypes>> {
        let subject = ErrorSubject::Snapshot(None);
        let view = self
            .view
            .take()
            .unwrap_or(Err(StorageFault::BuilderSpent))
            .map_err(io(subject.clone(), ErrorVerb::Read))?;
        let meta = SnapshotMeta {
            last_log_id: view.applied,
            last_membership: view.membership,
            snapshot_id: snapshot_id(view.applied),
        };
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let header = meta.clone();
        let trees = view.trees;
        let stream = tokio::task::spawn_blocking(move || {
            encode_snapshot(&header, trees, SNAPSHOT_CHUNK_BYTES)
        })
        .await
        .map_err(StorageFault::from)
        .and_then(|encoded| encoded.map_err(StorageFault::from))
        .map_err(io(subject.clone(), ErrorVerb::Write))?;
        let _replacing = self.snapshot_lock.lock().await;
        let current: Option<ShardSnapshotMeta> = read_record(&self.meta, SNAPSHOT_META_KEY)
            .map_err(io(subject.clone(), ErrorVerb::Read))?;
        if current.is_none_or(|current| current.last_log_id <= meta.last_log_id) {
            save_current(&self.meta, &meta, &stream)
                .map_err(io(subject.clone(), ErrorVerb::Write))?;
            self.db
                .flush()
                .await
                .map_err(io(subject, ErrorVerb::Write))?;
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stream)),
        })
    }
}

/// A snapshot id unique on this node: what it covers, and when it was made.
fn snapshot_id(applied: Option<ShardLogId>) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    match applied {
        Some(log_id) => format!("{}-{}-{nanos}", log_id.leader_id.term, log_id.index),
        None => format!("none-{nanos}"),
    }
}

/// Keys to write (`Some` value) or remove (`None`), applied together.
type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Applies `writes` to `tree` atomically, in a sled transaction, through the
/// gate that keeps transactions and flushes apart (see
/// [`fixit_actors::sled_gate`]: both sled's transactions and `apply_batch`
/// take its process-wide exclusive lock, which deadlocks with a flush).
fn write_atomically(
    tree: &sled::Tree,
    writes: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Result<(), StorageFault> {
    sled_gate::write(|| {
        tree.transaction(|tx| {
            for (key, value) in writes {
                match value {
                    Some(value) => {
                        tx.insert(key.as_slice(), value.as_slice())?;
                    }
                    None => {
                        tx.remove(key.as_slice())?;
                    }
                }
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
    })
    .map_err(|error| match error {
        sled::transaction::TransactionError::Storage(error) => StorageFault::from(error),
        sled::transaction::TransactionError::Abort(()) => StorageFault::from(
            sled::Error::ReportableBug("a write transaction aborted".into()),
        ),
    })
}

/// Writes `meta` and `stream` as the current snapshot, in one batch (not flushed).
fn save_current(
    tree: &sled::Tree,
    meta: &ShardSnapshotMeta,
    stream: &[u8],
) -> Result<(), StorageFault> {
    let writes: Writes = vec![
        (SNAPSHOT_META_KEY.to_vec(), Some(codec::encode(meta)?)),
        (SNAPSHOT_DATA_KEY.to_vec(), Some(stream.to_vec())),
    ];
    write_atomically(tree, &writes)
}

/// Durably records a received snapshot as being installed.
fn stage_install(
    db: &sled::Db,
    tree: &sled::Tree,
    meta: &ShardSnapshotMeta,
    stream: &[u8],
) -> Result<(), StorageFault> {
    let writes: Writes = vec![
        (PENDING_META_KEY.to_vec(), Some(codec::encode(meta)?)),
        (PENDING_DATA_KEY.to_vec(), Some(stream.to_vec())),
    ];
    write_atomically(tree, &writes)?;
    sled_gate::flush(db)?;
    Ok(())
}

/// Replaces the store's records by the snapshot's, records what it covers as
/// applied, makes it the current snapshot and drops the staged copy; fsynced.
/// Repeating it after a crash gives the same result.
fn finish_install(
    db: &sled::Db,
    store: &Store,
    tree: &sled::Tree,
    meta: &ShardSnapshotMeta,
    stream: &[u8],
) -> Result<(), StorageFault> {
    let (_, trees) = decode_snapshot(stream)?;
    store.import(&trees)?;
    let applied = match meta.last_log_id {
        Some(log_id) => Some(codec::encode(&log_id)?),
        None => None,
    };
    let writes: Writes = vec![
        (APPLIED_KEY.to_vec(), applied),
        (
            MEMBERSHIP_KEY.to_vec(),
            Some(codec::encode(&meta.last_membership)?),
        ),
        (SNAPSHOT_META_KEY.to_vec(), Some(codec::encode(meta)?)),
        (SNAPSHOT_DATA_KEY.to_vec(), Some(stream.to_vec())),
        (PENDING_META_KEY.to_vec(), None),
        (PENDING_DATA_KEY.to_vec(), None),
    ];
    write_atomically(tree, &writes)?;
    sled_gate::flush(db)?;
    Ok(())
}

/// Finishes the install of a snapshot staged before a crash, if there is one.
fn resume_install(db: &sled::Db, store: &Store, tree: &sled::Tree) -> Result<(), StorageFault> {
    let Some(meta) = read_record::<ShardSnapshotMeta>(tree, PENDING_META_KEY)? else {
        return Ok(());
    };
    let stream = tree
        .get(PENDING_DATA_KEY)?
        .ok_or(StorageFault::Malformed("a staged snapshot has no data"))?;
    tracing::warn!(snapshot = %meta, "finishing a snapshot install a restart interrupted");
    finish_install(db, store, tree, &meta, &stream)
}

/// One record of a snapshot stream.
#[derive(Debug, Serialize, Deserialize)]
enum SnapshotRecord {
    /// First: the stream's format and what the snapshot covers.
    Header {
        /// [`SNAPSHOT_FORMAT`] when written.
        format: u32,
        /// The snapshot's meta.
        meta: ShardSnapshotMeta,
    },
    /// Records of one store tree (a large tree spans consecutive chunks).
    Chunk {
        /// The tree's name, without the shard prefix.
        tree: String,
        /// Its keys and values, in key order.
        records: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Last: how many records the chunks held, so a cut stream is refused.
    End {
        /// The number of (key, value) records.
        records: u64,
    },
}

/// Encodes a snapshot as a stream of records, each chunk holding about
/// `chunk_bytes` of keys and values (every tree gets at least one chunk).
fn encode_snapshot(
    meta: &ShardSnapshotMeta,
    trees: StoreTrees,
    chunk_bytes: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut stream = Vec::new();
    push_record(
        &mut stream,
        &SnapshotRecord::Header {
            format: SNAPSHOT_FORMAT,
            meta: meta.clone(),
        },
    )?;
    let mut count = 0u64;
    for (tree, records) in trees {
        count += records.len() as u64;
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        for (key, value) in records {
            bytes += key.len() + value.len();
            chunk.push((key, value));
            if bytes >= chunk_bytes {
                let records = std::mem::take(&mut chunk);
                push_record(
                    &mut stream,
                    &SnapshotRecord::Chunk {
                        tree: tree.clone(),
                        records,
                    },
                )?;
                bytes = 0;
            }
        }
        push_record(
            &mut stream,
            &SnapshotRecord::Chunk {
                tree,
                records: chunk,
            },
        )?;
    }
    push_record(&mut stream, &SnapshotRecord::End { records: count })?;
    Ok(stream)
}

/// Appends one encoded record to `stream`, refusing one too large to decode.
fn push_record(stream: &mut Vec<u8>, record: &SnapshotRecord) -> Result<(), CodecError> {
    let bytes = codec::encode(record)?;
    if bytes.len() > codec::DECODE_BYTES_MAX {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: codec::DECODE_BYTES_MAX,
        });
    }
    stream.extend_from_slice(&bytes);
    Ok(())
}

/// Decodes a snapshot stream: its meta and the store's records, tree by tree.
/// Refuses a stream without its header or end record, with a count that does
/// not match, with a tree split apart or with bytes after the end.
fn decode_snapshot(stream: &[u8]) -> Result<(ShardSnapshotMeta, StoreTrees), StorageFault> {
    let (header, mut position) = codec::decode_prefix::<SnapshotRecord>(stream)?;
    let SnapshotRecord::Header { format, meta } = header else {
        return Err(StorageFault::Malformed("it does not start with its header"));
    };
    if format != SNAPSHOT_FORMAT {
        return Err(StorageFault::Format(format));
    }
    let mut trees: StoreTrees = Vec::new();
    let mut count = 0u64;
    // Each record takes at least one byte, so this ends within `stream.len()` rounds.
    while position < stream.len() {
        let (record, used) = codec::decode_prefix::<SnapshotRecord>(&stream[position..])?;
        position += used;
        match record {
            SnapshotRecord::Header { .. } => {
                return Err(StorageFault::Malformed("it has a second header"));
            }
            SnapshotRecord::Chunk { tree, records } => {
                count += records.len() as u64;
                add_chunk(&mut trees, tree, records)?;
            }
            SnapshotRecord::End { records } if records != count => {
                return Err(StorageFault::Malformed("its record count does not match"));
            }
            SnapshotRecord::End { .. } if position != stream.len() => {
                return Err(StorageFault::Malformed("bytes follow its end record"));
            }
            SnapshotRecord::End { .. } => return Ok((meta, trees)),
        }
    }
    Err(StorageFault::Malformed("it ends without its end record"))
}

/// Adds a chunk's records to its tree: the last one, or a new one if no
/// earlier chunk named it.
fn add_chunk(
    trees: &mut StoreTrees,
    tree: String,
    records: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), StorageFault> {
    if let Some((last, all)) = trees.last_mut() {
        if *last == tree {
            all.extend(records);
            return Ok(());
        }
    }
    if trees.iter().any(|(name, _)| *name == tree) {
        return Err(StorageFault::Malformed(
            "a tree's chunks are not consecutive",
        ));
    }
    trees.push((tree, records));
    Ok(())
}

#[cfg(test)]
mod tests;
