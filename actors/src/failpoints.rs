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
//!   node of several in one process fails alone (`return(panic@b)`);
//! - then, at an entity actor's handler, `/N`: only entities whose id is a multiple
//!   of N (`return(panic@b/4)`: a quarter of node b's entities), so a chaos run can
//!   compare the entities under fault with the others (containment).
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
    (
        STORE_IDEMPOTENCY,
        "drop (a deliberately broken build, for the checker's own test)",
    ),
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
/// A ledger operation is about to look up its idempotency key (`drop`: the look-up
/// is skipped, so a retry applies twice). Never armed by a chaos scenario: it is
/// the deliberately broken build the invariant checker must catch. The store does
/// not know its node: this point takes no `@NODE`. With replicated wallets the
/// look-up runs in each replica's state machine, at its own moment: armed by
/// the clock, it makes replicas diverge, so the checker's test runs it on
/// wallets not replicated.
pub const STORE_IDEMPOTENCY: &str = "actors::store::idempotency";
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
    check_entity(name, node, None)
}

/// [`check`] at an entity actor's handler: an armed `/N` filter fires only for
/// entities whose id is a multiple of N.
#[cfg(feature = "failpoints")]
pub fn check_entity(name: &str, node: &str, entity: Option<u64>) -> Option<Fault> {
    let fault = fail::eval(name, |payload| {
        parse_for(payload.as_deref().unwrap_or("panic"), node, entity)
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

/// The fault armed at an entity's failpoint: never, in this build.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn check_entity(_name: &str, _node: &str, _entity: Option<u64>) -> Option<Fault> {
    None
}

/// Arms failpoint `name` with `fail` actions, e.g. `"3*return(drop@c)"` (tests;
/// node processes read `FAILPOINTS`). Refuses an unknown name or bad actions.
#[cfg(feature = "failpoints")]
pub fn arm(name: &str, actions: &str) -> Result<(), String> {
    validate(name, actions)?;
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
    parse_for(payload, node, None)
}

/// Reads `FAULT[@NODE][/N]` for entity `entity` of node `node`; `None` when the
/// fault is for another node or entity. A `/N` filter where there is no entity, or
/// an N of 0, panics like a typo.
pub fn parse_for(payload: &str, node: &str, entity: Option<u64>) -> Option<Fault> {
    let spec = read_spec(payload, entity.is_some()).unwrap_or_else(|why| panic!("{why}"));
    let other_node = spec.node.is_some_and(|target| target != node);
    let other_entity = matches!((spec.modulus, entity), (Some(m), Some(id)) if id % m != 0);
    (!other_node && !other_entity).then_some(spec.fault)
}

/// A parsed `FAULT[@NODE][/N]`.
struct Spec<'a> {
    fault: Fault,
    node: Option<&'a str>,
    modulus: Option<u64>,
}

fn read_spec(payload: &str, entity_point: bool) -> Result<Spec<'_>, String> {
    let (rest, modulus) = match payload.split_once('/') {
        Some((rest, modulus)) => match modulus.trim().parse::<u64>() {
            Ok(modulus) if modulus > 0 && entity_point => (rest, Some(modulus)),
            _ => {
                return Err(format!(
                    "failpoint fault {payload:?}: /N needs an entity actor's failpoint and N > 0"
                ))
            }
        },
        None => (payload, None),
    };
    let (fault, node) = match rest.split_once('@') {
        Some((fault, target)) => (fault.trim(), Some(target.trim())),
        None => (rest.trim(), None),
    };
    let fault = match fault {
        "panic" => Fault::Panic,
        "error" => Fault::Error,
        "drop" => Fault::Drop,
        delay => match delay.strip_prefix("delay=").map(str::parse::<u64>) {
            Some(Ok(ms)) => Fault::Delay(Duration::from_millis(ms)),
            _ => {
                return Err(format!(
                    "failpoint fault {payload:?}: expected panic, error, drop or delay=MS, optionally @NODE"
                ))
            }
        },
    };
    Ok(Spec {
        fault,
        node,
        modulus,
    })
}

/// Checks `fail` actions for failpoint `name` before arming them: every
/// `return(...)` payload must read as a fault (a typo would otherwise panic in the
/// node at the first hit), `/N` only at entity handlers.
pub fn validate(name: &str, actions: &str) -> Result<(), String> {
    let entity_point = [WALLET_HANDLE, PROVIDER_HANDLE, JOB_HANDLE, SESSION_HANDLE].contains(&name);
    if !CATALOGUE.iter().any(|(known, _)| *known == name) {
        return Err(format!("unknown failpoint {name:?}"));
    }
    let mut returns = 0;
    for action in actions.split("->") {
        let Some((_, payload)) = action.split_once("return(") else {
            continue;
        };
        let payload = payload
            .strip_suffix(')')
            .ok_or_else(|| format!("failpoint {name}: unclosed return( in {actions:?}"))?;
        read_spec(payload, entity_point)?;
        returns += 1;
    }
    if returns == 0 {
        return Err(format!(
            "failpoint {name}: actions {actions:?} name no return(FAULT)"
        ));
    }
    Ok(())
}

/// Panics if failpoint `name` asks for it on `node` (services).
pub fn panic_point(name: &str, node: &str) {
    if check(name, node) == Some(Fault::Panic) {
        panic!("failpoint {name}: injected panic on node {node}");
    }
}

/// Panics if the entity handler failpoint `name` asks for it for entity `id`.
pub fn entity_panic_point(name: &str, node: &str, id: u64) {
    if check_entity(name, node, Some(id)) == Some(Fault::Panic) {
        panic!("failpoint {name}: injected panic in entity {id} on node {node}");
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
    fn an_entity_filter_picks_one_entity_in_n() {
        assert_eq!(parse_for("panic/4", "a", Some(8)), Some(Fault::Panic));
        assert_eq!(parse_for("panic/4", "a", Some(9)), None);
        assert_eq!(parse_for("panic@a/4", "a", Some(12)), Some(Fault::Panic));
        assert_eq!(parse_for("panic@b/4", "a", Some(12)), None);
        assert_eq!(parse_for("panic@a", "a", Some(7)), Some(Fault::Panic));
    }

    #[test]
    fn actions_are_checked_before_they_are_armed() {
        assert!(validate(WALLET_HANDLE, "20%return(panic@b/4)").is_ok());
        assert!(validate(STORE_APPLY, "3*return(delay=20)->return(error)").is_ok());
        assert!(
            validate(STORE_APPLY, "return(error/4)").is_err(),
            "no entity"
        );
        assert!(validate(STORE_APPLY, "return(eror)").is_err());
        assert!(validate(STORE_APPLY, "panic").is_err(), "no return(...)");
        assert!(validate("actors::nowhere::x", "return(error)").is_err());
    }

    #[test]
    #[should_panic(expected = "/N needs an entity")]
    fn an_entity_filter_without_an_entity_is_loud() {
        let _ = parse_for("error/4", "a", None);
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
