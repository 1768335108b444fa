//! One simulated provider: goes online at the node owning its spot, moves about
//! (going online at the next node when its location is answered `moved`), takes
//! most offers from that node's pushes, works, completes, and goes offline when
//! the shift ends. When its node goes down (`--kill-node-at-s`) it waits and goes
//! online again once the node is back, as a real app reconnects.

use super::city::{clamp_to_city, Rng};
use super::cluster::{demo_address, CallError, DemoCluster, NodeState};
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

/// Most times a provider goes online again after its node went down under it
/// (one outage takes one or two).
const RECONNECTS_MAX: u32 = 8;

/// The simulated provider.
pub(crate) struct Provider {
    pub(crate) id: ProviderId,
    pub(crate) cluster: Arc<DemoCluster>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rng: Rng,
}

/// Where the provider is online (which start of which node), and its offers
/// from there.
struct Online {
    node: usize,
    since: NodeState,
    pushes: mpsc::Receiver<ProviderPush>,
}

/// What a position update came to.
enum Moved {
    /// Still online where it was.
    Stayed,
    /// Now online at another node.
    To(Online),
    /// Its node (or the next one) is down.
    NodeDown,
    /// Refused for good: the provider gives up.
    GaveUp,
}

/// What the provider does after one turn of its loop.
enum Next {
    Carry,
    /// Go online again (its node went down or started again).
    Reconnect,
    Stop,
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

    async fn send(&self, node: usize, request: Request) -> Result<Response, CallError> {
        let request_id = format!("demo-p{}-{}", self.id.0, request.name());
        self.cluster
            .send(node, &self.principal(), self.source(), request, &request_id)
            .await
    }

    /// Sends once: a position that is refused for now is simply sent again next time.
    async fn send_once(&self, node: usize, request: Request) -> Result<Response, CallError> {
        let request_id = format!("demo-p{}-{}", self.id.0, request.name());
        self.cluster
            .send_once(node, &self.principal(), self.source(), request, &request_id)
            .await
    }

    /// Sends as [`Provider::send`]; if the node is down, waits (until `end`)
    /// for it to be back and sends once more, as an app that reconnects does.
    async fn send_through(
        &self,
        node: usize,
        request: Request,
        end: Instant,
    ) -> Result<Response, CallError> {
        match self.send(node, request.clone()).await {
            Err(CallError::NodeDown) => {
                bump(&self.counters.while_down);
                if !self.cluster.wait_up(node, end).await {
                    return Err(CallError::NodeDown);
                }
                self.send(node, request).await
            }
            answer => answer,
        }
    }

    /// Counts a failed call: as failed while down, or as an error.
    fn count_failure(&self, error: &CallError) {
        match error {
            CallError::NodeDown => bump(&self.counters.while_down),
            CallError::Api(_) => bump(&self.counters.errors),
        }
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
            if let Err(error) = self
                .send_through(self.cluster.owner_of(at), area, end)
                .await
            {
                self.count_failure(&error);
            }
        }
        let Some(mut online) = self.connect(skill, at, end).await else {
            return;
        };
        let mut reconnects = 0;
        let mut moves = tokio::time::interval(LOCATION_EVERY);
        while Instant::now() < end {
            let next = tokio::select! {
                _ = moves.tick() => {
                    at = clamp_to_city((
                        at.0 + (self.rng.unit() - 0.5) * STEP_DEG.0,
                        at.1 + (self.rng.unit() - 0.5) * STEP_DEG.1,
                    ));
                    match self.moved_to(online.node, skill, at).await {
                        Moved::Stayed => Next::Carry,
                        Moved::To(next) => {
                            online = next;
                            Next::Carry
                        }
                        Moved::NodeDown => Next::Reconnect,
                        Moved::GaveUp => Next::Stop,
                    }
                }
                push = online.pushes.recv() => match push {
                    Some(ProviderPush::Offer { job, .. }) => {
                        self.handle_offer(online.node, job, end).await;
                        Next::Carry
                    }
                    Some(ProviderPush::OfferEnded { .. }) => Next::Carry,
                    None if self.cluster.state(online.node) == online.since => Next::Stop,
                    None => Next::Reconnect,
                },
                () = self.cluster.left(online.node, online.since) => Next::Reconnect,
                _ = tokio::time::sleep(end.saturating_duration_since(Instant::now())) => Next::Carry,
            };
            match next {
                Next::Carry => {}
                Next::Reconnect if reconnects < RECONNECTS_MAX => {
                    reconnects += 1;
                    match self.connect(skill, at, end).await {
                        Some(again) => online = again,
                        None => return,
                    }
                }
                Next::Reconnect => {
                    bump(&self.counters.errors);
                    return;
                }
                Next::Stop => return,
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

    /// Goes online at the node owning `at`, waiting (until `end`) while it is
    /// down; `None` if the shift ended first or the node refused.
    async fn connect(&self, skill: &str, at: (f64, f64), end: Instant) -> Option<Online> {
        for _ in 0..RECONNECTS_MAX {
            let node = self.cluster.owner_of(at);
            if !self.cluster.wait_up(node, end).await {
                return None;
            }
            match self.go_online(node, skill, at).await {
                Ok(online) => return Some(online),
                Err(CallError::NodeDown) => bump(&self.counters.while_down),
                Err(CallError::Api(_)) => break,
            }
        }
        bump(&self.counters.errors);
        None
    }

    /// Sends the new position; on `moved`, goes online at the named node.
    async fn moved_to(&self, node: usize, skill: &str, at: (f64, f64)) -> Moved {
        let location = Request::Location {
            provider: self.id.0,
            lat: at.0,
            lon: at.1,
        };
        match self.send_once(node, location).await {
            Ok(_) => {
                bump(&self.counters.location_updates);
                Moved::Stayed
            }
            Err(CallError::Api(ApiError::Moved { node: owner })) => {
                let Some(next) = self.cluster.index_of(&owner) else {
                    bump(&self.counters.errors);
                    return Moved::GaveUp;
                };
                match self.go_online(next, skill, at).await {
                    Ok(online) => {
                        bump(&self.counters.provider_moves);
                        Moved::To(online)
                    }
                    Err(CallError::NodeDown) => {
                        bump(&self.counters.while_down);
                        Moved::NodeDown
                    }
                    Err(CallError::Api(_)) => {
                        bump(&self.counters.errors);
                        Moved::GaveUp
                    }
                }
            }
            Err(CallError::NodeDown) => {
                bump(&self.counters.while_down);
                Moved::NodeDown
            }
            Err(error) if error.retry_after_ms().is_some() => Moved::Stayed,
            Err(_) => {
                bump(&self.counters.errors);
                Moved::Stayed
            }
        }
    }

    /// Connects for offers at `node` (first, so no offer is missed), goes online
    /// there and sends the position.
    async fn go_online(
        &self,
        node: usize,
        skill: &str,
        at: (f64, f64),
    ) -> Result<Online, CallError> {
        let since = self.cluster.state(node);
        let pushes = self
            .cluster
            .node(node)
            .ok_or(CallError::NodeDown)?
            .node()
            .provider_pushes(self.id);
        let online = Request::ProviderOnline {
            provider: self.id.0,
            skills: vec![skill.to_owned()],
        };
        let location = Request::Location {
            provider: self.id.0,
            lat: at.0,
            lon: at.1,
        };
        self.send(node, online).await?;
        self.send(node, location).await?;
        bump(&self.counters.location_updates);
        Ok(Online {
            node,
            since,
            pushes,
        })
    }

    /// Takes most offers: accepts, works, completes. A job held when its node
    /// goes down is finished once the node is back (until `end`).
    async fn handle_offer(&mut self, node: usize, job: JobId, end: Instant) {
        bump(&self.counters.offers_received);
        let provider = self.id.0;
        tokio::time::sleep(Duration::from_millis(100 + self.rng.below(900))).await;
        if self.rng.below(10) == 0 {
            let decline = Request::Decline {
                provider,
                job: job.0,
            };
            match self.send(node, decline).await {
                Ok(_) => bump(&self.counters.declined),
                Err(CallError::NodeDown) => bump(&self.counters.while_down),
                Err(CallError::Api(_)) => {}
            }
            return;
        }
        let accept = Request::Accept {
            provider,
            job: job.0,
        };
        let accepted = match self.send(node, accept).await {
            Ok(Response::Job(accepted)) => accepted,
            Err(CallError::NodeDown) => {
                bump(&self.counters.while_down);
                return; // the offer went down with its node
            }
            _ => return, // lapsed or cancelled meanwhile
        };
        debug_assert_eq!(accepted.status, JobStatus::Accepted { provider: self.id });
        bump(&self.counters.accepted);
        tokio::time::sleep(Duration::from_millis(500 + self.rng.below(2_000))).await;
        let start = Request::Start {
            provider,
            job: job.0,
        };
        if self.send_through(node, start, end).await.is_err() {
            return; // cancelled before work started
        }
        tokio::time::sleep(Duration::from_millis(500 + self.rng.below(2_000))).await;
        let complete = Request::Complete {
            provider,
            job: job.0,
            proof: b"photo-of-fixed-sink".to_vec(),
        };
        match self.send_through(node, complete, end).await {
            Ok(_) => bump(&self.counters.completed),
            Err(error) => self.count_failure(&error),
        }
    }
}
