//! The messages of the client protocol as they travel in frames, and the QUIC error
//! codes it uses. `docs/PROTOCOL.md` describes the exchange.

use crate::api::{ErrorBody, Request, Response};
use crate::codec::FRAME_BODY_BYTES_LIMIT;
use crate::principal::Principal;
use serde::{Deserialize, Serialize};

/// The application protocol of the client listener, negotiated in the TLS handshake.
pub const ALPN: &[u8] = b"fixit/1";

/// The name a client checks the node's certificate against. The certificate is
/// pinned, so this is the name every node's made certificate carries, not a DNS
/// lookup.
pub const SERVER_NAME: &str = "localhost";

/// A connection idle this long (no packet, not even a keep-alive) is closed, in ms.
pub const IDLE_TIMEOUT_MS: u32 = 30_000;

/// How often a client sends keep-alives so an idle connection stays open, in ms.
pub const KEEP_ALIVE_INTERVAL_MS: u64 = 10_000;

/// Longest bearer token accepted, in bytes: checked before any decoding. A JSON
/// Web Token of the node's own is about 300 bytes; an identity provider's RS256
/// token with a few extra claims stays under 2 KiB.
pub const TOKEN_BYTES_MAX: usize = 4096;

/// Largest hello frame body, in bytes: a version and a token (at most
/// [`TOKEN_BYTES_MAX`]) need far less.
pub const HELLO_BYTES_MAX: usize = 8192;

/// Largest frame body a node sends (replies, pushes), in bytes. Requests are bounded
/// by the node's `server.frame_bytes_max` instead, announced in [`Welcome`].
pub const REPLY_BYTES_MAX: usize = FRAME_BODY_BYTES_LIMIT;

/// Longest request id a client may choose, in bytes (printable ASCII only).
pub const REQUEST_ID_BYTES_MAX: usize = 64;

/// Application close code: the side closing is done (normal end).
pub const CLOSE_DONE: u32 = 0;
/// Application close code: the hello was refused (see the hello reply's error body).
pub const CLOSE_HELLO_REFUSED: u32 = 1;
/// Application close code: no hello arrived in time.
pub const CLOSE_HELLO_TIMEOUT: u32 = 2;
/// Application close code: the node is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 3;
/// Stream stop code: the node read no further after a bad frame on this stream.
pub const STREAM_REFUSED: u32 = 1;

/// The first frame of a connection, on its first bidirectional stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version the client speaks ([`crate::api::PROTOCOL_VERSION`]).
    pub version: u16,
    /// Bearer token (as the node's `fixit token issue` prints it).
    pub token: String,
}

/// The node's answer to a valid hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Protocol version the node speaks.
    pub version: u16,
    /// Who the token says the client is; every request acts as this principal.
    pub principal: Principal,
    /// The node's id (from its config).
    pub node_id: String,
    /// Largest request frame body the node accepts, in bytes.
    pub frame_bytes_max: u32,
}

/// The answer on the hello stream.
pub type HelloReply = Result<Welcome, ErrorBody>;

/// The first (and only) client frame on every stream after the hello.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StreamFrame {
    /// One request; the node answers with one [`ReplyFrame`] and finishes.
    Request(RequestFrame),
    /// Open the principal's push stream: one [`SubscribeReply`], then [`Push`](crate::api::Push) frames.
    Subscribe(SubscribeFrame),
}

/// One request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// The client's id for the request, logged by the node; one is made if absent.
    pub request_id: Option<String>,
    /// The command.
    pub request: Request,
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyFrame {
    /// The request's id (the client's or the one the node made).
    pub request_id: String,
    /// The response or why there is none.
    pub result: Result<Response, ErrorBody>,
}

/// Asks for the principal's pushes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeFrame {
    /// The client's id for the subscription, logged by the node.
    pub request_id: Option<String>,
}

/// The answer to a subscribe frame; [`Push`](crate::api::Push) frames follow an `Ok`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeReply {
    /// The subscription's id.
    pub request_id: String,
    /// Whether pushes follow.
    pub result: Result<(), ErrorBody>,
}

/// Whether a client-chosen request id is acceptable: 1 to
/// [`REQUEST_ID_BYTES_MAX`] bytes of printable ASCII (so it is safe in logs).
pub fn valid_request_id(id: &str) -> bool {
    crate::ids::is_printable_ascii(id, REQUEST_ID_BYTES_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_printable_ascii() {
        assert!(valid_request_id("cli-7f3a"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("with space"));
        assert!(!valid_request_id("line\nbreak"));
        assert!(!valid_request_id(&"x".repeat(REQUEST_ID_BYTES_MAX + 1)));
    }
}
