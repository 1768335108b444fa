//! Prometheus text for `/metrics`: the process's `metrics` registry (requests,
//! outcomes, latency histograms) followed by gauges read from the node at scrape time,
//! and the process's resident memory (Linux only: read from `/proc/self/status`).

use crate::api::Api;
use crate::overload::Overload;
use fixit_actors::Node;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

/// Upper bounds of the request latency histogram buckets, in seconds.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder handle, installing the recorder on first use.
/// If another global recorder was installed first, the handle renders nothing of
/// the `metrics` facade (a warning says so) and `/metrics` shows node gauges only.
pub fn prometheus_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets(LATENCY_BUCKETS_S)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "a metrics recorder was already installed: /metrics shows node gauges only"
            );
        }
        handle
    })
}

/// The whole `/metrics` page of `api`'s node with `websockets_open` open sockets.
pub(crate) fn render(api: &Api, websockets_open: usize) -> String {
    let handle = prometheus_handle();
    handle.run_upkeep();
    let mut text = handle.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    render_node(&mut text, api.node(), websockets_open);
    render_overload(&mut text, api.overload());
    render_process_memory(&mut text);
    text
}

/// Path of the kernel's status file of this process (Linux).
const PROC_STATUS_PATH: &str = "/proc/self/status";

/// The process's resident set size now and at its peak, in bytes: `VmRSS` and
/// `VmHWM` of `/proc/self/status`. `None` where that file does not exist.
fn process_memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(PROC_STATUS_PATH).ok()?;
    Some((
        status_kib(&status, "VmRSS:")? * 1024,
        status_kib(&status, "VmHWM:")? * 1024,
    ))
}

/// The value of a `Name:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Resident memory gauges, absent where the platform does not tell.
fn render_process_memory(text: &mut String) {
    let Some((resident, peak)) = process_memory() else {
        return;
    };
    family(
        text,
        "fixit_process_resident_bytes",
        "gauge",
        "Resident set size of the node process (VmRSS).",
    );
    sample(text, "fixit_process_resident_bytes", None, resident);
    family(
        text,
        "fixit_process_resident_peak_bytes",
        "gauge",
        "Peak resident set size of the node process since start (VmHWM).",
    );
    sample(text, "fixit_process_resident_peak_bytes", None, peak);
}

fn render_overload(text: &mut String, overload: &Overload) {
    family(
        text,
        "fixit_runtime_lag_seconds",
        "gauge",
        "Smoothed lateness of a timer on the node's runtime (shedding starts past limits.overload_lag_ms).",
    );
    text.push_str(&format!(
        "fixit_runtime_lag_seconds {}\n",
        overload.lag().as_secs_f64()
    ));
    family(
        text,
        "fixit_requests_shed_total",
        "counter",
        "Requests answered busy because the runtime lagged.",
    );
    sample(text, "fixit_requests_shed_total", None, overload.shed());
}

fn render_node(text: &mut String, node: &Node, websockets_open: usize) {
    let restarts = node.stats().restarts();
    family(
        text,
        "fixit_actor_restarts_total",
        "counter",
        "Actor restarts since start, by kind.",
    );
    for (kind, count) in &restarts {
        sample(
            text,
            "fixit_actor_restarts_total",
            Some(("kind", kind)),
            *count,
        );
    }
    let live = node.live();
    family(
        text,
        "fixit_live_actors",
        "gauge",
        "Live entity actors, by kind.",
    );
    for (kind, count) in [
        ("wallet", live.wallets),
        ("provider", live.providers),
        ("job", live.jobs),
        ("session", live.sessions),
    ] {
        sample(
            text,
            "fixit_live_actors",
            Some(("kind", kind)),
            count as u64,
        );
    }
    let context = node.context();
    let single = |text: &mut String, name: &str, kind: &str, help: &str, value: u64| {
        family(text, name, kind, help);
        sample(text, name, None, value);
    };
    let inflight = u64::from(context.limits.node_inflight());
    single(
        text,
        "fixit_commands_inflight",
        "gauge",
        "Commands in flight on the node.",
        inflight,
    );
    let durability = context.durability.stats();
    let flushes = durability.flushes.load(Ordering::Relaxed);
    let acks = durability.acks.load(Ordering::Relaxed);
    let batch_max = durability.batch_max.load(Ordering::Relaxed);
    single(
        text,
        "fixit_group_commit_flushes_total",
        "counter",
        "Group-commit flushes (fsyncs).",
        flushes,
    );
    single(
        text,
        "fixit_group_commit_acks_total",
        "counter",
        "Acknowledgements released by flushes.",
        acks,
    );
    single(
        text,
        "fixit_group_commit_batch_max",
        "gauge",
        "Most acknowledgements one flush released.",
        batch_max,
    );
    let stats = node.stats();
    let sent = stats.pushes_sent.load(Ordering::Relaxed);
    let dropped = stats.pushes_dropped.load(Ordering::Relaxed);
    single(
        text,
        "fixit_pushes_sent_total",
        "counter",
        "Pushes handed to clients.",
        sent,
    );
    single(
        text,
        "fixit_pushes_dropped_total",
        "counter",
        "Pushes dropped (no listener or full).",
        dropped,
    );
    for (name, help, counter) in [
        (
            "fixit_bookings_outside_service_area_total",
            "Bookings refused: no service area for their skill holds them.",
            &stats.bookings_outside_service_area,
        ),
        (
            "fixit_offers_across_regions_total",
            "Offers made to providers held by another node.",
            &stats.offers_across_regions,
        ),
        (
            "fixit_pushes_forwarded_total",
            "Customer job events sent to the node the customer is connected to.",
            &stats.pushes_forwarded,
        ),
        (
            "fixit_pushes_forward_dropped_total",
            "Customer job events not forwarded (the peer's queue full).",
            &stats.pushes_forward_dropped,
        ),
        (
            "fixit_zone_events_total",
            "Providers entering or leaving a zone.",
            &stats.zone_events,
        ),
    ] {
        single(text, name, "counter", help, counter.load(Ordering::Relaxed));
    }
    let open = websockets_open as u64;
    single(
        text,
        "fixit_websockets_open",
        "gauge",
        "WebSockets open on the HTTP bridge.",
        open,
    );
}

fn family(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(text: &mut String, name: &str, label: Option<(&str, &str)>, value: u64) {
    let _ = match label {
        Some((key, label_value)) => writeln!(text, "{name}{{{key}=\"{label_value}\"}} {value}"),
        None => writeln!(text, "{name} {value}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_kib() {
        let status = "Name:\tfixit\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10_240));
        assert_eq!(status_kib(status, "VmHWM:"), Some(20_480));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_size_and_a_peak() {
        let (resident, peak) = process_memory().expect("/proc/self/status on Linux");
        assert!(resident > 0 && peak >= resident, "{resident} {peak}");
    }
}
