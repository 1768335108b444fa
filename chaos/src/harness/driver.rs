//! The load of a chaos run, through the client SDK over QUIC: customers connected
//! to their wallet's home node (balances, deposits by an admin, bookings), and
//! providers connected to the node owning their spot (a position every second,
//! offers taken, started and completed). Every acknowledged operation is recorded
//! for the checker; every operation is timed and classed as *affected* (it touches
//! a node or entity under fault now) or *unaffected*, for containment.
//!
//! Clients reconnect when their node restarts; a provider whose push stream ends
//! subscribes again and goes online again. Some deposits are sent twice with the
//! same idempotency key, as a client does after a lost answer: the second must
//! change nothing (the checker counts entries per key).
//!
//! With replicated wallets, a run may let wallet calls move (the scenarios that
//! take nodes away): a customer then holds the list of nodes, and a balance or
//! deposit its node did not serve (dead, or `unavailable`) goes to the next node
//! with the same idempotency key, where the customer stays. Acknowledged writes
//! and every call are marked in time for [`super::failover`].

use super::failover::{self, Fault, Tracker};
use crate::checker::{AckedDeposit, AckedJob, Acknowledged};
use fixit_actors::error::CoreError;
use fixit_actors::ids::WalletId;
use fixit_actors::services::ProviderPush;
use fixit_auth::{now_s, Principal, Role, TokenKey};
use fixit_cluster::Regions;
use fixit_load::city::Rng;
use fixit_protocol::api::{ApiError, Push};
use fixit_sdk::Commands;
use fixit_sdk::{Client, Connector, PushStream};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// First provider id (customers are 1..=customers).
pub(crate) const FIRST_PROVIDER: u64 = 1_000_000;

/// A customer's first deposit, enough for every booking of a run.
const FIRST_DEPOSIT: i64 = 10_000_000;

/// Tries of a customer's first deposit (same key) while the answer is a
/// retryable refusal: a customer without a wallet only makes `not_found` noise.
const FIRST_DEPOSIT_TRIES: u32 = 20;

/// Pause between tries of a setup call.
const SETUP_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Mean pause between two actions of one customer.
const CUSTOMER_PAUSE_MEAN_S: f64 = 1.0;

/// How often a provider sends its position.
const LOCATION_EVERY: Duration = Duration::from_secs(1);

/// A provider's pause before starting and before completing a job.
const THINK: Duration = Duration::from_millis(250);

/// Longest wait for one answer (a call with no answer counts as `unavailable`).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause before a client tries to reconnect.
const RECONNECT_PAUSE: Duration = Duration::from_millis(300);

/// Longest latency a histogram holds, in µs.
const LATENCY_MAX_US: u64 = 60_000_000;

/// When wallet calls may move: the longest wait for one node's answer before the
/// call goes to the next node (a killed node answers nothing; a node that cannot
/// reach a shard's leader answers `unavailable` after its own wait, 1.5 s here).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2_500);

/// When wallet calls may move: how long one call keeps going to the next node.
const MOVE_PATIENCE: Duration = Duration::from_secs(8);

/// Pause before a call goes to the next node.
const MOVE_PAUSE: Duration = Duration::from_millis(100);

/// The first failover probe's wallet id (above every customer's).
const PROBE_WALLETS: u64 = 3_000_000;

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Setup,
    Baseline,
    Fault,
    Recovery,
    Drain,
}

/// What is under fault now: whole nodes (by index), entities whose id is a
/// multiple of `modulus`, and the wallets of replicated shards (those a node
/// under fault led: their calls wait for a new leader).
#[derive(Clone, Debug, Default)]
pub(crate) struct Scope {
    pub(crate) nodes: BTreeSet<usize>,
    pub(crate) modulus: Option<u64>,
    pub(crate) shards: BTreeSet<u32>,
}

impl Scope {
    fn affects(&self, node: usize, entity: u64, shard: Option<u32>) -> bool {
        self.nodes.contains(&node)
            || self.modulus.is_some_and(|m| entity % m == 0)
            || shard.is_some_and(|shard| self.shards.contains(&shard))
    }
}

/// Whether `op` is a call on a wallet (its entity is the wallet id).
fn is_wallet_op(op: &str) -> bool {
    matches!(
        op,
        "balance" | "deposit" | "deposit_retry" | "failover_probe"
    )
}

/// Whether `op` writes to a wallet.
fn is_write_op(op: &str) -> bool {
    matches!(op, "deposit" | "deposit_retry" | "failover_probe")
}

/// Calls of one operation.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Calls {
    pub(crate) attempted: u64,
    pub(crate) acknowledged: u64,
    pub(crate) failed: u64,
    /// Failures that were refusals (busy, rate-limited), counted in `failed`.
    pub(crate) refused: u64,
    /// Failures that were the call's own fault, answered by a serving node
    /// (`not_found`, `insufficient_funds`, `conflict`, ...), counted in `failed`.
    pub(crate) answered: u64,
}

impl Calls {
    fn count(&mut self, result: Result<(), &ApiError>) {
        self.attempted += 1;
        match result {
            Ok(()) => self.acknowledged += 1,
            Err(error) => {
                self.failed += 1;
                match error.kind() {
                    "busy" | "rate_limited" => self.refused += 1,
                    kind if !not_served(kind) => self.answered += 1,
                    _ => {}
                }
            }
        }
    }

    /// Failed calls that were not served: no answer, or the node could not
    /// (`unavailable`, `internal`). Containment is about these.
    pub(crate) fn not_served(&self) -> u64 {
        self.failed - self.refused - self.answered
    }
}

/// Whether an error of `kind` means the call was not served (as opposed to a
/// refusal or a typed answer to the call's own fault).
fn not_served(kind: &str) -> bool {
    matches!(kind, "unavailable" | "internal")
}

/// Latency of a class of calls, in ms.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

fn latency_of(histogram: &Histogram<u64>) -> Latency {
    let ms = |quantile| histogram.value_at_quantile(quantile) as f64 / 1_000.0;
    Latency {
        count: histogram.len(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
    }
}

/// Slow calls kept for the report.
const SLOWEST_KEPT: usize = 10;

/// One slow call, for the report: what, where, when it started (ms since the
/// Unix epoch, to set beside the nodes' logs) and how long it took.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SlowCall {
    operation: &'static str,
    node: String,
    entity: u64,
    at_ms: u64,
    ms: f64,
}

/// Failed calls on unaffected entities kept for the report.
const FAILED_KEPT: usize = 20;

/// A call on an unaffected entity that failed during the fault: what, where, when
/// (ms since the Unix epoch), after how long, and the error (kind: message).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FailedCall {
    operation: &'static str,
    node: String,
    entity: u64,
    at_ms: u64,
    ms: f64,
    error: String,
}

impl std::fmt::Display for FailedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on node {} (entity {}) at {} ms after {:.1} ms: {}",
            self.operation, self.node, self.entity, self.at_ms, self.ms, self.error
        )
    }
}

fn keep_slowest(kept: &mut Vec<SlowCall>, call: SlowCall) {
    if kept.len() < SLOWEST_KEPT {
        kept.push(call);
    } else if let Some(fastest) = kept
        .iter_mut()
        .min_by(|a, b| a.ms.total_cmp(&b.ms))
        .filter(|fastest| fastest.ms < call.ms)
    {
        *fastest = call;
    }
}

/// The latency classes compared for containment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    UnaffectedBaseline,
    UnaffectedDuringFault,
    AffectedDuringFault,
}

/// What the driver recorded.
#[derive(Default)]
struct Record {
    calls: BTreeMap<&'static str, Calls>,
    errors: BTreeMap<String, u64>,
    deposits: Vec<AckedDeposit>,
    booked: HashMap<u64, (u64, i64)>,
    accepted: HashMap<u64, u64>,
    completed: HashMap<u64, u64>,
    /// Jobs whose accept was acknowledged to two different providers.
    accepted_twice: Vec<u64>,
    /// Keys whose retry answered another outcome than the first call.
    retries_answered_differently: Vec<String>,
    /// Jobs acknowledged on a node whose data dir was then deleted, as far as
    /// they were acknowledged then.
    lost_with_disk: Vec<AckedJob>,
    latency: BTreeMap<Class, Histogram<u64>>,
    /// The slowest calls on unaffected entities during the fault.
    slowest_unaffected: Vec<SlowCall>,
    /// Calls on unaffected entities during the fault.
    unaffected_during_fault: Calls,
    /// The first failed calls on unaffected entities during the fault.
    failed_unaffected: Vec<FailedCall>,
}

/// What a run's driver saw, for the report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Seen {
    pub(crate) calls: BTreeMap<&'static str, Calls>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) unaffected_during_fault: Calls,
    pub(crate) latency_unaffected_baseline: Latency,
    pub(crate) latency_unaffected_during_fault: Latency,
    pub(crate) latency_affected_during_fault: Latency,
    pub(crate) slowest_unaffected_during_fault: Vec<SlowCall>,
    pub(crate) failed_unaffected_during_fault: Vec<FailedCall>,
    pub(crate) accepted_twice: Vec<u64>,
    pub(crate) retries_answered_differently: Vec<String>,
    pub(crate) failover: failover::FailoverReport,
    /// Wallet calls that went to another node than the one they were sent to.
    pub(crate) wallet_calls_moved: u64,
}

/// One client's connection to one node, opened on demand.
pub(crate) struct Conn {
    node: usize,
    token: String,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl Conn {
    fn new(driver: &Driver, node: usize, principal: Principal) -> Conn {
        Conn {
            node,
            token: driver.tokens.issue(principal, now_s() + 6 * 3_600),
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// Closes the connection, if open.
    async fn close(&self) {
        let client = self.client.lock().await.take();
        if let Some(client) = client {
            client.close().await;
        }
    }

    /// The client, connected on first use; it dials again by itself when its
    /// node restarts (the SDK follows a reset connection).
    async fn client(&self, driver: &Driver) -> Result<Client, ApiError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let addr = driver.nodes[self.node].1;
        let connect = driver.connectors[self.node].connect(addr, &self.token);
        let client = match tokio::time::timeout(CALL_TIMEOUT, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return Err(unavailable(error.to_string())),
            Err(_) => return Err(unavailable(format!("connect to {addr}: no answer"))),
        };
        *slot = Some(client.clone());
        Ok(client)
    }
}

fn unavailable(reason: String) -> ApiError {
    ApiError::Core(CoreError::Unavailable(reason))
}

/// What a run lets clients do and what it measures about replicated wallets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalletMode {
    /// Wallet buckets when wallets are replicated (their calls are classed by
    /// shard, failovers measured), `None` when not.
    pub(crate) buckets: Option<u32>,
    /// Whether a wallet call its node did not serve goes to the next node.
    pub(crate) moves: bool,
}

/// The shared state of a run's load.
pub(crate) struct Driver {
    nodes: Vec<(String, SocketAddr)>,
    /// The node names, in order (for wallet placement).
    names: Vec<String>,
    regions: Regions,
    /// One local endpoint per node, pinning that node's certificate.
    connectors: Vec<Connector>,
    tokens: TokenKey,
    admins: Vec<Conn>,
    run_id: String,
    seed: u64,
    phase: RwLock<Phase>,
    scope: RwLock<Scope>,
    record: Mutex<Record>,
    /// Jobs accepted and not yet completed or given up.
    working: AtomicU64,
    pub(crate) operations: AtomicU64,
    /// When the driver was made, and that instant in ms since the Unix epoch.
    started: Instant,
    started_unix_ms: u64,
    wallets: WalletMode,
    tracker: Mutex<Tracker>,
    /// Wallet calls that moved to another node.
    moved: AtomicU64,
    /// Failover probes still running.
    probes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Failover probes started (each probe wallet's keys are its own).
    probes_started: AtomicU64,
}

impl Driver {
    /// A driver against `nodes` (name, QUIC address, pinned certificate).
    pub(crate) fn new(
        nodes: Vec<(String, SocketAddr, std::path::PathBuf)>,
        regions: Regions,
        tokens: TokenKey,
        seed: u64,
        wallets: WalletMode,
    ) -> anyhow::Result<Arc<Driver>> {
        let connectors = nodes
            .iter()
            .map(|(_, _, cert)| Connector::new(cert, SocketAddr::from(([127, 0, 0, 1], 0))))
            .collect::<Result<_, _>>()?;
        let mut driver = Driver {
            names: nodes.iter().map(|(name, _, _)| name.clone()).collect(),
            nodes: nodes
                .into_iter()
                .map(|(name, quic, _)| (name, quic))
                .collect(),
            regions,
            connectors,
            tokens,
            admins: Vec::new(),
            run_id: format!("{seed}-{}", now_s()),
            seed,
            phase: RwLock::new(Phase::Setup),
            scope: RwLock::new(Scope::default()),
            record: Mutex::new(Record::default()),
            working: AtomicU64::new(0),
            operations: AtomicU64::new(0),
            started: Instant::now(),
            started_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            wallets,
            tracker: Mutex::new(Tracker::default()),
            moved: AtomicU64::new(0),
            probes: Mutex::new(Vec::new()),
            probes_started: AtomicU64::new(0),
        };
        let admin = Principal {
            role: Role::Admin,
            sub: 0,
        };
        driver.admins = (0..driver.nodes.len())
            .map(|node| Conn::new(&driver, node, admin))
            .collect();
        Ok(Arc::new(driver))
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        *self.phase.write().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    pub(crate) fn phase(&self) -> Phase {
        *self.phase.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_scope(&self, scope: Scope) {
        *self.scope.write().unwrap_or_else(|p| p.into_inner()) = scope;
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shard of a wallet, when wallets are replicated.
    fn shard_of(&self, wallet: u64) -> Option<u32> {
        let buckets = self.wallets.buckets?;
        Some(fixit_cluster::shards::shard_of(WalletId(wallet), buckets).0)
    }

    /// Ms since the Unix epoch at `at`.
    fn unix_ms(&self, at: Instant) -> u64 {
        self.started_unix_ms + at.saturating_duration_since(self.started).as_millis() as u64
    }

    /// Node `victim` (by index) was taken away from the shards in `led` (those it
    /// led just before) by a fault of `kind`, now: the failover is measured, and
    /// a probe writes to each of those shards through the nodes in `through`.
    pub(crate) fn fault_began(
        self: &Arc<Self>,
        victim: usize,
        kind: &'static str,
        led: BTreeSet<u32>,
        through: Vec<usize>,
    ) {
        let at = Instant::now();
        self.tracker().fault(Fault {
            victim: self.nodes[victim].0.clone(),
            kind,
            at,
            at_unix_ms: self.unix_ms(at),
            led: led.clone(),
        });
        if through.is_empty() {
            return;
        }
        let round = self.probes_started.fetch_add(1, Ordering::Relaxed);
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        for shard in led {
            let driver = self.clone();
            let through = through.clone();
            probes.push(tokio::spawn(async move {
                driver.probe(shard, round, at, &through).await;
            }));
        }
    }

    /// Writes to a wallet of `shard` through the nodes in `through` until a write
    /// sent after `since` is acknowledged (by this probe or any client), or the
    /// failover limit passes. One deposit of 1, retried under its key.
    async fn probe(&self, shard: u32, round: u64, since: Instant, through: &[usize]) {
        let Some(wallet) =
            (PROBE_WALLETS..PROBE_WALLETS + 100_000).find(|id| self.shard_of(*id) == Some(shard))
        else {
            return;
        };
        let key = format!("chaos-{}-probe-{wallet}-{round}", self.run_id);
        let conns: Vec<&Conn> = through.iter().map(|node| &self.admins[*node]).collect();
        let current = AtomicUsize::new(0);
        while since.elapsed() < failover::FAILOVER_MAX {
            if self.tracker().first_write(shard, since).is_some() {
                return;
            }
            let key = key.as_str();
            let deposit = self.on_any_node(&conns, &current, true, |client| async move {
                client.deposit(wallet, key, 1).await
            });
            let deposited = self
                .call("failover_probe", through[0], wallet, false, deposit)
                .await;
            if deposited.is_ok() {
                self.record().deposits.push(AckedDeposit {
                    wallet,
                    key: key.to_owned(),
                    amount: 1,
                });
                return;
            }
            tokio::time::sleep(failover::PROBE_EVERY).await;
        }
    }

    /// Waits for the failover probes still running (each ends within the
    /// failover limit).
    pub(crate) async fn finish_probes(&self) {
        let probes = std::mem::take(&mut *self.probes.lock().unwrap_or_else(|p| p.into_inner()));
        for probe in probes {
            let _ = probe.await;
        }
    }

    /// Node `victim` lost its data dir: the jobs acknowledged there so far went
    /// with it (jobs are not replicated). They are set apart, so that a new job
    /// given one of their ids after the restart is followed as a new job.
    pub(crate) fn disk_lost(&self, victim: usize) {
        let number = fixit_cluster::placement::node_number(&self.nodes[victim].0);
        let on_victim = |job: &u64| fixit_actors::cluster_hooks::node_number_of_job(*job) == number;
        let mut record = self.record();
        let mut lost: BTreeMap<u64, AckedJob> = BTreeMap::new();
        let booked: Vec<u64> = record.booked.keys().copied().filter(on_victim).collect();
        for job in booked {
            if let Some((customer, price)) = record.booked.remove(&job) {
                let entry = lost.entry(job).or_default();
                entry.booked_by = Some(customer);
                entry.price = Some(price);
            }
        }
        let accepted: Vec<u64> = record.accepted.keys().copied().filter(on_victim).collect();
        for job in accepted {
            lost.entry(job).or_default().accepted_by = record.accepted.remove(&job);
        }
        let completed: Vec<u64> = record.completed.keys().copied().filter(on_victim).collect();
        for job in completed {
            lost.entry(job).or_default().completed_by = record.completed.remove(&job);
        }
        record
            .lost_with_disk
            .extend(lost.into_iter().map(|(job, ack)| AckedJob { job, ..ack }));
    }

    /// Runs `attempt` with the client of the node `current` points at (among
    /// `conns`). When `moves`, a call that node did not serve — no answer within
    /// [`ATTEMPT_TIMEOUT`], or `unavailable` — goes to the next node, the same
    /// request (the same idempotency key), until served or [`MOVE_PATIENCE`] is
    /// spent; `current` follows, as a client holding the node list does.
    async fn on_any_node<T, F, Fut>(
        &self,
        conns: &[&Conn],
        current: &AtomicUsize,
        moves: bool,
        attempt: F,
    ) -> Result<T, ApiError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let patience = Instant::now() + MOVE_PATIENCE;
        loop {
            let at = current.load(Ordering::Relaxed) % conns.len();
            let conn = conns[at];
            let tried = async { attempt(conn.client(self).await?).await };
            let result = if moves {
                tokio::time::timeout(ATTEMPT_TIMEOUT, tried)
                    .await
                    .unwrap_or_else(|_| {
                        let node = &self.nodes[conn.node].0;
                        Err(unavailable(format!("node {node} did not answer in time")))
                    })
            } else {
                tried.await
            };
            match result {
                Err(error)
                    if moves && error.kind() == "unavailable" && Instant::now() < patience =>
                {
                    let next = (at + 1) % conns.len();
                    let _ =
                        current.compare_exchange(at, next, Ordering::Relaxed, Ordering::Relaxed);
                    self.moved.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(MOVE_PAUSE).await;
                }
                result => return result,
            }
        }
    }

    fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|(node, _)| node == name)
    }

    fn home_of(&self, wallet: u64) -> usize {
        fixit_cluster::placement::home_of_wallet(wallet, &self.names)
            .and_then(|name| self.node_named(name))
            .unwrap_or(0)
    }

    fn owner_of(&self, at: (f64, f64)) -> Option<usize> {
        let owner = self.regions.owner_of(at.0, at.1).ok()??;
        self.node_named(owner)
    }

    /// Calls `call` as operation `op` on `node` for `entity`, with a deadline;
    /// counts and times it. `timed` ops (balance, deposit, location) feed the
    /// containment latencies.
    async fn call<T>(
        &self,
        op: &'static str,
        node: usize,
        entity: u64,
        timed: bool,
        call: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let phase = self.phase();
        let shard = is_wallet_op(op).then(|| self.shard_of(entity)).flatten();
        let in_scope = || {
            self.scope
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .affects(node, entity, shard)
        };
        let affected_at_start = in_scope();
        let started = Instant::now();
        let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(unavailable(format!("{op}: no answer in time"))),
        };
        // A call its node or entity came under fault during (the scope set just
        // after the call went out, as a restart begins) is affected too.
        let affected = affected_at_start || in_scope();
        let elapsed_us = started.elapsed().as_micros() as u64;
        self.operations.fetch_add(1, Ordering::Relaxed);
        self.mark(op, shard, phase, started, &result);
        let mut record = self.record();
        let outcome = result.as_ref().map(drop);
        record.calls.entry(op).or_default().count(outcome);
        if let Err(error) = &result {
            *record
                .errors
                .entry(format!("{op}:{}", error.kind()))
                .or_default() += 1;
        }
        let class = match (timed, phase, affected) {
            (true, Phase::Baseline, false) => Some(Class::UnaffectedBaseline),
            (true, Phase::Fault, false) => Some(Class::UnaffectedDuringFault),
            (true, Phase::Fault, true) => Some(Class::AffectedDuringFault),
            _ => None,
        };
        let at_ms = self.started_unix_ms + started.duration_since(self.started).as_millis() as u64;
        if class == Some(Class::UnaffectedDuringFault) {
            record.unaffected_during_fault.count(outcome);
            if let Err(error) = &result {
                if record.failed_unaffected.len() < FAILED_KEPT {
                    record.failed_unaffected.push(FailedCall {
                        operation: op,
                        node: self.nodes[node].0.clone(),
                        entity,
                        at_ms,
                        ms: elapsed_us as f64 / 1_000.0,
                        error: format!("{}: {error}", error.kind()),
                    });
                }
            }
        }
        if let (Some(class), Ok(_)) = (class, &result) {
            let histogram = record.latency.entry(class).or_insert_with(|| {
                Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid bounds")
            });
            histogram.saturating_record(elapsed_us.max(1));
            if class == Class::UnaffectedDuringFault {
                let call = SlowCall {
                    operation: op,
                    node: self.nodes[node].0.clone(),
                    entity,
                    at_ms,
                    ms: elapsed_us as f64 / 1_000.0,
                };
                keep_slowest(&mut record.slowest_unaffected, call);
            }
        }
        result
    }

    /// Marks a call for the failover figures: every load call, and the
    /// acknowledged writes to replicated wallets.
    fn mark<T>(
        &self,
        op: &'static str,
        shard: Option<u32>,
        phase: Phase,
        started: Instant,
        result: &Result<T, ApiError>,
    ) {
        let ended = Instant::now();
        let mut tracker = self.tracker();
        if let (Some(shard), Ok(_)) = (shard, result) {
            if is_write_op(op) {
                tracker.write_acked(shard, started, ended);
            }
        }
        let load = matches!(phase, Phase::Baseline | Phase::Fault | Phase::Recovery);
        if load && op != "failover_probe" {
            let served = match result {
                Ok(_) => true,
                Err(error) => !not_served(error.kind()),
            };
            tracker.call(started, ended, served, is_wallet_op(op));
        }
    }

    /// A deposit by an admin, at the node the customer's wallet calls go to
    /// (`current`: its home unless it moved); a quarter of them are sent a second
    /// time with the same key (a client's retry), which must answer what the
    /// first did.
    async fn deposit(
        &self,
        rng: &mut Rng,
        current: &AtomicUsize,
        wallet: u64,
        key: String,
        amount: i64,
        tries: u32,
    ) {
        let admins: Vec<&Conn> = self.admins.iter().collect();
        let send = |op: &'static str, timed: bool| {
            let node = current.load(Ordering::Relaxed);
            let key = key.as_str();
            let on_any = self.on_any_node(
                &admins,
                current,
                self.wallets.moves,
                move |client| async move { client.deposit(wallet, key, amount).await },
            );
            self.call(op, node, wallet, timed, on_any)
        };
        let mut answer = send("deposit", true).await;
        for _ in 1..tries {
            match &answer {
                Err(error) if error.retry_after_ms().is_some() => {
                    tokio::time::sleep(SETUP_RETRY_PAUSE).await;
                    answer = send("deposit", true).await;
                }
                _ => break,
            }
        }
        let Ok(first) = answer else {
            return;
        };
        self.record().deposits.push(AckedDeposit {
            wallet,
            key: key.clone(),
            amount,
        });
        if rng.below(4) == 0 {
            if let Ok(again) = send("deposit_retry", false).await {
                if again != first {
                    self.record().retries_answered_differently.push(key.clone());
                }
            }
        }
    }

    /// What the checker needs: every acknowledged operation.
    pub(crate) fn acknowledged(&self) -> Acknowledged {
        let record = self.record();
        let mut jobs: BTreeMap<u64, AckedJob> = BTreeMap::new();
        for (job, (customer, price)) in &record.booked {
            let entry = jobs.entry(*job).or_default();
            entry.booked_by = Some(*customer);
            entry.price = Some(*price);
        }
        for (job, provider) in &record.accepted {
            jobs.entry(*job).or_default().accepted_by = Some(*provider);
        }
        for (job, provider) in &record.completed {
            jobs.entry(*job).or_default().completed_by = Some(*provider);
        }
        for (id, job) in jobs.iter_mut() {
            job.job = *id;
        }
        Acknowledged {
            deposits: record.deposits.clone(),
            jobs: jobs.into_values().collect(),
            lost_with_disk: record.lost_with_disk.clone(),
        }
    }

    /// What was seen, for the report.
    pub(crate) fn seen(&self) -> Seen {
        let record = self.record();
        let latency = |class| {
            record
                .latency
                .get(&class)
                .map(latency_of)
                .unwrap_or_default()
        };
        Seen {
            calls: record.calls.clone(),
            errors: record.errors.clone(),
            unaffected_during_fault: record.unaffected_during_fault,
            latency_unaffected_baseline: latency(Class::UnaffectedBaseline),
            latency_unaffected_during_fault: latency(Class::UnaffectedDuringFault),
            latency_affected_during_fault: latency(Class::AffectedDuringFault),
            slowest_unaffected_during_fault: record.slowest_unaffected.clone(),
            failed_unaffected_during_fault: record.failed_unaffected.clone(),
            accepted_twice: record.accepted_twice.clone(),
            retries_answered_differently: record.retries_answered_differently.clone(),
            failover: self.tracker().report(),
            wallet_calls_moved: self.moved.load(Ordering::Relaxed),
        }
    }

    /// Whether a provider is working on an accepted job.
    pub(crate) fn working(&self) -> u64 {
        self.working.load(Ordering::SeqCst)
    }

    /// Closes the admins' connections.
    pub(crate) async fn close(&self) {
        for admin in &self.admins {
            admin.close().await;
        }
    }
}

/// Customer `id`: a first deposit, then until `end` a balance call, a deposit or a
/// booking about every second.
pub(crate) async fn customer(driver: Arc<Driver>, id: u64, start: Instant, end: Instant) {
    let mut rng = Rng::for_user(driver.seed, id);
    let home = driver.home_of(id);
    let principal = Principal {
        role: Role::Customer,
        sub: id,
    };
    // One connection per node (each opened on first use): bookings go to the
    // home node; wallet calls to `current`, the home until they move.
    let conns: Vec<Conn> = (0..driver.nodes.len())
        .map(|node| Conn::new(&driver, node, principal))
        .collect();
    let wallet_conns: Vec<&Conn> = conns.iter().collect();
    let current = AtomicUsize::new(home);
    let conn = &conns[home];
    let key = format!("chaos-{}-d-{id}-0", driver.run_id);
    driver
        .deposit(
            &mut rng,
            &current,
            id,
            key,
            FIRST_DEPOSIT,
            FIRST_DEPOSIT_TRIES,
        )
        .await;
    tokio::time::sleep_until(start.into()).await;
    let mut actions = 0u64;
    loop {
        let pause = Duration::from_secs_f64(rng.exponential(CUSTOMER_PAUSE_MEAN_S));
        let next = Instant::now() + pause;
        if next >= end {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        actions += 1;
        match rng.below(10) {
            0..=3 => {
                let node = current.load(Ordering::Relaxed);
                let moves = driver.wallets.moves;
                let balance =
                    driver.on_any_node(&wallet_conns, &current, moves, |client| async move {
                        client.balance(id).await
                    });
                let _ = driver.call("balance", node, id, true, balance).await;
            }
            4..=5 => {
                let key = format!("chaos-{}-d-{id}-{actions}", driver.run_id);
                let amount = 100 + rng.below(900) as i64;
                driver.deposit(&mut rng, &current, id, key, amount, 1).await;
            }
            _ => book(&driver, conn, &mut rng, id, actions).await,
        }
    }
    for conn in &conns {
        conn.close().await;
    }
}

async fn book(driver: &Driver, conn: &Conn, rng: &mut Rng, customer: u64, n: u64) {
    let at = rng.spot();
    let skill = rng.skill();
    let price = 1_000 + rng.below(4_000) as i64;
    let key = format!("chaos-{}-b-{customer}-{n}", driver.run_id);
    let booked = driver
        .call("book", conn.node, customer, false, async {
            let client = conn.client(driver).await?;
            client
                .request_job(customer, &key, skill, at.0, at.1, price)
                .await
        })
        .await;
    if let Ok(job) = booked {
        driver.record().booked.insert(job.id.0, (customer, price));
    }
}

/// Provider `id`: online at the node owning its spot, a position every second
/// until `load_end`, offers taken until `drain_end`; reconnects when its
/// connection or push stream ends.
pub(crate) async fn provider(
    driver: Arc<Driver>,
    id: u64,
    load_end: Instant,
    drain_end: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = Rng::for_user(driver.seed, id);
    let Some((mut at, node)) = (0..1_000).find_map(|_| {
        let at = rng.spot();
        driver.owner_of(at).map(|node| (at, node))
    }) else {
        return;
    };
    let skill = rng.skill();
    let principal = Principal {
        role: Role::Provider,
        sub: id,
    };
    let conn = Arc::new(Conn::new(&driver, node, principal));
    let mover = tokio::spawn({
        let (driver, conn) = (driver.clone(), conn.clone());
        let mut rng = rng.clone();
        async move {
            while Instant::now() < load_end {
                tokio::time::sleep(LOCATION_EVERY).await;
                let step = rng.step(at);
                if driver.owner_of(step) == Some(node) {
                    at = step;
                }
                let _ = driver
                    .call("location", node, id, true, async {
                        conn.client(&driver).await?.location(id, at.0, at.1).await
                    })
                    .await;
            }
        }
    });
    let mut stop = drain_end;
    // Ends when told to, or when the teller is gone (the run ended abnormally).
    while !*stop.borrow() && stop.has_changed().is_ok() {
        let pushes = driver
            .call("provider_online", node, id, false, async {
                let client = conn.client(&driver).await?;
                let pushes = client.subscribe().await?;
                client.provider_online(id, &[skill]).await?;
                Ok(pushes)
            })
            .await;
        match pushes {
            Ok(pushes) => take_offers(&driver, &conn, id, pushes, &mut stop).await,
            Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_PAUSE) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    let _ = mover.await;
    conn.close().await;
}

/// Takes offers until the stream ends or the drain is over.
async fn take_offers(
    driver: &Driver,
    conn: &Conn,
    id: u64,
    mut pushes: PushStream,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let push = tokio::select! {
            push = pushes.next() => push,
            _ = stop.changed() => return,
        };
        match push {
            Some(Push::Provider(ProviderPush::Offer { job, .. })) => {
                work(driver, conn, id, job.0).await;
            }
            Some(_) => {}
            None => {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                return;
            }
        }
    }
}

/// A step of an accepted job.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Start,
    Complete,
}

/// Tries of a start or a completion the node could not serve.
const STEP_TRIES_MAX: u32 = 20;

/// Starts or completes `job`, retrying while the node cannot serve; a refusal
/// because the job already moved on (a lost answer to an earlier try) is settled
/// by reading the job. Whether the step is done.
async fn step(driver: &Driver, conn: &Conn, id: u64, job: u64, step: Step) -> bool {
    let (op, done) = match step {
        Step::Start => ("start", "in_progress"),
        Step::Complete => ("complete", "completed"),
    };
    for _ in 0..STEP_TRIES_MAX {
        let result = driver
            .call(op, conn.node, id, false, async {
                let client = conn.client(driver).await?;
                match step {
                    Step::Start => client.start(id, job).await,
                    Step::Complete => client.complete(id, job, b"chaos-proof".to_vec()).await,
                }
            })
            .await;
        match result {
            Ok(_) => return true,
            Err(ApiError::Core(CoreError::Conflict(_))) => {
                let read = driver
                    .call("job_status", conn.node, id, false, async {
                        conn.client(driver).await?.job(job).await
                    })
                    .await;
                return read.is_ok_and(|stored| {
                    stored.status.name() == done
                        || (step == Step::Start && stored.status.name() == "completed")
                });
            }
            Err(_) => tokio::time::sleep(RECONNECT_PAUSE).await,
        }
    }
    false
}

/// Accepts `job`, then starts and completes it after think times.
async fn work(driver: &Driver, conn: &Conn, id: u64, job: u64) {
    let accepted = driver
        .call("accept", conn.node, id, false, async {
            conn.client(driver).await?.accept(id, job).await
        })
        .await;
    if accepted.is_err() {
        return;
    }
    {
        let mut record = driver.record();
        if let Some(first) = record.accepted.insert(job, id) {
            if first != id {
                record.accepted_twice.push(job);
            }
        }
    }
    driver.working.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(THINK).await;
    if step(driver, conn, id, job, Step::Start).await {
        tokio::time::sleep(THINK).await;
        if step(driver, conn, id, job, Step::Complete).await {
            driver.record().completed.insert(job, id);
        }
    }
    driver.working.fetch_sub(1, Ordering::SeqCst);
}
