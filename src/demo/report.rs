//! The end of a demo run: waiting for the cluster to go quiet (open jobs ended,
//! outboxes drained, bounded), then the JSON report and its invariants, checked
//! against every node's storage: each node's audit, cluster-wide conservation,
//! and the exact payments of every completed job, wherever its wallets live.

use super::cluster::DemoCluster;
use super::failover::Failover;
use super::{Counters, DemoArgs};
use anyhow::Context;
use fixit_actors::ids::WalletId;
use fixit_actors::job::{Job, JobStatus};
use fixit_actors::ledger::{fee_for, EntryKind, LedgerEntry};
use fixit_actors::store::Audit;
use fixit_cluster::TrafficView;
use fixit_edge::server::RunningNode;
use serde::Serialize;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pause after the simulation ends before the cluster is watched for quiet.
const SETTLE: Duration = Duration::from_secs(2);

/// Longest wait, after [`SETTLE`], for open jobs to end and outboxes to drain.
const QUIET_WAIT_MAX: Duration = Duration::from_secs(20);

/// Pause between two looks at the cluster while waiting for quiet.
const QUIET_POLL: Duration = Duration::from_millis(100);

/// Ledger entries read per page, and most pages read of one wallet.
const LEDGER_PAGE: usize = 1_000;
const LEDGER_PAGES_MAX: u64 = 10_000;

/// The JSON report of a run.
#[derive(Serialize)]
pub(crate) struct Report {
    duration_s: u64,
    seed: u64,
    providers: u64,
    customers: u64,
    jobs_requested: u64,
    jobs_completed: u64,
    jobs_expired: u64,
    jobs_cancelled: u64,
    jobs_by_status: BTreeMap<&'static str, u64>,
    offers_received: u64,
    offers_declined: u64,
    location_updates: u64,
    /// Providers that went online at another node after crossing a region edge.
    provider_moves: u64,
    /// Completed jobs whose capture, payment and fee are each exact and applied once.
    payments_ok: u64,
    /// Outbox transfers delivered between nodes (Σ `transfers_delivered`).
    cross_node_payments: u64,
    /// Offers made to a provider held by another node than the job's.
    offers_across_regions: u64,
    /// Bookings refused because no service area holds them.
    bookings_outside_service_area: u64,
    /// Customers' job events sent to the node they booked through.
    pushes_forwarded: u64,
    /// Providers entering or leaving a zone.
    zone_events: u64,
    errors: u64,
    actor_restarts: BTreeMap<&'static str, u64>,
    /// Time the cluster took to go quiet after the run, in ms.
    settle_ms: u64,
    /// The node stopped and started again mid-run (`--kill-node-at-s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    failover: Option<Failover>,
    nodes: Vec<NodeReport>,
    pub(crate) invariants: BTreeMap<String, bool>,
}

impl Report {
    /// One line on geofences and dispatch across region edges.
    pub(crate) fn borders_line(&self) -> String {
        format!(
            "geofences: {} bookings refused outside the service area, {} offers across region edges, {} job events forwarded to the customer's node, {} zone entries and exits",
            self.bookings_outside_service_area,
            self.offers_across_regions,
            self.pushes_forwarded,
            self.zone_events
        )
    }
}

/// One node's part.
#[derive(Serialize)]
struct NodeReport {
    name: String,
    jobs_by_status: BTreeMap<&'static str, u64>,
    traffic: TrafficView,
    outbox_transfers: u64,
    outbox_amount: i64,
}

/// Waits (bounded) until no job is open and every outbox is empty; returns how long.
pub(crate) async fn settle(cluster: &DemoCluster) -> Duration {
    tokio::time::sleep(SETTLE).await;
    let started = Instant::now();
    while started.elapsed() < QUIET_WAIT_MAX && !is_quiet(cluster) {
        tokio::time::sleep(QUIET_POLL).await;
    }
    SETTLE + started.elapsed()
}

fn is_quiet(cluster: &DemoCluster) -> bool {
    cluster.live().iter().all(|(_, running)| {
        let node = running.node();
        let drained = node.outbox_backlog().is_ok_and(|(count, _)| count == 0);
        let ended = node.jobs_by_status().is_ok_and(|by_status| {
            by_status
                .keys()
                .all(|status| ["completed", "cancelled", "expired"].contains(status))
        });
        drained && ended
    })
}

/// Reads every node and checks the invariants.
pub(crate) async fn build(
    cluster: &DemoCluster,
    counters: &Counters,
    args: &DemoArgs,
    settled: Duration,
    failover: Option<Failover>,
) -> anyhow::Result<Report> {
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let running_nodes = cluster.all_up()?;
    let mut audits = Vec::new();
    let mut nodes = Vec::new();
    let mut jobs_by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut actor_restarts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (index, running) in running_nodes.iter().enumerate() {
        let node = running.node();
        let name = cluster.name(index).to_owned();
        let audit = node
            .audit()
            .with_context(|| format!("auditing node {name}"))?;
        let by_status = node.jobs_by_status()?;
        for (status, count) in &by_status {
            *jobs_by_status.entry(status).or_default() += count;
        }
        for (kind, count) in node.stats().restarts() {
            *actor_restarts.entry(kind).or_default() += count;
        }
        nodes.push(NodeReport {
            name,
            jobs_by_status: by_status,
            traffic: cluster.traffic(index),
            outbox_transfers: audit.outbox_transfers,
            outbox_amount: i64::try_from(audit.outbox_amount).unwrap_or(i64::MAX),
        });
        audits.push(audit);
    }
    let payments = check_payments(cluster, &running_nodes).await?;
    let count = |name: &str| jobs_by_status.get(name).copied().unwrap_or(0);
    let cross_node_payments = nodes
        .iter()
        .map(|node| node.traffic.transfers_delivered)
        .sum();
    let mut invariants = ledger_invariants(&nodes, &audits);
    invariants.insert(
        "every_completed_job_paid_once".into(),
        payments.captured_once == payments.completed,
    );
    invariants.insert(
        "payments_exact_per_completed_job".into(),
        payments.exact == payments.completed,
    );
    invariants.insert("jobs_completed".into(), count("completed") > 0);
    invariants.insert(
        "offers_inside_work_areas".into(),
        offers_inside_work_areas(&running_nodes)?,
    );
    let stat = |read: fn(&fixit_actors::context::NodeStats) -> &AtomicU64| -> u64 {
        running_nodes
            .iter()
            .map(|running| get(read(running.node().stats())))
            .sum()
    };
    invariants.insert("cross_node_payments_made".into(), cross_node_payments > 0);
    Ok(Report {
        duration_s: args.duration_s,
        seed: args.seed,
        providers: args.providers,
        customers: args.customers,
        jobs_requested: get(&counters.jobs_requested),
        jobs_completed: count("completed"),
        jobs_expired: count("expired"),
        jobs_cancelled: count("cancelled"),
        jobs_by_status,
        offers_received: get(&counters.offers_received),
        offers_declined: get(&counters.declined),
        location_updates: get(&counters.location_updates),
        provider_moves: get(&counters.provider_moves),
        payments_ok: payments.exact,
        cross_node_payments,
        offers_across_regions: stat(|stats| &stats.offers_across_regions),
        bookings_outside_service_area: stat(|stats| &stats.bookings_outside_service_area),
        pushes_forwarded: stat(|stats| &stats.pushes_forwarded),
        zone_events: stat(|stats| &stats.zone_events),
        errors: get(&counters.errors),
        actor_restarts,
        settle_ms: settled.as_millis() as u64,
        failover: failover.map(|mut failover| {
            failover.calls_failed_while_down = get(&counters.while_down);
            failover
        }),
        nodes,
        invariants,
    })
}

/// Whether every provider offered a job (tried or holding it) whose work area is
/// set had the job inside it, on every node.
fn offers_inside_work_areas(running_nodes: &[Arc<RunningNode>]) -> anyhow::Result<bool> {
    for running in running_nodes {
        let node = running.node();
        for job in node.recent_jobs(usize::MAX)? {
            let offered = job.tried.iter().copied().chain(job.status.provider());
            for provider in offered {
                let area = node.work_area(provider);
                let inside = fixit_actors::areas::WorkShape::new(&area)
                    .is_none_or(|shape| shape.contains(job.request.location));
                if !inside {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

/// What the ledgers alone show: per node (its audit) and across the cluster.
fn ledger_invariants(nodes: &[NodeReport], audits: &[Audit]) -> BTreeMap<String, bool> {
    let mut invariants = BTreeMap::new();
    for (node, audit) in nodes.iter().zip(audits) {
        invariants.insert(format!("audit_holds_{}", node.name), audit.holds());
    }
    let sum = |part: fn(&Audit) -> i128| audits.iter().map(part).sum::<i128>();
    let balances = sum(|audit| audit.total_balance);
    let in_outboxes = sum(|audit| audit.outbox_amount);
    let deposited = sum(|audit| i128::from(audit.flows.deposited));
    let withdrawn = sum(|audit| i128::from(audit.flows.withdrawn));
    let sent = sum(|audit| i128::from(audit.flows.sent));
    let received = sum(|audit| i128::from(audit.flows.received));
    invariants.insert("conservation".into(), audits.iter().all(Audit::conserved));
    invariants.insert(
        "cluster_conservation".into(),
        balances + in_outboxes == deposited - withdrawn,
    );
    invariants.insert("transfers_sent_equal_received".into(), sent == received);
    invariants.insert(
        "outboxes_empty_after_settling".into(),
        audits.iter().all(|audit| audit.outbox_transfers == 0),
    );
    invariants.insert(
        "no_negative_balance".into(),
        audits.iter().all(|audit| audit.negative_wallets.is_empty()),
    );
    invariants.insert(
        "ledger_entries_add_up".into(),
        audits
            .iter()
            .all(|audit| audit.ledger_mismatches.is_empty()),
    );
    invariants
}

/// Completed jobs, and how many of them were captured once and paid exactly.
#[derive(Debug, Default)]
struct Payments {
    completed: u64,
    captured_once: u64,
    exact: u64,
}

/// For every completed job on every node: the customer's wallet (at its home)
/// holds exactly one capture of the price; the provider's wallet holds exactly one
/// payment of price − fee and the platform's exactly one fee, each either under
/// the capture's key (same home as the customer) or under the outbox transfer's id
/// `xfer-<customer>-<capture seq>-<p|f>` (another home).
async fn check_payments(
    cluster: &DemoCluster,
    running_nodes: &[Arc<RunningNode>],
) -> anyhow::Result<Payments> {
    let mut ledgers = Ledgers::default();
    let mut payments = Payments::default();
    for running in running_nodes {
        let node = running.node();
        let fee_bps = node.context().config.fees.platform_fee_bps;
        let jobs_stored: u64 = node.jobs_by_status()?.values().sum();
        for job in node.recent_jobs(jobs_stored as usize)? {
            let JobStatus::Completed { provider } = job.status else {
                continue;
            };
            payments.completed += 1;
            let customer = WalletId::from(job.customer);
            let ledger = ledgers.of(cluster, customer).await?;
            let Some(capture) = only_entry(ledger, &job.capture_key()) else {
                continue;
            };
            let capture = capture.clone();
            payments.captured_once += 1;
            let captured = capture.kind == EntryKind::Capture
                && capture.held_delta == -job.request.price
                && capture.available_delta == 0
                && job.fee == fee_for(job.request.price, fee_bps);
            let paid = received(
                cluster,
                &mut ledgers,
                &job,
                &capture,
                (provider.into(), EntryKind::Payment),
            )
            .await?;
            let fee_paid = job.fee == 0
                || received(
                    cluster,
                    &mut ledgers,
                    &job,
                    &capture,
                    (WalletId::PLATFORM, EntryKind::Fee),
                )
                .await?;
            if captured && paid && fee_paid {
                payments.exact += 1;
            }
        }
    }
    Ok(payments)
}

/// Whether `wallet` received its part of `job`'s capture exactly once.
async fn received(
    cluster: &DemoCluster,
    ledgers: &mut Ledgers,
    job: &Job,
    capture: &LedgerEntry,
    (wallet, kind): (WalletId, EntryKind),
) -> anyhow::Result<bool> {
    let customer = WalletId::from(job.customer);
    let (amount, suffix) = match kind {
        EntryKind::Fee => (job.fee, "f"),
        _ => (job.request.price - job.fee, "p"),
    };
    let router = cluster.placement();
    let key = if router.wallet_place(wallet) == router.wallet_place(customer) {
        job.capture_key()
    } else {
        format!("xfer-{}-{}-{suffix}", customer.0, capture.seq)
    };
    let ledger = ledgers.of(cluster, wallet).await?;
    Ok(only_entry(ledger, &key).is_some_and(|entry| {
        entry.kind == kind && entry.available_delta == amount && entry.held_delta == 0
    }))
}

/// The entry made under `key`, when there is exactly one.
fn only_entry<'a>(ledger: &'a [LedgerEntry], key: &str) -> Option<&'a LedgerEntry> {
    let mut made = ledger.iter().filter(|entry| entry.key == key);
    let first = made.next()?;
    made.next().is_none().then_some(first)
}

/// Whole ledgers read from each wallet's home node, each once.
#[derive(Default)]
struct Ledgers(HashMap<WalletId, Vec<LedgerEntry>>);

impl Ledgers {
    async fn of(
        &mut self,
        cluster: &DemoCluster,
        wallet: WalletId,
    ) -> anyhow::Result<&[LedgerEntry]> {
        let ledger = match self.0.entry(wallet) {
            Entry::Occupied(read) => read.into_mut(),
            Entry::Vacant(unread) => unread.insert(read_ledger(cluster, wallet).await?),
        };
        Ok(ledger)
    }
}

async fn read_ledger(cluster: &DemoCluster, wallet: WalletId) -> anyhow::Result<Vec<LedgerEntry>> {
    let home = cluster
        .node(cluster.home_of(wallet))
        .with_context(|| format!("the home of {wallet} is down"))?;
    let home = home.node();
    let mut ledger = Vec::new();
    for _ in 0..LEDGER_PAGES_MAX {
        let page = home
            .history(wallet, ledger.len() as u64, LEDGER_PAGE)
            .await
            .with_context(|| format!("reading the ledger of {wallet}"))?;
        let last_page = page.len() < LEDGER_PAGE;
        ledger.extend(page);
        if last_page {
            return Ok(ledger);
        }
    }
    anyhow::bail!("the ledger of {wallet} is longer than the demo reads")
}
