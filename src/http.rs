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
mod metrics_text;
mod openapi;
mod operations;
mod request_id;
mod routes;
mod state;

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
    let (shutdown, stopping) = watch::channel(false);
    let state = AppState::new(api, tokens, config, node_id, stopping.clone(), cluster);
    let app = routes::router(state.clone(), config.http_body_bytes_max as usize);
    let serving = tokio::spawn(serve(listener, app, stopping));
    tracing::info!(%local_addr, node = node_id, "HTTP bridge listening");
    Ok(HttpServer {
        local_addr,
        shutdown,
        serving,
        state,
    })
}

async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stopping: watch::Receiver<bool>,
) {
    let mut stopping = stopping;
    let until_stopped = async move {
        // Also ends when the sender is dropped.
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(error) = axum::serve(listener, service)
        .with_graceful_shutdown(until_stopped)
        .await
    {
        tracing::warn!(%error, "HTTP bridge stopped with an error");
    }
}
