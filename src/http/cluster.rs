//! `GET /cluster`: this node's membership and links, one row per known peer. Needs an
//! admin token unless the dashboard is open (the same rule as `/v1/dashboard`).

use super::failure::Failure;
use super::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fixit_cluster::shards::{ShardView, ViewDepth};
use fixit_cluster::TrafficView;
use fixit_cluster::{LinkState, PeerState};
use serde::Serialize;
use std::net::SocketAddr;

/// The answer of `GET /cluster`.
#[derive(Debug, Serialize)]
struct ClusterView {
    /// This node's cluster name (its node id on a single node).
    node: String,
    /// Whether the node is configured into a cluster.
    cluster: bool,
    /// This node's membership incarnation (absent on a single node).
    #[serde(skip_serializing_if = "Option::is_none")]
    incarnation: Option<u64>,
    /// Membership status changes this node has seen (absent on a single node).
    #[serde(skip_serializing_if = "Option::is_none")]
    membership_changes: Option<u64>,
    /// Members this node has declared down so far (absent on a single node).
    #[serde(skip_serializing_if = "Option::is_none")]
    membership_downs: Option<u64>,
    /// Each known peer (seeds and learnt members), sorted by name.
    peers: Vec<PeerView>,
    /// Cross-node traffic of this node (absent on a single node).
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic: Option<TrafficView>,
    /// Transfers in this node's outbox, not yet acknowledged by their receivers.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox: Option<OutboxView>,
    /// The replicated wallet shards this node holds a replica of: leader, term,
    /// applied index, state digest, followers' lag, audit (absent unless wallets
    /// are replicated).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    shards: Vec<ShardView>,
}

/// The outbox backlog.
#[derive(Debug, Serialize)]
struct OutboxView {
    transfers: u64,
    amount: i64,
}

/// One peer as membership and its link see it, flattened for JSON clients (the
/// dashboard shows the same rows).
#[derive(Debug, Serialize)]
pub(crate) struct PeerView {
    name: String,
    /// The address this node reaches it at.
    addr: SocketAddr,
    /// Membership: `alive`, `suspect`, `down`, `left`, or `unknown` (a seed not
    /// heard from yet).
    status: &'static str,
    /// Its incarnation (changes on every start); absent while unknown.
    incarnation: Option<u64>,
    /// Since when it has this status, in ms since the Unix epoch.
    since_ms: Option<u64>,
    /// The link: `Idle`, `Connecting`, `Up` or `Down`.
    state: &'static str,
    /// While the link is down: since when, in ms since the Unix epoch.
    link_down_since_ms: Option<u64>,
    rtt_ms: Option<u64>,
    /// The latest link failure (kept after the link recovers).
    last_error: Option<String>,
    /// When it happened, in ms since the Unix epoch.
    last_error_ms: Option<u64>,
}

impl From<PeerState> for PeerView {
    fn from(peer: PeerState) -> PeerView {
        let (state, link_down_since_ms) = match peer.state {
            LinkState::Idle => ("Idle", None),
            LinkState::Connecting => ("Connecting", None),
            LinkState::Up => ("Up", None),
            LinkState::Down { since_ms, .. } => ("Down", Some(since_ms)),
        };
        PeerView {
            name: peer.name,
            addr: peer.addr,
            status: peer
                .member
                .as_ref()
                .map_or("unknown", |member| member.status.label()),
            incarnation: peer.member.as_ref().map(|member| member.incarnation),
            since_ms: peer.member.as_ref().map(|member| member.since_ms),
            state,
            link_down_since_ms,
            rtt_ms: peer.rtt_ms,
            last_error: peer.last_error,
            last_error_ms: peer.last_error_ms,
        }
    }
}

/// The peers and their links now.
pub(crate) async fn status(
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Response, Failure> {
    super::dashboard::admit_operator_view(&state, &parts, "the cluster status")?;
    let outbox = state
        .api()
        .node()
        .outbox_backlog()
        .ok()
        .map(|(transfers, amount)| OutboxView {
            transfers,
            amount: i64::try_from(amount).unwrap_or(i64::MAX),
        });
    let view = match state.cluster() {
        Some(cluster) => {
            let membership = cluster.membership();
            ClusterView {
                traffic: Some(cluster.traffic()),
                shards: cluster.shards(ViewDepth::WithState),
                outbox,
                node: cluster.name.clone(),
                cluster: true,
                incarnation: Some(membership.me.incarnation),
                membership_changes: Some(membership.changes),
                membership_downs: Some(membership.downs),
                peers: cluster
                    .peer_states()
                    .into_iter()
                    .map(PeerView::from)
                    .collect(),
            }
        }
        None => ClusterView {
            node: state.node_id().to_owned(),
            cluster: false,
            incarnation: None,
            membership_changes: None,
            membership_downs: None,
            peers: Vec::new(),
            traffic: None,
            outbox: None,
            shards: Vec::new(),
        },
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response())
}
