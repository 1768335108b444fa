//! The demo's customers: funded by an admin through node a (each deposit is
//! forwarded to the wallet's home), then booking through node a at a steady rate
//! (each booking is forwarded to the node owning its position); a few cancel.
//! While a node is down (`--kill-node-at-s`), bookings in its region fail as
//! node a answers them (unavailable) and are counted as failed while down.

use super::city::Rng;
use super::cluster::{demo_address, CallError, DemoCluster};
use super::{bump, Counters};
use anyhow::Context;
use fixit_edge::api::{Request, Response};
use fixit_edge::auth::{Principal, Role};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Money each customer starts with, in cents.
const STARTING_BALANCE: i64 = 5_000_000;

/// Lowest and span of a job's price, in cents.
const PRICE_MIN: i64 = 2_000;
const PRICE_SPAN: u64 = 18_000;

/// One booking in this many is cancelled shortly after.
const CANCEL_ONE_IN: u64 = 20;

/// Pause before a customer cancels.
const CANCEL_AFTER: Duration = Duration::from_millis(200);

/// The node customers (and the admin) talk to: a, whose dashboard is shown.
const ENTRY_NODE: usize = 0;

/// Deposits every customer's starting balance through node a, as an admin.
pub(crate) async fn fund(cluster: &DemoCluster, customers: u64) -> anyhow::Result<()> {
    let admin = Principal {
        role: Role::Admin,
        sub: 0,
    };
    for customer in 1..=customers {
        let deposit = Request::Deposit {
            wallet: customer,
            key: "demo-seed".to_owned(),
            amount: STARTING_BALANCE,
        };
        let request_id = format!("demo-fund-{customer}");
        cluster
            .send(ENTRY_NODE, &admin, demo_address(0), deposit, &request_id)
            .await
            .with_context(|| format!("funding customer {customer}"))?;
    }
    Ok(())
}

/// Books jobs at a steady rate for random customers until `end`; a few are cancelled.
pub(crate) async fn book_jobs(
    cluster: Arc<DemoCluster>,
    counters: Arc<Counters>,
    mut rng: Rng,
    (customers, per_s): (u64, u64),
    end: Instant,
) {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_s.max(1)));
    let mut n = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        n += 1;
        let customer = rng.below(customers) + 1;
        let (lat, lon) = rng.spot();
        let booking = Request::RequestJob {
            customer,
            key: format!("demo-{n}"),
            skill: rng.skill().to_owned(),
            lat,
            lon,
            price: PRICE_MIN + rng.below(PRICE_SPAN) as i64,
        };
        let cancel = rng.below(CANCEL_ONE_IN) == 0;
        let cluster = cluster.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            book_one(&cluster, &counters, customer, booking, cancel).await;
        });
    }
}

/// Books one job through node a, and cancels it if asked; a failure while the
/// node owning the spot was down, or went down, counts as failed while down.
async fn book_one(
    cluster: &DemoCluster,
    counters: &Counters,
    customer: u64,
    booking: Request,
    cancel: bool,
) {
    let principal = Principal {
        role: Role::Customer,
        sub: customer,
    };
    let source = demo_address(customer);
    let (request_id, owner) = match &booking {
        Request::RequestJob { key, lat, lon, .. } => (key.clone(), cluster.owner_of((*lat, *lon))),
        _ => ("demo-booking".to_owned(), ENTRY_NODE),
    };
    let before = cluster.state(owner);
    let owner_was_down = || !before.up || cluster.state(owner) != before;
    let answer = cluster
        .send_once(ENTRY_NODE, &principal, source, booking, &request_id)
        .await;
    match answer {
        Ok(Response::Job(job)) => {
            bump(&counters.jobs_requested);
            if cancel && !job.status.is_terminal() {
                tokio::time::sleep(CANCEL_AFTER).await;
                let cancel = Request::CancelJob {
                    customer,
                    job: job.id.0,
                };
                let request_id = format!("{request_id}-cancel");
                match cluster
                    .send_once(ENTRY_NODE, &principal, source, cancel, &request_id)
                    .await
                {
                    Ok(_) => bump(&counters.cancelled),
                    Err(_) if owner_was_down() => bump(&counters.while_down),
                    Err(_) => {}
                }
            }
        }
        Ok(_) => bump(&counters.errors),
        Err(CallError::NodeDown) => bump(&counters.while_down),
        Err(_) if owner_was_down() => bump(&counters.while_down),
        Err(error) if error.retry_after_ms().is_some() => bump(&counters.booking_refused),
        Err(CallError::Api(error)) if error.kind() == "outside_service_area" => {
            bump(&counters.outside_area)
        }
        Err(_) => bump(&counters.errors),
    }
}
