//! `fixit node` as a real child process: it serves, and on SIGTERM it stops taking
//! requests, flushes and exits 0; what it acknowledged is there after a restart.

#![cfg(unix)]

use fixit_protocol::api::ApiError;
use std::path::Path;
use std::process::Command;

mod process_common;

use process_common::{NodeProcess, FIXIT};

/// The shipped config with every path in `dir` and ephemeral loopback ports.
fn write_config(dir: &Path) -> std::path::PathBuf {
    write_config_at(dir, "127.0.0.1:0")
}

/// The same with the QUIC listener at `quic` (a restart finds it there).
fn write_config_at(dir: &Path, quic: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    let text = std::fs::read_to_string("config/node.toml")
        .unwrap()
        .replace("data/local-1", data.to_str().unwrap())
        .replace("127.0.0.1:4433", quic)
        .replace("127.0.0.1:8080", "127.0.0.1:0");
    let path = dir.join("node.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn token(config: &Path, role: &str, sub: &str) -> String {
    let out = Command::new(FIXIT)
        .args([
            "token", "issue", "--role", role, "--sub", sub, "--ttl-s", "600", "--config",
        ])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_acknowledged_deposits_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let node = NodeProcess::start(&config);
    let http = node.http.clone();
    let admin = token(&config, "admin", "0");
    let customer = token(&config, "customer", "7");
    let client = reqwest::Client::new();
    for n in 0..20 {
        let answer = client
            .post(format!("http://{http}/v1/wallets/7/deposit"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"key": format!("d{n}"), "amount": 100}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    }
    let status = node.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let node = NodeProcess::start(&config);
    let http = node.http.clone();
    let balance: serde_json::Value = client
        .get(format!("http://{http}/v1/wallets/7"))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(balance["available"], 2_000, "{balance}");
    assert!(node.terminate().success());
}

/// A client whose node was killed with SIGKILL follows the restarted node: the
/// restarted process answers the old connection with a stateless reset (its
/// reset key is derived from the node's key, the same after a restart) rather
/// than the client waiting out the idle timeout; a repeatable call (a read)
/// dials again and is served, a call that is not (an accept) fails with
/// `unavailable` and is not sent twice, and the next call dials again.
#[tokio::test]
async fn a_client_of_a_killed_node_follows_the_restarted_node() {
    let dir = tempfile::tempdir().unwrap();
    let quic = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = write_config_at(dir.path(), &quic.to_string());
    let node = NodeProcess::start(&config);
    let customer = token(&config, "customer", "7");
    let provider = token(&config, "provider", "8");
    let cert = dir.path().join("data/client-tls-cert.pem");
    let connector = fixit_sdk::Connector::new(&cert, "127.0.0.1:0".parse().unwrap()).unwrap();
    let client = connector.connect(quic, &customer).await.unwrap();
    let worker = connector.connect(quic, &provider).await.unwrap();
    use fixit_sdk::Commands;
    let served = |answer: Result<fixit_protocol::ledger::Balance, ApiError>| match answer {
        Ok(_) => {}
        Err(error) => assert_eq!(error.kind(), "not_found", "served: {error}"),
    };
    served(client.balance(7).await);
    let first = client.connection().stable_id();
    node.kill9();
    let node = NodeProcess::start(&config);

    served(client.balance(7).await);
    assert_eq!(client.redials(), 1, "the read dialed once more");
    assert_ne!(
        client.connection().stable_id(),
        first,
        "on a new connection"
    );

    let old = worker.connection();
    let error = worker.accept(8, 1).await.unwrap_err();
    assert_eq!(error.kind(), "unavailable", "{error}");
    assert_eq!(
        old.close_reason(),
        Some(quinn::ConnectionError::Reset),
        "the old connection ends by a stateless reset"
    );
    assert_eq!(worker.redials(), 0, "an accept is not sent twice");
    let error = worker.accept(8, 1).await.unwrap_err();
    assert_ne!(
        error.kind(),
        "unavailable",
        "the next call is served: {error}"
    );
    assert_eq!(worker.redials(), 1);
    assert!(node.terminate().success());
}
