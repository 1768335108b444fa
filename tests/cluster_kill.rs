//! Three `fixit node` child processes: node c, home of every payee, is killed with
//! SIGKILL while captures paying it are in flight, and comes back. Every capture
//! lands exactly once, money is conserved across the three databases, and every
//! outbox is empty. While c is down, what needs c is `unavailable`; the rest is served.

#![cfg(unix)]

mod cluster_common;
mod process_common;

use cluster_common::*;
use fixit_actors::ids::WalletId;
use fixit_actors::ledger::EntryKind;
use fixit_actors::store::Store;
use fixit_edge::auth::Role;
use fixit_edge::local_cluster::local_cluster;
use process_common::NodeProcess;
use reqwest::Method;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const JOBS: usize = 12;
const DEPOSIT: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_payees_home_mid_capture_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let configs = local_cluster(dir.path(), &regions()).expect("cluster configs");
    let secret = configs[0].auth.secret_file.clone();
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut data_dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for config in &configs {
        let path = dir.path().join(format!("{}.toml", config.node.id));
        std::fs::write(&path, toml::to_string(config).expect("config as TOML")).expect("write");
        files.insert(config.node.id.clone(), path);
        data_dirs.insert(config.node.id.clone(), config.node.data_dir.clone());
    }
    let mut nodes: BTreeMap<String, NodeProcess> = files
        .iter()
        .map(|(name, file)| (name.clone(), NodeProcess::start(file)))
        .collect();
    let rest = |nodes: &BTreeMap<String, NodeProcess>, name: &str| Rest::new(&nodes[name].http);
    let admin = token(&secret, Role::Admin, 0);
    for name in NAMES {
        rest(&nodes, name).wait_links_up(&admin).await;
    }

    // Payers homed on a and b; every payee homed on c.
    let mut customers = ids_homed_on("a", 10_000, JOBS / 2);
    customers.extend(ids_homed_on("b", 10_000, JOBS / 2));
    let providers = providers_homed_on("c", 20_000, JOBS);
    let (a, b) = (rest(&nodes, "a"), rest(&nodes, "b"));
    for customer in &customers {
        a.ok(
            Method::POST,
            &format!("/v1/wallets/{customer}/deposit"),
            &admin,
            Some(json!({ "key": "top-up", "amount": DEPOSIT })),
        )
        .await;
    }
    for (i, provider) in providers.iter().enumerate() {
        let token = token(&secret, Role::Provider, *provider);
        let (lat, lon) = inside("u33e", 0.1 + 0.07 * i as f64, 0.5);
        b.provider_at(*provider, &token, "plumber", (lat, lon))
            .await;
    }

    // Book through a (held on b), accept and start through b.
    let mut jobs: Vec<(u64, u64, i64)> = Vec::new(); // (job, provider, price)
    for (i, customer) in customers.iter().enumerate() {
        let token = token(&secret, Role::Customer, *customer);
        let price = 1_000 + 100 * i as i64;
        let (lat, lon) = inside("u33e", 0.1 + 0.07 * i as f64, 0.52);
        let booked = a
            .ok(
                Method::POST,
                "/v1/jobs",
                &token,
                Some(json!({
                    "customer": customer, "key": format!("job-{i}"), "skill": "plumber",
                    "lat": lat, "lon": lon, "price": price,
                })),
            )
            .await;
        let job = booked["id"].as_u64().expect("job id");
        let offered = a
            .wait_job(job, &token, |status| offered_to(status).is_some())
            .await;
        let provider = offered_to(&offered["status"]).expect("offered");
        let provider_token = token_for(&secret, provider);
        for step in ["accept", "start"] {
            b.ok(
                Method::POST,
                &format!("/v1/jobs/{job}/{step}"),
                &provider_token,
                Some(json!({ "provider": provider })),
            )
            .await;
        }
        jobs.push((job, provider, price));
    }

    // The first half completes at once and c dies after three of those captures are
    // acknowledged; the second half completes while c is down.
    let (first, second) = jobs.split_at(JOBS / 2);
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::channel(JOBS);
    let mut completions = tokio::task::JoinSet::new();
    for &(job, provider, _) in first {
        let (b, token, acked_tx) = (b.clone(), token_for(&secret, provider), acked_tx.clone());
        completions.spawn(async move {
            let answer = complete(&b, job, provider, &token).await;
            let _ = acked_tx.send(job).await;
            answer
        });
    }
    for _ in 0..3 {
        acked_rx.recv().await.expect("a completion");
    }
    nodes.remove("c").expect("c").kill9();
    println!("killed c after 3 acknowledged completions");
    while let Some(joined) = completions.join_next().await {
        let (job, status, body) = joined.expect("completion task");
        assert_eq!(
            status, 200,
            "job {job}: captures need only the payer's home: {body}"
        );
    }
    for &(job, provider, _) in second {
        let (_, status, body) = complete(&b, job, provider, &token_for(&secret, provider)).await;
        assert_eq!(status, 200, "job {job} while c is down: {body}");
    }

    // While c is down: its wallets are unavailable, the others are served.
    let (status, body) = a
        .get(
            &format!("/v1/wallets/{}", provider_wallet(providers[0])),
            &admin,
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (503, json!("unavailable")),
        "{body}"
    );
    let (status, body) = b
        .get(&format!("/v1/wallets/{}", customers[0]), &admin)
        .await;
    assert_eq!(status, 200, "{body}");
    let backlog = a.outbox(&admin).await + b.outbox(&admin).await;
    println!("outbox backlog while c is down: {backlog}");
    assert!(
        backlog >= (JOBS / 2) as u64,
        "the payments of the second half wait in the outboxes"
    );

    nodes.insert("c".into(), NodeProcess::start(&files["c"]));
    let c = rest(&nodes, "c");
    c.wait_links_up(&admin).await;
    let mut drained = false;
    for _ in 0..WAIT_ROUNDS {
        let mut backlog = 0;
        for name in NAMES {
            backlog += rest(&nodes, name).outbox(&admin).await;
        }
        if backlog == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(WAIT_STEP).await;
    }
    assert!(drained, "outboxes drain once c is back");

    // Balances, read through a.
    let mut earned: BTreeMap<u64, i64> = BTreeMap::new();
    let mut fees = 0i64;
    for (_, provider, price) in &jobs {
        let fee = price / 10;
        *earned.entry(*provider).or_default() += price - fee;
        fees += fee;
    }
    for (i, customer) in customers.iter().enumerate() {
        let body = a
            .ok(
                Method::GET,
                &format!("/v1/wallets/{customer}"),
                &admin,
                None,
            )
            .await;
        assert_eq!(
            body["available"],
            DEPOSIT - (1_000 + 100 * i as i64),
            "{customer}"
        );
        assert_eq!(body["held"], 0);
    }
    for (provider, amount) in &earned {
        let body = a
            .ok(
                Method::GET,
                &format!("/v1/wallets/{}", provider_wallet(*provider)),
                &admin,
                None,
            )
            .await;
        assert_eq!(body["available"], *amount, "provider {provider}");
    }
    let platform = a
        .ok(
            Method::GET,
            &format!("/v1/wallets/{PLATFORM}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(platform["available"], fees);

    // Stop cleanly and audit the three databases.
    for (name, node) in std::mem::take(&mut nodes) {
        assert!(node.terminate().success(), "{name} exits 0");
    }
    let (mut total, mut outside, mut sent, mut received) = (0i128, 0i128, 0i64, 0i64);
    for (name, data) in &data_dirs {
        let store = Store::open(data, 64 << 20).expect("open stopped node's data");
        let audit = store.audit().expect("audit");
        assert!(audit.holds(), "node {name}: {audit:?}");
        assert_eq!(audit.outbox_transfers, 0, "node {name}");
        total += audit.total_balance;
        outside += i128::from(audit.flows.deposited) - i128::from(audit.flows.withdrawn);
        sent += audit.flows.sent;
        received += audit.flows.received;
        if name == "c" {
            for (provider, amount) in &earned {
                let entries = store
                    .history(WalletId(provider_wallet(*provider)), 0, 1_000)
                    .expect("history");
                let keys: Vec<&str> = entries
                    .iter()
                    .filter(|entry| entry.kind == EntryKind::Payment)
                    .map(|entry| entry.key.as_str())
                    .collect();
                let distinct: BTreeSet<&str> = keys.iter().copied().collect();
                assert_eq!(
                    keys.len(),
                    distinct.len(),
                    "a transfer applied twice: {keys:?}"
                );
                let credited: i64 = entries.iter().map(|entry| entry.available_delta).sum();
                assert_eq!(credited, *amount, "provider {provider}");
            }
        }
    }
    assert_eq!(total, outside, "conservation across the three nodes");
    assert_eq!(sent, received, "every transfer received exactly once");
}

fn token_for(secret: &std::path::Path, provider: u64) -> String {
    token(secret, Role::Provider, provider)
}

async fn complete(b: &Rest, job: u64, provider: u64, token: &str) -> (u64, u16, serde_json::Value) {
    let (status, body) = b
        .post(
            &format!("/v1/jobs/{job}/complete"),
            token,
            json!({ "provider": provider, "proof": "cHJvb2Y=" }),
        )
        .await;
    (job, status, body)
}
