//! The client API's messages: one request type for every command, its answers, the
//! pushes, and the errors with their HTTP statuses and retry hints — the same over
//! QUIC and HTTP.

use crate::error::CoreError;
use crate::push::{JobEvent, ProviderPush};
use serde::{Deserialize, Serialize};

pub use crate::commands::{
    NearbyAnswer, NearbyQuery, Request, Response, HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX,
};

/// Version of the client protocol; a client announcing another one is refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// A push from the node to a connected client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Push {
    /// A customer's job changed.
    Job(JobEvent),
    /// An offer or its end, for a provider.
    Provider(ProviderPush),
    /// A provider entered or left a zone, for admins.
    Zone(crate::area::ZoneEvent),
}

/// Why a request was not served. Every variant says whose fault it is and whether
/// a retry can help; none of them changed anything except where noted by `Core`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiError {
    /// The command itself was refused or failed (see [`CoreError`]).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Missing, malformed, forged or expired token.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A valid token whose principal may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Over the principal's or address's request rate.
    #[error("rate limited: retry after {retry_after_ms} ms")]
    RateLimited {
        /// Suggested wait.
        retry_after_ms: u64,
    },
    /// The request could not be read (malformed frame or JSON, missing field).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client speaks another protocol version.
    #[error("unsupported protocol version {0} (this node speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
    /// The position belongs to another node's region: the provider went offline
    /// here and should go online at `node`.
    #[error("moved: this position belongs to node {node}; go online there")]
    Moved {
        /// The owning node's name.
        node: String,
    },
}

impl ApiError {
    /// A short stable name of the error, for bodies, metrics and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Core(error) => error.kind(),
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::UnsupportedVersion(_) => "unsupported_version",
            ApiError::Moved { .. } => "moved",
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::Core(CoreError::Invalid(_)) | ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Core(CoreError::InsufficientFunds { .. }) => 402,
            ApiError::Forbidden(_) | ApiError::Core(CoreError::Forbidden(_)) => 403,
            ApiError::Core(CoreError::NotFound(_)) => 404,
            ApiError::Core(CoreError::OutsideServiceArea(_)) => 422,
            ApiError::Core(CoreError::Conflict(_) | CoreError::IdempotencyConflict { .. }) => 409,
            ApiError::UnsupportedVersion(_) => 426,
            ApiError::Moved { .. } => 421,
            ApiError::RateLimited { .. } | ApiError::Core(CoreError::Busy { .. }) => 429,
            ApiError::Core(CoreError::Unavailable(_)) => 503,
            ApiError::Core(CoreError::Internal(_)) => 500,
        }
    }

    /// When to retry, for errors a retry can cure.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_ms }
            | ApiError::Core(CoreError::Busy { retry_after_ms }) => Some(*retry_after_ms),
            ApiError::Core(CoreError::Unavailable(_)) => Some(UNAVAILABLE_RETRY_AFTER_MS),
            _ => None,
        }
    }
}

/// Retry hint sent with `Unavailable`.
pub const UNAVAILABLE_RETRY_AFTER_MS: u64 = 500;

/// The body of every error answer (JSON over HTTP, bincode over QUIC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable kind, e.g. `insufficient_funds`.
    pub error: String,
    /// Human-readable detail.
    pub message: String,
    /// When to retry, if a retry can help.
    pub retry_after_ms: Option<u64>,
    /// The request's id, as in the logs.
    pub request_id: String,
}

impl ErrorBody {
    /// The body for `error` answering request `request_id`.
    pub fn new(error: &ApiError, request_id: &str) -> ErrorBody {
        ErrorBody {
            error: error.kind().to_owned(),
            message: error.to_string(),
            retry_after_ms: error.retry_after_ms(),
            request_id: request_id.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_statuses_and_retry_hints() {
        let busy = ApiError::Core(CoreError::Busy { retry_after_ms: 50 });
        assert_eq!((busy.http_status(), busy.retry_after_ms()), (429, Some(50)));
        let unavailable = ApiError::Core(CoreError::Unavailable("x".into()));
        assert_eq!(unavailable.http_status(), 503);
        assert_eq!(ApiError::Unauthorized("x".into()).http_status(), 401);
        assert_eq!(ErrorBody::new(&busy, "r1").error, "busy");
    }
}
