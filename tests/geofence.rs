//! Geofences and dispatch without borders on three real nodes in one process
//! (QUIC links with mutual TLS, HTTP bridges): a job at a region edge offered
//! across it first, paid, and cascading when the neighbour goes down; a customer
//! connected to one node receiving every event of a job held by another; service
//! areas and zones put at run time in force on every node.

mod cluster_common;

use cluster_common::*;
use fixit_edge::auth::Role;
use fixit_protocol::api::Push;
use fixit_sdk::HttpTransport;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_320.0;

/// The edge between u33d (node a, south) and u33e (node b, north), and a
/// longitude inside both.
fn edge() -> (f64, f64) {
    let (south, _, west, east) = cell_box("u33e");
    (south, (west + east) / 2.0)
}

/// `metres` north (negative: south) of the edge.
fn from_edge(metres: f64) -> (f64, f64) {
    let (lat, lon) = edge();
    (lat + metres / M_PER_DEG, lon)
}

async fn deposit(cluster: &Cluster, wallet: u64, amount: i64) {
    let admin = cluster.token(Role::Admin, 0);
    cluster
        .rest("a")
        .ok(
            Method::POST,
            &format!("/v1/wallets/{wallet}/deposit"),
            &admin,
            Some(json!({ "key": format!("seed-{wallet}"), "amount": amount })),
        )
        .await;
}

async fn book(
    cluster: &Cluster,
    via: &str,
    customer: u64,
    key: &str,
    (lat, lon): (f64, f64),
    price: i64,
) -> (u16, Value) {
    let token = cluster.token(Role::Customer, customer);
    let body = json!({ "customer": customer, "key": key, "skill": "plumbing", "lat": lat, "lon": lon, "price": price });
    cluster.rest(via).post("/v1/jobs", &token, body).await
}

async fn job_step(cluster: &Cluster, via: &str, provider: u64, job: u64, step: &str) -> Value {
    let token = cluster.token(Role::Provider, provider);
    let mut body = json!({ "provider": provider });
    if step == "complete" {
        body["proof"] = json!("cGhvdG8=");
    }
    cluster
        .rest(via)
        .ok(
            Method::POST,
            &format!("/v1/jobs/{job}/{step}"),
            &token,
            Some(body),
        )
        .await
}

async fn counter(cluster: &Cluster, node: &str, name: &str) -> u64 {
    let admin = cluster.token(Role::Admin, 0);
    let snapshot = cluster
        .rest(node)
        .ok(Method::GET, "/v1/dashboard", &admin, None)
        .await;
    snapshot["counters"][name].as_u64().expect(name)
}

/// The statuses of `job` pushed on `events` until `last` (30 s at most).
async fn statuses_until(
    events: &mut fixit_sdk::HttpPushStream,
    job: u64,
    last: &str,
) -> Vec<&'static str> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let push = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("a push within 30 s")
            .expect("the push stream is open");
        if let Push::Job(event) = push {
            if event.job.0 == job {
                seen.push(event.status.name());
                if event.status.name() == last {
                    return seen;
                }
            }
        }
    }
    panic!("no {last} event for job {job}; saw {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_at_a_region_edge_is_offered_across_it_paid_and_cascades_when_that_node_dies() {
    let mut cluster = Cluster::start().await;
    let admin = cluster.token(Role::Admin, 0);
    let customer = ids_homed_on("c", 7_000, 1)[0];
    deposit(&cluster, customer, 20_000).await;
    // Across the edge, 500 m from the job; on the job's side 1,300 m away; and
    // nearest of all (50 m) but working only 5 km to the south.
    let (near, far, fenced) = (8_001, 8_002, 8_003);
    let a = cluster.rest("a");
    let b = cluster.rest("b");
    let token = |p| cluster.token(Role::Provider, p);
    b.provider_at(near, &token(near), "plumbing", from_edge(300.0))
        .await;
    a.provider_at(far, &token(far), "plumbing", from_edge(-1_500.0))
        .await;
    a.provider_at(fenced, &token(fenced), "plumbing", from_edge(-250.0))
        .await;
    let (work_lat, work_lon) = from_edge(-5_000.0);
    let work =
        json!({ "area": { "circle": { "lat": work_lat, "lon": work_lon, "radius_m": 1_000.0 } } });
    let (status, changed) = a
        .put(
            &format!("/v1/providers/{fenced}/work-area"),
            &token(fenced),
            work,
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["nodes_missed"], json!([]), "{changed}");
    let (lat, lon) = from_edge(-200.0);
    let found = a
        .ok(
            Method::POST,
            "/v1/nearby",
            &admin,
            Some(json!({ "skill": "plumbing", "lat": lat, "lon": lon, "radius_m": 5_000.0, "limit": 10 })),
        )
        .await;
    let listed: Vec<u64> = found["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .filter_map(|p| p["provider"].as_u64())
        .collect();
    assert_eq!(
        listed,
        [near, far],
        "nearest first across the edge; the fenced one left out"
    );

    // The customer is connected to c; the job is held by a (its position's owner).
    let transport = HttpTransport::new(None).expect("HTTP transport");
    let customer_token = cluster.token(Role::Customer, customer);
    let mut events = transport
        .client(cluster.nodes["c"].http_addr(), &customer_token)
        .subscribe()
        .await
        .expect("events on c");
    let price = 2_000;
    let (status, job) = book(&cluster, "c", customer, "edge-1", from_edge(-200.0), price).await;
    assert_eq!(status, 200, "{job}");
    let id = job["id"].as_u64().expect("job id");
    assert_eq!(
        fixit_actors::cluster_hooks::node_number_of_job(id),
        fixit_cluster::placement::node_number("a"),
        "held by a"
    );
    assert_eq!(
        offered_to(&job["status"]),
        Some(near),
        "the provider across the edge first: {job}"
    );
    job_step(&cluster, "b", near, id, "accept").await;
    job_step(&cluster, "b", near, id, "start").await;
    let done = job_step(&cluster, "b", near, id, "complete").await;
    assert!(done["status"]["Completed"].is_object(), "{done}");
    let pushed = statuses_until(&mut events, id, "completed").await;
    assert_eq!(
        pushed,
        ["offered", "accepted", "in_progress", "completed"],
        "every event of the job held by a reached the customer on c"
    );
    assert!(counter(&cluster, "a", "pushes_forwarded").await >= 4);
    assert!(counter(&cluster, "a", "offers_across_regions").await >= 1);
    cluster.drain_outboxes().await;
    let fee = done["fee"].as_i64().expect("fee");
    assert_eq!(
        cluster.balance("a", provider_wallet(near)).await,
        (price - fee, 0)
    );
    assert_eq!(cluster.balance("b", customer).await, (20_000 - price, 0));
    cluster.assert_conserved();

    // The same again, then b (holding the offered provider) dies: the offer
    // lapses at its deadline and the cascade moves on to a's provider.
    let (status, second) = book(&cluster, "a", customer, "edge-2", from_edge(-200.0), price).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(offered_to(&second["status"]), Some(near), "{second}");
    let deadline_ms = second["status"]["Offered"]["deadline_ms"]
        .as_u64()
        .expect("deadline");
    let second = second["id"].as_u64().expect("job id");
    let node_b = cluster.nodes.remove("b").expect("b");
    node_b.shutdown().await.expect("b stops");
    let killed = Instant::now();
    let moved = a
        .wait_job(second, &admin, |status| offered_to(status) == Some(far))
        .await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    println!(
        "cascade past the dead node's provider: {:?} after the kill, {} ms after the offer's deadline",
        killed.elapsed(),
        now_ms.saturating_sub(deadline_ms)
    );
    assert!(
        moved["tried"]
            .as_array()
            .expect("tried")
            .contains(&json!(near)),
        "{moved}"
    );
    assert!(
        !moved["tried"]
            .as_array()
            .expect("tried")
            .contains(&json!(fenced)),
        "never offered outside its work area: {moved}"
    );
    job_step(&cluster, "a", far, second, "accept").await;
    cluster.stop().await;
}

fn square(lat: f64, lon: f64, half_m: f64) -> Vec<[f64; 2]> {
    let d = half_m / M_PER_DEG;
    vec![
        [lon - d, lat - d],
        [lon + d, lat - d],
        [lon + d, lat + d],
        [lon - d, lat + d],
        [lon - d, lat - d],
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_areas_and_zones_put_at_run_time_hold_on_every_node() {
    let cluster = Cluster::start().await;
    let admin = cluster.token(Role::Admin, 0);
    let customer = ids_homed_on("b", 9_000, 1)[0];
    deposit(&cluster, customer, 50_000).await;
    let centre = from_edge(-2_000.0);
    let city = json!({
        "name": "city",
        "skills": [],
        "geometry": { "type": "Polygon", "coordinates": [
            square(centre.0, centre.1, 1_000.0),
            square(centre.0, centre.1, 200.0),
        ] },
    });
    let (status, changed) = cluster
        .rest("a")
        .put("/v1/areas/service", &admin, city)
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        changed,
        json!({ "name": "city", "existed": false, "nodes_missed": [] })
    );
    let put = Instant::now();
    let inside = (centre.0 + 500.0 / M_PER_DEG, centre.1);
    let in_hole = centre;
    let outside = (centre.0 + 1_500.0 / M_PER_DEG, centre.1);
    for (i, via) in NAMES.iter().enumerate() {
        let areas = cluster
            .rest(via)
            .ok(Method::GET, "/v1/areas", &admin, None)
            .await;
        assert_eq!(areas["service_areas"][0]["name"], "city", "{via}: {areas}");
        for (what, at) in [("outside", outside), ("in-the-hole", in_hole)] {
            let (status, body) = book(
                &cluster,
                via,
                customer,
                &format!("out-{i}-{what}"),
                at,
                1_000,
            )
            .await;
            assert_eq!(
                (status, body["error"].as_str()),
                (422, Some("outside_service_area")),
                "{via}, {what}: {body}"
            );
            assert!(
                !body["message"].as_str().unwrap_or("").contains("city"),
                "{body}"
            );
        }
    }
    println!(
        "area in force on all three nodes {:?} after the put",
        put.elapsed()
    );
    assert_eq!(
        cluster.balance("c", customer).await,
        (50_000, 0),
        "nothing held"
    );
    assert!(counter(&cluster, "a", "bookings_outside_service_area").await >= 1);
    let (status, job) = book(&cluster, "c", customer, "in-1", inside, 1_000).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["zone"], Value::Null);

    // A zone with a multiplier: quoted before, applied in the job.
    let airport = (centre.0 - 600.0 / M_PER_DEG, centre.1);
    let zone = json!({
        "name": "airport",
        "multiplier_pct": 150,
        "geometry": { "type": "Polygon", "coordinates": [square(airport.0, airport.1, 100.0)] },
    });
    let (status, changed) = cluster.rest("b").put("/v1/areas/zone", &admin, zone).await;
    assert_eq!(status, 200, "{changed}");
    // A provider held by a moving into the zone: admins subscribed there hear it.
    let transport = HttpTransport::new(None).expect("HTTP transport");
    let mut zone_events = transport
        .client(cluster.nodes["a"].http_addr(), &admin)
        .subscribe()
        .await
        .expect("admin events on a");
    let provider = 8_100;
    let provider_token = cluster.token(Role::Provider, provider);
    let a = cluster.rest("a");
    a.provider_at(provider, &provider_token, "plumbing", inside)
        .await;
    let here = json!({ "lat": airport.0, "lon": airport.1 });
    a.ok(
        Method::PUT,
        &format!("/v1/providers/{provider}/location"),
        &provider_token,
        Some(here),
    )
    .await;
    let event = tokio::time::timeout(Duration::from_secs(30), zone_events.next())
        .await
        .expect("a zone event within 30 s")
        .expect("the admin stream is open");
    match event {
        Push::Zone(event) => {
            assert_eq!(
                (event.provider.0, event.zone.as_str(), event.entered),
                (provider, "airport", true)
            )
        }
        other => panic!("expected a zone event, got {other:?}"),
    }
    let customer_token = cluster.token(Role::Customer, customer);
    let quote = cluster
        .rest("c")
        .ok(
            Method::GET,
            &format!(
                "/v1/quote?skill=plumbing&lat={}&lon={}&price=1000",
                airport.0, airport.1
            ),
            &customer_token,
            None,
        )
        .await;
    assert_eq!(quote["price"], 1_500, "{quote}");
    assert_eq!(quote["in_service_area"], true, "{quote}");
    assert_eq!(quote["zone"]["zone"], "airport", "{quote}");
    let (status, job) = book(&cluster, "a", customer, "airport-1", airport, 1_000).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["request"]["price"], 1_500, "{job}");
    assert_eq!(
        job["zone"],
        json!({ "zone": "airport", "multiplier_pct": 150, "base_price": 1_000 })
    );

    // Moved at run time: the old inside is refused on every node at once.
    let moved = json!({
        "name": "city",
        "skills": ["plumbing"],
        "geometry": { "type": "Polygon", "coordinates": [square(outside.0, outside.1, 300.0)] },
    });
    let (status, changed) = cluster
        .rest("c")
        .put("/v1/areas/service", &admin, moved)
        .await;
    assert_eq!(
        (status, changed["existed"].clone()),
        (200, json!(true)),
        "{changed}"
    );
    for (i, via) in NAMES.iter().enumerate() {
        let (status, body) = book(
            &cluster,
            via,
            customer,
            &format!("moved-{i}"),
            inside,
            1_000,
        )
        .await;
        assert_eq!(status, 422, "{via}: {body}");
        let search = json!({ "skill": "plumbing", "lat": inside.0, "lon": inside.1, "radius_m": 1_000.0, "limit": 5 });
        let (status, body) = cluster
            .rest(via)
            .post("/v1/nearby", &customer_token, search)
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (422, Some("outside_service_area")),
            "{via}: {body}"
        );
        let (status, body) = book(
            &cluster,
            via,
            customer,
            &format!("now-in-{i}"),
            outside,
            1_000,
        )
        .await;
        assert_eq!(status, 200, "{via}: {body}");
    }

    // Bad input changes nothing; only admins put areas.
    let bad = [
        json!({ "name": "x", "skills": [], "geometry": { "type": "Polygon", "coordinates": [[[200.0, 0.0], [1.0, 0.0], [1.0, 1.0]]] } }),
        json!({ "name": "x", "skills": [], "geometry": { "type": "Point", "coordinates": [1.0, 0.0] } }),
        json!({ "name": "Bad Name", "skills": [], "geometry": { "type": "Polygon", "coordinates": [square(0.0, 0.0, 10.0)] } }),
        json!({ "name": "x", "skills": [], "geometry": { "type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0]]] } }),
    ];
    for body in bad {
        let (status, answer) = cluster
            .rest("a")
            .put("/v1/areas/service", &admin, body.clone())
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, _) = cluster
        .rest("a")
        .post(
            "/v1/areas/remove",
            &customer_token,
            json!({ "name": "city" }),
        )
        .await;
    assert_eq!(status, 403);
    let areas = cluster
        .rest("b")
        .ok(Method::GET, "/v1/areas", &admin, None)
        .await;
    assert_eq!(
        areas["service_areas"].as_array().map(Vec::len),
        Some(1),
        "{areas}"
    );

    let (status, removed) = cluster
        .rest("b")
        .post("/v1/areas/remove", &admin, json!({ "name": "city" }))
        .await;
    assert_eq!((status, removed["existed"].clone()), (200, json!(true)));
    let (status, body) = book(&cluster, "a", customer, "anywhere-1", in_hole, 1_000).await;
    assert_eq!(status, 200, "no service area left: served anywhere: {body}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_during_area_changes_catches_up_after_its_restart() {
    let mut cluster = Cluster::start().await;
    let admin = cluster.token(Role::Admin, 0);
    let centre = from_edge(-2_000.0);
    let area = |name: &str, half_m: f64| {
        json!({
            "name": name,
            "skills": [],
            "geometry": { "type": "Polygon", "coordinates": [square(centre.0, centre.1, half_m)] },
        })
    };
    let (status, _) = cluster
        .rest("a")
        .put("/v1/areas/service", &admin, area("old", 500.0))
        .await;
    assert_eq!(status, 200);
    cluster.stop_node("c").await;
    // While c is down: "old" removed, "city" put, a work area set.
    let (status, removed) = cluster
        .rest("a")
        .post("/v1/areas/remove", &admin, json!({ "name": "old" }))
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["nodes_missed"], json!(["c"]), "{removed}");
    let (status, put) = cluster
        .rest("b")
        .put("/v1/areas/service", &admin, area("city", 1_000.0))
        .await;
    assert_eq!(
        (status, put["nodes_missed"].clone()),
        (200, json!(["c"])),
        "{put}"
    );
    let provider = 8_200;
    let work =
        json!({ "area": { "circle": { "lat": centre.0, "lon": centre.1, "radius_m": 700.0 } } });
    let (status, _) = cluster
        .rest("a")
        .put(&format!("/v1/providers/{provider}/work-area"), &admin, work)
        .await;
    assert_eq!(status, 200);

    // And a customer's tokens revoked.
    let customer = ids_homed_on("a", 9_500, 1)[0];
    let revoked = cluster.token(Role::Customer, customer);
    let (status, answer) = cluster
        .rest("a")
        .post(
            "/v1/revocations/subject",
            &admin,
            json!({ "role": "customer", "sub": customer }),
        )
        .await;
    assert_eq!(
        (status, answer["nodes_missed"].clone()),
        (200, json!(["c"])),
        "{answer}"
    );

    cluster.restart_node("c").await;
    let c = cluster.rest("c");
    let restarted = Instant::now();
    let mut seen = Value::Null;
    for _ in 0..WAIT_ROUNDS {
        seen = c.ok(Method::GET, "/v1/areas", &admin, None).await;
        let names: Vec<&str> = seen["service_areas"]
            .as_array()
            .expect("service areas")
            .iter()
            .filter_map(|area| area["name"].as_str())
            .collect();
        if names == ["city"] {
            break;
        }
        tokio::time::sleep(WAIT_STEP).await;
    }
    println!(
        "c caught up {:?} after its restart: {seen}",
        restarted.elapsed()
    );
    assert_eq!(seen["service_areas"][0]["name"], "city", "{seen}");
    assert_eq!(
        seen["service_areas"].as_array().map(Vec::len),
        Some(1),
        "old stays removed: {seen}"
    );
    let snapshot = c.ok(Method::GET, "/v1/dashboard", &admin, None).await;
    let work_areas = snapshot["work_areas"].as_array().expect("work areas");
    assert!(
        work_areas.iter().any(|w| w["provider"] == provider),
        "the work area reached c: {snapshot}"
    );
    let wallet = format!("/v1/wallets/{customer}");
    let mut status = 0;
    for _ in 0..WAIT_ROUNDS {
        status = c.get(&wallet, &revoked).await.0;
        if status == 401 {
            break;
        }
        tokio::time::sleep(WAIT_STEP).await;
    }
    assert_eq!(
        status, 401,
        "the revocation made while c was down reached c"
    );
    // And the digests agree everywhere: a change now reaches all three at once.
    let (status, put) = cluster
        .rest("c")
        .put("/v1/areas/service", &admin, area("city", 1_200.0))
        .await;
    assert_eq!(
        (status, put["nodes_missed"].clone()),
        (200, json!([])),
        "{put}"
    );
    cluster.stop().await;
}

/// The service area named `name` on `node`, as its JSON.
async fn area_on(cluster: &Cluster, node: &str, name: &str) -> Value {
    let admin = cluster.token(Role::Admin, 0);
    let areas = cluster
        .rest(node)
        .ok(Method::GET, "/v1/areas", &admin, None)
        .await;
    areas["service_areas"]
        .as_array()
        .expect("service areas")
        .iter()
        .find(|area| area["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_area_changed_at_run_time_stays_changed_until_the_file_changes() {
    let centre = from_edge(-2_000.0);
    let geometry = |half_m: f64| {
        fixit_protocol::area::Geometry::Polygon(vec![square(centre.0, centre.1, half_m)])
    };
    let configured = |half_m: f64| fixit_protocol::area::ServiceArea {
        name: "city".into(),
        skills: Vec::new(),
        geometry: geometry(half_m),
    };
    let mut cluster = Cluster::start_with(|config| {
        config.geo.service_areas = vec![configured(1_000.0)];
    })
    .await;
    let admin = cluster.token(Role::Admin, 0);
    let v2 = json!({
        "name": "city",
        "skills": [],
        "geometry": { "type": "Polygon", "coordinates": [square(centre.0, centre.1, 1_500.0)] },
    });
    let (status, changed) = cluster
        .rest("a")
        .put("/v1/areas/service", &admin, v2.clone())
        .await;
    assert_eq!(
        (status, changed["nodes_missed"].clone()),
        (200, json!([])),
        "{changed}"
    );

    // c restarts with its file unchanged: the run-time change stands everywhere.
    cluster.stop_node("c").await;
    cluster.restart_node("c").await;
    for name in NAMES {
        cluster.rest(name).wait_links_up(&admin).await;
    }
    tokio::time::sleep(3 * fixit_cluster::route::settings_sync::SYNC_INTERVAL).await;
    for name in NAMES {
        let area = area_on(&cluster, name, "city").await;
        assert_eq!(area["geometry"], v2["geometry"], "{name}: {area}");
    }

    // c restarts with the area edited in its file: the edit spreads.
    cluster.stop_node("c").await;
    for config in cluster
        .configs
        .iter_mut()
        .filter(|config| config.node.id == "c")
    {
        config.geo.service_areas = vec![configured(500.0)];
    }
    cluster.restart_node("c").await;
    let v3 = serde_json::to_value(geometry(500.0)).expect("geometry");
    let mut seen = Value::Null;
    for _ in 0..WAIT_ROUNDS {
        seen = area_on(&cluster, "a", "city").await;
        if seen["geometry"] == v3 {
            break;
        }
        tokio::time::sleep(WAIT_STEP).await;
    }
    assert_eq!(seen["geometry"], v3, "the file's edit reached a: {seen}");
    cluster.stop().await;
}
