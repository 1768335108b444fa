//! Group commit: acknowledgements wait for a durable flush, and every waiter queued
//! while one flush runs shares the next one.

use crate::error::{CoreError, CoreResult};
use crate::failpoints::{self, Fault};
use crate::store::Store;
use ractor::RpcReplyPort;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

type Waiter = Box<dyn FnOnce(CoreResult<()>) + Send>;

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
        batch_max: usize,
        queue_max: usize,
        node: String,
    ) -> (Durability, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(queue_max);
        let stats = Arc::new(DurabilityStats::default());
        let writer = tokio::spawn(run_writer(store, receiver, batch_max, stats.clone(), node));
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
    batch_max: usize,
    stats: Arc<DurabilityStats>,
    node: String,
) {
    let mut batch = Vec::with_capacity(batch_max);
    while receiver.recv_many(&mut batch, batch_max).await > 0 {
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
