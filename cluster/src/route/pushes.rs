//! Customers' job events on their way to the node each customer is connected to
//! (pushes from any node): one bounded queue and one sender task per peer, so a
//! slow or dead peer drops its own events (counted) and holds up no one else.

use super::commands::PeerCommand;
use super::router::{ClusterRouter, Traffic};
use fixit_actors::services::JobEvent;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;

/// Events queued for one peer before further ones are dropped.
pub const EVENTS_QUEUED_PER_PEER_MAX: usize = 4_096;

/// Events sent to a peer in one call, at most.
const EVENTS_PER_CALL_MAX: usize = 256;

/// The queues of job events, one per peer (made on first use).
#[derive(Default)]
pub struct EventQueues {
    queues: Mutex<HashMap<String, mpsc::Sender<JobEvent>>>,
}

impl EventQueues {
    /// Queues `event` for `node` without waiting; false when its queue is full.
    pub(crate) fn send(&self, router: &Arc<ClusterRouter>, node: &str, event: JobEvent) -> bool {
        let sender = {
            let mut queues = self
                .queues
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queues
                .entry(node.to_owned())
                .or_insert_with(|| {
                    let (sender, receiver) = mpsc::channel(EVENTS_QUEUED_PER_PEER_MAX);
                    tokio::spawn(deliver(Arc::downgrade(router), node.to_owned(), receiver));
                    sender
                })
                .clone()
        };
        sender.try_send(event).is_ok()
    }
}

/// Sends `node`'s queued events in batches until the router is gone. A batch the
/// peer does not take is dropped (the customer reads the job's status there).
async fn deliver(router: Weak<ClusterRouter>, node: String, mut queue: mpsc::Receiver<JobEvent>) {
    let mut batch = Vec::with_capacity(EVENTS_PER_CALL_MAX);
    while queue.recv_many(&mut batch, EVENTS_PER_CALL_MAX).await > 0 {
        let Some(router) = router.upgrade() else {
            return;
        };
        let events = std::mem::take(&mut batch);
        let sent = events.len();
        let request_id = format!("{}-events", router.name());
        let command = PeerCommand::JobEvents(events);
        if let Err(error) = router.call(&node, &command, None, &request_id).await {
            tracing::debug!(%node, %error, sent, "job events not forwarded");
            for _ in 0..sent {
                Traffic::count(&router.traffic.job_events_lost);
            }
        }
    }
}
