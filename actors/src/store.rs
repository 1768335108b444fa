//! The node's sled database: one tree per kind, every command's changes in one
//! transaction. Durability of acknowledgements is [`crate::durability`]'s job.

use crate::codec;
use crate::error::{CoreError, CoreResult};
use crate::ids::{CustomerId, JobId, WalletId};
use crate::ledger::{self, Balance, LedgerEntry, LedgerOp};
pub use fixit_protocol::ledger::OpOutcome;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};
use std::path::Path;

/// Longest ledger page returned by one history call.
pub const HISTORY_PAGE_MAX: usize = 1_000;

/// A wallet's stored record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletRecord {
    /// Current balance.
    pub balance: Balance,
    /// Sequence number of the next ledger entry.
    pub next_seq: u64,
}

#[derive(Serialize, Deserialize)]
struct IdempotencyRecord {
    request: Vec<u8>,
    outcome: OpOutcome,
}

/// Money that crossed the node's boundary: the right side of conservation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flows {
    /// Σ deposits.
    pub deposited: i64,
    /// Σ withdrawals.
    pub withdrawn: i64,
    /// Σ transfers written to the outbox for wallets on other nodes.
    pub sent: i64,
    /// Σ transfers from other nodes credited here.
    pub received: i64,
}

impl Flows {
    /// What the node's wallets must hold: deposits − withdrawals − sent + received.
    pub fn expected_balance(&self) -> i128 {
        i128::from(self.deposited) - i128::from(self.withdrawn) - i128::from(self.sent)
            + i128::from(self.received)
    }
}

pub use crate::ledger::{Transfer, WalletHome};

/// The outbox key prefix of the transfers to `node` (node names never hold `/`).
fn outbox_prefix(node: &str) -> Vec<u8> {
    format!("{node}/").into_bytes()
}

/// A transfer's key in the outbox: receiving node, then transfer id.
fn outbox_key(transfer: &Transfer) -> Vec<u8> {
    let mut key = outbox_prefix(&transfer.to_node);
    key.extend_from_slice(transfer.id.as_bytes());
    key
}

/// Every wallet on this node (a node outside any cluster).
pub fn all_local(_: WalletId) -> Option<String> {
    None
}

/// What an audit of the stored ledger found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Wallets stored.
    pub wallets: u64,
    /// Σ (available + held).
    pub total_balance: i128,
    /// Money that entered and left.
    pub flows: Flows,
    /// Wallets with a negative part.
    pub negative_wallets: Vec<WalletId>,
    /// Wallets whose ledger entries do not add up to their balance.
    pub ledger_mismatches: Vec<WalletId>,
    /// Transfers in the outbox, not yet acknowledged by their receiver.
    pub outbox_transfers: u64,
    /// Σ of their amounts.
    pub outbox_amount: i128,
}

impl Audit {
    /// Σ balances = Σ deposits − Σ withdrawals − Σ sent + Σ received.
    pub fn conserved(&self) -> bool {
        self.total_balance == self.flows.expected_balance()
    }

    /// Adds another store's audit to this one (shards summed up).
    pub fn add(&mut self, other: Audit) {
        self.wallets += other.wallets;
        self.total_balance += other.total_balance;
        self.flows.deposited += other.flows.deposited;
        self.flows.withdrawn += other.flows.withdrawn;
        self.flows.sent += other.flows.sent;
        self.flows.received += other.flows.received;
        self.negative_wallets.extend(other.negative_wallets);
        self.ledger_mismatches.extend(other.ledger_mismatches);
        self.outbox_transfers += other.outbox_transfers;
        self.outbox_amount += other.outbox_amount;
    }

    /// Every invariant the ledger alone can show.
    pub fn holds(&self) -> bool {
        self.conserved() && self.negative_wallets.is_empty() && self.ledger_mismatches.is_empty()
    }
}

/// A job-request idempotency record: which job a customer's key created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequestRecord {
    /// The encoded request, compared on replay.
    pub request: Vec<u8>,
    /// The job it created.
    pub job: JobId,
}

/// The node's database and its trees.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    wallets: sled::Tree,
    ledger: sled::Tree,
    idempotency: sled::Tree,
    meta: sled::Tree,
    pub(crate) providers: sled::Tree,
    pub(crate) jobs: sled::Tree,
    job_requests: sled::Tree,
    customer_jobs: sled::Tree,
    pub(crate) offer_deadlines: sled::Tree,
    outbox: sled::Tree,
    revocations: sled::Tree,
    /// Cluster-wide settings by key: service areas and zones (`area/<name>`),
    /// providers' work areas (`work/<provider>`).
    settings: sled::Tree,
    /// How each booking key was priced (price held, zone charge).
    booking_prices: sled::Tree,
}

const FLOWS_KEY: &[u8] = b"flows";

/// Marks a database whose wallets belong to a (role, subject) principal:
/// provider wallets at `PROVIDER_WALLETS + id`, the platform's above them.
const WALLET_IDS: Marker = Marker {
    key: b"wallet_ids",
    value: b"role-scoped",
    what: "wallet ids",
    older: "customers and providers with the same id shared a wallet and wallet 0 was \
            the platform's; its balances cannot be assigned to their owners safely, so it \
            is not migrated: start with an empty data dir (after paying out or exporting \
            the old one)",
};

/// Marks a database whose job records carry their zone charge.
const JOB_RECORDS: Marker = Marker {
    key: b"job_records",
    value: b"zone-charge",
    what: "job records",
    older: "job records had no zone charge; they do not decode in this version: let its \
            jobs settle, then start with an empty data dir",
};

/// A format mark in the `meta` tree: what a database's records are.
struct Marker {
    key: &'static [u8],
    value: &'static [u8],
    what: &'static str,
    /// What the older format was, and what to do.
    older: &'static str,
}

impl Marker {
    /// Refuses a database of an older format (its `records` tree holds something
    /// and it has no mark) or another mark, and marks a new one.
    fn check(&self, meta: &sled::Tree, records: &sled::Tree, dir: &Path) -> CoreResult<()> {
        match meta.get(self.key).map_err(storage)? {
            Some(marked) if marked.as_ref() == self.value => Ok(()),
            Some(other) => Err(CoreError::Internal(format!(
                "data dir {}: {} {:?} are not this version's",
                dir.display(),
                self.what,
                String::from_utf8_lossy(&other)
            ))),
            None if records.is_empty() => {
                meta.insert(self.key, self.value).map_err(storage)?;
                crate::sled_gate::flush(meta).map_err(storage)?;
                Ok(())
            }
            None => Err(CoreError::Internal(format!(
                "data dir {} was written by a version where {}",
                dir.display(),
                self.older
            ))),
        }
    }
}

/// Opens (or creates) a sled database in `dir`, a directory only its owner may
/// read (0700; an existing one is narrowed to that).
pub fn open_db(dir: &Path, cache_bytes: u64) -> CoreResult<sled::Db> {
    fixit_protocol::files::create_private_dir(dir)
        .map_err(|error| CoreError::Internal(format!("data dir: {error}")))?;
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(storage)
}

/// One tree's records: (key, value) in key order.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Every tree's records, by tree name (see [`Store::export`]).
pub type TreeRecords = Vec<(String, Records)>;

type TxResult<T> = Result<T, ConflictableTransactionError<CoreError>>;

fn storage(error: impl std::fmt::Display) -> CoreError {
    CoreError::Unavailable(format!("storage: {error}"))
}

fn from_tx(error: TransactionError<CoreError>) -> CoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => storage(error),
    }
}

fn corrupt(error: codec::CodecError) -> CoreError {
    CoreError::Internal(format!("stored record does not decode: {error}"))
}

fn tx_decode<T: DeserializeOwned>(bytes: &[u8]) -> TxResult<T> {
    codec::decode(bytes).map_err(|e| ConflictableTransactionError::Abort(corrupt(e)))
}

fn tx_encode<T: Serialize>(value: &T) -> TxResult<Vec<u8>> {
    codec::encode(value)
        .map_err(|e| ConflictableTransactionError::Abort(CoreError::Internal(e.to_string())))
}

fn pair_key(first: u64, second: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + second.len());
    key.extend_from_slice(&first.to_be_bytes());
    key.extend_from_slice(second);
    key
}

impl Store {
    /// Opens (or creates) the database in `dir`, a directory only its owner
    /// may read (0700; an existing one is narrowed to that).
    pub fn open(dir: &Path, cache_bytes: u64) -> CoreResult<Store> {
        let db = open_db(dir, cache_bytes)?;
        Store::open_in(db, "", dir)
    }

    /// The store whose trees are those of `db` named with `prefix` (a shard's
    /// state machine: several shards share one database, each its own trees).
    pub fn open_in(db: sled::Db, prefix: &str, dir: &Path) -> CoreResult<Store> {
        let tree = |name: &str| db.open_tree(format!("{prefix}{name}")).map_err(storage);
        WALLET_IDS.check(&tree("meta")?, &tree("wallets")?, dir)?;
        JOB_RECORDS.check(&tree("meta")?, &tree("jobs")?, dir)?;
        Ok(Store {
            wallets: tree("wallets")?,
            ledger: tree("ledger")?,
            idempotency: tree("idempotency")?,
            meta: tree("meta")?,
            providers: tree("providers")?,
            jobs: tree("jobs")?,
            job_requests: tree("job_requests")?,
            customer_jobs: tree("customer_jobs")?,
            offer_deadlines: tree("offer_deadlines")?,
            outbox: tree("outbox")?,
            revocations: tree("revocations")?,
            settings: tree("settings")?,
            booking_prices: tree("booking_prices")?,
            db,
        })
    }

    /// Every record of the store's trees, tree by tree (a shard's snapshot).
    pub fn export(&self) -> CoreResult<TreeRecords> {
        self.trees()
            .into_iter()
            .map(|(name, tree)| {
                let records = tree
                    .iter()
                    .map(|item| {
                        item.map(|(key, value)| (key.to_vec(), value.to_vec()))
                            .map_err(storage)
                    })
                    .collect::<CoreResult<Vec<_>>>()?;
                Ok((name.to_owned(), records))
            })
            .collect()
    }

    /// Replaces every record of the store's trees by `trees` (from [`Store::export`]
    /// of another replica); trees not named there end up empty.
    pub fn import(&self, trees: &[(String, Records)]) -> CoreResult<()> {
        for (name, tree) in self.trees() {
            tree.clear().map_err(storage)?;
            let Some((_, records)) = trees.iter().find(|(named, _)| named == name) else {
                continue;
            };
            crate::sled_gate::write(|| {
                tree.transaction(|tx| {
                    for (key, value) in records {
                        tx.insert(key.as_slice(), value.as_slice())?;
                    }
                    Ok::<(), ConflictableTransactionError<CoreError>>(())
                })
            })
            .map_err(from_tx)?;
        }
        Ok(())
    }

    /// A digest of every record (FNV-1a 64 over tree names, keys and values in
    /// order): two replicas that applied the same log hold the same digest.
    pub fn digest(&self) -> CoreResult<u64> {
        const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = FNV_OFFSET;
        let mut feed = |bytes: &[u8]| {
            for chunk in [&(bytes.len() as u64).to_be_bytes()[..], bytes] {
                for byte in chunk {
                    hash = (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME);
                }
            }
        };
        for (name, tree) in self.trees() {
            feed(name.as_bytes());
            for item in tree.iter() {
                let (key, value) = item.map_err(storage)?;
                feed(&key);
                feed(&value);
            }
        }
        Ok(hash)
    }

    /// The store's trees by name (without the shard prefix).
    fn trees(&self) -> [(&'static str, &sled::Tree); 13] {
        [
            ("wallets", &self.wallets),
            ("ledger", &self.ledger),
            ("idempotency", &self.idempotency),
            ("meta", &self.meta),
            ("providers", &self.providers),
            ("jobs", &self.jobs),
            ("job_requests", &self.job_requests),
            ("customer_jobs", &self.customer_jobs),
            ("offer_deadlines", &self.offer_deadlines),
            ("outbox", &self.outbox),
            ("revocations", &self.revocations),
            ("settings", &self.settings),
            ("booking_prices", &self.booking_prices),
        ]
    }

    /// Makes every change so far durable (fsync). Blocking: call from a blocking thread.
    pub fn flush(&self) -> CoreResult<usize> {
        crate::sled_gate::flush(&self.db).map_err(storage)
    }

    /// Stores a token revocation (encoded by the caller) under `key`, replacing
    /// an earlier one under the same key, and makes it durable before returning.
    /// Blocking: call from a blocking thread.
    pub fn put_revocation(&self, key: &[u8], record: &[u8]) -> CoreResult<()> {
        self.revocations.insert(key, record).map_err(storage)?;
        crate::sled_gate::flush(&self.revocations).map_err(storage)?;
        Ok(())
    }

    /// Stores settings (key, encoded record), durable before returning.
    /// Blocking: call from a blocking thread.
    pub fn put_settings(&self, records: &[(String, Vec<u8>)]) -> CoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        crate::sled_gate::write(|| {
            self.settings.transaction(|tx| {
                for (key, record) in records {
                    tx.insert(key.as_bytes(), record.as_slice())?;
                }
                Ok::<(), ConflictableTransactionError<CoreError>>(())
            })
        })
        .map_err(from_tx)?;
        crate::sled_gate::flush(&self.settings).map_err(storage)?;
        Ok(())
    }

    /// A mark this node keeps for itself (not replicated) under `key`.
    pub fn local_mark(&self, key: &str) -> CoreResult<Option<Vec<u8>>> {
        Ok(self
            .meta
            .get(format!("local/{key}").as_bytes())
            .map_err(storage)?
            .map(|bytes| bytes.to_vec()))
    }

    /// Sets a local mark (durable with the next flush).
    pub fn set_local_mark(&self, key: &str, value: &[u8]) -> CoreResult<()> {
        self.meta
            .insert(format!("local/{key}").as_bytes(), value)
            .map_err(storage)?;
        Ok(())
    }

    /// The setting stored under `key`, as stored.
    pub fn setting(&self, key: &[u8]) -> CoreResult<Option<Vec<u8>>> {
        Ok(self
            .settings
            .get(key)
            .map_err(storage)?
            .map(|bytes| bytes.to_vec()))
    }

    /// The settings whose key starts with `prefix`, as stored.
    pub fn settings(&self, prefix: &[u8]) -> CoreResult<Vec<Vec<u8>>> {
        self.settings
            .scan_prefix(prefix)
            .values()
            .map(|value| value.map(|bytes| bytes.to_vec()).map_err(storage))
            .collect()
    }

    /// Every stored token revocation, as stored.
    pub fn revocations(&self) -> CoreResult<Vec<Vec<u8>>> {
        self.revocations
            .iter()
            .values()
            .map(|value| value.map(|bytes| bytes.to_vec()).map_err(storage))
            .collect()
    }

    /// A wallet's current balance (zero for a wallet never used).
    pub fn balance(&self, wallet: WalletId) -> CoreResult<Balance> {
        Ok(self.wallet_record(wallet)?.balance)
    }

    /// A wallet's stored record.
    pub fn wallet_record(&self, wallet: WalletId) -> CoreResult<WalletRecord> {
        Ok(self
            .get(&self.wallets, &wallet.0.to_be_bytes())?
            .unwrap_or_default())
    }

    /// Applies a ledger operation with its idempotency key in one transaction.
    ///
    /// A key seen before with the same operation returns the first outcome and
    /// changes nothing; with a different operation it is refused. The ledger
    /// decides the postings and where each goes ([`ledger::plan`],
    /// [`ledger::route`]); postings to wallets on another node become outbox
    /// [`Transfer`]s ([`ledger::transfer`]) in the same transaction.
    pub fn apply(
        &self,
        wallet: WalletId,
        key: &str,
        op: &LedgerOp,
        now_ms: u64,
        home: WalletHome<'_>,
    ) -> CoreResult<OpOutcome> {
        let command = LedgerCommand {
            wallet,
            key,
            op,
            now_ms,
        };
        let prepared = Prepared::new(&command, home)?;
        crate::sled_gate::write(|| {
            self.ledger_trees()
                .transaction(|trees| apply_in(&LedgerTx::of(trees), &prepared, home))
        })
        .map_err(from_tx)?
    }

    /// Applies `commands` in order, as [`Store::apply`] would one after the
    /// other, in one transaction that also writes `mark` (a replicated state
    /// machine's applied log id): the process-wide write lock and the wait
    /// for running flushes are paid once for all, and after a crash the
    /// commands are either all applied and marked or none is — applied again
    /// half-way, a command refused the first time could see the later ones'
    /// effects and succeed on this replica only. Each command gets its own
    /// answer: a refusal is an answer and changes nothing. An I/O failure, or
    /// a command failing after it began to write (a bug: the transaction is
    /// dropped whole), is the call's error and nothing is applied.
    pub fn apply_many(
        &self,
        commands: &[LedgerCommand<'_>],
        home: WalletHome<'_>,
        mark: &Mark<'_>,
    ) -> CoreResult<Vec<CoreResult<OpOutcome>>> {
        let prepared: Vec<CoreResult<Prepared<'_>>> = commands
            .iter()
            .map(|command| Prepared::new(command, home))
            .collect();
        let (wallets, ledger, idempotency, meta, outbox) = self.ledger_trees();
        crate::sled_gate::write(|| {
            (wallets, ledger, idempotency, meta, outbox, mark.tree).transaction(
                |(wallets, ledger, idempotency, meta, outbox, marks)| {
                    let tx = LedgerTx {
                        wallets,
                        ledger,
                        idempotency,
                        meta,
                        outbox,
                    };
                    let answers = prepared
                        .iter()
                        .map(|prepared| match prepared {
                            Ok(prepared) => apply_in(&tx, prepared, home),
                            Err(refused) => Ok(Err(refused.clone())),
                        })
                        .collect::<TxResult<Vec<_>>>()?;
                    for (key, value) in mark.records {
                        marks.insert(key.as_slice(), value.as_slice())?;
                    }
                    Ok(answers)
                },
            )
        })
        .map_err(|error| match error {
            TransactionError::Storage(error) => storage(error),
            TransactionError::Abort(error) => CoreError::Internal(format!(
                "a batch of {} ledger operations could not be applied: {error}",
                commands.len()
            )),
        })
    }

    /// The trees a ledger operation writes, for one transaction.
    fn ledger_trees(
        &self,
    ) -> (
        &sled::Tree,
        &sled::Tree,
        &sled::Tree,
        &sled::Tree,
        &sled::Tree,
    ) {
        (
            &self.wallets,
            &self.ledger,
            &self.idempotency,
            &self.meta,
            &self.outbox,
        )
    }

    /// Up to `limit` ledger entries of a wallet from `from_seq` on.
    pub fn history(
        &self,
        wallet: WalletId,
        from_seq: u64,
        limit: usize,
    ) -> CoreResult<Vec<LedgerEntry>> {
        let start = pair_key(wallet.0, &from_seq.to_be_bytes());
        let end = pair_key(wallet.0, &u64::MAX.to_be_bytes());
        self.ledger
            .range(start..=end)
            .take(limit.min(HISTORY_PAGE_MAX))
            .map(|item| {
                let (_, value) = item.map_err(storage)?;
                codec::decode(&value).map_err(corrupt)
            })
            .collect()
    }

    /// Checks the whole ledger: conservation, no negative part, entries add up.
    pub fn audit(&self) -> CoreResult<Audit> {
        let mut audit = Audit {
            flows: self.flows()?,
            ..Audit::default()
        };
        (audit.outbox_transfers, audit.outbox_amount) = self.outbox_backlog()?;
        for item in self.wallets.iter() {
            let (key, value) = item.map_err(storage)?;
            let id = WalletId(u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| CoreError::Internal("bad wallet key".into()))?,
            ));
            let record: WalletRecord = codec::decode(&value).map_err(corrupt)?;
            audit.wallets += 1;
            audit.total_balance += i128::from(record.balance.total());
            if record.balance.available < 0 || record.balance.held < 0 {
                audit.negative_wallets.push(id);
            }
            if self.replay_ledger(id)? != record.balance {
                audit.ledger_mismatches.push(id);
            }
        }
        Ok(audit)
    }

    fn replay_ledger(&self, wallet: WalletId) -> CoreResult<Balance> {
        let mut balance = Balance::default();
        for item in self.ledger.scan_prefix(wallet.0.to_be_bytes()) {
            let (_, value) = item.map_err(storage)?;
            let entry: LedgerEntry = codec::decode(&value).map_err(corrupt)?;
            balance.available += entry.available_delta;
            balance.held += entry.held_delta;
        }
        Ok(balance)
    }

    /// The node-wide money totals (zero on a fresh node).
    pub fn flows(&self) -> CoreResult<Flows> {
        Ok(self.get(&self.meta, FLOWS_KEY)?.unwrap_or_default())
    }

    /// Every ledger entry with its wallet, by wallet then sequence number (for
    /// checkers that read a whole database).
    pub fn ledger_entries(&self) -> impl Iterator<Item = CoreResult<(WalletId, LedgerEntry)>> + '_ {
        self.ledger.iter().map(|item| {
            let (key, value) = item.map_err(storage)?;
            let wallet: [u8; 8] = key
                .get(..8)
                .and_then(|id| id.try_into().ok())
                .ok_or_else(|| CoreError::Internal("bad ledger key".into()))?;
            let entry = codec::decode(&value).map_err(corrupt)?;
            Ok((WalletId(u64::from_be_bytes(wallet)), entry))
        })
    }

    /// Every stored job.
    pub fn jobs(&self) -> CoreResult<Vec<crate::job::Job>> {
        self.all_by_id(&self.jobs)
    }

    /// Every stored provider.
    pub fn providers(&self) -> CoreResult<Vec<crate::provider::Provider>> {
        self.all_by_id(&self.providers)
    }

    /// Up to `limit` undelivered transfers, by receiving node, then id.
    pub fn outbox_transfers(&self, limit: usize) -> CoreResult<Vec<Transfer>> {
        self.records_by_id(&self.outbox, limit, false)
    }

    /// Up to `limit` undelivered transfers to node `to_node`: one node's backlog
    /// never hides another's (the outbox is keyed by receiving node first).
    pub fn outbox_transfers_to(&self, to_node: &str, limit: usize) -> CoreResult<Vec<Transfer>> {
        self.outbox
            .scan_prefix(outbox_prefix(to_node))
            .values()
            .take(limit)
            .map(|value| codec::decode(&value.map_err(storage)?).map_err(corrupt))
            .collect()
    }

    /// How many transfers wait in the outbox, and their sum.
    pub fn outbox_backlog(&self) -> CoreResult<(u64, i128)> {
        let mut backlog = (0u64, 0i128);
        for transfer in self.outbox_transfers(usize::MAX)? {
            backlog.0 += 1;
            backlog.1 += i128::from(transfer.amount);
        }
        Ok(backlog)
    }

    /// Forgets a transfer its receiver acknowledged (a lost removal only means one
    /// more delivery, which the receiver's idempotency absorbs).
    pub fn remove_transfer(&self, transfer: &Transfer) -> CoreResult<bool> {
        Ok(self
            .outbox
            .remove(outbox_key(transfer))
            .map_err(storage)?
            .is_some())
    }

    /// Whether an idempotency key has been applied to a wallet.
    pub fn key_applied(&self, wallet: WalletId, key: &str) -> CoreResult<bool> {
        self.idempotency
            .contains_key(pair_key(wallet.0, key.as_bytes()))
            .map_err(storage)
    }

    /// Looks up which job a customer's request key created.
    pub fn job_request(
        &self,
        customer: CustomerId,
        key: &str,
    ) -> CoreResult<Option<JobRequestRecord>> {
        self.get(&self.job_requests, &pair_key(customer.0, key.as_bytes()))
    }

    /// How a booking under this key was priced (the price held and its zone
    /// charge), if it was priced before: a retry holds the same.
    pub fn booking_price(
        &self,
        customer: CustomerId,
        key: &str,
    ) -> CoreResult<Option<(i64, Option<fixit_protocol::area::ZoneCharge>)>> {
        self.get(&self.booking_prices, &pair_key(customer.0, key.as_bytes()))
    }

    /// Records how a booking under this key is priced, before its hold (durable
    /// with the hold's flush on this node).
    pub fn put_booking_price(
        &self,
        customer: CustomerId,
        key: &str,
        priced: &(i64, Option<fixit_protocol::area::ZoneCharge>),
    ) -> CoreResult<()> {
        let bytes = codec::encode(priced).map_err(|e| CoreError::Internal(e.to_string()))?;
        self.booking_prices
            .insert(pair_key(customer.0, key.as_bytes()), bytes)
            .map_err(storage)?;
        Ok(())
    }

    /// Records a new job, the request key that made it and its first timer, in one
    /// transaction. A key seen before returns the job it made.
    pub fn create_job<J: Serialize>(
        &self,
        customer: CustomerId,
        key: &str,
        request: Vec<u8>,
        (job_id, job): (JobId, &J),
        wake_at_ms: u64,
    ) -> CoreResult<JobId> {
        let request_key = pair_key(customer.0, key.as_bytes());
        let job_bytes = codec::encode(job).map_err(|e| CoreError::Internal(e.to_string()))?;
        let timer_key = pair_key(wake_at_ms, &job_id.0.to_be_bytes());
        crate::sled_gate::write(|| {
            (
                &self.job_requests,
                &self.jobs,
                &self.customer_jobs,
                &self.offer_deadlines,
            )
                .transaction(|(requests, jobs, customer_jobs, timers)| {
                    if let Some(seen) = requests.get(&request_key)? {
                        let seen: JobRequestRecord = tx_decode(&seen)?;
                        if seen.request != request {
                            return Err(ConflictableTransactionError::Abort(
                                CoreError::IdempotencyConflict {
                                    key: key.to_owned(),
                                },
                            ));
                        }
                        return Ok(seen.job);
                    }
                    let record = JobRequestRecord {
                        request: request.clone(),
                        job: job_id,
                    };
                    requests.insert(request_key.as_slice(), tx_encode(&record)?)?;
                    jobs.insert(&job_id.0.to_be_bytes(), job_bytes.as_slice())?;
                    customer_jobs.insert(pair_key(customer.0, &job_id.0.to_be_bytes()), &[])?;
                    timers.insert(timer_key.as_slice(), &[])?;
                    Ok(job_id)
                })
        })
        .map_err(from_tx)
    }

    /// Where this database's job id counter starts: fixed at the first call
    /// — a random value below `2^bits` for a database with no jobs yet, 0 for
    /// one that already has jobs (made before the offset existed).
    pub fn job_id_offset(&self, bits: u32) -> CoreResult<u64> {
        const KEY: &[u8] = b"job_id_offset";
        if let Some(stored) = self.meta.get(KEY).map_err(storage)? {
            let bytes: [u8; 8] = stored
                .as_ref()
                .try_into()
                .map_err(|_| CoreError::Internal("stored job id offset is not 8 bytes".into()))?;
            return Ok(u64::from_be_bytes(bytes));
        }
        let offset = if self.jobs.is_empty() {
            use std::hash::{BuildHasher, Hasher};
            // std's per-process random keys: enough to keep two lives of a
            // data dir apart, with no extra dependency.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos()),
            );
            hasher.finish() % (1u64 << bits)
        } else {
            0
        };
        // A concurrent first call may have stored another: the stored one wins.
        let stored = self
            .meta
            .compare_and_swap(KEY, None as Option<&[u8]>, Some(&offset.to_be_bytes()[..]))
            .map_err(storage)?;
        match stored {
            Ok(()) => Ok(offset),
            Err(current) => {
                let bytes: [u8; 8] = current
                    .current
                    .as_deref()
                    .and_then(|value| value.try_into().ok())
                    .ok_or_else(|| {
                        CoreError::Internal("stored job id offset is not 8 bytes".into())
                    })?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    }

    /// A new unique id (monotonic across restarts).
    pub fn next_id(&self) -> CoreResult<u64> {
        self.db.generate_id().map_err(storage).map(|id| id + 1)
    }

    /// The jobs of a customer, newest last.
    pub fn customer_job_ids(&self, customer: CustomerId) -> CoreResult<Vec<JobId>> {
        self.customer_jobs
            .scan_prefix(customer.0.to_be_bytes())
            .keys()
            .map(|key| {
                let key = key.map_err(storage)?;
                let id: [u8; 8] = key[8..]
                    .try_into()
                    .map_err(|_| CoreError::Internal("bad customer job key".into()))?;
                Ok(JobId(u64::from_be_bytes(id)))
            })
            .collect()
    }

    /// Reads one record by a u64 id.
    pub(crate) fn get_by_id<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        id: u64,
    ) -> CoreResult<Option<T>> {
        self.get(tree, &id.to_be_bytes())
    }

    /// Writes one record by a u64 id.
    pub(crate) fn put_by_id<T: Serialize>(
        &self,
        tree: &sled::Tree,
        id: u64,
        value: &T,
    ) -> CoreResult<()> {
        let bytes = codec::encode(value).map_err(|e| CoreError::Internal(e.to_string()))?;
        tree.insert(id.to_be_bytes(), bytes).map_err(storage)?;
        Ok(())
    }

    /// Every record of a tree keyed by u64 id.
    pub(crate) fn all_by_id<T: DeserializeOwned>(&self, tree: &sled::Tree) -> CoreResult<Vec<T>> {
        self.records_by_id(tree, usize::MAX, false)
    }

    /// Up to `limit` records of a tree keyed by u64 id, lowest or highest ids first.
    pub(crate) fn records_by_id<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        limit: usize,
        highest_first: bool,
    ) -> CoreResult<Vec<T>> {
        let decode = |value: sled::Result<sled::IVec>| {
            codec::decode(&value.map_err(storage)?).map_err(corrupt)
        };
        if highest_first {
            tree.iter().values().rev().take(limit).map(decode).collect()
        } else {
            tree.iter().values().take(limit).map(decode).collect()
        }
    }

    /// Writes a job record and moves its offer-deadline index entry in one transaction.
    pub(crate) fn put_job<J: Serialize>(
        &self,
        job: JobId,
        record: &J,
        old_deadline_ms: Option<u64>,
        new_deadline_ms: Option<u64>,
    ) -> CoreResult<()> {
        let bytes = codec::encode(record).map_err(|e| CoreError::Internal(e.to_string()))?;
        crate::sled_gate::write(|| {
            (&self.jobs, &self.offer_deadlines).transaction(|(jobs, deadlines)| {
                jobs.insert(&job.0.to_be_bytes(), bytes.as_slice())?;
                if let Some(old) = old_deadline_ms {
                    deadlines.remove(pair_key(old, &job.0.to_be_bytes()))?;
                }
                if let Some(new) = new_deadline_ms {
                    deadlines.insert(pair_key(new, &job.0.to_be_bytes()), &[])?;
                }
                Ok(())
            })
        })
        .map_err(from_tx)
    }

    /// Jobs whose offer deadline is at or before `now_ms`, at most `limit`.
    pub fn due_offers(&self, now_ms: u64, limit: usize) -> CoreResult<Vec<JobId>> {
        let end = pair_key(now_ms, &u64::MAX.to_be_bytes());
        self.offer_deadlines
            .range(..=end)
            .keys()
            .take(limit)
            .map(|key| {
                let key = key.map_err(storage)?;
                let id: [u8; 8] = key[8..]
                    .try_into()
                    .map_err(|_| CoreError::Internal("bad deadline key".into()))?;
                Ok(JobId(u64::from_be_bytes(id)))
            })
            .collect()
    }

    fn get<T: DeserializeOwned>(&self, tree: &sled::Tree, key: &[u8]) -> CoreResult<Option<T>> {
        match tree.get(key).map_err(storage)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes).map_err(corrupt)?)),
            None => Ok(None),
        }
    }
}

/// One ledger operation for [`Store::apply_many`].
#[derive(Clone, Copy, Debug)]
pub struct LedgerCommand<'a> {
    /// The wallet it is on.
    pub wallet: WalletId,
    /// Its idempotency key.
    pub key: &'a str,
    /// The operation.
    pub op: &'a LedgerOp,
    /// When it was decided, ms since the epoch.
    pub now_ms: u64,
}

/// Records [`Store::apply_many`] writes in the same transaction as its
/// commands, in a tree of the same db outside the store (a replicated state
/// machine's applied log id).
#[derive(Clone, Copy, Debug)]
pub struct Mark<'a> {
    /// Where.
    pub tree: &'a sled::Tree,
    /// (key, value) records.
    pub records: &'a [(Vec<u8>, Vec<u8>)],
}

/// A ledger operation checked and encoded, ready for a transaction.
struct Prepared<'a> {
    command: LedgerCommand<'a>,
    request: Vec<u8>,
    idempotency_key: Vec<u8>,
    /// Whether its idempotency key is looked up (always, but in the
    /// deliberately broken build).
    check_key: bool,
}

impl<'a> Prepared<'a> {
    fn new(command: &LedgerCommand<'a>, home: WalletHome<'_>) -> CoreResult<Prepared<'a>> {
        ledger::validate_ledger_key(command.key)?;
        let request = codec::encode(command.op).map_err(|e| CoreError::Internal(e.to_string()))?;
        // The deliberately broken build (failpoints only): skip the look-up.
        let check_key = crate::failpoints::check(crate::failpoints::STORE_IDEMPOTENCY, "")
            != Some(crate::failpoints::Fault::Drop);
        if let Some(other) = home(command.wallet) {
            return Err(CoreError::Unavailable(format!(
                "wallet {} lives on node {other}, not here",
                command.wallet.0
            )));
        }
        Ok(Prepared {
            command: *command,
            request,
            idempotency_key: pair_key(command.wallet.0, command.key.as_bytes()),
            check_key,
        })
    }
}

/// The trees of a ledger transaction.
struct LedgerTx<'t> {
    wallets: &'t TransactionalTree,
    ledger: &'t TransactionalTree,
    idempotency: &'t TransactionalTree,
    meta: &'t TransactionalTree,
    outbox: &'t TransactionalTree,
}

type LedgerTrees = (
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
);

impl<'t> LedgerTx<'t> {
    fn of(trees: &'t LedgerTrees) -> LedgerTx<'t> {
        let (wallets, ledger, idempotency, meta, outbox) = trees;
        LedgerTx {
            wallets,
            ledger,
            idempotency,
            meta,
            outbox,
        }
    }
}

/// Applies one prepared operation inside a transaction. A refusal (a key
/// reused with another operation, what the ledger refuses) comes before any
/// write and is an answer, `Ok(Err(..))`; an error that may come after a write
/// aborts the transaction.
fn apply_in(
    tx: &LedgerTx<'_>,
    prepared: &Prepared<'_>,
    home: WalletHome<'_>,
) -> TxResult<CoreResult<OpOutcome>> {
    let LedgerCommand {
        wallet,
        key,
        op,
        now_ms,
    } = prepared.command;
    let seen = match prepared.check_key {
        true => tx.idempotency.get(&prepared.idempotency_key)?,
        false => None,
    };
    if let Some(seen) = seen {
        let seen: IdempotencyRecord = tx_decode(&seen)?;
        if seen.request != prepared.request {
            return Ok(Err(CoreError::IdempotencyConflict {
                key: key.to_owned(),
            }));
        }
        return Ok(Ok(seen.outcome));
    }
    let payer = tx_wallet(tx.wallets, wallet)?;
    let postings = match ledger::plan(wallet, op, payer.balance) {
        Ok(postings) => postings,
        Err(refused) => return Ok(Err(refused)),
    };
    let routes = match ledger::route(wallet, op, &postings, home) {
        Ok(routes) => routes,
        Err(refused) => return Ok(Err(refused)),
    };
    let mut outcome: Option<OpOutcome> = None;
    let mut sent = 0i64;
    for route in routes {
        match (route.to_node, outcome) {
            (Some(to_node), Some(paid)) => {
                let transfer = ledger::transfer(wallet, paid.seq, &route.posting, to_node, now_ms);
                tx.outbox
                    .insert(outbox_key(&transfer), tx_encode(&transfer)?)?;
                sent += transfer.amount;
            }
            (Some(_), None) => {
                return Err(ConflictableTransactionError::Abort(CoreError::Internal(
                    "a remote posting came before the payer's own".into(),
                )))
            }
            (None, _) => {
                let (balance, seq) = tx_post(
                    tx.wallets,
                    tx.ledger,
                    &route.posting,
                    key,
                    route.counterparty,
                    now_ms,
                )?;
                if route.posting.wallet == wallet && outcome.is_none() {
                    outcome = Some(OpOutcome { balance, seq });
                }
            }
        }
    }
    let outcome = outcome.ok_or_else(|| {
        ConflictableTransactionError::Abort(CoreError::Internal(
            "operation made no posting on its own wallet".into(),
        ))
    })?;
    if op.external_flow() != 0 || sent != 0 {
        tx_add_flow(tx.meta, op, sent)?;
    }
    let record = IdempotencyRecord {
        request: prepared.request.clone(),
        outcome,
    };
    tx.idempotency
        .insert(prepared.idempotency_key.as_slice(), tx_encode(&record)?)?;
    Ok(Ok(outcome))
}

fn tx_wallet(wallets: &TransactionalTree, wallet: WalletId) -> TxResult<WalletRecord> {
    match wallets.get(wallet.0.to_be_bytes())? {
        Some(bytes) => tx_decode(&bytes),
        None => Ok(WalletRecord::default()),
    }
}

fn tx_post(
    wallets: &TransactionalTree,
    ledger_tree: &TransactionalTree,
    posting: &ledger::Posting,
    key: &str,
    counterparty: Option<WalletId>,
    now_ms: u64,
) -> TxResult<(Balance, u64)> {
    let mut record = tx_wallet(wallets, posting.wallet)?;
    let balance =
        ledger::post(record.balance, posting).map_err(ConflictableTransactionError::Abort)?;
    let entry = LedgerEntry {
        seq: record.next_seq,
        key: key.to_owned(),
        kind: posting.kind,
        available_delta: posting.available_delta,
        held_delta: posting.held_delta,
        balance_after: balance,
        counterparty,
        at_ms: now_ms,
    };
    ledger_tree.insert(
        pair_key(posting.wallet.0, &entry.seq.to_be_bytes()),
        tx_encode(&entry)?,
    )?;
    record.balance = balance;
    record.next_seq += 1;
    wallets.insert(&posting.wallet.0.to_be_bytes(), tx_encode(&record)?)?;
    Ok((balance, entry.seq))
}

/// Adds an operation's flow across the node's boundary (and `sent`, the money its
/// capture put in the outbox) to the node-wide totals.
fn tx_add_flow(meta: &TransactionalTree, op: &LedgerOp, sent: i64) -> TxResult<()> {
    let mut flows: Flows = match meta.get(FLOWS_KEY)? {
        Some(bytes) => tx_decode(&bytes)?,
        None => Flows::default(),
    };
    let flow = op.external_flow();
    let add = |total: &mut i64, amount: i64| {
        *total = total.checked_add(amount).ok_or_else(|| {
            ConflictableTransactionError::Abort(CoreError::Invalid(
                "a node-wide money total would overflow".into(),
            ))
        })?;
        Ok::<(), ConflictableTransactionError<CoreError>>(())
    };
    match op {
        LedgerOp::TransferIn { .. } => add(&mut flows.received, flow)?,
        _ if flow > 0 => add(&mut flows.deposited, flow)?,
        _ if flow < 0 => add(&mut flows.withdrawn, -flow)?,
        _ => {}
    }
    add(&mut flows.sent, sent)?;
    meta.insert(FLOWS_KEY, tx_encode(&flows)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_of_shared_wallet_ids_is_refused_and_a_new_one_marked() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        {
            let db = sled::open(&old).unwrap();
            db.open_tree("wallets").unwrap().insert(b"x", b"y").unwrap();
            db.flush().unwrap();
        }
        let error = Store::open(&old, 1 << 20).err().expect("refused");
        assert!(error.to_string().contains("shared a wallet"), "{error}");

        let new = dir.path().join("new");
        drop(Store::open(&new, 1 << 20).expect("a new data dir opens"));
        let again = Store::open(&new, 1 << 20).expect("and opens again, marked");
        for marker in [WALLET_IDS, JOB_RECORDS] {
            assert_eq!(
                again.meta.get(marker.key).unwrap().as_deref(),
                Some(marker.value)
            );
        }
    }

    #[test]
    fn a_data_dir_of_jobs_without_zone_charges_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let meta = db.open_tree("meta").unwrap();
            meta.insert(WALLET_IDS.key, WALLET_IDS.value).unwrap();
            db.open_tree("jobs").unwrap().insert(b"x", b"y").unwrap();
            db.flush().unwrap();
        }
        let error = Store::open(dir.path(), 1 << 20).err().expect("refused");
        assert!(error.to_string().contains("zone charge"), "{error}");
    }

    /// A batch applied in one transaction answers and ends exactly as the same
    /// commands applied one by one: refusals (not enough money, a key reused
    /// with another operation), a replay of a key earlier in the batch, two
    /// commands on one wallet; the mark is written with them.
    #[test]
    fn apply_many_answers_and_ends_as_one_by_one() {
        let here = |_: WalletId| None;
        let (a, b) = (WalletId(1), WalletId(2));
        let ops = [
            (a, "fund", LedgerOp::Deposit { amount: 50 }),
            (a, "too-much", LedgerOp::Withdraw { amount: 100 }),
            (a, "more", LedgerOp::Deposit { amount: 100 }),
            (a, "more", LedgerOp::Deposit { amount: 100 }),
            (a, "more", LedgerOp::Withdraw { amount: 1 }),
            (b, "hold", LedgerOp::Hold { amount: 1 }),
            (a, "hold", LedgerOp::Hold { amount: 120 }),
        ];
        let commands: Vec<LedgerCommand<'_>> = ops
            .iter()
            .map(|(wallet, key, op)| LedgerCommand {
                wallet: *wallet,
                key,
                op,
                now_ms: 7,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let one_by_one = Store::open(&dir.path().join("one"), 1 << 20).unwrap();
        let expected: Vec<CoreResult<OpOutcome>> = commands
            .iter()
            .map(|c| one_by_one.apply(c.wallet, c.key, c.op, c.now_ms, &here))
            .collect();
        let together = Store::open(&dir.path().join("many"), 1 << 20).unwrap();
        let marks = together.db.open_tree("marks").unwrap();
        let records = [(b"applied".to_vec(), b"7".to_vec())];
        let mark = Mark {
            tree: &marks,
            records: &records,
        };
        let answers = together.apply_many(&commands, &here, &mark).unwrap();
        assert_eq!(answers, expected);
        assert!(matches!(
            answers[1],
            Err(CoreError::InsufficientFunds { .. })
        ));
        assert_eq!(
            answers[3], answers[2],
            "the replay answers the first outcome"
        );
        assert!(matches!(
            answers[4],
            Err(CoreError::IdempotencyConflict { .. })
        ));
        assert_eq!(together.digest().unwrap(), one_by_one.digest().unwrap());
        assert_eq!(marks.get(b"applied").unwrap().as_deref(), Some(&b"7"[..]));
    }
}
