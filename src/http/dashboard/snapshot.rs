//! What the dashboard shows, read from the node: providers with positions, recent
//! jobs, counters and, in a cluster, the links to every peer with this node's
//! cross-node traffic and outbox backlog.

use crate::http::cluster::PeerView;
use fixit_actors::error::CoreResult;
use fixit_actors::job::Job;
use fixit_actors::provider::{Provider, ProviderStatus};
use fixit_actors::Node;
use fixit_cluster::shards::{ShardView, ViewDepth};
use fixit_cluster::{ClusterStatus, TrafficView};
use fixit_protocol::area::{AreaList, WorkArea};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// Most providers one snapshot lists (lowest ids first).
pub(crate) const DASHBOARD_PROVIDERS_MAX: usize = 2_000;

/// Most jobs one snapshot lists (newest first).
pub(crate) const DASHBOARD_JOBS_MAX: usize = 200;

/// The answer of `GET /v1/dashboard`.
#[derive(Debug, Serialize)]
pub(crate) struct Snapshot {
    node: String,
    providers: Vec<ProviderView>,
    jobs: Vec<JobView>,
    counters: Counters,
    /// `None` on a single node.
    cluster: Option<ClusterPanel>,
    /// Service areas and zones (GeoJSON geometries), drawn on the map.
    areas: AreaList,
    /// Providers' work areas (at most [`DASHBOARD_PROVIDERS_MAX`]).
    work_areas: Vec<WorkAreaView>,
}

#[derive(Debug, Serialize)]
struct WorkAreaView {
    provider: u64,
    area: WorkArea,
}

/// This node in its cluster.
#[derive(Debug, Serialize)]
struct ClusterPanel {
    /// This node's cluster name.
    node: String,
    /// Every known peer, sorted by name.
    peers: Vec<PeerView>,
    traffic: TrafficView,
    outbox: OutboxBacklog,
    /// The replicated wallet shards held here: leader, term, applied index,
    /// followers' lag (empty unless wallets are replicated).
    shards: Vec<ShardView>,
}

/// Transfers waiting in this node's outbox for their receivers' acknowledgement.
#[derive(Debug, Serialize)]
struct OutboxBacklog {
    transfers: u64,
    amount: i64,
}

#[derive(Debug, Serialize)]
struct ProviderView {
    id: u64,
    status: &'static str,
    job: Option<u64>,
    lat: Option<f64>,
    lon: Option<f64>,
    skills: Vec<String>,
}

#[derive(Debug, Serialize)]
struct JobView {
    id: u64,
    customer: u64,
    provider: Option<u64>,
    status: &'static str,
    skill: String,
    lat: f64,
    lon: f64,
    price: i64,
    created_ms: u64,
}

#[derive(Debug, Serialize)]
struct Counters {
    jobs_by_status: BTreeMap<&'static str, u64>,
    live: BTreeMap<&'static str, usize>,
    restarts: BTreeMap<&'static str, u64>,
    pushes_sent: u64,
    pushes_dropped: u64,
    websockets_open: usize,
    bookings_outside_service_area: u64,
    offers_across_regions: u64,
    pushes_forwarded: u64,
    pushes_forward_dropped: u64,
    zone_events: u64,
}

/// Reads a snapshot (blocking: scans storage).
pub(crate) fn take(
    node: &Node,
    node_id: String,
    websockets_open: usize,
    cluster: Option<&ClusterStatus>,
) -> CoreResult<Snapshot> {
    let providers = node
        .providers_snapshot(DASHBOARD_PROVIDERS_MAX)?
        .iter()
        .map(provider_view)
        .collect();
    let jobs = node
        .recent_jobs(DASHBOARD_JOBS_MAX)?
        .iter()
        .map(job_view)
        .collect();
    Ok(Snapshot {
        node: node_id,
        providers,
        jobs,
        counters: counters(node, websockets_open)?,
        cluster: cluster
            .map(|status| cluster_panel(node, status))
            .transpose()?,
        areas: node.areas().list(),
        work_areas: node
            .work_areas(DASHBOARD_PROVIDERS_MAX)
            .into_iter()
            .map(|(provider, area)| WorkAreaView {
                provider: provider.0,
                area,
            })
            .collect(),
    })
}

fn cluster_panel(node: &Node, status: &ClusterStatus) -> CoreResult<ClusterPanel> {
    let (transfers, amount) = node.outbox_backlog()?;
    Ok(ClusterPanel {
        node: status.name.clone(),
        peers: status
            .peer_states()
            .into_iter()
            .map(PeerView::from)
            .collect(),
        traffic: status.traffic(),
        shards: status.shards(ViewDepth::Raft),
        outbox: OutboxBacklog {
            transfers,
            amount: i64::try_from(amount).unwrap_or(i64::MAX),
        },
    })
}

fn counters(node: &Node, websockets_open: usize) -> CoreResult<Counters> {
    let live = node.live();
    let stats = node.stats();
    Ok(Counters {
        jobs_by_status: node.jobs_by_status()?,
        live: BTreeMap::from([
            ("wallets", live.wallets),
            ("providers", live.providers),
            ("jobs", live.jobs),
            ("sessions", live.sessions),
        ]),
        restarts: stats.restarts(),
        pushes_sent: stats.pushes_sent.load(Ordering::Relaxed),
        pushes_dropped: stats.pushes_dropped.load(Ordering::Relaxed),
        websockets_open,
        bookings_outside_service_area: stats.bookings_outside_service_area.load(Ordering::Relaxed),
        offers_across_regions: stats.offers_across_regions.load(Ordering::Relaxed),
        pushes_forwarded: stats.pushes_forwarded.load(Ordering::Relaxed),
        pushes_forward_dropped: stats.pushes_forward_dropped.load(Ordering::Relaxed),
        zone_events: stats.zone_events.load(Ordering::Relaxed),
    })
}

fn provider_view(provider: &Provider) -> ProviderView {
    let (status, job) = match provider.status {
        ProviderStatus::Offline => ("offline", None),
        ProviderStatus::Available => ("available", None),
        ProviderStatus::Offered(job, _) => ("offered", Some(job.0)),
        ProviderStatus::Busy(job) => ("busy", Some(job.0)),
    };
    ProviderView {
        id: provider.id.0,
        status,
        job,
        lat: provider.location.map(|at| at.lat()),
        lon: provider.location.map(|at| at.lon()),
        skills: provider
            .skills
            .iter()
            .map(|skill| skill.as_str().to_owned())
            .collect(),
    }
}

fn job_view(job: &Job) -> JobView {
    JobView {
        id: job.id.0,
        customer: job.customer.0,
        provider: job.status.provider().map(|provider| provider.0),
        status: job.status.name(),
        skill: job.request.skill.as_str().to_owned(),
        lat: job.request.location.lat(),
        lon: job.request.location.lon(),
        price: job.request.price,
        created_ms: job.created_ms,
    }
}
