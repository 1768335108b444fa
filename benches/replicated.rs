//! Durable wallet operations, side by side in one run: a single node (each
//! deposit fsynced by the wallet actors' group commit) versus three nodes on
//! loopback with every wallet bucket replicated by Raft (each deposit committed
//! by a majority — fsynced on two of three nodes — before it is answered).
//! Clients call the nodes' APIs in this process, spread over the three nodes
//! as clients connected to each would be; the nodes talk over their real
//! mutual-TLS QUIC links.
//!
//! `cargo bench --bench replicated`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fixit_actors::clock::SystemClock;
use fixit_actors::config::NodeConfig;
use fixit_actors::ids::WalletId;
use fixit_actors::ledger::LedgerOp;
use fixit_actors::Node;
use fixit_edge::local_cluster::local_cluster;
use fixit_edge::server::RunningNode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Concurrent clients (each on its own wallets).
const CLIENTS: u64 = 512;
/// Wallets the clients spread over.
const WALLETS: u64 = 10_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `iters` deposits by [`CLIENTS`] concurrent clients over `nodes`; how long
/// they took.
async fn deposits(nodes: &[Arc<Node>], iters: u64, next: &Arc<AtomicU64>) -> Duration {
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let share = iters / CLIENTS + u64::from(client < iters % CLIENTS);
        let node = nodes[client as usize % nodes.len()].clone();
        let next = next.clone();
        clients.spawn(async move {
            for _ in 0..share {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let wallet = WalletId(n % WALLETS + 1);
                node.wallet_op(wallet, &format!("k{n}"), LedgerOp::Deposit { amount: 1 })
                    .await
                    .expect("deposit");
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("client");
    }
    started.elapsed()
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
        b.iter_custom(|iters| runtime.block_on(deposits(&nodes, iters, &next)))
    });
    drop(nodes);
    runtime.block_on(single.shutdown()).expect("stops");

    let regions: BTreeMap<String, String> = [("u33d", "a"), ("u33e", "b"), ("u336", "c")]
        .into_iter()
        .map(|(prefix, node)| (prefix.to_owned(), node.to_owned()))
        .collect();
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
        b.iter_custom(|iters| runtime.block_on(deposits(&nodes, iters, &next)))
    });
    group.finish();
    drop(nodes);
    runtime.block_on(async {
        for running in cluster {
            running.shutdown().await.expect("stops");
        }
    });
}

criterion_group!(benches, wallets);
criterion_main!(benches);
