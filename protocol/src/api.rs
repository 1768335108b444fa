//! The client API's messages: one request type for every command, its answers, the
//! pushes, and the errors with their HTTP statuses and retry hints — the same over
//! QUIC and HTTP.

use crate::error::CoreError;
use crate::geo::Nearby;
use crate::job::Job;
use crate::ledger::{Balance, LedgerEntry, OpOutcome};
use crate::provider::Provider;
use crate::push::{JobEvent, ProviderPush};
use serde::{Deserialize, Serialize};

/// Version of the client protocol; a client announcing another one is refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// Most ledger entries one history request returns.
pub const HISTORY_LIMIT_MAX: u32 = 1_000;

/// Ledger entries a history page returns when an HTTP client does not say.
pub const HISTORY_LIMIT_DEFAULT: u32 = 100;

/// Every command a client can send. Each variant has its entry in
/// [`crate::commands::COMMANDS`] (HTTP route, access, placement, answer, CLI verb).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Request {
    /// A wallet's balance (owner or admin).
    Balance {
        /// Wallet id (= the principal's id).
        wallet: u64,
    },
    /// A page of a wallet's ledger (owner or admin).
    History {
        /// Wallet id.
        wallet: u64,
        /// First entry.
        from_seq: u64,
        /// Most entries (at most [`HISTORY_LIMIT_MAX`]).
        limit: u32,
    },
    /// Money into a wallet (admin only).
    Deposit {
        /// Wallet id.
        wallet: u64,
        /// Idempotency key.
        key: String,
        /// Minor units.
        amount: i64,
    },
    /// Money out of a wallet (owner or admin).
    Withdraw {
        /// Wallet id.
        wallet: u64,
        /// Idempotency key.
        key: String,
        /// Minor units.
        amount: i64,
    },
    /// A provider goes online with skills.
    ProviderOnline {
        /// Provider id.
        provider: u64,
        /// Skill names.
        skills: Vec<String>,
    },
    /// A provider goes offline.
    ProviderOffline {
        /// Provider id.
        provider: u64,
    },
    /// A provider's position.
    Location {
        /// Provider id.
        provider: u64,
        /// Latitude, degrees.
        lat: f64,
        /// Longitude, degrees.
        lon: f64,
    },
    /// A provider's record.
    ProviderStatus {
        /// Provider id.
        provider: u64,
    },
    /// A provider's earnings: payments received into its wallet.
    Earnings {
        /// Provider id (= its wallet id).
        provider: u64,
    },
    /// The offered provider accepts.
    Accept {
        /// Provider id.
        provider: u64,
        /// Job id.
        job: u64,
    },
    /// The offered provider declines.
    Decline {
        /// Provider id.
        provider: u64,
        /// Job id.
        job: u64,
    },
    /// The assigned provider starts work.
    Start {
        /// Provider id.
        provider: u64,
        /// Job id.
        job: u64,
    },
    /// The assigned provider completes; the customer pays.
    Complete {
        /// Provider id.
        provider: u64,
        /// Job id.
        job: u64,
        /// Proof of work (e.g. a photo hash), at most 64 KiB; standard base64 in JSON.
        #[serde(with = "proof_bytes")]
        proof: Vec<u8>,
    },
    /// A customer books a job.
    RequestJob {
        /// Customer id.
        customer: u64,
        /// Idempotency key.
        key: String,
        /// Skill needed.
        skill: String,
        /// Latitude, degrees.
        lat: f64,
        /// Longitude, degrees.
        lon: f64,
        /// Price in minor units, held in escrow.
        price: i64,
    },
    /// A customer cancels before work starts.
    CancelJob {
        /// Customer id.
        customer: u64,
        /// Job id.
        job: u64,
    },
    /// A job's record (its customer, a provider it concerns, or admin).
    JobStatus {
        /// Job id.
        job: u64,
    },
    /// The nearest available providers of a skill around a point (any role). In a
    /// cluster, every node whose regions reach into the circle is asked.
    Nearby(NearbyQuery),
}

/// A nearby search: the client's request, the HTTP body and one node's leg of a
/// scatter–gather are all this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearbyQuery {
    /// Skill wanted.
    pub skill: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Search radius in metres (at most the node's dispatch radius).
    pub radius_m: f64,
    /// Most providers returned (1 to 100).
    pub limit: u32,
}

impl Request {
    /// A short stable name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Balance { .. } => "balance",
            Request::History { .. } => "history",
            Request::Deposit { .. } => "deposit",
            Request::Withdraw { .. } => "withdraw",
            Request::ProviderOnline { .. } => "provider_online",
            Request::ProviderOffline { .. } => "provider_offline",
            Request::Location { .. } => "location",
            Request::ProviderStatus { .. } => "provider_status",
            Request::Earnings { .. } => "earnings",
            Request::Accept { .. } => "accept",
            Request::Decline { .. } => "decline",
            Request::Start { .. } => "start",
            Request::Complete { .. } => "complete",
            Request::RequestJob { .. } => "request_job",
            Request::CancelJob { .. } => "cancel_job",
            Request::JobStatus { .. } => "job_status",
            Request::Nearby(_) => "nearby",
        }
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// A balance.
    Balance(Balance),
    /// Ledger entries.
    History(Vec<LedgerEntry>),
    /// The outcome of a ledger operation.
    Op(OpOutcome),
    /// A provider record.
    Provider(Provider),
    /// A job record.
    Job(Job),
    /// Providers near a point.
    Nearby(NearbyAnswer),
    /// A provider's earnings.
    Earnings(Earnings),
}

/// A provider's earnings, read from its wallet's ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Earnings {
    /// The provider (= its wallet).
    pub provider: u64,
    /// Jobs paid into the wallet (payment entries).
    pub jobs_paid: u64,
    /// Money received for jobs, in minor units (after the platform fee).
    pub earned: i64,
    /// The wallet's balance now.
    pub balance: Balance,
    /// Ledger entries read; `complete` is false if the ledger was longer than the
    /// node reads for one answer.
    pub entries_read: u64,
    /// Whether every entry of the ledger was read.
    pub complete: bool,
}

/// A proof of work as standard padded base64 in human-readable formats (JSON),
/// and as the plain byte sequence in binary ones (bincode frames).
mod proof_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &Vec<u8>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            STANDARD.encode(bytes).serialize(serializer)
        } else {
            bytes.serialize(serializer)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            STANDARD.decode(text.as_bytes()).map_err(|error| {
                serde::de::Error::custom(format!("proof must be standard base64: {error}"))
            })
        } else {
            Vec::deserialize(deserializer)
        }
    }
}

/// The answer to a nearby search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NearbyAnswer {
    /// Providers, nearest first.
    pub providers: Vec<Nearby>,
    /// Nodes that should have been asked but did not answer in time: the list may
    /// miss providers of their regions.
    pub unanswered: Vec<String>,
}

/// A push from the node to a connected client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Push {
    /// A customer's job changed.
    Job(JobEvent),
    /// An offer or its end, for a provider.
    Provider(ProviderPush),
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
            ApiError::Forbidden(_) => 403,
            ApiError::Core(CoreError::NotFound(_)) => 404,
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
