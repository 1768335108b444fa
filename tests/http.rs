//! The HTTP bridge against a real node on real sled: the whole marketplace flow over
//! JSON and a WebSocket, bad input that changes nothing, overload, and the operator
//! endpoints. All traffic stays on 127.0.0.1.

#[path = "http/client.rs"]
mod client;
#[path = "http/harness.rs"]
mod harness;

use client::{Frame, WebSocket};
use fixit_actors::ids::{ProviderId, WalletId};
use fixit_edge::auth::{now_s, Principal, Role, TokenKey};
use harness::{TestNode, STOP_GRACE};
use serde_json::{json, Value};
use std::time::Duration;

/// Longest wait for one push in these tests.
const PUSH_WAIT: Duration = Duration::from_secs(10);

const CUSTOMER: u64 = 1_001;
const OTHER_CUSTOMER: u64 = 1_002;
const PROVIDER: u64 = 2_001;

fn must(reply: &client::Reply, status: u16) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    reply.json()
}

async fn deposit(node: &TestNode, wallet: u64, key: &str, amount: i64) {
    let path = format!("/v1/wallets/{wallet}/deposit");
    let reply = node
        .http
        .post(
            &path,
            Some(&node.admin()),
            &json!({ "key": key, "amount": amount }),
        )
        .await;
    must(&reply, 200);
}

async fn provider_ready(node: &TestNode, provider: u64, lat: f64, lon: f64) {
    let token = node.token(Role::Provider, provider);
    let online = json!({ "skills": ["plumbing"] });
    let path = format!("/v1/providers/{provider}/online");
    must(&node.http.post(&path, Some(&token), &online).await, 200);
    let path = format!("/v1/providers/{provider}/location");
    let located = node
        .http
        .call(
            "PUT",
            &path,
            Some(&token),
            &json!({ "lat": lat, "lon": lon }),
        )
        .await;
    assert_eq!(must(&located, 200)["status"], "Available");
}

async fn balance(node: &TestNode, wallet: u64) -> (i64, i64) {
    let answer = must(
        &node
            .http
            .get(&format!("/v1/wallets/{wallet}"), Some(&node.admin()))
            .await,
        200,
    );
    (
        answer["available"].as_i64().unwrap_or(-1),
        answer["held"].as_i64().unwrap_or(-1),
    )
}

fn book_body(key: &str, price: i64) -> Value {
    json!({ "customer": CUSTOMER, "key": key, "skill": "plumbing", "lat": 52.5205, "lon": 13.4055, "price": price })
}

/// Reads pushes until one matches, within a bounded number and time.
async fn push_matching(socket: &mut WebSocket, matches: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let push = socket
            .next_json(PUSH_WAIT)
            .await
            .expect("a push before the timeout");
        if matches(&push) {
            return push;
        }
    }
    panic!("no matching push among 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_over_http_pays_the_provider_minus_the_fee() {
    let node = TestNode::start(|_| {}).await;
    deposit(&node, CUSTOMER, "top-up-1", 50_000).await;
    provider_ready(&node, PROVIDER, 52.52, 13.405).await;
    let provider_token = node.token(Role::Provider, PROVIDER);
    let customer_token = node.token(Role::Customer, CUSTOMER);
    let mut offers = WebSocket::connect(
        node.http.addr,
        &format!("/v1/events?token={provider_token}"),
        &[],
    )
    .await
    .expect("provider socket (token in the query)");
    let bearer = format!("Bearer {customer_token}");
    let mut events =
        WebSocket::connect(node.http.addr, "/v1/events", &[("Authorization", &bearer)])
            .await
            .expect("customer socket (token in the header)");

    let booked = must(
        &node
            .http
            .post(
                "/v1/jobs",
                Some(&customer_token),
                &book_body("book-1", 10_000),
            )
            .await,
        200,
    );
    let job = booked["id"].as_u64().expect("job id");
    assert_eq!(
        balance(&node, CUSTOMER).await,
        (40_000, 10_000),
        "price held in escrow"
    );
    let offer = push_matching(&mut offers, |push| push["Provider"]["Offer"]["job"] == job).await;
    assert_eq!(offer["Provider"]["Offer"]["price"], 10_000);

    // Another provider acting on this offer: forbidden, naming no one.
    let intruder = PROVIDER + 1;
    let refused = node
        .http
        .post(
            &format!("/v1/jobs/{job}/accept"),
            Some(&node.token(Role::Provider, intruder)),
            &json!({ "provider": intruder }),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.kind(), "forbidden");
    let message = refused.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !message.contains(&PROVIDER.to_string()) && !message.contains("deadline"),
        "the refusal names neither the offered provider nor the deadline: {message}"
    );

    let me = json!({ "provider": PROVIDER });
    for step in ["accept", "start"] {
        must(
            &node
                .http
                .post(
                    &format!("/v1/jobs/{job}/{step}"),
                    Some(&provider_token),
                    &me,
                )
                .await,
            200,
        );
    }
    let proof = json!({ "provider": PROVIDER, "proof": "cGhvdG8tb2YtYS1maXhlZC1waXBl" });
    let done = must(
        &node
            .http
            .post(
                &format!("/v1/jobs/{job}/complete"),
                Some(&provider_token),
                &proof,
            )
            .await,
        200,
    );
    assert_eq!(done["status"]["Completed"]["provider"], PROVIDER);

    assert_eq!(balance(&node, CUSTOMER).await, (40_000, 0));
    let provider_wallet = WalletId::from(ProviderId(PROVIDER)).0;
    assert_eq!(
        balance(&node, provider_wallet).await,
        (9_000, 0),
        "price minus the 10% fee"
    );
    assert_eq!(
        balance(&node, WalletId::PLATFORM.0).await,
        (1_000, 0),
        "the platform's fee"
    );
    let same_subject = node
        .http
        .get(&format!("/v1/wallets/{PROVIDER}"), Some(&node.admin()))
        .await;
    assert_eq!(
        same_subject.status, 404,
        "the customer wallet of the provider's subject is another wallet, unused"
    );
    let seen = must(
        &node
            .http
            .get(&format!("/v1/jobs/{job}"), Some(&customer_token))
            .await,
        200,
    );
    assert_eq!(seen["status"]["Completed"]["provider"], PROVIDER);
    let history = must(
        &node
            .http
            .get(
                &format!("/v1/wallets/{provider_wallet}/history?from_seq=0&limit=10"),
                Some(&provider_token),
            )
            .await,
        200,
    );
    assert_eq!(history[0]["kind"], "Payment");
    assert_eq!(history[0]["available_delta"], 9_000);
    push_matching(&mut events, |push| {
        push["Job"]["job"] == job && push["Job"]["status"]["Completed"].is_object()
    })
    .await;
    offers.close().await;
    assert_eq!(
        offers.next_frame(PUSH_WAIT).await,
        Some(Frame::Close(Some(1000))),
        "the server answers the client's close"
    );
    events.close().await;
    node.server.stop(STOP_GRACE).await;
}

/// What must not change when input is refused (read from the node, not over HTTP,
/// so the checks do not count against rate limits).
async fn ledger_state(node: &TestNode) -> String {
    let audit = node.node.audit().expect("audit");
    let wallet = WalletId(CUSTOMER);
    let balance = node.node.balance(wallet).await.expect("balance");
    let history = node.node.history(wallet, 0, 1_000).await.expect("history");
    let jobs = node.node.jobs_by_status().expect("jobs");
    format!(
        "{} {:?} {balance:?} {} {jobs:?}",
        audit.total_balance,
        audit.flows,
        history.len()
    )
}

/// One refused request: method, path, token, raw body, expected status and kind.
struct Refused<'a> {
    what: &'a str,
    method: &'a str,
    path: String,
    token: Option<String>,
    body: Option<Vec<u8>>,
    status: u16,
    kind: &'a str,
}

fn refused<'a>(
    what: &'a str,
    method: &'a str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    status: u16,
    kind: &'a str,
) -> Refused<'a> {
    Refused {
        what,
        method,
        path: path.to_owned(),
        token: token.map(str::to_owned),
        body: body.map(|text| text.as_bytes().to_vec()),
        status,
        kind,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_kind_and_changes_nothing() {
    let node = TestNode::start(|_| {}).await;
    deposit(&node, CUSTOMER, "dep-1", 20_000).await;
    deposit(&node, OTHER_CUSTOMER, "dep-2", 5_000).await;
    provider_ready(&node, PROVIDER, 52.52, 13.405).await;
    let customer = node.token(Role::Customer, CUSTOMER);
    let other = node.token(Role::Customer, OTHER_CUSTOMER);
    let provider = node.token(Role::Provider, PROVIDER);
    let admin = node.admin();
    let booked = must(
        &node
            .http
            .post("/v1/jobs", Some(&customer), &book_body("book-1", 1_000))
            .await,
        200,
    );
    let job = booked["id"].as_u64().expect("job id");
    let expired = node.tokens.issue(
        Principal {
            role: Role::Customer,
            sub: CUSTOMER,
        },
        now_s().saturating_sub(3_600), // past the 30 s leeway
    );
    let forged = TokenKey::from_secret([9; 32]).issue(
        Principal {
            role: Role::Admin,
            sub: 0,
        },
        now_s() + 60,
    );
    let wallet = format!("/v1/wallets/{CUSTOMER}");
    let withdraw = format!("{wallet}/withdraw");
    let location = format!("/v1/providers/{PROVIDER}/location");
    let oversized = format!(
        "{{\"key\":\"big\",\"amount\":1,\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let c = Some(customer.as_str());
    let cases = vec![
        refused(
            "malformed JSON",
            "POST",
            &withdraw,
            c,
            Some("{\"key\": \"w1\", \"amount\": "),
            400,
            "bad_request",
        ),
        refused(
            "missing field",
            "POST",
            &withdraw,
            c,
            Some("{\"key\": \"w1\"}"),
            400,
            "bad_request",
        ),
        refused(
            "unknown field",
            "POST",
            &withdraw,
            c,
            Some("{\"key\":\"w1\",\"amount\":5,\"to\":7}"),
            400,
            "bad_request",
        ),
        refused(
            "string for a number",
            "POST",
            &withdraw,
            c,
            Some("{\"key\":\"w1\",\"amount\":\"5\"}"),
            400,
            "bad_request",
        ),
        refused(
            "negative amount",
            "POST",
            &withdraw,
            c,
            Some("{\"key\":\"w1\",\"amount\":-5}"),
            400,
            "invalid",
        ),
        refused(
            "i64::MAX deposit",
            "POST",
            &format!("{wallet}/deposit"),
            Some(&admin),
            Some("{\"key\":\"d9\",\"amount\":9223372036854775807}"),
            400,
            "invalid",
        ),
        refused(
            "number beyond i64",
            "POST",
            &format!("{wallet}/deposit"),
            Some(&admin),
            Some("{\"key\":\"d9\",\"amount\":92233720368547758070}"),
            400,
            "bad_request",
        ),
        refused(
            "more than available",
            "POST",
            &withdraw,
            c,
            Some("{\"key\":\"w2\",\"amount\":999999}"),
            402,
            "insufficient_funds",
        ),
        refused(
            "string latitude",
            "PUT",
            &location,
            Some(&provider),
            Some("{\"lat\":\"52\",\"lon\":13}"),
            400,
            "bad_request",
        ),
        refused(
            "latitude 91",
            "PUT",
            &location,
            Some(&provider),
            Some("{\"lat\":91,\"lon\":13}"),
            400,
            "invalid",
        ),
        refused(
            "booking at longitude 181",
            "POST",
            "/v1/jobs",
            c,
            Some(
                &book_body("book-2", 1_000)
                    .to_string()
                    .replace("13.4055", "181"),
            ),
            400,
            "invalid",
        ),
        refused(
            "bad skill",
            "POST",
            "/v1/jobs",
            c,
            Some(
                &book_body("book-3", 1_000)
                    .to_string()
                    .replace("plumbing", "Plumb ing"),
            ),
            400,
            "invalid",
        ),
        refused(
            "unknown job",
            "GET",
            "/v1/jobs/999999",
            c,
            None,
            404,
            "not_found",
        ),
        refused(
            "non-numeric id",
            "GET",
            "/v1/jobs/abc",
            c,
            None,
            400,
            "bad_request",
        ),
        refused(
            "unknown route",
            "GET",
            "/v1/nothing",
            c,
            None,
            404,
            "not_found",
        ),
        refused("no token", "GET", &wallet, None, None, 401, "unauthorized"),
        refused(
            "expired token",
            "GET",
            &wallet,
            Some(&expired),
            None,
            401,
            "unauthorized",
        ),
        refused(
            "forged token",
            "POST",
            &format!("{wallet}/deposit"),
            Some(&forged),
            Some("{\"key\":\"d8\",\"amount\":5}"),
            401,
            "unauthorized",
        ),
        refused(
            "garbage token",
            "GET",
            &wallet,
            Some("not-a-token"),
            None,
            401,
            "unauthorized",
        ),
        refused(
            "customer deposits",
            "POST",
            &format!("{wallet}/deposit"),
            c,
            Some("{\"key\":\"d7\",\"amount\":5}"),
            403,
            "forbidden",
        ),
        refused(
            "customer accepts",
            "POST",
            &format!("/v1/jobs/{job}/accept"),
            c,
            Some(&format!("{{\"provider\":{CUSTOMER}}}")),
            403,
            "forbidden",
        ),
        refused(
            "another's wallet",
            "GET",
            &wallet,
            Some(&other),
            None,
            403,
            "forbidden",
        ),
        refused(
            "withdraw from another's wallet",
            "POST",
            &withdraw,
            Some(&other),
            Some("{\"key\":\"w3\",\"amount\":5}"),
            403,
            "forbidden",
        ),
        refused(
            "another's job",
            "GET",
            &format!("/v1/jobs/{job}"),
            Some(&other),
            None,
            404,
            "not_found",
        ),
        refused(
            "cancel another's job",
            "POST",
            &format!("/v1/jobs/{job}/cancel"),
            Some(&other),
            Some(&format!("{{\"customer\":{CUSTOMER}}}")),
            403,
            "forbidden",
        ),
        refused(
            "reused deposit key",
            "POST",
            &format!("{wallet}/deposit"),
            Some(&admin),
            Some("{\"key\":\"dep-1\",\"amount\":7}"),
            409,
            "idempotency_conflict",
        ),
        refused(
            "reused booking key",
            "POST",
            "/v1/jobs",
            c,
            Some(&book_body("book-1", 2_000).to_string()),
            409,
            "idempotency_conflict",
        ),
        refused(
            "a history page over the documented 1,000 entries",
            "GET",
            &format!("{wallet}/history?limit=1001"),
            Some(&admin),
            None,
            400,
            "invalid",
        ),
        refused(
            "a fraction for an integer field",
            "POST",
            &format!("/v1/jobs/{job}/start"),
            Some(&provider),
            Some(&format!("{{\"provider\":{PROVIDER}.5}}")),
            400,
            "bad_request",
        ),
        refused(
            "proof not base64",
            "POST",
            &format!("/v1/jobs/{job}/complete"),
            Some(&provider),
            Some(&format!("{{\"provider\":{PROVIDER},\"proof\":\"%%%\"}}")),
            400,
            "bad_request",
        ),
        refused(
            "offline with a body",
            "POST",
            &format!("/v1/providers/{PROVIDER}/offline"),
            Some(&provider),
            Some("{\"now\":true}"),
            400,
            "bad_request",
        ),
        refused(
            "oversized body",
            "POST",
            &withdraw,
            c,
            Some(&oversized),
            413,
            "bad_request",
        ),
        refused(
            "wrong method",
            "DELETE",
            &wallet,
            c,
            None,
            405,
            "bad_request",
        ),
    ];
    let before = ledger_state(&node).await;
    let provider_before = must(
        &node
            .http
            .get(&format!("/v1/providers/{PROVIDER}"), Some(&provider))
            .await,
        200,
    );
    for case in &cases {
        let bearer = case.token.as_ref().map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        let reply = node
            .http
            .send(case.method, &case.path, &headers, case.body.as_deref())
            .await;
        assert_eq!(
            (reply.status, reply.kind().as_str()),
            (case.status, case.kind),
            "{}: {}",
            case.what,
            reply.text()
        );
        assert!(
            reply.json()["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{}",
            case.what
        );
        assert_eq!(
            ledger_state(&node).await,
            before,
            "{} changed something",
            case.what
        );
    }
    let provider_after = must(
        &node
            .http
            .get(&format!("/v1/providers/{PROVIDER}"), Some(&provider))
            .await,
        200,
    );
    assert_eq!(
        provider_after, provider_before,
        "the provider record is unchanged"
    );
    node.server.stop(STOP_GRACE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_rate_limit_gets_429_with_retry_after_while_others_are_served() {
    let node = TestNode::start(|config| {
        config.rate_limits.principal_burst = 3;
        config.rate_limits.principal_per_s = 1;
    })
    .await;
    deposit(&node, CUSTOMER, "dep-1", 100).await;
    deposit(&node, OTHER_CUSTOMER, "dep-2", 100).await;
    let noisy = node.token(Role::Customer, CUSTOMER);
    let mut limited = None;
    for _ in 0..20 {
        let reply = node
            .http
            .get(&format!("/v1/wallets/{CUSTOMER}"), Some(&noisy))
            .await;
        if reply.status == 429 {
            limited = Some(reply);
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let limited = limited.expect("a 429 within 20 requests");
    assert_eq!(limited.kind(), "rate_limited");
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!(retry_after >= 1);
    assert!(limited.json()["retry_after_ms"]
        .as_u64()
        .is_some_and(|ms| ms >= 1));
    let quiet = node.token(Role::Customer, OTHER_CUSTOMER);
    must(
        &node
            .http
            .get(&format!("/v1/wallets/{OTHER_CUSTOMER}"), Some(&quiet))
            .await,
        200,
    );
    node.server.stop(STOP_GRACE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_the_openapi_document_describe_what_is_served() {
    let node = TestNode::start(|_| {}).await;
    let health = node.http.get("/health", None).await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));
    assert_eq!(node.http.get("/ready", None).await.status, 200);
    deposit(&node, CUSTOMER, "dep-1", 100).await;
    let metrics = node.http.get("/metrics", None).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for needle in [
        "fixit_requests_total{op=\"deposit\",outcome=\"ok\"}",
        "fixit_request_seconds_bucket{op=\"deposit\"",
        "fixit_live_actors{kind=\"wallet\"} 1",
        "fixit_group_commit_flushes_total",
        "fixit_pushes_dropped_total",
        "fixit_websockets_open 0",
        "fixit_commands_inflight",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }

    let document = must(&node.http.get("/openapi.json", None).await, 200);
    assert_eq!(document["openapi"], "3.1.0");
    assert!(
        document["components"]["schemas"]["ErrorBody"]["properties"]["error"]["enum"].is_array()
    );
    let admin = node.admin();
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "{}", paths.len());
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let concrete = path.replace("{id}", "1");
            let bearer = format!("Bearer {admin}");
            let reply = node
                .http
                .send(
                    &method.to_uppercase(),
                    &concrete,
                    &[("Authorization", &bearer)],
                    Some(b"{}"),
                )
                .await;
            let unrouted = reply.status == 405
                || (reply.status == 404
                    && reply.json()["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("route ")));
            assert!(
                !unrouted,
                "{method} {path} is documented but not served: {}",
                reply.text()
            );
        }
    }
    node.server.stop(STOP_GRACE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_when_valid_and_generated_otherwise() {
    let node = TestNode::start(|_| {}).await;
    let echoed = node
        .http
        .send(
            "GET",
            "/v1/wallets/1",
            &[("x-request-id", "client-id-42")],
            None,
        )
        .await;
    assert_eq!(echoed.status, 401);
    assert_eq!(echoed.header("x-request-id"), Some("client-id-42"));
    assert_eq!(
        echoed.json()["request_id"],
        "client-id-42",
        "the error body names it too"
    );
    let generated = node.http.get("/health", None).await;
    let id = generated
        .header("x-request-id")
        .expect("a generated id")
        .to_owned();
    assert!(!id.is_empty() && id.len() <= 64);
    let again = node.http.get("/health", None).await;
    assert_ne!(
        again.header("x-request-id"),
        Some(id.as_str()),
        "ids differ"
    );
    let too_long = "x".repeat(65);
    let replaced = node
        .http
        .send("GET", "/health", &[("x-request-id", &too_long)], None)
        .await;
    let replacement = replaced.header("x-request-id").expect("an id");
    assert_ne!(replacement, too_long);
    assert!(replacement.len() <= 64);
    node.server.stop(STOP_GRACE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_need_a_token_are_counted_and_close_when_the_server_stops() {
    let node = TestNode::start(|_| {}).await;
    let refused = WebSocket::connect(node.http.addr, "/v1/events", &[])
        .await
        .err()
        .expect("no token, no socket");
    assert_eq!(
        (refused.status, refused.kind().as_str()),
        (401, "unauthorized")
    );
    let admin = node.admin();
    // Admins hear zone events (docs/GEOFENCES.md).
    let zone_events = WebSocket::connect(node.http.addr, &format!("/v1/events?token={admin}"), &[])
        .await
        .expect("an admin's socket of zone events");
    drop(zone_events);
    let not_upgrade = node
        .http
        .get(
            &format!("/v1/events?token={}", node.token(Role::Provider, PROVIDER)),
            None,
        )
        .await;
    assert_eq!(
        (not_upgrade.status, not_upgrade.kind().as_str()),
        (400, "bad_request")
    );

    let token = node.token(Role::Provider, PROVIDER);
    let path = format!("/v1/events?token={token}");
    let mut replaced = WebSocket::connect(node.http.addr, &path, &[])
        .await
        .expect("first socket");
    let mut socket = WebSocket::connect(node.http.addr, &path, &[])
        .await
        .expect("second socket");
    assert_eq!(
        replaced.next_frame(PUSH_WAIT).await,
        Some(Frame::Close(Some(1001))),
        "a provider's newer stream ends the older one, which is closed cleanly"
    );
    for _ in 0..500 {
        if node.server.websockets_open() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.server.websockets_open(), 1);
    let metrics = node.http.get("/metrics", None).await.text();
    assert!(metrics.contains("fixit_websockets_open 1"), "{metrics}");
    node.server.stop(STOP_GRACE).await;
    assert_eq!(
        socket.next_frame(PUSH_WAIT).await,
        Some(Frame::Close(Some(1001))),
        "going away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_past_the_configured_bound_are_answered_busy_until_one_closes() {
    let node = TestNode::start(|config| config.server.websockets_max = 2).await;
    let path = |sub| format!("/v1/events?token={}", node.token(Role::Provider, sub));
    let mut first = WebSocket::connect(node.http.addr, &path(PROVIDER), &[])
        .await
        .expect("first socket");
    let _second = WebSocket::connect(node.http.addr, &path(PROVIDER + 1), &[])
        .await
        .expect("second socket");
    let refused = WebSocket::connect(node.http.addr, &path(PROVIDER + 2), &[])
        .await
        .err()
        .expect("the bound is two sockets");
    assert_eq!((refused.status, refused.kind().as_str()), (429, "busy"));
    assert!(refused.header("retry-after").is_some(), "a retry hint");
    first.close().await;
    for _ in 0..500 {
        if node.server.websockets_open() < 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    WebSocket::connect(node.http.addr, &path(PROVIDER + 2), &[])
        .await
        .expect("a closed socket frees its place");
    node.server.stop(STOP_GRACE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_data_needs_an_admin_token_unless_open() {
    let node = TestNode::start(|_| {}).await;
    assert_eq!(node.http.get("/v1/dashboard", None).await.status, 401);
    let customer = node.token(Role::Customer, CUSTOMER);
    let refused = node.http.get("/v1/dashboard", Some(&customer)).await;
    assert_eq!(
        (refused.status, refused.kind().as_str()),
        (403, "forbidden")
    );
    provider_ready(&node, PROVIDER, 52.52, 13.405).await;
    let data = must(
        &node.http.get("/v1/dashboard", Some(&node.admin())).await,
        200,
    );
    assert_eq!(data["node"], "test-node");
    assert_eq!(data["providers"][0]["id"], PROVIDER);
    assert_eq!(data["providers"][0]["status"], "available");
    assert_eq!(data["providers"][0]["lat"], 52.52);
    let page = node.http.get("/", None).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(
        !page.text().contains("http://") && !page.text().contains("https://"),
        "no external resources"
    );
    node.server.stop(STOP_GRACE).await;

    let open = TestNode::start(|config| config.server.dashboard_open = true).await;
    must(&open.http.get("/v1/dashboard", None).await, 200);
    open.server.stop(STOP_GRACE).await;
}
