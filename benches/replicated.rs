//! Durable wallet operations, side by side in one run: a single node (each
//! deposit fsynced by the wallet actors' group commit) versus three nodes on
//! loopback with every wallet bucket replicated by Raft (each deposit committed
//! by a majority — fsynced on two of three nodes — before it is answered).
//! Clients call the nodes' APIs in this process, spread over the three nodes
//! as clients connected to each would be; the nodes talk over their real
//! mutual-TLS QUIC links.
//!
//! The second group runs the same side by side as operators run it: each
//! node its own `fixit node` process, the clients in this process calling
//! them over QUIC with the SDK. In one process the three replicas of every
//! shard share sled's process-wide transaction lock (its transactions are
//! exclusive across every database of the process); apart, each node has its
//! own.
//!
//! `cargo bench --bench replicated`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fixit_actors::clock::SystemClock;
use fixit_actors::config::NodeConfig;
use fixit_actors::ids::WalletId;
use fixit_actors::ledger::LedgerOp;
use fixit_actors::Node;
use fixit_edge::auth::{Principal, Role, TokenKey};
use fixit_edge::load::spawn::SpawnedNode;
use fixit_edge::local_cluster::local_cluster;
use fixit_edge::server::RunningNode;
use fixit_sdk::{Client, Commands, Connector};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Concurrent clients (each on its own wallets).
const CLIENTS: u64 = 512;
/// Wallets the clients spread over.
const WALLETS: u64 = 10_000;
/// QUIC connections to each node process (the clients share them).
const CONNECTIONS_PER_NODE: usize = 8;
/// Longest a deposit keeps being retried while its node says busy or
/// unavailable (a shard electing its first leader).
const RETRY_FOR: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `iters` deposits by [`CLIENTS`] concurrent clients, client `n` through
/// `targets[n % len]` with `deposit(target, n)`; how long they took.
async fn concurrently<C, F, Fut>(
    targets: &[C],
    iters: u64,
    next: &Arc<AtomicU64>,
    deposit: F,
) -> Duration
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let share = iters / CLIENTS + u64::from(client < iters % CLIENTS);
        let target = targets[client as usize % targets.len()].clone();
        let next = next.clone();
        clients.spawn(async move {
            for _ in 0..share {
                deposit(target.clone(), next.fetch_add(1, Ordering::Relaxed)).await;
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("client");
    }
    started.elapsed()
}

/// Deposit number `n` through a node's API in this process.
async fn deposit_in_process(node: Arc<Node>, n: u64) {
    let wallet = WalletId(n % WALLETS + 1);
    node.wallet_op(wallet, &format!("k{n}"), LedgerOp::Deposit { amount: 1 })
        .await
        .expect("deposit");
}

/// Deposit number `n` over an SDK connection.
async fn deposit_over_quic(client: Client, n: u64) {
    deposit(&client, n % WALLETS + 1, &format!("k{n}")).await;
}

/// The three regions of the local cluster, one per node.
fn regions() -> BTreeMap<String, String> {
    [("u33d", "a"), ("u33e", "b"), ("u336", "c")]
        .into_iter()
        .map(|(prefix, node)| (prefix.to_owned(), node.to_owned()))
        .collect()
}

/// One deposit of 1 into `wallet` under `key`, retried with the same key while
/// the node asks for it (at most [`RETRY_FOR`]).
async fn deposit(client: &Client, wallet: u64, key: &str) {
    let started = Instant::now();
    loop {
        match client.deposit(wallet, key, 1).await {
            Ok(_) => return,
            Err(error) => {
                let after = error.retry_after_ms();
                assert!(
                    after.is_some() && started.elapsed() < RETRY_FOR,
                    "deposit {key}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(after.unwrap_or(0).min(100))).await;
            }
        }
    }
}

/// Starts `fixit node` on `config` in `dir`, with rate limits out of the way
/// (every deposit comes from one admin).
async fn spawn(mut config: NodeConfig, dir: &Path) -> SpawnedNode {
    let limits = &mut config.rate_limits;
    limits.principal_per_s = 1_000_000;
    limits.principal_burst = 1_000_000;
    limits.address_per_s = 1_000_000;
    limits.address_burst = 1_000_000;
    std::fs::create_dir_all(dir).expect("node dir");
    SpawnedNode::start(Path::new(env!("CARGO_BIN_EXE_fixit")), config, dir)
        .await
        .expect("node process")
}

/// [`CONNECTIONS_PER_NODE`] admin connections to each of `nodes`.
async fn connect(nodes: &[SpawnedNode]) -> Vec<Client> {
    let key = TokenKey::load_or_create(&nodes[0].config.auth.secret_file).expect("token key");
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3_600;
    let token = key.issue(
        Principal {
            role: Role::Admin,
            sub: 0,
        },
        expires,
    );
    let mut clients = Vec::new();
    for node in nodes {
        let bind = "127.0.0.1:0".parse().expect("address");
        let connector = Connector::new(&node.config.server.tls_cert_file, bind).expect("connector");
        for _ in 0..CONNECTIONS_PER_NODE {
            clients.push(
                connector
                    .connect(node.quic, &token)
                    .await
                    .expect("connects"),
            );
        }
    }
    clients
}

/// Durable deposits side by side with every node its own process: one
/// `fixit node` versus three replicating every wallet bucket.
fn processes(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("durable_deposits_processes");
    group.throughput(Throughput::Elements(1));
    group
        .measurement_time(Duration::from_secs(10))
        .sample_size(10);

    let mut single = runtime.block_on(async {
        let home = dir.path().join("single");
        let mut config = NodeConfig::single_node(&home);
        config.server.quic_listen = "127.0.0.1:0".parse().expect("address");
        config.server.http_listen = "127.0.0.1:0".parse().expect("address");
        vec![spawn(config, &home).await]
    });
    let clients = runtime.block_on(connect(&single));
    group.bench_function("single_node", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(concurrently(&clients, iters, &next, deposit_over_quic))
        })
    });
    drop(clients);
    runtime.block_on(single[0].stop()).expect("stops");
    single.clear();

    let mut cluster = runtime.block_on(async {
        let configs = local_cluster(&dir.path().join("cluster"), &regions()).expect("configs");
        let mut running = Vec::new();
        for mut config in configs {
            if let Some(cluster) = config.cluster.as_mut() {
                cluster.replication_factor = 3;
            }
            let home = config.node.data_dir.clone();
            running.push(spawn(config, &home).await);
        }
        running
    });
    let clients = runtime.block_on(async {
        let clients = connect(&cluster).await;
        // Until every shard has a leader (retried inside).
        for wallet in 1..=64 {
            deposit(
                &clients[wallet as usize % clients.len()],
                wallet,
                &format!("warm-{wallet}"),
            )
            .await;
        }
        clients
    });
    group.bench_function("replicated_3_nodes", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(concurrently(&clients, iters, &next, deposit_over_quic))
        })
    });
    group.finish();
    drop(clients);
    runtime.block_on(async {
        for node in &mut cluster {
            node.stop().await.expect("stops");
        }
    });
}

fn wallets(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("durable_deposits");
    group.throughput(Throughput::Elements(1));
    group
        .measurement_time(Duration::from_secs(10))
        .sample_size(10);

    let single = runtime.block_on(async {
        let config = NodeConfig::single_node(&dir.path().join("single"));
        RunningNode::start(config, Arc::new(SystemClock))
            .await
            .expect("single node")
    });
    let nodes = [single.node().clone()];
    group.bench_function("single_node", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(concurrently(&nodes, iters, &next, deposit_in_process))
        })
    });
    drop(nodes);
    runtime.block_on(single.shutdown()).expect("stops");

    let regions = regions();
    let cluster = runtime.block_on(async {
        let mut running = Vec::new();
        for mut config in local_cluster(&dir.path().join("cluster"), &regions).expect("configs") {
            if let Some(cluster) = config.cluster.as_mut() {
                cluster.replication_factor = 3;
            }
            running.push(
                RunningNode::start(config, Arc::new(SystemClock))
                    .await
                    .expect("node"),
            );
        }
        // Until every shard has a leader: one deposit per bucket-ish, retried.
        for wallet in 1..=64 {
            for attempt in 0.. {
                let node = running[wallet as usize % running.len()].node();
                let key = format!("warm-{wallet}");
                match node
                    .wallet_op(WalletId(wallet), &key, LedgerOp::Deposit { amount: 1 })
                    .await
                {
                    Ok(_) => break,
                    Err(error) => {
                        assert!(attempt < 100 && error.is_retryable(), "{error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        running
    });
    let nodes: Vec<Arc<Node>> = cluster
        .iter()
        .map(|running| running.node().clone())
        .collect();
    group.bench_function("replicated_3_nodes", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(concurrently(&nodes, iters, &next, deposit_in_process))
        })
    });
    group.finish();
    drop(nodes);
    runtime.block_on(async {
        for running in cluster {
            running.shutdown().await.expect("stops");
        }
    });
}

criterion_group!(benches, wallets, processes);
criterion_main!(benches);
