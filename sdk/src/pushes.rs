//! The client end of a push stream.

use fixit_protocol::api::Push;
use fixit_protocol::codec::read_frame;
use fixit_protocol::wire::REPLY_BYTES_MAX;
use quinn::RecvStream;

/// Pushes from the node, in order, until the stream ends. Dropping it tells the
/// node to stop sending.
pub struct PushStream {
    recv: RecvStream,
}

impl PushStream {
    pub(super) fn new(recv: RecvStream) -> PushStream {
        PushStream { recv }
    }

    /// The next push; `None` once the node ended the stream or the connection failed.
    pub async fn next(&mut self) -> Option<Push> {
        match read_frame::<Push, _>(&mut self.recv, REPLY_BYTES_MAX).await {
            Ok(push) => push,
            Err(error) => {
                tracing::debug!(%error, "push stream ended");
                None
            }
        }
    }
}
