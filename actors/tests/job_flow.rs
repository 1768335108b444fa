//! Job dispatch end to end through the actors on real sled: escrow, offers that
//! cascade on decline and on timeout, single assignment, capture with fee, release
//! on cancel and on expiry. Time moves only by the manual clock.

mod common;

use common::TestNode;
use fixit_actors::ids::{CustomerId, JobId, ProviderId, WalletId};
use fixit_actors::job::JobStatus;
use fixit_actors::ledger::Balance;
use fixit_actors::provider::ProviderStatus;
use fixit_actors::services::ProviderPush;
use fixit_actors::CoreError;

const CUSTOMER: CustomerId = CustomerId(1_000);
const PRICE: i64 = 10_000;
// Default fee: 1000 bps = 10%.
const FEE: i64 = 1_000;

/// A provider `metres_east` of (52.52, 13.40) in Berlin.
async fn provider_at(t: &TestNode, id: u64, metres_east: f64) -> ProviderId {
    let provider = ProviderId(id);
    t.node
        .provider_online(provider, &["plumber"])
        .await
        .unwrap();
    let lon = 13.40 + metres_east / 67_800.0; // ~67.8 km per degree of longitude here
    t.node.update_location(provider, 52.52, lon).await.unwrap();
    provider
}

async fn funded_customer(t: &TestNode, amount: i64) {
    t.node
        .deposit(CUSTOMER.into(), "seed", amount)
        .await
        .unwrap();
}

async fn book(t: &TestNode, key: &str) -> fixit_actors::job::Job {
    t.node
        .request_job(CUSTOMER, key, "plumber", 52.52, 13.40, PRICE)
        .await
        .unwrap()
}

fn offered_to(status: JobStatus) -> Option<ProviderId> {
    match status {
        JobStatus::Offered { provider, .. } => Some(provider),
        _ => None,
    }
}

async fn balance(t: &TestNode, wallet: WalletId) -> Balance {
    t.node.balance(wallet).await.unwrap()
}

#[tokio::test]
async fn booking_offers_cascade_and_completion_pays_with_fee() {
    let t = TestNode::start(|_| {}).await;
    let near = provider_at(&t, 1, 100.0).await;
    let middle = provider_at(&t, 2, 500.0).await;
    let far = provider_at(&t, 3, 900.0).await;
    funded_customer(&t, 50_000).await;
    let mut near_pushes = t.node.provider_pushes(near);
    let mut events = t.node.connect_customer(CUSTOMER).await.unwrap();

    let job = book(&t, "book-1").await;
    assert_eq!(offered_to(job.status), Some(near), "nearest first");
    assert_eq!(
        balance(&t, CUSTOMER.into()).await,
        Balance {
            available: 40_000,
            held: PRICE
        },
        "escrow held at booking"
    );
    let pushed = near_pushes.recv().await.unwrap();
    assert!(matches!(pushed, ProviderPush::Offer { job: j, price: PRICE, .. } if j == job.id));
    assert_eq!(
        t.node.provider(near).await.unwrap().status,
        ProviderStatus::Offered(
            job.id,
            fixit_actors::job::Job::clone(&job).wake_at_ms.unwrap()
        )
    );

    // Decline cascades to the next nearest.
    let job = t.node.decline(near, job.id).await.unwrap();
    assert_eq!(offered_to(job.status), Some(middle));
    assert_eq!(
        t.node.provider(near).await.unwrap().status,
        ProviderStatus::Available
    );

    // Timeout cascades too: nothing happens before the deadline, then it moves on.
    t.clock.advance_ms(t.config.dispatch.offer_timeout_ms - 1);
    t.node.check_deadlines().await.unwrap();
    assert_eq!(
        offered_to(t.node.job(job.id).await.unwrap().status),
        Some(middle)
    );
    t.clock.advance_ms(1);
    t.node.check_deadlines().await.unwrap();
    let job = t.node.job(job.id).await.unwrap();
    assert_eq!(offered_to(job.status), Some(far));
    assert!(
        matches!(
            t.node.accept(middle, job.id).await,
            Err(CoreError::Forbidden(_))
        ),
        "a lapsed offer cannot be accepted"
    );

    let job = t.node.accept(far, job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Accepted { provider: far });
    assert_eq!(
        t.node.provider(far).await.unwrap().status,
        ProviderStatus::Busy(job.id)
    );
    assert!(
        matches!(
            t.node.complete(far, job.id, b"photo".to_vec()).await,
            Err(CoreError::Conflict(_))
        ),
        "cannot complete before starting"
    );
    t.node.start_job(far, job.id).await.unwrap();
    let job = t
        .node
        .complete(far, job.id, b"photo".to_vec())
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed { provider: far });

    assert_eq!(
        balance(&t, CUSTOMER.into()).await,
        Balance {
            available: 40_000,
            held: 0
        }
    );
    assert_eq!(
        balance(&t, far.into()).await,
        Balance {
            available: PRICE - FEE,
            held: 0
        }
    );
    assert_eq!(
        balance(&t, WalletId::PLATFORM).await,
        Balance {
            available: FEE,
            held: 0
        }
    );
    assert_eq!(
        t.node.provider(far).await.unwrap().status,
        ProviderStatus::Available
    );
    assert!(t.node.audit().unwrap().holds());

    // The customer's session saw the job move through its states, in order.
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event.status);
    }
    assert_eq!(
        seen.first(),
        Some(&JobStatus::Offered {
            provider: near,
            deadline_ms: match seen[0] {
                JobStatus::Offered { deadline_ms, .. } => deadline_ms,
                _ => 0,
            }
        })
    );
    assert_eq!(seen.last(), Some(&JobStatus::Completed { provider: far }));
    assert!(seen.contains(&JobStatus::InProgress { provider: far }));

    // Completing again does not pay twice.
    assert!(t
        .node
        .complete(far, job.id, b"photo".to_vec())
        .await
        .is_err());
    assert_eq!(balance(&t, far.into()).await.available, PRICE - FEE);
    t.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn fifty_concurrent_accepts_assign_exactly_one_provider() {
    let t = TestNode::start(|_| {}).await;
    let mut providers = Vec::new();
    for id in 1..=50 {
        providers.push(provider_at(&t, id, id as f64 * 10.0).await);
    }
    funded_customer(&t, PRICE).await;
    let job = book(&t, "contested").await;
    let offered = offered_to(job.status).unwrap();

    let mut accepts = Vec::new();
    for provider in providers.iter().copied() {
        let ctx_node = &t.node;
        accepts.push(async move { (provider, ctx_node.accept(provider, job.id).await) });
    }
    // Plus duplicate accepts (retries) from the offered provider itself; together
    // with the 50 they stay under the per-entity in-flight cap of 64.
    let mut duplicates = Vec::new();
    for _ in 0..10 {
        duplicates.push(t.node.accept(offered, job.id));
    }
    let (results, duplicate_results) = tokio::join!(
        futures::future::join_all(accepts),
        futures::future::join_all(duplicates)
    );
    let winners: Vec<_> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(winners, vec![offered], "only the offered provider wins");
    for (provider, result) in &results {
        if *provider != offered {
            assert!(
                matches!(result, Err(CoreError::Forbidden(_))),
                "{provider}: {result:?}"
            );
        }
    }
    for result in duplicate_results {
        assert_eq!(
            result.unwrap().status,
            JobStatus::Accepted { provider: offered }
        );
    }
    let busy: Vec<_> = {
        let mut busy = Vec::new();
        for provider in &providers {
            if let ProviderStatus::Busy(j) = t.node.provider(*provider).await.unwrap().status {
                assert_eq!(j, job.id);
                busy.push(*provider);
            }
        }
        busy
    };
    assert_eq!(busy, vec![offered], "one provider holds the job");
    t.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancel_releases_the_hold_and_frees_the_provider() {
    let t = TestNode::start(|_| {}).await;
    let provider = provider_at(&t, 1, 100.0).await;
    funded_customer(&t, PRICE).await;
    let job = book(&t, "to-cancel").await;
    t.node.accept(provider, job.id).await.unwrap();
    assert!(
        matches!(
            t.node.cancel(CustomerId(999), job.id).await,
            Err(CoreError::NotFound(_))
        ),
        "another customer cannot cancel"
    );
    let job = t.node.cancel(CUSTOMER, job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(
        balance(&t, CUSTOMER.into()).await,
        Balance {
            available: PRICE,
            held: 0
        }
    );
    assert_eq!(
        t.node.provider(provider).await.unwrap().status,
        ProviderStatus::Available
    );
    // Cancelling again is a harmless retry; the release is not applied twice.
    t.node.cancel(CUSTOMER, job.id).await.unwrap();
    assert_eq!(
        balance(&t, CUSTOMER.into()).await,
        Balance {
            available: PRICE,
            held: 0
        }
    );
    assert!(t.node.audit().unwrap().holds());
    t.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn jobs_expire_and_release_when_no_one_takes_them() {
    let t = TestNode::start(|config| config.dispatch.offer_tries_max = 2).await;
    funded_customer(&t, 3 * PRICE).await;

    // No provider at all: expires at once, hold released.
    let job = book(&t, "nobody").await;
    assert_eq!(job.status, JobStatus::Expired);
    assert_eq!(balance(&t, CUSTOMER.into()).await.held, 0);

    // A provider with another skill, or too far away, is no candidate.
    let electrician = ProviderId(7);
    t.node
        .provider_online(electrician, &["electrician"])
        .await
        .unwrap();
    t.node
        .update_location(electrician, 52.52, 13.40)
        .await
        .unwrap();
    let far = provider_at(&t, 8, 50_000.0).await;
    let job = book(&t, "no-match").await;
    assert_eq!(job.status, JobStatus::Expired);
    assert_eq!(
        t.node.provider(far).await.unwrap().status,
        ProviderStatus::Available
    );

    // Tries exhausted: two offers time out, then the job expires.
    let a = provider_at(&t, 1, 100.0).await;
    let b = provider_at(&t, 2, 200.0).await;
    let _c = provider_at(&t, 3, 300.0).await;
    let job = book(&t, "tries").await;
    assert_eq!(offered_to(job.status), Some(a));
    t.clock.advance_ms(t.config.dispatch.offer_timeout_ms);
    t.node.check_deadlines().await.unwrap();
    assert_eq!(
        offered_to(t.node.job(job.id).await.unwrap().status),
        Some(b)
    );
    t.clock.advance_ms(t.config.dispatch.offer_timeout_ms);
    t.node.check_deadlines().await.unwrap();
    let job = t.node.job(job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Expired);
    assert_eq!(job.offers, 2);
    assert_eq!(
        balance(&t, CUSTOMER.into()).await,
        Balance {
            available: 3 * PRICE,
            held: 0
        }
    );
    for provider in [a, b] {
        assert_eq!(
            t.node.provider(provider).await.unwrap().status,
            ProviderStatus::Available
        );
    }
    assert!(t.node.audit().unwrap().holds());
    t.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn booking_input_is_checked_and_nothing_changes_on_refusal() {
    let t = TestNode::start(|_| {}).await;
    provider_at(&t, 1, 100.0).await;
    funded_customer(&t, PRICE).await;
    let before = balance(&t, CUSTOMER.into()).await;
    let bad = [
        t.node
            .request_job(CUSTOMER, "k1", "plumber", f64::NAN, 13.4, PRICE)
            .await,
        t.node
            .request_job(CUSTOMER, "k2", "plumber", 91.0, 13.4, PRICE)
            .await,
        t.node
            .request_job(CUSTOMER, "k3", "plumber", 52.5, f64::INFINITY, PRICE)
            .await,
        t.node
            .request_job(CUSTOMER, "k4", "plumber", 52.5, 13.4, -5)
            .await,
        t.node
            .request_job(CUSTOMER, "k5", "plumber", 52.5, 13.4, i64::MAX)
            .await,
        t.node
            .request_job(CUSTOMER, "k6", "Plumber!", 52.5, 13.4, PRICE)
            .await,
        t.node
            .request_job(CUSTOMER, "", "plumber", 52.5, 13.4, PRICE)
            .await,
    ];
    for result in bad {
        assert!(matches!(result, Err(CoreError::Invalid(_))), "{result:?}");
    }
    assert!(matches!(
        t.node
            .request_job(CUSTOMER, "rich", "plumber", 52.52, 13.40, PRICE + 1)
            .await,
        Err(CoreError::InsufficientFunds { .. })
    ));
    assert_eq!(
        balance(&t, CUSTOMER.into()).await,
        before,
        "refusals changed nothing"
    );
    let unknown = t.node.job(JobId(424_242)).await;
    assert!(
        matches!(unknown, Err(CoreError::NotFound(_))),
        "{unknown:?}"
    );

    // Same key, same request: the same job. Same key, other request: refused.
    let job = book(&t, "once").await;
    assert_eq!(book(&t, "once").await.id, job.id);
    assert!(matches!(
        t.node
            .request_job(CUSTOMER, "once", "plumber", 52.52, 13.40, PRICE - 1)
            .await,
        Err(CoreError::IdempotencyConflict { .. })
    ));
    assert_eq!(balance(&t, CUSTOMER.into()).await.held, PRICE, "held once");
    t.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn jobs_and_providers_survive_a_node_restart() {
    let t = TestNode::start(|_| {}).await;
    let provider = provider_at(&t, 1, 100.0).await;
    funded_customer(&t, PRICE).await;
    let job = book(&t, "across-restart").await;
    t.node.accept(provider, job.id).await.unwrap();
    let t = t.restart().await;
    assert_eq!(
        t.node.job(job.id).await.unwrap().status,
        JobStatus::Accepted { provider }
    );
    t.node.start_job(provider, job.id).await.unwrap();
    t.node
        .complete(provider, job.id, b"done".to_vec())
        .await
        .unwrap();
    assert_eq!(balance(&t, provider.into()).await.available, PRICE - FEE);
    // The geo index is rebuilt from storage: the provider gets the next job.
    t.node
        .deposit(CUSTOMER.into(), "more", PRICE)
        .await
        .unwrap();
    let next = book(&t, "after-restart").await;
    assert_eq!(offered_to(next.status), Some(provider));
    t.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_settled_job_stops_its_actor_at_once_and_is_still_read_from_storage() {
    // Idle entities would stay for an hour: only settling can stop the job actors.
    let t = TestNode::start(|config| config.passivation.entity_idle_ms = 3_600_000).await;
    let provider = provider_at(&t, 1, 100.0).await;
    funded_customer(&t, 3 * PRICE).await;
    let done = book(&t, "settled-done").await;
    t.node.accept(provider, done.id).await.unwrap();
    t.node.start_job(provider, done.id).await.unwrap();
    t.node
        .complete(provider, done.id, b"photo".to_vec())
        .await
        .unwrap();
    let open = book(&t, "settled-open").await;
    assert!(t.node.live().jobs >= 1, "an open job keeps its actor");
    let cancelled = t.node.cancel(CUSTOMER, open.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    // The completed job stops once the verifier's verdict is stored; the cancelled
    // one once its release is confirmed.
    common::eventually("settled job actors stopped", || t.node.live().jobs == 0).await;
    let done = t.node.job(done.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed { provider });
    assert!(
        done.verified.is_some(),
        "the verdict was stored before stopping"
    );
    assert_eq!(
        t.node.job(open.id).await.unwrap().status,
        JobStatus::Cancelled
    );
    // Reading a settled job loads it and then lets it go again.
    common::eventually("read job actors stopped", || t.node.live().jobs == 0).await;
    let still_open = book(&t, "still-open").await;
    assert!(t.node.live().jobs >= 1);
    assert!(!matches!(still_open.status, JobStatus::Cancelled));
    t.node.shutdown().await.unwrap();
}

/// A zone put between a booking's hold and its retry (the first try's caller
/// gone after the hold) does not change what the retry holds: it completes the
/// first try's booking instead of clashing with its hold.
#[tokio::test]
async fn a_retry_holds_what_the_first_try_priced_whatever_the_zones_did_since() {
    use fixit_actors::areas::StoredArea;
    use fixit_actors::ledger::LedgerOp;
    use fixit_protocol::area::{Geometry, Zone};
    let t = TestNode::start(|_| {}).await;
    funded_customer(&t, 50_000).await;
    // The first try priced the booking (no zone) and held it, then its caller went.
    let first = t
        .node
        .request_job(CUSTOMER, "first", "plumber", 52.52, 13.40, PRICE)
        .await
        .unwrap();
    assert_eq!((first.request.price, first.zone.clone()), (PRICE, None));
    let surge = Zone {
        name: "surge".into(),
        multiplier_pct: 150,
        geometry: Geometry::Polygon(vec![vec![
            [13.39, 52.51],
            [13.41, 52.51],
            [13.41, 52.53],
            [13.39, 52.53],
        ]]),
    };
    t.node.put_area(StoredArea::Zone(surge)).await.unwrap();
    let again = t
        .node
        .request_job(CUSTOMER, "first", "plumber", 52.52, 13.40, PRICE)
        .await
        .unwrap();
    assert_eq!(again.id, first.id, "the same booking");
    // A hold made under a key whose job was not created yet: the retry must hold
    // the same amount, not the surge price.
    let hold_key = "job-request-second";
    t.node
        .wallet_op(CUSTOMER.into(), hold_key, LedgerOp::Hold { amount: PRICE })
        .await
        .unwrap();
    t.node
        .context()
        .store
        .put_booking_price(CUSTOMER, "second", &(PRICE, None))
        .unwrap();
    let second = t
        .node
        .request_job(CUSTOMER, "second", "plumber", 52.52, 13.40, PRICE)
        .await
        .unwrap();
    assert_eq!((second.request.price, second.zone), (PRICE, None));
    let third = t
        .node
        .request_job(CUSTOMER, "third", "plumber", 52.52, 13.40, PRICE)
        .await
        .unwrap();
    assert_eq!(
        third.request.price,
        PRICE * 3 / 2,
        "a new key pays the surge"
    );
    // No provider: each booking expired and released exactly what it held.
    assert_eq!(
        balance(&t, CUSTOMER.into()).await,
        Balance {
            available: 50_000,
            held: 0
        },
        "every hold released once"
    );
}
