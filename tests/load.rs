//! CI-sized `fixit load --spawn-node` runs as real child processes, over QUIC and
//! over the HTTP bridge: each must end by itself with no errors other than
//! busy/rate-limited, some jobs completed and every invariant holding. Correctness
//! only: no timing is asserted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FIXIT: &str = env!("CARGO_BIN_EXE_fixit");

/// The whole run (setup, 1 s warm-up, 8 s load, drain, checks) ends well within this.
const RUN_WAIT_MAX: Duration = Duration::from_secs(180);

#[test]
fn a_small_spawned_node_run_is_correct() {
    let report = small_run(&[]);
    assert_eq!(report["settings"]["transport"], "quic");
    assert!(report["latency_ms"]["connect"]["count"].as_u64() > Some(0));
}

#[test]
fn a_small_spawned_node_run_over_the_http_bridge_is_correct() {
    let report = small_run(&["--http"]);
    assert_eq!(report["settings"]["transport"], "http");
    let sockets = report["latency_ms"]["subscribe"]["count"].as_u64();
    assert_eq!(sockets, Some(360), "one push WebSocket per user");
}

/// Runs a small load with `extra` arguments and checks what holds on any
/// transport; returns the report.
fn small_run(extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let report_path = dir.path().join("report.json");
    let seed = "42";
    println!("seed {seed}");
    let mut child = Command::new(FIXIT)
        .args([
            "load",
            "--spawn-node",
            "--customers",
            "300",
            "--providers",
            "60",
            "--duration-s",
            "8",
            "--warmup-s",
            "1",
            "--bookings-per-s",
            "20",
            "--balances-per-s",
            "10",
            "--think-ms",
            "200",
            "--seed",
            seed,
            "--quiet",
            "--report",
        ])
        .arg(&report_path)
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("fixit load starts");
    let deadline = Instant::now() + RUN_WAIT_MAX;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fixit load did not end within {RUN_WAIT_MAX:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&report_path).expect("the report is written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON report");
    assert!(status.success(), "fixit load failed: {status}\n{text}");
    assert_eq!(report["errors_real"], 0, "{text}");
    assert_eq!(report["users"]["customers_connected"], 300, "{text}");
    assert_eq!(report["users"]["providers_online"], 60, "{text}");
    let completed = report["jobs"]["completed"]
        .as_u64()
        .expect("completed count");
    assert!(completed > 0, "no job completed: {text}");
    assert_eq!(report["jobs"]["completed_checked"], completed, "{text}");
    let invariants = report["invariants"].as_object().expect("invariants");
    for name in [
        "completed_jobs_stored_completed",
        "single_assignment",
        "every_user_set_up",
        "node_stopped_cleanly",
        "ledger_audit_holds",
    ] {
        assert_eq!(invariants.get(name), Some(&true.into()), "{name}: {text}");
    }
    for op in [
        "book",
        "request_to_offer",
        "request_to_accepted",
        "location_update",
        "deposit",
    ] {
        assert!(
            report["latency_ms"][op]["count"].as_u64() > Some(0),
            "no {op} latencies: {text}"
        );
    }
    assert!(
        report["node_rss_bytes_peak"].as_u64() > Some(0),
        "peak RSS read from the node's metrics: {text}"
    );
    report
}
