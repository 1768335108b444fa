//! The invariant checker: reads the sled databases of a **stopped** cluster (one dir
//! per node) and the operations its clients saw acknowledged, and says which of the
//! invariants of DESIGN.md hold.
//!
//! Read-only: sled 0.34 has no read-only mode (opening a database may recover and
//! rewrite its log), so each dir is copied to a temporary dir and the copy is opened.
//! Every file of the original is fingerprinted (length, modification time, content
//! hash) before the copy and after the check; a difference is an error — the node
//! was still running, or something else wrote there — and the answer is not trusted.
//!
//! Invariants (names as in the chaos report):
//!
//! - `conservation`: Σ (available + held) over every wallet of every node + Σ of the
//!   transfers still in outboxes and not yet credited = Σ deposits − Σ withdrawals.
//! - `transfers_balanced`: Σ sent = Σ received + Σ in flight, and each node's
//!   `received` total equals the transfers credited in its ledgers.
//! - `node_ledgers_conserved`: each node's own books balance (its audit).
//! - `no_negative_balance`: no wallet has a negative available or held part.
//! - `ledgers_add_up`: each wallet's entries replay to its stored balance.
//! - `single_home`: a wallet's ledger lives on one node only.
//! - `exactly_once_keys`: no wallet has two entries of one kind under one
//!   idempotency key (a retry applied twice).
//! - `exactly_once_transfers`: a transfer id is credited at most once in the cluster.
//! - `escrow_settled`: a completed job was captured once (its price) and not
//!   released; a cancelled or expired one released once and not captured (or not
//!   yet released, while its release is pending: stored with its retry timer); a
//!   live one neither; every job's hold is in its customer's ledger exactly once.
//! - `single_assignment`: no provider holds two accepted or started jobs; no job
//!   acknowledged as accepted by one provider is stored with another.
//! - `acknowledged_durable`: every acknowledged deposit, booking, acceptance and
//!   completion is in the stored data (`acked_lost` counts the missing ones).
//! - `replicas_agree` and `single_leader_per_term`: see the `shards` module; they hold
//!   trivially when wallets are not replicated.
//!
//! **Places.** A wallet's ledger is in one *place*: its home node's store when
//! wallets are not replicated (replication factor 1), its shard (`w<n>`) when they
//! are. A node whose data dir has `shards/` holds replicas of shards; each shard's
//! state is taken from the replica that applied the highest log index (the others
//! must agree with it: `replicas_agree`), and the ledger invariants above are
//! decided over the places — the nodes' own stores (which then hold no wallets) and
//! the shards. With replication factor 1 there are no shards and the places are the
//! nodes, exactly as before.

mod shards;

use fixit_actors::error::CoreError;
use fixit_actors::ids::WalletId;
use fixit_actors::job::{Job, JobStatus};
use fixit_actors::ledger::{EntryKind, LedgerEntry};
use fixit_actors::store::{Audit, Store, Transfer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hasher;
use std::path::{Path, PathBuf};

/// Violations kept per invariant for the report (the count is always exact).
pub const EXAMPLES_MAX: usize = 20;

/// The sled cache each copy is opened with.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Every invariant the checker decides, in report order.
pub const INVARIANTS: [&str; 14] = [
    "conservation",
    "transfers_balanced",
    "node_ledgers_conserved",
    "no_negative_balance",
    "ledgers_add_up",
    "single_home",
    "exactly_once_keys",
    "exactly_once_transfers",
    "escrow_settled",
    "single_assignment",
    "acknowledged_durable",
    "replicas_agree",
    "single_leader_per_term",
    "data_dirs_unchanged",
];

/// Why a check could not be made (as opposed to an invariant that failed).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A dir could not be read or copied.
    #[error("{path}: {error}")]
    Io {
        /// The file or dir.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// A copy did not open or decode as a node database.
    #[error("node {node}: {error}")]
    Storage {
        /// The node.
        node: String,
        /// What the store said.
        error: CoreError,
    },
    /// Bad arguments (no nodes, a name twice, a dir that is not one).
    #[error("{0}")]
    Invalid(String),
}

/// One stopped node: its name and data dir.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeDir {
    /// The node's name in the cluster.
    pub name: String,
    /// Its sled data dir.
    pub dir: PathBuf,
}

/// A deposit a client saw acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedDeposit {
    /// The wallet.
    pub wallet: u64,
    /// Its idempotency key.
    pub key: String,
    /// Minor units.
    pub amount: i64,
}

/// A job as far as clients saw it acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedJob {
    /// The job id (from the booking's answer or from an offer).
    pub job: u64,
    /// The customer whose booking was acknowledged with this job.
    pub booked_by: Option<u64>,
    /// The price of that booking.
    pub price: Option<i64>,
    /// The provider whose accept was acknowledged.
    pub accepted_by: Option<u64>,
    /// The provider whose completion was acknowledged.
    pub completed_by: Option<u64>,
}

/// Every operation the clients of a run saw acknowledged (a chaos run writes it
/// as `acknowledged.json` beside the data dirs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    /// Deposits.
    pub deposits: Vec<AckedDeposit>,
    /// Bookings, with acceptances and completions.
    pub jobs: Vec<AckedJob>,
    /// Jobs acknowledged on a node whose data dir was then deleted (the
    /// disk-loss scenario), as far as they were acknowledged then: jobs are kept
    /// by their region's node and are not replicated, so they went with the
    /// disk (and their ids may be given again to new jobs, which are in `jobs`).
    /// Those not found as acknowledged are counted in
    /// [`Totals::acked_jobs_lost_with_disk`], not as `acked_lost`; every wallet
    /// operation is still checked.
    #[serde(default)]
    pub lost_with_disk: Vec<AckedJob>,
}

impl Acknowledged {
    /// How many operations: deposits, bookings, acceptances and completions.
    pub fn operations(&self) -> u64 {
        let steps = |job: &AckedJob| {
            u64::from(job.booked_by.is_some())
                + u64::from(job.accepted_by.is_some())
                + u64::from(job.completed_by.is_some())
        };
        self.deposits.len() as u64 + self.jobs.iter().map(steps).sum::<u64>()
    }
}

/// What was counted in the data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Wallets stored, over all nodes.
    pub wallets: u64,
    /// Ledger entries.
    pub ledger_entries: u64,
    /// Jobs stored, by status name.
    pub jobs: BTreeMap<String, u64>,
    /// Σ (available + held).
    pub balances: i128,
    /// Σ deposits − Σ withdrawals.
    pub external: i128,
    /// Transfers in outboxes not yet credited, and their sum.
    pub in_flight: (u64, i128),
    /// Transfers in outboxes already credited (the removal was lost: harmless).
    pub delivered_not_removed: u64,
    /// Operations the clients saw acknowledged.
    pub acknowledged: u64,
    /// Cancelled or expired jobs whose release was not yet confirmed when the
    /// node stopped (its timer retries it when the node runs again).
    pub releases_pending: u64,
    /// Booking holds with no job (the booking failed between its hold and the
    /// job's creation and was not retried): money held, not lost, until a retry
    /// of the booking or an operator's release.
    pub holds_without_job: u64,
    /// Replicated wallet shards found (0 when wallets are not replicated).
    #[serde(default)]
    pub shards: u64,
    /// Shard replicas read, over all nodes.
    #[serde(default)]
    pub shard_replicas: u64,
    /// Acknowledged job steps of jobs whose node lost its disk, missing or
    /// changed (see [`Acknowledged::lost_with_disk`]): not replicated, not
    /// counted as lost.
    #[serde(default)]
    pub acked_jobs_lost_with_disk: u64,
}

/// The checker's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// Invariant name → held.
    pub invariants: BTreeMap<String, bool>,
    /// Invariant name → the first [`EXAMPLES_MAX`] violations, described.
    pub violations: BTreeMap<String, Vec<String>>,
    /// Invariant name → how many violations.
    pub violation_counts: BTreeMap<String, u64>,
    /// Acknowledged operations missing from the stored data.
    pub acked_lost: u64,
    /// What was counted.
    pub totals: Totals,
}

impl CheckOutcome {
    /// Whether every invariant held.
    pub fn holds(&self) -> bool {
        self.invariants.values().all(|held| *held)
    }

    /// The names of the invariants that failed.
    pub fn failed(&self) -> Vec<&str> {
        self.invariants
            .iter()
            .filter(|(_, held)| !**held)
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Collects violations per invariant.
#[derive(Default)]
struct Findings {
    counts: BTreeMap<&'static str, u64>,
    examples: BTreeMap<&'static str, Vec<String>>,
}

impl Findings {
    fn violated(&mut self, invariant: &'static str, what: impl FnOnce() -> String) {
        let count = self.counts.entry(invariant).or_default();
        *count += 1;
        let examples = self.examples.entry(invariant).or_default();
        if examples.len() < EXAMPLES_MAX {
            examples.push(what());
        }
    }
}

/// What one store holds that the checks need: a node's own store, or one
/// replica of a wallet shard.
struct Ledger {
    audit: Audit,
    entries: Vec<(WalletId, LedgerEntry)>,
    jobs: Vec<Job>,
    outbox: Vec<Transfer>,
}

impl Ledger {
    fn read(store: &Store) -> Result<Ledger, CoreError> {
        Ok(Ledger {
            audit: store.audit()?,
            entries: store.ledger_entries().collect::<Result<_, _>>()?,
            jobs: store.jobs()?,
            outbox: store.outbox_transfers(usize::MAX)?,
        })
    }
}

/// One node's data, read from its copy.
struct NodeData {
    name: String,
    ledger: Ledger,
    /// Its replicas of wallet shards (none unless wallets are replicated).
    replicas: Vec<shards::Replica>,
}

/// Where wallets' ledgers are kept: a node's own store, or a shard (the
/// replica that applied the most).
struct Place<'a> {
    /// `node a` or `shard w3`, for the violations.
    label: String,
    ledger: &'a Ledger,
}

/// Checks the stopped cluster in `nodes` against what its clients saw acknowledged.
pub fn check(nodes: &[NodeDir], acked: &Acknowledged) -> Result<CheckOutcome, CheckError> {
    if nodes.is_empty() {
        return Err(CheckError::Invalid("no node to check".into()));
    }
    let names: BTreeSet<&str> = nodes.iter().map(|node| node.name.as_str()).collect();
    if names.len() != nodes.len() {
        return Err(CheckError::Invalid("a node is named twice".into()));
    }
    let mut before = Vec::with_capacity(nodes.len());
    let mut data = Vec::with_capacity(nodes.len());
    for node in nodes {
        if !node.dir.join("conf").is_file() {
            return Err(CheckError::Invalid(format!(
                "{}: not a node's data dir (no sled `conf` file)",
                node.dir.display()
            )));
        }
        before.push(fingerprint(&node.dir)?);
        data.push(read_copy(node)?);
    }
    let mut findings = Findings::default();
    for (node, fingerprint_before) in nodes.iter().zip(&before) {
        if fingerprint(&node.dir)? != *fingerprint_before {
            findings.violated("data_dirs_unchanged", || {
                format!(
                    "node {}: {} changed while it was read (still running?)",
                    node.name,
                    node.dir.display()
                )
            });
        }
    }
    let totals = judge(&data, acked, &mut findings);
    let acked_lost = findings
        .counts
        .get("acknowledged_durable")
        .copied()
        .unwrap_or(0);
    Ok(CheckOutcome {
        invariants: INVARIANTS
            .iter()
            .map(|name| (name.to_string(), !findings.counts.contains_key(name)))
            .collect(),
        violations: findings
            .examples
            .into_iter()
            .map(|(name, examples)| (name.to_owned(), examples))
            .collect(),
        violation_counts: findings
            .counts
            .into_iter()
            .map(|(name, count)| (name.to_owned(), count))
            .collect(),
        acked_lost,
        totals,
    })
}

/// Copies `node.dir` to a temporary dir, opens the copy and reads what the checks
/// need; the copy is deleted afterwards.
fn read_copy(node: &NodeDir) -> Result<NodeData, CheckError> {
    let scratch = tempfile::tempdir().map_err(|error| CheckError::Io {
        path: std::env::temp_dir(),
        error,
    })?;
    let copy = scratch.path().join("db");
    copy_dir(&node.dir, &copy)?;
    let storage = |error| CheckError::Storage {
        node: node.name.clone(),
        error,
    };
    let store = Store::open(&copy, CACHE_BYTES).map_err(storage)?;
    let ledger = Ledger::read(&store).map_err(storage)?;
    drop(store);
    let shards_dir = copy.join(shards::SHARDS_DIR);
    let replicas = if shards_dir.is_dir() {
        shards::read_replicas(&node.name, &shards_dir).map_err(storage)?
    } else {
        Vec::new()
    };
    Ok(NodeData {
        name: node.name.clone(),
        ledger,
        replicas,
    })
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckError + '_ {
    move |error| CheckError::Io {
        path: path.to_owned(),
        error,
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), CheckError> {
    std::fs::create_dir_all(to).map_err(io_error(to))?;
    for item in std::fs::read_dir(from).map_err(io_error(from))? {
        let item = item.map_err(io_error(from))?;
        let (source, target) = (item.path(), to.join(item.file_name()));
        if item.file_type().map_err(io_error(&source))?.is_dir() {
            copy_dir(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(io_error(&source))?;
        }
    }
    Ok(())
}

/// Every file under `dir` with its length, modification time and content hash.
fn fingerprint(dir: &Path) -> Result<BTreeMap<PathBuf, (u64, u128, u64)>, CheckError> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for item in std::fs::read_dir(&at).map_err(io_error(&at))? {
            let path = item.map_err(io_error(&at))?.path();
            let meta = std::fs::metadata(&path).map_err(io_error(&path))?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_nanos());
            let bytes = std::fs::read(&path).map_err(io_error(&path))?;
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            hasher.write(&bytes);
            files.insert(path, (meta.len(), modified, hasher.finish()));
        }
    }
    Ok(files)
}

/// Whether a ledger entry is the credit of a cross-node transfer (its key is the
/// transfer id).
fn is_transfer_credit(entry: &LedgerEntry) -> bool {
    matches!(entry.kind, EntryKind::Payment | EntryKind::Fee) && entry.key.starts_with("xfer-")
}

/// Runs every invariant over the data; returns the totals.
fn judge(data: &[NodeData], acked: &Acknowledged, findings: &mut Findings) -> Totals {
    let mut totals = Totals {
        acknowledged: acked.operations(),
        ..Totals::default()
    };
    let names: Vec<&str> = data.iter().map(|node| node.name.as_str()).collect();
    let replicas: Vec<&shards::Replica> =
        data.iter().flat_map(|node| node.replicas.iter()).collect();
    let by_shard = shards::by_shard(&replicas);
    totals.shards = by_shard.len() as u64;
    totals.shard_replicas = replicas.len() as u64;
    shards::judge_agreement(&by_shard, &names, findings);
    shards::judge_leaders(&by_shard, &names, findings);
    let mut places: Vec<Place<'_>> = data
        .iter()
        .map(|node| Place {
            label: format!("node {}", node.name),
            ledger: &node.ledger,
        })
        .collect();
    places.extend(by_shard.iter().map(|(shard, replicas)| {
        let state = shards::state_of(replicas);
        Place {
            label: format!("shard {shard}"),
            ledger: &state.ledger,
        }
    }));
    shards::judge_placement(&by_shard, findings);
    judge_places(&places, acked, findings, totals)
}

/// The ledger invariants over the places wallets are kept in.
fn judge_places(
    places: &[Place<'_>],
    acked: &Acknowledged,
    findings: &mut Findings,
    mut totals: Totals,
) -> Totals {
    // Ledgers: homes, keys, transfer credits.
    let mut homes: HashMap<WalletId, BTreeSet<&str>> = HashMap::new();
    let mut keyed: HashMap<(WalletId, &str, EntryKind), Vec<&LedgerEntry>> = HashMap::new();
    let mut credited: HashMap<&str, (u64, i64)> = HashMap::new();
    for place in places {
        let mut received_here = 0i128;
        for (wallet, entry) in &place.ledger.entries {
            totals.ledger_entries += 1;
            homes
                .entry(*wallet)
                .or_default()
                .insert(place.label.as_str());
            keyed
                .entry((*wallet, entry.key.as_str(), entry.kind))
                .or_default()
                .push(entry);
            if is_transfer_credit(entry) {
                let credit = credited.entry(entry.key.as_str()).or_default();
                credit.0 += 1;
                credit.1 = entry.available_delta;
                received_here += i128::from(entry.available_delta);
            }
        }
        if received_here != i128::from(place.ledger.audit.flows.received) {
            findings.violated("transfers_balanced", || {
                format!(
                    "{}: received total {} but its ledgers credit {received_here}",
                    place.label, place.ledger.audit.flows.received
                )
            });
        }
    }
    for (wallet, places) in &homes {
        if places.len() > 1 {
            findings.violated("single_home", || {
                format!("wallet {} has ledger entries in {places:?}", wallet.0)
            });
        }
    }
    for ((wallet, key, kind), entries) in &keyed {
        if entries.len() > 1 {
            findings.violated("exactly_once_keys", || {
                let seqs: Vec<u64> = entries.iter().map(|entry| entry.seq).collect();
                format!(
                    "wallet {}: key {key:?} applied {} times as {kind:?} (entries {seqs:?})",
                    wallet.0,
                    entries.len()
                )
            });
        }
    }
    for (id, (count, _)) in &credited {
        if *count > 1 {
            findings.violated("exactly_once_transfers", || {
                format!("transfer {id} credited {count} times")
            });
        }
    }
    // Money: per place, then across the cluster with the outboxes.
    let (mut sent, mut received) = (0i128, 0i128);
    for place in places {
        let audit = &place.ledger.audit;
        totals.wallets += audit.wallets;
        totals.balances += audit.total_balance;
        totals.external += i128::from(audit.flows.deposited) - i128::from(audit.flows.withdrawn);
        sent += i128::from(audit.flows.sent);
        received += i128::from(audit.flows.received);
        if !audit.conserved() {
            findings.violated("node_ledgers_conserved", || {
                format!(
                    "{}: balances {} but flows say {}",
                    place.label,
                    audit.total_balance,
                    audit.flows.expected_balance()
                )
            });
        }
        for wallet in &audit.negative_wallets {
            findings.violated("no_negative_balance", || {
                format!("{}: wallet {} is negative", place.label, wallet.0)
            });
        }
        for wallet in &audit.ledger_mismatches {
            findings.violated("ledgers_add_up", || {
                format!(
                    "{}: wallet {}'s entries do not add up to its balance",
                    place.label, wallet.0
                )
            });
        }
        for transfer in &place.ledger.outbox {
            if credited.contains_key(transfer.id.as_str()) {
                totals.delivered_not_removed += 1;
            } else {
                totals.in_flight.0 += 1;
                totals.in_flight.1 += i128::from(transfer.amount);
            }
        }
    }
    if totals.balances + totals.in_flight.1 != totals.external {
        findings.violated("conservation", || {
            format!(
                "Σ balances {} + in flight {} ≠ Σ deposits − withdrawals {}",
                totals.balances, totals.in_flight.1, totals.external
            )
        });
    }
    if sent != received + totals.in_flight.1 {
        findings.violated("transfers_balanced", || {
            format!(
                "Σ sent {sent} ≠ Σ received {received} + in flight {}",
                totals.in_flight.1
            )
        });
    }
    let jobs: HashMap<u64, &Job> = places
        .iter()
        .flat_map(|place| place.ledger.jobs.iter())
        .map(|job| (job.id.0, job))
        .collect();
    judge_jobs(&jobs, &keyed, findings, &mut totals);
    judge_acknowledged(acked, &jobs, &keyed, findings, &mut totals);
    totals
}

/// Counts a wallet's entries of `kind` under `key`.
type Keyed<'a> = HashMap<(WalletId, &'a str, EntryKind), Vec<&'a LedgerEntry>>;

fn count(keyed: &Keyed<'_>, wallet: WalletId, key: &str, kind: EntryKind) -> usize {
    keyed.get(&(wallet, key, kind)).map_or(0, Vec::len)
}

/// Escrow per job and single assignment.
fn judge_jobs(
    jobs: &HashMap<u64, &Job>,
    keyed: &Keyed<'_>,
    findings: &mut Findings,
    totals: &mut Totals,
) {
    let hold_keys: BTreeSet<(WalletId, &str)> = jobs
        .values()
        .map(|job| (WalletId::from(job.customer), job.hold_key.as_str()))
        .collect();
    totals.holds_without_job = keyed
        .keys()
        .filter(|(wallet, key, kind)| {
            *kind == EntryKind::Hold
                && key.starts_with("job-request-")
                && !hold_keys.contains(&(*wallet, *key))
        })
        .count() as u64;
    let mut live_by_provider: HashMap<u64, Vec<u64>> = HashMap::new();
    for job in jobs.values() {
        *totals.jobs.entry(job.status.name().to_owned()).or_default() += 1;
        let wallet = WalletId::from(job.customer);
        let holds = count(keyed, wallet, &job.hold_key, EntryKind::Hold);
        let capture_key = job.capture_key();
        let captures = keyed
            .get(&(wallet, capture_key.as_str(), EntryKind::Capture))
            .map_or(&[][..], Vec::as_slice);
        let releases = count(keyed, wallet, &job.release_key(), EntryKind::Release);
        let (captures_wanted, releases_wanted) = match job.status {
            JobStatus::Completed { .. } => (1, 0),
            // Ended, release not yet confirmed: the job's timer retries it (under
            // the same key) when the node runs again; none or one so far.
            JobStatus::Cancelled | JobStatus::Expired if job.release_pending() => {
                totals.releases_pending += 1;
                (0, releases.min(1))
            }
            JobStatus::Cancelled | JobStatus::Expired => (0, 1),
            _ => (0, 0),
        };
        let price_captured = captures
            .iter()
            .all(|entry| entry.held_delta == -job.request.price);
        if holds != 1
            || captures.len() != captures_wanted
            || releases != releases_wanted
            || !price_captured
        {
            findings.violated("escrow_settled", || {
                format!(
                    "{} ({}): {holds} holds, {} captures, {releases} releases{}",
                    job.id,
                    job.status.name(),
                    captures.len(),
                    if price_captured {
                        ""
                    } else {
                        ", a capture of another amount than the price"
                    }
                )
            });
        }
        if let JobStatus::Accepted { provider } | JobStatus::InProgress { provider } = job.status {
            live_by_provider
                .entry(provider.0)
                .or_default()
                .push(job.id.0);
        }
    }
    for (provider, live) in &live_by_provider {
        if live.len() > 1 {
            findings.violated("single_assignment", || {
                format!(
                    "provider {provider} holds {} live jobs: {live:?}",
                    live.len()
                )
            });
        }
    }
}

/// Every acknowledged operation is in the data.
fn judge_acknowledged(
    acked: &Acknowledged,
    jobs: &HashMap<u64, &Job>,
    keyed: &Keyed<'_>,
    findings: &mut Findings,
    totals: &mut Totals,
) {
    for deposit in &acked.deposits {
        let stored = keyed
            .get(&(
                WalletId(deposit.wallet),
                deposit.key.as_str(),
                EntryKind::Deposit,
            ))
            .is_some_and(|entries| {
                entries
                    .iter()
                    .any(|entry| entry.available_delta == deposit.amount)
            });
        if !stored {
            findings.violated("acknowledged_durable", || {
                format!(
                    "deposit {:?} of {} to wallet {} is not in its ledger",
                    deposit.key, deposit.amount, deposit.wallet
                )
            });
        }
    }
    // Kept by their region's node only, whose disk was deleted: their steps may
    // be gone, or their ids given again to new jobs after the restart.
    totals.acked_jobs_lost_with_disk = acked
        .lost_with_disk
        .iter()
        .filter(|ack| !job_ack_kept(ack, jobs.get(&ack.job).copied()))
        .count() as u64;
    for ack in &acked.jobs {
        let Some(job) = jobs.get(&ack.job) else {
            findings.violated("acknowledged_durable", || {
                format!("booked job {} is not stored", ack.job)
            });
            continue;
        };
        let customer_kept = ack
            .booked_by
            .is_none_or(|customer| customer == job.customer.0);
        let price_kept = ack.price.is_none_or(|price| price == job.request.price);
        if !customer_kept || !price_kept {
            findings.violated("acknowledged_durable", || {
                format!(
                    "job {} is stored for customer {} at {}, booked by {:?} at {:?}",
                    ack.job, job.customer.0, job.request.price, ack.booked_by, ack.price
                )
            });
        }
        if let Some(provider) = ack.accepted_by {
            let kept = match job.status {
                JobStatus::Accepted { provider: p }
                | JobStatus::InProgress { provider: p }
                | JobStatus::Completed { provider: p } => p.0 == provider,
                JobStatus::Cancelled => true,
                _ => false,
            };
            if !kept {
                findings.violated("single_assignment", || {
                    format!(
                        "job {} was acknowledged as accepted by provider {provider} but is stored {:?}",
                        ack.job, job.status
                    )
                });
            }
        }
        if let Some(provider) = ack.completed_by {
            if job.status
                != (JobStatus::Completed {
                    provider: fixit_actors::ids::ProviderId(provider),
                })
            {
                findings.violated("acknowledged_durable", || {
                    format!(
                        "job {} was acknowledged as completed by provider {provider} but is stored {:?}",
                        ack.job, job.status
                    )
                });
            }
        }
    }
}

/// Whether every acknowledged step of `ack` is in the stored `job`.
fn job_ack_kept(ack: &AckedJob, job: Option<&Job>) -> bool {
    let Some(job) = job else {
        return false;
    };
    let provider_of = |status: &JobStatus| match status {
        JobStatus::Accepted { provider }
        | JobStatus::InProgress { provider }
        | JobStatus::Completed { provider } => Some(provider.0),
        _ => None,
    };
    ack.booked_by
        .is_none_or(|customer| customer == job.customer.0)
        && ack.price.is_none_or(|price| price == job.request.price)
        && ack
            .accepted_by
            .is_none_or(|provider| provider_of(&job.status) == Some(provider))
        && ack.completed_by.is_none_or(|provider| {
            matches!(job.status, JobStatus::Completed { .. })
                && provider_of(&job.status) == Some(provider)
        })
}
