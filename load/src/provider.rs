//! One simulated provider: connects to the node owning its spot, opens its push
//! stream (first, so no offer is missed), goes online and sends its position about
//! once a second (jittered, staying inside its node's region); takes each offer at
//! once, then starts and completes the job after think times.

use super::client::{Pushes, UserClient};
use super::sim::{once, retrying, Sim, Timeline};
use super::stats::Op;
use crate::city::Rng;
use fixit_actors::services::ProviderPush;
use fixit_protocol::api::Push;
use fixit_protocol::principal::{Principal, Role};
use fixit_sdk::Commands;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// First provider id (customers are 1..=customers, admins use their own subjects).
pub(crate) const FIRST_PROVIDER: u64 = 1_000_000;

/// How often a provider's app sends its position.
const LOCATION_EVERY: Duration = Duration::from_secs(1);

/// Largest jitter added to or taken from one location period, in ms.
const LOCATION_JITTER_MS: u64 = 100;

/// Proof of work sent with a completion.
const PROOF: &[u8] = b"load-generator-proof";

/// A provider that is connected and online.
pub(crate) struct OnlineProvider {
    id: u64,
    node: usize,
    client: UserClient,
    pushes: Pushes,
    at: (f64, f64),
    rng: Rng,
}

/// Connects provider number `index`, subscribes and goes online at the node
/// owning its spot; `None` if any step failed (recorded in the statistics).
pub(crate) async fn go_online(sim: &Sim, index: u64) -> Option<OnlineProvider> {
    let id = FIRST_PROVIDER + index;
    let mut rng = Rng::for_user(sim.seed, id);
    let Some((at, node)) = sim.owned_spot(&mut rng) else {
        sim.stats.failed(Op::ProviderOnline, "no_region_for_spot");
        return None;
    };
    let skill = rng.skill();
    let principal = Principal {
        role: Role::Provider,
        sub: id,
    };
    let stats = &sim.stats;
    let client = sim
        .connectors
        .connect(&sim.target, node, id, principal, stats)
        .await?;
    let pushes = retrying(stats, Op::Subscribe, || client.subscribe()).await?;
    let skills = [skill];
    retrying(stats, Op::ProviderOnline, || {
        client.provider_online(id, &skills)
    })
    .await?;
    retrying(stats, Op::LocationUpdate, || {
        client.location(id, at.0, at.1)
    })
    .await?;
    Some(OnlineProvider {
        id,
        node,
        client,
        pushes,
        at,
        rng,
    })
}

impl OnlineProvider {
    /// Moves about until the load ends and takes offers until `stop` (or the end of
    /// the drain); then goes offline and closes its connection.
    pub(crate) async fn run(self, sim: Arc<Sim>, timeline: Timeline, stop: watch::Receiver<bool>) {
        let OnlineProvider {
            id,
            node,
            client,
            pushes,
            at,
            rng,
        } = self;
        let mover = Mover {
            id,
            node,
            at,
            rng: rng.clone(),
        };
        let moving = tokio::spawn(mover.run(sim.clone(), client.clone(), timeline.load_end));
        let worker = Worker {
            id,
            client: client.clone(),
            rng,
        };
        worker
            .take_offers(&sim, pushes, stop, timeline.drain_end)
            .await;
        let _ = moving.await;
        let _ = retrying(&sim.stats, Op::ProviderOffline, || {
            client.provider_offline(id)
        })
        .await;
        client.close().await;
    }
}

/// The provider's position updates.
struct Mover {
    id: u64,
    node: usize,
    at: (f64, f64),
    rng: Rng,
}

impl Mover {
    /// A jittered position about every second until `end`; a step that would leave
    /// the node's region is not taken (the provider stays online where it is).
    async fn run(mut self, sim: Arc<Sim>, client: UserClient, end: Instant) {
        let first = Duration::from_millis(self.rng.below(LOCATION_EVERY.as_millis() as u64));
        let mut next = tokio::time::Instant::now() + first;
        while next.into_std() < end {
            tokio::time::sleep_until(next).await;
            let step = self.rng.step(self.at);
            if sim.target.owner_of(step) == Some(self.node) {
                self.at = step;
            }
            let (id, (lat, lon)) = (self.id, self.at);
            let started = Instant::now();
            let _ = once(
                &sim.stats,
                Op::LocationUpdate,
                started,
                client.location(id, lat, lon),
            )
            .await;
            let jitter = self.rng.below(2 * LOCATION_JITTER_MS);
            next += LOCATION_EVERY + Duration::from_millis(jitter)
                - Duration::from_millis(LOCATION_JITTER_MS);
            let now = tokio::time::Instant::now();
            if next < now {
                // The update took longer than a period: skip the missed ticks.
                let missed = (now - next).as_millis() / LOCATION_EVERY.as_millis() + 1;
                sim.stats
                    .locations_skipped
                    .fetch_add(missed as u64, Ordering::Relaxed);
                next += LOCATION_EVERY * missed as u32;
            }
        }
    }
}

/// The provider's handling of offers.
struct Worker {
    id: u64,
    client: UserClient,
    rng: Rng,
}

impl Worker {
    async fn take_offers(
        mut self,
        sim: &Sim,
        mut pushes: Pushes,
        mut stop: watch::Receiver<bool>,
        drain_end: Instant,
    ) {
        let drain_end = tokio::time::Instant::from_std(drain_end);
        loop {
            let push = tokio::select! {
                push = pushes.next() => push,
                _ = stop.wait_for(|stop| *stop) => break,
                () = tokio::time::sleep_until(drain_end) => break,
            };
            match push {
                Some(Push::Provider(ProviderPush::Offer { job, .. })) => {
                    sim.stats.offers_received.fetch_add(1, Ordering::Relaxed);
                    sim.jobs.offered(job.0, &sim.stats);
                    self.work(sim, job.0).await;
                }
                Some(_) => {}
                None => {
                    sim.stats.failed(Op::Subscribe, "push_stream_ended");
                    return;
                }
            }
        }
        pushes.close().await;
    }

    /// Accepts at once; starts and completes after think times.
    async fn work(&mut self, sim: &Sim, job: u64) {
        let (stats, id) = (&sim.stats, self.id);
        let accepted = once(
            stats,
            Op::Accept,
            Instant::now(),
            self.client.accept(id, job),
        )
        .await;
        if accepted.is_err() {
            return;
        }
        sim.jobs.accepted(job, id, stats);
        tokio::time::sleep(self.think(sim)).await;
        let started = once(stats, Op::Start, Instant::now(), self.client.start(id, job)).await;
        if started.is_err() {
            sim.jobs.finished(job, id, false);
            return;
        }
        tokio::time::sleep(self.think(sim)).await;
        let complete = self.client.complete(id, job, PROOF.to_vec());
        let completed = once(stats, Op::Complete, Instant::now(), complete).await;
        sim.jobs.finished(job, id, completed.is_ok());
    }

    /// A think time: the mean, ±50 %.
    fn think(&mut self, sim: &Sim) -> Duration {
        sim.think.mul_f64(0.5 + self.rng.unit())
    }
}
