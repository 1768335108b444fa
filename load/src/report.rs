//! The end of a run: the JSON report (users, operations, errors by kind with
//! `busy` and `rate_limited` apart, latency percentiles, achieved rates, node peak
//! memory, invariants) and the human summary table.

use super::stats::{is_refusal, Op, Stats, REFUSAL_KINDS};
use super::target::Mode;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// The settings a run was made with.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    pub(crate) transport: &'static str,
    pub(crate) nodes: Vec<String>,
    pub(crate) seed: u64,
    pub(crate) duration_s: u64,
    pub(crate) warmup_s: u64,
    pub(crate) bookings_per_s: f64,
    pub(crate) balances_per_s: f64,
    pub(crate) think_ms: u64,
    pub(crate) source_addresses: u8,
    /// Service areas put before the run (`--areas`).
    pub(crate) areas: u32,
    /// For a spawned node: the limits raised for the run.
    pub(crate) spawned_node_limits: Option<serde_json::Value>,
}

/// How many simulated users there were and how many got going.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Users {
    pub(crate) customers: u64,
    pub(crate) providers: u64,
    pub(crate) customers_connected: u64,
    pub(crate) providers_online: u64,
    pub(crate) customers_funded: u64,
}

/// Phase lengths, in seconds.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Phases {
    pub(crate) setup_s: f64,
    pub(crate) warmup_s: f64,
    pub(crate) measured_s: f64,
    pub(crate) drain_s: f64,
}

#[derive(Serialize)]
struct Counted {
    attempted: u64,
    ok: u64,
}

#[derive(Serialize)]
struct Percentiles {
    count: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

/// Peak RSS: one number for one node, a map per node for a cluster.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum PeakRss {
    One(Option<u64>),
    PerNode(BTreeMap<String, Option<u64>>),
}

/// The JSON report.
#[derive(Serialize)]
pub(crate) struct Report {
    settings: Settings,
    users: Users,
    phases: Phases,
    operations: BTreeMap<&'static str, Counted>,
    errors: BTreeMap<String, u64>,
    errors_by_operation: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// The first message of each operation's error kinds.
    error_examples: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// Errors other than busy and rate-limited: the run fails if this is not 0.
    errors_real: u64,
    latency_ms: BTreeMap<&'static str, Percentiles>,
    /// Successful operations per second inside the measured window.
    rates_per_s: BTreeMap<&'static str, f64>,
    jobs: BTreeMap<&'static str, u64>,
    generator: BTreeMap<&'static str, u64>,
    node_rss_bytes_peak: PeakRss,
    pub(crate) invariants: BTreeMap<&'static str, bool>,
}

/// What the run produced beyond the statistics.
pub(crate) struct Outcome {
    pub(crate) settings: Settings,
    pub(crate) users: Users,
    pub(crate) phases: Phases,
    pub(crate) jobs: BTreeMap<&'static str, u64>,
    pub(crate) generator: BTreeMap<&'static str, u64>,
    pub(crate) node_rss_bytes_peak: PeakRss,
    pub(crate) invariants: BTreeMap<&'static str, bool>,
}

impl Report {
    pub(crate) fn build(stats: &Stats, outcome: Outcome) -> Report {
        let operations = Op::ALL
            .iter()
            .filter(|op| op.is_call())
            .map(|&op| {
                let counted = Counted {
                    attempted: stats.attempted(op),
                    ok: stats.ok_count(op),
                };
                (op.name(), counted)
            })
            .collect();
        let mut errors: BTreeMap<String, u64> = REFUSAL_KINDS
            .iter()
            .map(|kind| ((*kind).to_owned(), 0))
            .collect();
        let mut errors_by_operation: BTreeMap<&'static str, BTreeMap<String, u64>> =
            BTreeMap::new();
        for ((op, kind), count) in stats.errors() {
            *errors.entry(kind.clone()).or_default() += count;
            *errors_by_operation
                .entry(op.name())
                .or_default()
                .entry(kind)
                .or_default() += count;
        }
        let mut error_examples: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
        for ((op, kind), message) in stats.examples() {
            error_examples
                .entry(op.name())
                .or_default()
                .insert(kind, message);
        }
        let errors_real = errors
            .iter()
            .filter(|(kind, _)| !is_refusal(kind))
            .map(|(_, count)| count)
            .sum();
        let latency_ms = Op::ALL
            .iter()
            .map(|&op| (op.name(), percentiles(stats, op)))
            .filter(|(_, found)| found.count > 0)
            .collect();
        let window = outcome.phases.measured_s.max(f64::EPSILON);
        let rates_per_s = Op::ALL
            .iter()
            .filter(|op| op.is_call() && stats.ok_in_window(**op) > 0)
            .map(|&op| (op.name(), round(stats.ok_in_window(op) as f64 / window)))
            .collect();
        let mut generator = outcome.generator;
        generator.insert(
            "arrivals_skipped",
            stats.arrivals_skipped.load(Ordering::Relaxed),
        );
        generator.insert(
            "location_ticks_skipped",
            stats.locations_skipped.load(Ordering::Relaxed),
        );
        let mut jobs = outcome.jobs;
        jobs.insert(
            "offers_received",
            stats.offers_received.load(Ordering::Relaxed),
        );
        jobs.insert(
            "customer_pushes",
            stats.customer_pushes.load(Ordering::Relaxed),
        );
        Report {
            settings: outcome.settings,
            users: outcome.users,
            phases: outcome.phases,
            operations,
            errors,
            errors_by_operation,
            error_examples,
            errors_real,
            latency_ms,
            rates_per_s,
            jobs,
            generator,
            node_rss_bytes_peak: outcome.node_rss_bytes_peak,
            invariants: outcome.invariants,
        }
    }

    /// Errors other than busy and rate-limited.
    pub(crate) fn errors_real(&self) -> u64 {
        self.errors_real
    }

    /// The table printed at the end.
    pub(crate) fn summary(&self) -> String {
        let mut text = String::new();
        let s = &self.settings;
        let _ = writeln!(
            text,
            "fixit load: {:?} over {} ({} node{}), {} customers, {} providers, {} s measured after {} s warm-up, seed {}",
            s.mode,
            s.transport,
            s.nodes.len(),
            if s.nodes.len() == 1 { "" } else { "s" },
            self.users.customers,
            self.users.providers,
            s.duration_s,
            s.warmup_s,
            s.seed
        );
        let _ = writeln!(
            text,
            "\n{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation",
            "attempted",
            "ok",
            "ok/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p999 ms",
            "max ms",
            "samples"
        );
        for op in Op::ALL {
            let counted = self.operations.get(op.name());
            let latency = self.latency_ms.get(op.name());
            if counted.is_none_or(|c| c.attempted == 0) && latency.is_none() {
                continue;
            }
            let (attempted, ok) = counted.map_or(("-".into(), "-".into()), |c| {
                (c.attempted.to_string(), c.ok.to_string())
            });
            let rate = self
                .rates_per_s
                .get(op.name())
                .map_or("-".to_owned(), |rate| format!("{rate:.1}"));
            let cell = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.2}"));
            let _ = writeln!(
                text,
                "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                op.name(),
                attempted,
                ok,
                rate,
                cell(latency.map(|l| l.p50)),
                cell(latency.map(|l| l.p90)),
                cell(latency.map(|l| l.p99)),
                cell(latency.map(|l| l.p999)),
                cell(latency.map(|l| l.max)),
                latency.map_or(0, |l| l.count),
            );
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        let _ = writeln!(
            text,
            "\nerrors: {} (other than busy/rate_limited: {})",
            errors.join(", "),
            self.errors_real
        );
        let jobs: Vec<String> = self.jobs.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(text, "jobs: {}", jobs.join(", "));
        let generator: Vec<String> = self
            .generator
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(text, "generator: {}", generator.join(", "));
        let rss = match &self.node_rss_bytes_peak {
            PeakRss::One(peak) => mib(*peak),
            PeakRss::PerNode(peaks) => peaks
                .iter()
                .map(|(node, peak)| format!("{node} {}", mib(*peak)))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let _ = writeln!(text, "node peak RSS: {rss}");
        let invariants: Vec<String> = self
            .invariants
            .iter()
            .map(|(name, held)| format!("{name} {}", if *held { "ok" } else { "FAILED" }))
            .collect();
        let _ = writeln!(text, "invariants: {}", invariants.join(", "));
        text
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("not reported".to_owned(), |b| {
        format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
    })
}

fn percentiles(stats: &Stats, op: Op) -> Percentiles {
    let histogram = stats.latency(op);
    let ms = |micros: u64| round(micros as f64 / 1_000.0);
    Percentiles {
        count: histogram.len(),
        p50: ms(histogram.value_at_quantile(0.50)),
        p90: ms(histogram.value_at_quantile(0.90)),
        p99: ms(histogram.value_at_quantile(0.99)),
        p999: ms(histogram.value_at_quantile(0.999)),
        max: ms(histogram.max()),
        mean: round(histogram.mean() / 1_000.0),
    }
}

/// Three decimals are plenty for a report.
fn round(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}
