//! Typed commands over any transport: [`Commands`] builds each request and unpacks
//! the expected response; a transport only supplies [`Commands::call`]. The QUIC
//! [`Client`] and the HTTP bridge's [`HttpClient`](super::HttpClient) implement it.

use super::Client;
use fixit_protocol::api::{ApiError, NearbyAnswer, NearbyQuery, Request, Response};
use fixit_protocol::error::CoreError;
use fixit_protocol::job::Job;
use fixit_protocol::ledger::OpOutcome;
use fixit_protocol::ledger::{Balance, LedgerEntry};
use fixit_protocol::provider::Provider;
use std::future::Future;

fn unexpected(response: Response) -> ApiError {
    CoreError::Internal(format!("unexpected response {response:?}")).into()
}

/// The commands of the protocol, typed. Bring it into scope to call them.
pub trait Commands: Sync {
    /// Sends one request and waits for its answer.
    fn call(&self, request: Request) -> impl Future<Output = Result<Response, ApiError>> + Send;

    /// Sends any command and takes its typed answer out of the response, e.g.
    /// `let job: Job = client.send(Request::JobStatus { job: id }).await?`.
    /// Every command of the table can be sent this way, over QUIC or HTTP.
    fn send<T>(&self, request: Request) -> impl Future<Output = Result<T, ApiError>> + Send
    where
        T: TryFrom<Response, Error = Response> + Send,
    {
        async move { T::try_from(self.call(request).await?).map_err(unexpected) }
    }

    /// A wallet's balance.
    fn balance(&self, wallet: u64) -> impl Future<Output = Result<Balance, ApiError>> + Send {
        async move { self.send(Request::Balance { wallet }).await }
    }

    /// A page of a wallet's ledger.
    fn history(
        &self,
        wallet: u64,
        from_seq: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<LedgerEntry>, ApiError>> + Send {
        async move {
            self.send(Request::History {
                wallet,
                from_seq,
                limit,
            })
            .await
        }
    }

    /// Money into a wallet (admin).
    fn deposit(
        &self,
        wallet: u64,
        key: &str,
        amount: i64,
    ) -> impl Future<Output = Result<OpOutcome, ApiError>> + Send {
        async move {
            let key = key.to_owned();
            self.send(Request::Deposit {
                wallet,
                key,
                amount,
            })
            .await
        }
    }

    /// Money out of a wallet.
    fn withdraw(
        &self,
        wallet: u64,
        key: &str,
        amount: i64,
    ) -> impl Future<Output = Result<OpOutcome, ApiError>> + Send {
        async move {
            let key = key.to_owned();
            self.send(Request::Withdraw {
                wallet,
                key,
                amount,
            })
            .await
        }
    }

    /// A provider goes online with skills.
    fn provider_online(
        &self,
        provider: u64,
        skills: &[&str],
    ) -> impl Future<Output = Result<Provider, ApiError>> + Send {
        async move {
            let skills = skills.iter().map(|s| s.to_string()).collect();
            self.send(Request::ProviderOnline { provider, skills })
                .await
        }
    }

    /// A provider goes offline.
    fn provider_offline(
        &self,
        provider: u64,
    ) -> impl Future<Output = Result<Provider, ApiError>> + Send {
        async move { self.send(Request::ProviderOffline { provider }).await }
    }

    /// A provider's position.
    fn location(
        &self,
        provider: u64,
        lat: f64,
        lon: f64,
    ) -> impl Future<Output = Result<Provider, ApiError>> + Send {
        async move { self.send(Request::Location { provider, lat, lon }).await }
    }

    /// A provider's record.
    fn provider(&self, provider: u64) -> impl Future<Output = Result<Provider, ApiError>> + Send {
        async move { self.send(Request::ProviderStatus { provider }).await }
    }

    /// The nearest available providers of a skill around a point.
    fn nearby(
        &self,
        query: NearbyQuery,
    ) -> impl Future<Output = Result<NearbyAnswer, ApiError>> + Send {
        async move { self.send(Request::Nearby(query)).await }
    }

    /// A customer books a job; the price is held in escrow.
    fn request_job(
        &self,
        customer: u64,
        key: &str,
        skill: &str,
        lat: f64,
        lon: f64,
        price: i64,
    ) -> impl Future<Output = Result<Job, ApiError>> + Send {
        async move {
            let (key, skill) = (key.to_owned(), skill.to_owned());
            self.send(Request::RequestJob {
                customer,
                key,
                skill,
                lat,
                lon,
                price,
            })
            .await
        }
    }

    /// The offered provider accepts.
    fn accept(
        &self,
        provider: u64,
        job: u64,
    ) -> impl Future<Output = Result<Job, ApiError>> + Send {
        async move { self.send(Request::Accept { provider, job }).await }
    }

    /// The offered provider declines.
    fn decline(
        &self,
        provider: u64,
        job: u64,
    ) -> impl Future<Output = Result<Job, ApiError>> + Send {
        async move { self.send(Request::Decline { provider, job }).await }
    }

    /// The assigned provider starts work.
    fn start(&self, provider: u64, job: u64) -> impl Future<Output = Result<Job, ApiError>> + Send {
        async move { self.send(Request::Start { provider, job }).await }
    }

    /// The assigned provider completes with a proof of work; the customer pays.
    fn complete(
        &self,
        provider: u64,
        job: u64,
        proof: Vec<u8>,
    ) -> impl Future<Output = Result<Job, ApiError>> + Send {
        async move {
            self.send(Request::Complete {
                provider,
                job,
                proof,
            })
            .await
        }
    }

    /// The customer cancels before work starts.
    fn cancel(
        &self,
        customer: u64,
        job: u64,
    ) -> impl Future<Output = Result<Job, ApiError>> + Send {
        async move { self.send(Request::CancelJob { customer, job }).await }
    }

    /// A job's record.
    fn job(&self, job: u64) -> impl Future<Output = Result<Job, ApiError>> + Send {
        async move { self.send(Request::JobStatus { job }).await }
    }
}

impl Commands for Client {
    fn call(&self, request: Request) -> impl Future<Output = Result<Response, ApiError>> + Send {
        Client::call(self, request)
    }
}
