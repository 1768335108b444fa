//! `fixit load`: simulated customers and providers against a node or a cluster over
//! QUIC or (`--http`) the HTTP bridge, with latencies per operation in HDR
//! histograms, a JSON report and a summary.
//!
//! A run has phases, each bounded in time: setup (connect providers — subscribe, go
//! online at the node owning their spot — then customers, each holding a connection
//! and its push stream, and fund every customer's wallet as an admin; connections
//! open [`CONNECT_CONCURRENCY`] at a time), warm-up (load, not measured), the
//! measured window (`--duration-s`), and the drain (no new bookings; providers
//! finish their jobs; at most [`DRAIN_MAX`] plus three think times). Then checks:
//! every job the generator saw completed is stored as completed by that provider,
//! no job was accepted by two providers, each node's peak RSS from `/metrics`, and
//! for `--spawn-node` the node is stopped (SIGTERM) and its stored ledger audited.
//!
//! Against a running node or cluster, the node's rate limits apply: refusals are
//! counted as `busy` / `rate_limited`, apart from errors. `--source-addresses N`
//! spreads the generator over 127.0.0.1..N (the per-address limit is per address).
//! A spawned node gets limits sized for the run (see `target::spawned_config`):
//! `connections_max` = users + 1,000, in-flight bounds twice that, rate limits
//! of 1,000,000/s per address and 100,000/s per principal, a 64 MiB sled cache and
//! a 30 s entity idle time (memory: see docs/PERFORMANCE.md).
//!
//! Against the three-node cluster of `config/cluster-3` (paths in those files are
//! relative: run everything from the same directory):
//!
//! ```sh
//! fixit certs init --out data/cluster-3/certs
//! fixit certs node --name a --dir data/cluster-3/certs   # and b, c
//! fixit node --config config/cluster-3/a.toml &          # and b, c
//! fixit load --cluster config/cluster-3 --source-addresses 8 --report cluster.json
//! ```
//!
//! Providers connect to the node owning their spot (`[cluster.regions]`) and stay in
//! its region; customers and admins are spread over the nodes (bookings and wallet
//! calls are forwarded). request→offer and request→accepted are timed from the
//! booking to the offer's arrival at the provider and the accept's answer.

mod checks;
pub mod city;
mod client;
mod connect;
mod customer;
mod jobs;
pub mod local_cluster;
mod progress;
mod provider;
mod report;
mod sim;
pub mod spawn;
mod stats;
mod target;
mod toml_text;

use crate::city::Rng;
use anyhow::Context;
use customer::{Arrival, Customer};
use futures::StreamExt;
use progress::Progress;
use provider::OnlineProvider;
use report::{Outcome, PeakRss, Phases, Report, Settings, Users};
use sim::{Sim, Timeline};
use stats::{Op, Stats};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use target::{Mode, Target};
use tokio::sync::watch;

/// Connections (with their subscribe and first calls) set up at once.
pub const CONNECT_CONCURRENCY: usize = 64;

/// Longest setup (connections, deposits) before the run is abandoned.
pub const SETUP_MAX: Duration = Duration::from_secs(900);

/// Longest drain after the load ends, beyond three think times.
pub const DRAIN_MAX: Duration = Duration::from_secs(30);

/// The drain ends early once nothing happened for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Pause between two looks at the drain and refreshes of the progress bar.
const POLL: Duration = Duration::from_millis(250);

/// Longest wait for providers to go offline and close after the drain.
const PROVIDERS_STOP_MAX: Duration = Duration::from_secs(30);

/// Bounds of the arguments.
const USERS_MAX: u64 = 900_000;
const DURATION_S_MAX: u64 = 24 * 3600;
const RATE_PER_S_MAX: f64 = 1_000_000.0;
const THINK_MS_MAX: u64 = 60_000;

/// Options of `fixit load`.
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// Customers: each holds a session (a QUIC connection, or over `--http` its
    /// push WebSocket) for the whole run.
    #[arg(long, default_value_t = 500)]
    pub customers: u64,
    /// Providers: online, a location about every second, taking offers.
    #[arg(long, default_value_t = 100)]
    pub providers: u64,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 30)]
    pub duration_s: u64,
    /// Load before the measured window, in seconds (not measured).
    #[arg(long, default_value_t = 5)]
    pub warmup_s: u64,
    /// Seed of the simulation's randomness.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Use the HTTP bridge instead of QUIC: JSON calls over a shared keep-alive
    /// pool, each user's pushes over its own WebSocket.
    #[arg(long)]
    pub http: bool,
    /// Start a `fixit node` child on a temporary dir, sized for the run.
    #[arg(long)]
    pub spawn_node: bool,
    /// Load a running node with this config.
    #[arg(long, conflicts_with = "spawn_node")]
    pub config: Option<PathBuf>,
    /// Load a running cluster: every `*.toml` in this directory is a node.
    #[arg(long, conflicts_with_all = ["spawn_node", "config"])]
    pub cluster: Option<PathBuf>,
    /// Bookings per second over all customers (Poisson arrivals).
    #[arg(long, default_value_t = 200.0)]
    pub bookings_per_s: f64,
    /// Balance calls per second over all customers (Poisson arrivals).
    #[arg(long, default_value_t = 50.0)]
    pub balances_per_s: f64,
    /// A provider's mean pause before starting and before completing a job, in ms.
    #[arg(long, default_value_t = 500)]
    pub think_ms: u64,
    /// Loopback source addresses to spread the connections over (127.0.0.1..N).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_addresses: u8,
    /// No progress bar and no phase lines (the summary is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Service areas put before the run (admin commands): a grid of this many
    /// areas of 32 positions each tiling the city, so every booking is checked
    /// against them and still served (0: none, the node's own areas only).
    #[arg(long, default_value_t = 0)]
    pub areas: u32,
}

impl LoadArgs {
    fn validate(&self) -> anyhow::Result<()> {
        let rate_ok = |rate: f64| (0.0..=RATE_PER_S_MAX).contains(&rate);
        anyhow::ensure!(
            (1..=USERS_MAX).contains(&self.customers),
            "--customers must be 1 to {USERS_MAX}"
        );
        anyhow::ensure!(
            (1..=USERS_MAX).contains(&self.providers),
            "--providers must be 1 to {USERS_MAX}"
        );
        anyhow::ensure!(
            (1..=DURATION_S_MAX).contains(&self.duration_s) && self.warmup_s <= DURATION_S_MAX,
            "--duration-s must be 1 to {DURATION_S_MAX}, --warmup-s at most that"
        );
        anyhow::ensure!(
            rate_ok(self.bookings_per_s) && rate_ok(self.balances_per_s),
            "rates must be 0 to {RATE_PER_S_MAX} per second"
        );
        anyhow::ensure!(
            self.think_ms <= THINK_MS_MAX,
            "--think-ms must be at most {THINK_MS_MAX}"
        );
        anyhow::ensure!(
            self.areas as usize <= fixit_protocol::area::AREAS_MAX,
            "--areas must be at most {}",
            fixit_protocol::area::AREAS_MAX
        );
        Ok(())
    }

    fn drain_max(&self) -> Duration {
        DRAIN_MAX + Duration::from_millis(3 * self.think_ms)
    }
}

/// Runs the load and writes the report; fails on errors other than busy and
/// rate-limited, or on a broken invariant. Ctrl-C ends it (a spawned node is
/// stopped either way).
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    args.validate()?;
    tokio::select! {
        result = run_checked(&args) => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}

/// The simulated users once set up.
struct Population {
    providers: Vec<OnlineProvider>,
    customers: Vec<Arc<Customer>>,
    admins: Vec<client::UserClient>,
    funded: u64,
}

async fn run_checked(args: &LoadArgs) -> anyhow::Result<()> {
    let progress = Progress::new(args.quiet);
    let run_s = SETUP_MAX.as_secs() + args.warmup_s + args.duration_s + args.drain_max().as_secs();
    let mut target = Target::open(args, run_s).await?;
    let mut spawned = target.spawned.take();
    let settings = settings(args, &target, spawned.as_ref().map(|s| &s.node.config));
    progress.say(&format!(
        "fixit load: {} customers, {} providers against {} ({})",
        args.customers,
        args.providers,
        settings.nodes.join(", "),
        target
            .nodes
            .iter()
            .map(|node| match args.http {
                true => format!("http://{}", node.http),
                false => format!("quic://{}", node.quic),
            })
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let connectors = connect::Connectors::new(&target, args.source_addresses, args.http)?;
    let sim = Arc::new(Sim {
        target,
        connectors,
        stats: Stats::new(),
        jobs: jobs::Jobs::default(),
        think: Duration::from_millis(args.think_ms),
        run_id: format!("{}-{}", args.seed, fixit_auth::now_s()),
        seed: args.seed,
    });
    let setup_started = Instant::now();
    let pushes_end = setup_started + Duration::from_secs(run_s) + PROVIDERS_STOP_MAX;
    let population = tokio::time::timeout(SETUP_MAX, set_up(&sim, args, &progress, pushes_end))
        .await
        .with_context(|| format!("setup took longer than {} s", SETUP_MAX.as_secs()))??;
    let setup_s = setup_started.elapsed().as_secs_f64();
    progress.say(&format!(
        "set up in {setup_s:.1} s: {} providers online, {} customers connected, {} funded",
        population.providers.len(),
        population.customers.len(),
        population.funded
    ));
    let users = Users {
        customers: args.customers,
        providers: args.providers,
        customers_connected: population.customers.len() as u64,
        providers_online: population.providers.len() as u64,
        customers_funded: population.funded,
    };
    let (timeline, drain) = drive(
        &sim,
        args,
        &progress,
        population.providers,
        &population.customers,
    )
    .await;
    progress.finish();
    let (checked, wrong) = checks::completed_jobs(&sim, &population.admins).await;
    let nodes = sim
        .target
        .nodes
        .iter()
        .map(|node| (node.name.clone(), node.http))
        .collect();
    let peaks = checks::peak_rss(nodes).await;
    let closing = population.customers.iter().map(|customer| customer.close());
    futures::future::join_all(closing).await;
    futures::future::join_all(population.admins.into_iter().map(|admin| admin.close())).await;
    let mut invariants = BTreeMap::new();
    invariants.insert("completed_jobs_stored_completed", wrong.is_empty());
    invariants.insert(
        "single_assignment",
        sim.jobs.double_assignments().is_empty(),
    );
    invariants.insert(
        "every_user_set_up",
        users.customers_connected == users.customers
            && users.providers_online == users.providers
            && users.customers_funded == users.customers,
    );
    if let Some(mut spawned) = spawned.take() {
        let status = spawned.node.stop().await;
        if !matches!(&status, Ok(status) if status.success()) {
            eprintln!(
                "the spawned node did not stop cleanly ({status:?}); its log: {}",
                spawned.node.log.display()
            );
        }
        invariants.insert(
            "node_stopped_cleanly",
            matches!(&status, Ok(status) if status.success()),
        );
        let config = &spawned.node.config;
        let audit = checks::audit_store(config.node.data_dir.clone(), config.storage.cache_bytes);
        invariants.insert("ledger_audit_holds", audit.await?);
    }
    if !wrong.is_empty() {
        eprintln!("jobs not stored as completed: {wrong:?}");
    }
    let node_rss_bytes_peak = match sim.target.mode {
        Mode::Cluster => PeakRss::PerNode(peaks),
        Mode::SpawnNode | Mode::Config => PeakRss::One(peaks.into_values().next().flatten()),
    };
    let mut jobs = BTreeMap::new();
    jobs.insert("booked", sim.jobs.booked.load(Ordering::Relaxed));
    jobs.insert("accepted", sim.jobs.accepted_count());
    jobs.insert("completed", sim.stats.ok_count(Op::Complete));
    jobs.insert("completed_checked", checked);
    let mut generator = BTreeMap::new();
    if let Some(peak) = own_peak_rss() {
        generator.insert("rss_bytes_peak", peak);
    }
    generator.insert(
        "stamps_dropped",
        sim.jobs.stamps_dropped.load(Ordering::Relaxed),
    );
    let window = timeline.load_end - timeline.warmup_end;
    let outcome = Outcome {
        settings,
        users,
        phases: Phases {
            setup_s,
            warmup_s: (timeline.warmup_end - timeline.start).as_secs_f64(),
            measured_s: window.as_secs_f64(),
            drain_s: drain.as_secs_f64(),
        },
        jobs,
        generator,
        node_rss_bytes_peak,
        invariants,
    };
    let report = Report::build(&sim.stats, outcome);
    println!("{}", report.summary());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    anyhow::ensure!(
        report.errors_real() == 0,
        "{} errors other than busy/rate_limited (see the report)",
        report.errors_real()
    );
    anyhow::ensure!(
        report.invariants.values().all(|held| *held),
        "an invariant failed: {:?}",
        report.invariants
    );
    Ok(())
}

/// Providers first (so no booking lacks them), then customers, then deposits.
async fn set_up(
    sim: &Arc<Sim>,
    args: &LoadArgs,
    progress: &Progress,
    pushes_end: Instant,
) -> anyhow::Result<Population> {
    let admins = customer::connect_admins(sim).await?;
    if args.areas > 0 {
        progress.phase("service areas", u64::from(args.areas));
        put_areas(&admins, args.areas as usize, progress).await?;
    }
    progress.phase("providers", args.providers);
    let providers: Vec<OnlineProvider> = futures::stream::iter(0..args.providers)
        .map(|index| {
            let sim = sim.clone();
            async move { provider::go_online(&sim, index).await }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .inspect(|_| progress.step())
        .filter_map(std::future::ready)
        .collect()
        .await;
    progress.phase("customers", args.customers);
    let customers: Vec<Arc<Customer>> = futures::stream::iter(0..args.customers)
        .map(|index| {
            let sim = sim.clone();
            async move { customer::connect(&sim, index, pushes_end).await }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .inspect(|_| progress.step())
        .filter_map(|customer| std::future::ready(customer.map(Arc::new)))
        .collect()
        .await;
    progress.phase("deposits", customers.len() as u64);
    let funded = customer::fund(sim, &admins, &customers).await;
    Ok(Population {
        providers,
        customers,
        admins,
        funded,
    })
}

/// Puts `count` service areas tiling the city (through the first admin; each is
/// put on every node of a cluster).
async fn put_areas(
    admins: &[client::UserClient],
    count: usize,
    progress: &Progress,
) -> anyhow::Result<()> {
    use fixit_sdk::Commands;
    let admin = admins
        .first()
        .ok_or_else(|| anyhow::anyhow!("no admin connected"))?;
    let areas = fixit_actors::areas::grid_areas(city::CITY, city::CITY_HALF_DEG, count, 8);
    for area in areas {
        let name = area.name.clone();
        admin
            .call(fixit_protocol::api::Request::PutServiceArea(area))
            .await
            .map_err(|error| anyhow::anyhow!("putting service area {name}: {error}"))?;
        progress.step();
    }
    Ok(())
}

/// Runs warm-up, the measured window and the drain; returns the timeline and how
/// long the drain took.
async fn drive(
    sim: &Arc<Sim>,
    args: &LoadArgs,
    progress: &Progress,
    providers: Vec<OnlineProvider>,
    customers: &[Arc<Customer>],
) -> (Timeline, Duration) {
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs(args.warmup_s);
    let load_end = warmup_end + Duration::from_secs(args.duration_s);
    let timeline = Timeline {
        start,
        warmup_end,
        load_end,
        drain_end: load_end + args.drain_max(),
    };
    let (stop, stopped) = watch::channel(false);
    let working: Vec<_> = providers
        .into_iter()
        .map(|provider| tokio::spawn(provider.run(sim.clone(), timeline, stopped.clone())))
        .collect();
    let customers = Arc::new(customers.to_vec());
    let seed = args.seed;
    let arrivals = [
        (Arrival::Booking, args.bookings_per_s, u64::MAX - 100),
        (Arrival::Balance, args.balances_per_s, u64::MAX - 101),
    ]
    .map(|(kind, per_s, stream)| {
        let rng = Rng::for_user(seed, stream);
        tokio::spawn(customer::arrivals(
            sim.clone(),
            customers.clone(),
            (kind, per_s),
            timeline,
            rng,
        ))
    });
    progress.say(&format!(
        "load: {} s warm-up, {} s measured, {} bookings/s, {} balance calls/s",
        args.warmup_s, args.duration_s, args.bookings_per_s, args.balances_per_s
    ));
    progress.phase("load", args.warmup_s + args.duration_s);
    let follow = tokio::spawn({
        let (progress, sim) = (progress.clone(), sim.clone());
        async move {
            progress
                .follow(sim, tokio::time::Instant::from_std(load_end))
                .await
        }
    });
    while Instant::now() < load_end {
        let now = Instant::now();
        sim.stats.set_measuring(now >= warmup_end);
        progress.set(start.elapsed().as_secs());
        // Wake at each boundary of the window, so it is exact to the timer.
        let boundary = if now < warmup_end {
            warmup_end
        } else {
            load_end
        };
        tokio::time::sleep(POLL.min(boundary.saturating_duration_since(now))).await;
    }
    sim.stats.set_measuring(false);
    for arrival in arrivals {
        let _ = arrival.await;
    }
    let _ = follow.await;
    progress.say("load over: draining (providers finish their jobs)");
    let drained = Instant::now();
    drain(sim, timeline.drain_end).await;
    let drain = drained.elapsed();
    let _ = stop.send(true);
    let all_stopped = futures::future::join_all(working);
    if tokio::time::timeout(PROVIDERS_STOP_MAX, all_stopped)
        .await
        .is_err()
    {
        sim.stats
            .failed(Op::ProviderOffline, "providers_did_not_stop");
    }
    (timeline, drain)
}

/// Waits until no booking is in flight, no provider is working and no offer came
/// for [`DRAIN_QUIET`], or until `drain_end`.
async fn drain(sim: &Sim, drain_end: Instant) {
    let offers = || sim.stats.offers_received.load(Ordering::Relaxed);
    let (mut seen, mut quiet_since) = (offers(), Instant::now());
    while Instant::now() < drain_end {
        tokio::time::sleep(POLL).await;
        if offers() != seen {
            (seen, quiet_since) = (offers(), Instant::now());
        }
        let idle = sim.jobs.booking_inflight.load(Ordering::SeqCst) == 0
            && sim.jobs.working.load(Ordering::SeqCst) == 0;
        if idle && quiet_since.elapsed() >= DRAIN_QUIET {
            return;
        }
    }
}

fn settings(
    args: &LoadArgs,
    target: &Target,
    spawned: Option<&fixit_actors::config::NodeConfig>,
) -> Settings {
    Settings {
        mode: target.mode,
        transport: if args.http { "http" } else { "quic" },
        nodes: target.nodes.iter().map(|node| node.name.clone()).collect(),
        seed: args.seed,
        duration_s: args.duration_s,
        warmup_s: args.warmup_s,
        bookings_per_s: args.bookings_per_s,
        balances_per_s: args.balances_per_s,
        think_ms: args.think_ms,
        source_addresses: args.source_addresses,
        areas: args.areas,
        spawned_node_limits: spawned.map(|config| {
            serde_json::json!({
                "connections_max": config.server.connections_max,
                "websockets_max": config.server.websockets_max,
                "requests_inflight_max": config.server.requests_inflight_max,
                "node_inflight_max": config.limits.node_inflight_max,
                "rate_limits": config.rate_limits,
            })
        }),
    }
}

/// This process's peak resident memory (Linux: `VmHWM` of `/proc/self/status`).
fn own_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line["VmHWM:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}
