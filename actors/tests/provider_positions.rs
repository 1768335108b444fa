//! Provider positions are soft state: answered from memory and the geo index at
//! once, stored at most once per write interval (and by a backstop write), and a
//! provider restarted from storage comes back with its last stored position.

mod common;

use common::{eventually, TestNode};
use fixit_actors::ids::ProviderId;
use fixit_actors::provider::Provider;

const PROVIDER: ProviderId = ProviderId(42);

/// Longitudes of successive positions, about 150 m apart in Berlin.
const LON_A: f64 = 13.400;
const LON_B: f64 = 13.402;
const LON_C: f64 = 13.404;
const LON_D: f64 = 13.406;
const LAT: f64 = 52.52;

fn stored(t: &TestNode) -> Provider {
    let all = t.node.providers_snapshot(10).unwrap();
    all.into_iter()
        .find(|provider| provider.id == PROVIDER)
        .expect("the provider is stored")
}

fn lon_of(provider: &Provider) -> f64 {
    provider.location.map(|at| at.lon()).expect("a position")
}

fn nearest_to(t: &TestNode, lon: f64) -> Vec<ProviderId> {
    t.node
        .nearby("plumber", LAT, lon, 50.0, 10)
        .unwrap()
        .into_iter()
        .map(|found| found.provider)
        .collect()
}

async fn move_to(t: &TestNode, lon: f64) {
    let moved = t.node.update_location(PROVIDER, LAT, lon).await.unwrap();
    assert_eq!(lon_of(&moved), lon, "the answer carries the new position");
}

#[tokio::test]
async fn moves_stay_in_memory_until_the_interval_and_survive_a_restart_as_stored() {
    let interval_ms = 60_000;
    let t = TestNode::start(|config| {
        config.storage.provider_position_write_interval_ms = interval_ms;
    })
    .await;
    t.node
        .provider_online(PROVIDER, &["plumber"])
        .await
        .unwrap();
    move_to(&t, LON_A).await;
    assert_eq!(
        lon_of(&stored(&t)),
        LON_A,
        "a first position is stored at once"
    );

    move_to(&t, LON_B).await;
    assert_eq!(lon_of(&t.node.provider(PROVIDER).await.unwrap()), LON_B);
    assert_eq!(nearest_to(&t, LON_B), vec![PROVIDER], "the index moved");
    assert_eq!(
        lon_of(&stored(&t)),
        LON_A,
        "a move within the interval is not written"
    );

    let t = t.restart().await;
    let restored = t.node.provider(PROVIDER).await.unwrap();
    assert_eq!(lon_of(&restored), LON_A, "restored from storage");
    assert!(restored.searchable(), "still online after the restart");
    assert_eq!(nearest_to(&t, LON_A), vec![PROVIDER], "index rebuilt");

    move_to(&t, LON_C).await;
    assert_eq!(
        lon_of(&stored(&t)),
        LON_C,
        "the first move after loading is written"
    );
    move_to(&t, LON_D).await;
    assert_eq!(lon_of(&stored(&t)), LON_C);
    t.clock.advance_ms(interval_ms);
    move_to(&t, LON_B).await;
    assert_eq!(
        lon_of(&stored(&t)),
        LON_B,
        "written once the interval passed"
    );

    move_to(&t, LON_A).await;
    t.node.provider_offline(PROVIDER).await.unwrap();
    let offline = stored(&t);
    assert_eq!(
        lon_of(&offline),
        LON_A,
        "a status change writes the position too"
    );
    assert!(!offline.searchable());
    assert!(nearest_to(&t, LON_A).is_empty(), "offline leaves the index");
    t.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_last_move_is_written_by_the_backstop() {
    let t = TestNode::start(|config| {
        config.storage.provider_position_write_interval_ms = 50;
    })
    .await;
    t.node
        .provider_online(PROVIDER, &["plumber"])
        .await
        .unwrap();
    move_to(&t, LON_A).await;
    // The manual clock stands still, so only the backstop can write this move.
    move_to(&t, LON_B).await;
    eventually("the backstop wrote the last position", || {
        lon_of(&stored(&t)) == LON_B
    })
    .await;
    let t = t.restart().await;
    assert_eq!(lon_of(&t.node.provider(PROVIDER).await.unwrap()), LON_B);
    t.node.shutdown().await.unwrap();
}
