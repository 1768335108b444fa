//! Ledger throughput, side by side in one run: durable deposits through the wallet
//! actors with group commit, versus sled with a flush per operation, versus sled
//! with no flush at all (the ceiling).
//!
//! `cargo bench -p fixit-actors --bench ledger`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fixit_actors::clock::SystemClock;
use fixit_actors::config::NodeConfig;
use fixit_actors::ids::WalletId;
use fixit_actors::ledger::LedgerOp;
use fixit_actors::store::all_local;
use fixit_actors::store::Store;
use fixit_actors::Node;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Concurrent clients in the group-commit run (each on its own wallet).
const CLIENTS: u64 = 512;
const CACHE_BYTES: u64 = 256 * 1024 * 1024;

fn store_only(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), CACHE_BYTES).unwrap();
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(1));
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    group.bench_function("sled_no_flush", |b| {
        b.iter(|| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            store
                .apply(
                    WalletId(n % 10_000 + 1),
                    &format!("k{n}"),
                    &LedgerOp::Deposit { amount: 1 },
                    0,
                    &all_local,
                )
                .unwrap()
        })
    });
    group.bench_function("sled_flush_per_op", |b| {
        b.iter(|| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            store
                .apply(
                    WalletId(n % 10_000 + 1),
                    &format!("k{n}"),
                    &LedgerOp::Deposit { amount: 1 },
                    0,
                    &all_local,
                )
                .unwrap();
            store.flush().unwrap()
        })
    });
    group.finish();
}

/// A node on a fresh temporary directory with the given least interval between
/// group-commit flushes.
fn bench_node(
    runtime: &tokio::runtime::Runtime,
    min_interval_ms: u64,
) -> (Arc<Node>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::single_node(dir.path());
    config.limits.node_inflight_max = 100_000;
    config.storage.group_commit_min_interval_ms = min_interval_ms;
    let node = runtime
        .block_on(Node::start(config, Arc::new(SystemClock)))
        .unwrap();
    (Arc::new(node), dir)
}

fn print_group_commit(label: &str, node: &Node) {
    let stats = node.context().durability.stats();
    eprintln!(
        "group commit ({label}): {} acks in {} flushes (largest batch {})",
        stats.acks.load(Ordering::Relaxed),
        stats.flushes.load(Ordering::Relaxed),
        stats.batch_max.load(Ordering::Relaxed)
    );
}

fn actors_group_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("ledger");
    group
        .measurement_time(Duration::from_secs(6))
        .sample_size(20);
    // The shipped least interval between flushes, and none, side by side.
    let shipped = NodeConfig::single_node(std::path::Path::new("unused"))
        .storage
        .group_commit_min_interval_ms;
    let mut nodes = Vec::new();
    for (name, interval_ms) in [
        ("actors_durable_group_commit_512_clients", shipped),
        ("actors_durable_group_commit_512_clients_no_interval", 0),
    ] {
        let (node, dir) = bench_node(&runtime, interval_ms);
        group.throughput(Throughput::Elements(CLIENTS));
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                let node = node.clone();
                let next = next.clone();
                async move {
                    let base = next.fetch_add(CLIENTS, Ordering::Relaxed);
                    // Spawned tasks, so the clients run on the runtime's workers.
                    let clients: Vec<_> = (0..CLIENTS)
                        .map(|client| {
                            let node = node.clone();
                            tokio::spawn(async move {
                                let key = format!("d{}", base + client);
                                node.deposit(WalletId(client + 1), &key, 1).await.unwrap()
                            })
                        })
                        .collect();
                    for client in clients {
                        client.await.unwrap();
                    }
                }
            })
        });
        nodes.push((format!("{interval_ms} ms interval"), node, dir));
    }
    let node = nodes[0].1.clone();
    group.throughput(Throughput::Elements(1));
    group.bench_function("actors_durable_one_client", |b| {
        b.to_async(&runtime).iter(|| {
            let node = node.clone();
            let n = next.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::spawn(async move {
                    node.deposit(WalletId(1), &format!("s{n}"), 1)
                        .await
                        .unwrap()
                })
                .await
                .unwrap()
            }
        })
    });
    group.finish();
    for (label, node, _dir) in &nodes {
        print_group_commit(label, node);
    }
}

criterion_group!(benches, store_only, actors_group_commit);
criterion_main!(benches);
