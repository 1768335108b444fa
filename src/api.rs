//! The client API: one request type for every command, authorized and answered the
//! same way whether it arrived over QUIC or HTTP.

use crate::auth::{Principal, Role};
use crate::limits::Admission;
use fixit_actors::error::CoreError;
use fixit_actors::ids::{CustomerId, JobId, ProviderId, WalletId};
use fixit_actors::job::Job;
use fixit_actors::ledger::{Balance, LedgerEntry, LedgerOp};
use fixit_actors::provider::Provider;
use fixit_actors::services::{JobEvent, ProviderPush};
use fixit_actors::store::OpOutcome;
use fixit_actors::Node;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Version of the client protocol; a client announcing another one is refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// Most ledger entries one history request returns.
pub const HISTORY_LIMIT_MAX: u32 = 1_000;

/// Every command a client can send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
        /// Proof of work (e.g. a photo hash), at most 64 KiB.
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
            Request::Accept { .. } => "accept",
            Request::Decline { .. } => "decline",
            Request::Start { .. } => "start",
            Request::Complete { .. } => "complete",
            Request::RequestJob { .. } => "request_job",
            Request::CancelJob { .. } => "cancel_job",
            Request::JobStatus { .. } => "job_status",
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

fn forbid(what: &str) -> ApiError {
    ApiError::Forbidden(what.to_owned())
}

/// Checks that `principal` may send `request` (before anything is done).
/// Job visibility for `JobStatus` is checked after the job is read.
pub fn authorize(principal: &Principal, request: &Request) -> Result<(), ApiError> {
    let Principal { role, sub } = *principal;
    if role == Role::Admin {
        return Ok(());
    }
    let own = |id: u64, what: &str| {
        if id == sub {
            Ok(())
        } else {
            Err(forbid(&format!("{what} {id} is not yours")))
        }
    };
    let as_role = |needed: Role| {
        if role == needed {
            Ok(())
        } else {
            Err(forbid(&format!("needs the {needed} role")))
        }
    };
    match request {
        Request::Balance { wallet }
        | Request::History { wallet, .. }
        | Request::Withdraw { wallet, .. } => own(*wallet, "wallet"),
        Request::Deposit { .. } => Err(forbid("only an admin deposits")),
        Request::ProviderOnline { provider, .. }
        | Request::ProviderOffline { provider }
        | Request::Location { provider, .. }
        | Request::ProviderStatus { provider }
        | Request::Accept { provider, .. }
        | Request::Decline { provider, .. }
        | Request::Start { provider, .. }
        | Request::Complete { provider, .. } => {
            as_role(Role::Provider)?;
            own(*provider, "provider")
        }
        Request::RequestJob { customer, .. } | Request::CancelJob { customer, .. } => {
            as_role(Role::Customer)?;
            own(*customer, "customer")
        }
        Request::JobStatus { .. } => Ok(()),
    }
}

/// Whether a principal may see a job: its customer, a provider it was offered to or
/// assigned to, or an admin. Others are told it does not exist.
fn may_see(principal: &Principal, job: &Job) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::Customer => job.customer.0 == principal.sub,
        Role::Provider => {
            let id = ProviderId(principal.sub);
            job.status.provider() == Some(id) || job.tried.contains(&id)
        }
    }
}

/// The API of one node: admission (rate limits, in-flight bound), authorization,
/// dispatch to the node, metrics.
pub struct Api {
    node: Arc<Node>,
    admission: Admission,
}

impl Api {
    /// The API over `node`, with the node's configured limits.
    pub fn new(node: Arc<Node>) -> Api {
        let config = node.context().config.clone();
        Api {
            admission: Admission::new(&config.rate_limits, config.server.requests_inflight_max),
            node,
        }
    }

    /// The node served.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Admission control (rate limits and in-flight bound).
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Admits, authorizes and runs one request; records metrics.
    pub async fn handle(
        &self,
        principal: &Principal,
        source: std::net::IpAddr,
        request: Request,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        let op = request.name();
        let started = Instant::now();
        let result = async {
            let _permit = self.admission.admit(principal, source)?;
            authorize(principal, &request)?;
            self.dispatch(principal, request).await
        }
        .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.kind(),
        };
        metrics::counter!("fixit_requests_total", "op" => op, "outcome" => outcome).increment(1);
        metrics::histogram!("fixit_request_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
        match &result {
            Err(error) if error.http_status() >= 500 => {
                tracing::warn!(request_id, op, %error, "request failed")
            }
            Err(error) => tracing::info!(request_id, op, %error, "request refused"),
            Ok(_) => tracing::debug!(request_id, op, "request served"),
        }
        result
    }

    async fn dispatch(
        &self,
        principal: &Principal,
        request: Request,
    ) -> Result<Response, ApiError> {
        let node = &self.node;
        let response = match request {
            Request::Balance { wallet } => Response::Balance(node.balance(WalletId(wallet)).await?),
            Request::History {
                wallet,
                from_seq,
                limit,
            } => Response::History(
                node.history(
                    WalletId(wallet),
                    from_seq,
                    limit.min(HISTORY_LIMIT_MAX) as usize,
                )
                .await?,
            ),
            Request::Deposit {
                wallet,
                key,
                amount,
            } => Response::Op(
                node.wallet_op(WalletId(wallet), &key, LedgerOp::Deposit { amount })
                    .await?,
            ),
            Request::Withdraw {
                wallet,
                key,
                amount,
            } => Response::Op(
                node.wallet_op(WalletId(wallet), &key, LedgerOp::Withdraw { amount })
                    .await?,
            ),
            Request::ProviderOnline { provider, skills } => {
                let skills: Vec<&str> = skills.iter().map(String::as_str).collect();
                Response::Provider(node.provider_online(ProviderId(provider), &skills).await?)
            }
            Request::ProviderOffline { provider } => {
                Response::Provider(node.provider_offline(ProviderId(provider)).await?)
            }
            Request::Location { provider, lat, lon } => {
                Response::Provider(node.update_location(ProviderId(provider), lat, lon).await?)
            }
            Request::ProviderStatus { provider } => {
                Response::Provider(node.provider(ProviderId(provider)).await?)
            }
            Request::Accept { provider, job } => {
                Response::Job(node.accept(ProviderId(provider), JobId(job)).await?)
            }
            Request::Decline { provider, job } => {
                Response::Job(node.decline(ProviderId(provider), JobId(job)).await?)
            }
            Request::Start { provider, job } => {
                Response::Job(node.start_job(ProviderId(provider), JobId(job)).await?)
            }
            Request::Complete {
                provider,
                job,
                proof,
            } => Response::Job(
                node.complete(ProviderId(provider), JobId(job), proof)
                    .await?,
            ),
            Request::RequestJob {
                customer,
                key,
                skill,
                lat,
                lon,
                price,
            } => Response::Job(
                node.request_job(CustomerId(customer), &key, &skill, lat, lon, price)
                    .await?,
            ),
            Request::CancelJob { customer, job } => {
                Response::Job(node.cancel(CustomerId(customer), JobId(job)).await?)
            }
            Request::JobStatus { job } => {
                let found = node.job(JobId(job)).await?;
                if !may_see(principal, &found) {
                    return Err(CoreError::NotFound(JobId(job).to_string()).into());
                }
                Response::Job(found)
            }
        };
        Ok(response)
    }

    /// Pushes for a principal: job events for a customer, offers for a provider.
    /// An admin has no pushes.
    pub async fn subscribe(&self, principal: &Principal) -> Result<mpsc::Receiver<Push>, ApiError> {
        let (sender, receiver) = mpsc::channel(PUSH_BUFFER);
        match principal.role {
            Role::Customer => {
                let mut events = self
                    .node
                    .connect_customer(CustomerId(principal.sub))
                    .await?;
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        if sender.send(Push::Job(event)).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Role::Provider => {
                let mut pushes = self.node.provider_pushes(ProviderId(principal.sub));
                tokio::spawn(async move {
                    while let Some(push) = pushes.recv().await {
                        if sender.send(Push::Provider(push)).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Role::Admin => return Err(forbid("an admin has no push stream")),
        }
        Ok(receiver)
    }
}

/// Pushes buffered per subscriber before the slowest are dropped.
pub const PUSH_BUFFER: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, sub: u64) -> Principal {
        Principal { role, sub }
    }

    #[test]
    fn principals_touch_only_their_own() {
        let customer = principal(Role::Customer, 5);
        let provider = principal(Role::Provider, 9);
        let admin = principal(Role::Admin, 0);
        assert!(authorize(&customer, &Request::Balance { wallet: 5 }).is_ok());
        assert!(authorize(&customer, &Request::Balance { wallet: 6 }).is_err());
        assert!(authorize(
            &customer,
            &Request::Deposit {
                wallet: 5,
                key: "k".into(),
                amount: 1
            }
        )
        .is_err());
        assert!(authorize(
            &admin,
            &Request::Deposit {
                wallet: 5,
                key: "k".into(),
                amount: 1
            }
        )
        .is_ok());
        assert!(authorize(
            &provider,
            &Request::Accept {
                provider: 9,
                job: 1
            }
        )
        .is_ok());
        assert!(authorize(
            &provider,
            &Request::Accept {
                provider: 10,
                job: 1
            }
        )
        .is_err());
        assert!(
            authorize(
                &customer,
                &Request::Accept {
                    provider: 5,
                    job: 1
                }
            )
            .is_err(),
            "wrong role"
        );
        let book = Request::RequestJob {
            customer: 9,
            key: "k".into(),
            skill: "x".into(),
            lat: 0.0,
            lon: 0.0,
            price: 1,
        };
        assert!(
            authorize(&provider, &book).is_err(),
            "a provider cannot book as a customer"
        );
    }

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
