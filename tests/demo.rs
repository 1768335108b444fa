//! The README's first command, short: `fixit demo` runs the simulated city against
//! a real three-node cluster on loopback (real QUIC links, real sled), completes
//! jobs on every node, pays across nodes and reports every invariant true.

use std::process::Command;

#[test]
fn demo_completes_jobs_across_three_nodes_and_reports_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let status = Command::new(env!("CARGO_BIN_EXE_fixit"))
        .args([
            "demo",
            "--duration-s",
            "6",
            "--providers",
            "60",
            "--customers",
            "40",
            "--http-listen",
            "127.0.0.1:0",
            "--quic-listen",
            "127.0.0.1:0",
        ])
        .arg("--report")
        .arg(&report)
        .status()
        .unwrap();
    assert!(status.success(), "fixit demo exited with {status}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(report["jobs_requested"].as_u64().unwrap() > 0, "{report}");
    assert!(report["jobs_completed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["payments_ok"], report["jobs_completed"], "{report}");
    assert!(
        report["cross_node_payments"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["errors"], 0, "{report}");
    // The seeded city books some spots outside the service area, and through
    // node a for jobs held by b and c, whose events come back to a.
    assert!(
        report["bookings_outside_service_area"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["pushes_forwarded"].as_u64().unwrap() > 0, "{report}");
    let nodes = report["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b", "c"], "{report}");
    for node in nodes {
        assert!(
            !node["jobs_by_status"].as_object().unwrap().is_empty(),
            "bookings through a reach every owner: {node}"
        );
        assert_eq!(node["outbox_transfers"], 0, "{node}");
    }
    let invariants = report["invariants"].as_object().unwrap();
    for name in [
        "audit_holds_a",
        "audit_holds_b",
        "audit_holds_c",
        "cluster_conservation",
        "outboxes_empty_after_settling",
        "payments_exact_per_completed_job",
        "offers_inside_work_areas",
    ] {
        assert!(
            invariants.contains_key(name),
            "no invariant {name}: {report}"
        );
    }
    for (name, held) in invariants {
        assert_eq!(held, true, "invariant {name}: {report}");
    }
}

/// `--kill-node-at-s`: node b is stopped midway and started again from its data
/// dir; the wallet shards get leaders again, b catches up, and every invariant
/// holds at the end. Behaviour only: no timing is asserted.
#[test]
fn demo_stops_a_node_midway_brings_it_back_and_keeps_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_fixit"))
        .args([
            "demo",
            "--duration-s",
            "25",
            "--kill-node-at-s",
            "5",
            "--down-s",
            "4",
            "--providers",
            "60",
            "--customers",
            "40",
            "--http-listen",
            "127.0.0.1:0",
            "--quic-listen",
            "127.0.0.1:0",
        ])
        .arg("--log-file")
        .arg(dir.path().join("demo.log"))
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fixit demo exited with {}: {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("node b stopped (in-process abrupt stop)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("node b back, started again from its data dir"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every wallet shard has a leader again"),
        "{stdout}"
    );
    assert!(stdout.contains("node b's shards caught up"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let failover = &report["failover"];
    assert_eq!(failover["node"], "b", "{report}");
    assert!(
        failover["leader_again_s"].as_f64().is_some_and(|s| s > 0.0),
        "{report}"
    );
    assert!(
        failover["calls_failed_while_down"].as_u64().is_some(),
        "{report}"
    );
    assert!(report["jobs_completed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["payments_ok"], report["jobs_completed"], "{report}");
    let invariants = report["invariants"].as_object().unwrap();
    assert!(invariants.contains_key("audit_holds_b"), "{report}");
    for (name, held) in invariants {
        assert_eq!(held, true, "invariant {name}: {report}");
    }
}

#[test]
fn demo_refuses_to_kill_node_a_or_to_end_before_the_node_is_back() {
    let fixit = env!("CARGO_BIN_EXE_fixit");
    let refused = |args: &[&str]| {
        let output = Command::new(fixit)
            .arg("demo")
            .args(args)
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--quic-listen",
                "127.0.0.1:0",
            ])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let a = refused(&["--kill-node-at-s", "5", "--kill-node", "a"]);
    assert!(a.contains("dashboard"), "{a}");
    let late = refused(&["--duration-s", "12", "--kill-node-at-s", "5"]);
    assert!(late.contains("--duration-s 20"), "{late}");
}

#[test]
fn check_config_accepts_the_default_and_names_a_bad_field() {
    let fixit = env!("CARGO_BIN_EXE_fixit");
    let default = Command::new(fixit)
        .args(["check-config", "--config", "config/node.toml"])
        .output()
        .unwrap();
    assert!(
        default.status.success(),
        "{}",
        String::from_utf8_lossy(&default.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string("config/node.toml").unwrap();
    std::fs::write(
        &bad,
        text.replace("entity_inflight_max = 64", "entity_inflight_max = 0"),
    )
    .unwrap();
    let refused = Command::new(fixit)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("limits.entity_inflight_max"),
        "{stderr}"
    );
}

#[test]
fn certs_init_and_node_make_a_ca_and_refuse_bad_names_and_overwrites() {
    let fixit = env!("CARGO_BIN_EXE_fixit");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(fixit)
            .args(args)
            .arg(dir.path())
            .output()
            .unwrap()
    };
    assert!(run(&["certs", "init", "--out"]).status.success());
    assert!(dir.path().join("ca-cert.pem").exists());
    assert!(
        !run(&["certs", "init", "--out"]).status.success(),
        "an existing CA is not overwritten"
    );
    assert!(run(&["certs", "node", "--name", "edge-a", "--dir"])
        .status
        .success());
    assert!(dir.path().join("edge-a-cert.pem").exists());
    let refused = run(&["certs", "node", "--name", "Not_A_Name", "--dir"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Not_A_Name"));
}
