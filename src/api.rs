//! The client API: one request type for every command, authorized and answered the
//! same way whether it arrived over QUIC or HTTP.

use crate::auth::{Principal, Role};
use crate::cluster::peer_api::{PeerAnswer, PeerCommand};
use crate::cluster::router::Traffic;
use crate::cluster::ClusterRouter;
use crate::limits::Admission;
use crate::overload::Overload;
use fixit_actors::error::CoreError;
use fixit_actors::geo::{rank, Nearby};
use fixit_actors::ids::{CustomerId, JobId, ProviderId, WalletId};
use fixit_actors::job::Job;
use fixit_actors::ledger::LedgerOp;
use fixit_actors::provider::ProviderStatus;
use fixit_actors::Node;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use fixit_protocol::api::{
    ApiError, ErrorBody, NearbyAnswer, NearbyQuery, Push, Request, Response, HISTORY_LIMIT_MAX,
    PROTOCOL_VERSION, UNAVAILABLE_RETRY_AFTER_MS,
};

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
        Request::JobStatus { .. } | Request::Nearby(_) => Ok(()),
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
    overload: Arc<Overload>,
    cluster: Option<Arc<ClusterRouter>>,
}

impl Api {
    /// The API over `node`, with the node's configured limits.
    pub fn new(node: Arc<Node>) -> Api {
        let config = node.context().config.clone();
        Api {
            admission: Admission::new(&config.rate_limits, config.server.requests_inflight_max),
            overload: Overload::start(
                Duration::from_millis(config.limits.overload_lag_ms),
                config.limits.busy_retry_after_ms,
            ),
            node,
            cluster: None,
        }
    }

    /// The API of a cluster member: requests owned by other nodes are forwarded.
    pub fn in_cluster(node: Arc<Node>, router: Arc<ClusterRouter>) -> Api {
        Api {
            cluster: Some(router),
            ..Api::new(node)
        }
    }

    /// The cluster this node belongs to, if any.
    pub fn cluster(&self) -> Option<&Arc<ClusterRouter>> {
        self.cluster.as_ref()
    }

    /// The node served.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Admission control (rate limits and in-flight bound).
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The runtime-lag measurement that sheds new work when the node is overloaded.
    pub fn overload(&self) -> &Overload {
        &self.overload
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
            self.overload.admit(&request)?;
            authorize(principal, &request)?;
            self.route(principal, request, request_id).await
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

    /// Serves a request another node forwarded here: authorized again, served here
    /// and never forwarded further (nodes that disagree about placement answer
    /// rather than bounce a request between them).
    pub async fn handle_forwarded(
        &self,
        principal: &Principal,
        request: Request,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        let op = request.name();
        self.overload.admit(&request)?;
        authorize(principal, &request)?;
        let result = self.dispatch(principal, request).await;
        if let Err(error) = &result {
            tracing::info!(request_id, op, %error, "forwarded request refused");
        }
        result
    }

    /// Serves `request` here, or where it belongs: wallet commands at the wallet's
    /// home, job commands at the node holding the job, a booking at the owner of its
    /// position; a location in another region moves a free provider there.
    async fn route(
        &self,
        principal: &Principal,
        request: Request,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        let Some(router) = &self.cluster else {
            return self.dispatch(principal, request).await;
        };
        if let Request::Nearby(query) = &request {
            return self.nearby_across(router, query, request_id).await;
        }
        if let Request::Location { provider, lat, lon } = request {
            if let Some(owner) = router.remote_owner_of(lat, lon) {
                return self
                    .provider_moving(ProviderId(provider), owner, request)
                    .await;
            }
        }
        match remote_node(router, &request) {
            Some(node) => {
                self.forward(router, &node, principal, request, request_id)
                    .await
            }
            None => self.dispatch(principal, request).await,
        }
    }

    async fn forward(
        &self,
        router: &ClusterRouter,
        node: &str,
        principal: &Principal,
        request: Request,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        Traffic::count(&router.traffic.forwarded_out);
        let command = PeerCommand::Client {
            principal: *principal,
            request,
        };
        match router.call(node, &command, None, request_id).await? {
            PeerAnswer::Response(response) => Ok(response),
            other => Err(ApiError::Core(CoreError::Internal(format!(
                "node {node} answered a forwarded request with {other:?}"
            )))),
        }
    }

    /// A location in another node's region: a free provider goes offline here and
    /// is told where to go online; one holding an offer or a job stays here until
    /// it ends (the location is recorded as usual).
    async fn provider_moving(
        &self,
        provider: ProviderId,
        owner: String,
        request: Request,
    ) -> Result<Response, ApiError> {
        let current = self.node.provider(provider).await?;
        match current.status {
            ProviderStatus::Offered(..) | ProviderStatus::Busy(_) => {
                let principal = Principal {
                    role: Role::Provider,
                    sub: provider.0,
                };
                self.dispatch(&principal, request).await
            }
            ProviderStatus::Available => {
                self.node.provider_offline(provider).await?;
                Err(ApiError::Moved { node: owner })
            }
            ProviderStatus::Offline => Err(ApiError::Moved { node: owner }),
        }
    }

    /// A nearby search in this node's index only.
    pub(crate) fn nearby_here(&self, query: &NearbyQuery) -> Result<Vec<Nearby>, ApiError> {
        let NearbyQuery {
            skill,
            lat,
            lon,
            radius_m,
            limit,
        } = query;
        Ok(self
            .node
            .nearby(skill, *lat, *lon, *radius_m, *limit as usize)?)
    }

    /// A nearby search across the cluster: this node's index plus every other node
    /// whose regions reach into the circle, each asked once with the link deadline.
    /// Nodes that do not answer are listed, and their providers are missing.
    async fn nearby_across(
        &self,
        router: &Arc<ClusterRouter>,
        query: &NearbyQuery,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        let mut providers = self.nearby_here(query)?;
        let mut unanswered = Vec::new();
        let others: Vec<String> = router
            .regions()
            .owners_near(query.lat, query.lon, query.radius_m)
            .map_err(|error| CoreError::Invalid(error.to_string()))?
            .into_iter()
            .filter(|node| *node != router.name())
            .map(str::to_owned)
            .collect();
        if !others.is_empty() {
            Traffic::count(&router.traffic.nearby_fanouts);
            let command = PeerCommand::Nearby(query.clone());
            let mut asks = tokio::task::JoinSet::new();
            for node in others {
                let router = router.clone();
                let command = command.clone();
                let request_id = request_id.to_owned();
                asks.spawn(async move {
                    let answer = router.call(&node, &command, None, &request_id).await;
                    (node, answer)
                });
            }
            while let Some(joined) = asks.join_next().await {
                match joined {
                    Ok((_, Ok(PeerAnswer::Nearby(found)))) => providers.extend(found),
                    Ok((node, _)) => unanswered.push(node),
                    Err(error) => tracing::warn!(%error, "nearby leg panicked"),
                }
            }
        }
        providers.sort_by(rank);
        providers.dedup_by_key(|found| found.provider);
        providers.truncate(query.limit as usize);
        unanswered.sort();
        Ok(Response::Nearby(NearbyAnswer {
            providers,
            unanswered,
        }))
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
            Request::Nearby(query) => Response::Nearby(NearbyAnswer {
                providers: self.nearby_here(&query)?,
                unanswered: Vec::new(),
            }),
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

/// The node a request belongs on when that is another node: a wallet's home, the
/// holder of a job, the owner of a booking's position. `None`: serve it here.
fn remote_node(router: &ClusterRouter, request: &Request) -> Option<String> {
    let home = |wallet: u64| {
        let home = router.home_of(WalletId(wallet));
        (home != router.name()).then(|| home.to_owned())
    };
    match request {
        Request::Balance { wallet }
        | Request::History { wallet, .. }
        | Request::Deposit { wallet, .. }
        | Request::Withdraw { wallet, .. } => home(*wallet),
        Request::RequestJob { lat, lon, .. } => router.remote_owner_of(*lat, *lon),
        Request::Accept { job, .. }
        | Request::Decline { job, .. }
        | Request::Start { job, .. }
        | Request::Complete { job, .. }
        | Request::CancelJob { job, .. }
        | Request::JobStatus { job } => router.remote_holder_of_job(*job),
        Request::ProviderOnline { .. }
        | Request::ProviderOffline { .. }
        | Request::Location { .. }
        | Request::ProviderStatus { .. }
        | Request::Nearby(_) => None,
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
}
