//! The JSON report of a chaos run: per scenario the faults injected, the
//! operations attempted / acknowledged / failed (with typed errors), the
//! invariants, the acknowledged operations lost, the latency of unaffected
//! entities during the fault against the baseline, and the failovers of
//! replicated wallet shards.

use super::driver::{Calls, Latency, Seen};
use super::failover::{FaultFailover, Percentiles};
use super::membership::MembershipReport;
use super::scenarios::{Scenario, Workload};
use super::shards::CaughtUp;
use crate::checker::CheckOutcome;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Largest share of the unaffected entities' calls during the fault that may go
/// unserved (no answer, `unavailable`, `internal`) for containment to hold: "every
/// other entity keeps serving". A `busy` refusal or a typed answer to the call's
/// own fault (`not_found` of a wallet whose first deposit failed) is service.
pub const CONTAINMENT_FAILED_MAX: f64 = 0.01;

/// Operations of a scenario, over all calls.
#[derive(Debug, Serialize)]
pub struct Operations {
    attempted: u64,
    acknowledged: u64,
    failed: u64,
    /// Per operation.
    by_operation: BTreeMap<&'static str, Calls>,
    /// `operation:error_kind` → count.
    errors: BTreeMap<String, u64>,
}

/// Latencies of the calls on unaffected entities (balances, deposits,
/// locations), and on affected ones for comparison.
#[derive(Debug, Serialize)]
pub struct Containment {
    unaffected_baseline: Latency,
    unaffected_during_fault: Latency,
    affected_during_fault: Latency,
    /// The unaffected entities' calls during the fault.
    unaffected_calls_during_fault: Calls,
    /// The slowest of them (operation, node, entity, when, how long).
    slowest_unaffected_during_fault: Vec<super::driver::SlowCall>,
    /// The first of them that failed, with their errors.
    failed_unaffected_during_fault: Vec<super::driver::FailedCall>,
}

/// What a leader partition did to the leadership of the node cut off.
#[derive(Debug, Serialize)]
pub struct LeaderPartition {
    victim: String,
    /// The shards it led when it was cut off.
    led: Vec<String>,
    /// Those it still said it led, by its own view, just before the heal (a
    /// leader cut off from the majority commits nothing, whatever it believes).
    still_leading_at_heal: Vec<String>,
    /// Heal → it no longer claims the leadership it still claimed at the heal
    /// (`null`: not within the limit).
    stepped_down_ms: Option<u64>,
}

impl LeaderPartition {
    pub(crate) fn new(
        victim: String,
        led: &BTreeSet<u32>,
        still_leading: &BTreeMap<u32, u64>,
        stepped_down_ms: Option<u64>,
    ) -> LeaderPartition {
        LeaderPartition {
            victim,
            led: led.iter().map(|shard| format!("w{shard}")).collect(),
            still_leading_at_heal: still_leading
                .iter()
                .map(|(shard, term)| format!("w{shard} (term {term})"))
                .collect(),
            stepped_down_ms,
        }
    }
}

/// One scenario's result.
#[derive(Debug, Serialize)]
pub struct ScenarioReport {
    pub(crate) scenario: &'static str,
    seed: u64,
    duration_s: u64,
    customers: u64,
    providers: u64,
    /// Replicas of each wallet bucket (1: wallets not replicated).
    replication_factor: u32,
    data_dir: PathBuf,
    /// Fault kind (failpoint name, proxy drop, process kill) → count.
    pub(crate) faults_injected: BTreeMap<String, u64>,
    pub(crate) faults_injected_total: u64,
    operations: Operations,
    /// Invariant → held (the checker's, plus containment and clean stops).
    pub(crate) invariants: BTreeMap<String, bool>,
    /// The first violations of each failed invariant.
    violations: BTreeMap<String, Vec<String>>,
    pub(crate) acked_lost: u64,
    acknowledged: u64,
    /// Fault → first acknowledged write to each shard the victim led (`null`
    /// when no fault took a shard's leader away).
    failover_ms: Option<Percentiles>,
    /// Client calls served outside every failover window, in percent.
    served_pct_outside_failover: Option<f64>,
    /// The same, wallet calls only (regions are not replicated).
    wallet_served_pct_outside_failover: Option<f64>,
    /// Each fault's failover, shard by shard.
    failovers: Vec<FaultFailover>,
    /// Wallet calls that went on to another node (scenarios whose clients move).
    wallet_calls_moved: u64,
    /// Whether every replica caught up before the nodes stopped (`null`: not
    /// replicated).
    replicas_caught_up: Option<CaughtUp>,
    /// leader-partition only.
    #[serde(skip_serializing_if = "Option::is_none")]
    leader_partition: Option<LeaderPartition>,
    /// Partitions, replicated: the shards whose term the cut-off node raised
    /// while cut off (`w<n>: before → after`; empty: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    terms_raised_while_cut_off: Option<Vec<String>>,
    /// Partitions, replicated: the leaders the other nodes had at the heal
    /// that no longer led in the same term 4 s later (empty: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    leaders_deposed_after_heal: Option<Vec<String>>,
    latency_ms: Containment,
    stored: crate::checker::Totals,
    /// What the failure detector did (kills measured, downs declared, healing).
    membership: MembershipReport,
}

/// What a scenario's fault did: the faults injected, by kind, what membership
/// and leadership made of them, and whether the replicas caught up.
pub(crate) struct Injected {
    pub(crate) faults: BTreeMap<String, u64>,
    /// Running nodes that did not answer after the drain (hung).
    pub(crate) unanswering: Vec<String>,
    pub(crate) membership: MembershipReport,
    pub(crate) leader_partition: Option<LeaderPartition>,
    pub(crate) terms_raised: Option<Vec<String>>,
    pub(crate) deposed: Option<Vec<String>>,
    pub(crate) caught_up: Option<CaughtUp>,
    pub(crate) replication_factor: u32,
}

impl ScenarioReport {
    pub(crate) fn new(
        scenario: Scenario,
        workload: &Workload,
        dir: &Path,
        injected: Injected,
        seen: Seen,
        checked: CheckOutcome,
        stopped_cleanly: bool,
    ) -> ScenarioReport {
        let Injected {
            faults: faults_injected,
            unanswering,
            membership,
            leader_partition,
            terms_raised,
            deposed,
            caught_up,
            replication_factor,
        } = injected;
        let total = |pick: fn(&Calls) -> u64| seen.calls.values().map(pick).sum();
        let mut invariants = checked.invariants;
        let unaffected = seen.unaffected_during_fault;
        let served = unaffected.acknowledged > 0
            && unaffected.not_served() as f64
                <= CONTAINMENT_FAILED_MAX * unaffected.attempted as f64;
        invariants.insert("containment".into(), served);
        let mut violations = checked.violations;
        if !served {
            let mut lines = vec![format!(
                "{} of {} calls on unaffected entities were not served during the fault (at most {}% may); {} refused as busy and {} answered with the call's own fault are not counted",
                unaffected.not_served(),
                unaffected.attempted,
                CONTAINMENT_FAILED_MAX * 100.0,
                unaffected.refused,
                unaffected.answered
            )];
            lines.extend(
                seen.failed_unaffected_during_fault
                    .iter()
                    .map(ToString::to_string),
            );
            violations.insert("containment".into(), lines);
        }
        invariants.insert("nodes_stopped_cleanly".into(), stopped_cleanly);
        // Every node still running answered after the drain (none hung).
        invariants.insert("nodes_answering".into(), unanswering.is_empty());
        if !unanswering.is_empty() {
            violations.insert(
                "nodes_answering".into(),
                vec![format!(
                    "{unanswering:?} did not answer /ready after the drain (killed before the check)"
                )],
            );
        }
        // Every kill detected, refused and recovered from; a healed fault back to
        // every member alive.
        invariants.insert("membership_followed".into(), membership.complete());
        invariants.insert(
            "accepted_by_one_provider".into(),
            seen.accepted_twice.is_empty(),
        );
        invariants.insert(
            "retries_replayed".into(),
            seen.retries_answered_differently.is_empty(),
        );
        // Every shard a fault took the leader of was written again within the
        // limit; a partitioned leader gave its leadership up after the heal.
        let stepped_down = leader_partition
            .as_ref()
            .is_none_or(|partition| partition.stepped_down_ms.is_some());
        let failed_over = seen.failover.complete();
        invariants.insert("failover_completed".into(), failed_over && stepped_down);
        if !failed_over || !stepped_down {
            let mut lines: Vec<String> = seen
                .failover
                .failovers
                .iter()
                .map(|failover| format!("{failover:?}"))
                .collect();
            if let Some(partition) = leader_partition.as_ref().filter(|_| !stepped_down) {
                lines.push(format!(
                    "the partitioned leader did not step down: {partition:?}"
                ));
            }
            violations.insert("failover_completed".into(), lines);
        }
        // A cut-off replica that raised its term would depose, once healed,
        // the leader the others kept (openraft 0.9 has no pre-vote; the
        // nodes' own check keeps it from standing); healed, it rejoins its
        // groups as a follower: standing before the kept leader reached it
        // would depose that leader too.
        let partition_checks = [
            (
                "cut_off_node_kept_its_terms",
                &terms_raised,
                "the partitioned node stood for election while cut off",
            ),
            (
                "heal_deposed_no_leader",
                &deposed,
                "leaders lost after the heal",
            ),
        ];
        for (invariant, found, what) in partition_checks {
            let Some(found) = found else {
                continue;
            };
            invariants.insert(invariant.into(), found.is_empty());
            if !found.is_empty() {
                violations.insert(
                    invariant.into(),
                    vec![format!("{what}: {}", found.join(", "))],
                );
            }
        }
        ScenarioReport {
            scenario: scenario.name(),
            seed: workload.seed,
            duration_s: workload.duration_s,
            customers: workload.customers,
            providers: workload.providers,
            replication_factor,
            data_dir: dir.to_owned(),
            faults_injected_total: faults_injected.values().sum(),
            faults_injected,
            operations: Operations {
                attempted: total(|calls| calls.attempted),
                acknowledged: total(|calls| calls.acknowledged),
                failed: total(|calls| calls.failed),
                by_operation: seen.calls,
                errors: seen.errors,
            },
            invariants,
            violations,
            acked_lost: checked.acked_lost,
            acknowledged: checked.totals.acknowledged,
            failover_ms: seen.failover.failover_ms.clone(),
            served_pct_outside_failover: seen.failover.served_pct_outside_failover,
            wallet_served_pct_outside_failover: seen.failover.wallet_served_pct_outside_failover,
            failovers: seen.failover.failovers.clone(),
            wallet_calls_moved: seen.wallet_calls_moved,
            replicas_caught_up: caught_up,
            leader_partition,
            terms_raised_while_cut_off: terms_raised,
            leaders_deposed_after_heal: deposed,
            latency_ms: Containment {
                unaffected_baseline: seen.latency_unaffected_baseline,
                unaffected_during_fault: seen.latency_unaffected_during_fault,
                affected_during_fault: seen.latency_affected_during_fault,
                unaffected_calls_during_fault: unaffected,
                slowest_unaffected_during_fault: seen.slowest_unaffected_during_fault,
                failed_unaffected_during_fault: seen.failed_unaffected_during_fault,
            },
            stored: checked.totals,
            membership,
        }
    }

    /// Invariants that failed.
    pub(crate) fn failed(&self) -> Vec<&str> {
        self.invariants
            .iter()
            .filter(|(_, held)| !**held)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// One line for the summary.
    pub(crate) fn line(&self) -> String {
        let failed = self.failed();
        format!(
            "{:<20} faults {:>6}  ops {:>6} acked {:>6} failed {:>5}  acked lost {}  unaffected p50/p99 {:.1}/{:.1} ms (baseline {:.1}/{:.1})  {}",
            self.scenario,
            self.faults_injected_total,
            self.operations.attempted,
            self.operations.acknowledged,
            self.operations.failed,
            self.acked_lost,
            self.latency_ms.unaffected_during_fault.p50_ms,
            self.latency_ms.unaffected_during_fault.p99_ms,
            self.latency_ms.unaffected_baseline.p50_ms,
            self.latency_ms.unaffected_baseline.p99_ms,
            if failed.is_empty() {
                "all invariants hold".to_owned()
            } else {
                format!("FAILED: {}", failed.join(", "))
            },
        ) + &format!("\n{:<20} membership: {}", "", self.membership.targets_line())
            + &format!("\n{:<20} replication: {}", "", self.replication_line())
    }

    /// Failover figures, for the summary.
    fn replication_line(&self) -> String {
        let pct = |value: Option<f64>| value.map_or("-".to_owned(), |pct| format!("{pct:.2}%"));
        let failover = match &self.failover_ms {
            Some(ms) => format!(
                "failover p50/p99/max {}/{}/{} ms over {} shards ({} missed)",
                ms.p50, ms.p99, ms.max, ms.count, ms.missed
            ),
            None => "no failover".to_owned(),
        };
        format!(
            "factor {}, {failover}, served outside failover {} (wallet calls {}), wallet calls moved {}",
            self.replication_factor,
            pct(self.served_pct_outside_failover),
            pct(self.wallet_served_pct_outside_failover),
            self.wallet_calls_moved
        )
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct ChaosReport {
    pub(crate) seed: u64,
    pub(crate) duration_s: u64,
    pub(crate) faults_injected_total: u64,
    pub(crate) invariant_violations: u64,
    pub(crate) acked_lost: u64,
    pub(crate) passed: bool,
    pub(crate) scenarios: Vec<ScenarioReport>,
}

impl ChaosReport {
    pub(crate) fn new(seed: u64, duration_s: u64, scenarios: Vec<ScenarioReport>) -> ChaosReport {
        let violations = scenarios
            .iter()
            .map(|scenario| scenario.failed().len() as u64)
            .sum();
        let acked_lost = scenarios.iter().map(|scenario| scenario.acked_lost).sum();
        ChaosReport {
            seed,
            duration_s,
            faults_injected_total: scenarios.iter().map(|s| s.faults_injected_total).sum(),
            invariant_violations: violations,
            acked_lost,
            passed: violations == 0 && acked_lost == 0,
            scenarios,
        }
    }
}
