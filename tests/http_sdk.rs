//! The SDK's HTTP client (`sdk::HttpClient`) against a real node and its HTTP bridge
//! on 127.0.0.1 over sled in a temp dir: the whole flow with pushes over the
//! WebSocket, and refusals that come back as the typed error the bridge named.

#[path = "http/client.rs"]
mod client;
#[path = "http/harness.rs"]
mod harness;

use fixit_actors::error::CoreError;
use fixit_actors::job::JobStatus;
use fixit_actors::provider::ProviderStatus;
use fixit_actors::services::{JobEvent, ProviderPush};
use fixit_edge::api::{ApiError, NearbyQuery, Push, Request};
use fixit_edge::auth::Role;
use fixit_protocol::commands::Earnings;
use fixit_sdk::{Commands, HttpClient, HttpPushStream, HttpTransport};
use harness::{TestNode, STOP_GRACE};
use std::time::Duration;

const CUSTOMER: u64 = 1_001;
const PROVIDER: u64 = 2_001;
const AT: (f64, f64) = (52.5205, 13.4055);

/// Longest wait for one push.
const PUSH_WAIT: Duration = Duration::from_secs(10);

fn client(node: &TestNode, transport: &HttpTransport, role: Role, sub: u64) -> HttpClient {
    transport.client(node.http.addr, &node.token(role, sub))
}

/// The next push matching `wanted`, within a bounded number and time.
async fn push_matching(pushes: &mut HttpPushStream, wanted: impl Fn(&Push) -> bool) -> Push {
    for _ in 0..100 {
        let push = tokio::time::timeout(PUSH_WAIT, pushes.next())
            .await
            .expect("a push in time")
            .expect("the stream is open");
        if wanted(&push) {
            return push;
        }
    }
    panic!("no matching push among 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_booked_offered_accepted_completed_and_paid_through_the_http_sdk() {
    let node = TestNode::start(|_| {}).await;
    let local = Some("127.0.0.1".parse().expect("ip"));
    let transport = HttpTransport::new(local).expect("transport");
    let admin = client(&node, &transport, Role::Admin, 0);
    let customer = client(&node, &transport, Role::Customer, CUSTOMER);
    let provider = client(&node, &transport, Role::Provider, PROVIDER);

    let mut offers = provider.subscribe().await.expect("provider pushes");
    let mut events = customer.subscribe().await.expect("customer pushes");
    let online = provider
        .provider_online(PROVIDER, &["plumbing"])
        .await
        .expect("online");
    assert_eq!(online.id.0, PROVIDER);
    let located = provider
        .location(PROVIDER, AT.0, AT.1)
        .await
        .expect("located");
    assert_eq!(located.status, ProviderStatus::Available);
    let deposited = admin
        .deposit(CUSTOMER, "sdk-deposit-1", 50_000)
        .await
        .expect("deposit");
    let again = admin
        .deposit(CUSTOMER, "sdk-deposit-1", 50_000)
        .await
        .expect("the same deposit again");
    assert_eq!(
        deposited, again,
        "an idempotent retry gets the first outcome"
    );
    let nearby = customer
        .nearby(NearbyQuery {
            skill: "plumbing".into(),
            lat: AT.0,
            lon: AT.1,
            radius_m: 1_000.0,
            limit: 5,
        })
        .await
        .expect("nearby");
    assert_eq!(nearby.providers.len(), 1);

    let job = customer
        .request_job(CUSTOMER, "sdk-job-1", "plumbing", AT.0, AT.1, 10_000)
        .await
        .expect("booked");
    let balance = customer.balance(CUSTOMER).await.expect("balance");
    assert_eq!((balance.available, balance.held), (40_000, 10_000));
    let offer = push_matching(&mut offers, |push| {
        matches!(push, Push::Provider(ProviderPush::Offer { job: offered, .. }) if *offered == job.id)
    })
    .await;
    assert!(matches!(
        offer,
        Push::Provider(ProviderPush::Offer { price: 10_000, .. })
    ));
    provider.accept(PROVIDER, job.id.0).await.expect("accept");
    provider.start(PROVIDER, job.id.0).await.expect("start");
    let done = provider
        .complete(PROVIDER, job.id.0, b"photo of the fixed sink".to_vec())
        .await
        .expect("complete");
    let by = fixit_actors::ids::ProviderId(PROVIDER);
    assert_eq!(done.status, JobStatus::Completed { provider: by });
    push_matching(&mut events, |push| {
        matches!(push, Push::Job(JobEvent { job: seen, status: JobStatus::Completed { .. }, .. }) if *seen == job.id)
    })
    .await;
    let wallet = fixit_actors::ids::WalletId::from(by).0;
    let paid = provider.balance(wallet).await.expect("provider balance");
    assert_eq!(paid.available, 9_000, "price minus the 10% fee");
    let earnings: Earnings = provider
        .send(Request::Earnings { provider: PROVIDER })
        .await
        .expect("earnings over HTTP");
    assert_eq!((earnings.jobs_paid, earnings.earned), (1, 9_000));
    assert_eq!(earnings.balance, paid);
    let theirs = customer
        .send::<Earnings>(Request::Earnings { provider: PROVIDER })
        .await;
    assert!(matches!(theirs, Err(ApiError::Forbidden(_))), "{theirs:?}");
    let history = provider.history(wallet, 0, 10).await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(admin.job(job.id.0).await.expect("job").status, done.status);
    offers.close().await;
    node.server.stop(STOP_GRACE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_back_as_the_typed_error_and_change_nothing() {
    let node = TestNode::start(|config| config.server.websockets_max = 1).await;
    let transport = HttpTransport::new(None).expect("transport");
    let admin = client(&node, &transport, Role::Admin, 0);
    let customer = client(&node, &transport, Role::Customer, CUSTOMER);
    let forged = transport.client(node.http.addr, "not-a-token");

    let unauthorized = forged.balance(CUSTOMER).await.expect_err("a bad token");
    assert!(
        matches!(unauthorized, ApiError::Unauthorized(_)),
        "{unauthorized:?}"
    );
    let pushes = forged.subscribe().await.err().expect("no pushes either");
    assert!(matches!(pushes, ApiError::Unauthorized(_)), "{pushes:?}");
    // Admins hear zone events (docs/GEOFENCES.md).
    let zone_events = admin.subscribe().await.expect("an admin's zone events");
    drop(zone_events);
    let not_yours = customer
        .balance(CUSTOMER + 1)
        .await
        .expect_err("another wallet");
    assert!(matches!(not_yours, ApiError::Forbidden(_)), "{not_yours:?}");
    let unknown = admin.job(987_654).await.expect_err("no such job");
    assert!(
        matches!(unknown, ApiError::Core(CoreError::NotFound(_))),
        "{unknown:?}"
    );
    let negative = admin.deposit(CUSTOMER, "sdk-negative", -5).await;
    assert!(
        matches!(negative, Err(ApiError::Core(CoreError::Invalid(_)))),
        "{negative:?}"
    );
    admin
        .deposit(CUSTOMER, "sdk-once", 1_000)
        .await
        .expect("deposit");
    let reused = admin.deposit(CUSTOMER, "sdk-once", 2_000).await;
    assert!(
        matches!(
            reused,
            Err(ApiError::Core(CoreError::IdempotencyConflict { .. }))
        ),
        "{reused:?}"
    );
    let poor = customer
        .request_job(CUSTOMER, "sdk-too-dear", "plumbing", AT.0, AT.1, 5_000)
        .await;
    assert!(
        matches!(
            poor,
            Err(ApiError::Core(CoreError::InsufficientFunds {
                available: 1_000,
                needed: 5_000
            }))
        ),
        "{poor:?}"
    );
    let nowhere = customer
        .request_job(CUSTOMER, "sdk-nowhere", "plumbing", f64::NAN, AT.1, 500)
        .await;
    assert!(nowhere.is_err(), "NaN is no latitude: {nowhere:?}");
    let balance = admin.balance(CUSTOMER).await.expect("balance");
    assert_eq!(
        (balance.available, balance.held),
        (1_000, 0),
        "nothing refused moved money"
    );

    let provider = client(&node, &transport, Role::Provider, PROVIDER);
    let _held = provider.subscribe().await.expect("the one socket");
    let busy = customer.subscribe().await.err().expect("the bound is one");
    assert!(
        matches!(busy, ApiError::Core(CoreError::Busy { retry_after_ms }) if retry_after_ms > 0),
        "{busy:?}"
    );
    node.server.stop(STOP_GRACE).await;
}

/// A peer that is not a bridge: answers every request on 127.0.0.1 with `head`
/// and then `body_bytes` of body in 64 KiB writes (stopping when the client
/// hangs up), and reports how many body bytes it managed to write.
async fn oversized_peer(
    head: &'static str,
    body_bytes: usize,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let peer = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = vec![0u8; 16 * 1024];
        let _ = socket.read(&mut request).await;
        socket.write_all(head.as_bytes()).await.expect("head");
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0;
        while written < body_bytes {
            let write = tokio::time::timeout(Duration::from_secs(10), socket.write_all(&chunk));
            match write.await {
                Ok(Ok(())) => written += chunk.len(),
                _ => break,
            }
        }
        written
    });
    (addr, peer)
}

/// Asks the peer at `addr` for a balance and checks that the answer is refused
/// as oversized within `within`.
async fn assert_refused_as_oversized(
    transport: &HttpTransport,
    addr: std::net::SocketAddr,
    within: Duration,
) {
    let error = tokio::time::timeout(within, transport.client(addr, "t").balance(1))
        .await
        .expect("refused in time")
        .expect_err("an oversized answer is an error");
    assert!(
        matches!(&error, ApiError::Core(CoreError::Unavailable(reason)) if reason.contains("bytes or more")),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_size_bound_is_refused_without_reading_it_all() {
    let transport = HttpTransport::new(None).expect("transport");

    // A declared length over the bound: refused before any of the body is read
    // (the peer sends none and hangs up, so a client that waited for the body
    // would fail with a read error, not this refusal).
    let (addr, peer) =
        oversized_peer("HTTP/1.1 200 OK\r\ncontent-length: 104857600\r\n\r\n", 0).await;
    assert_refused_as_oversized(&transport, addr, Duration::from_secs(10)).await;
    peer.abort();

    // No declared length (the body runs to the close, 256 MiB on offer): the
    // client hangs up soon after the bound instead of buffering the lot.
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
    let (addr, peer) = oversized_peer(head, 256 * 1024 * 1024).await;
    assert_refused_as_oversized(&transport, addr, Duration::from_secs(30)).await;
    let written = peer.await.expect("peer");
    assert!(
        written < 64 * 1024 * 1024,
        "the peer wrote {written} bytes before the client hung up"
    );
}
