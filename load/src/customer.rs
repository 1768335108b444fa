//! The simulated customers: each holds one connection and its push stream open
//! for the whole run (spread over the nodes of a cluster) and gets a deposit from an
//! admin first; bookings and balance calls arrive open-loop (Poisson at the total
//! rate, each on a random customer's connection), so a slow node shows as latency,
//! never as fewer attempts.

use super::client::UserClient;
use super::sim::{once, retrying, Sim, Timeline};
use super::stats::Op;
use crate::city::Rng;
use fixit_protocol::principal::{Principal, Role};
use fixit_sdk::Commands;
use futures::StreamExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Money each customer gets before the run, in cents.
const STARTING_BALANCE: i64 = 10_000_000;

/// Lowest and span of a job's price, in cents.
const PRICE_MIN: i64 = 2_000;
const PRICE_SPAN: u64 = 18_000;

/// Calls one customer may have in flight; an arrival for a customer at the bound
/// goes to another random customer.
const CUSTOMER_INFLIGHT_MAX: u32 = 4;

/// Customers tried for one arrival before it is skipped (and counted as skipped).
const PICK_TRIES_MAX: u32 = 8;

/// Bookings in flight from the whole generator; past it arrivals are skipped and
/// counted (the generator protects itself, the report says so).
const BOOKINGS_INFLIGHT_MAX: u64 = 20_000;

/// Admin connections used for deposits and checks, spread over the nodes: one
/// call in flight each keeps every admin under a default per-principal rate limit.
pub(crate) const ADMINS: u64 = 64;

/// Deposits (and checks) in flight at once.
const ADMIN_CALLS_INFLIGHT_MAX: usize = 64;

/// One connected customer.
pub(crate) struct Customer {
    id: u64,
    client: UserClient,
    inflight: AtomicU32,
    /// Tells the push reader to close the stream.
    closing: watch::Sender<bool>,
}

impl Customer {
    fn claim(&self) -> bool {
        let previous = self.inflight.fetch_add(1, Ordering::SeqCst);
        if previous >= CUSTOMER_INFLIGHT_MAX {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    fn release(&self) {
        self.inflight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Ends the push stream and closes the connection (bounded wait for the node
    /// to hear of it).
    pub(crate) async fn close(&self) {
        self.closing.send_replace(true);
        self.client.clone().close().await;
    }
}

/// Connects customer number `index` (id `index + 1`) to node `index % nodes` and
/// opens its push stream, drained (and counted) until `pushes_end`.
pub(crate) async fn connect(sim: &Arc<Sim>, index: u64, pushes_end: Instant) -> Option<Customer> {
    let id = index + 1;
    let node = (index % sim.target.nodes.len() as u64) as usize;
    let principal = Principal {
        role: Role::Customer,
        sub: id,
    };
    let stats = &sim.stats;
    let client = sim
        .connectors
        .connect(&sim.target, node, id, principal, stats)
        .await?;
    let mut pushes = retrying(stats, Op::Subscribe, || client.subscribe()).await?;
    let counting = sim.clone();
    let end = tokio::time::Instant::from_std(pushes_end);
    let (closing, mut closed) = watch::channel(false);
    tokio::spawn(async move {
        // Bounded by `pushes_end`, the customer's close and the stream's life.
        loop {
            tokio::select! {
                push = pushes.next() => match push {
                    Some(_) => counting.stats.customer_pushes.fetch_add(1, Ordering::Relaxed),
                    None => break,
                },
                _ = closed.wait_for(|closed| *closed) => break,
                () = tokio::time::sleep_until(end) => break,
            };
        }
        pushes.close().await;
    });
    Some(Customer {
        id,
        client,
        inflight: AtomicU32::new(0),
        closing,
    })
}

/// Admin connections (subjects 1..=[`ADMINS`]) spread over the nodes.
pub(crate) async fn connect_admins(sim: &Sim) -> anyhow::Result<Vec<UserClient>> {
    let mut admins = Vec::new();
    for sub in 1..=ADMINS {
        let node = (sub as usize) % sim.target.nodes.len();
        let principal = Principal {
            role: Role::Admin,
            sub,
        };
        let user = u64::MAX - sub;
        let client = sim
            .connectors
            .connect(&sim.target, node, user, principal, &sim.stats)
            .await
            .ok_or_else(|| anyhow::anyhow!("admin {sub} could not connect to node {node}"))?;
        admins.push(client);
    }
    Ok(admins)
}

/// Deposits every customer's starting balance (admins in turn, bounded concurrency);
/// returns how many deposits succeeded.
pub(crate) async fn fund(sim: &Sim, admins: &[UserClient], customers: &[Arc<Customer>]) -> u64 {
    let deposits = customers.iter().enumerate().map(|(index, customer)| {
        let admin = &admins[index % admins.len()];
        let key = format!("load-{}-deposit-{}", sim.run_id, customer.id);
        async move {
            let deposit = || admin.deposit(customer.id, &key, STARTING_BALANCE);
            retrying(&sim.stats, Op::Deposit, deposit).await.is_some()
        }
    });
    futures::stream::iter(deposits)
        .buffer_unordered(ADMIN_CALLS_INFLIGHT_MAX)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await as u64
}

/// What an arrival does.
#[derive(Clone, Copy)]
pub(crate) enum Arrival {
    Booking,
    Balance,
}

/// Open-loop arrivals of `kind` at `per_s` (Poisson) from the start of the load to
/// its end, each on a random customer's connection.
pub(crate) async fn arrivals(
    sim: Arc<Sim>,
    customers: Arc<Vec<Arc<Customer>>>,
    (kind, per_s): (Arrival, f64),
    timeline: Timeline,
    mut rng: Rng,
) {
    if per_s <= 0.0 || customers.is_empty() {
        return;
    }
    let mean_s = 1.0 / per_s;
    let mut scheduled = timeline.start;
    let mut number = 0u64;
    // Bounded by the load's end: every turn moves `scheduled` forward.
    loop {
        scheduled += Duration::from_secs_f64(rng.exponential(mean_s));
        if scheduled >= timeline.load_end {
            break;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(scheduled)).await;
        number += 1;
        let Some(customer) = pick(&customers, &mut rng) else {
            sim.stats.arrivals_skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match kind {
            Arrival::Booking => {
                if sim.jobs.booking_inflight.load(Ordering::SeqCst) >= BOOKINGS_INFLIGHT_MAX {
                    customer.release();
                    sim.stats.arrivals_skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let booking = Booking::new(&sim, &mut rng, number);
                sim.jobs.booking_inflight.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(booking.send(sim.clone(), customer, scheduled));
            }
            Arrival::Balance => {
                let sim = sim.clone();
                tokio::spawn(async move {
                    let call = customer.client.balance(customer.id);
                    let _ = once(&sim.stats, Op::Balance, scheduled, call).await;
                    customer.release();
                });
            }
        }
    }
}

/// A random customer with room for one more call (claimed), if one is found.
fn pick(customers: &[Arc<Customer>], rng: &mut Rng) -> Option<Arc<Customer>> {
    (0..PICK_TRIES_MAX).find_map(|_| {
        let customer = &customers[rng.below(customers.len() as u64) as usize];
        customer.claim().then(|| customer.clone())
    })
}

/// One booking's content.
struct Booking {
    key: String,
    skill: &'static str,
    at: (f64, f64),
    price: i64,
}

impl Booking {
    fn new(sim: &Sim, rng: &mut Rng, number: u64) -> Booking {
        let at = sim.owned_spot(rng).map_or_else(|| rng.spot(), |(at, _)| at);
        Booking {
            key: format!("load-{}-job-{number}", sim.run_id),
            skill: rng.skill(),
            at,
            price: PRICE_MIN + rng.below(PRICE_SPAN) as i64,
        }
    }

    /// Sends it on the customer's connection, timed from when it was due.
    async fn send(self, sim: Arc<Sim>, customer: Arc<Customer>, due: Instant) {
        let (lat, lon) = self.at;
        let call =
            customer
                .client
                .request_job(customer.id, &self.key, self.skill, lat, lon, self.price);
        if let Ok(job) = once(&sim.stats, Op::Book, due, call).await {
            sim.jobs.booked(job.id.0, due, &sim.stats);
        }
        customer.release();
        sim.jobs.booking_inflight.fetch_sub(1, Ordering::SeqCst);
    }
}
