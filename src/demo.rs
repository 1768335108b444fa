//! `fixit demo`: one node on a temporary data dir with its QUIC listener and HTTP
//! bridge (dashboard at http://127.0.0.1:8080/), and a simulated city driving it —
//! providers moving about and taking offers, customers booking and sometimes
//! cancelling — with a live summary and a JSON report whose invariants are checked
//! against storage at the end.

use anyhow::Context;
use fixit_actors::clock::SystemClock;
use fixit_actors::config::NodeConfig;
use fixit_actors::ids::{CustomerId, ProviderId, WalletId};
use fixit_actors::job::JobStatus;
use fixit_actors::services::ProviderPush;
use fixit_actors::Node;
use fixit_edge::server::RunningNode;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SKILLS: [&str; 3] = ["plumber", "electrician", "cleaner"];
/// Centre of the simulated city (Berlin) and its half-width in degrees (~5 km).
const CITY: (f64, f64) = (52.52, 13.405);
const CITY_HALF_DEG: (f64, f64) = (0.045, 0.075);
const SUMMARY_EVERY: Duration = Duration::from_secs(2);
/// Time allowed after the end for in-flight work to settle before the audit.
const SETTLE: Duration = Duration::from_secs(2);

/// Options of `fixit demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Stop by itself after this many seconds.
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
    /// Seed of the simulation's randomness.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where the HTTP bridge and dashboard listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// Where the QUIC client listener listens.
    #[arg(long, default_value = "127.0.0.1:4433")]
    quic_listen: SocketAddr,
}

/// A small seeded generator (splitmix64): the demo needs repeatable, not strong, randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn spot(&mut self) -> (f64, f64) {
        (
            CITY.0 + (self.unit() * 2.0 - 1.0) * CITY_HALF_DEG.0,
            CITY.1 + (self.unit() * 2.0 - 1.0) * CITY_HALF_DEG.1,
        )
    }
}

#[derive(Default)]
struct Counters {
    jobs_requested: AtomicU64,
    booking_refused: AtomicU64,
    offers_received: AtomicU64,
    accepted: AtomicU64,
    declined: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    location_updates: AtomicU64,
    errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Serialize)]
struct Report {
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
    payments_ok: u64,
    errors: u64,
    actor_restarts: BTreeMap<&'static str, u64>,
    invariants: BTreeMap<&'static str, bool>,
}

/// Runs the demo city until the duration is over.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("making a temporary data dir")?;
    let mut config = NodeConfig::single_node(dir.path());
    config.dispatch.offer_timeout_ms = 3_000;
    config.passivation.entity_idle_ms = 30_000;
    config.server.http_listen = args.http_listen;
    config.server.quic_listen = args.quic_listen;
    config.server.dashboard_open = true;
    let running = RunningNode::start(config, Arc::new(SystemClock))
        .await
        .context("starting the node")?;
    let node = running.node().clone();
    println!(
        "fixit demo: dashboard at http://{}/ (also /health, /metrics, /openapi.json), QUIC on {}",
        running.http_addr(),
        running.quic_addr()
    );
    println!(
        "one node, data in {}, {} providers, {} customers, {} bookings/s, {} s",
        dir.path().display(),
        args.providers,
        args.customers,
        args.bookings_per_s,
        args.duration_s
    );
    let counters = Arc::new(Counters::default());
    let end = Instant::now() + Duration::from_secs(args.duration_s);
    let mut tasks = Vec::new();
    for n in 0..args.providers {
        let provider = Provider {
            id: ProviderId(1_000_000 + n),
            node: node.clone(),
            counters: counters.clone(),
            rng: Rng(args.seed ^ (n + 1).wrapping_mul(0xA24B_AED4_963E_E407)),
        };
        tasks.push(tokio::spawn(provider.run(end)));
    }
    for n in 0..args.customers {
        node.deposit(WalletId(n + 1), "demo-seed", 5_000_000)
            .await
            .context("funding customers")?;
    }
    tasks.push(tokio::spawn(book_jobs(
        node.clone(),
        counters.clone(),
        Rng(args.seed),
        (args.customers, args.bookings_per_s),
        end,
    )));
    let started = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep(SUMMARY_EVERY.min(end.saturating_duration_since(Instant::now()))).await;
        print_summary(&node, &counters, started.elapsed());
    }
    for task in tasks {
        task.await.context("a simulation task failed")?;
    }
    tokio::time::sleep(SETTLE).await;
    let report = build_report(&node, &counters, &args)?;
    println!("{}", serde_json::to_string_pretty(&report.invariants)?);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    drop(node);
    running.shutdown().await?;
    anyhow::ensure!(
        report.invariants.values().all(|held| *held),
        "an invariant failed: {:?}",
        report.invariants
    );
    Ok(())
}

fn print_summary(node: &Node, counters: &Counters, elapsed: Duration) {
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let live = node.live();
    println!(
        "[{:>4} s] booked {:>5}  offers {:>5}  accepted {:>5}  completed {:>5}  cancelled {:>4}  refused {:>3}  errors {:>3}  live actors {:>5}",
        elapsed.as_secs(),
        get(&counters.jobs_requested),
        get(&counters.offers_received),
        get(&counters.accepted),
        get(&counters.completed),
        get(&counters.cancelled),
        get(&counters.booking_refused),
        get(&counters.errors),
        live.total()
    );
}

fn build_report(node: &Node, counters: &Counters, args: &DemoArgs) -> anyhow::Result<Report> {
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let audit = node.audit()?;
    let by_status = node.jobs_by_status()?;
    let (paid, unpaid) = node.completed_jobs_paid()?;
    let count = |name: &str| by_status.get(name).copied().unwrap_or(0);
    let mut invariants = BTreeMap::new();
    invariants.insert("conservation", audit.conserved());
    invariants.insert("no_negative_balance", audit.negative_wallets.is_empty());
    invariants.insert("ledger_entries_add_up", audit.ledger_mismatches.is_empty());
    invariants.insert("every_completed_job_paid_once", unpaid == 0);
    invariants.insert("jobs_completed", count("completed") > 0);
    Ok(Report {
        duration_s: args.duration_s,
        seed: args.seed,
        providers: args.providers,
        customers: args.customers,
        jobs_requested: get(&counters.jobs_requested),
        jobs_completed: count("completed"),
        jobs_expired: count("expired"),
        jobs_cancelled: count("cancelled"),
        jobs_by_status: by_status,
        offers_received: get(&counters.offers_received),
        offers_declined: get(&counters.declined),
        location_updates: get(&counters.location_updates),
        payments_ok: paid,
        errors: get(&counters.errors),
        actor_restarts: node.stats().restarts(),
        invariants,
    })
}

/// Books jobs at a steady rate for random customers; a few are cancelled.
async fn book_jobs(
    node: Arc<Node>,
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
        let customer = CustomerId(rng.below(customers) + 1);
        let skill = SKILLS[rng.below(SKILLS.len() as u64) as usize];
        let (lat, lon) = rng.spot();
        let price = 2_000 + rng.below(18_000) as i64;
        let cancel = rng.below(20) == 0;
        let node = node.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let key = format!("demo-{n}");
            match node
                .request_job(customer, &key, skill, lat, lon, price)
                .await
            {
                Ok(job) => {
                    bump(&counters.jobs_requested);
                    if cancel && !job.status.is_terminal() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if node.cancel(customer, job.id).await.is_ok() {
                            bump(&counters.cancelled);
                        }
                    }
                }
                Err(error) if error.is_retryable() => bump(&counters.booking_refused),
                Err(_) => bump(&counters.errors),
            }
        });
    }
}

/// One simulated provider: moves about, takes most offers, works, completes.
struct Provider {
    id: ProviderId,
    node: Arc<Node>,
    counters: Arc<Counters>,
    rng: Rng,
}

impl Provider {
    async fn run(mut self, end: Instant) {
        let skill = SKILLS[self.rng.below(SKILLS.len() as u64) as usize];
        let mut pushes = self.node.provider_pushes(self.id);
        let mut at = self.rng.spot();
        if self.node.provider_online(self.id, &[skill]).await.is_err()
            || self
                .node
                .update_location(self.id, at.0, at.1)
                .await
                .is_err()
        {
            bump(&self.counters.errors);
            return;
        }
        let mut moves = tokio::time::interval(Duration::from_secs(1));
        while Instant::now() < end {
            tokio::select! {
                _ = moves.tick() => {
                    at = (at.0 + (self.rng.unit() - 0.5) * 0.001, at.1 + (self.rng.unit() - 0.5) * 0.0015);
                    at = (at.0.clamp(CITY.0 - CITY_HALF_DEG.0, CITY.0 + CITY_HALF_DEG.0), at.1.clamp(CITY.1 - CITY_HALF_DEG.1, CITY.1 + CITY_HALF_DEG.1));
                    match self.node.update_location(self.id, at.0, at.1).await {
                        Ok(_) => bump(&self.counters.location_updates),
                        Err(error) if error.is_retryable() => {}
                        Err(_) => bump(&self.counters.errors),
                    }
                }
                push = pushes.recv() => match push {
                    Some(ProviderPush::Offer { job, .. }) => self.handle_offer(job).await,
                    Some(ProviderPush::OfferEnded { .. }) => {}
                    None => return,
                },
                _ = tokio::time::sleep(end.saturating_duration_since(Instant::now())) => return,
            }
        }
    }

    async fn handle_offer(&mut self, job: fixit_actors::ids::JobId) {
        bump(&self.counters.offers_received);
        tokio::time::sleep(Duration::from_millis(100 + self.rng.below(900))).await;
        if self.rng.below(10) == 0 {
            if self.node.decline(self.id, job).await.is_ok() {
                bump(&self.counters.declined);
            }
            return;
        }
        let Ok(accepted) = self.node.accept(self.id, job).await else {
            return; // lapsed or cancelled meanwhile
        };
        debug_assert_eq!(accepted.status, JobStatus::Accepted { provider: self.id });
        bump(&self.counters.accepted);
        tokio::time::sleep(Duration::from_millis(500 + self.rng.below(2_000))).await;
        if self.node.start_job(self.id, job).await.is_err() {
            return; // cancelled before work started
        }
        tokio::time::sleep(Duration::from_millis(500 + self.rng.below(2_000))).await;
        match self
            .node
            .complete(self.id, job, b"photo-of-fixed-sink".to_vec())
            .await
        {
            Ok(_) => bump(&self.counters.completed),
            Err(_) => bump(&self.counters.errors),
        }
    }
}
