//! The accepting side of links: accepts connections from certified nodes and
//! answers each bidirectional stream's one envelope with one reply.

use super::{CallHandler, LinkEvent, LinkEvents, LinkLimits, CLOSE_NO_NODE_NAME};
use crate::error::LinkError;
use crate::tls;
use crate::wire::{Envelope, Reply};
use fixit_actors::clock::SharedClock;
use fixit_actors::codec::{encode_frame, read_frame};
use fixit_actors::failpoints::{self, Fault};
use quinn::{Endpoint, RecvStream, SendStream, VarInt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// QUIC stream error code sent when this side stops reading a stream early.
const STOP_UNREAD: u32 = 0;

/// What every connection and stream task of one endpoint shares.
pub(crate) struct Serving<H> {
    handler: Arc<H>,
    local_name: String,
    limits: LinkLimits,
    clock: SharedClock,
    connections: Arc<Semaphore>,
    events: LinkEvents,
}

impl<H: CallHandler> Serving<H> {
    pub(crate) fn new(
        handler: Arc<H>,
        local_name: String,
        limits: LinkLimits,
        clock: SharedClock,
        events: LinkEvents,
    ) -> Arc<Serving<H>> {
        let connections = Arc::new(Semaphore::new(limits.incoming_connections_max as usize));
        Arc::new(Serving {
            handler,
            local_name,
            limits,
            clock,
            connections,
            events,
        })
    }

    fn frame_bytes_max(&self) -> usize {
        self.limits.frame_bytes_max as usize
    }
}

/// Accepts connections until the endpoint closes; past `incoming_connections_max`
/// a new one is refused before its handshake.
pub(crate) async fn accept_connections<H: CallHandler>(
    endpoint: Endpoint,
    serving: Arc<Serving<H>>,
) {
    // Bounded by the endpoint's life: `accept` yields `None` once it is closed.
    while let Some(incoming) = endpoint.accept().await {
        match serving.connections.clone().try_acquire_owned() {
            Ok(permit) => {
                let serving = serving.clone();
                tokio::spawn(async move {
                    serve_connection(incoming, serving).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tracing::warn!(remote = %incoming.remote_address(), "cluster connection refused: at incoming_connections_max");
                incoming.refuse();
            }
        }
    }
}

/// Completes the handshake (mutual TLS refuses uncertified peers here), names the
/// peer from its certificate, then serves its streams until the connection ends.
async fn serve_connection<H: CallHandler>(incoming: quinn::Incoming, serving: Arc<Serving<H>>) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::info!(%remote, %error, "cluster handshake refused");
            return;
        }
    };
    let Some(peer) = tls::peer_name(&connection) else {
        tracing::warn!(%remote, "cluster peer certificate names no node");
        connection.close(VarInt::from_u32(CLOSE_NO_NODE_NAME), b"no node name");
        return;
    };
    tracing::info!(%remote, %peer, "cluster peer connected");
    let peer: Arc<str> = peer.into();
    serving.events.report(LinkEvent::ConnectedIn {
        from: peer.clone(),
        connection: connection.clone(),
    });
    let datagrams = tokio::spawn(read_datagrams(
        connection.clone(),
        peer.clone(),
        serving.events.clone(),
    ));
    // Bounded by the connection's life; concurrent streams by the transport's limit.
    loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(send, recv, peer.clone(), serving.clone()));
            }
            Err(error) => {
                tracing::info!(%remote, %peer, %error, "cluster peer connection ended");
                if crate::peers::is_stopping(&error) {
                    serving.events.report(LinkEvent::Stopping { from: peer });
                }
                datagrams.abort();
                return;
            }
        }
    }
}

/// Hands every membership datagram of one connection (incoming or outgoing) to
/// membership, until the connection ends.
pub(crate) async fn read_datagrams(
    connection: quinn::Connection,
    peer: Arc<str>,
    events: LinkEvents,
) {
    // Bounded by the connection's life.
    while let Ok(bytes) = connection.read_datagram().await {
        events.report(LinkEvent::Datagram {
            from: peer.clone(),
            bytes,
        });
    }
}

/// Reads one envelope, answers it, writes one reply and finishes the stream.
async fn serve_stream<H: CallHandler>(
    mut send: SendStream,
    mut recv: RecvStream,
    peer: Arc<str>,
    serving: Arc<Serving<H>>,
) {
    let reply = answer(&mut recv, &peer, &serving).await;
    // Whatever the peer still sends on this stream is not read.
    let _ = recv.stop(VarInt::from_u32(STOP_UNREAD));
    let frame = encode_frame(&reply, serving.frame_bytes_max()).or_else(|error| {
        let refusal = Reply {
            request_id: reply.request_id.clone(),
            result: Err(LinkError::BadFrame(format!("reply: {error}"))),
        };
        encode_frame(&refusal, serving.frame_bytes_max())
    });
    match frame {
        Ok(frame) => {
            if let Err(error) = send.write_all(&frame).await {
                tracing::debug!(%peer, %error, "cluster reply not delivered");
            }
            let _ = send.finish();
        }
        Err(error) => {
            tracing::warn!(%peer, %error, "cluster reply cannot be encoded");
            let _ = send.reset(VarInt::from_u32(STOP_UNREAD));
        }
    }
}

/// The reply to the stream's envelope; a stream that brings none in time, or
/// brings garbage, gets `BadFrame` with an empty request id.
async fn answer<H: CallHandler>(recv: &mut RecvStream, peer: &str, serving: &Serving<H>) -> Reply {
    let first_frame = Duration::from_millis(serving.limits.first_frame_timeout_ms);
    let read = read_frame::<Envelope, _>(recv, serving.frame_bytes_max());
    let refused = |reason: String| {
        // A cluster member sending what this node cannot read is a fault
        // worth seeing (a Raft message refused this way once stalled a
        // follower's catch-up).
        tracing::warn!(%peer, %reason, "cluster stream refused");
        Reply {
            request_id: String::new(),
            result: Err(LinkError::BadFrame(reason)),
        }
    };
    let envelope = match tokio::time::timeout(first_frame, read).await {
        Ok(Ok(Some(envelope))) => envelope,
        Ok(Ok(None)) => return refused("stream ended before an envelope".to_owned()),
        Ok(Err(error)) => return refused(error.to_string()),
        Err(_) => return refused("no envelope within first_frame_timeout_ms".to_owned()),
    };
    let request_id = envelope.request_id.clone();
    let result = run_call(envelope, peer, serving).await;
    Reply { request_id, result }
}

/// Checks the envelope's sender and deadline, then runs the handler under a span
/// carrying the request id and the sender, until the deadline at most.
async fn run_call<H: CallHandler>(
    envelope: Envelope,
    peer: &str,
    serving: &Serving<H>,
) -> Result<Vec<u8>, LinkError> {
    if envelope.from != peer {
        return Err(LinkError::BadFrame(format!(
            "envelope from {:?} on a link certified for {peer:?}",
            envelope.from
        )));
    }
    let now_ms = serving.clock.now_ms();
    let remaining_ms = envelope.deadline_ms.saturating_sub(now_ms);
    if remaining_ms == 0 {
        tracing::info!(request_id = %envelope.request_id, from = %peer, "cluster call past its deadline");
        return Err(LinkError::DeadlineExceeded);
    }
    let budget = Duration::from_millis(remaining_ms.min(serving.limits.call_duration_max_ms));
    let span = tracing::info_span!(
        "cluster_call",
        request_id = %envelope.request_id,
        from = %peer,
        target = ?envelope.target,
    );
    let fault = failpoints::check(failpoints::LINK_RECEIVE, &serving.local_name);
    if let Some(Fault::Delay(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    let call = serving.handler.handle(peer, envelope);
    let result = tokio::time::timeout(budget, call)
        .instrument(span)
        .await
        .unwrap_or(Err(LinkError::DeadlineExceeded));
    if fault == Some(Fault::Drop) {
        // Served, but the caller never learns it: the exactly-once case.
        return Err(LinkError::Unavailable {
            peer: serving.local_name.clone(),
            reason: "failpoint: the reply was dropped".into(),
        });
    }
    result
}
