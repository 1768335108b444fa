//! Three real nodes in one process, linked over QUIC with mutual TLS, driven over
//! their HTTP bridges: a job booked on one node, held on a second and paid from a
//! wallet homed on a third; nearby search across a region edge; a down node.

mod cluster_common;

use cluster_common::*;
use fixit_actors::clock::SystemClock;
use fixit_actors::cluster_hooks::node_number_of_job;
use fixit_actors::geo::{haversine_m, Coord};
use fixit_cluster::placement::node_number;
use fixit_edge::api::NearbyQuery;
use fixit_edge::auth::Role;
use fixit_edge::local_cluster::local_cluster;
use fixit_edge::server::RunningNode;
use fixit_sdk::{Commands, Connector};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_booked_on_a_held_on_b_paid_from_c_balances_exactly_on_all_three() {
    let cluster = Cluster::start().await;
    let customer = ids_homed_on("c", 1_000, 1)[0];
    let provider = providers_homed_on("a", 2_000, 1)[0];
    let (price, fee) = (10_000i64, 1_000i64);
    let admin = cluster.token(Role::Admin, 0);
    let customer_token = cluster.token(Role::Customer, customer);
    let provider_token = cluster.token(Role::Provider, provider);
    println!(
        "customer {customer} homed on c, provider {provider} homed on a, platform homed on {}",
        home_of(PLATFORM)
    );

    // A deposit sent to a is forwarded to c, the wallet's home.
    let deposited = cluster
        .rest("a")
        .ok(
            Method::POST,
            &format!("/v1/wallets/{customer}/deposit"),
            &admin,
            Some(json!({ "key": "top-up", "amount": 50_000 })),
        )
        .await;
    assert_eq!(deposited["balance"]["available"], 50_000);
    assert_eq!(cluster.balance("c", customer).await, (50_000, 0));

    // The provider goes online at b, whose region holds its position.
    let (lat, lon) = inside("u33e", 0.5, 0.5);
    let b = cluster.rest("b");
    b.provider_at(provider, &provider_token, "plumber", (lat, lon))
        .await;
    // The same provider reporting a position in a's region is told to move.
    let (status, moved) = b
        .put(
            &format!("/v1/providers/{provider}/location"),
            &provider_token,
            json!({ "lat": inside("u33d", 0.5, 0.5).0, "lon": inside("u33d", 0.5, 0.5).1 }),
        )
        .await;
    assert_eq!(
        (status, moved["error"].clone()),
        (421, json!("moved")),
        "{moved}"
    );
    assert!(
        moved["message"].as_str().unwrap_or("").contains("node a"),
        "{moved}"
    );
    // ...and went offline at b; it comes back online there.
    b.provider_at(provider, &provider_token, "plumber", (lat, lon))
        .await;

    // Booked through a, the job lives on b (its id carries b's node number).
    let a = cluster.rest("a");
    let booked = a
        .ok(
            Method::POST,
            "/v1/jobs",
            &customer_token,
            Some(json!({
                "customer": customer, "key": "book-1", "skill": "plumber",
                "lat": lat + 0.001, "lon": lon, "price": price,
            })),
        )
        .await;
    let job = booked["id"].as_u64().expect("job id");
    assert_eq!(
        node_number_of_job(job),
        node_number("b"),
        "job {job} is held on b"
    );
    assert!(job < 1 << 53, "job ids stay exact in JSON doubles");
    assert_eq!(
        cluster.balance("b", customer).await,
        (40_000, 10_000),
        "held at c"
    );
    let offered = a
        .wait_job(job, &customer_token, |status| offered_to(status).is_some())
        .await;
    assert_eq!(offered_to(&offered["status"]), Some(provider));

    // The provider answers through c: forwarded to b by the job id.
    let c = cluster.rest("c");
    let me = json!({ "provider": provider });
    for step in ["accept", "start"] {
        c.ok(
            Method::POST,
            &format!("/v1/jobs/{job}/{step}"),
            &provider_token,
            Some(me.clone()),
        )
        .await;
    }
    let done = c
        .ok(
            Method::POST,
            &format!("/v1/jobs/{job}/complete"),
            &provider_token,
            Some(json!({ "provider": provider, "proof": "cGhvdG8=" })),
        )
        .await;
    assert_eq!(done["status"]["Completed"]["provider"], provider);

    cluster.drain_outboxes().await;
    for via in NAMES {
        assert_eq!(
            cluster.balance(via, customer).await,
            (40_000, 0),
            "via {via}"
        );
        assert_eq!(
            cluster.balance(via, provider_wallet(provider)).await,
            (price - fee, 0),
            "via {via}"
        );
        assert_eq!(
            cluster.balance(via, PLATFORM).await,
            (fee, 0),
            "platform via {via}"
        );
    }
    cluster.assert_conserved();
    let traffic = |name: &str| {
        cluster.nodes[name]
            .api()
            .cluster()
            .expect("in a cluster")
            .traffic
            .view()
    };
    assert!(traffic("a").forwarded_out >= 2, "{:?}", traffic("a"));
    assert!(
        traffic("b").wallet_calls_out >= 2,
        "hold and capture at c: {:?}",
        traffic("b")
    );
    assert!(
        traffic("c").transfers_delivered >= 1,
        "payment to a: {:?}",
        traffic("c")
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearby_search_at_a_region_edge_returns_both_sides_as_brute_force_does() {
    let cluster = Cluster::start().await;
    // u33d (a) and u33e (b) share an edge: u33e lies north of u33d.
    let (south_a, north_a, west, east) = cell_box("u33d");
    let edge_lat = north_a;
    assert!(
        (cell_box("u33e").0 - edge_lat).abs() < 1e-9,
        "u33e starts where u33d ends"
    );
    let mut placed: Vec<(u64, Coord)> = Vec::new();
    for i in 0..24u64 {
        let provider = 5_000 + i;
        // Alternate sides, 50–1,250 m from the edge, spread along it.
        let offset = 0.00045 * (1 + i / 2) as f64;
        let lat = if i % 2 == 0 {
            edge_lat - offset
        } else {
            edge_lat + offset
        };
        let lon = west + (east - west) * (0.3 + 0.015 * i as f64);
        assert!(lat > south_a);
        let node = if i % 2 == 0 { "a" } else { "b" };
        let token = cluster.token(Role::Provider, provider);
        let rest = cluster.rest(node);
        rest.provider_at(provider, &token, "electrician", (lat, lon))
            .await;
        placed.push((provider, Coord::new(lat, lon).expect("valid")));
    }
    let centre = Coord::new(edge_lat - 0.0001, (west + east) / 2.0).expect("valid");
    let (radius_m, limit) = (1_500.0, 10usize);
    let mut expected: Vec<(f64, u64)> = placed
        .iter()
        .map(|(id, at)| (haversine_m(centre, *at), *id))
        .filter(|(distance, _)| *distance <= radius_m)
        .collect();
    expected.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    expected.truncate(limit);
    let expected_ids: Vec<u64> = expected.iter().map(|(_, id)| *id).collect();
    assert!(
        expected_ids.iter().any(|id| id % 2 == 0) && expected_ids.iter().any(|id| id % 2 == 1),
        "the case must have both sides: {expected_ids:?}"
    );

    let customer = cluster.token(Role::Customer, 77);
    let search = json!({
        "skill": "electrician", "lat": centre.lat(), "lon": centre.lon(),
        "radius_m": radius_m, "limit": limit,
    });
    for via in ["a", "b"] {
        let answer = cluster
            .rest(via)
            .ok(Method::POST, "/v1/nearby", &customer, Some(search.clone()))
            .await;
        let found: Vec<u64> = answer["providers"]
            .as_array()
            .expect("providers")
            .iter()
            .map(|found| found["provider"].as_u64().expect("id"))
            .collect();
        assert_eq!(found, expected_ids, "via {via}: {answer}");
        assert_eq!(answer["unanswered"], json!([]), "via {via}");
    }

    // The same search over QUIC with the SDK, at b.
    let b_config = cluster.nodes["b"].node().context().config.clone();
    let connector = Connector::new(
        &b_config.server.tls_cert_file,
        "127.0.0.1:0".parse().unwrap(),
    )
    .expect("connector");
    let client = connector
        .connect(cluster.nodes["b"].quic_addr(), &customer)
        .await
        .expect("QUIC session");
    let answer = client
        .nearby(NearbyQuery {
            skill: "electrician".into(),
            lat: centre.lat(),
            lon: centre.lon(),
            radius_m,
            limit: limit as u32,
        })
        .await
        .expect("nearby over QUIC");
    let found: Vec<u64> = answer
        .providers
        .iter()
        .map(|found| found.provider.0)
        .collect();
    assert_eq!(found, expected_ids, "over QUIC at b");
    client.close().await;

    // With b stopped, a still answers its own side and names b as unanswered.
    let b = cluster.nodes.get("b").expect("b");
    let b_http = b.http_addr();
    let mut cluster = cluster;
    let node_b = cluster.nodes.remove("b").expect("b");
    node_b.shutdown().await.expect("b stops");
    let answer = cluster
        .rest("a")
        .ok(Method::POST, "/v1/nearby", &customer, Some(search))
        .await;
    let found: Vec<u64> = answer["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .map(|found| found["provider"].as_u64().expect("id"))
        .collect();
    let a_side: Vec<u64> = expected_ids
        .iter()
        .copied()
        .filter(|id| id % 2 == 0)
        .collect();
    assert!(
        found.starts_with(&a_side) || a_side.starts_with(&found),
        "{found:?} vs {a_side:?}"
    );
    assert!(found.iter().all(|id| id % 2 == 0), "{found:?}");
    assert_eq!(
        answer["unanswered"],
        json!(["b"]),
        "{answer} (b was {b_http})"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_node_is_down_what_needs_it_is_unavailable_and_the_rest_is_served() {
    let mut cluster = Cluster::start().await;
    let admin = cluster.token(Role::Admin, 0);
    let on_a = ids_homed_on("a", 3_000, 1)[0];
    let on_c = ids_homed_on("c", 3_000, 1)[0];
    let a = cluster.rest("a");
    for wallet in [on_a, on_c] {
        a.ok(
            Method::POST,
            &format!("/v1/wallets/{wallet}/deposit"),
            &admin,
            Some(json!({ "key": "first", "amount": 100 })),
        )
        .await;
    }
    let node_c = cluster.nodes.remove("c").expect("c");
    node_c.shutdown().await.expect("c stops");

    for _ in 0..3 {
        let started = std::time::Instant::now();
        let (status, body) = a.get(&format!("/v1/wallets/{on_c}"), &admin).await;
        println!(
            "wallet on c while c is down: {status} {body} after {:?}",
            started.elapsed()
        );
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "unavailable", "{body}");
        assert!(body["retry_after_ms"].as_u64().is_some(), "{body}");
        let (status, body) = a
            .post(
                &format!("/v1/wallets/{on_c}/deposit"),
                &admin,
                json!({ "key": "while-down", "amount": 5 }),
            )
            .await;
        assert_eq!(
            (status, body["error"].clone()),
            (503, json!("unavailable")),
            "{body}"
        );
        // Served: a wallet homed on a, and a booking-free command on b.
        assert_eq!(cluster.balance("a", on_a).await, (100, 0));
        assert_eq!(cluster.balance("b", on_a).await, (100, 0));
    }
    let (lat, lon) = inside("u33e", 0.2, 0.2);
    let provider = 4_242;
    let token = cluster.token(Role::Provider, provider);
    let b = cluster.rest("b");
    b.provider_at(provider, &token, "cleaner", (lat, lon)).await;
    let answer: Value = a
        .ok(
            Method::POST,
            "/v1/nearby",
            &token,
            Some(json!({ "skill": "cleaner", "lat": lat, "lon": lon, "radius_m": 500.0, "limit": 5 })),
        )
        .await;
    assert_eq!(answer["providers"][0]["provider"], provider, "{answer}");
    cluster.stop().await;
}

/// A revocation sent to one node is in force on all three, survives a node's
/// restart (it is stored), and touches only what it names: a token by its id,
/// then every token of a principal issued before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_every_node_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let configs = local_cluster(dir.path(), &regions()).expect("cluster configs");
    let secret = configs[0].auth.secret_file.clone();
    let mut nodes = BTreeMap::new();
    for config in configs.clone() {
        let node = RunningNode::start(config.clone(), Arc::new(SystemClock))
            .await
            .expect("node starts");
        nodes.insert(config.node.id.clone(), node);
    }
    let rest =
        |nodes: &BTreeMap<String, RunningNode>, name: &str| Rest::new(nodes[name].http_addr());
    let admin = token(&secret, Role::Admin, 0);
    for name in NAMES {
        rest(&nodes, name).wait_links_up(&admin).await;
    }
    let customer = ids_homed_on("a", 1_000, 1)[0];
    let revoked = token(&secret, Role::Customer, customer);
    let kept = token(&secret, Role::Customer, customer);
    let path = format!("/v1/wallets/{customer}");
    let served = |status: u16| status == 200 || status == 404;
    for name in NAMES {
        let (status, body) = rest(&nodes, name).get(&path, &revoked).await;
        assert!(
            served(status),
            "{name} serves the token first: {status} {body}"
        );
    }
    let jti = {
        use base64::Engine;
        let body = revoked.split('.').nth(1).expect("a JWT");
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(body)
                .expect("base64url"),
        )
        .expect("claims");
        claims["jti"].as_str().expect("jti").to_owned()
    };
    let (status, answer) = rest(&nodes, "b")
        .post("/v1/revocations/token", &revoked, json!({ "jti": jti }))
        .await;
    assert_eq!(status, 403, "only an admin revokes: {answer}");
    let (status, answer) = rest(&nodes, "b")
        .post("/v1/revocations/token", &admin, json!({ "jti": jti }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["nodes_missed"], json!([]), "every node took it");
    for name in NAMES {
        let (status, body) = rest(&nodes, name).get(&path, &revoked).await;
        assert_eq!(status, 401, "{name} refuses the revoked token: {body}");
        assert_eq!(body["error"], "unauthorized");
        let (status, body) = rest(&nodes, name).get(&path, &kept).await;
        assert!(served(status), "{name} still serves another token: {body}");
    }

    // c restarts: the revocation was stored.
    let c = nodes.remove("c").expect("c");
    c.shutdown().await.expect("c stops");
    let config = configs
        .iter()
        .find(|config| config.node.id == "c")
        .expect("c's config")
        .clone();
    let again = RunningNode::start(config, Arc::new(SystemClock))
        .await
        .expect("c restarts");
    nodes.insert("c".to_owned(), again);
    let (status, _) = rest(&nodes, "c").get(&path, &revoked).await;
    assert_eq!(status, 401, "c still refuses it after its restart");
    for name in NAMES {
        rest(&nodes, name).wait_links_up(&admin).await;
    }

    // Every token of the customer issued so far.
    let (status, answer) = rest(&nodes, "a")
        .post(
            "/v1/revocations/subject",
            &admin,
            json!({ "role": "customer", "sub": customer }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["nodes_missed"], json!([]), "every node took it");
    let other = token(&secret, Role::Provider, customer);
    for name in NAMES {
        let (status, _) = rest(&nodes, name).get(&path, &kept).await;
        assert_eq!(status, 401, "{name} refuses the customer's older token");
        let (status, body) = rest(&nodes, name)
            .get(&format!("/v1/providers/{customer}"), &other)
            .await;
        assert!(
            served(status),
            "{name}: the provider with the same subject is untouched: {status} {body}"
        );
    }
    let (status, answer) = rest(&nodes, "a")
        .post(
            "/v1/revocations/subject",
            &admin,
            json!({ "role": "root", "sub": customer }),
        )
        .await;
    assert_eq!(status, 400, "an unknown role is refused: {answer}");
    for (_, node) in nodes {
        node.shutdown().await.expect("node stops");
    }
}
