//! Where a client request is served in a cluster: wallet commands at the wallet's
//! home, job commands at the node holding the job, a booking at the owner of its
//! position, a nearby search on every node whose regions reach the circle; a
//! location in another region moves a free provider there.

use super::commands::{PeerAnswer, PeerCommand};
use super::nearby::nearby_here;
use super::router::{ClusterRouter, Traffic};
use super::LocalApi;
use fixit_actors::cluster_hooks::CandidateQuery;
use fixit_actors::geo::rank;
use fixit_actors::geo::Nearby;
use fixit_actors::ids::{ProviderId, WalletId};
use fixit_actors::provider::ProviderStatus;
use fixit_actors::Node;
use fixit_protocol::api::{ApiError, NearbyAnswer, NearbyQuery, Request, Response};
use fixit_protocol::command_spec::Placement;
use fixit_protocol::error::CoreError;
use fixit_protocol::principal::{Principal, Role};
use std::sync::Arc;
use std::time::Duration;

/// Longest a dispatch waits for another node's candidates: a slow neighbour
/// costs a search this much, then its providers are skipped this round.
pub const DISPATCH_LEG_TIMEOUT: Duration = Duration::from_millis(1_000);

impl ClusterRouter {
    /// Serves `request` where it belongs: forwarded to the node that owns it, or
    /// through `local` when that is this node.
    pub async fn route<A: LocalApi>(
        self: &Arc<Self>,
        local: &A,
        principal: &Principal,
        request: Request,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        if principal.role == Role::Customer {
            // Connected here: the customer's job events are delivered here.
            let customer = fixit_actors::ids::CustomerId(principal.sub);
            local.node().context().customer_nodes.note(customer, None);
        }
        if let Request::Nearby(query) = &request {
            return self.nearby_across(local.node(), query, request_id).await;
        }
        if let Request::Location { provider, lat, lon } = request {
            if let Some(owner) = self.remote_owner_of(lat, lon) {
                return provider_moving(local, ProviderId(provider), owner, request).await;
            }
        }
        if request.spec().placement == Placement::Everywhere {
            return self.everywhere(local, principal, request).await;
        }
        match remote_node(self, &request) {
            Some(node) => self.forward(&node, principal, request, request_id).await,
            None => local.serve_here(principal, request).await,
        }
    }

    /// Serves `request` here — a change of cluster-wide settings (areas, work
    /// areas, revocations), stamped with this node's version — then brings every
    /// other node in line at once (a settings comparison with each, with the
    /// link deadline, so every node holds the same version); the answer names the
    /// nodes that could not be reached (they catch up by anti-entropy).
    async fn everywhere<A: LocalApi>(
        self: &Arc<Self>,
        local: &A,
        principal: &Principal,
        request: Request,
    ) -> Result<Response, ApiError> {
        let response = local.serve_here(principal, request).await?;
        let mut tells = tokio::task::JoinSet::new();
        for peer in self.other_nodes() {
            let router = self.clone();
            let node = local.node().clone();
            tells.spawn(async move {
                let told = super::settings_sync::sync_with(&node, &router, &peer).await;
                if let Err(error) = &told {
                    tracing::info!(%peer, %error, "a settings change did not reach a node");
                }
                (peer, told.is_ok())
            });
        }
        let mut missed = Vec::new();
        while let Some(joined) = tells.join_next().await {
            match joined {
                Ok((_, true)) => {}
                Ok((peer, false)) => missed.push(peer),
                Err(error) => tracing::warn!(%error, "a cluster-wide leg panicked"),
            }
        }
        missed.sort();
        Ok(match response {
            Response::Revoked(mut revocation) => {
                revocation.nodes_missed = missed;
                Response::Revoked(revocation)
            }
            Response::AreaChanged(mut change) => {
                change.nodes_missed = missed;
                Response::AreaChanged(change)
            }
            other => other,
        })
    }

    async fn forward(
        &self,
        node: &str,
        principal: &Principal,
        request: Request,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        Traffic::count(&self.traffic.forwarded_out);
        let command = PeerCommand::Client {
            principal: *principal,
            request,
        };
        match self.call(node, &command, None, request_id).await? {
            PeerAnswer::Response(response) => Ok(response),
            other => Err(ApiError::Core(CoreError::Internal(format!(
                "node {node} answered a forwarded request with {other:?}"
            )))),
        }
    }

    /// Dispatch candidates of the other nodes whose regions reach the circle,
    /// each with its node; a node not answering within [`DISPATCH_LEG_TIMEOUT`]
    /// is left out (counted as a failed call).
    pub(crate) async fn candidates_across(
        self: &Arc<Self>,
        query: CandidateQuery,
    ) -> Vec<(Nearby, String)> {
        let Ok(owners) = self
            .regions()
            .owners_near(query.at.lat(), query.at.lon(), query.radius_m)
        else {
            return Vec::new();
        };
        let others: Vec<String> = owners
            .into_iter()
            .filter(|owner| *owner != self.name())
            .map(str::to_owned)
            .collect();
        if others.is_empty() {
            return Vec::new();
        }
        Traffic::count(&self.traffic.candidate_fanouts);
        let command = PeerCommand::Candidates(query);
        let mut asks = tokio::task::JoinSet::new();
        for peer in others {
            let router = self.clone();
            let command = command.clone();
            asks.spawn(async move {
                let request_id = format!("{}-candidates", router.name());
                let call = router.call(&peer, &command, None, &request_id);
                let answer = tokio::time::timeout(DISPATCH_LEG_TIMEOUT, call).await;
                (peer, answer)
            });
        }
        let mut found = Vec::new();
        while let Some(joined) = asks.join_next().await {
            match joined {
                Ok((peer, Ok(Ok(PeerAnswer::Nearby(near))))) => {
                    found.extend(near.into_iter().map(|near| (near, peer.clone())))
                }
                Ok((peer, Err(_))) => {
                    Traffic::count(&self.traffic.calls_failed);
                    tracing::info!(%peer, "dispatch candidates: no answer in time");
                }
                Ok((peer, answer)) => {
                    tracing::info!(%peer, ?answer, "dispatch candidates: no candidates")
                }
                Err(error) => tracing::warn!(%error, "candidate leg panicked"),
            }
        }
        found
    }

    /// A nearby search across the cluster: this node's index plus every other node
    /// whose regions reach into the circle, each asked once with the link deadline.
    /// Nodes that do not answer are listed, and their providers are missing.
    async fn nearby_across(
        self: &Arc<Self>,
        node: &Node,
        query: &NearbyQuery,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        let mut providers = nearby_here(node, query)?;
        let mut unanswered = Vec::new();
        let others: Vec<String> = self
            .regions()
            .owners_near(query.lat, query.lon, query.radius_m)
            .map_err(|error| CoreError::Invalid(error.to_string()))?
            .into_iter()
            .filter(|owner| *owner != self.name())
            .map(str::to_owned)
            .collect();
        if !others.is_empty() {
            Traffic::count(&self.traffic.nearby_fanouts);
            let command = PeerCommand::Nearby(query.clone());
            let mut asks = tokio::task::JoinSet::new();
            for peer in others {
                let router = self.clone();
                let command = command.clone();
                let request_id = request_id.to_owned();
                asks.spawn(async move {
                    let answer = router.call(&peer, &command, None, &request_id).await;
                    (peer, answer)
                });
            }
            while let Some(joined) = asks.join_next().await {
                match joined {
                    Ok((_, Ok(PeerAnswer::Nearby(found)))) => providers.extend(found),
                    Ok((peer, _)) => unanswered.push(peer),
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
}

/// A location in another node's region: a free provider goes offline here and is
/// told where to go online; one holding an offer or a job stays here until it ends
/// (the location is recorded as usual).
async fn provider_moving<A: LocalApi>(
    local: &A,
    provider: ProviderId,
    owner: String,
    request: Request,
) -> Result<Response, ApiError> {
    let node = local.node();
    match node.provider(provider).await?.status {
        ProviderStatus::Offered(..) | ProviderStatus::Busy(_) => {
            let principal = Principal {
                role: Role::Provider,
                sub: provider.0,
            };
            local.serve_here(&principal, request).await
        }
        ProviderStatus::Available => {
            node.provider_offline(provider).await?;
            Err(ApiError::Moved { node: owner })
        }
        ProviderStatus::Offline => Err(ApiError::Moved { node: owner }),
    }
}

/// The node a request belongs on when that is another node, by the command's
/// placement rule in the command table: a wallet's home, the holder of a job, the
/// owner of a booking's position. `None`: serve it here.
fn remote_node(router: &ClusterRouter, request: &Request) -> Option<String> {
    match request.spec().placement {
        // Replicated wallets are served from any node (through their shard's leader).
        Placement::WalletHome(_) if router.wallets_replicated() => None,
        Placement::WalletHome(field) => {
            let home = router.home_of(WalletId(request.id_field(field)?));
            (home != router.name()).then(|| home.to_owned())
        }
        Placement::JobHolder(field) => router.remote_holder_of_job(request.id_field(field)?),
        Placement::PositionOwner => {
            let fields = request.fields();
            let degrees = |name: &str| fields.get(name).and_then(serde_json::Value::as_f64);
            router.remote_owner_of(degrees("lat")?, degrees("lon")?)
        }
        Placement::Here
        | Placement::ProviderPosition
        | Placement::NearbyFanOut
        | Placement::Everywhere => None,
    }
}
