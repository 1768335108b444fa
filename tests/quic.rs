//! The QUIC client protocol end to end: a real node on real sled behind a real
//! listener on loopback, driven through the SDK and through raw streams. Every
//! refusal is checked for its typed kind and for having changed nothing.

#[path = "common_quic/harness.rs"]
mod harness;

use fixit_actors::codec::{encode_frame, read_frame};
use fixit_actors::ids::{JobId, ProviderId};
use fixit_actors::job::JobStatus;
use fixit_actors::ledger::Balance;
use fixit_actors::services::ProviderPush;
use fixit_edge::api::{ApiError, Push, Request, PROTOCOL_VERSION};
use fixit_edge::auth::{now_s, Principal, Role, TokenKey};
use fixit_protocol::commands::Earnings;
use fixit_protocol::wire::{
    Hello, HelloReply, ReplyFrame, RequestFrame, StreamFrame, CLOSE_HELLO_REFUSED, REPLY_BYTES_MAX,
};
use fixit_sdk::{Client, ClientError, Commands, PushStream};
use harness::{TestNode, PUSH_WAIT};
use std::time::Duration;

const CUSTOMER: u64 = 100;
const OTHER_CUSTOMER: u64 = 101;
const PROVIDER: u64 = 200;
const PRICE: i64 = 10_000;
/// Default fee: 1000 bps = 10%.
const FEE: i64 = 1_000;
const PLATFORM: u64 = fixit_actors::ids::WalletId::PLATFORM.0;
const BERLIN: (f64, f64) = (52.52, 13.40);

fn kind<T: std::fmt::Debug>(result: Result<T, ApiError>) -> &'static str {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error.kind(),
    }
}

async fn next_push(pushes: &mut PushStream) -> Push {
    tokio::time::timeout(PUSH_WAIT, pushes.next())
        .await
        .expect("a push within the hang guard")
        .expect("the push stream is open")
}

/// A funded customer and an online provider in Berlin.
async fn market(t: &TestNode) -> (Client, Client, Client) {
    let admin = t.client(Role::Admin, 0).await;
    let customer = t.client(Role::Customer, CUSTOMER).await;
    let provider = t.client(Role::Provider, PROVIDER).await;
    admin.deposit(CUSTOMER, "seed", 50_000).await.unwrap();
    provider
        .provider_online(PROVIDER, &["plumber"])
        .await
        .unwrap();
    provider
        .location(PROVIDER, BERLIN.0, BERLIN.1)
        .await
        .unwrap();
    (admin, customer, provider)
}

async fn book(customer: &Client, key: &str) -> fixit_actors::job::Job {
    customer
        .request_job(CUSTOMER, key, "plumber", BERLIN.0, BERLIN.1 + 0.001, PRICE)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_is_booked_offered_pushed_done_and_paid_with_the_fee_over_quic() {
    let t = TestNode::start(|_| {}).await;
    let (admin, customer, provider) = market(&t).await;
    assert_eq!(
        customer.welcome().principal,
        Principal {
            role: Role::Customer,
            sub: CUSTOMER
        }
    );
    assert_eq!(customer.welcome().version, PROTOCOL_VERSION);
    let mut offers = provider.subscribe().await.unwrap();
    let mut events = customer.subscribe().await.unwrap();

    let job = book(&customer, "book-1").await;
    assert!(
        matches!(job.status, JobStatus::Offered { provider: p, .. } if p == ProviderId(PROVIDER)),
        "{job:?}"
    );
    assert_eq!(
        customer.balance(CUSTOMER).await.unwrap(),
        Balance {
            available: 40_000,
            held: PRICE
        },
        "the price is held at booking"
    );
    match next_push(&mut offers).await {
        Push::Provider(ProviderPush::Offer {
            job: offered,
            price,
            ..
        }) => {
            assert_eq!((offered, price), (job.id, PRICE))
        }
        other => panic!("expected an offer, got {other:?}"),
    }

    let id = job.id.0;
    let accepted = provider.accept(PROVIDER, id).await.unwrap();
    assert_eq!(
        accepted.status,
        JobStatus::Accepted {
            provider: ProviderId(PROVIDER)
        }
    );
    provider.start(PROVIDER, id).await.unwrap();
    let done = provider
        .complete(PROVIDER, id, b"photo".to_vec())
        .await
        .unwrap();
    assert_eq!(
        done.status,
        JobStatus::Completed {
            provider: ProviderId(PROVIDER)
        }
    );

    assert_eq!(
        admin.balance(CUSTOMER).await.unwrap(),
        Balance {
            available: 40_000,
            held: 0
        }
    );
    assert_eq!(
        admin
            .balance(fixit_actors::ids::WalletId::from(fixit_actors::ids::ProviderId(PROVIDER)).0)
            .await
            .unwrap(),
        Balance {
            available: PRICE - FEE,
            held: 0
        }
    );
    assert_eq!(
        admin.balance(PLATFORM).await.unwrap(),
        Balance {
            available: FEE,
            held: 0
        }
    );
    // The provider's earnings: one job paid, the price less the fee.
    let earnings: Earnings = provider
        .send(Request::Earnings { provider: PROVIDER })
        .await
        .unwrap();
    assert_eq!(
        (earnings.jobs_paid, earnings.earned, earnings.complete),
        (1, PRICE - FEE, true)
    );
    let theirs = customer
        .send::<Earnings>(Request::Earnings { provider: PROVIDER })
        .await;
    assert!(matches!(theirs, Err(ApiError::Forbidden(_))), "{theirs:?}");

    // The customer's push stream saw the job through to completion, in order.
    let mut seen = Vec::new();
    for _ in 0..16 {
        let Push::Job(event) = next_push(&mut events).await else {
            panic!("a customer gets job events only");
        };
        assert_eq!(event.job, job.id);
        seen.push(event.status);
        if matches!(event.status, JobStatus::Completed { .. }) {
            break;
        }
    }
    let accepted_at = seen
        .iter()
        .position(|s| matches!(s, JobStatus::Accepted { .. }));
    let started_at = seen
        .iter()
        .position(|s| matches!(s, JobStatus::InProgress { .. }));
    assert!(
        accepted_at < started_at && accepted_at.is_some(),
        "{seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&JobStatus::Completed {
            provider: ProviderId(PROVIDER)
        })
    );

    // The request id chosen by the client comes back in the reply.
    let reply = customer
        .reply(Request::JobStatus { job: id }, Some("trace-42"))
        .await
        .unwrap();
    assert_eq!(reply.request_id, "trace-42");
    assert!(reply.result.is_ok());

    t.server.stop(Duration::from_secs(5)).await;
    assert_eq!(
        kind(admin.balance(CUSTOMER).await),
        "unavailable",
        "a stopped listener serves nothing"
    );
}

/// Sends `bytes` on a fresh stream, finishes it, and reads the node's reply frame.
async fn raw_exchange(client: &Client, bytes: &[u8]) -> ReplyFrame {
    let (mut send, mut recv) = client.open_raw().await.unwrap();
    // The node may stop reading early (oversized prefix): that is its answer.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    read_frame::<ReplyFrame, _>(&mut recv, REPLY_BYTES_MAX)
        .await
        .unwrap()
        .expect("a reply frame")
}

fn assert_bad_request(reply: &ReplyFrame, mentions: &str) {
    let body = reply.result.as_ref().expect_err("a refusal");
    assert_eq!(body.error, "bad_request", "{body:?}");
    assert!(body.message.contains(mentions), "{body:?}");
    assert_eq!(body.request_id, reply.request_id);
    assert!(!reply.request_id.is_empty());
}

/// A request that begins but does not arrive within the first-frame deadline is a
/// retryable `unavailable` — under load a client's write can be late without
/// being wrong — and nothing is executed: the same deposit then applies once.
#[tokio::test]
async fn a_late_request_frame_is_unavailable_and_changes_nothing() {
    let t = TestNode::start(|_| {}).await;
    let admin = t.client(Role::Admin, 0).await;
    let deposit = StreamFrame::Request(RequestFrame {
        request_id: Some("late".into()),
        request: Request::Deposit {
            wallet: CUSTOMER,
            key: "late".into(),
            amount: 700,
        },
    });
    let frame = encode_frame(&deposit, 65_536).unwrap();
    let (mut send, mut recv) = admin.open_raw().await.unwrap();
    send.write_all(&frame[..frame.len() / 2]).await.unwrap();
    let reply = read_frame::<ReplyFrame, _>(&mut recv, REPLY_BYTES_MAX)
        .await
        .unwrap()
        .expect("a reply frame");
    let body = reply.result.expect_err("refused");
    assert_eq!(body.error, "unavailable", "{body:?}");
    assert!(body.message.contains("no request frame within"), "{body:?}");
    assert!(
        matches!(
            admin.balance(CUSTOMER).await,
            Err(ApiError::Core(fixit_actors::error::CoreError::NotFound(_)))
        ),
        "the wallet was never touched"
    );
    let whole = raw_exchange(&admin, &frame).await;
    assert!(whole.result.is_ok(), "{whole:?}");
    assert_eq!(admin.balance(CUSTOMER).await.unwrap().available, 700);
}

#[tokio::test]
async fn garbage_oversized_truncated_and_empty_frames_are_bad_requests_that_change_nothing() {
    let t = TestNode::start(|_| {}).await;
    let admin = t.client(Role::Admin, 0).await;
    admin.deposit(CUSTOMER, "seed", 5_000).await.unwrap();
    let before = admin.balance(CUSTOMER).await.unwrap();

    // Garbage whose first four bytes read as a huge length ("GET " = 1.2 GB).
    let reply = raw_exchange(&admin, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_bad_request(&reply, "over the maximum");
    // A length prefix of 4 GiB - 1: refused from the prefix, nothing allocated.
    let mut oversized = u32::MAX.to_be_bytes().to_vec();
    oversized.extend_from_slice(&[0xAB; 64]);
    assert_bad_request(&raw_exchange(&admin, &oversized).await, "over the maximum");
    // A plausible length whose body is not a frame of this protocol.
    let mut garbage = 12u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xFF; 12]);
    assert_bad_request(&raw_exchange(&admin, &garbage).await, "frame body");
    // A real deposit frame cut short.
    let deposit = StreamFrame::Request(RequestFrame {
        request_id: Some("cut".into()),
        request: Request::Deposit {
            wallet: CUSTOMER,
            key: "cut".into(),
            amount: 700,
        },
    });
    let frame = encode_frame(&deposit, 65_536).unwrap();
    assert_bad_request(
        &raw_exchange(&admin, &frame[..frame.len() - 3]).await,
        "truncated",
    );
    assert_bad_request(&raw_exchange(&admin, &frame[..2]).await, "truncated");
    // A stream finished with nothing on it.
    assert_bad_request(&raw_exchange(&admin, &[]).await, "empty");
    // A frame over the node's frame maximum, with a truthful prefix.
    let huge = StreamFrame::Request(RequestFrame {
        request_id: None,
        request: Request::Complete {
            provider: 1,
            job: 1,
            proof: vec![7; 100_000],
        },
    });
    let huge = encode_frame(&huge, 1 << 20).unwrap();
    assert_bad_request(&raw_exchange(&admin, &huge).await, "over the maximum");
    // An unprintable request id.
    let bad_id = StreamFrame::Request(RequestFrame {
        request_id: Some("two words".into()),
        request: Request::Balance { wallet: CUSTOMER },
    });
    let reply = raw_exchange(&admin, &encode_frame(&bad_id, 65_536).unwrap()).await;
    assert_bad_request(&reply, "request_id");

    // Nothing changed, the connection still serves, and the cut deposit's key is
    // unused: the whole deposit applies now, once.
    assert_eq!(admin.balance(CUSTOMER).await.unwrap(), before);
    let whole = raw_exchange(&admin, &frame).await;
    assert_eq!(whole.request_id, "cut");
    assert!(whole.result.is_ok(), "{whole:?}");
    assert_eq!(
        admin.balance(CUSTOMER).await.unwrap().available,
        before.available + 700
    );
}

#[tokio::test]
async fn hellos_with_a_wrong_version_or_bad_tokens_are_refused_and_the_connection_closed() {
    let t = TestNode::start(|_| {}).await;
    let admin = t.client(Role::Admin, 0).await;
    admin.deposit(CUSTOMER, "seed", 5).await.unwrap();
    let connector = t.connector();
    let customer = Principal {
        role: Role::Customer,
        sub: CUSTOMER,
    };
    let wrong_version = Hello {
        version: PROTOCOL_VERSION + 1,
        token: t.token(Role::Customer, CUSTOMER),
    };
    match connector.connect_with_hello(t.addr, &wrong_version).await {
        Err(ClientError::Refused(error)) => {
            assert_eq!(error, ApiError::UnsupportedVersion(PROTOCOL_VERSION + 1))
        }
        other => panic!("expected unsupported_version, got {:?}", other.err()),
    }
    let expired = t.tokens.issue(customer, now_s() - 3_600); // past the 30 s leeway
    let forged = TokenKey::from_secret([9; 32]).issue(customer, now_s() + 3_600);
    for token in [expired.as_str(), forged.as_str(), "garbage", ""] {
        match t.try_client(token).await {
            Err(ClientError::Refused(error)) => {
                assert_eq!(error.kind(), "unauthorized", "{token:?}")
            }
            other => panic!(
                "token {token:?}: expected unauthorized, got {:?}",
                other.err()
            ),
        }
    }

    // A client that skips the hello and sends a deposit first is not served: its
    // stream is answered as a failed hello and the connection is closed.
    let admin_deposit = StreamFrame::Request(RequestFrame {
        request_id: None,
        request: Request::Deposit {
            wallet: CUSTOMER,
            key: "sneak".into(),
            amount: 1,
        },
    });
    let connection = connector.connect_without_hello(t.addr).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&encode_frame(&admin_deposit, 65_536).unwrap())
        .await
        .unwrap();
    let _ = send.finish();
    let reply: HelloReply = read_frame(&mut recv, REPLY_BYTES_MAX)
        .await
        .unwrap()
        .unwrap();
    assert!(reply.is_err(), "{reply:?}");
    match connection.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                quinn::VarInt::from_u32(CLOSE_HELLO_REFUSED)
            )
        }
        other => panic!("expected an application close, got {other}"),
    }
    assert_eq!(
        admin.balance(CUSTOMER).await.unwrap(),
        Balance {
            available: 5,
            held: 0
        }
    );
}

#[tokio::test]
async fn other_principals_wallets_jobs_and_roles_are_refused_and_nothing_changes() {
    let t = TestNode::start(|_| {}).await;
    let (admin, customer, provider) = market(&t).await;
    let stranger = t.client(Role::Customer, OTHER_CUSTOMER).await;
    let job = book(&customer, "book-1").await;
    let id = job.id.0;
    let wallet_before = admin.balance(CUSTOMER).await.unwrap();

    assert_eq!(kind(stranger.balance(CUSTOMER).await), "forbidden");
    assert_eq!(
        kind(stranger.withdraw(CUSTOMER, "steal", 1).await),
        "forbidden"
    );
    assert_eq!(
        kind(customer.deposit(CUSTOMER, "self-made", 1).await),
        "forbidden",
        "only an admin deposits"
    );
    assert_eq!(kind(stranger.cancel(CUSTOMER, id).await), "forbidden");
    assert_eq!(
        kind(stranger.job(id).await),
        "not_found",
        "a stranger is not told the job exists"
    );
    assert_eq!(
        kind(customer.accept(CUSTOMER, id).await),
        "forbidden",
        "a customer cannot accept"
    );
    assert_eq!(
        kind(
            provider
                .request_job(PROVIDER, "p", "plumber", 1.0, 1.0, PRICE)
                .await
        ),
        "forbidden"
    );
    assert_eq!(
        kind(provider.accept(PROVIDER + 1, id).await),
        "forbidden",
        "another provider's id"
    );
    let other_provider = t.client(Role::Provider, PROVIDER + 1).await;
    assert!(
        other_provider.accept(PROVIDER + 1, id).await.is_err(),
        "not offered to this provider"
    );

    assert_eq!(admin.balance(CUSTOMER).await.unwrap(), wallet_before);
    assert_eq!(admin.job(id).await.unwrap().status, job.status);
    assert_eq!(customer.job(id).await.unwrap().status, job.status);
}

#[tokio::test]
async fn bad_coordinates_amounts_ids_and_reused_keys_are_refused_and_nothing_changes() {
    let t = TestNode::start(|_| {}).await;
    let (admin, customer, provider) = market(&t).await;
    let wallet_before = admin.balance(CUSTOMER).await.unwrap();
    let provider_before = provider.provider(PROVIDER).await.unwrap();

    for (lat, lon) in [
        (f64::NAN, 13.4),
        (52.5, f64::NAN),
        (91.0, 0.0),
        (0.0, -180.5),
        (f64::INFINITY, 0.0),
    ] {
        assert_eq!(
            kind(provider.location(PROVIDER, lat, lon).await),
            "invalid",
            "({lat}, {lon})"
        );
        let booked = customer
            .request_job(CUSTOMER, "bad-place", "plumber", lat, lon, PRICE)
            .await;
        assert_eq!(kind(booked), "invalid", "({lat}, {lon})");
    }
    for amount in [0, -1, i64::MIN, 1_000_000_000_000_001, i64::MAX] {
        assert_eq!(
            kind(admin.deposit(CUSTOMER, "bad-amount", amount).await),
            "invalid",
            "{amount}"
        );
        assert_eq!(
            kind(customer.withdraw(CUSTOMER, "bad-amount", amount).await),
            "invalid",
            "{amount}"
        );
    }
    for price in [-PRICE, 0, i64::MAX] {
        let booked = customer
            .request_job(CUSTOMER, "bad-price", "plumber", BERLIN.0, BERLIN.1, price)
            .await;
        assert_eq!(kind(booked), "invalid", "{price}");
    }
    assert_eq!(kind(admin.job(999_999).await), "not_found");
    assert_eq!(kind(provider.accept(PROVIDER, 999_999).await), "not_found");

    // The same key with other content is refused; with the same content it is a no-op.
    assert_eq!(
        kind(admin.deposit(CUSTOMER, "seed", 60_000).await),
        "idempotency_conflict"
    );
    admin.deposit(CUSTOMER, "seed", 50_000).await.unwrap();
    assert_eq!(admin.balance(CUSTOMER).await.unwrap(), wallet_before);
    assert_eq!(provider.provider(PROVIDER).await.unwrap(), provider_before);

    let job = book(&customer, "book-1").await;
    let again = customer
        .request_job(
            CUSTOMER,
            "book-1",
            "plumber",
            BERLIN.0,
            BERLIN.1 + 0.001,
            PRICE + 1,
        )
        .await;
    assert_eq!(kind(again), "idempotency_conflict");
    assert_eq!(
        customer.balance(CUSTOMER).await.unwrap().held,
        PRICE,
        "held once"
    );
    assert_eq!(admin.job(job.id.0).await.unwrap().id, JobId(job.id.0));
}

#[tokio::test]
async fn a_burst_past_the_principal_rate_is_told_when_to_retry_while_others_are_served() {
    let t = TestNode::start(|config| {
        config.rate_limits.principal_per_s = 1;
        config.rate_limits.principal_burst = 5;
    })
    .await;
    let admin = t.client(Role::Admin, 0).await;
    admin.deposit(CUSTOMER, "seed", 1).await.unwrap();
    admin.deposit(OTHER_CUSTOMER, "seed", 1).await.unwrap();
    let noisy = t.client(Role::Customer, CUSTOMER).await;
    let quiet = t.client(Role::Customer, OTHER_CUSTOMER).await;
    let mut refusal = None;
    for _ in 0..1_000 {
        if let Err(error) = noisy.balance(CUSTOMER).await {
            refusal = Some(error);
            break;
        }
    }
    match refusal {
        Some(ApiError::RateLimited { retry_after_ms }) => assert!(retry_after_ms >= 1),
        other => panic!("expected rate_limited, got {other:?}"),
    }
    assert!(
        quiet.balance(OTHER_CUSTOMER).await.is_ok(),
        "another principal is served"
    );
}

#[tokio::test]
async fn a_lagging_node_sheds_new_work_with_busy_and_serves_again_once_it_catches_up() {
    // One thread runs node, listener and clients (current-thread runtime), so
    // holding it makes every timer of the node late, as an overloaded node's are.
    let t = TestNode::start(|config| config.limits.overload_lag_ms = 50).await;
    let admin = t.client(Role::Admin, 0).await;
    admin.deposit(CUSTOMER, "seed", 1).await.unwrap();
    let customer = t.client(Role::Customer, CUSTOMER).await;
    let mut shed = None;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        if let Err(error) = customer.balance(CUSTOMER).await {
            shed = Some(error);
            break;
        }
    }
    match shed {
        Some(error @ ApiError::Core(fixit_actors::CoreError::Busy { .. })) => {
            assert!(error.retry_after_ms().is_some_and(|ms| ms >= 1))
        }
        other => panic!("expected busy while the node lagged, got {other:?}"),
    }
    // Once its timers run on time again, the same call is served.
    let mut served = false;
    for _ in 0..250 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if customer.balance(CUSTOMER).await.is_ok() {
            served = true;
            break;
        }
    }
    assert!(served, "still refused after the node caught up");
}

#[tokio::test]
async fn concurrent_calls_share_a_connection_past_its_stream_limit_and_connections_are_capped() {
    let t = TestNode::start(|config| {
        config.server.streams_per_connection_max = 4;
        config.server.connections_max = 2;
    })
    .await;
    let admin = t.client(Role::Admin, 0).await;
    let keys: Vec<String> = (0..32).map(|i| format!("d-{i}")).collect();
    let calls = keys.iter().map(|key| admin.deposit(CUSTOMER, key, 10));
    let outcomes = futures::future::join_all(calls).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(admin.balance(CUSTOMER).await.unwrap().available, 320);

    let _second = t.client(Role::Customer, CUSTOMER).await;
    let third = t.try_client(&t.token(Role::Customer, OTHER_CUSTOMER)).await;
    assert!(
        matches!(third, Err(ClientError::Connect { .. })),
        "{:?}",
        third.err()
    );
}

#[tokio::test]
async fn the_client_cli_prints_responses_and_fails_with_the_error_body() {
    use fixit_edge::cli_client::{run, ClientArgs, Verb};
    let t = TestNode::start(|_| {}).await;
    let admin = t.client(Role::Admin, 0).await;
    admin.deposit(CUSTOMER, "seed", 5).await.unwrap();
    let args = |verb: Verb| ClientArgs {
        addr: t.addr,
        cert: t.cert().to_owned(),
        token: Some(t.token(Role::Customer, CUSTOMER)),
        request_id: Some("cli-1".into()),
        verb,
    };
    let verb = |words: &[&str]| Verb::parse(words).unwrap();
    run(args(verb(&["balance"]))).await.unwrap();
    let other = OTHER_CUSTOMER.to_string();
    let refused = run(args(verb(&["balance", "--wallet", &other])))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains(r#""error":"forbidden""#), "{refused}");
    assert!(refused.contains(r#""request_id":"cli-1""#), "{refused}");
    let mut bad_token = args(verb(&["balance"]));
    bad_token.token = Some("forged".into());
    let refused = run(bad_token).await.unwrap_err().to_string();
    assert!(refused.contains(r#""error":"unauthorized""#), "{refused}");
}
