//! The client API: one request type for every command, authorized and answered the
//! same way whether it arrived over QUIC or HTTP.

use crate::audit::{AuditLog, AuditRecord};
use crate::auth::{now_s, Denial, Principal, Role, TokenKey};
use crate::limits::Admission;
use crate::overload::Overload;
use fixit_actors::areas::StoredArea;
use fixit_actors::error::CoreError;
use fixit_actors::ids::{CustomerId, JobId, ProviderId, WalletId};
use fixit_actors::job::Job;
use fixit_actors::ledger::LedgerOp;
use fixit_actors::Node;
use fixit_cluster::route::nearby::nearby_here;
use fixit_cluster::{ClusterRouter, LocalApi};
use fixit_protocol::area::AreaChange;
use fixit_protocol::codec;
use fixit_protocol::command_spec::{Method, TOKEN_ID_BYTES_MAX};
use fixit_protocol::commands::Revocation;
use fixit_protocol::ids::{WalletOwner, SUBJECT_MAX};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Retry hint when the denylist is full (an operator must act first).
const REVOCATIONS_FULL_RETRY_MS: u64 = 60_000;

pub use fixit_protocol::api::{
    ApiError, ErrorBody, NearbyAnswer, NearbyQuery, Push, Request, Response, HISTORY_LIMIT_MAX,
    PROTOCOL_VERSION, UNAVAILABLE_RETRY_AFTER_MS,
};

/// Checks that `principal` may send `request` (before anything is done), by the
/// command's access rule in the command table. Job visibility for `JobStatus` is
/// checked after the job is read.
pub fn authorize(principal: &Principal, request: &Request) -> Result<(), ApiError> {
    request.authorize(principal).map_err(ApiError::Forbidden)
}

/// Checks the documented ranges the request's types do not hold by themselves
/// (e.g. a history page's `limit`), before anything is done.
fn check_bounds(request: &Request) -> Result<(), ApiError> {
    if let Some(id) = request.subject_id().filter(|id| *id > SUBJECT_MAX) {
        return Err(CoreError::Invalid(format!(
            "customer and provider ids are at most {SUBJECT_MAX}, not {id}"
        ))
        .into());
    }
    if let Request::Balance { wallet }
    | Request::History { wallet, .. }
    | Request::Deposit { wallet, .. }
    | Request::Withdraw { wallet, .. } = request
    {
        if WalletId(*wallet).owner() == WalletOwner::Nobody {
            return Err(CoreError::Invalid(format!("wallet {wallet} belongs to no one")).into());
        }
    }
    let spec = request.spec();
    if !spec.has_bounds() {
        return Ok(());
    }
    spec.check_bounds(&request.fields())
        .map_err(|why| CoreError::Invalid(why).into())
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
    /// The key the node's listeners verify tokens with: revocations go into its
    /// denylist (shared by every clone).
    tokens: Option<TokenKey>,
    /// Where admin actions are recorded.
    audit: Option<Arc<AuditLog>>,
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
            tokens: None,
            audit: None,
        }
    }

    /// Records admin actions in `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> Api {
        self.audit = Some(Arc::new(audit));
        self
    }

    /// Records an admin action (no-op without an audit log).
    pub fn audit(
        &self,
        principal: &Principal,
        source: std::net::IpAddr,
        request_id: &str,
        action: &str,
        fields: serde_json::Map<String, serde_json::Value>,
        outcome: &str,
    ) {
        if let Some(audit) = &self.audit {
            audit.record(&AuditRecord {
                at_ms: self.node.context().clock.now_ms(),
                principal: *principal,
                request_id,
                source,
                action,
                fields,
                outcome,
            });
        }
    }

    /// Revocations apply to `tokens` (the key the listeners verify with); the
    /// revocations stored by earlier runs are applied now.
    pub fn with_tokens(mut self, tokens: TokenKey) -> Result<Api, ApiError> {
        let now = now_s();
        for record in self.node.revocations()? {
            let denial: Denial = codec::decode(&record)
                .map_err(|error| CoreError::Internal(format!("stored revocation: {error}")))?;
            tokens.denylist().apply(&denial, now);
        }
        let learnt = tokens.clone();
        self.node
            .on_revocation(move |record| match codec::decode::<Denial>(record) {
                Ok(denial) => {
                    learnt.denylist().apply(&denial, now_s());
                }
                Err(error) => {
                    tracing::warn!(%error, "a revocation from another node does not decode")
                }
            });
        self.tokens = Some(tokens);
        Ok(self)
    }

    /// Stores `denial` durably and puts it in force on this node.
    async fn revoke(&self, denial: Denial) -> Result<Response, ApiError> {
        let tokens = self
            .tokens
            .as_ref()
            .ok_or_else(|| CoreError::Unavailable("this node verifies no tokens".into()))?;
        let key = match &denial {
            Denial::Token { jti, .. } => format!("token/{jti}"),
            Denial::IssuedBefore { principal, .. } => {
                format!("subject/{}/{}", principal.role, principal.sub)
            }
        };
        if !tokens.denylist().apply(&denial, now_s()) {
            return Err(CoreError::Busy {
                retry_after_ms: REVOCATIONS_FULL_RETRY_MS,
            }
            .into());
        }
        let record =
            codec::encode(&denial).map_err(|error| CoreError::Internal(error.to_string()))?;
        self.node.put_revocation(&key, record).await?;
        Ok(Response::Revoked(Revocation {
            nodes_missed: Vec::new(),
        }))
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
        let audited =
            (principal.role == Role::Admin && request.spec().method != Method::Get).then(|| {
                let mut fields = request.fields();
                fields.remove("proof");
                fields
            });
        let result = async {
            let _permit = self.admission.admit(principal, source)?;
            self.overload.admit(&request)?;
            check_bounds(&request)?;
            authorize(principal, &request)?;
            self.route(principal, request, request_id).await
        }
        .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.kind(),
        };
        if let Some(fields) = audited {
            self.audit(principal, source, request_id, op, fields, outcome);
        }
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

    /// Serves `request` here or, in a cluster, where it belongs (the router
    /// decides and comes back to [`LocalApi::serve_here`] for what stays here).
    async fn route(
        &self,
        principal: &Principal,
        request: Request,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        match &self.cluster {
            Some(router) => router.route(self, principal, request, request_id).await,
            None => self.dispatch(principal, request).await,
        }
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
            } => {
                fixit_actors::ledger::validate_key(&key)?;
                Response::Op(
                    node.wallet_op(WalletId(wallet), &key, LedgerOp::Deposit { amount })
                        .await?,
                )
            }
            Request::Withdraw {
                wallet,
                key,
                amount,
            } => {
                fixit_actors::ledger::validate_key(&key)?;
                Response::Op(
                    node.wallet_op(WalletId(wallet), &key, LedgerOp::Withdraw { amount })
                        .await?,
                )
            }
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
            Request::Earnings { provider } => {
                Response::Earnings(node.earnings(ProviderId(provider)).await?)
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
                providers: nearby_here(&self.node, &query)?,
                unanswered: Vec::new(),
            }),
            Request::RevokeToken { jti } => {
                if !fixit_protocol::ids::is_printable_ascii(&jti, TOKEN_ID_BYTES_MAX) {
                    return Err(CoreError::Invalid(format!(
                        "jti must be 1 to {TOKEN_ID_BYTES_MAX} printable ASCII bytes"
                    ))
                    .into());
                }
                let lifetime = node.context().config.auth.token_ttl_max_s;
                self.revoke(Denial::Token {
                    jti,
                    forget_after_s: now_s().saturating_add(lifetime),
                })
                .await?
            }
            Request::RevokeSubject { role, sub } => {
                let role: Role = role.parse().map_err(|_| {
                    CoreError::Invalid("role must be customer, provider or admin".into())
                })?;
                // Tokens issued in this second too: `iat` has whole seconds.
                self.revoke(Denial::IssuedBefore {
                    principal: Principal { role, sub },
                    before_s: now_s() + 1,
                })
                .await?
            }
            Request::PutServiceArea(area) => {
                let name = area.name.clone();
                let existed = node.put_area(StoredArea::Service(area)).await?;
                area_changed(name, existed)
            }
            Request::PutZone(zone) => {
                let name = zone.name.clone();
                let existed = node.put_area(StoredArea::Zone(zone)).await?;
                area_changed(name, existed)
            }
            Request::RemoveArea { name } => {
                let existed = node.remove_area(&name).await?;
                area_changed(name, existed)
            }
            Request::Areas {} => Response::Areas(node.areas().list()),
            Request::SetWorkArea { provider, area } => {
                let existed = node.set_work_area(ProviderId(provider), area).await?;
                area_changed(provider.to_string(), existed)
            }
            Request::Quote {
                skill,
                lat,
                lon,
                price,
            } => Response::Quote(node.quote(&skill, lat, lon, price)?),
            Request::ReplaceNode { old, new } => {
                let shards = self
                    .cluster
                    .as_ref()
                    .and_then(|router| router.shards())
                    .ok_or_else(|| {
                        CoreError::Conflict(
                            "this node replicates no wallet shards: there is no replica to replace"
                                .into(),
                        )
                    })?;
                Response::NodeReplaced(shards.replace_node(&old, &new).await?)
            }
        };
        Ok(response)
    }

    /// Pushes for a principal: job events for a customer, offers for a provider.
    /// An admin hears zone events (providers entering or leaving a zone).
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
            Role::Admin => {
                let mut events = self.node.zone_events();
                tokio::spawn(async move {
                    loop {
                        match events.recv().await {
                            Ok(event) => {
                                if sender.send(Push::Zone(event)).await.is_err() {
                                    break;
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                                tracing::info!(missed, "admin subscriber missed zone events");
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        }
                    }
                });
            }
        }
        Ok(receiver)
    }
}

impl LocalApi for Api {
    fn node(&self) -> &Arc<Node> {
        &self.node
    }

    async fn serve_here(
        &self,
        principal: &Principal,
        request: Request,
    ) -> Result<Response, ApiError> {
        self.dispatch(principal, request).await
    }

    async fn serve_forwarded(
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
}

fn area_changed(name: String, existed: bool) -> Response {
    Response::AreaChanged(AreaChange {
        name,
        existed,
        nodes_missed: Vec::new(),
    })
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
