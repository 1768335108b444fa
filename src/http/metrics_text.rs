//! Prometheus text for `/metrics`: the process's `metrics` registry (requests,
//! outcomes, latency histograms) followed by gauges read from the node at scrape time.

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

/// The whole `/metrics` page for `node` with `websockets_open` open sockets.
pub(crate) fn render(node: &Node, websockets_open: usize) -> String {
    let handle = prometheus_handle();
    handle.run_upkeep();
    let mut text = handle.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    render_node(&mut text, node, websockets_open);
    text
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
