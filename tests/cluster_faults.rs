//! Failpoints on three real nodes in one process (build with `--features
//! failpoints`): replies lost on the way back from a wallet's home, and failed
//! outbox deliveries, never apply anything twice or lose anything.

#![cfg(feature = "failpoints")]

mod cluster_common;

use cluster_common::*;
use fixit_actors::clock::SystemClock;
use fixit_actors::failpoints::{self, LINK_RECEIVE, OUTBOX_DELIVER};
use fixit_edge::auth::Role;
use fixit_edge::local_cluster::local_cluster;
use fixit_edge::server::RunningNode;
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replies_and_failed_deliveries_apply_nothing_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let configs = local_cluster(dir.path(), &regions()).expect("configs");
    let secret = configs[0].auth.secret_file.clone();
    let mut nodes = Vec::new();
    for config in configs {
        nodes.push(
            RunningNode::start(config, Arc::new(SystemClock))
                .await
                .expect("starts"),
        );
    }
    let admin = token(&secret, Role::Admin, 0);
    let rest: Vec<Rest> = nodes
        .iter()
        .map(|node| Rest::new(node.http_addr()))
        .collect();
    for node in &rest {
        node.wait_links_up(&admin).await;
    }
    let (a, c) = (&rest[0], &rest[2]);
    let wallet = ids_homed_on("c", 7_000, 1)[0];

    // c serves the next two calls it receives but their replies are lost: the
    // client sees `unavailable`, retries with the same key, and the deposit
    // applies once.
    failpoints::arm(LINK_RECEIVE, "2*return(drop@c)").expect("armed");
    let body = json!({ "key": "once", "amount": 700 });
    let path = format!("/v1/wallets/{wallet}/deposit");
    let mut lost = 0;
    let mut answer = None;
    for _ in 0..5 {
        let (status, reply) = a.post(&path, &admin, body.clone()).await;
        match status {
            200 => {
                answer = Some(reply);
                break;
            }
            503 => lost += 1,
            other => panic!("unexpected {other}: {reply}"),
        }
    }
    failpoints::disarm(LINK_RECEIVE);
    let answer = answer.expect("a retry succeeds");
    println!("{lost} replies lost before {answer}");
    assert_eq!(lost, 2, "both armed drops hit");
    assert_eq!(answer["balance"]["available"], 700, "applied once");
    let balance = c
        .ok(Method::GET, &format!("/v1/wallets/{wallet}"), &admin, None)
        .await;
    assert_eq!(balance["available"], 700);

    // Outbox deliveries fail for a while; the payment lands once afterwards.
    failpoints::arm(OUTBOX_DELIVER, "6*return(error)").expect("armed");
    let customer = ids_homed_on("a", 8_000, 1)[0];
    let provider = providers_homed_on("c", 9_000, 1)[0];
    a.ok(
        Method::POST,
        &format!("/v1/wallets/{customer}/deposit"),
        &admin,
        Some(json!({ "key": "top-up", "amount": 5_000 })),
    )
    .await;
    let provider_token = token(&secret, Role::Provider, provider);
    let customer_token = token(&secret, Role::Customer, customer);
    let (lat, lon) = inside("u33d", 0.5, 0.5);
    a.provider_at(provider, &provider_token, "plumber", (lat, lon))
        .await;
    let booked = a
        .ok(
            Method::POST,
            "/v1/jobs",
            &customer_token,
            Some(json!({
                "customer": customer, "key": "job", "skill": "plumber",
                "lat": lat, "lon": lon, "price": 2_000,
            })),
        )
        .await;
    let job = booked["id"].as_u64().expect("job");
    a.wait_job(job, &customer_token, |status| {
        offered_to(status) == Some(provider)
    })
    .await;
    for step in ["accept", "start"] {
        a.ok(
            Method::POST,
            &format!("/v1/jobs/{job}/{step}"),
            &provider_token,
            Some(json!({ "provider": provider })),
        )
        .await;
    }
    a.ok(
        Method::POST,
        &format!("/v1/jobs/{job}/complete"),
        &provider_token,
        Some(json!({ "provider": provider, "proof": "cA==" })),
    )
    .await;
    let mut paid = false;
    for _ in 0..WAIT_ROUNDS {
        // Not found until the first credit reaches c.
        let wallet = provider_wallet(provider);
        let (_, balance) = c.get(&format!("/v1/wallets/{wallet}"), &admin).await;
        if balance["available"] == 1_800 && a.outbox(&admin).await == 0 {
            paid = true;
            break;
        }
        tokio::time::sleep(WAIT_STEP).await;
    }
    failpoints::disarm(OUTBOX_DELIVER);
    assert!(paid, "the payment lands after the failed attempts");
    let injected = failpoints::injected();
    println!("faults injected: {injected:?}");
    assert_eq!(injected.get(LINK_RECEIVE), Some(&2), "{injected:?}");
    assert_eq!(injected.get(OUTBOX_DELIVER), Some(&6), "{injected:?}");
    let mut totals = (0i128, 0i128);
    for node in &nodes {
        let audit = node.node().audit().expect("audit");
        assert!(audit.holds(), "{audit:?}");
        totals.0 += audit.total_balance + audit.outbox_amount;
        totals.1 += i128::from(audit.flows.deposited) - i128::from(audit.flows.withdrawn);
    }
    assert_eq!(totals.0, totals.1, "conserved across the cluster");
    for node in nodes {
        node.shutdown().await.expect("stops");
    }
}
