//! After the run: the invariants the generator can check, the peak memory of each
//! node from its `/metrics`, and (for a spawned node, once stopped) the audit of
//! its stored ledger.

use super::client::UserClient;
use super::sim::{retrying_up_to, Sim, CHECK_TRIES_MAX};
use super::stats::Op;
use anyhow::Context;
use fixit_actors::job::JobStatus;
use fixit_actors::store::Store;
use fixit_sdk::Commands;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// Job status checks in flight at once.
const CHECKS_INFLIGHT_MAX: usize = 64;

/// Bounds of one `/metrics` scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
const SCRAPE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The gauge of a node's peak resident memory.
const PEAK_RSS_GAUGE: &str = "fixit_process_resident_peak_bytes";

/// Whether every job the generator saw completed is stored as completed by the
/// provider that completed it (asked through the admins); returns (checked, wrong).
pub(crate) async fn completed_jobs(sim: &Sim, admins: &[UserClient]) -> (u64, Vec<u64>) {
    let completed = sim.jobs.completed();
    let checks = completed
        .iter()
        .enumerate()
        .map(|(index, &(job, provider))| {
            let admin = &admins[index % admins.len()];
            async move {
                let check = || admin.job(job);
                let status =
                    retrying_up_to(CHECK_TRIES_MAX, &sim.stats, Op::JobStatusCheck, check).await;
                let expected = JobStatus::Completed {
                    provider: fixit_actors::ids::ProviderId(provider),
                };
                match status {
                    Some(found) if found.status == expected => None,
                    _ => Some(job),
                }
            }
        });
    let wrong: Vec<u64> = futures::stream::iter(checks)
        .buffer_unordered(CHECKS_INFLIGHT_MAX)
        .filter_map(std::future::ready)
        .collect()
        .await;
    (completed.len() as u64, wrong)
}

/// Each node's peak resident memory from its `/metrics` (`None`: not reported).
pub(crate) async fn peak_rss(nodes: Vec<(String, SocketAddr)>) -> BTreeMap<String, Option<u64>> {
    let scraped = tokio::task::spawn_blocking(move || {
        nodes
            .into_iter()
            .map(|(name, http)| {
                let peak = scrape(http)
                    .map_err(|error| eprintln!("metrics of node {name}: {error:#}"))
                    .ok()
                    .flatten();
                (name, peak)
            })
            .collect()
    })
    .await;
    scraped.unwrap_or_default()
}

/// `GET /metrics` over plain HTTP/1.1 and the peak-RSS gauge in it.
fn scrape(http: SocketAddr) -> anyhow::Result<Option<u64>> {
    let mut stream = TcpStream::connect_timeout(&http, SCRAPE_TIMEOUT)?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream
        .take(SCRAPE_BYTES_MAX)
        .read_to_string(&mut text)
        .context("reading /metrics")?;
    anyhow::ensure!(
        text.starts_with("HTTP/1.1 200"),
        "/metrics answered {}",
        text.lines().next().unwrap_or("nothing")
    );
    Ok(gauge(&text, PEAK_RSS_GAUGE))
}

/// The value of an unlabelled gauge in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|value| value as u64)
    })
}

/// Audits a stopped node's stored ledger: conservation, no negative balance,
/// ledgers that add up.
pub(crate) async fn audit_store(data_dir: PathBuf, cache_bytes: u64) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&data_dir, cache_bytes)
            .with_context(|| format!("opening {}", data_dir.display()))?;
        let audit = store.audit().context("auditing the ledger")?;
        if !audit.holds() {
            eprintln!("ledger audit failed: {audit:?}");
        }
        Ok(audit.holds())
    })
    .await
    .context("the audit task")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_gauge_is_read_from_prometheus_text() {
        let text = "# HELP fixit_process_resident_peak_bytes Peak.\n\
                    # TYPE fixit_process_resident_peak_bytes gauge\n\
                    fixit_process_resident_bytes 100\n\
                    fixit_process_resident_peak_bytes 2048\n";
        assert_eq!(gauge(text, PEAK_RSS_GAUGE), Some(2_048));
        assert_eq!(gauge("other 1\n", PEAK_RSS_GAUGE), None);
    }
}
