//! OpenAPI conformance: schemathesis (`st`, installed by `.ci/run`; skipped with a
//! message where it is missing) runs every check against `/openapi.json` of a
//! real `fixit node` child process with an admin token and a bounded number of
//! examples, and must report no failure: every schema-valid request is served
//! (or refused for what it means, see `tests/conformance/schemathesis.toml`),
//! every schema-violating one refused, every answer as documented.
//!
//! Left out of the fuzzing, each for a reason: `/v1/events` (a WebSocket
//! upgrade, not a request/response operation; tests/http.rs covers it),
//! `/v1/admin/failpoints` (test builds' fault injection: arming valid failpoints
//! at random would break the node under test; tests/chaos.rs covers it) and
//! `/v1/revocations/*` (revoking at random would revoke the fuzzer's own token;
//! tests/cluster.rs covers them).

mod process_common;

use process_common::{NodeProcess, FIXIT};
use std::path::Path;
use std::process::Command;

/// Examples per operation and phase: bounded so the run takes seconds.
const EXAMPLES: &str = "25";

/// Fixed, so a failure in CI reproduces.
const SEED: &str = "7";

fn schemathesis() -> Option<&'static str> {
    ["st", "schemathesis"].into_iter().find(|name| {
        Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    let text = std::fs::read_to_string("config/node.toml")
        .expect("shipped config")
        .replace("data/local-1", data.to_str().expect("utf-8 path"))
        .replace("127.0.0.1:4433", "127.0.0.1:0")
        .replace("127.0.0.1:8080", "127.0.0.1:0");
    let path = dir.join("node.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

#[test]
fn the_openapi_document_holds_for_every_generated_request() {
    let Some(st) = schemathesis() else {
        eprintln!("schemathesis not installed (python3 -m pip install schemathesis); skipping");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let node = NodeProcess::start(&config);
    let token = Command::new(FIXIT)
        .args([
            "token", "issue", "--role", "admin", "--sub", "0", "--ttl-s", "600",
        ])
        .arg("--config")
        .arg(&config)
        .output()
        .expect("fixit token issue");
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).expect("utf-8");
    let run = Command::new(st)
        .arg("--config-file")
        .arg("tests/conformance/schemathesis.toml")
        .args([
            "run",
            &format!("http://{}/openapi.json", node.http),
            "--checks",
            "all",
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
            // No example database: the same seed generates the same requests
            // on every machine.
            "--generation-database",
            "none",
            "--exclude-path-regex",
            "^/v1/(events|admin/failpoints|revocations/.*)$",
            "--header",
            &format!("Authorization: Bearer {}", token.trim()),
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&run.stdout);
    println!("{report}");
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(node.terminate().success());
}
