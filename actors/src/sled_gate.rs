//! Keeps sled 0.34's flushes and its multi-key writes apart, process-wide.
//!
//! sled guards its operations with one process-wide read/write lock once any
//! transaction has run: reads, inserts and flushes take the shared side;
//! transactions (and `apply_batch`) take the exclusive side, and a waiting
//! writer goes before new readers. A flush holds the shared side *while it
//! waits* for the log to be made stable, which needs sled's I/O pool to write
//! the buffers. sled's own `flush_async` runs its flushes *on that pool*: with
//! a transaction queued for the exclusive side, the pool's threads were all
//! flush tasks holding or queued for the shared side, none was left to write,
//! and every thread of the node stopped. gdb showed exactly that in the
//! replicated bench (a shard's ledger transaction in `wait_for_readers`, two
//! flush tasks in `make_stable` holding the shared side, the other pool
//! threads queued for it); chaos had hit it before with `apply_batch`.
//!
//! So nothing here uses sled's `flush_async` (flushes run on tokio's blocking
//! threads, not on sled's pool; `clippy.toml` forbids it and `apply_batch`),
//! and, as a second guard, every flush holds this gate's shared side for its
//! whole length and every transaction takes its exclusive side first: a
//! transaction waits for running flushes *before* it queues on sled's lock.
//! Transactions were already serialized by sled, and already waited for
//! flushes, so the gate costs no concurrency.
//!
//! Never take the gate while holding it (a transaction inside a transaction,
//! a flush inside a transaction): a std `RwLock` is not re-entrant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

static GATE: RwLock<()> = RwLock::new(());

/// Runs `transaction` (a sled transaction or batch) once no flush is running.
pub fn write<T>(transaction: impl FnOnce() -> T) -> T {
    let _exclusive = GATE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    transaction()
}

/// Flushes `tree` (or a whole db: `sled::Db` derefs to its default tree; a
/// flush makes every tree of its db durable). Blocking: call from a blocking
/// thread.
pub fn flush(tree: &sled::Tree) -> sled::Result<usize> {
    let _shared = GATE.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    tree.flush()
}

/// [`flush`] on a blocking thread, awaited.
pub async fn flush_async(db: &sled::Db) -> sled::Result<usize> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || flush(&db)).await {
        Ok(flushed) => flushed,
        Err(joined) => Err(sled::Error::ReportableBug(format!(
            "a flush thread failed: {joined}"
        ))),
    }
}

/// A sled db whose flushes are grouped: one flush at a time, and a caller whose
/// writes an already started flush does not cover waits for the next one —
/// which covers every caller queued behind it. Many writers waiting for
/// durability at once (every Raft group of a node appending) then cost a few
/// fsyncs, not one each, and the threads doing them stay few. Clones share
/// the group.
#[derive(Clone)]
pub struct GroupFlushed {
    db: sled::Db,
    group: Arc<FlushGroup>,
}

#[derive(Default)]
struct FlushGroup {
    /// One flush at a time (fair: callers are served in turn).
    running: tokio::sync::Mutex<()>,
    /// Flushes asked for so far.
    asked: AtomicU64,
    /// Every flush asked for up to this number is done.
    done: AtomicU64,
    /// Flushes made.
    made: AtomicU64,
}

impl GroupFlushed {
    /// Groups the flushes of `db`.
    pub fn new(db: sled::Db) -> GroupFlushed {
        GroupFlushed {
            db,
            group: Arc::default(),
        }
    }

    /// The db.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Returns once every write made before the call is durable.
    pub async fn flush(&self) -> sled::Result<()> {
        let group = &self.group;
        // Writes before this ticket are covered by any flush that starts after it.
        let ticket = group.asked.fetch_add(1, Ordering::AcqRel) + 1;
        let _turn = group.running.lock().await;
        if group.done.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let covered = group.asked.load(Ordering::Acquire);
        flush_async(&self.db).await?;
        group.made.fetch_add(1, Ordering::Relaxed);
        group.done.fetch_max(covered, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flushes and transactions from many threads at once on one db (the
    /// pattern that deadlocked) all finish.
    #[test]
    fn flushes_and_transactions_side_by_side_finish() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(sled::Config::new().path(dir.path()).open().unwrap());
        let tree = db.open_tree("t").unwrap();
        let mut threads = Vec::new();
        for worker in 0..8u32 {
            let (db, tree) = (db.clone(), tree.clone());
            threads.push(std::thread::spawn(move || {
                for n in 0..200u32 {
                    if worker % 2 == 0 {
                        flush(&db).unwrap();
                    } else {
                        write(|| {
                            tree.transaction(|tx| {
                                tx.insert(&n.to_be_bytes(), &worker.to_be_bytes())?;
                                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                            })
                        })
                        .unwrap();
                    }
                }
            }));
        }
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(tree.len(), 200);
    }

    /// Callers that ask while a flush runs share the next one, and each returns
    /// only once a flush that started after its call is done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_queued_behind_a_flush_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = GroupFlushed::new(sled::Config::new().path(dir.path()).open().unwrap());
        // A flush under way: hold its turn.
        let running = db.group.running.lock().await;
        let mut callers = tokio::task::JoinSet::new();
        for n in 0..64u32 {
            let db = db.clone();
            callers.spawn(async move {
                db.db().insert(n.to_be_bytes(), &[1]).unwrap();
                db.flush().await.unwrap();
            });
        }
        while db.group.asked.load(Ordering::Acquire) < 64 {
            tokio::task::yield_now().await;
        }
        assert!(
            callers.try_join_next().is_none(),
            "none returned before a flush"
        );
        drop(running);
        while let Some(done) = callers.join_next().await {
            done.unwrap();
        }
        assert_eq!(
            db.group.made.load(Ordering::Acquire),
            1,
            "one flush for all"
        );
        assert_eq!(db.group.done.load(Ordering::Acquire), 64);
    }
}
