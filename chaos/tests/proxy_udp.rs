//! The fault proxy over real UDP on loopback: forwarding, loss with a seed, cuts,
//! delays, its bounds and its stop. Nothing here asserts a timing; waits are only
//! upper bounds after which a test fails.

use fixit_chaos::proxy::{Cut, FaultProxy, Faults, ProxyConfig, ProxyCounts};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

/// The longest any wait in these tests may take before the test fails.
const WAIT_MS_MAX: u64 = 10_000;
/// How often a wait looks at the counters again.
const POLL_MS: u64 = 5;

/// What an upstream test server saw: the peers that sent and the payloads.
#[derive(Default)]
struct Seen {
    peers: HashSet<SocketAddr>,
    payloads: Vec<Vec<u8>>,
}

/// A UDP server on loopback that records every datagram and, if `echo`, sends it
/// back to its sender. Abort the handle to stop it.
async fn upstream_server(echo: bool) -> (SocketAddr, Arc<Mutex<Seen>>, JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 65_535];
        // Runs until the test aborts it.
        loop {
            let Ok((length, from)) = socket.recv_from(&mut buffer).await else {
                continue;
            };
            {
                let mut seen = record.lock().unwrap();
                seen.peers.insert(from);
                seen.payloads.push(buffer[..length].to_vec());
            }
            if echo {
                let _ = socket.send_to(&buffer[..length], from).await;
            }
        }
    });
    (addr, seen, task)
}

fn seen_count(seen: &Mutex<Seen>) -> usize {
    seen.lock().unwrap().payloads.len()
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Waits until `done` holds for the proxy's counters; fails the test after
/// [`WAIT_MS_MAX`].
async fn wait_for_counts(proxy: &FaultProxy, what: &str, done: impl Fn(&ProxyCounts) -> bool) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while !done(&proxy.counts()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            proxy.counts()
        );
        sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// Waits until the upstream server has seen `count` datagrams.
async fn wait_for_seen(seen: &Mutex<Seen>, count: usize) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while seen_count(seen) < count {
        assert!(
            Instant::now() < deadline,
            "upstream saw {} of {count}",
            seen_count(seen)
        );
        sleep(Duration::from_millis(POLL_MS)).await;
    }
}

async fn receive(socket: &UdpSocket) -> Vec<u8> {
    let mut buffer = vec![0u8; 65_535];
    let wait = Duration::from_millis(WAIT_MS_MAX);
    let (length, _) = timeout(wait, socket.recv_from(&mut buffer))
        .await
        .expect("no datagram came back in time")
        .unwrap();
    buffer.truncate(length);
    buffer
}

async fn start(upstream: SocketAddr, seed: u64, faults: Faults) -> FaultProxy {
    println!("fault proxy seed {seed}");
    FaultProxy::start(ProxyConfig::new(upstream, seed), faults)
        .await
        .unwrap()
}

#[tokio::test]
async fn datagrams_go_both_ways_with_one_upstream_peer_per_client() {
    let (upstream, seen, server) = upstream_server(true).await;
    let proxy = start(upstream, 1, Faults::NONE).await;
    let clients = [client().await, client().await];
    for round in 0..10u8 {
        for (index, client) in clients.iter().enumerate() {
            let payload = vec![index as u8, round];
            client.send_to(&payload, proxy.local_addr()).await.unwrap();
            assert_eq!(receive(client).await, payload);
        }
    }
    wait_for_counts(&proxy, "20 replies", |c| c.from_upstream.forwarded == 20).await;
    let counts = proxy.stop().await;
    for direction in [counts.to_upstream, counts.from_upstream] {
        assert_eq!(direction.received, 20);
        assert_eq!(direction.forwarded, 20);
        assert_eq!(direction.faults_injected(), 0);
        assert_eq!(direction.dropped_overflow + direction.send_failed, 0);
    }
    assert_eq!(counts.flows_opened, 2);
    let peers = seen.lock().unwrap().peers.clone();
    assert_eq!(
        peers.len(),
        2,
        "the upstream sees each client as its own peer"
    );
    server.abort();
}

/// Sends `count` numbered datagrams through a proxy with 20% loss and `seed`, and
/// returns the numbers the upstream received, sorted.
async fn delivered_through_loss(seed: u64, count: u32) -> Vec<u32> {
    /// Datagrams sent before waiting for the proxy to decide them all, so no socket
    /// buffer overflows (which would change the input sequence).
    const WINDOW: u32 = 50;
    let (upstream, seen, server) = upstream_server(false).await;
    let proxy = start(upstream, seed, Faults::loss(20)).await;
    let client = client().await;
    let decided = |c: &ProxyCounts| c.to_upstream.forwarded + c.to_upstream.dropped_loss;
    for number in 0..count {
        client
            .send_to(&number.to_be_bytes(), proxy.local_addr())
            .await
            .unwrap();
        let sent = u64::from(number + 1);
        if sent % u64::from(WINDOW) == 0 || number + 1 == count {
            wait_for_counts(&proxy, "decisions", |c| decided(c) == sent).await;
        }
    }
    let counts = proxy.stop().await;
    assert_eq!(counts.to_upstream.received, u64::from(count));
    wait_for_seen(&seen, counts.to_upstream.forwarded as usize).await;
    server.abort();
    let mut numbers: Vec<u32> = seen
        .lock()
        .unwrap()
        .payloads
        .iter()
        .map(|p| u32::from_be_bytes(p[..4].try_into().unwrap()))
        .collect();
    numbers.sort_unstable();
    numbers
}

#[tokio::test]
async fn twenty_percent_loss_is_in_band_and_replays_with_the_same_seed() {
    const COUNT: u32 = 2_000;
    let first = delivered_through_loss(7, COUNT).await;
    // 80% of 2,000 is 1,600; the band is more than five standard deviations wide.
    assert!(
        (1_500..=1_700).contains(&first.len()),
        "delivered {}",
        first.len()
    );
    let replay = delivered_through_loss(7, COUNT).await;
    assert_eq!(first, replay, "same seed, same datagrams: same deliveries");
    let other = delivered_through_loss(8, COUNT).await;
    assert_ne!(first, other, "another seed drops other datagrams");
}

#[tokio::test]
async fn cuts_drop_their_direction_until_healed() {
    let (upstream, seen, server) = upstream_server(true).await;
    let proxy = start(upstream, 3, Faults::NONE).await;
    let client = client().await;
    let to = proxy.local_addr();

    proxy.control().cut(Cut::ToUpstream);
    client.send_to(b"one", to).await.unwrap();
    wait_for_counts(&proxy, "a cut datagram", |c| c.to_upstream.dropped_cut == 1).await;
    assert_eq!(seen_count(&seen), 0, "nothing reached the upstream");

    proxy.control().cut(Cut::FromUpstream);
    client.send_to(b"two", to).await.unwrap();
    wait_for_counts(&proxy, "a cut reply", |c| c.from_upstream.dropped_cut == 1).await;
    assert_eq!(seen_count(&seen), 1, "the upstream got it");
    let mut buffer = [0u8; 16];
    assert_eq!(
        client.try_recv_from(&mut buffer).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the reply was dropped, so nothing can be on its way"
    );

    proxy.partition();
    assert_eq!(proxy.faults().cut, Cut::Both);
    client.send_to(b"three", to).await.unwrap();
    wait_for_counts(&proxy, "a partitioned datagram", |c| {
        c.to_upstream.dropped_cut == 2
    })
    .await;
    assert_eq!(seen_count(&seen), 1);

    proxy.heal();
    client.send_to(b"four", to).await.unwrap();
    assert_eq!(receive(&client).await, b"four");
    wait_for_counts(&proxy, "the reply", |c| c.from_upstream.forwarded == 1).await;
    let counts = proxy.stop().await;
    assert_eq!(counts.to_upstream.received, 4);
    assert_eq!(counts.to_upstream.forwarded, 2);
    assert_eq!(counts.to_upstream.dropped_cut, 2);
    assert_eq!(counts.from_upstream.received, 2);
    assert_eq!(counts.from_upstream.dropped_cut, 1);
    assert_eq!(counts.faults_injected(), 3);
    let payloads = seen.lock().unwrap().payloads.clone();
    assert_eq!(payloads, vec![b"two".to_vec(), b"four".to_vec()]);
    server.abort();
}

#[tokio::test]
async fn delayed_datagrams_all_arrive() {
    const COUNT: u8 = 100;
    let (upstream, _seen, server) = upstream_server(true).await;
    let proxy = start(upstream, 4, Faults::delay(20, 15)).await;
    let client = client().await;
    for number in 0..COUNT {
        client.send_to(&[number], proxy.local_addr()).await.unwrap();
    }
    let mut arrived = HashSet::new();
    for _ in 0..COUNT {
        arrived.insert(receive(&client).await[0]);
    }
    assert_eq!(
        arrived.len(),
        usize::from(COUNT),
        "every datagram came back once"
    );
    let count = u64::from(COUNT);
    wait_for_counts(&proxy, "all replies", |c| {
        c.from_upstream.forwarded == count
    })
    .await;
    let counts = proxy.stop().await;
    for direction in [counts.to_upstream, counts.from_upstream] {
        assert_eq!(direction.delayed, count);
        assert_eq!(direction.forwarded, count);
    }
    assert_eq!(counts.delayed_waiting, 0);
    server.abort();
}

#[tokio::test]
async fn a_full_delay_queue_drops_and_counts_the_excess() {
    let (upstream, seen, server) = upstream_server(false).await;
    let config = ProxyConfig {
        delayed_max: 10,
        ..ProxyConfig::new(upstream, 5)
    };
    // Long enough that all 30 are read before the first 10 are due.
    let proxy = FaultProxy::start(config, Faults::delay(2_000, 0))
        .await
        .unwrap();
    let client = client().await;
    for number in 0..30u8 {
        client.send_to(&[number], proxy.local_addr()).await.unwrap();
    }
    wait_for_counts(&proxy, "30 decisions", |c| c.to_upstream.received == 30).await;
    let counts = proxy.counts();
    assert_eq!(
        counts.to_upstream.delayed + counts.to_upstream.dropped_overflow,
        30
    );
    assert!(counts.to_upstream.delayed <= 10, "{counts:?}");
    let delayed = counts.to_upstream.delayed as usize;
    wait_for_seen(&seen, delayed).await;
    wait_for_counts(&proxy, "an empty queue", |c| c.delayed_waiting == 0).await;
    assert_eq!(proxy.stop().await.to_upstream.forwarded, delayed as u64);
    server.abort();
}

#[tokio::test]
async fn a_full_flow_table_refuses_new_clients_unless_a_flow_is_idle() {
    let (upstream, _seen, server) = upstream_server(true).await;
    for (flow_idle_ms, evicts) in [(3_600_000, false), (0, true)] {
        let config = ProxyConfig {
            flows_max: 2,
            flow_idle_ms,
            ..ProxyConfig::new(upstream, 6)
        };
        let proxy = FaultProxy::start(config, Faults::NONE).await.unwrap();
        let clients = [client().await, client().await, client().await];
        for client in &clients[..2] {
            client.send_to(b"hi", proxy.local_addr()).await.unwrap();
            assert_eq!(receive(client).await, b"hi");
        }
        clients[2].send_to(b"hi", proxy.local_addr()).await.unwrap();
        if evicts {
            assert_eq!(receive(&clients[2]).await, b"hi");
        } else {
            wait_for_counts(&proxy, "a refused flow", |c| {
                c.to_upstream.dropped_overflow == 1
            })
            .await;
        }
        let counts = proxy.stop().await;
        assert_eq!(counts.flows_evicted, u64::from(evicts));
        assert_eq!(counts.flows_opened, 2 + u64::from(evicts));
    }
    server.abort();
}

#[tokio::test]
async fn stop_closes_the_listening_socket_and_refused_faults_change_nothing() {
    let (upstream, _seen, server) = upstream_server(true).await;
    let proxy = start(upstream, 7, Faults::loss(10)).await;
    let control = proxy.control();
    assert!(proxy.set(Faults::loss(101)).is_err());
    assert!(proxy.set(Faults::delay(10_001, 0)).is_err());
    assert_eq!(proxy.faults(), Faults::loss(10));
    let client = client().await;
    proxy.set(Faults::NONE).unwrap();
    client.send_to(b"x", proxy.local_addr()).await.unwrap();
    assert_eq!(receive(&client).await, b"x");
    let listen = proxy.local_addr();
    let counts = proxy.stop().await;
    assert_eq!(counts.to_upstream.forwarded, 1);
    UdpSocket::bind(listen)
        .await
        .expect("the stopped proxy released its address");
    // A handle outliving the proxy still answers.
    assert_eq!(control.counts().to_upstream.received, 1);
    server.abort();
}
