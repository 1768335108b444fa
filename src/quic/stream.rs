//! One stream after the hello: a request answered by one reply, or a push stream.
//! A bad first frame is answered `bad_request` on the same stream and changes
//! nothing; the connection carries on. A frame that does not arrive in time is
//! answered `unavailable` (retryable): under load a client's write can be late
//! without being wrong.

use super::wire::{
    valid_request_id, ReplyFrame, RequestFrame, StreamFrame, SubscribeFrame, SubscribeReply,
    REPLY_BYTES_MAX, STREAM_REFUSED,
};
use super::{Shared, FIRST_FRAME_TIMEOUT_MS};
use crate::api::{ApiError, ErrorBody, Push};
use crate::auth::Principal;
use fixit_actors::codec::{encode_frame, read_frame, FrameError};
use fixit_actors::error::CoreError;
use quinn::{RecvStream, SendStream, VarInt};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Serves one stream to its end.
pub(super) async fn serve(
    send: SendStream,
    mut recv: RecvStream,
    shared: Arc<Shared>,
    principal: Principal,
    source: IpAddr,
) {
    let first_frame = Duration::from_millis(FIRST_FRAME_TIMEOUT_MS);
    let read = tokio::time::timeout(
        first_frame,
        read_frame::<StreamFrame, _>(&mut recv, shared.frame_bytes_max),
    )
    .await;
    // One frame per stream: whatever follows it is not read.
    let _ = recv.stop(VarInt::from_u32(STREAM_REFUSED));
    let frame = match read {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => {
            return refuse(send, &shared, ApiError::BadRequest("empty stream".into())).await
        }
        Ok(Err(error)) => {
            return refuse(send, &shared, ApiError::BadRequest(describe(&error))).await
        }
        Err(_) => {
            let late = format!(
                "no request frame within {FIRST_FRAME_TIMEOUT_MS} ms; nothing was done: retry"
            );
            return refuse(send, &shared, ApiError::Core(CoreError::Unavailable(late))).await;
        }
    };
    match frame {
        StreamFrame::Request(request) => {
            serve_request(send, &shared, principal, source, request).await
        }
        StreamFrame::Subscribe(subscribe) => {
            serve_pushes(send, &shared, principal, source, subscribe).await
        }
    }
}

fn describe(error: &FrameError) -> String {
    match error {
        FrameError::Io(_) => format!("stream failed: {error}"),
        _ => error.to_string(),
    }
}

/// Answers an unreadable (or unread) stream with `error` under a fresh request id.
async fn refuse(mut send: SendStream, shared: &Shared, error: ApiError) {
    let request_id = shared.ids.next();
    tracing::info!(%request_id, %error, "stream refused");
    let reply = ReplyFrame {
        result: Err(ErrorBody::new(&error, &request_id)),
        request_id,
    };
    if write_frame(&mut send, &reply, REPLY_BYTES_MAX).await {
        let _ = send.finish();
    }
}

/// The request id to use: the client's if acceptable, else a fresh one.
fn request_id(shared: &Shared, chosen: Option<String>) -> Result<String, (String, ApiError)> {
    match chosen {
        None => Ok(shared.ids.next()),
        Some(id) if valid_request_id(&id) => Ok(id),
        Some(_) => Err((
            shared.ids.next(),
            ApiError::BadRequest("request_id must be 1 to 64 printable ASCII bytes".into()),
        )),
    }
}

async fn serve_request(
    mut send: SendStream,
    shared: &Shared,
    principal: Principal,
    source: IpAddr,
    frame: RequestFrame,
) {
    let (request_id, result) = match request_id(shared, frame.request_id) {
        Ok(id) => {
            let span = tracing::info_span!("request", request_id = %id, op = frame.request.name());
            let result = shared
                .api
                .handle(&principal, source, frame.request, &id)
                .instrument(span)
                .await;
            (id, result)
        }
        Err((id, error)) => (id, Err(error)),
    };
    let reply = ReplyFrame {
        result: result.map_err(|error| ErrorBody::new(&error, &request_id)),
        request_id,
    };
    if let Some(bytes) = encode_reply(&reply) {
        if write_bytes(&mut send, &bytes).await {
            let _ = send.finish();
        }
    }
}

async fn serve_pushes(
    mut send: SendStream,
    shared: &Shared,
    principal: Principal,
    source: IpAddr,
    frame: SubscribeFrame,
) {
    let (request_id, subscribed) = match request_id(shared, frame.request_id) {
        Ok(id) => {
            let subscribed = async {
                shared.api.admission().admit_address(source)?;
                shared.api.subscribe(&principal).await
            }
            .await;
            (id, subscribed)
        }
        Err((id, error)) => (id, Err(error)),
    };
    let span = tracing::info_span!("push_stream", %request_id);
    let reply = SubscribeReply {
        result: subscribed
            .as_ref()
            .map(|_| ())
            .map_err(|error| ErrorBody::new(error, &request_id)),
        request_id,
    };
    let answered = write_frame(&mut send, &reply, REPLY_BYTES_MAX).await;
    if let (true, Ok(pushes)) = (answered, subscribed) {
        forward_pushes(&mut send, pushes, shared)
            .instrument(span)
            .await;
    }
    let _ = send.finish();
}

/// Writes pushes until the subscription ends, the client stops the stream, a write
/// fails or the listener stops. Bounded by the life of the subscription.
async fn forward_pushes(send: &mut SendStream, mut pushes: mpsc::Receiver<Push>, shared: &Shared) {
    let stopped = send.stopped();
    tokio::pin!(stopped);
    let mut shutdown = shared.shutdown.clone();
    tracing::debug!("push stream open");
    loop {
        let push = tokio::select! {
            push = pushes.recv() => push,
            _ = &mut stopped => break,
            _ = shutdown.changed() => break,
        };
        let Some(push) = push else { break };
        if !write_frame(send, &push, REPLY_BYTES_MAX).await {
            break;
        }
    }
    tracing::debug!("push stream closed");
}

/// Writes one frame; false if it could not be encoded or the stream failed.
pub(super) async fn write_frame<T: Serialize>(
    send: &mut SendStream,
    value: &T,
    max: usize,
) -> bool {
    match encode_frame(value, max) {
        Ok(bytes) => write_bytes(send, &bytes).await,
        Err(error) => {
            tracing::error!(%error, "frame could not be encoded");
            false
        }
    }
}

async fn write_bytes(send: &mut SendStream, bytes: &[u8]) -> bool {
    match send.write_all(bytes).await {
        Ok(()) => true,
        Err(error) => {
            tracing::debug!(%error, "stream write failed");
            false
        }
    }
}

/// A reply's frame; a reply too large to send becomes an `internal` error reply,
/// so the client is never left waiting.
fn encode_reply(reply: &ReplyFrame) -> Option<Vec<u8>> {
    encode_frame(reply, REPLY_BYTES_MAX)
        .or_else(|error| {
            tracing::error!(%error, "reply could not be encoded");
            let error = ApiError::Core(CoreError::Internal(format!("reply not sent: {error}")));
            let fallback = ReplyFrame {
                result: Err(ErrorBody::new(&error, &reply.request_id)),
                request_id: reply.request_id.clone(),
            };
            encode_frame(&fallback, REPLY_BYTES_MAX)
        })
        .ok()
}
