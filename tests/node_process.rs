//! `fixit node` as a real child process: it serves, and on SIGTERM it stops taking
//! requests, flushes and exits 0; what it acknowledged is there after a restart.

#![cfg(unix)]

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

/// A client whose node was killed with SIGKILL learns at its next call, once the
/// node is back on the same port, that its connection is gone: the restarted
/// process answers the old connection with a stateless reset (its reset key is
/// derived from the node's key, the same after a restart), rather than the
/// client waiting out the idle timeout.
#[tokio::test]
async fn a_client_of_a_killed_node_is_reset_by_the_restarted_node() {
    let dir = tempfile::tempdir().unwrap();
    let quic = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = write_config_at(dir.path(), &quic.to_string());
    let node = NodeProcess::start(&config);
    let customer = token(&config, "customer", "7");
    let cert = dir.path().join("data/client-tls-cert.pem");
    let connector = fixit_sdk::Connector::new(&cert, "127.0.0.1:0".parse().unwrap()).unwrap();
    let client = connector.connect(quic, &customer).await.unwrap();
    use fixit_sdk::Commands;
    match client.balance(7).await {
        Ok(_) => {}
        Err(error) => assert_eq!(error.kind(), "not_found", "{error}"),
    }
    node.kill9();
    let node = NodeProcess::start(&config);
    let error = client.balance(7).await.unwrap_err();
    assert_eq!(error.kind(), "unavailable", "{error}");
    let reason = client.connection().close_reason();
    assert_eq!(
        reason,
        Some(quinn::ConnectionError::Reset),
        "the old connection ends by a stateless reset"
    );
    let again = connector.connect(quic, &customer).await.unwrap();
    match again.balance(7).await {
        Ok(_) => {}
        Err(error) => assert_eq!(
            error.kind(),
            "not_found",
            "a new connection is served: {error}"
        ),
    }
    assert!(node.terminate().success());
}
