//! One call on one new bidirectional stream: write the envelope frame, finish,
//! read the reply frame.

use crate::error::LinkError;
use crate::wire::{Envelope, Reply};
use fixit_actors::codec::{encode_frame, read_frame, FrameError};

/// Sends `envelope` to `peer` over `connection` and returns the reply's result.
/// Transport failures are `Unavailable`; an unreadable reply is `BadFrame`.
pub(super) async fn exchange(
    connection: &quinn::Connection,
    envelope: &Envelope,
    frame_bytes_max: usize,
    peer: &str,
) -> Result<Vec<u8>, LinkError> {
    let unavailable = |reason: String| LinkError::Unavailable {
        peer: peer.to_owned(),
        reason,
    };
    let frame = encode_frame(envelope, frame_bytes_max)
        .map_err(|error| LinkError::BadFrame(format!("envelope: {error}")))?;
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|error| unavailable(error.to_string()))?;
    send.write_all(&frame)
        .await
        .map_err(|error| unavailable(error.to_string()))?;
    // Only fails if the stream was already finished or reset: then the read says why.
    let _ = send.finish();
    let reply = match read_frame::<Reply, _>(&mut recv, frame_bytes_max).await {
        Ok(Some(reply)) => reply,
        Ok(None) => return Err(unavailable("stream ended without a reply".to_owned())),
        Err(FrameError::Io(error)) => return Err(unavailable(error.to_string())),
        Err(error) => return Err(LinkError::BadFrame(format!("reply: {error}"))),
    };
    // A refusal of an unreadable envelope carries no request id.
    if reply.request_id != envelope.request_id && !reply.request_id.is_empty() {
        return Err(LinkError::BadFrame(format!(
            "reply for request {:?} to request {:?}",
            reply.request_id, envelope.request_id
        )));
    }
    reply.result
}
