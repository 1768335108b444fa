//! Named failpoints for chaos tests, on top of the `fail` crate and compiled only
//! with the `failpoints` cargo feature (without it, [`check`] is an inline `None`).
//!
//! Names are `<crate>::<component>::<point>`; [`CATALOGUE`] lists them all with
//! the faults each one supports (docs/CHAOS.md explains the invariant each one
//! threatens). A failpoint is armed with the `fail` crate's action syntax — in the
//! `FAILPOINTS` environment variable of a node process
//! (`FAILPOINTS='actors::wallet::handle=10%return(panic)'`) or with `fail::cfg` in
//! a test — always with the `return(FAULT)` task, where FAULT is:
//!
//! - `panic`, `error`, `drop`: the point's failure of that kind;
//! - `delay=MS`: sleep that long, then go on;
//! - any of these followed by `@NODE`: only on the node whose id is NODE, so one
//!   node of several in one process fails alone (`return(panic@b)`).
//!
//! The `fail` crate's `P%` and `N*` prefixes give probability and count
//! (`20%return(drop@a)`, `3*return(panic)`).

use std::time::Duration;

/// The fault a failpoint asks for at one hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Panic here (entity actors and services: their supervisor restarts them).
    Panic,
    /// Fail the operation with a typed, retryable error.
    Error,
    /// Lose the message (network points).
    Drop,
    /// Wait this long, then go on.
    Delay(Duration),
}

/// Every failpoint, with the faults it supports.
pub const CATALOGUE: &[(&str, &str)] = &[
    (WALLET_HANDLE, "panic"),
    (PROVIDER_HANDLE, "panic"),
    (JOB_HANDLE, "panic"),
    (SESSION_HANDLE, "panic"),
    (STORE_APPLY, "error, delay"),
    (DURABILITY_FLUSH, "error, delay"),
    (NOTIFIER_PUSH, "panic"),
    (VERIFIER_VERIFY, "panic"),
    (LINK_SEND, "drop, delay"),
    (LINK_RECEIVE, "drop, delay"),
    (OUTBOX_DELIVER, "error, delay"),
];

/// A cross-node call is about to be sent (`drop`: it never leaves).
pub const LINK_SEND: &str = "cluster::link::send";
/// A cross-node call arrived (`drop`: it is served but its reply is lost, so the
/// caller cannot tell whether it applied — the exactly-once case).
pub const LINK_RECEIVE: &str = "cluster::link::receive";
/// An outbox transfer is about to be delivered (`error`: this attempt fails).
pub const OUTBOX_DELIVER: &str = "fixit::outbox::deliver";

/// A wallet actor handles a command.
pub const WALLET_HANDLE: &str = "actors::wallet::handle";
/// A provider actor handles a command.
pub const PROVIDER_HANDLE: &str = "actors::provider::handle";
/// A job actor handles a command.
pub const JOB_HANDLE: &str = "actors::job::handle";
/// A customer session actor handles a command.
pub const SESSION_HANDLE: &str = "actors::session::handle";
/// A ledger operation's sled transaction is about to run.
pub const STORE_APPLY: &str = "actors::store::apply";
/// The group-commit writer is about to flush.
pub const DURABILITY_FLUSH: &str = "actors::durability::flush";
/// The notifier is about to push to a client.
pub const NOTIFIER_PUSH: &str = "actors::notifier::push";
/// The verifier is about to check a proof of work.
pub const VERIFIER_VERIFY: &str = "actors::verifier::verify";

/// The fault armed at failpoint `name` for node `node`, if it fires now (each
/// firing is counted, see [`injected`]).
#[cfg(feature = "failpoints")]
pub fn check(name: &str, node: &str) -> Option<Fault> {
    let fault = fail::eval(name, |payload| {
        parse(payload.as_deref().unwrap_or("panic"), node)
    })
    .flatten();
    if fault.is_some() {
        *INJECTED.lock().entry(name.to_owned()).or_default() += 1;
    }
    fault
}

#[cfg(feature = "failpoints")]
static INJECTED: parking_lot::Mutex<std::collections::BTreeMap<String, u64>> =
    parking_lot::Mutex::new(std::collections::BTreeMap::new());

/// Faults injected so far in this process, by failpoint name (empty without the
/// feature): the chaos report's `faults_injected`.
pub fn injected() -> std::collections::BTreeMap<String, u64> {
    #[cfg(feature = "failpoints")]
    return INJECTED.lock().clone();
    #[cfg(not(feature = "failpoints"))]
    std::collections::BTreeMap::new()
}

/// The fault armed at failpoint `name` for node `node`: never, in this build.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn check(_name: &str, _node: &str) -> Option<Fault> {
    None
}

/// Arms failpoint `name` with `fail` actions, e.g. `"3*return(drop@c)"` (tests;
/// node processes read `FAILPOINTS`). Refuses an unknown name or bad actions.
#[cfg(feature = "failpoints")]
pub fn arm(name: &str, actions: &str) -> Result<(), String> {
    if !CATALOGUE.iter().any(|(known, _)| *known == name) {
        return Err(format!("unknown failpoint {name:?}"));
    }
    fail::cfg(name, actions)
}

/// Disarms failpoint `name`.
#[cfg(feature = "failpoints")]
pub fn disarm(name: &str) {
    fail::remove(name);
}

/// Arms what the `FAILPOINTS` environment variable names (`name=actions;...`),
/// for a node process started by a chaos harness. Without the feature, a set
/// variable is an error: the build could not inject what was asked.
pub fn arm_from_env() -> Result<usize, String> {
    let Ok(spec) = std::env::var("FAILPOINTS") else {
        return Ok(0);
    };
    let entries: Vec<(&str, &str)> = spec
        .split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .split_once('=')
                .ok_or_else(|| format!("FAILPOINTS entry {entry:?}: expected name=actions"))
        })
        .collect::<Result<_, _>>()?;
    #[cfg(feature = "failpoints")]
    for (name, actions) in &entries {
        arm(name, actions)?;
    }
    #[cfg(not(feature = "failpoints"))]
    if !entries.is_empty() {
        return Err(
            "FAILPOINTS is set but this build has no failpoints (build with --features failpoints)"
                .into(),
        );
    }
    Ok(entries.len())
}

/// Reads `FAULT[@NODE]`; `None` when the fault is for another node. An unreadable
/// fault panics: a chaos run with a typo must not silently inject nothing.
pub fn parse(payload: &str, node: &str) -> Option<Fault> {
    let (fault, only_on) = match payload.split_once('@') {
        Some((fault, target)) => (fault.trim(), Some(target.trim())),
        None => (payload.trim(), None),
    };
    if only_on.is_some_and(|target| target != node) {
        return None;
    }
    Some(match fault {
        "panic" => Fault::Panic,
        "error" => Fault::Error,
        "drop" => Fault::Drop,
        delay => match delay.strip_prefix("delay=").map(str::parse::<u64>) {
            Some(Ok(ms)) => Fault::Delay(Duration::from_millis(ms)),
            _ => panic!("failpoint fault {payload:?}: expected panic, error, drop or delay=MS, optionally @NODE"),
        },
    })
}

/// Panics if failpoint `name` asks for it on `node` (entity actors and services).
pub fn panic_point(name: &str, node: &str) {
    if check(name, node) == Some(Fault::Panic) {
        panic!("failpoint {name}: injected panic on node {node}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_read_with_and_without_a_node() {
        assert_eq!(parse("panic", "a"), Some(Fault::Panic));
        assert_eq!(parse("error@a", "a"), Some(Fault::Error));
        assert_eq!(parse("error@b", "a"), None);
        assert_eq!(
            parse("delay=25@a", "a"),
            Some(Fault::Delay(Duration::from_millis(25)))
        );
        assert_eq!(parse("drop", "z"), Some(Fault::Drop));
    }

    #[test]
    #[should_panic(expected = "expected panic, error, drop or delay=MS")]
    fn a_typo_is_loud() {
        let _ = parse("pnaic", "a");
    }

    #[test]
    fn every_catalogued_name_is_crate_component_point() {
        for (name, _) in CATALOGUE {
            assert_eq!(name.split("::").count(), 3, "{name}");
        }
    }
}
