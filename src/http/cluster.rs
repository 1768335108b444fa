//! `GET /cluster`: this node's cluster links, one row per configured peer. Needs an
//! admin token unless the dashboard is open (the same rule as `/v1/dashboard`).

use super::failure::Failure;
use super::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
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
    /// Each configured peer, sorted by name.
    peers: Vec<PeerView>,
    /// Cross-node traffic of this node (absent on a single node).
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic: Option<TrafficView>,
    /// Transfers in this node's outbox, not yet acknowledged by their receivers.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox: Option<OutboxView>,
}

/// The outbox backlog.
#[derive(Debug, Serialize)]
struct OutboxView {
    transfers: u64,
    amount: i64,
}

/// One peer's link, flattened for JSON clients.
#[derive(Debug, Serialize)]
struct PeerView {
    name: String,
    addr: SocketAddr,
    /// `Idle`, `Connecting`, `Up` or `Down`.
    state: &'static str,
    rtt_ms: Option<u64>,
    /// While down: since when, in ms since the Unix epoch.
    since_ms: Option<u64>,
    /// While down: the latest failure.
    last_error: Option<String>,
}

impl From<PeerState> for PeerView {
    fn from(peer: PeerState) -> PeerView {
        let (state, since_ms, last_error) = match peer.state {
            LinkState::Idle => ("Idle", None, None),
            LinkState::Connecting => ("Connecting", None, None),
            LinkState::Up => ("Up", None, None),
            LinkState::Down {
                since_ms,
                last_error,
            } => ("Down", Some(since_ms), Some(last_error)),
        };
        PeerView {
            name: peer.name,
            addr: peer.addr,
            state,
            rtt_ms: peer.rtt_ms,
            since_ms,
            last_error,
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
        Some(cluster) => ClusterView {
            traffic: Some(cluster.traffic()),
            outbox,
            node: cluster.name.clone(),
            cluster: true,
            peers: cluster
                .peer_states()
                .into_iter()
                .map(PeerView::from)
                .collect(),
        },
        None => ClusterView {
            node: state.node_id().to_owned(),
            cluster: false,
            peers: Vec::new(),
            traffic: None,
            outbox: None,
        },
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response())
}
