//! The one error type every command answers with: who is at fault and whether to retry.

use serde::{Deserialize, Serialize};

/// Why a command was not carried out.
///
/// `Invalid`, `InsufficientFunds`, `IdempotencyConflict`, `NotFound` and `Conflict`
/// are the caller's fault and changed nothing. `Busy` and `Unavailable` are
/// retryable: retry with the same idempotency key. `Internal` is a bug or a storage
/// fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CoreError {
    /// Malformed or out-of-range input; nothing changed.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The wallet cannot cover the amount; nothing changed.
    #[error("insufficient funds: {available} available, {needed} needed")]
    InsufficientFunds {
        /// Funds available in the wallet, in minor units.
        available: i64,
        /// Funds the command needed, in minor units.
        needed: i64,
    },
    /// The idempotency key was used before for a different request; nothing changed.
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyConflict {
        /// The reused key.
        key: String,
    },
    /// No such entity; nothing changed.
    #[error("{0} not found")]
    NotFound(String),
    /// The entity is not in a state that allows the command; nothing changed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Too much work in flight; nothing changed, retry after the given time.
    #[error("busy, retry after {retry_after_ms} ms")]
    Busy {
        /// Suggested wait before retrying.
        retry_after_ms: u64,
    },
    /// A part needed for the command is down or restarting; retry with the same key.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// A bug or a storage fault.
    #[error("internal error: {0}")]
    Internal(String),
    /// The entity exists but the caller may not act on it (e.g. a job offered to
    /// another provider); the message names no one else. Nothing changed.
    /// (New variants go last: a variant's position is its number on the wire.)
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The skill is not offered at the booking's position (no service area for it
    /// holds the point); the message names no area. Nothing changed.
    #[error("outside the service area: {0}")]
    OutsideServiceArea(String),
}

impl CoreError {
    /// True when the same command may succeed later (with the same idempotency key).
    pub fn is_retryable(&self) -> bool {
        matches!(self, CoreError::Busy { .. } | CoreError::Unavailable(_))
    }

    /// A short stable name for the error's kind, for metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            CoreError::Invalid(_) => "invalid",
            CoreError::InsufficientFunds { .. } => "insufficient_funds",
            CoreError::IdempotencyConflict { .. } => "idempotency_conflict",
            CoreError::NotFound(_) => "not_found",
            CoreError::Conflict(_) => "conflict",
            CoreError::Busy { .. } => "busy",
            CoreError::Unavailable(_) => "unavailable",
            CoreError::Internal(_) => "internal",
            CoreError::Forbidden(_) => "forbidden",
            CoreError::OutsideServiceArea(_) => "outside_service_area",
        }
    }
}

impl From<crate::geo::GeoError> for CoreError {
    fn from(error: crate::geo::GeoError) -> Self {
        CoreError::Invalid(error.to_string())
    }
}

impl From<crate::ids::InvalidSkill> for CoreError {
    fn from(error: crate::ids::InvalidSkill) -> Self {
        CoreError::Invalid(error.to_string())
    }
}

/// Result of a command.
pub type CoreResult<T> = Result<T, CoreError>;
