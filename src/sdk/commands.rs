//! Typed helpers over [`Client::call`] for the common commands: each builds the
//! request and unpacks the expected response.

use super::Client;
use crate::api::{ApiError, NearbyAnswer, NearbyQuery, Request, Response};
use fixit_actors::error::CoreError;
use fixit_actors::job::Job;
use fixit_actors::ledger::{Balance, LedgerEntry};
use fixit_actors::provider::Provider;
use fixit_actors::store::OpOutcome;

fn unexpected(response: Response) -> ApiError {
    CoreError::Internal(format!("unexpected response {response:?}")).into()
}

impl Client {
    /// A wallet's balance.
    pub async fn balance(&self, wallet: u64) -> Result<Balance, ApiError> {
        match self.call(Request::Balance { wallet }).await? {
            Response::Balance(balance) => Ok(balance),
            other => Err(unexpected(other)),
        }
    }

    /// A page of a wallet's ledger.
    pub async fn history(
        &self,
        wallet: u64,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, ApiError> {
        match self
            .call(Request::History {
                wallet,
                from_seq,
                limit,
            })
            .await?
        {
            Response::History(entries) => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    /// Money into a wallet (admin).
    pub async fn deposit(
        &self,
        wallet: u64,
        key: &str,
        amount: i64,
    ) -> Result<OpOutcome, ApiError> {
        let key = key.to_owned();
        self.op(Request::Deposit {
            wallet,
            key,
            amount,
        })
        .await
    }

    /// Money out of a wallet.
    pub async fn withdraw(
        &self,
        wallet: u64,
        key: &str,
        amount: i64,
    ) -> Result<OpOutcome, ApiError> {
        let key = key.to_owned();
        self.op(Request::Withdraw {
            wallet,
            key,
            amount,
        })
        .await
    }

    async fn op(&self, request: Request) -> Result<OpOutcome, ApiError> {
        match self.call(request).await? {
            Response::Op(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// A provider goes online with skills.
    pub async fn provider_online(
        &self,
        provider: u64,
        skills: &[&str],
    ) -> Result<Provider, ApiError> {
        let skills = skills.iter().map(|s| s.to_string()).collect();
        self.provider_call(Request::ProviderOnline { provider, skills })
            .await
    }

    /// A provider goes offline.
    pub async fn provider_offline(&self, provider: u64) -> Result<Provider, ApiError> {
        self.provider_call(Request::ProviderOffline { provider })
            .await
    }

    /// A provider's position.
    pub async fn location(&self, provider: u64, lat: f64, lon: f64) -> Result<Provider, ApiError> {
        self.provider_call(Request::Location { provider, lat, lon })
            .await
    }

    /// A provider's record.
    pub async fn provider(&self, provider: u64) -> Result<Provider, ApiError> {
        self.provider_call(Request::ProviderStatus { provider })
            .await
    }

    /// The nearest available providers of a skill around a point.
    pub async fn nearby(&self, query: NearbyQuery) -> Result<NearbyAnswer, ApiError> {
        match self.call(Request::Nearby(query)).await? {
            Response::Nearby(answer) => Ok(answer),
            other => Err(unexpected(other)),
        }
    }

    async fn provider_call(&self, request: Request) -> Result<Provider, ApiError> {
        match self.call(request).await? {
            Response::Provider(provider) => Ok(provider),
            other => Err(unexpected(other)),
        }
    }

    /// A customer books a job; the price is held in escrow.
    pub async fn request_job(
        &self,
        customer: u64,
        key: &str,
        skill: &str,
        lat: f64,
        lon: f64,
        price: i64,
    ) -> Result<Job, ApiError> {
        let (key, skill) = (key.to_owned(), skill.to_owned());
        self.job_call(Request::RequestJob {
            customer,
            key,
            skill,
            lat,
            lon,
            price,
        })
        .await
    }

    /// The offered provider accepts.
    pub async fn accept(&self, provider: u64, job: u64) -> Result<Job, ApiError> {
        self.job_call(Request::Accept { provider, job }).await
    }

    /// The offered provider declines.
    pub async fn decline(&self, provider: u64, job: u64) -> Result<Job, ApiError> {
        self.job_call(Request::Decline { provider, job }).await
    }

    /// The assigned provider starts work.
    pub async fn start(&self, provider: u64, job: u64) -> Result<Job, ApiError> {
        self.job_call(Request::Start { provider, job }).await
    }

    /// The assigned provider completes with a proof of work; the customer pays.
    pub async fn complete(&self, provider: u64, job: u64, proof: Vec<u8>) -> Result<Job, ApiError> {
        self.job_call(Request::Complete {
            provider,
            job,
            proof,
        })
        .await
    }

    /// The customer cancels before work starts.
    pub async fn cancel(&self, customer: u64, job: u64) -> Result<Job, ApiError> {
        self.job_call(Request::CancelJob { customer, job }).await
    }

    /// A job's record.
    pub async fn job(&self, job: u64) -> Result<Job, ApiError> {
        self.job_call(Request::JobStatus { job }).await
    }

    async fn job_call(&self, request: Request) -> Result<Job, ApiError> {
        match self.call(request).await? {
            Response::Job(job) => Ok(job),
            other => Err(unexpected(other)),
        }
    }
}
