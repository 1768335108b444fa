//! `fixit demo`: three nodes (a, b, c) of one cluster on loopback in this process,
//! each owning part of a simulated city (central Berlin), and the city driving
//! them through their APIs — providers going online at the node that owns their
//! spot and moving about, customers booking and sometimes cancelling through node
//! a (forwarded to the owner) — with a live summary and a JSON report whose
//! invariants are checked against every node's storage at the end. Node a's
//! dashboard is at http://127.0.0.1:8080/ by default. With `--kill-node-at-s`
//! one node is stopped midway and started again, to watch the wallet shards
//! fail over.

mod city;
mod cluster;
mod customers;
mod failover;
mod provider;
mod report;

use anyhow::Context;
use city::Rng;
use cluster::DemoCluster;
use failover::KillPlan;
use fixit_actors::ids::ProviderId;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SUMMARY_EVERY: Duration = Duration::from_secs(2);

/// Longest wait for the simulation's last tasks to let go of the cluster.
const RELEASE_WAIT_MAX: Duration = Duration::from_secs(5);

/// First simulated provider id (customers are 1..=customers; the platform is 0).
const FIRST_PROVIDER: u64 = 1_000_000;

/// Options of `fixit demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Stop by itself after this many seconds of simulation.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Write a JSON report here at the end.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Providers in the city.
    #[arg(long, default_value_t = 300)]
    providers: u64,
    /// Customers in the city.
    #[arg(long, default_value_t = 200)]
    customers: u64,
    /// Bookings per second across the city.
    #[arg(long, default_value_t = 10)]
    bookings_per_s: u64,
    /// Replicas of each wallet bucket (1: each wallet on one node; 3: every
    /// wallet on all three nodes, kept by Raft).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=3))]
    replication_factor: u32,
    /// Seed of the simulation's randomness.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where node a's HTTP bridge and dashboard listen (b and c: port 0; a node
    /// stopped by `--kill-node-at-s`: a fixed free port, kept across its restart).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// Where node a's QUIC client listener listens (b and c: as for HTTP).
    #[arg(long, default_value = "127.0.0.1:4433")]
    quic_listen: SocketAddr,
    /// The nodes' logs go to this file, so the terminal shows only the demo's
    /// progress and verdict (default: fixit-demo.log in the system's temp dir).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Stop one node (`--kill-node`) this many seconds into the simulation and
    /// start it again from its data dir `--down-s` later, to watch its wallet
    /// shards fail over and its providers come back. The stop is in-process and
    /// abrupt (listeners, links and actors stop without finishing in-flight
    /// requests), not a crash: a real `kill -9` of a node process is `fixit
    /// chaos --scenario node-loss` and tests/replication.rs.
    #[arg(long)]
    kill_node_at_s: Option<u64>,
    /// The node `--kill-node-at-s` stops: b or c (a serves the dashboard).
    #[arg(long, default_value = "b", requires = "kill_node_at_s")]
    kill_node: String,
    /// How long the stopped node stays down, in seconds; it must be back 10 s
    /// before the end.
    #[arg(long, default_value_t = 5, requires = "kill_node_at_s")]
    down_s: u64,
}

impl DemoArgs {
    /// Where the nodes' logs go.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.log_file
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("fixit-demo.log"))
    }
}

/// What the simulated clients saw.
#[derive(Default)]
pub(crate) struct Counters {
    jobs_requested: AtomicU64,
    booking_refused: AtomicU64,
    /// Bookings refused because the spot is outside the service area.
    outside_area: AtomicU64,
    offers_received: AtomicU64,
    accepted: AtomicU64,
    declined: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    location_updates: AtomicU64,
    provider_moves: AtomicU64,
    errors: AtomicU64,
    /// Calls that failed because their node was down (`--kill-node-at-s`):
    /// neither errors nor refusals of a node that was up.
    while_down: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Runs the demo city until the duration is over; fails if an invariant does not hold.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let plan = KillPlan::from_args(&args, &node_names())?;
    let dir = tempfile::tempdir().context("making a temporary data dir")?;
    let cluster = Arc::new(DemoCluster::start(dir.path(), &args).await?);
    print_banner(&cluster, &args, dir.path(), plan);
    cluster.wait_linked().await?;
    customers::fund(&cluster, args.customers).await?;
    let counters = Arc::new(Counters::default());
    let end = Instant::now() + Duration::from_secs(args.duration_s);
    let mut tasks = Vec::new();
    for n in 0..args.providers {
        let provider = provider::Provider {
            id: ProviderId(FIRST_PROVIDER + n),
            cluster: cluster.clone(),
            counters: counters.clone(),
            rng: Rng::for_user(args.seed, n),
        };
        tasks.push(tokio::spawn(provider.run(end)));
    }
    tasks.push(tokio::spawn(customers::book_jobs(
        cluster.clone(),
        counters.clone(),
        Rng::new(args.seed),
        (args.customers, args.bookings_per_s),
        end,
    )));
    let started = Instant::now();
    let outage = plan.map(|plan| tokio::spawn(failover::run(cluster.clone(), plan, started)));
    while Instant::now() < end {
        tokio::time::sleep(SUMMARY_EVERY.min(end.saturating_duration_since(Instant::now()))).await;
        print_summary(&cluster, &counters, started.elapsed(), plan.is_some());
    }
    for task in tasks {
        task.await.context("a simulation task failed")?;
    }
    let failover = match outage {
        Some(task) => Some(task.await.context("the outage task failed")??),
        None => None,
    };
    let settled = report::settle(&cluster).await;
    print_summary(&cluster, &counters, started.elapsed(), plan.is_some());
    let report = report::build(&cluster, &counters, &args, settled, failover).await?;
    println!("{}", report.borders_line());
    println!("{}", serde_json::to_string_pretty(&report.invariants)?);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    cluster::sole_owner(cluster, RELEASE_WAIT_MAX)
        .await
        .context("simulation tasks still hold the cluster")?
        .shutdown()
        .await?;
    anyhow::ensure!(
        report.invariants.values().all(|held| *held),
        "an invariant failed: {:?}",
        report.invariants
    );
    Ok(())
}

/// The demo's node names, in node order (as `local_cluster` orders them).
fn node_names() -> Vec<String> {
    let mut names: Vec<String> = city::regions().into_values().collect();
    names.sort();
    names.dedup();
    names
}

/// A progress line's time stamp.
pub(crate) fn stamp(elapsed: Duration) -> String {
    format!("[{:>4} s]", elapsed.as_secs())
}

fn print_banner(
    cluster: &DemoCluster,
    args: &DemoArgs,
    dir: &std::path::Path,
    plan: Option<KillPlan>,
) {
    let nodes = cluster.live();
    if let Some((_, a)) = nodes.first() {
        println!(
            "fixit demo: dashboard at http://{}/ (also /cluster, /health, /metrics, /openapi.json), QUIC on {}",
            a.http_addr(),
            a.quic_addr()
        );
    }
    println!(
        "three nodes on loopback, data in {}, logs in {}, {} providers, {} customers, {} bookings/s, {} s",
        dir.display(),
        args.log_file().display(),
        args.providers,
        args.customers,
        args.bookings_per_s,
        args.duration_s
    );
    for (index, node) in &nodes {
        let name = cluster.name(*index);
        let cells: Vec<&str> = fixit_edge::city::THREE_NODE_REGIONS
            .iter()
            .filter(|(_, owner)| *owner == name)
            .map(|(prefix, _)| *prefix)
            .collect();
        println!(
            "  node {name}: HTTP {}  QUIC {}  link {}  regions {}",
            node.http_addr(),
            node.quic_addr(),
            node.cluster_addr()
                .map_or_else(|| "-".to_owned(), |addr| addr.to_string()),
            cells.join(" ")
        );
    }
    if let Some(plan) = plan {
        println!(
            "  node {} will be stopped at {} s (in-process, abruptly) and started again {} s later",
            cluster.name(plan.node),
            plan.at.as_secs(),
            plan.down.as_secs()
        );
    }
}

fn print_summary(cluster: &DemoCluster, counters: &Counters, elapsed: Duration, outage: bool) {
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let nodes = cluster.live();
    let live: usize = nodes
        .iter()
        .map(|(_, node)| node.node().live().total())
        .sum();
    let (forwarded, transfers) = (0..cluster.len()).map(|index| cluster.traffic(index)).fold(
        (0, 0),
        |(forwarded, transfers), view| {
            (
                forwarded + view.forwarded_out,
                transfers + view.transfers_delivered,
            )
        },
    );
    let down = if outage {
        let names: Vec<&str> = (0..cluster.len())
            .filter(|index| !cluster.state(*index).up)
            .map(|index| cluster.name(index))
            .collect();
        format!(
            "  failed while down {:>4}{}",
            get(&counters.while_down),
            if names.is_empty() {
                String::new()
            } else {
                format!(" (node {} down)", names.join(", "))
            }
        )
    } else {
        String::new()
    };
    println!(
        "{} booked {:>5}  outside area {:>3}  offers {:>5}  accepted {:>5}  completed {:>5}  cancelled {:>4}  refused {:>3}  errors {:>3}  live actors {:>5}  forwarded {:>6}  cross-node payments {:>5}  moves {:>4}{down}",
        stamp(elapsed),
        get(&counters.jobs_requested),
        get(&counters.outside_area),
        get(&counters.offers_received),
        get(&counters.accepted),
        get(&counters.completed),
        get(&counters.cancelled),
        get(&counters.booking_refused),
        get(&counters.errors),
        live,
        forwarded,
        transfers,
        get(&counters.provider_moves),
    );
}
