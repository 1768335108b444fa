//! Batching of a shard's ledger writes. openraft 0.9 makes every
//! `client_write` one log entry, and the leader appends (and fsyncs) each
//! entry on its own: one fsync and one replication round per ledger operation.
//! The proposer of a shard's leader instead queues the operations that arrive
//! and proposes them as one [`ShardWrite::Batch`] entry: what arrives while a
//! batch is being committed goes into the next one, so a loaded shard commits
//! many operations per fsync and round trip, and an idle one still proposes a
//! lone operation at once (no waiting for a batch to fill).
//!
//! The queue is bounded: when it is full the operation is answered `busy` at
//! once, never queued without end.

use super::types::{BatchedOp, ShardAnswer, ShardId, ShardRaft, ShardWrite};
use fixit_actors::error::CoreError;
use fixit_actors::store::OpOutcome;
use openraft::error::{ClientWriteError, RaftError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// Most operations in one log entry (at most about 133 KiB encoded; see
/// [`super::network::APPEND_BYTES_MAX`] for how many go in one message).
pub const BATCH_MAX: usize = 512;
/// Batches of one shard being committed at once: while one waits for its
/// fsync and majority, the next is already on its way.
pub const BATCHES_IN_FLIGHT: usize = 2;
/// Operations waiting for a batch, per shard; beyond, `busy`.
pub const QUEUE_MAX: usize = 8_192;
/// The `retry_after_ms` of a `busy` answer from a full queue.
pub const BUSY_RETRY_AFTER_MS: u64 = 50;
/// Longest a batch holds its slot waiting for its commit (the longest call
/// budget): a leader that lost its majority must not stop the shard's
/// proposer. Its callers are told to look for the leader again; the entry may
/// still commit later, and a retry with the same key applies once.
pub const COMMIT_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// How a proposed operation came out.
#[derive(Debug)]
pub enum Proposed {
    /// Committed and applied: the ledger's answer (a refusal is an answer).
    Answer(Result<OpOutcome, CoreError>),
    /// This replica does not lead the shard (the leader it knows, if any).
    NotLeader(Option<String>),
    /// Not committed here for another reason (shutting down, storage): the
    /// caller looks for the leader again; a retry with the same key is safe.
    Failed(String),
}

/// One operation waiting for its batch.
struct Waiting {
    op: BatchedOp,
    answer: oneshot::Sender<Proposed>,
}

/// The proposer of one shard (on every replica; only a leader's commits).
pub struct Proposer {
    queue: mpsc::Sender<Waiting>,
}

impl Proposer {
    /// Starts the proposer of `shard`, until `stop` turns true.
    pub fn start(shard: ShardId, raft: ShardRaft, stop: watch::Receiver<bool>) -> Proposer {
        let (queue, waiting) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(run(shard, raft, waiting, stop));
        Proposer { queue }
    }

    /// Queues `op` for the next batch; its outcome once committed (or why not).
    /// A full queue is answered `busy` at once.
    pub async fn propose(&self, op: BatchedOp) -> Result<Proposed, CoreError> {
        let (answer, outcome) = oneshot::channel();
        self.queue
            .try_send(Waiting { op, answer })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => CoreError::Busy {
                    retry_after_ms: BUSY_RETRY_AFTER_MS,
                },
                mpsc::error::TrySendError::Closed(_) => {
                    CoreError::Unavailable("the shard's proposer has stopped".into())
                }
            })?;
        outcome
            .await
            .map_err(|_| CoreError::Unavailable("the shard's proposer has stopped".into()))
    }
}

/// Takes what is queued (up to [`BATCH_MAX`]) as one batch whenever fewer than
/// [`BATCHES_IN_FLIGHT`] batches are being committed.
async fn run(
    shard: ShardId,
    raft: ShardRaft,
    mut waiting: mpsc::Receiver<Waiting>,
    mut stop: watch::Receiver<bool>,
) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        let first = tokio::select! {
            first = waiting.recv() => first,
            _ = stop.changed() => None,
        };
        let Some(first) = first else {
            return;
        };
        // While every batch slot is taken, more operations queue up: they join
        // this batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(shard, &raft, batch).await;
            drop(permit);
        });
    }
}

/// Proposes `batch` as one entry and answers each of its operations.
async fn commit(shard: ShardId, raft: &ShardRaft, batch: Vec<Waiting>) {
    let (ops, answers): (Vec<BatchedOp>, Vec<oneshot::Sender<Proposed>>) = batch
        .into_iter()
        .map(|waiting| (waiting.op, waiting.answer))
        .unzip();
    let count = ops.len();
    let written = tokio::time::timeout(COMMIT_WAIT_MAX, raft.client_write(ShardWrite::Batch(ops)));
    let outcomes: Vec<Proposed> = match written.await {
        Err(_) => failed(count, "the batch was not committed in time"),
        Ok(Ok(response)) => match response.data {
            ShardAnswer::Batch(outcomes) if outcomes.len() == count => {
                outcomes.into_iter().map(Proposed::Answer).collect()
            }
            other => {
                let why = format!("a batch of {count} ledger writes was answered {other:?}");
                tracing::error!(%shard, %why);
                failed(count, &why)
            }
        },
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
            let leader = forward.leader_node.map(|node| node.addr);
            (0..count)
                .map(|_| Proposed::NotLeader(leader.clone()))
                .collect()
        }
        Ok(Err(error)) => {
            tracing::warn!(%shard, %error, "shard write failed");
            failed(count, &error.to_string())
        }
    };
    for (answer, outcome) in answers.into_iter().zip(outcomes) {
        // A caller that stopped waiting (its budget ran out) is gone: fine.
        let _ = answer.send(outcome);
    }
}

fn failed(count: usize, why: &str) -> Vec<Proposed> {
    (0..count)
        .map(|_| Proposed::Failed(why.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::network::{entries_that_fit, APPEND_BYTES_MAX};
    use super::super::types::ShardTypes;
    use super::*;
    use fixit_actors::ids::WalletId;
    use fixit_actors::ledger::{LedgerOp, LEDGER_KEY_BYTES_MAX};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    /// A full batch of the largest operations fits one message alone, and
    /// openraft's 300 such entries are cut to a count that fits.
    #[test]
    fn messages_of_full_batches_are_cut_to_fit_a_link_frame() {
        let op = BatchedOp {
            wallet: WalletId(u64::MAX),
            key: "k".repeat(LEDGER_KEY_BYTES_MAX),
            op: LedgerOp::Capture {
                amount: i64::MAX,
                fee: i64::MAX,
                payee: WalletId(u64::MAX),
            },
            now_ms: u64::MAX,
        };
        let entry = Entry::<ShardTypes> {
            log_id: LogId::new(CommittedLeaderId::new(u64::MAX, u64::MAX), u64::MAX),
            payload: EntryPayload::Normal(ShardWrite::Batch(vec![op; BATCH_MAX])),
        };
        let one = fixit_actors::codec::encode(&vec![entry.clone()])
            .expect("encodes")
            .len();
        assert!(one < APPEND_BYTES_MAX, "{one} bytes for one full entry");
        assert_eq!(entries_that_fit(1, one), None);
        let many = vec![entry; 300];
        let bytes = fixit_actors::codec::encode(&many).expect("encodes").len();
        let hint = entries_that_fit(300, bytes).expect("300 full entries are cut") as usize;
        assert!((1..300).contains(&hint), "{hint}");
        let cut = fixit_actors::codec::encode(&many[..hint].to_vec())
            .expect("encodes")
            .len();
        assert!(cut <= APPEND_BYTES_MAX, "{hint} entries: {cut} bytes");
        let frame = crate::LinkLimits::default().frame_bytes_max as usize;
        assert!(
            APPEND_BYTES_MAX + 64 * 1024 < frame,
            "room for the envelope"
        );
    }
}
