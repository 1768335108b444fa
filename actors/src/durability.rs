//! Group commit: acknowledgements wait for a durable flush, and every waiter queued
//! while one flush runs shares the next one.

use crate::error::{CoreError, CoreResult};
use crate::failpoints::{self, Fault};
use crate::store::Store;
use ractor::RpcReplyPort;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

type Waiter = Box<dyn FnOnce(CoreResult<()>) + Send>;

/// How the group-commit writer batches (from `[storage]` of the node's config).
#[derive(Clone, Copy, Debug)]
pub struct GroupCommit {
    /// Acknowledgements one flush releases at most.
    pub batch_max: usize,
    /// Acknowledgements that may wait for a flush; past it callers wait for room.
    pub queue_max: usize,
    /// Least time from the start of one flush to the start of the next while
    /// acknowledgements come concurrently (the previous flush released more than
    /// one): waiters arriving meanwhile share the next flush, so a steady stream
    /// costs at most one fsync per interval instead of one per flush duration. A
    /// lone waiter (one client at a time, or a quiet node) is never held back.
    pub min_interval: Duration,
}

/// Counters of the group-commit writer.
#[derive(Debug, Default)]
pub struct DurabilityStats {
    /// Flushes (fsyncs) done.
    pub flushes: AtomicU64,
    /// Acknowledgements released by those flushes.
    pub acks: AtomicU64,
    /// Largest number of acknowledgements one flush released.
    pub batch_max: AtomicU64,
}

/// Handle to the group-commit writer; cheap to clone.
#[derive(Clone)]
pub struct Durability {
    waiters: mpsc::Sender<Waiter>,
    stats: Arc<DurabilityStats>,
}

impl Durability {
    /// Starts the writer task for `store` (needs a tokio runtime). The task ends
    /// once every handle is dropped and the last waiters are answered.
    pub fn start(
        store: Store,
        settings: GroupCommit,
        node: String,
    ) -> (Durability, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(settings.queue_max);
        let stats = Arc::new(DurabilityStats::default());
        let writer = tokio::spawn(run_writer(store, receiver, settings, stats.clone(), node));
        let durability = Durability {
            waiters: sender,
            stats,
        };
        (durability, writer)
    }

    /// The writer's counters.
    pub fn stats(&self) -> &DurabilityStats {
        &self.stats
    }

    /// Runs `then` once everything written so far is durable (or the flush failed).
    /// Waits for room when the queue is full, so the caller slows down instead of
    /// queueing without bound.
    pub async fn after_flush(&self, then: impl FnOnce(CoreResult<()>) + Send + 'static) {
        if let Err(unsent) = self.waiters.send(Box::new(then)).await {
            (unsent.0)(Err(CoreError::Unavailable("storage writer stopped".into())));
        }
    }

    /// Waits until everything written so far is durable.
    pub async fn flushed(&self) -> CoreResult<()> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.after_flush(move |result| {
            let _ = sender.send(result);
        })
        .await;
        receiver
            .await
            .unwrap_or_else(|_| Err(CoreError::Unavailable("storage writer stopped".into())))
    }

    /// Replies with `result` once it is durable; an error changed nothing and is sent at once.
    pub async fn reply<T: Send + 'static>(
        &self,
        reply: RpcReplyPort<CoreResult<T>>,
        result: CoreResult<T>,
    ) {
        match result {
            Err(error) => {
                let _ = reply.send(Err(error));
            }
            Ok(value) => {
                self.after_flush(move |flushed| {
                    let _ = reply.send(flushed.map(|()| value));
                })
                .await
            }
        }
    }
}

async fn run_writer(
    store: Store,
    mut receiver: mpsc::Receiver<Waiter>,
    settings: GroupCommit,
    stats: Arc<DurabilityStats>,
    node: String,
) {
    let batch_max = settings.batch_max;
    let mut batch = Vec::with_capacity(batch_max);
    let mut last_start: Option<Instant> = None;
    let mut last_batch = 0;
    while receiver.recv_many(&mut batch, batch_max).await > 0 {
        let concurrent = last_batch > 1 || batch.len() > 1;
        if let Some(due) = last_start.map(|start| start + settings.min_interval) {
            if concurrent && Instant::now() < due {
                tokio::time::sleep_until(due).await;
                // Everyone who queued during the wait shares this flush.
                while batch.len() < batch_max {
                    match receiver.try_recv() {
                        Ok(waiter) => batch.push(waiter),
                        Err(_) => break,
                    }
                }
            }
        }
        last_start = Some(Instant::now());
        let flushing = store.clone();
        let fault = failpoints::check(failpoints::DURABILITY_FLUSH, &node);
        if let Some(Fault::Delay(delay)) = fault {
            tokio::time::sleep(delay).await;
        }
        let flush = move || match fault {
            Some(Fault::Error) => Err(CoreError::Unavailable("injected flush failure".into())),
            _ => flushing.flush(),
        };
        let flushed = tokio::task::spawn_blocking(flush)
            .await
            .unwrap_or_else(|panic| Err(CoreError::Internal(format!("flush task: {panic}"))))
            .map(drop)
            .map_err(|error| {
                tracing::error!(%error, "flush failed; acknowledgements refused");
                CoreError::Unavailable(format!(
                    "storage flush failed ({error}); the change may not be durable: retry with the same idempotency key"
                ))
            });
        last_batch = batch.len();
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats.acks.fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats
            .batch_max
            .fetch_max(batch.len() as u64, Ordering::Relaxed);
        for waiter in batch.drain(..) {
            waiter(flushed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(min_interval: Duration) -> (Durability, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), 1024 * 1024).expect("store");
        let settings = GroupCommit {
            batch_max: 64,
            queue_max: 1_024,
            min_interval,
        };
        let (durability, _writer) = Durability::start(store, settings, "t".into());
        (durability, dir)
    }

    /// Three waiters queued together (the writer runs only when this task waits).
    async fn concurrent_round(durability: &Durability) {
        let waiters = (0..3).map(|_| durability.flushed());
        for result in futures::future::join_all(waiters).await {
            result.expect("flushed");
        }
    }

    #[tokio::test]
    async fn concurrent_flushes_are_at_least_the_interval_apart() {
        let interval = Duration::from_millis(150);
        let (durability, _dir) = writer(interval);
        concurrent_round(&durability).await;
        let started = Instant::now();
        concurrent_round(&durability).await;
        concurrent_round(&durability).await;
        // The third flush starts at least an interval after the second, which
        // started after `started`.
        assert!(started.elapsed() >= interval);
        assert_eq!(durability.stats().flushes.load(Ordering::Relaxed), 3);
        assert_eq!(durability.stats().acks.load(Ordering::Relaxed), 9);
    }

    #[tokio::test]
    async fn a_lone_waiter_is_not_held_back_by_the_interval() {
        let (durability, _dir) = writer(Duration::from_secs(10));
        let sequential = async {
            for _ in 0..3 {
                durability.flushed().await.expect("flushed");
            }
        };
        // Held back, three flushes would take 20 s.
        tokio::time::timeout(Duration::from_secs(5), sequential)
            .await
            .expect("sequential flushes waited for the interval");
        assert_eq!(durability.stats().flushes.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn waiters_queued_during_the_interval_share_one_flush() {
        let (durability, _dir) = writer(Duration::from_millis(300));
        durability.flushed().await.expect("first flush");
        // All queue while the writer waits out the interval after the first flush.
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let durability = durability.clone();
                tokio::spawn(async move { durability.flushed().await })
            })
            .collect();
        for waiter in waiting {
            waiter.await.expect("task").expect("flushed");
        }
        let flushes = durability.stats().flushes.load(Ordering::Relaxed);
        assert_eq!(durability.stats().acks.load(Ordering::Relaxed), 21);
        assert!(flushes <= 3, "{flushes} flushes for 21 acknowledgements");
    }

    #[tokio::test]
    async fn no_interval_flushes_after_each_quiet_spell_at_once() {
        let (durability, _dir) = writer(Duration::ZERO);
        for _ in 0..5 {
            durability.flushed().await.expect("flushed");
        }
        assert_eq!(durability.stats().flushes.load(Ordering::Relaxed), 5);
    }
}
