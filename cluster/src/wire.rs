//! The call format of a link stream: one [`Envelope`] frame in, one [`Reply`]
//! frame out, both framed by `fixit_actors::codec`.

use crate::error::LinkError;
use serde::{Deserialize, Serialize};

/// What a call is addressed to on the receiving node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// A wallet homed on the receiving node.
    Wallet(u64),
    /// The region owning a geohash prefix.
    Region(String),
    /// The receiving node itself.
    Node,
    /// A Raft message of a wallet shard (a budget of its own per peer).
    Raft,
}

/// One cross-node call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// What the call is for.
    pub target: Target,
    /// The command, opaque here: encoded by the caller with `fixit_actors::codec`.
    pub command: Vec<u8>,
    /// Lets the receiver apply a retried command once.
    pub idempotency_key: Option<String>,
    /// Carried into the receiver's logs.
    pub request_id: String,
    /// The caller stops waiting at this wall-clock time, in ms since the Unix epoch;
    /// the receiver refuses the call once it has passed.
    pub deadline_ms: u64,
    /// The calling node's name; the receiver checks it against the peer certificate.
    pub from: String,
}

/// The answer to one [`Envelope`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The envelope's request id (empty when the envelope could not be read).
    pub request_id: String,
    /// The handler's encoded answer, or why there is none.
    pub result: Result<Vec<u8>, LinkError>,
}
