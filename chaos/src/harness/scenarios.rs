//! The scenarios: each starts a fresh three-node cluster of real processes, drives
//! load through a baseline (a quarter of the duration), the fault (half), and a
//! recovery (the rest), drains, waits for every wallet shard's replicas to catch
//! up (when replicated), stops every node with SIGTERM, and runs the invariant
//! checker over their data dirs and the acknowledged operations.
//!
//! A fault that takes a node away (kill, stop, partition, disk loss) is told to
//! the driver with the shards that node led just before, for `failover_ms`;
//! those shards' wallets are under fault with the node (their calls wait for a
//! new leader).

use super::cluster::ChaosCluster;
use super::driver::{self, Driver, Phase, Scope, WalletMode, FIRST_PROVIDER};
use super::membership::{self, MembershipReport, Observer};
use super::report::{Injected, LeaderPartition, ScenarioReport};
use super::shards::{self, CaughtUp};
use super::Progress;
use crate::checker;
use crate::proxy::Faults;
use anyhow::Context;
use fixit_sdk::Commands;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A chaos scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Entity actors (wallet, provider, job, session) of a quarter of the entities
    /// panic on a share of their messages, on every node.
    PanicStorm,
    /// Node b's ledger transactions fail 20% of the time; its flushes fail 10% and
    /// are slow 40% of the time.
    SledFaults,
    /// The notifier and the verifier panic on half their work, on every node.
    ServiceCrashLoop,
    /// 20% of the datagrams between nodes are lost, each way.
    PacketLoss,
    /// Node c is cut off from a and b, then healed.
    Partition,
    /// Node c is killed with SIGKILL during cross-node captures, then restarted.
    KillDuringCapture,
    /// Every node in turn is stopped (SIGTERM) and started again.
    RollingRestart,
    /// A random node is killed with SIGKILL and restarted after 2–10 s, again and
    /// again (one kill per 8 s of fault); the failure detector is measured from
    /// outside (see [`super::membership`]).
    NodeKills,
    /// Each node in turn (a, b, c, a, ...) killed with SIGKILL and restarted after
    /// 2–5 s, through the fault; wallet calls move to another node.
    NodeLoss,
    /// The node leading the most shards killed, its data dir deleted, and
    /// restarted empty: its replicas must catch up from the others.
    DiskLoss,
    /// The node leading the most shards cut off from the other two (links only;
    /// its clients still reach it), then healed: it must lose its leadership
    /// without a split brain.
    LeaderPartition,
}

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: [Scenario; 11] = [
    Scenario::PanicStorm,
    Scenario::SledFaults,
    Scenario::ServiceCrashLoop,
    Scenario::PacketLoss,
    Scenario::Partition,
    Scenario::KillDuringCapture,
    Scenario::RollingRestart,
    Scenario::NodeKills,
    Scenario::NodeLoss,
    Scenario::DiskLoss,
    Scenario::LeaderPartition,
];

/// The node a single-node fault hits.
const VICTIM: &str = "c";

/// The node the sled faults hit.
const SLED_VICTIM: &str = "b";

/// One entity in this many is under fault in the panic storm.
const PANIC_MODULUS: u64 = 4;

/// Longest drain after the load: providers finish their jobs.
const DRAIN_MAX: Duration = Duration::from_secs(20);

/// About how long one kill round of node-kills takes (detection, 2–10 s down,
/// recovery): another round starts only if this much fault time is left.
const KILL_ROUND_TYPICAL: Duration = Duration::from_secs(8);

/// After a kill round, the victim stays under fault this long.
const VICTIM_SETTLE: Duration = Duration::from_secs(2);

/// Longest wait for the links to come up before the load.
const LINKS_WAIT_MAX: Duration = Duration::from_secs(30);

/// node-loss: the victim's downtime is drawn from this range, in ms.
const NODE_LOSS_DOWN_MS: (u64, u64) = (2_000, 5_000);

/// About how long one node-loss round takes (down 2–5 s, restart, rejoin):
/// another round starts only if this much fault time is left.
const NODE_LOSS_ROUND_TYPICAL: Duration = Duration::from_secs(6);

/// disk-loss: how long the victim stays down with its data dir gone.
const DISK_LOSS_DOWN: Duration = Duration::from_secs(2);

/// After a partition heals: how long the leaders the others kept are watched
/// (the healed node may stand 1.5 s after it hears from them again, and would
/// stand at once without that wait).
const AFTER_HEAL_WATCH: Duration = Duration::from_secs(4);

/// Longest wait for a restarted node to know a leader of each of its shards.
const REJOIN_MAX: Duration = Duration::from_secs(15);

/// Longest wait for a healed leader to name another node as each shard's leader.
const STEP_DOWN_MAX: Duration = Duration::from_secs(15);

/// Longest wait, after the drain, for every replica of every shard to catch up.
const CATCH_UP_MAX: Duration = Duration::from_secs(30);

/// Longest wait, after the drain, for the simulated users to finish their last
/// calls (a provider retries a step for up to 20 × 10 s on a node that stopped
/// answering).
const USERS_WAIT_MAX: Duration = Duration::from_secs(30);

impl Scenario {
    /// The name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::PanicStorm => "panic-storm",
            Scenario::SledFaults => "sled-faults",
            Scenario::ServiceCrashLoop => "service-crash-loop",
            Scenario::PacketLoss => "packet-loss",
            Scenario::Partition => "partition",
            Scenario::KillDuringCapture => "kill-during-capture",
            Scenario::RollingRestart => "rolling-restart",
            Scenario::NodeKills => "node-kills",
            Scenario::NodeLoss => "node-loss",
            Scenario::DiskLoss => "disk-loss",
            Scenario::LeaderPartition => "leader-partition",
        }
    }

    /// Whether clients' wallet calls move to another node when theirs does not
    /// serve them (with replicated wallets): the scenarios about failover.
    fn moves_wallet_calls(self) -> bool {
        matches!(
            self,
            Scenario::NodeLoss | Scenario::DiskLoss | Scenario::LeaderPartition
        )
    }

    /// The scenario called `name`.
    pub fn named(name: &str) -> Option<Scenario> {
        SCENARIOS
            .into_iter()
            .find(|scenario| scenario.name() == name)
    }

    /// Whether it arms failpoints (needs a build with the `failpoints` feature).
    pub fn needs_failpoints(self) -> bool {
        matches!(
            self,
            Scenario::PanicStorm | Scenario::SledFaults | Scenario::ServiceCrashLoop
        )
    }

    /// The failpoints it arms during the fault.
    fn failpoints(self) -> BTreeMap<String, String> {
        use fixit_actors::failpoints as fp;
        let entity = format!("30%return(panic/{PANIC_MODULUS})");
        let pairs: Vec<(&str, String)> = match self {
            Scenario::PanicStorm => vec![
                (fp::WALLET_HANDLE, entity.clone()),
                (fp::PROVIDER_HANDLE, entity.clone()),
                (fp::SESSION_HANDLE, entity),
                (fp::JOB_HANDLE, format!("10%return(panic/{PANIC_MODULUS})")),
            ],
            Scenario::SledFaults => vec![
                (fp::STORE_APPLY, format!("20%return(error@{SLED_VICTIM})")),
                (
                    fp::DURABILITY_FLUSH,
                    format!("10%return(error@{SLED_VICTIM})->40%return(delay=30@{SLED_VICTIM})"),
                ),
            ],
            Scenario::ServiceCrashLoop => vec![
                (fp::NOTIFIER_PUSH, "50%return(panic)".to_owned()),
                (fp::VERIFIER_VERIFY, "50%return(panic)".to_owned()),
            ],
            _ => Vec::new(),
        };
        pairs
            .into_iter()
            .map(|(name, actions)| (name.to_owned(), actions))
            .collect()
    }
}

/// The size and length of a run.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Customers (each about one action a second).
    pub customers: u64,
    /// Providers.
    pub providers: u64,
    /// Baseline + fault + recovery, in seconds.
    pub duration_s: u64,
    /// Seed of the load and the proxies.
    pub seed: u64,
    /// Failpoints armed during the fault on top of the scenario's own.
    pub also_arm: BTreeMap<String, String>,
    /// Replicas of each wallet bucket (1: wallets not replicated).
    pub replication_factor: u32,
}

/// What a scenario's fault did, besides the faults counted.
#[derive(Default)]
struct Outcome {
    membership: MembershipReport,
    leader_partition: Option<LeaderPartition>,
    /// Partitions: the shards whose term the cut-off node raised while it was
    /// cut off (`None`: no partition, or not replicated).
    terms_raised: Option<Vec<String>>,
    /// Partitions, replicated: the leaders the other nodes had at the heal
    /// that no longer led in the same term a while after it.
    deposed: Option<Vec<String>>,
    /// Running nodes that did not answer `/ready` after the drain.
    unanswering: Vec<String>,
}

/// Runs one scenario in `dir` (its data dirs stay there) and checks it.
pub async fn run(
    binary: &Path,
    dir: &Path,
    scenario: Scenario,
    workload: &Workload,
    progress: &Progress,
) -> anyhow::Result<ScenarioReport> {
    let mut cluster =
        ChaosCluster::start(binary, dir, workload.seed, workload.replication_factor).await?;
    let result = drive(&mut cluster, scenario, workload, progress).await;
    // Whatever happened, no node outlives the run.
    let stopped_cleanly = cluster.stop_all().await;
    let (driver, faults, outcome, caught_up) = result?;
    let injected = Injected {
        faults,
        unanswering: outcome.unanswering,
        membership: outcome.membership,
        leader_partition: outcome.leader_partition,
        terms_raised: outcome.terms_raised,
        deposed: outcome.deposed,
        caught_up,
        replication_factor: workload.replication_factor,
    };
    let stopped_cleanly = stopped_cleanly?;
    let acknowledged = driver.acknowledged();
    std::fs::write(
        dir.join("acknowledged.json"),
        serde_json::to_vec(&acknowledged)?,
    )?;
    let nodes = cluster.data_dirs();
    let checked = tokio::task::spawn_blocking(move || checker::check(&nodes, &acknowledged))
        .await
        .context("the checker")??;
    Ok(ScenarioReport::new(
        scenario,
        workload,
        dir,
        injected,
        driver.seen(),
        checked,
        stopped_cleanly,
    ))
}

/// Setup, baseline, fault, recovery and drain; returns the driver, the faults
/// injected, what the fault did, and whether the replicas caught up before the
/// stop (when replicated).
async fn drive(
    cluster: &mut ChaosCluster,
    scenario: Scenario,
    workload: &Workload,
    progress: &Progress,
) -> anyhow::Result<(
    Arc<Driver>,
    BTreeMap<String, u64>,
    Outcome,
    Option<CaughtUp>,
)> {
    let nodes = cluster
        .nodes
        .iter()
        .map(|node| {
            let cert = node.config.server.tls_cert_file.clone();
            (node.name.clone(), node.quic(), cert)
        })
        .collect();
    let driver = Driver::new(
        nodes,
        cluster.regions.clone(),
        cluster.tokens.clone(),
        workload.seed,
        WalletMode {
            buckets: cluster.replicated().then_some(cluster.wallet_buckets),
            moves: cluster.replicated() && scenario.moves_wallet_calls(),
        },
    )?;
    wait_for_links(cluster).await?;
    let duration = Duration::from_secs(workload.duration_s);
    let (baseline, fault) = (duration / 4, duration / 2);
    let start = Instant::now() + Duration::from_secs(2);
    let load_end = start + duration;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut users = Tasks(Vec::new());
    for index in 0..workload.providers {
        let task = driver::provider(
            driver.clone(),
            FIRST_PROVIDER + index,
            load_end,
            stopped.clone(),
        );
        users.0.push(tokio::spawn(task));
    }
    for id in 1..=workload.customers {
        users.0.push(tokio::spawn(driver::customer(
            driver.clone(),
            id,
            start,
            load_end,
        )));
    }
    users
        .0
        .push(progress.follow(scenario.name(), driver.clone()));
    tokio::time::sleep_until(start.into()).await;
    driver.set_phase(Phase::Baseline);
    tokio::time::sleep(baseline).await;
    driver.set_phase(Phase::Fault);
    cluster.arm(&workload.also_arm).await?;
    let outcome = inject(cluster, &driver, scenario, fault, workload.seed).await?;
    let off = workload
        .also_arm
        .keys()
        .map(|name| (name.clone(), "off".to_owned()));
    cluster.arm(&off.collect()).await?;
    driver.set_phase(Phase::Recovery);
    driver.set_scope(Scope::default());
    tokio::time::sleep_until(load_end.into()).await;
    driver.set_phase(Phase::Drain);
    let drain_end = Instant::now() + DRAIN_MAX;
    while Instant::now() < drain_end && driver.working() > 0 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = stop.send(true);
    let ticker = users.0.pop();
    // A user still waiting on a node that stopped answering is given up on.
    let users_end = Instant::now() + USERS_WAIT_MAX;
    for mut user in std::mem::take(&mut users.0) {
        if tokio::time::timeout_at(users_end.into(), &mut user)
            .await
            .is_err()
        {
            user.abort();
        }
    }
    driver.finish_probes().await;
    let mut outcome = outcome;
    outcome.unanswering = cluster.unanswering().await;
    let hung: Vec<usize> = outcome
        .unanswering
        .iter()
        .filter_map(|name| cluster.index_of(name))
        .collect();
    for index in hung {
        // Hung: it would not stop on SIGTERM either (its data is still checked).
        progress.say(&format!(
            "chaos {}: node {} does not answer; killed",
            scenario.name(),
            cluster.nodes[index].name
        ));
        cluster.kill_hung(index)?;
    }
    // With a node killed for hanging, its replicas cannot catch up: not waited for.
    let caught_up = match cluster.replicated() && outcome.unanswering.is_empty() {
        true => Some(shards::wait_caught_up(cluster, CATCH_UP_MAX).await),
        false => None,
    };
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    let mut faults = BTreeMap::new();
    for (name, count) in cluster.injected().await? {
        *faults.entry(name).or_default() += count;
    }
    faults.extend(cluster.proxy_faults());
    if cluster.kills > 0 {
        faults.insert("process_kill9".into(), cluster.kills);
    }
    if cluster.restarts > 0 {
        faults.insert("process_restart".into(), cluster.restarts);
    }
    if cluster.disks_lost > 0 {
        faults.insert("data_dir_deleted".into(), cluster.disks_lost);
    }
    driver.close().await;
    Ok((driver, faults, outcome, caught_up))
}

/// Spawned tasks, aborted when dropped: a scenario that fails half-way leaves no
/// simulated user running.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Waits until every node answers a cross-node call: a balance of a wallet homed
/// on each other node, asked at each node (`not_found` is an answer).
async fn wait_for_links(cluster: &ChaosCluster) -> anyhow::Result<()> {
    let deadline = Instant::now() + LINKS_WAIT_MAX;
    let names = cluster.names();
    for name in &names {
        let index = cluster.index_of(name).context("a node")?;
        let node = &cluster.nodes[index];
        let connector =
            fixit_sdk::Connector::new(&node.config.server.tls_cert_file, "127.0.0.1:0".parse()?)?;
        let token = cluster.token(fixit_auth::Principal {
            role: fixit_auth::Role::Admin,
            sub: 0,
        });
        let client = connector.connect(node.quic(), &token).await?;
        for other in names.iter().filter(|other| *other != name) {
            let wallet = (1..10_000u64)
                .find(|id| fixit_cluster::placement::home_of_wallet(*id, &names) == Some(other))
                .context("a wallet homed there")?;
            loop {
                match client.balance(wallet).await {
                    Ok(_) => break,
                    Err(error) if error.kind() == "not_found" => break,
                    Err(error) => {
                        anyhow::ensure!(
                            Instant::now() < deadline,
                            "node {name} does not reach node {other}: {error}"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        client.close().await;
    }
    Ok(())
}

/// Node `victim` and the wallet shards it leads now are under fault from now on.
/// Returns those shards.
async fn victim_scope(cluster: &ChaosCluster, driver: &Driver, victim: usize) -> BTreeSet<u32> {
    let led = shards::led_by(cluster, victim).await;
    driver.set_scope(Scope {
        nodes: [victim].into(),
        shards: led.clone(),
        ..Scope::default()
    });
    led
}

/// The node leading the most shards now (the first by name among equals; node
/// c when wallets are not replicated).
async fn busiest_leader(cluster: &ChaosCluster) -> anyhow::Result<usize> {
    let mut led: BTreeMap<String, usize> = BTreeMap::new();
    for leader in shards::leaders(cluster).await.into_values() {
        *led.entry(leader).or_default() += 1;
    }
    let most = led.values().copied().max().unwrap_or(0);
    let name = led
        .iter()
        .find(|(_, count)| **count == most)
        .map_or(VICTIM, |(name, _)| name.as_str());
    cluster.index_of(name).context("the leading node")
}

/// The fault of `scenario`, for `length`; returns when it is over (healed), with
/// what membership and leadership did meanwhile.
async fn inject(
    cluster: &mut ChaosCluster,
    driver: &Arc<Driver>,
    scenario: Scenario,
    length: Duration,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let victim = cluster.index_of(VICTIM).context("node c")?;
    let observer = Observer::new(cluster);
    let downs_before = declared_downs(cluster, &observer).await;
    match scenario {
        Scenario::PanicStorm | Scenario::SledFaults | Scenario::ServiceCrashLoop => {
            let failpoints = scenario.failpoints();
            let scope = match scenario {
                Scenario::PanicStorm => Scope {
                    modulus: Some(PANIC_MODULUS),
                    ..Scope::default()
                },
                Scenario::SledFaults => Scope {
                    nodes: [cluster.index_of(SLED_VICTIM).context("node b")?].into(),
                    ..Scope::default()
                },
                _ => Scope::default(),
            };
            driver.set_scope(scope);
            cluster.arm(&failpoints).await?;
            tokio::time::sleep(length).await;
            let off = failpoints
                .keys()
                .map(|name| (name.clone(), "off".to_owned()));
            cluster.arm(&off.collect()).await?;
        }
        Scenario::PacketLoss => {
            cluster.degrade_all(Faults::loss(20))?;
            tokio::time::sleep(length).await;
            let downs = declared_downs(cluster, &observer).await - downs_before;
            cluster.heal_all()?;
            return Ok(Outcome {
                membership: MembershipReport::of_fault(downs, observer.all_alive(cluster).await),
                ..Outcome::default()
            });
        }
        Scenario::Partition | Scenario::LeaderPartition => {
            let victim = match scenario {
                Scenario::LeaderPartition => busiest_leader(cluster).await?,
                _ => victim,
            };
            let led = victim_scope(cluster, driver, victim).await;
            let name = cluster.nodes[victim].name.clone();
            let terms_at_cut = shards::terms_of(cluster, victim).await;
            cluster.partition(&name);
            driver.fault_began(
                victim,
                "partition",
                led.clone(),
                cluster.others_running(victim),
            );
            tokio::time::sleep(length).await;
            let downs = declared_downs(cluster, &observer).await - downs_before;
            // What it still claims, cut off: openraft 0.9 has no check-quorum, a
            // leader steps down when it hears of a later term (after the heal).
            let still_leading = shards::claimed_by(cluster, victim, &led).await;
            // Cut off, it may not stand for election (it hears from no
            // majority), so its terms stay where they were: healed, it
            // deposes no leader the others kept.
            let terms_raised = cluster.replicated().then_some(shards::raised_terms(
                &terms_at_cut,
                &shards::terms_of(cluster, victim).await,
            ));
            // The leaders the others have (kept or elected while it was cut
            // off) must still lead, in the same term, once it is back.
            let kept: BTreeMap<u32, (u64, String)> = shards::leaders_seen_by(cluster, Some(victim))
                .await
                .into_iter()
                .filter(|(_, (_, leader))| *leader != name)
                .collect();
            cluster.heal_all()?;
            let stepped_down_ms =
                shards::wait_stepped_down(cluster, victim, &still_leading, STEP_DOWN_MAX).await;
            let deposed = if cluster.replicated() {
                // Long enough for the healed node to stand if it were going to.
                tokio::time::sleep(AFTER_HEAL_WATCH).await;
                Some(shards::deposed(
                    &kept,
                    &shards::leaders_seen_by(cluster, Some(victim)).await,
                ))
            } else {
                None
            };
            let membership = MembershipReport::of_fault(downs, observer.all_alive(cluster).await);
            let leader_partition = (scenario == Scenario::LeaderPartition)
                .then(|| LeaderPartition::new(name, &led, &still_leading, stepped_down_ms));
            return Ok(Outcome {
                membership,
                leader_partition,
                terms_raised,
                deposed,
                ..Outcome::default()
            });
        }
        Scenario::NodeKills => {
            let mut rng = fixit_load::city::Rng::new(seed ^ 0x6b69_6c6c);
            let started = Instant::now();
            let mut samples = Vec::new();
            // At least one kill; another while one more fits in the fault.
            while samples.is_empty() || started.elapsed() + KILL_ROUND_TYPICAL < length {
                let victim = rng.below(cluster.nodes.len() as u64) as usize;
                let (low, high) = membership::DOWN_MS;
                let left = length.saturating_sub(started.elapsed()).as_millis() as u64;
                let downtime_ms = low + rng.below(high - low + 1);
                let downtime = Duration::from_millis(downtime_ms.min(left.max(low)));
                let led = victim_scope(cluster, driver, victim).await;
                let survivors = cluster.others_running(victim);
                let on_kill = || driver.fault_began(victim, "kill", led, survivors);
                let sample =
                    membership::kill_round(cluster, &observer, victim, downtime, on_kill).await?;
                samples.push(sample);
                // The victim's clients find their connections to the dead process
                // reset on their next call (about one a second); the SDK dials
                // again and repeats what is safe to repeat, the rest fails: those
                // calls needed the killed node too.
                tokio::time::sleep(VICTIM_SETTLE).await;
                driver.set_scope(Scope::default());
            }
            return Ok(Outcome {
                membership: MembershipReport::of_kills(samples),
                ..Outcome::default()
            });
        }
        Scenario::NodeLoss => node_loss(cluster, driver, length, seed).await?,
        Scenario::DiskLoss => {
            let victim = busiest_leader(cluster).await?;
            let started = Instant::now();
            tokio::time::sleep(length / 4).await;
            let led = victim_scope(cluster, driver, victim).await;
            cluster.kill9(victim)?;
            driver.fault_began(victim, "disk-loss", led, cluster.others_running(victim));
            cluster.delete_data(victim)?;
            driver.disk_lost(victim);
            tokio::time::sleep(DISK_LOSS_DOWN).await;
            cluster.start_node(victim).await?;
            cluster.restarts += 1;
            if cluster.replicated() {
                shards::wait_rejoined(cluster, victim, REJOIN_MAX).await;
            }
            tokio::time::sleep(length.saturating_sub(started.elapsed())).await;
        }
        Scenario::KillDuringCapture => {
            driver.set_scope(Scope {
                nodes: [victim].into(),
                ..Scope::default()
            });
            let started = Instant::now();
            tokio::time::sleep(length / 4).await;
            let led = victim_scope(cluster, driver, victim).await;
            cluster.kill9(victim)?;
            driver.fault_began(victim, "kill", led, cluster.others_running(victim));
            tokio::time::sleep(length / 4).await;
            cluster.start_node(victim).await?;
            cluster.restarts += 1;
            tokio::time::sleep(length.saturating_sub(started.elapsed())).await;
        }
        Scenario::RollingRestart => {
            let started = Instant::now();
            let share = length / cluster.nodes.len() as u32;
            let mut led_before = BTreeSet::new();
            for index in 0..cluster.nodes.len() {
                // Every node restarted so far stays under fault until the fault
                // ends, as the killed node does in kill-during-capture: its
                // clients find their stale connections on their next calls. So
                // do the shards each led before its restart.
                let led = shards::led_by(cluster, index).await;
                led_before.extend(led.iter().copied());
                driver.set_scope(Scope {
                    nodes: (0..=index).collect(),
                    shards: led_before.clone(),
                    ..Scope::default()
                });
                let turn = Instant::now();
                driver.fault_began(index, "stop", led, cluster.others_running(index));
                cluster.restart(index).await?;
                tokio::time::sleep(share.saturating_sub(turn.elapsed())).await;
            }
            tokio::time::sleep(length.saturating_sub(started.elapsed())).await;
        }
    }
    Ok(Outcome::default())
}

/// node-loss: each node in turn killed and restarted 2–5 s later, while the
/// fault lasts (at least once); each victim and the shards it led stay under
/// fault until it has rejoined its shards and a moment more.
async fn node_loss(
    cluster: &mut ChaosCluster,
    driver: &Arc<Driver>,
    length: Duration,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = fixit_load::city::Rng::new(seed ^ 0x6c6f_7373);
    let first = rng.below(cluster.nodes.len() as u64) as usize;
    let started = Instant::now();
    let mut round = 0usize;
    while round == 0 || started.elapsed() + NODE_LOSS_ROUND_TYPICAL < length {
        let victim = (first + round) % cluster.nodes.len();
        let (low, high) = NODE_LOSS_DOWN_MS;
        let downtime = Duration::from_millis(low + rng.below(high - low + 1));
        let led = victim_scope(cluster, driver, victim).await;
        cluster.kill9(victim)?;
        driver.fault_began(victim, "kill", led, cluster.others_running(victim));
        tokio::time::sleep(downtime).await;
        cluster.start_node(victim).await?;
        cluster.restarts += 1;
        if cluster.replicated() {
            shards::wait_rejoined(cluster, victim, REJOIN_MAX).await;
        }
        tokio::time::sleep(VICTIM_SETTLE).await;
        driver.set_scope(Scope::default());
        round += 1;
    }
    tokio::time::sleep(length.saturating_sub(started.elapsed())).await;
    Ok(())
}

/// Members declared down so far, summed over the running nodes.
async fn declared_downs(cluster: &ChaosCluster, observer: &Observer) -> u64 {
    let mut downs = 0;
    for (index, node) in cluster.nodes.iter().enumerate() {
        if node.running() {
            downs += observer.downs(cluster.http_addr(index)).await;
        }
    }
    downs
}
