//! Replicated wallet shards on three `fixit node` child processes (replication
//! factor 3, eight buckets): `kill -9` of each node in turn under deposits, a
//! node restarted on an empty data dir, and two nodes down at once. Clients hold
//! the list of nodes and retry another one (as the SDK does), with the same
//! idempotency key. Every acknowledged deposit is in the final balances exactly
//! once, replicas that applied the same index hold the same state, and with two
//! of three down nothing is acknowledged: the survivor answers `unavailable`.

#![cfg(unix)]

mod cluster_common;
mod process_common;

use cluster_common::*;
use fixit_actors::ids::WalletId;
use fixit_cluster::shards::shard_of;
use fixit_edge::auth::Role;
use fixit_edge::local_cluster::local_cluster;
use process_common::NodeProcess;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BUCKETS: u32 = 8;
/// Wallets per bucket.
const PER_BUCKET: usize = 2;
/// How long a client keeps retrying one call over the nodes.
const CLIENT_PATIENCE: Duration = Duration::from_secs(15);

struct Nodes {
    files: BTreeMap<String, PathBuf>,
    data_dirs: BTreeMap<String, PathBuf>,
    running: BTreeMap<String, NodeProcess>,
    admin: String,
}

impl Nodes {
    fn rest(&self, name: &str) -> Rest {
        Rest::new(&self.running[name].http)
    }

    fn start(&mut self, name: &str) {
        let process = NodeProcess::start(&self.files[name]);
        self.running.insert(name.to_owned(), process);
    }

    fn kill(&mut self, name: &str) {
        self.running.remove(name).expect("running").kill9();
    }

    /// Every running node's shard views, by node.
    async fn views(&self) -> BTreeMap<String, Vec<Value>> {
        let mut views = BTreeMap::new();
        for name in self.running.keys() {
            let (status, view) = self.rest(name).get("/cluster", &self.admin).await;
            if status == 200 {
                let shards = view["shards"].as_array().cloned().unwrap_or_default();
                views.insert(name.clone(), shards);
            }
        }
        views
    }

    /// Waits (60 s at most) until every running node replicates every shard,
    /// the running nodes agree on one leader per shard, and all replicas of a
    /// shard applied the same index and hold the same digest with empty
    /// outboxes. Answers shard → leader.
    async fn wait_agreed(&self) -> BTreeMap<String, String> {
        let mut last = BTreeMap::new();
        for _ in 0..600 {
            let views = self.views().await;
            if let Some(leaders) = agreed(&views, self.running.len()) {
                return leaders;
            }
            last = views;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("replicas never agreed: {last:#?}");
    }

    /// Each running node's name and HTTP address.
    fn addrs(&self) -> Vec<(String, String)> {
        self.running
            .iter()
            .map(|(name, process)| (name.clone(), process.http.clone()))
            .collect()
    }

    /// Deposits as a client holding the running nodes' addresses would.
    async fn deposit(&self, first: usize, wallet: u64, key: &str, amount: i64) {
        deposit_via(&self.admin, &self.addrs(), first, wallet, key, amount).await;
    }
}

/// Shard → leader when the running nodes all replicate every shard, agree on
/// its leader, and its replicas applied the same index with the same digest
/// and an empty outbox.
fn agreed(
    views: &BTreeMap<String, Vec<Value>>,
    running: usize,
) -> Option<BTreeMap<String, String>> {
    if views.len() != running {
        return None;
    }
    let mut leaders = BTreeMap::new();
    for shard in 0..BUCKETS {
        let name = format!("w{shard}");
        let replicas: Vec<&Value> = views
            .values()
            .filter_map(|shards| shards.iter().find(|view| view["shard"] == name.as_str()))
            .collect();
        if replicas.len() != running {
            return None;
        }
        let first = replicas[0];
        let leader = first["leader"].as_str()?;
        if !views.contains_key(leader) {
            return None;
        }
        let same = replicas.iter().all(|view| {
            view["leader"] == first["leader"]
                && view["rejoining"] == false
                && view["applied"] == first["applied"]
                && view["digest"] == first["digest"]
                && view["audit"]["outbox_transfers"] == 0
        });
        if !same {
            return None;
        }
        leaders.insert(name, leader.to_owned());
    }
    Some(leaders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_wallets_survive_kills_disk_loss_and_a_lost_majority() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut configs = local_cluster(dir.path(), &regions()).expect("cluster configs");
    let secret = configs[0].auth.secret_file.clone();
    let mut files = BTreeMap::new();
    let mut data_dirs = BTreeMap::new();
    for config in &mut configs {
        let cluster = config.cluster.as_mut().expect("cluster section");
        cluster.replication_factor = 3;
        cluster.wallet_buckets = BUCKETS;
        // Snapshots every few entries: a blank replica must catch up by one.
        cluster.shard_snapshot_entries = 10;
        let path = dir.path().join(format!("{}.toml", config.node.id));
        std::fs::write(&path, toml::to_string(&*config).expect("config as TOML")).expect("write");
        files.insert(config.node.id.clone(), path);
        data_dirs.insert(config.node.id.clone(), config.node.data_dir.clone());
    }
    let mut nodes = Nodes {
        files,
        data_dirs,
        running: BTreeMap::new(),
        admin: token(&secret, Role::Admin, 0),
    };
    for name in NAMES {
        nodes.start(name);
    }
    for name in NAMES {
        nodes.rest(name).wait_links_up(&nodes.admin).await;
    }
    let leaders = nodes.wait_agreed().await;
    println!("leaders at start: {leaders:?}");

    // Wallets in every bucket.
    let mut wallets: Vec<u64> = Vec::new();
    for bucket in 0..BUCKETS {
        wallets.extend(
            (1_000u64..)
                .filter(|id| shard_of(WalletId(*id), BUCKETS).0 == bucket)
                .take(PER_BUCKET),
        );
    }
    let mut expected: BTreeMap<u64, i64> = wallets.iter().map(|id| (*id, 0)).collect();
    for (i, wallet) in wallets.iter().enumerate() {
        nodes.deposit(i, *wallet, "first", 1_000).await;
        *expected.get_mut(wallet).expect("wallet") += 1_000;
    }

    // kill -9 of each node in turn, deposits to every wallet at once right after.
    let mut failovers_ms: Vec<u128> = Vec::new();
    for victim in NAMES {
        let leaders = nodes.wait_agreed().await;
        nodes.kill(victim);
        let killed = Instant::now();
        let mut acks = tokio::task::JoinSet::new();
        for (i, wallet) in wallets.iter().copied().enumerate() {
            let (admin, addrs) = (nodes.admin.clone(), nodes.addrs());
            let key = format!("after-kill-{victim}");
            acks.spawn(async move {
                deposit_via(&admin, &addrs, i, wallet, &key, 10).await;
                (wallet, killed.elapsed())
            });
        }
        while let Some(joined) = acks.join_next().await {
            let (wallet, elapsed) = joined.expect("client task");
            *expected.get_mut(&wallet).expect("wallet") += 10;
            let shard = format!("w{}", shard_of(WalletId(wallet), BUCKETS).0);
            if leaders[&shard] == victim {
                failovers_ms.push(elapsed.as_millis());
            }
        }
        nodes.start(victim);
        nodes.rest(victim).wait_links_up(&nodes.admin).await;
        nodes.wait_agreed().await;
    }
    failovers_ms.sort_unstable();
    println!(
        "failover (kill → first acknowledged write to a shard the victim led), ms: {failovers_ms:?}"
    );
    assert!(
        !failovers_ms.is_empty(),
        "no victim led a shard: {leaders:?}"
    );

    // Disk loss: b's data dir is deleted while it is down; it catches up, by
    // snapshot where the log it needs is purged.
    nodes.kill("b");
    std::fs::remove_dir_all(&nodes.data_dirs["b"]).expect("delete b's data dir");
    for round in 0..3 {
        for (i, wallet) in wallets.iter().enumerate() {
            nodes
                .deposit(i, *wallet, &format!("while-b-is-blank-{round}"), 5)
                .await;
            *expected.get_mut(wallet).expect("wallet") += 5;
        }
    }
    let views = nodes.views().await;
    let purged = views["a"]
        .iter()
        .filter(|view| view["purged"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(purged > 0, "no shard purged its log: {views:#?}");
    nodes.start("b");
    nodes.rest("b").wait_links_up(&nodes.admin).await;
    nodes.wait_agreed().await;
    assert_balances(&nodes, &expected).await;

    // Two of three down: nothing is acknowledged, the survivor says unavailable.
    nodes.kill("a");
    nodes.kill("c");
    let lonely = wallets[0];
    let (status, answer) = nodes
        .rest("b")
        .post(
            &format!("/v1/wallets/{lonely}/deposit"),
            &nodes.admin,
            json!({ "key": "no-majority", "amount": 7 }),
        )
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "unavailable", "{answer}");
    let (status, answer) = nodes
        .rest("b")
        .get(&format!("/v1/wallets/{lonely}"), &nodes.admin)
        .await;
    assert_eq!(status, 503, "a read without a majority: {answer}");
    nodes.start("a");
    nodes.start("c");
    for name in NAMES {
        nodes.rest(name).wait_links_up(&nodes.admin).await;
    }
    // The client retries its unacknowledged deposit with the same key: once.
    nodes.deposit(0, lonely, "no-majority", 7).await;
    *expected.get_mut(&lonely).expect("wallet") += 7;
    nodes.wait_agreed().await;
    assert_balances(&nodes, &expected).await;

    // Conservation over the shards: one replica of each (they agree).
    let views = nodes.views().await;
    let (mut total, mut deposited) = (0i64, 0i64);
    for view in &views["a"] {
        assert_eq!(view["audit"]["holds"], true, "{view}");
        total += view["audit"]["total_balance"].as_i64().expect("total");
        deposited += view["audit"]["flows"]["deposited"]
            .as_i64()
            .expect("deposited");
    }
    assert_eq!(total, expected.values().sum::<i64>());
    assert_eq!(deposited, total);
}

/// Reads every wallet through every node: each equals what was acknowledged.
async fn assert_balances(nodes: &Nodes, expected: &BTreeMap<u64, i64>) {
    for name in nodes.running.keys() {
        let rest = nodes.rest(name);
        for (wallet, amount) in expected {
            let body = rest
                .ok(
                    Method::GET,
                    &format!("/v1/wallets/{wallet}"),
                    &nodes.admin,
                    None,
                )
                .await;
            assert_eq!(body["available"], *amount, "wallet {wallet} via {name}");
        }
    }
}

/// A client holding the nodes' addresses: deposits via each in turn until one
/// acknowledges (same key every time).
async fn deposit_via(
    admin: &str,
    nodes: &[(String, String)],
    first: usize,
    wallet: u64,
    key: &str,
    amount: i64,
) {
    let started = Instant::now();
    let mut attempt = first;
    loop {
        let (_, http) = &nodes[attempt % nodes.len()];
        let body = json!({ "key": key, "amount": amount });
        let path = format!("/v1/wallets/{wallet}/deposit");
        let (status, answer) = Rest::new(http).post(&path, admin, body).await;
        if status == 200 {
            return;
        }
        assert!(
            matches!(status, 429 | 503),
            "deposit {key} on {wallet}: {status} {answer}"
        );
        assert!(
            started.elapsed() < CLIENT_PATIENCE,
            "deposit {key} never acknowledged"
        );
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An SDK client holding all three nodes' addresses (and a bundle of their
/// certificates) carries on through another node when its own stops; a read on
/// any node sees every acknowledged write (linearizable reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_client_moves_to_another_node_when_its_node_stops() {
    use fixit_sdk::{Commands, Connector};
    let mut cluster = Cluster::start_with(|config| {
        let cluster = config.cluster.as_mut().expect("cluster section");
        cluster.replication_factor = 3;
        cluster.wallet_buckets = BUCKETS;
    })
    .await;
    let bundle = cluster._dir.path().join("nodes-bundle.pem");
    let mut pems = String::new();
    for name in NAMES {
        let config = cluster.nodes[name].node().context().config.clone();
        pems.push_str(&std::fs::read_to_string(&config.server.tls_cert_file).expect("cert"));
    }
    std::fs::write(&bundle, pems).expect("bundle");
    let addrs: Vec<std::net::SocketAddr> = NAMES
        .iter()
        .map(|name| cluster.nodes[*name].quic_addr())
        .collect();
    let admin = cluster.token(Role::Admin, 0);
    let connector = Connector::new(&bundle, "127.0.0.1:0".parse().unwrap()).expect("connector");
    let client = connector
        .connect_any(&addrs, &admin)
        .await
        .expect("connects");
    assert_eq!(client.node_addr(), addrs[0]);
    let wallet = 4_242;
    let mut acknowledged = 0;
    // Leaders may still be settling right after start: a retry is the client's.
    for attempt in 0.. {
        match client.deposit(wallet, "before", 100).await {
            Ok(_) => break,
            Err(error) => assert!(
                attempt < 50
                    && matches!(&error, fixit_edge::api::ApiError::Core(core) if core.is_retryable()),
                "{error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acknowledged += 100;

    cluster.stop_node("a").await;
    let outcome = client
        .deposit(wallet, "after", 10)
        .await
        .expect("served elsewhere");
    acknowledged += 10;
    assert_eq!(outcome.balance.available, acknowledged);
    assert_ne!(
        client.node_addr(),
        addrs[0],
        "the client moved off the stopped node"
    );
    assert_eq!(client.failovers(), 1);
    let balance = client.balance(wallet).await.expect("balance");
    assert_eq!(balance.available, acknowledged);
    // A retry of an acknowledged deposit after the move is not counted again.
    let again = client
        .deposit(wallet, "before", 100)
        .await
        .expect("replayed");
    assert_eq!(again.balance.available, 100, "the first answer, replayed");
    assert_eq!(
        client.balance(wallet).await.expect("balance").available,
        acknowledged
    );

    cluster.restart_node("a").await;
    let (available, _) = cluster.balance("a", wallet).await;
    assert_eq!(available, acknowledged, "read through a after its restart");
    client.close().await;
    cluster.stop().await;
}

/// Concurrent writes to one shard are proposed together: the shard's log grows
/// by fewer entries than there were operations, and every operation is applied
/// exactly once and answered with its own outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_one_shard_are_batched_into_fewer_log_entries() {
    use fixit_actors::ledger::LedgerOp;
    use fixit_cluster::shards::ViewDepth;
    const WRITES: u64 = 300;
    let cluster = Cluster::start_with(|config| {
        let cluster = config.cluster.as_mut().expect("cluster section");
        cluster.replication_factor = 3;
        // One bucket: every wallet in the same shard.
        cluster.wallet_buckets = 1;
    })
    .await;
    let node = cluster.nodes["a"].node().clone();
    // Leaders may still be settling right after start.
    for attempt in 0.. {
        match node
            .wallet_op(WalletId(1), "warm", LedgerOp::Deposit { amount: 1 })
            .await
        {
            Ok(_) => break,
            Err(error) => assert!(attempt < 50 && error.is_retryable(), "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let router = cluster.nodes["a"]
        .api()
        .cluster()
        .expect("in a cluster")
        .clone();
    let applied = || {
        let views = router.shards().expect("replicated").views(ViewDepth::Raft);
        assert_eq!(views.len(), 1, "{views:?}");
        views[0].applied.expect("applied")
    };
    let before = applied();
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..WRITES {
        let node = node.clone();
        writes.spawn(async move {
            let wallet = WalletId(100 + n);
            let outcome = node
                .wallet_op(
                    wallet,
                    &format!("d{n}"),
                    LedgerOp::Deposit {
                        amount: n as i64 + 1,
                    },
                )
                .await
                .expect("deposit");
            (n, outcome)
        });
    }
    while let Some(done) = writes.join_next().await {
        let (n, outcome) = done.expect("task");
        assert_eq!(outcome.balance.available, n as i64 + 1, "its own outcome");
    }
    let entries = applied() - before;
    assert!(
        entries < WRITES,
        "{WRITES} concurrent writes took {entries} log entries: not batched"
    );
    // Read back through another node (its reads go to the leader).
    let other = cluster.nodes["b"].node().clone();
    for n in 0..WRITES {
        let balance = other.balance(WalletId(100 + n)).await.expect("balance");
        assert_eq!(balance.available, n as i64 + 1, "wallet {}", 100 + n);
    }
    println!("{WRITES} concurrent deposits in {entries} log entries");
    drop((node, other, router));
    cluster.stop().await;
}
