//! HTTP bridge (axum): JSON endpoints for every command, a WebSocket of pushes per
//! principal, the OpenAPI document, `/health`, `/ready`, `/metrics` and the dashboard.
//!
//! Every answer carries an `x-request-id` header (the client's, when valid, else a
//! generated one); every error answer is an [`ErrorBody`](crate::api::ErrorBody).

mod cluster;
mod commands;
mod dashboard;
mod events;
mod extract;
mod failpoints;
mod failure;
mod listener;
mod metrics_text;
mod openapi;
mod operations;
mod request_id;
mod routes;
mod state;

pub use listener::{DescriptorBudget, DESCRIPTORS_RESERVED};
pub use metrics_text::prometheus_handle;
pub use request_id::REQUEST_ID_BYTES_MAX;

use crate::api::Api;
use crate::auth::TokenKey;
use fixit_actors::config::ServerSection;
use fixit_cluster::ClusterStatus;
use state::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Pause between checks for WebSockets still closing during [`HttpServer::stop`].
const STOP_POLL: Duration = Duration::from_millis(10);

/// The HTTP bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address could not be bound.
    #[error("HTTP bridge cannot listen on {address}: {reason}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// The operating system's reason.
        reason: String,
    },
}

/// A running HTTP bridge. Dropping it also begins a graceful shutdown; call
/// [`HttpServer::stop`] to wait for it.
pub struct HttpServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    serving: JoinHandle<()>,
    state: AppState,
}

impl HttpServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// WebSockets open now.
    pub fn websockets_open(&self) -> usize {
        self.state.websockets().open()
    }

    /// Stops accepting, tells WebSocket clients the server is going away, lets
    /// in-flight requests finish, and returns; whatever still runs after `grace`
    /// is aborted.
    pub async fn stop(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.shutdown.send_replace(true);
        let mut serving = self.serving;
        if tokio::time::timeout_at(deadline, &mut serving)
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "HTTP requests still running after the grace period; aborted"
            );
            serving.abort();
        }
        while self.state.websockets().open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(STOP_POLL).await;
        }
    }
}

/// Starts the HTTP bridge for `api` on `config.http_listen`; `cluster` is what
/// `GET /cluster` reports (`None` on a single node).
pub async fn start(
    api: Arc<Api>,
    tokens: TokenKey,
    config: &ServerSection,
    node_id: &str,
    cluster: Option<ClusterStatus>,
) -> Result<HttpServer, HttpError> {
    let bind_failed = |error: std::io::Error| HttpError::Bind {
        address: config.http_listen,
        reason: error.to_string(),
    };
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(bind_failed)?;
    let local_addr = listener.local_addr().map_err(bind_failed)?;
    // Install the recorder now, so requests before the first scrape are counted.
    prometheus_handle();
    let budget = DescriptorBudget::for_server(config);
    let mut config = config.clone();
    if (budget.connections, budget.websockets)
        != (config.http_connections.max, config.websockets_max)
    {
        tracing::warn!(
            descriptors = budget.limit,
            reserved = DESCRIPTORS_RESERVED,
            configured_connections = config.http_connections.max,
            configured_websockets = config.websockets_max,
            connections = budget.connections,
            websockets = budget.websockets,
            "HTTP connection and WebSocket bounds do not fit the descriptor limit; shrunk"
        );
    }
    config.http_connections.max = budget.connections;
    config.http_connections.per_source_max =
        (config.http_connections.per_source_max).min(budget.connections);
    config.websockets_max = budget.websockets;
    let (shutdown, stopping) = watch::channel(false);
    let state = AppState::new(api, tokens, &config, node_id, stopping.clone(), cluster);
    let app = routes::router(state.clone(), &config);
    let gate = listener::Gate::new(listener::ConnectionLimits {
        max: config.http_connections.max,
        per_source_max: config.http_connections.per_source_max,
        header_timeout: Duration::from_millis(config.http_connections.header_timeout_ms),
    });
    let serving = tokio::spawn(listener::serve(listener, app, gate, stopping));
    tracing::info!(
        %local_addr,
        node = node_id,
        connections = config.http_connections.max,
        websockets = config.websockets_max,
        descriptors = budget.limit,
        "HTTP bridge listening"
    );
    Ok(HttpServer {
        local_addr,
        shutdown,
        serving,
        state,
    })
}
