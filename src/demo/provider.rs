//! One simulated provider: goes online at the node owning its spot, moves about
//! (going online at the next node when its location is answered `moved`), takes
//! most offers from that node's pushes, works, completes, and goes offline when
//! the shift ends.

use super::city::{clamp_to_city, Rng};
use super::cluster::{demo_address, send, DemoCluster};
use super::{bump, Counters};
use fixit_actors::ids::{JobId, ProviderId};
use fixit_actors::job::JobStatus;
use fixit_actors::services::ProviderPush;
use fixit_edge::api::{ApiError, Request, Response};
use fixit_edge::auth::{Principal, Role};
use fixit_protocol::area::WorkArea;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often a provider's app sends its position.
const LOCATION_EVERY: Duration = Duration::from_secs(1);

/// Largest step between two positions, in degrees (~50 m).
const STEP_DEG: (f64, f64) = (0.001, 0.0015);

/// One provider in this many works only within [`WORK_RADIUS_M`] of its start.
const WORK_AREA_ONE_IN: u64 = 5;

/// Radius of those providers' work areas, in metres.
const WORK_RADIUS_M: f64 = 2_500.0;

/// The simulated provider.
pub(crate) struct Provider {
    pub(crate) id: ProviderId,
    pub(crate) cluster: Arc<DemoCluster>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rng: Rng,
}

/// Where the provider is online, and its offers from there.
struct Online {
    node: usize,
    pushes: mpsc::Receiver<ProviderPush>,
}

impl Provider {
    fn principal(&self) -> Principal {
        Principal {
            role: Role::Provider,
            sub: self.id.0,
        }
    }

    fn source(&self) -> IpAddr {
        demo_address(self.id.0)
    }

    async fn send(&self, node: usize, request: Request) -> Result<Response, ApiError> {
        let request_id = format!("demo-p{}-{}", self.id.0, request.name());
        send(
            self.cluster.node(node),
            &self.principal(),
            self.source(),
            request,
            &request_id,
        )
        .await
    }

    /// Sends once: a position that is refused for now is simply sent again next time.
    async fn send_once(&self, node: usize, request: Request) -> Result<Response, ApiError> {
        let request_id = format!("demo-p{}-{}", self.id.0, request.name());
        self.cluster
            .node(node)
            .api()
            .handle(&self.principal(), self.source(), request, &request_id)
            .await
    }

    /// Runs until `end`, then goes offline (finishing a job under way first).
    pub(crate) async fn run(mut self, end: Instant) {
        let skill = self.rng.skill();
        let mut at = self.rng.spot();
        if self.id.0 % WORK_AREA_ONE_IN == 0 {
            // Works only within a few kilometres of where the shift starts.
            let area = Request::SetWorkArea {
                provider: self.id.0,
                area: WorkArea::Circle {
                    lat: at.0,
                    lon: at.1,
                    radius_m: WORK_RADIUS_M,
                },
            };
            if self.send(self.cluster.owner_of(at), area).await.is_err() {
                bump(&self.counters.errors);
            }
        }
        let Some(mut online) = self.go_online(self.cluster.owner_of(at), skill, at).await else {
            bump(&self.counters.errors);
            return;
        };
        let mut moves = tokio::time::interval(LOCATION_EVERY);
        while Instant::now() < end {
            tokio::select! {
                _ = moves.tick() => {
                    at = clamp_to_city((
                        at.0 + (self.rng.unit() - 0.5) * STEP_DEG.0,
                        at.1 + (self.rng.unit() - 0.5) * STEP_DEG.1,
                    ));
                    match self.moved_to(online.node, skill, at).await {
                        Ok(Some(next)) => online = next,
                        Ok(None) => {}
                        Err(()) => return,
                    }
                }
                push = online.pushes.recv() => match push {
                    Some(ProviderPush::Offer { job, .. }) => self.handle_offer(online.node, job).await,
                    Some(ProviderPush::OfferEnded { .. }) => {}
                    None => return,
                },
                _ = tokio::time::sleep(end.saturating_duration_since(Instant::now())) => {}
            }
        }
        // The shift ends: an offer still held is handed back (the job goes on).
        let _ = self
            .send(
                online.node,
                Request::ProviderOffline {
                    provider: self.id.0,
                },
            )
            .await;
    }

    /// Sends the new position; on `moved`, goes online at the named node.
    /// `Ok(Some(_))`: now online elsewhere; `Err(())`: the provider gives up.
    async fn moved_to(
        &self,
        node: usize,
        skill: &str,
        at: (f64, f64),
    ) -> Result<Option<Online>, ()> {
        let location = Request::Location {
            provider: self.id.0,
            lat: at.0,
            lon: at.1,
        };
        match self.send_once(node, location).await {
            Ok(_) => {
                bump(&self.counters.location_updates);
                Ok(None)
            }
            Err(ApiError::Moved { node: owner }) => {
                let Some(next) = self.cluster.index_of(&owner) else {
                    bump(&self.counters.errors);
                    return Err(());
                };
                match self.go_online(next, skill, at).await {
                    Some(online) => {
                        bump(&self.counters.provider_moves);
                        Ok(Some(online))
                    }
                    None => {
                        bump(&self.counters.errors);
                        Err(())
                    }
                }
            }
            Err(error) if error.retry_after_ms().is_some() => Ok(None),
            Err(_) => {
                bump(&self.counters.errors);
                Ok(None)
            }
        }
    }

    /// Connects for offers at `node` (first, so no offer is missed), goes online
    /// there and sends the position.
    async fn go_online(&self, node: usize, skill: &str, at: (f64, f64)) -> Option<Online> {
        let pushes = self.cluster.node(node).node().provider_pushes(self.id);
        let online = Request::ProviderOnline {
            provider: self.id.0,
            skills: vec![skill.to_owned()],
        };
        let location = Request::Location {
            provider: self.id.0,
            lat: at.0,
            lon: at.1,
        };
        if self.send(node, online).await.is_err() || self.send(node, location).await.is_err() {
            return None;
        }
        bump(&self.counters.location_updates);
        Some(Online { node, pushes })
    }

    async fn handle_offer(&mut self, node: usize, job: JobId) {
        bump(&self.counters.offers_received);
        let provider = self.id.0;
        tokio::time::sleep(Duration::from_millis(100 + self.rng.below(900))).await;
        if self.rng.below(10) == 0 {
            let decline = Request::Decline {
                provider,
                job: job.0,
            };
            if self.send(node, decline).await.is_ok() {
                bump(&self.counters.declined);
            }
            return;
        }
        let accept = Request::Accept {
            provider,
            job: job.0,
        };
        let Ok(Response::Job(accepted)) = self.send(node, accept).await else {
            return; // lapsed or cancelled meanwhile
        };
        debug_assert_eq!(accepted.status, JobStatus::Accepted { provider: self.id });
        bump(&self.counters.accepted);
        tokio::time::sleep(Duration::from_millis(500 + self.rng.below(2_000))).await;
        let start = Request::Start {
            provider,
            job: job.0,
        };
        if self.send(node, start).await.is_err() {
            return; // cancelled before work started
        }
        tokio::time::sleep(Duration::from_millis(500 + self.rng.below(2_000))).await;
        let complete = Request::Complete {
            provider,
            job: job.0,
            proof: b"photo-of-fixed-sink".to_vec(),
        };
        match self.send(node, complete).await {
            Ok(_) => bump(&self.counters.completed),
            Err(_) => bump(&self.counters.errors),
        }
    }
}
