//! The chaos suite, short: every scenario of `fixit chaos` run as the real command
//! (three `fixit node` child processes each, faults injected through failpoints,
//! the fault proxy, SIGKILL and restarts), a few seconds each, and every invariant
//! of its checker asserted from the JSON report. Then the checker on its own, and
//! the deliberately broken build it must catch.
//!
//! The seed is printed; set `FIXIT_CHAOS_SEED` to replay or explore another one.
//! Longer runs: `fixit chaos --scenario all --duration-s 60` (see docs/CHAOS.md).

#![cfg(feature = "failpoints")]

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXIT: &str = env!("CARGO_BIN_EXE_fixit");

/// Seconds of baseline + fault + recovery per scenario in these tests.
const DURATION_S: &str = "6";

fn seed() -> String {
    std::env::var("FIXIT_CHAOS_SEED").unwrap_or_else(|_| "7".to_owned())
}

/// Runs `fixit chaos` with `args` in a fresh dir; returns its output and report.
fn chaos(dir: &Path, args: &[&str]) -> (Output, Value) {
    let seed = seed();
    println!("seed {seed} (FIXIT_CHAOS_SEED replays it)");
    let report = dir.join("report.json");
    let output = Command::new(FIXIT)
        .args([
            "chaos",
            "--quiet",
            "--duration-s",
            DURATION_S,
            "--seed",
            &seed,
        ])
        .arg("--dir")
        .arg(dir.join("run"))
        .arg("--report")
        .arg(&report)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("fixit chaos runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read(&report).expect("the report is written");
    (
        output,
        serde_json::from_slice(&text).expect("the report is JSON"),
    )
}

/// Runs one scenario and asserts every invariant, no acknowledged operation lost,
/// faults actually injected and load actually served.
fn scenario_holds(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = chaos(dir.path(), &["--scenario", name]);
    let scenario = &report["scenarios"][0];
    assert_eq!(scenario["scenario"], name);
    let invariants = scenario["invariants"].as_object().expect("invariants");
    assert!(invariants.len() >= 15, "{invariants:?}");
    for (invariant, held) in invariants {
        assert_eq!(
            held, true,
            "{name}: {invariant} broken: {}",
            scenario["violations"]
        );
    }
    assert_eq!(scenario["acked_lost"], 0);
    let faults = scenario["faults_injected_total"].as_u64().unwrap();
    assert!(faults > 0, "{name}: no fault injected: {scenario}");
    let acknowledged = scenario["operations"]["acknowledged"].as_u64().unwrap();
    assert!(acknowledged > 100, "{name}: too little load: {scenario}");
    assert!(
        scenario["latency_ms"]["unaffected_during_fault"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(output.status.success(), "{name}: {output:?}");
    assert_eq!(report["passed"], true);
}

#[test]
fn panic_storm() {
    scenario_holds("panic-storm");
}

#[test]
fn sled_faults() {
    scenario_holds("sled-faults");
}

#[test]
fn service_crash_loop() {
    scenario_holds("service-crash-loop");
}

#[test]
fn packet_loss() {
    scenario_holds("packet-loss");
}

#[test]
fn partition() {
    scenario_holds("partition");
}

#[test]
fn kill_during_capture() {
    scenario_holds("kill-during-capture");
}

#[test]
fn rolling_restart() {
    scenario_holds("rolling-restart");
}

/// One `kill -9` of a random node, detected by both survivors, refused at once
/// once detected, and recovered from after the restart (`membership_followed`).
#[test]
fn node_kills() {
    scenario_holds("node-kills");
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for item in std::fs::read_dir(&at).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The deliberately broken build: idempotency look-ups skipped during the fault.
/// The retried deposits then apply twice, and the checker must say so — and
/// `fixit chaos check` on the stopped data says the same, without changing it.
#[test]
fn the_checker_catches_a_broken_build_and_reads_only() {
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = chaos(
        dir.path(),
        &[
            "--scenario",
            "packet-loss",
            "--also-arm",
            "actors::store::idempotency=return(drop)",
        ],
    );
    assert!(!output.status.success(), "a broken build must fail the run");
    let scenario = &report["scenarios"][0];
    assert_eq!(scenario["invariants"]["exactly_once_keys"], false);
    assert_eq!(report["passed"], false);
    let twice = scenario["violations"]["exactly_once_keys"][0]
        .as_str()
        .unwrap();
    assert!(twice.contains("applied 2 times as Deposit"), "{twice}");

    // The checker alone on the stopped nodes: the same verdict, nothing changed.
    let run = dir.path().join("run").join("packet-loss");
    let nodes: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|name| format!("{name}={}", run.join(name).display()))
        .collect();
    let before: Vec<_> = ["a", "b", "c"].map(|n| contents(&run.join(n))).into();
    let check = |acknowledged: &Path| {
        let mut command = Command::new(FIXIT);
        command.args(["chaos", "check"]);
        for node in &nodes {
            command.args(["--node", node]);
        }
        command
            .arg("--acknowledged")
            .arg(acknowledged)
            .output()
            .expect("fixit chaos check runs")
    };
    let checked = check(&run.join("acknowledged.json"));
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(!checked.status.success(), "{text}");
    assert!(text.contains("exactly_once_keys        BROKEN"), "{text}");
    assert!(text.contains("conservation             holds"), "{text}");
    let after: Vec<_> = ["a", "b", "c"].map(|n| contents(&run.join(n))).into();
    assert!(before == after, "the checker changed a data dir");
}
