//! What every HTTP handler shares: the API, the token key, settings, the count
//! of open WebSockets and the cluster links' status.

use crate::api::Api;
use crate::auth::TokenKey;
use fixit_actors::config::ServerSection;
use fixit_cluster::ClusterStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Handler state; cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

struct Shared {
    api: Arc<Api>,
    tokens: TokenKey,
    node_id: String,
    dashboard_open: bool,
    websockets: Arc<WebSocketCount>,
    stopping: watch::Receiver<bool>,
    cluster: Option<ClusterStatus>,
    /// The OpenAPI document with this node's configured bounds.
    openapi: serde_json::Value,
}

impl AppState {
    /// The OpenAPI document with this node's bounds.
    pub(crate) fn openapi(&self) -> &serde_json::Value {
        &self.0.openapi
    }

    pub(crate) fn new(
        api: Arc<Api>,
        tokens: TokenKey,
        config: &ServerSection,
        node_id: &str,
        stopping: watch::Receiver<bool>,
        cluster: Option<ClusterStatus>,
    ) -> AppState {
        let openapi = super::openapi::document_for(&api.node().context().config.dispatch);
        AppState(Arc::new(Shared {
            openapi,
            api,
            tokens,
            node_id: node_id.to_owned(),
            dashboard_open: config.dashboard_open,
            websockets: Arc::new(WebSocketCount::new(config.websockets_max as usize)),
            stopping,
            cluster,
        }))
    }

    pub(crate) fn api(&self) -> &Arc<Api> {
        &self.0.api
    }

    pub(crate) fn tokens(&self) -> &TokenKey {
        &self.0.tokens
    }

    pub(crate) fn node_id(&self) -> &str {
        &self.0.node_id
    }

    /// Whether the dashboard's data is served without a token (demo only).
    pub(crate) fn dashboard_open(&self) -> bool {
        self.0.dashboard_open
    }

    pub(crate) fn websockets(&self) -> &Arc<WebSocketCount> {
        &self.0.websockets
    }

    /// The node's cluster links, if it is in a cluster.
    pub(crate) fn cluster(&self) -> Option<&ClusterStatus> {
        self.0.cluster.as_ref()
    }

    /// Becomes true when the server begins to stop.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.0.stopping.clone()
    }
}

/// Open WebSockets, bounded by `server.websockets_max`; more are answered `busy`.
#[derive(Debug)]
pub(crate) struct WebSocketCount {
    open: AtomicUsize,
    max: usize,
}

impl WebSocketCount {
    pub(crate) fn new(max: usize) -> WebSocketCount {
        WebSocketCount {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// WebSockets open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Reserves a place for one more socket, or `None` at the bound.
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<WebSocketSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| WebSocketSlot(self.clone()))
    }
}

/// One counted socket; dropping it frees the place.
pub(crate) struct WebSocketSlot(Arc<WebSocketCount>);

impl Drop for WebSocketSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}
