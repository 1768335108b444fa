//! Outbox delivery: transfers that captures here wrote for wallets homed on other
//! nodes are sent until each receiver acknowledges, then forgotten. The receiver
//! applies each transfer id once, so a redelivery (after a lost acknowledgement,
//! a crash of either side, a timeout) credits nothing twice.

use super::commands::{PeerAnswer, PeerCommand};
use super::router::{ClusterRouter, Traffic};
use fixit_actors::error::CoreError;
use fixit_actors::failpoints::{self, Fault};
use fixit_actors::Node;
use fixit_protocol::api::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Transfers sent per round (bounded so one round never exceeds a peer's call bound).
pub const DELIVERY_BATCH: usize = 128;

/// Pause before retrying undelivered transfers when nothing new was queued.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// Delivers the node's outbox until `stop` turns true. Each round reads the
/// pending transfers (only once they are durable), sends them concurrently, and
/// removes the acknowledged ones; the rest wait for the next round.
pub(crate) async fn deliver(
    node: Arc<Node>,
    router: Arc<ClusterRouter>,
    mut stop: watch::Receiver<bool>,
) {
    let mut full_round = true;
    let peers: Vec<String> = router
        .nodes()
        .iter()
        .filter(|node| *node != router.name())
        .cloned()
        .collect();
    while !*stop.borrow() {
        if !full_round {
            tokio::select! {
                _ = router.outbox_waker.notified() => {}
                _ = tokio::time::sleep(RETRY_INTERVAL) => {}
                _ = stop.changed() => return,
            }
        }
        // Each peer's backlog is read apart, so a down peer never holds up the others.
        let mut sends = JoinSet::new();
        let mut fullest = 0usize;
        for peer in &peers {
            let pending = match node.pending_transfers(peer, DELIVERY_BATCH).await {
                Ok(pending) => pending,
                Err(error) => {
                    tracing::warn!(%error, "outbox unreadable; retrying");
                    continue;
                }
            };
            fullest = fullest.max(pending.len());
            for transfer in pending {
                let router = router.clone();
                let fault = failpoints::check(failpoints::OUTBOX_DELIVER, router.name());
                sends.spawn(async move {
                    match fault {
                        Some(Fault::Error) => {
                            let refused = ApiError::Core(CoreError::Unavailable(
                                "failpoint: delivery attempt failed".into(),
                            ));
                            return (transfer, Err(refused));
                        }
                        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
                        _ => {}
                    }
                    let command = PeerCommand::Transfer(transfer.clone());
                    let result = router
                        .call(
                            &transfer.to_node,
                            &command,
                            Some(transfer.id.clone()),
                            &transfer.id,
                        )
                        .await;
                    (transfer, result)
                });
            }
        }
        let mut delivered = 0usize;
        while let Some(joined) = sends.join_next().await {
            let Ok((transfer, result)) = joined else {
                continue;
            };
            let (id, to) = (&transfer.id, &transfer.to_node);
            match result {
                Ok(PeerAnswer::Op(_)) => match node.transfer_delivered(&transfer) {
                    Ok(_) => {
                        delivered += 1;
                        Traffic::count(&router.traffic.transfers_delivered);
                        tracing::debug!(transfer = %id, peer = %to, "transfer delivered");
                    }
                    Err(error) => tracing::warn!(transfer = %id, %error, "outbox removal failed"),
                },
                Ok(other) => {
                    tracing::warn!(transfer = %id, peer = %to, ?other, "odd answer to a transfer")
                }
                Err(error) => {
                    tracing::debug!(transfer = %id, peer = %to, %error, "transfer not delivered yet")
                }
            }
        }
        // A full round that made progress may have left more behind: go again now.
        full_round = fullest == DELIVERY_BATCH && delivered > 0;
    }
}
