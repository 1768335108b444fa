//! The wallet shards of a running node: one Raft group per bucket this node
//! replicates, calls on wallets sent to their shard's leader wherever it is,
//! and delivery of each led shard's outbox to the shards its captures pay.

use super::network::ShardNetwork;
use super::proposer::{Proposed, Proposer};
use super::storage::open_shard;
use super::types::{replicas_of, shard_of, BatchedOp, ShardId, ShardRaft, ShardWrite};
use crate::placement::node_number;
use crate::route::commands::{PeerAnswer, PeerCommand, RaftRpc};
use crate::route::ClusterRouter;
use fixit_actors::clock::SharedClock;
use fixit_actors::cluster_hooks::{WalletCall, WalletReply};
use fixit_actors::config::ClusterSection;
use fixit_actors::error::{CoreError, CoreResult};
use fixit_actors::ids::WalletId;
use fixit_actors::sled_gate::GroupFlushed;
use fixit_actors::store::{Store, Transfer};
use fixit_protocol::api::ApiError;
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, VoteResponse};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// Raft timing of every shard: heartbeats every 150 ms, elections after 0.6–1.2
/// s without one, so a dead leader is replaced in about 1–2 s.
pub const HEARTBEAT_MS: u64 = 150;
/// Shortest election timeout, ms.
pub const ELECTION_MIN_MS: u64 = 600;
/// Longest election timeout, ms.
pub const ELECTION_MAX_MS: u64 = 1_200;
/// Bytes of a snapshot sent in one Raft message (a link frame holds 1 MiB).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 256 * 1024;
/// Longest one ask of a shard's leader over a link may take before the call
/// looks for the leader again.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Transfers delivered per shard per round.
pub const DELIVERY_BATCH: usize = 128;
/// Pause between outbox rounds when nothing was queued.
pub const DELIVERY_INTERVAL: Duration = Duration::from_millis(200);
/// A replica stands for election only while it has heard, within this window,
/// from a majority of its shard's replicas (itself included): cut off, it
/// keeps its term instead of raising it election after election, so when the
/// partition heals it does not depose the leader the others kept. Well under
/// the shortest time a follower waits before standing (the leader lease plus
/// the election timeout: 1.8 s), and over three times [`PING_AFTER`]: a live
/// peer is heard from at least that often (its calls, its answers, its
/// membership datagrams, and a ping when nothing else came).
pub const CONTACT_WINDOW: Duration = Duration::from_millis(1_000);
/// A replica that could not stand (cut off, or just started) may stand again
/// only once it has heard from a majority for this long: time for a leader the
/// others kept to reach it (its replication to a peer it could not reach
/// backs off 0.5 s) and refresh its election timer, which ran out while it was
/// cut off — else it would stand at once and depose that leader.
pub const STAND_AFTER_CONTACT: Duration = Duration::from_millis(1_500);
/// A replica peer this node has not heard from for this long is sent a ping
/// (followers of the same leader have no Raft traffic between them, and
/// membership probes one member per interval, so each peer less often the
/// larger the cluster): contact with a live peer is then at most about this
/// old, well inside [`CONTACT_WINDOW`].
pub const PING_AFTER: Duration = Duration::from_millis(300);
/// How often each replica's right to stand is checked.
pub const STAND_CHECK_EVERY: Duration = Duration::from_millis(100);
/// The sled cache of the shards' database, bytes.
pub const SHARDS_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// One shard replicated here.
pub struct Group {
    /// Its Raft instance.
    pub raft: ShardRaft,
    /// Its state machine's store (read after a linearizability check).
    pub store: Store,
    /// Batches the ledger writes proposed here.
    proposer: Proposer,
    /// A replica that started empty while others held data: it refuses every
    /// vote until it has applied what a leader said was committed.
    rejoining: AtomicBool,
    /// While rejoining: the commit index of the first leader append (+1; 0:
    /// none yet).
    leader_commit: AtomicU64,
    /// Whether it may stand for election: it hears from a majority of the
    /// shard's replicas (see [`CONTACT_WINDOW`]).
    may_stand: AtomicBool,
    /// Since when it has heard from a majority without a break (see
    /// [`STAND_AFTER_CONTACT`]).
    majority_since: std::sync::Mutex<Option<Instant>>,
}

impl Group {
    /// Whether this replica may stand for election (it hears from a majority
    /// of the shard's replicas).
    pub fn may_stand(&self) -> bool {
        self.may_stand.load(Ordering::Acquire)
    }

    /// Whether this replica refuses votes (rejoining, not caught up yet).
    pub fn rejoining(&self) -> bool {
        self.rejoining.load(Ordering::Acquire)
    }

    /// The shard's voters by name as this replica's membership has them: one
    /// set per configuration (two during a membership change); none before it
    /// has a membership (a replica new to the shard, waiting for its leader).
    pub fn voter_sets(&self) -> Vec<Vec<String>> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        membership
            .get_joint_config()
            .iter()
            .map(|ids| {
                ids.iter()
                    .map(|id| {
                        membership
                            .get_node(id)
                            .map_or_else(|| format!("#{id}"), |node| node.addr.clone())
                    })
                    .collect()
            })
            .collect()
    }

    /// Notes what an append from a leader says, and ends the rejoin once this
    /// replica has applied everything a leader said was committed when it
    /// first reached it. (What is committed later, it receives as any
    /// follower does; waiting for the latest commit could last for ever under
    /// steady writes, and a replica made a voter meanwhile would refuse the
    /// vote its shard may need.)
    fn note_progress(&self, shard: ShardId, leader_commit: Option<u64>) {
        if let Some(index) = leader_commit {
            let _ = self.leader_commit.compare_exchange(
                0,
                index + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        let wanted = self.leader_commit.load(Ordering::Acquire);
        let applied = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|id| id.index + 1);
        if wanted > 0 && applied.unwrap_or(0) >= wanted {
            self.rejoining.store(false, Ordering::Release);
            tracing::info!(%shard, applied = wanted - 1, "rejoined replica caught up: it votes again");
        }
    }
}

/// What a call to a shard's leader came to.
pub(super) enum Attempt<T = WalletReply> {
    Done(T),
    /// Not served: try the leader named, or whoever leads next.
    Retry(Option<String>),
    /// Refused for good (the ledger's answer, or a bad call).
    Refused(CoreError),
}

/// One shard as this node sees it, for `GET /cluster` and the checker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardView {
    /// `w<n>`.
    pub shard: String,
    /// The nodes replicating it.
    pub replicas: Vec<String>,
    /// The leader this node knows of.
    pub leader: Option<String>,
    /// This node's current term.
    pub term: u64,
    /// A replica that started empty while others held data and has not caught
    /// up yet: it refuses every vote meanwhile.
    pub rejoining: bool,
    /// Whether this replica may stand for election: it has heard from a
    /// majority of the replicas (within [`CONTACT_WINDOW`]) for
    /// [`STAND_AFTER_CONTACT`]. Cut off, it may not, so its term does not rise
    /// (openraft 0.9 has no pre-vote).
    pub may_stand: bool,
    /// Last log index applied here.
    pub applied: Option<u64>,
    /// Last log index of this replica's latest snapshot.
    pub snapshot: Option<u64>,
    /// Last log index purged from this replica's log (behind its snapshot): a
    /// replica that needs an older entry gets the snapshot instead.
    pub purged: Option<u64>,
    /// Digest of this replica's state (equal on replicas that applied the same
    /// index); only with [`ViewDepth::WithState`].
    pub digest: Option<u64>,
    /// When this node leads: each follower's lag behind the leader's last log
    /// index (`None`: not known to match yet).
    pub lag: BTreeMap<String, Option<u64>>,
    /// This replica's ledger audit; only with [`ViewDepth::WithState`].
    pub audit: Option<ShardAudit>,
}

/// How much of a shard [`Shards::views`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewDepth {
    /// Raft's own metrics only (leader, term, applied, lag): cheap.
    Raft,
    /// Also each replica's digest and audit (reads every record).
    WithState,
}

/// A replica's ledger audit, summed up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardAudit {
    /// Wallets stored.
    pub wallets: u64,
    /// Σ (available + held).
    pub total_balance: i64,
    /// Money that entered and left the shard.
    pub flows: fixit_actors::store::Flows,
    /// Transfers in the outbox, not yet acknowledged by their receiving shard.
    pub outbox_transfers: u64,
    /// Σ of their amounts.
    pub outbox_amount: i64,
    /// Conservation, no negative part, ledgers add up.
    pub holds: bool,
}

impl ShardAudit {
    fn of(store: &Store) -> ShardAudit {
        match store.audit() {
            Ok(audit) => ShardAudit {
                wallets: audit.wallets,
                total_balance: i64::try_from(audit.total_balance).unwrap_or(i64::MAX),
                flows: audit.flows,
                outbox_transfers: audit.outbox_transfers,
                outbox_amount: i64::try_from(audit.outbox_amount).unwrap_or(i64::MAX),
                holds: audit.holds(),
            },
            Err(error) => {
                tracing::warn!(%error, "shard audit failed");
                ShardAudit::default()
            }
        }
    }
}

/// The wallet shards of this node.
pub struct Shards {
    name: String,
    me: u64,
    buckets: u32,
    /// Replicas of every shard (replicated here or not).
    replicas: Vec<Vec<String>>,
    /// The groups replicated here, once up (see [`Shards::start`]).
    groups: OnceLock<BTreeMap<ShardId, Group>>,
    /// Whether this node had shard data when it started.
    had_data: bool,
    router: Arc<ClusterRouter>,
    clock: SharedClock,
    /// Longest a wallet call waits for a leader with a majority.
    budget: Duration,
    db: GroupFlushed,
    /// Wakes outbox delivery.
    /// Replica peers with a ping in flight (see [`Shards::ping_quiet_peers`]).
    pinging: std::sync::Mutex<BTreeSet<String>>,
    pub(crate) outbox_waker: Notify,
    stop: watch::Sender<bool>,
}

/// No groups (before they are up).
static NO_GROUPS: BTreeMap<ShardId, Group> = BTreeMap::new();

/// Whether a node with no shard data founds its groups or joins them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// It had shard data: its groups carry on.
    Carry,
    /// Every other data node has none either: a new cluster; the groups are
    /// initialized with their replicas (each replica does so alike).
    Found,
    /// Another node has shard data: this node lost its disk (or is new to a
    /// running cluster). Its replicas join empty, are brought up to date by
    /// their leaders, and refuse every vote until then.
    Rejoin,
}

impl Shards {
    /// Opens (or creates) the shards' database in `data_dir/shards` and brings
    /// up, in the background, the Raft group of every bucket this node
    /// replicates; wallet calls answer `unavailable` until they are up.
    ///
    /// A node with no shard data first asks the other data nodes whether they
    /// have any: if one has, it rejoins — a replica that lost its disk has
    /// forgotten its log and its votes, and voting before it has caught up
    /// could elect a leader missing acknowledged writes, so its replicas
    /// refuse every vote until they have caught up with a leader; if every
    /// other data node answers that it has none, the cluster is new and the
    /// groups are founded.
    pub async fn start(
        section: &ClusterSection,
        data_dir: &Path,
        router: Arc<ClusterRouter>,
        clock: SharedClock,
    ) -> CoreResult<Arc<Shards>> {
        let dir = data_dir.join("shards");
        let had_data = dir.exists();
        let db = GroupFlushed::new(fixit_actors::store::open_db(&dir, SHARDS_CACHE_BYTES)?);
        let factor = section.replication_factor as usize;
        let buckets = section.wallet_buckets;
        let replicas: Vec<Vec<String>> = (0..buckets)
            .map(|shard| replicas_of(ShardId(shard), router.nodes(), factor))
            .collect();
        let (stop, _) = watch::channel(false);
        let shards = Arc::new(Shards {
            name: section.name.clone(),
            me: u64::from(node_number(&section.name)),
            buckets,
            replicas,
            groups: OnceLock::new(),
            had_data,
            budget: Duration::from_millis(section.call_timeout_ms.clamp(500, 5_000)),
            router: router.clone(),
            clock,
            db,
            outbox_waker: Notify::new(),
            pinging: std::sync::Mutex::new(BTreeSet::new()),
            stop,
        });
        router.attach_shards(&shards);
        let up = Arc::downgrade(&shards);
        let (section, dir) = (section.clone(), dir.clone());
        let mut stopped = shards.stop.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                result = bring_up(up, section, dir) => {
                    if let Err(error) = result {
                        tracing::error!(%error, "wallet shards could not start");
                    }
                }
                _ = stopped.changed() => {}
            }
        });
        tokio::spawn(deliver(Arc::downgrade(&shards), shards.stop.subscribe()));
        tokio::spawn(guard_elections(
            Arc::downgrade(&shards),
            shards.stop.subscribe(),
        ));
        Ok(shards)
    }

    /// Whether this node holds shard data — it had some at start, or one of
    /// its groups has an entry a leader wrote (beyond the founding membership
    /// entry): what a node with none asks before founding. Nodes founding a
    /// new cluster together all answer no (so none waits for another's vote
    /// to catch up); a node coming empty to groups that have had a leader
    /// rejoins.
    pub(crate) fn holds_data(&self) -> bool {
        self.had_data
            || self
                .groups()
                .values()
                .any(|group| group.raft.metrics().borrow().last_log_index.unwrap_or(0) >= 1)
    }

    /// How a node with or without shard data starts its groups: asks every
    /// other data node (again every 500 ms until each has answered, or one
    /// says it holds data).
    async fn how_to_start(&self) -> Start {
        if self.had_data {
            return Start::Carry;
        }
        let others: Vec<String> = self
            .router
            .nodes()
            .iter()
            .filter(|node| **node != self.name)
            .cloned()
            .collect();
        let mut answered = std::collections::BTreeSet::new();
        loop {
            let unanswered: Vec<&String> = others
                .iter()
                .filter(|node| !answered.contains(*node))
                .collect();
            for node in unanswered {
                let request_id = format!("{}-shards-held", self.name);
                match self
                    .router
                    .call(node, &PeerCommand::ShardsHeld, None, &request_id)
                    .await
                {
                    Ok(PeerAnswer::ShardsHeld(true)) => return Start::Rejoin,
                    Ok(PeerAnswer::ShardsHeld(false)) => {
                        answered.insert(node.clone());
                    }
                    _ => {}
                }
            }
            if answered.len() == others.len() {
                return Start::Found;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of wallet buckets (shards).
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The configured replicas of every shard (from the region map).
    pub(super) fn configured_replicas(&self) -> impl Iterator<Item = &Vec<String>> {
        self.replicas.iter()
    }

    pub(super) fn router(&self) -> &ClusterRouter {
        &self.router
    }

    /// The groups replicated here (none before they are up).
    pub fn groups(&self) -> &BTreeMap<ShardId, Group> {
        self.groups.get().unwrap_or(&NO_GROUPS)
    }

    /// The shard of a wallet.
    pub fn shard_of(&self, wallet: WalletId) -> ShardId {
        shard_of(wallet, self.buckets)
    }

    /// The leader of a shard replicated here, as this node knows it.
    pub(super) fn leader_of(&self, shard: ShardId) -> Option<String> {
        let group = self.groups().get(&shard)?;
        let receiver = group.raft.metrics();
        let metrics = receiver.borrow();
        let leader = metrics.current_leader?;
        let name = metrics
            .membership_config
            .nodes()
            .find(|(id, _)| **id == leader)
            .map(|(_, node)| node.addr.clone());
        name
    }

    /// Serves `call` on `wallet` at its shard's leader: here, or over the link
    /// to the node leading it, following leadership as it moves, until the call
    /// budget runs out (then `Unavailable`: no leader with a majority answered;
    /// a retry with the same idempotency key is safe).
    pub async fn call(&self, wallet: WalletId, call: WalletCall) -> CoreResult<WalletReply> {
        let shard = self.shard_of(wallet);
        let deadline = Instant::now() + self.budget;
        let answer = self
            .at_leader(shard, deadline, ASK_TIMEOUT, |node| {
                let call = call.clone();
                async move {
                    if node == self.name {
                        self.serve(shard, wallet, call, deadline).await
                    } else {
                        self.ask(&node, shard, wallet, call).await
                    }
                }
            })
            .await;
        answer.unwrap_or_else(|| {
            Err(CoreError::Unavailable(format!(
                "wallet shard {shard}: no leader with a majority of its replicas \
                 answered within {} ms; retry (with the same idempotency key)",
                self.budget.as_millis()
            )))
        })
    }

    /// Tries `attempt` (given the node to try it at: this one or another) at
    /// the leader of `shard`, following leadership as it moves, until
    /// `deadline`; `None` once it has passed. A try at another node gets at
    /// most `leash`: a leader just killed answers nothing until the link's
    /// timeout.
    pub(super) async fn at_leader<T, F, Fut>(
        &self,
        shard: ShardId,
        deadline: Instant,
        leash: Duration,
        mut attempt: F,
    ) -> Option<CoreResult<T>>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut hint: Option<String> = None;
        let mut pause = Duration::from_millis(10);
        let mut asked = 0usize;
        loop {
            let target = hint.take().or_else(|| self.leader_of(shard)).or_else(|| {
                // Not replicated here, or no leader known: ask the replicas in turn.
                let replicas = &self.replicas[shard.0 as usize];
                asked += 1;
                (!self.groups().contains_key(&shard))
                    .then(|| replicas[asked % replicas.len()].clone())
            });
            let result = match target {
                Some(node) if node == self.name => attempt(node).await,
                Some(node) => {
                    let leash = deadline
                        .saturating_duration_since(Instant::now())
                        .min(leash);
                    tokio::time::timeout(leash, attempt(node))
                        .await
                        .unwrap_or(Attempt::Retry(None))
                }
                None => Attempt::Retry(None),
            };
            match result {
                Attempt::Done(answer) => return Some(Ok(answer)),
                Attempt::Refused(error) => return Some(Err(error)),
                Attempt::Retry(leader) => hint = leader,
            }
            if Instant::now() + pause >= deadline {
                return None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Serves a call another node sent to this one as the shard's leader.
    pub(crate) async fn serve_peer(
        &self,
        shard: ShardId,
        wallet: WalletId,
        call: WalletCall,
    ) -> Result<PeerAnswer, ApiError> {
        match self
            .serve(shard, wallet, call, Instant::now() + self.budget)
            .await
        {
            Attempt::Done(reply) => Ok(PeerAnswer::Wallet(reply)),
            Attempt::Retry(leader) => Ok(PeerAnswer::NotLeader { leader }),
            Attempt::Refused(error) => Err(ApiError::Core(error)),
        }
    }

    /// Serves a Raft message for a shard replicated here.
    pub(crate) async fn serve_raft(
        &self,
        shard: ShardId,
        rpc: RaftRpc,
    ) -> Result<PeerAnswer, ApiError> {
        let group = self.groups().get(&shard).ok_or_else(|| {
            ApiError::Core(CoreError::Unavailable(format!(
                "node {} does not replicate wallet shard {shard}",
                self.name
            )))
        })?;
        let bad = |error: fixit_actors::codec::CodecError| {
            ApiError::BadRequest(format!("raft message: {error}"))
        };
        if !group.rejoining() {
            let bytes = super::network::serve(&group.raft, rpc).await.map_err(bad)?;
            return Ok(PeerAnswer::Raft(bytes));
        }
        let bytes = match rpc {
            RaftRpc::Vote(_) => {
                // Not caught up: its (empty or partial) log must not decide
                // who leads. A refusal with this replica's own vote.
                let vote = group.raft.metrics().borrow().vote;
                let refused: Result<VoteResponse<u64>, RaftError<u64>> =
                    Ok(VoteResponse::new(vote, None, false));
                fixit_actors::codec::encode(&refused).map_err(bad)?
            }
            RaftRpc::Append(bytes) => {
                let request: AppendEntriesRequest<super::ShardTypes> =
                    fixit_actors::codec::decode(&bytes).map_err(bad)?;
                let commit = request.leader_commit.map(|id| id.index);
                let answer = group.raft.append_entries(request).await;
                group.note_progress(shard, commit);
                fixit_actors::codec::encode(&answer).map_err(bad)?
            }
            snapshot @ RaftRpc::Snapshot(_) => {
                let bytes = super::network::serve(&group.raft, snapshot)
                    .await
                    .map_err(bad)?;
                group.note_progress(shard, None);
                bytes
            }
        };
        Ok(PeerAnswer::Raft(bytes))
    }

    /// Serves a call here, as the shard's leader: a write is proposed to the
    /// shard's log and answered once committed and applied; a read waits for a
    /// read index confirmed by a majority and for it to be applied here.
    async fn serve(
        &self,
        shard: ShardId,
        wallet: WalletId,
        call: WalletCall,
        deadline: Instant,
    ) -> Attempt {
        if self.shard_of(wallet) != shard {
            return Attempt::Refused(CoreError::Internal(format!(
                "wallet {} is in shard {}, not {shard}",
                wallet.0,
                self.shard_of(wallet)
            )));
        }
        let Some(group) = self.groups().get(&shard) else {
            return Attempt::Retry(None);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let not_in_time = |what: &str| {
            Attempt::Refused(CoreError::Unavailable(format!(
                "wallet shard {shard}: {what} not confirmed by a majority of its replicas \
                 in time; retry (with the same idempotency key)"
            )))
        };
        match call {
            WalletCall::Apply { key, op } => {
                let op = BatchedOp {
                    wallet,
                    key,
                    op,
                    now_ms: self.clock.now_ms(),
                };
                match tokio::time::timeout(left, group.proposer.propose(op)).await {
                    Err(_) => not_in_time("the write was"),
                    Ok(Ok(Proposed::Answer(Ok(outcome)))) => {
                        Attempt::Done(WalletReply::Op(outcome))
                    }
                    Ok(Ok(Proposed::Answer(Err(error)))) => Attempt::Refused(error),
                    Ok(Ok(Proposed::NotLeader(leader))) => Attempt::Retry(leader),
                    Ok(Ok(Proposed::Failed(_))) => Attempt::Retry(None),
                    Ok(Err(busy @ CoreError::Busy { .. })) => Attempt::Refused(busy),
                    Ok(Err(_stopped)) => Attempt::Retry(None),
                }
            }
            read => {
                match tokio::time::timeout(left, group.raft.ensure_linearizable()).await {
                    Err(_) => return not_in_time("the read index was"),
                    Ok(Ok(_)) => {}
                    Ok(Err(RaftError::APIError(error))) => {
                        let leader = match error {
                            openraft::error::CheckIsLeaderError::ForwardToLeader(forward) => {
                                forward.leader_node.map(|node| node.addr)
                            }
                            openraft::error::CheckIsLeaderError::QuorumNotEnough(_) => None,
                        };
                        return Attempt::Retry(leader);
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%shard, %error, "shard read failed");
                        return Attempt::Retry(None);
                    }
                }
                let answer = match read {
                    WalletCall::Balance => group.store.wallet_record(wallet).and_then(|record| {
                        if record.next_seq == 0 {
                            Err(CoreError::NotFound(wallet.to_string()))
                        } else {
                            Ok(WalletReply::Balance(record.balance))
                        }
                    }),
                    WalletCall::History { from_seq, limit } => group
                        .store
                        .history(wallet, from_seq, limit as usize)
                        .map(WalletReply::History),
                    WalletCall::Apply { .. } => unreachable_apply(),
                };
                match answer {
                    Ok(reply) => Attempt::Done(reply),
                    Err(error) => Attempt::Refused(error),
                }
            }
        }
    }

    /// Asks node `node` to serve the call as the shard's leader.
    async fn ask(&self, node: &str, shard: ShardId, wallet: WalletId, call: WalletCall) -> Attempt {
        let key = match &call {
            WalletCall::Apply { key, .. } => Some(key.clone()),
            _ => None,
        };
        let request_id = format!("{}-{shard}-w{}", self.name, wallet.0);
        let command = PeerCommand::Shard {
            shard,
            wallet,
            call,
        };
        self.ask_leader(
            node,
            shard,
            &command,
            key,
            &request_id,
            |answer| match answer {
                PeerAnswer::Wallet(reply) => Ok(reply),
                other => Err(Box::new(other)),
            },
        )
        .await
    }

    /// Sends `command` to `node` as the leader of `shard`: `done` takes the
    /// answer it expects (and gives back any other); `NotLeader` and an
    /// unreachable or busy node are tries again.
    pub(super) async fn ask_leader<T>(
        &self,
        node: &str,
        shard: ShardId,
        command: &PeerCommand,
        key: Option<String>,
        request_id: &str,
        done: impl FnOnce(PeerAnswer) -> Result<T, Box<PeerAnswer>>,
    ) -> Attempt<T> {
        match self.router.call(node, command, key, request_id).await {
            Ok(PeerAnswer::NotLeader { leader }) => {
                // A leader that names itself is stale news: forget it.
                Attempt::Retry(leader.filter(|leader| leader != node))
            }
            Ok(answer) => match done(answer) {
                Ok(answer) => Attempt::Done(answer),
                Err(other) => Attempt::Refused(CoreError::Internal(format!(
                    "node {node} answered a shard call with {other:?}"
                ))),
            },
            Err(ApiError::Core(CoreError::Unavailable(why))) => {
                tracing::debug!(%shard, %node, %why, "shard leader unreachable");
                Attempt::Retry(None)
            }
            Err(ApiError::Core(CoreError::Busy { .. })) => Attempt::Retry(None),
            Err(ApiError::Core(error)) => Attempt::Refused(error),
            Err(other) => Attempt::Refused(CoreError::Internal(format!("node {node}: {other}"))),
        }
    }

    /// Whether this node leads `shard` now.
    pub fn leads(&self, shard: ShardId) -> bool {
        self.leader_of(shard).as_deref() == Some(self.name.as_str())
    }

    /// The audit of the shards this node leads now, summed.
    pub fn led_audit(&self) -> CoreResult<fixit_actors::store::Audit> {
        let mut total = fixit_actors::store::Audit::default();
        for (shard, group) in self.groups() {
            if self.leads(*shard) {
                total.add(group.store.audit()?);
            }
        }
        Ok(total)
    }

    /// What this node knows of every shard it replicates; with
    /// [`ViewDepth::WithState`] also each replica's digest and audit (a scan of
    /// its whole ledger: for operators and checkers, not for every page view).
    pub fn views(&self, depth: ViewDepth) -> Vec<ShardView> {
        self.groups()
            .iter()
            .map(|(shard, group)| {
                let metrics = group.raft.metrics().borrow().clone();
                let leader = self.leader_of(*shard);
                let last = metrics.last_log_index.unwrap_or(0);
                let lag = metrics
                    .replication
                    .as_ref()
                    .map(|replication| {
                        replication
                            .iter()
                            .filter(|(id, _)| **id != self.me)
                            .map(|(id, matched)| {
                                let name = self.name_of(&metrics, *id);
                                (
                                    name,
                                    matched.map(|log_id| last.saturating_sub(log_id.index)),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut replicas: Vec<String> = group.voter_sets().into_iter().flatten().collect();
                replicas.sort();
                replicas.dedup();
                if replicas.is_empty() {
                    replicas = self.replicas[shard.0 as usize].clone();
                }
                ShardView {
                    shard: shard.name(),
                    replicas,
                    leader,
                    term: metrics.current_term,
                    rejoining: group.rejoining(),
                    may_stand: group.may_stand(),
                    applied: metrics.last_applied.map(|log_id| log_id.index),
                    snapshot: metrics.snapshot.map(|log_id| log_id.index),
                    purged: metrics.purged.map(|log_id| log_id.index),
                    digest: (depth == ViewDepth::WithState)
                        .then(|| group.store.digest().unwrap_or_default()),
                    lag,
                    audit: (depth == ViewDepth::WithState).then(|| ShardAudit::of(&group.store)),
                }
            })
            .collect()
    }

    fn name_of(&self, metrics: &openraft::RaftMetrics<u64, BasicNode>, id: u64) -> String {
        metrics
            .membership_config
            .nodes()
            .find(|(node, _)| **node == id)
            .map_or_else(|| format!("#{id}"), |(_, node)| node.addr.clone())
    }

    /// Pings every replica peer of the groups here not heard from within
    /// [`PING_AFTER`] and not declared down (one ping in flight per peer; a
    /// successful call is contact, see [`ClusterRouter::heard_within`]).
    fn ping_quiet_peers(self: &Arc<Self>) {
        let peers: BTreeSet<String> = self
            .groups()
            .values()
            .flat_map(Group::voter_sets)
            .flatten()
            .filter(|node| *node != self.name)
            .collect();
        for peer in &peers {
            // A peer declared down is not pinged: the call would be refused
            // at once, ten times a second, and counted as failed.
            if self.router.heard_within(peer, PING_AFTER) || !self.router.reachable(peer) {
                continue;
            }
            let mut pinging = self.pinging.lock().unwrap_or_else(|e| e.into_inner());
            if !pinging.insert(peer.clone()) {
                continue;
            }
            drop(pinging);
            // The task holds the shards weakly: a stopping node's database
            // must not wait for a ping.
            let (shards, router) = (Arc::downgrade(self), self.router.clone());
            let (peer, request_id) = (peer.clone(), format!("ping-{}", self.name));
            tokio::spawn(async move {
                // Bounded by the call's deadline; a failure is no contact.
                let _ = router
                    .call(&peer, &PeerCommand::Ping, None, &request_id)
                    .await;
                if let Some(shards) = shards.upgrade() {
                    shards
                        .pinging
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&peer);
                }
            });
        }
    }

    /// Lets each replica stand for election once it has heard from a majority
    /// of its shard's replicas for [`STAND_AFTER_CONTACT`], and stops it as
    /// soon as it does not.
    fn check_may_stand(&self) {
        for (shard, group) in self.groups() {
            // A majority of every configuration (both during a change); a
            // replica with no membership yet has none.
            let configs = group.voter_sets();
            let heard_in = |voters: &Vec<String>| {
                voters
                    .iter()
                    .filter(|node| {
                        **node == self.name || self.router.heard_within(node, CONTACT_WINDOW)
                    })
                    .count()
            };
            let majority = !configs.is_empty()
                && configs
                    .iter()
                    .all(|voters| heard_in(voters) * 2 > voters.len());
            let heard = configs.last().map_or(0, heard_in);
            let replicas = configs.last().map_or(0, Vec::len);
            let may = {
                let mut since = group
                    .majority_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                match (majority, *since) {
                    (false, _) => {
                        *since = None;
                        false
                    }
                    (true, None) => {
                        *since = Some(Instant::now());
                        false
                    }
                    (true, Some(at)) => at.elapsed() >= STAND_AFTER_CONTACT,
                }
            };
            group.raft.runtime_config().elect(may);
            if group.may_stand.swap(may, Ordering::AcqRel) != may {
                tracing::info!(
                    %shard,
                    heard,
                    replicas,
                    may_stand = may,
                    "shard replica {} stand for election",
                    if may { "may again" } else { "may not" }
                );
            }
        }
    }

    /// Stops outbox delivery and every group, and makes the database durable.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        for (shard, group) in self.groups() {
            if let Err(error) = group.raft.shutdown().await {
                tracing::warn!(%shard, %error, "shard did not shut down cleanly");
            }
        }
        if let Err(error) = self.db.flush().await {
            tracing::warn!(%error, "shards database flush failed");
        }
    }

    /// Delivers one round of the outboxes of the shards led here; how many
    /// transfers were acknowledged.
    async fn deliver_round(self: &Arc<Self>) -> usize {
        let mut delivered = 0;
        for (shard, group) in self.groups() {
            if !self.leads(*shard) {
                continue;
            }
            let pending = match group.store.outbox_transfers(DELIVERY_BATCH) {
                Ok(pending) => pending,
                Err(error) => {
                    tracing::warn!(%shard, %error, "shard outbox unreadable");
                    continue;
                }
            };
            if pending.is_empty() {
                continue;
            }
            let mut sends = JoinSet::new();
            for transfer in pending {
                let shards = self.clone();
                sends.spawn(async move {
                    let call = WalletCall::Apply {
                        key: transfer.id.clone(),
                        op: transfer.op(),
                    };
                    let result = shards.call(transfer.to_wallet, call).await;
                    (transfer, result)
                });
            }
            let mut acknowledged: Vec<Transfer> = Vec::new();
            while let Some(joined) = sends.join_next().await {
                match joined {
                    Ok((transfer, Ok(_))) => acknowledged.push(transfer),
                    Ok((transfer, Err(error))) => {
                        tracing::debug!(transfer = %transfer.id, %error, "transfer not delivered yet")
                    }
                    Err(error) => tracing::warn!(%error, "transfer delivery task failed"),
                }
            }
            if acknowledged.is_empty() {
                continue;
            }
            let count = acknowledged.len();
            match group
                .raft
                .client_write(ShardWrite::Delivered(acknowledged))
                .await
            {
                Ok(_) => {
                    delivered += count;
                    let traffic = &self.router.traffic;
                    traffic
                        .transfers_delivered
                        .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
                }
                // Delivered again next round, credited once (by transfer id).
                Err(error) => tracing::debug!(%shard, %error, "outbox removal not committed"),
            }
        }
        delivered
    }
}

fn unreachable_apply() -> CoreResult<WalletReply> {
    Err(CoreError::Internal("a write reached the read path".into()))
}

/// Brings up the groups of the shards `section`'s node replicates (see
/// [`Shards::start`]).
async fn bring_up(
    shards: std::sync::Weak<Shards>,
    section: ClusterSection,
    dir: std::path::PathBuf,
) -> CoreResult<()> {
    let Some(running) = shards.upgrade() else {
        return Ok(());
    };
    let start = running.how_to_start().await;
    tracing::info!(node = %section.name, ?start, "wallet shards starting");
    let config = Arc::new(
        openraft::Config {
            cluster_name: "fixit-wallets".into(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_MIN_MS,
            election_timeout_max: ELECTION_MAX_MS,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                section.shard_snapshot_entries,
            ),
            max_in_snapshot_log_to_keep: section.shard_snapshot_entries / 10,
            // Chunks well inside a link frame (1 MiB).
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            // Until `guard_elections` has seen a majority in contact.
            enable_elect: false,
            ..Default::default()
        }
        .validate()
        .map_err(|error| CoreError::Internal(format!("raft config: {error}")))?,
    );
    let mut groups = BTreeMap::new();
    for (shard, members) in running.replicas.iter().enumerate() {
        let shard = ShardId(shard as u32);
        if !members.contains(&section.name) {
            continue;
        }
        let (log, state) = open_shard(&running.db, &dir, shard, running.buckets)?;
        let store = state.store().clone();
        let network = ShardNetwork {
            shard,
            router: running.router.clone(),
        };
        let raft = ShardRaft::new(running.me, config.clone(), network, log, state)
            .await
            .map_err(|error| CoreError::Internal(format!("shard {shard}: {error}")))?;
        if start == Start::Found {
            let voters: BTreeMap<u64, BasicNode> = members
                .iter()
                .map(|node| (u64::from(node_number(node)), BasicNode::new(node)))
                .collect();
            if let Err(error) = raft.initialize(voters).await {
                tracing::debug!(%shard, %error, "shard already initialized");
            }
            // Spread the first leaders over the replicas: the shard's
            // preferred replica stands at once (the others wait for their
            // election timeout, so it usually wins).
            if members[shard.0 as usize % members.len()] == section.name {
                if let Err(error) = raft.trigger().elect().await {
                    tracing::warn!(%shard, %error, "could not stand for election");
                }
            }
        }
        let rejoining = start == Start::Rejoin;
        let proposer = Proposer::start(shard, raft.clone(), running.stop.subscribe());
        groups.insert(
            shard,
            Group {
                raft,
                store,
                proposer,
                rejoining: AtomicBool::new(rejoining),
                leader_commit: AtomicU64::new(0),
                may_stand: AtomicBool::new(false),
                majority_since: std::sync::Mutex::new(None),
            },
        );
    }
    let here = groups.len();
    if running.groups.set(groups).is_err() {
        return Err(CoreError::Internal("wallet shards brought up twice".into()));
    }
    tracing::info!(
        node = %section.name,
        buckets = running.buckets,
        here,
        ?start,
        "wallet shards up"
    );
    Ok(())
}

/// Checks every [`STAND_CHECK_EVERY`] which replicas may stand for election
/// (see [`CONTACT_WINDOW`]) until `stop` turns true.
async fn guard_elections(shards: std::sync::Weak<Shards>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(STAND_CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(running) = shards.upgrade() else {
            return;
        };
        running.ping_quiet_peers();
        running.check_may_stand();
    }
}

/// Delivers the outboxes of the shards this node leads until `stop` turns true.
async fn deliver(shards: std::sync::Weak<Shards>, mut stop: watch::Receiver<bool>) {
    let mut quiet = true;
    while !*stop.borrow() {
        if quiet {
            let Some(waker) = shards.upgrade() else {
                return;
            };
            let woken = async move {
                tokio::select! {
                    _ = waker.outbox_waker.notified() => {}
                    _ = tokio::time::sleep(DELIVERY_INTERVAL) => {}
                }
            };
            tokio::select! {
                _ = woken => {}
                _ = stop.changed() => return,
            }
        }
        let Some(running) = shards.upgrade() else {
            return;
        };
        quiet = running.deliver_round().await == 0;
    }
}
