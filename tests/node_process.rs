//! `fixit node` as a real child process: it serves, and on SIGTERM it stops taking
//! requests, flushes and exits 0; what it acknowledged is there after a restart.

#![cfg(unix)]

use std::path::Path;
use std::process::Command;

mod process_common;

use process_common::{NodeProcess, FIXIT};

/// The shipped config with every path in `dir` and ephemeral loopback ports.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    let text = std::fs::read_to_string("config/node.toml")
        .unwrap()
        .replace("data/local-1", data.to_str().unwrap())
        .replace("127.0.0.1:4433", "127.0.0.1:0")
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
