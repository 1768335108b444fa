//! Standard identity against a real node over HTTP: the node's own JSON Web
//! Tokens (HS256) and an external identity provider's (EdDSA and ES256 keys
//! from a JWKS file, chosen by `kid`), and every way a token must be refused
//! with 401: expired, not yet valid, wrong audience or issuer, unknown key id,
//! `alg: none`, and HS256 signed with the provider's public key.

#[path = "http/client.rs"]
mod client;
#[path = "http/harness.rs"]
mod harness;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fixit_actors::config::ExternalAuthSection;
use fixit_edge::auth::{now_s, Role};
use harness::TestNode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISSUER: &str = "https://id.example";
const AUDIENCE: &str = "marketplace";

/// A signing key of the test identity provider and its public JWK.
struct IdpKey {
    kid: &'static str,
    alg: Algorithm,
    signing: EncodingKey,
    jwk: Value,
}

fn ed25519(kid: &'static str) -> IdpKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
    IdpKey {
        kid,
        alg: Algorithm::EdDSA,
        signing: EncodingKey::from_ed_der(&pair.serialize_der()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
        }),
    }
}

fn p256(kid: &'static str) -> IdpKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let point = pair.public_key_raw();
    IdpKey {
        kid,
        alg: Algorithm::ES256,
        signing: EncodingKey::from_ec_der(&pair.serialize_der()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    }
}

fn sign(key: &IdpKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.signing).expect("sign")
}

fn claims(change: Value) -> Value {
    let now = now_s();
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "uid": "7", "roles": "customer",
        "iat": now, "exp": now + 600,
    });
    if let (Some(base), Value::Object(change)) = (claims.as_object_mut(), change) {
        base.extend(change);
    }
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_and_identity_provider_tokens_are_verified_and_bad_ones_get_401() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ed, ec) = (ed25519("ed-2026"), p256("ec-2026"));
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [ed.jwk, ec.jwk] }).to_string()).expect("jwks");
    let node = TestNode::start(|config| {
        config.auth.external = Some(ExternalAuthSection {
            jwks_file: jwks.clone(),
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            role_claim: "roles".to_owned(),
            subject_claim: "uid".to_owned(),
        });
    })
    .await;
    let wallet = "/v1/wallets/7";
    let status_with = |token: String| {
        let node = &node;
        async move {
            let reply = node
                .http
                .send(
                    "GET",
                    wallet,
                    &[("Authorization", &format!("Bearer {token}"))],
                    None,
                )
                .await;
            (reply.status, reply.text())
        }
    };
    let served = |(status, text): (u16, String)| {
        assert!(status == 200 || status == 404, "served: {status} {text}");
    };
    served(status_with(node.token(Role::Customer, 7)).await);
    served(status_with(sign(&ed, &claims(json!({})))).await);
    served(status_with(sign(&ec, &claims(json!({})))).await);
    // Another subject's wallet: the identity provider's subject is the principal.
    let (status, _) = status_with(sign(&ed, &claims(json!({ "uid": "8" })))).await;
    assert_eq!(status, 403, "uid 8 may not read wallet 7");

    let now = now_s();
    let public = URL_SAFE_NO_PAD
        .decode(ed.jwk["x"].as_str().expect("x"))
        .expect("public key");
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some(ed.kid.to_owned());
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(json!({})).to_string())
    );
    let refused = [
        ("expired", sign(&ed, &claims(json!({ "exp": now - 3_600 })))),
        (
            "not yet valid",
            sign(&ed, &claims(json!({ "nbf": now + 3_600 }))),
        ),
        (
            "wrong audience",
            sign(&ec, &claims(json!({ "aud": "elsewhere" }))),
        ),
        (
            "wrong issuer",
            sign(&ec, &claims(json!({ "iss": "https://evil.example" }))),
        ),
        ("unknown kid", {
            let mut stranger = ed25519("someone-else");
            stranger.kid = "someone-else";
            sign(&stranger, &claims(json!({})))
        }),
        ("alg none", none),
        (
            "HS256 with the public key",
            jsonwebtoken::encode(
                &confused,
                &claims(json!({})),
                &EncodingKey::from_secret(&public),
            )
            .expect("sign"),
        ),
        (
            "no role claim",
            sign(&ed, &claims(json!({ "roles": null }))),
        ),
    ];
    for (what, token) in refused {
        let (status, text) = status_with(token).await;
        assert_eq!(status, 401, "{what}: {text}");
        let body: Value = serde_json::from_str(&text).expect("an error body");
        assert_eq!(body["error"], "unauthorized", "{what}");
    }
    node.server.stop(harness::STOP_GRACE).await;
}

/// Admin actions — a deposit, a refused withdrawal, a failpoint arming — are
/// appended to the audit log with the principal, request id, source, fields and
/// outcome; a customer's own action is not; the file is owner-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_are_appended_to_the_audit_log() {
    let node = TestNode::start(|_| {}).await;
    let admin = format!("Bearer {}", node.admin());
    let send = |method: &'static str, path: &'static str, id: &'static str, body: Value| {
        let node = &node;
        let admin = admin.clone();
        async move {
            let text = body.to_string();
            node.http
                .send(
                    method,
                    path,
                    &[("Authorization", admin.as_str()), ("x-request-id", id)],
                    Some(text.as_bytes()),
                )
                .await
                .status
        }
    };
    assert_eq!(
        send(
            "POST",
            "/v1/wallets/7/deposit",
            "audit-1",
            json!({ "key": "k1", "amount": 500 })
        )
        .await,
        200
    );
    assert_eq!(
        send(
            "POST",
            "/v1/wallets/7/withdraw",
            "audit-2",
            json!({ "key": "k2", "amount": 9_000 })
        )
        .await,
        402
    );
    assert_eq!(
        send(
            "PUT",
            "/v1/admin/failpoints",
            "audit-3",
            json!({ "failpoints": { "ledger.apply": "off" } })
        )
        .await,
        if cfg!(feature = "failpoints") {
            200
        } else {
            400
        }
    );
    let customer = node.token(Role::Customer, 7);
    let reply = node.http.get("/v1/wallets/7", Some(&customer)).await;
    assert_eq!(reply.status, 200);

    let path = node
        .config
        .node
        .data_dir
        .join(fixit_edge::audit::AUDIT_FILE);
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
            .collect();
        if lines.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(lines.len(), 3, "three admin actions: {lines:?}");
    assert_eq!(lines[0]["action"], "deposit");
    assert_eq!(lines[0]["request_id"], "audit-1");
    assert_eq!(lines[0]["principal"]["role"], "Admin");
    assert_eq!(lines[0]["fields"]["amount"], 500);
    assert_eq!(lines[0]["outcome"], "ok");
    assert_eq!(lines[0]["source"], "127.0.0.1");
    assert_eq!(lines[1]["action"], "withdraw");
    assert_eq!(lines[1]["outcome"], "insufficient_funds");
    assert_eq!(lines[2]["action"], "arm_failpoints");
    assert_eq!(lines[2]["request_id"], "audit-3");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("audit file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
    }
    node.server.stop(harness::STOP_GRACE).await;
}

/// Wallets belong to a role and a subject: customer 7 and provider 7 have two
/// wallets and neither reaches the other's; a customer with subject 0 reaches its
/// own wallet 0, not the platform's, which only an admin reaches; a subject past
/// the bound is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_belongs_to_one_role_and_subject_and_the_platforms_to_admins() {
    use fixit_actors::ids::{ProviderId, WalletId, PROVIDER_WALLETS, SUBJECT_MAX};
    let node = TestNode::start(|_| {}).await;
    let admin = node.admin();
    let deposit = json!({ "key": "top-up", "amount": 500 });
    let reply = node
        .http
        .post("/v1/wallets/7/deposit", Some(&admin), &deposit)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let provider_wallet = WalletId::from(ProviderId(7)).0;
    assert_eq!(provider_wallet, PROVIDER_WALLETS + 7);

    let customer = node.token(Role::Customer, 7);
    let provider = node.token(Role::Provider, 7);
    let status = |token: String, wallet: u64| {
        let node = &node;
        async move {
            node.http
                .get(&format!("/v1/wallets/{wallet}"), Some(&token))
                .await
                .status
        }
    };
    assert_eq!(status(customer.clone(), 7).await, 200, "the customer's own");
    assert_eq!(status(provider.clone(), 7).await, 403, "not the provider's");
    assert_eq!(status(customer.clone(), provider_wallet).await, 403);
    assert_eq!(
        status(provider.clone(), provider_wallet).await,
        404,
        "the provider's own, unused: another wallet than the customer's"
    );

    let platform = WalletId::PLATFORM.0;
    let zero = node.token(Role::Customer, 0);
    assert_eq!(status(zero.clone(), platform).await, 403);
    let withdraw = node
        .http
        .post(
            &format!("/v1/wallets/{platform}/withdraw"),
            Some(&zero),
            &json!({ "key": "steal", "amount": 1 }),
        )
        .await;
    assert_eq!(withdraw.status, 403, "{}", withdraw.text());
    assert!(
        !withdraw.text().contains(&platform.to_string()) || withdraw.kind() == "forbidden",
        "{}",
        withdraw.text()
    );
    assert_eq!(status(zero, 0).await, 404, "subject 0's own wallet, unused");
    assert_eq!(
        status(admin.clone(), platform).await,
        404,
        "admins reach it"
    );

    let too_big = node.token(Role::Customer, SUBJECT_MAX + 1);
    assert_eq!(status(too_big, SUBJECT_MAX + 1).await, 401);
    let online = node
        .http
        .post(
            &format!("/v1/providers/{}/online", SUBJECT_MAX + 1),
            Some(&admin),
            &json!({ "skills": ["plumbing"] }),
        )
        .await;
    assert_eq!(online.status, 400, "{}", online.text());
    node.server.stop(harness::STOP_GRACE).await;
}
