//! `fixit node` as a real child process: it serves, and on SIGTERM it stops taking
//! requests, flushes and exits 0; what it acknowledged is there after a restart.

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FIXIT: &str = env!("CARGO_BIN_EXE_fixit");

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

/// Starts the node and reads its HTTP address from its JSON log.
fn start(config: &Path) -> (Child, String) {
    let mut child = Command::new(FIXIT)
        .args(["node", "--log-format", "json", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(http) = entry["fields"]["http"].as_str() {
            // Keep draining the log so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return (child, http.to_owned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the node never logged its addresses");
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

fn terminate(mut child: Child) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the node did not stop within 30 s of SIGTERM");
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_acknowledged_deposits_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let (child, http) = start(&config);
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
    let status = terminate(child);
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let (child, http) = start(&config);
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
    assert!(terminate(child).success());
}
