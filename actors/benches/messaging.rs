//! Messaging throughput side by side in one run: ractor `cast` to one actor against a
//! raw tokio unbounded channel; ractor `call` round trips against a tokio channel
//! carrying a oneshot reply; and one entity-actor command through a real node
//! (`Node::balance` on one wallet) against the raw ractor `call`. Two rows take the
//! entity command apart: ractor `call` with a timeout (as the registry calls) and the
//! sled read the wallet actor does for a balance.
//!
//! `cargo bench -p fixit-actors --bench messaging`
//!
//! Every measurement is timed from inside a spawned tokio task (not from
//! `block_on`), on a two-worker runtime like a node's on this machine.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{black_box, criterion_group, criterion_main, Bencher, Criterion, Throughput};
use fixit_actors::clock::SystemClock;
use fixit_actors::config::NodeConfig;
use fixit_actors::ids::WalletId;
use fixit_actors::Node;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

/// Messages cast per measured iteration; one round trip at the end waits for them all.
const CASTS_PER_ITERATION: u64 = 10_000;
/// Worker threads of the runtime (the machine has two cores).
const WORKER_THREADS: usize = 2;
/// Timeout given to `call` in the row that calls as the entity registry does.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The wallet whose balance the entity rows read.
const WALLET: WalletId = WalletId(1);

/// What the raw ractor actor receives.
enum CounterMessage {
    Add(u64),
    Get(RpcReplyPort<u64>),
}

/// A raw ractor actor that sums what it is sent.
struct Counter;

impl Actor for Counter {
    type Msg = CounterMessage;
    type State = u64;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<CounterMessage>,
        _arguments: (),
    ) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<CounterMessage>,
        message: CounterMessage,
        sum: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CounterMessage::Add(n) => *sum += n,
            CounterMessage::Get(reply) => {
                let _ = reply.send(*sum);
            }
        }
        Ok(())
    }
}

/// What the raw tokio task receives: the same two messages, reply by oneshot.
enum ChannelMessage {
    Add(u64),
    Get(oneshot::Sender<u64>),
}

/// Starts a task that sums what it receives, like [`Counter`] but on a bare channel.
fn spawn_channel_counter(runtime: &Runtime) -> mpsc::UnboundedSender<ChannelMessage> {
    let (sender, mut receiver) = mpsc::unbounded_channel();
    runtime.spawn(async move {
        let mut sum = 0u64;
        while let Some(message) = receiver.recv().await {
            match message {
                ChannelMessage::Add(n) => sum += n,
                ChannelMessage::Get(reply) => {
                    let _ = reply.send(sum);
                }
            }
        }
    });
    sender
}

async fn channel_get(sender: &mpsc::UnboundedSender<ChannelMessage>) -> u64 {
    let (reply, answer) = oneshot::channel();
    sender.send(ChannelMessage::Get(reply)).unwrap();
    answer.await.unwrap()
}

async fn ractor_get(actor: &ActorRef<CounterMessage>, timeout: Option<Duration>) -> u64 {
    actor
        .call(CounterMessage::Get, timeout)
        .await
        .unwrap()
        .expect("the counter answers")
}

/// Measures `iters` rounds of `round` from inside a spawned task.
fn time_rounds<State, Round, Fut>(
    bencher: &mut Bencher<'_>,
    runtime: &Runtime,
    state: State,
    round: Round,
) where
    State: Clone + Send + 'static,
    Round: Fn(State) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    bencher.iter_custom(|iters| {
        let state = state.clone();
        let round = round.clone();
        runtime.block_on(async move {
            tokio::spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    round(state.clone()).await;
                }
                start.elapsed()
            })
            .await
            .unwrap()
        })
    });
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .unwrap()
}

fn messaging(c: &mut Criterion) {
    let runtime = runtime();
    let channel = spawn_channel_counter(&runtime);
    let (actor, actor_handle) = runtime.block_on(Actor::spawn(None, Counter, ())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(
        runtime
            .block_on(Node::start(
                NodeConfig::single_node(dir.path()),
                Arc::new(SystemClock),
            ))
            .unwrap(),
    );
    runtime
        .block_on(node.deposit(WALLET, "bench-opening", 1_000))
        .unwrap();

    let mut group = c.benchmark_group("messaging");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    group.throughput(Throughput::Elements(CASTS_PER_ITERATION));
    time_casts(&mut group, &runtime, &channel, &actor);

    group.throughput(Throughput::Elements(1));
    group.bench_function("call/tokio_mpsc_oneshot", |b| {
        time_rounds(b, &runtime, channel.clone(), |sender| async move {
            black_box(channel_get(&sender).await);
        })
    });
    group.bench_function("call/ractor_call", |b| {
        time_rounds(b, &runtime, actor.clone(), |actor| async move {
            black_box(ractor_get(&actor, None).await);
        })
    });
    group.bench_function("call/ractor_call_with_timeout", |b| {
        time_rounds(b, &runtime, actor.clone(), |actor| async move {
            black_box(ractor_get(&actor, Some(CALL_TIMEOUT)).await);
        })
    });
    group.bench_function("call/entity_wallet_balance", |b| {
        time_rounds(b, &runtime, node.clone(), |node| async move {
            black_box(node.balance(WALLET).await.unwrap());
        })
    });
    group.bench_function("part/sled_wallet_record_read", |b| {
        let store = node.context().store.clone();
        b.iter(|| black_box(store.wallet_record(WALLET).unwrap()))
    });
    group.finish();

    actor.stop(None);
    runtime.block_on(actor_handle).unwrap();
    let node = Arc::into_inner(node).expect("no bench holds the node any more");
    runtime.block_on(node.shutdown()).unwrap();
}

fn time_casts(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &Runtime,
    channel: &mpsc::UnboundedSender<ChannelMessage>,
    actor: &ActorRef<CounterMessage>,
) {
    group.bench_function("cast/tokio_mpsc_unbounded", |b| {
        time_rounds(b, runtime, channel.clone(), |sender| async move {
            for n in 0..CASTS_PER_ITERATION {
                sender.send(ChannelMessage::Add(n)).unwrap();
            }
            black_box(channel_get(&sender).await);
        })
    });
    group.bench_function("cast/ractor_cast", |b| {
        time_rounds(b, runtime, actor.clone(), |actor| async move {
            for n in 0..CASTS_PER_ITERATION {
                actor.cast(CounterMessage::Add(n)).unwrap();
            }
            black_box(ractor_get(&actor, None).await);
        })
    });
}

criterion_group! {
    name = benches;
    // No plots: drawing them takes longer than measuring on a busy two-core machine.
    config = Criterion::default().without_plots();
    targets = messaging
}
criterion_main!(benches);
