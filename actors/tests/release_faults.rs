//! A job that ends unpaid must never be offered again, even when the release of
//! its hold cannot be confirmed at once. Found by `fixit chaos` (sled-faults,
//! panic-storm): a release whose flush failed (or whose answer timed out) was
//! applied, the job stayed Requested, was offered and accepted again, and its
//! capture then took another job's escrow. Now the job's end is stored first and
//! the release is retried by the job's timer under the same key.

#![cfg(feature = "failpoints")]

mod common;

use common::TestNode;
use fixit_actors::failpoints::{self, DURABILITY_FLUSH};
use fixit_actors::ids::{CustomerId, ProviderId};
use fixit_actors::job::JobStatus;
use fixit_actors::ledger::{Balance, EntryKind};
use fixit_actors::provider::ProviderStatus;

const CUSTOMER: CustomerId = CustomerId(1_000);
const PRICE: i64 = 10_000;

async fn plumber_at(t: &TestNode, id: u64) -> ProviderId {
    let provider = ProviderId(id);
    t.node
        .provider_online(provider, &["plumber"])
        .await
        .unwrap();
    t.node
        .update_location(provider, 52.52, 13.401)
        .await
        .unwrap();
    provider
}

#[tokio::test]
async fn an_unconfirmed_release_is_retried_and_the_job_is_never_offered_again() {
    let t = TestNode::start(|config| config.dispatch.offer_tries_max = 1).await;
    t.node
        .deposit(CUSTOMER.into(), "seed", 2 * PRICE)
        .await
        .unwrap();
    let first = plumber_at(&t, 1).await;
    let job = t
        .node
        .request_job(CUSTOMER, "book", "plumber", 52.52, 13.40, PRICE)
        .await
        .unwrap();
    assert!(matches!(job.status, JobStatus::Offered { provider, .. } if provider == first));

    // The offer lapses; the one try is used up, so the job expires — and the
    // flush behind the release's acknowledgement fails once (the flush before it
    // acknowledges the provider's end of offer).
    failpoints::arm(DURABILITY_FLUSH, "1*off->1*return(error)").unwrap();
    t.clock.advance_ms(t.config.dispatch.offer_timeout_ms);
    t.node.check_deadlines().await.unwrap();
    failpoints::disarm(DURABILITY_FLUSH);
    let ended = t.node.job(job.id).await.unwrap();
    assert_eq!(
        ended.status,
        JobStatus::Expired,
        "ended before the release is confirmed"
    );
    assert!(ended.release_pending(), "{ended:?}");

    // Another plumber comes online; the job's timer fires again: the release is
    // retried (applied once), and nobody is offered the ended job.
    let second = plumber_at(&t, 2).await;
    t.clock.advance_ms(60_000);
    t.node.check_deadlines().await.unwrap();
    let settled = t.node.job(job.id).await.unwrap();
    assert_eq!(settled.status, JobStatus::Expired);
    assert!(!settled.release_pending(), "{settled:?}");
    for provider in [first, second] {
        assert_eq!(
            t.node.provider(provider).await.unwrap().status,
            ProviderStatus::Available
        );
    }
    assert_eq!(
        t.node.balance(CUSTOMER.into()).await.unwrap(),
        Balance {
            available: 2 * PRICE,
            held: 0
        }
    );
    let releases = t
        .node
        .history(CUSTOMER.into(), 0, 100)
        .await
        .unwrap()
        .iter()
        .filter(|entry| entry.kind == EntryKind::Release)
        .count();
    assert_eq!(releases, 1);
    assert!(t.node.audit().unwrap().holds());
    t.node.shutdown().await.unwrap();
}
