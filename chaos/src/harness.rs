//! The chaos harness behind `fixit chaos`: runs chaos scenarios against real node processes and proves the
//! invariants afterwards; `fixit chaos check` runs the invariant checker alone
//! against stopped nodes' data dirs.
//!
//! ```sh
//! cargo build --release --features failpoints
//! target/release/fixit chaos --scenario all --duration-s 60 --report chaos.json
//! target/release/fixit chaos check --node a=DIR/a --node b=DIR/b --node c=DIR/c \
//!     --acknowledged DIR/acknowledged.json
//! ```
//!
//! Each scenario starts a fresh three-node cluster (`binary` as `fixit node`
//! children, a fault proxy on every link direction; see [`scenarios`] for the
//! phases), drives customers and providers through the SDK, injects its fault
//! (failpoints armed over the nodes' HTTP bridges, proxy loss or partition,
//! SIGKILL, restarts), heals, drains, stops every node and runs
//! [`crate::checker`] over the data dirs and the acknowledged operations.
//! The scenarios that arm failpoints need a build with the `failpoints` feature;
//! the others run on any build. The run fails (exit 1) on any broken invariant or
//! lost acknowledged operation; the report says which.
//!
//! Wallets are replicated in `--replication-factor` copies (default 3: each
//! wallet bucket a Raft group on all three nodes; 1: every wallet on its home node
//! only). With replication, each report measures the failovers of the shards a
//! fault took the leader of (the `failover` module), and every replica must have caught up
//! before the nodes stop ([`shards`]).

mod cluster;
mod driver;
mod failover;
pub mod membership;
pub mod report;
pub mod scenarios;
pub mod shards;

use crate::checker::{self, Acknowledged, NodeDir};
use anyhow::Context;
use driver::{Driver, Phase};
use report::ChaosReport;
use scenarios::{Scenario, Workload, SCENARIOS};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bounds of the arguments.
const DURATION_S_MIN: u64 = 4;
/// The chaos cluster has three nodes: a bucket has at most three replicas.
const REPLICATION_FACTOR_MAX: u32 = 3;
const DURATION_S_MAX: u64 = 3_600;
const USERS_MAX: u64 = 5_000;

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Options of `fixit chaos`.
#[derive(clap::Args, Clone, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ChaosArgs {
    /// The checker alone, on stopped nodes.
    #[command(subcommand)]
    pub command: Option<ChaosCommand>,
    /// A scenario name, or `all`: panic-storm, sled-faults, service-crash-loop,
    /// packet-loss, partition, kill-during-capture, rolling-restart, node-kills,
    /// node-loss, disk-loss, leader-partition.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Replicas of each wallet bucket on the three nodes (`[cluster]
    /// replication_factor`): 3 replicates every wallet with Raft, 1 keeps each
    /// wallet on its home node only.
    #[arg(long, default_value_t = 3)]
    pub replication_factor: u32,
    /// Length of each scenario (baseline + fault + recovery), in seconds.
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    /// Seed of the load and the fault proxies (printed; replay with it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Keep each scenario's data dirs under this dir (default: a temporary dir,
    /// removed after a passing run and kept after a failing one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Simulated customers.
    #[arg(long, default_value_t = 40)]
    pub customers: u64,
    /// Simulated providers.
    #[arg(long, default_value_t = 16)]
    pub providers: u64,
    /// Also arm this failpoint during every scenario's fault, as NAME=ACTIONS
    /// (repeatable; failpoints builds only). With
    /// `actors::store::idempotency=return(drop)` it is the deliberately broken
    /// build the checker must catch.
    #[arg(long = "also-arm", value_parser = parse_failpoint)]
    pub also_arm: Vec<(String, String)>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_failpoint(text: &str) -> Result<(String, String), String> {
    let (name, actions) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=ACTIONS"))?;
    fixit_actors::failpoints::validate(name, actions)?;
    Ok((name.to_owned(), actions.to_owned()))
}

/// `fixit chaos check`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum ChaosCommand {
    /// Check stopped nodes' data dirs (read-only) against the invariants.
    Check(CheckArgs),
}

/// Options of `fixit chaos check`.
#[derive(clap::Args, Clone, Debug)]
pub struct CheckArgs {
    /// A node as NAME=DATA_DIR (repeat for every node of the cluster).
    #[arg(long = "node", value_parser = parse_node_dir, required = true)]
    pub nodes: Vec<NodeDir>,
    /// The operations clients saw acknowledged (a chaos run's acknowledged.json).
    #[arg(long)]
    pub acknowledged: Option<PathBuf>,
    /// Write the JSON outcome here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn parse_node_dir(text: &str) -> Result<NodeDir, String> {
    let (name, dir) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=DATA_DIR"))?;
    if name.is_empty() || dir.is_empty() {
        return Err(format!("{text:?}: expected NAME=DATA_DIR"));
    }
    Ok(NodeDir {
        name: name.to_owned(),
        dir: PathBuf::from(dir),
    })
}

/// The progress line while a scenario runs.
#[derive(Clone, Copy)]
pub struct Progress {
    quiet: bool,
}

impl Progress {
    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Prints the scenario's phase and operations every few seconds until aborted.
    pub(crate) fn follow(
        &self,
        scenario: &'static str,
        driver: Arc<Driver>,
    ) -> tokio::task::JoinHandle<()> {
        let quiet = self.quiet;
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                if quiet {
                    continue;
                }
                let phase = match driver.phase() {
                    Phase::Setup => "setup",
                    Phase::Baseline => "baseline",
                    Phase::Fault => "FAULT",
                    Phase::Recovery => "recovery",
                    Phase::Drain => "drain",
                };
                eprintln!(
                    "chaos {scenario}: {phase:<8} {:>4} s  {} operations",
                    started.elapsed().as_secs(),
                    driver.operations.load(Ordering::Relaxed)
                );
            }
        })
    }
}

impl ChaosArgs {
    fn scenarios(&self) -> anyhow::Result<Vec<Scenario>> {
        let chosen = match self.scenario.as_str() {
            "all" => SCENARIOS.to_vec(),
            name => vec![Scenario::named(name).with_context(|| {
                let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {name:?}: one of {} or all",
                    names.join(", ")
                )
            })?],
        };
        let missing: Vec<&str> = chosen
            .iter()
            .filter(|scenario| scenario.needs_failpoints())
            .map(|scenario| scenario.name())
            .collect();
        anyhow::ensure!(
            cfg!(feature = "failpoints") || self.also_arm.is_empty(),
            "--also-arm needs a build with the failpoints feature"
        );
        anyhow::ensure!(
            cfg!(feature = "failpoints") || missing.is_empty(),
            "{} arm failpoints, which this build lacks: build with \
             `cargo build --release --features failpoints` (or pick packet-loss, \
             partition, kill-during-capture, rolling-restart, node-kills, node-loss, \
             disk-loss or leader-partition)",
            missing.join(", ")
        );
        Ok(chosen)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (DURATION_S_MIN..=DURATION_S_MAX).contains(&self.duration_s),
            "--duration-s must be {DURATION_S_MIN} to {DURATION_S_MAX}"
        );
        anyhow::ensure!(
            (1..=USERS_MAX).contains(&self.customers) && (1..=USERS_MAX).contains(&self.providers),
            "--customers and --providers must be 1 to {USERS_MAX}"
        );
        anyhow::ensure!(
            (1..=REPLICATION_FACTOR_MAX).contains(&self.replication_factor),
            "--replication-factor must be 1 to {REPLICATION_FACTOR_MAX} (three nodes)"
        );
        Ok(())
    }
}

/// Runs `fixit chaos` (or its `check`).
pub async fn run(args: ChaosArgs, binary: PathBuf) -> anyhow::Result<()> {
    if let Some(ChaosCommand::Check(check)) = args.command {
        return run_check(check);
    }
    args.validate()?;
    let scenarios = args.scenarios()?;
    let (root, _temporary) = match &args.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temporary = tempfile::Builder::new().prefix("fixit-chaos-").tempdir()?;
            (temporary.path().to_owned(), Some(temporary))
        }
    };
    let progress = Progress { quiet: args.quiet };
    progress.say(&format!(
        "fixit chaos: {} scenario(s), {} s each, seed {}, replication factor {}, data under {}",
        scenarios.len(),
        args.duration_s,
        args.seed,
        args.replication_factor,
        root.display()
    ));
    let workload = Workload {
        customers: args.customers,
        providers: args.providers,
        duration_s: args.duration_s,
        seed: args.seed,
        also_arm: args.also_arm.iter().cloned().collect(),
        replication_factor: args.replication_factor,
    };
    let mut reports = Vec::new();
    for scenario in scenarios {
        let dir = root.join(scenario.name());
        std::fs::create_dir_all(&dir)?;
        progress.say(&format!("chaos {}: starting", scenario.name()));
        let run = scenarios::run(&binary, &dir, scenario, &workload, &progress);
        let report = tokio::select! {
            report = run => report.with_context(|| format!("scenario {}", scenario.name()))?,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        };
        println!("{}", report.line());
        reports.push(report);
    }
    let report = ChaosReport::new(args.seed, args.duration_s, reports);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    println!(
        "seed {}: {} faults injected, {} invariant violations, {} acknowledged operations lost",
        report.seed, report.faults_injected_total, report.invariant_violations, report.acked_lost
    );
    if !report.passed {
        // Keep the evidence.
        if let Some(temporary) = _temporary {
            let kept = temporary.keep();
            eprintln!("data dirs kept in {}", kept.display());
        }
        anyhow::bail!("chaos run failed (see the report)");
    }
    Ok(())
}

fn run_check(args: CheckArgs) -> anyhow::Result<()> {
    let acknowledged: Acknowledged = match &args.acknowledged {
        Some(path) => serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| {
            format!(
                "{} is not a list of acknowledged operations",
                path.display()
            )
        })?,
        None => Acknowledged::default(),
    };
    let outcome = checker::check(&args.nodes, &acknowledged)?;
    for (name, held) in &outcome.invariants {
        println!("{:<24} {}", name, if *held { "holds" } else { "BROKEN" });
        for violation in outcome.violations.get(name).into_iter().flatten() {
            println!("    {violation}");
        }
    }
    println!(
        "{} wallets, {} ledger entries, {} acknowledged operations checked, {} lost",
        outcome.totals.wallets,
        outcome.totals.ledger_entries,
        outcome.totals.acknowledged,
        outcome.acked_lost
    );
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&outcome)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    anyhow::ensure!(outcome.holds(), "invariants broken: {:?}", outcome.failed());
    Ok(())
}
