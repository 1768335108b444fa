//! The QUIC client listener: accepts connections (up to a limit), checks each one's
//! hello, then serves one request per stream and push streams through [`Api`].
//! The exchange is described in `docs/PROTOCOL.md`; the messages are in [`wire`].

mod connection;
mod request_ids;

pub use fixit_net::socket::UDP_BUFFER_BYTES;
mod stream;
use fixit_protocol::wire;

use crate::api::Api;
use crate::auth::TokenKey;
use crate::tls::{self, TlsError};
use fixit_actors::codec::FRAME_HEADER_BYTES;
use fixit_actors::config::ServerSection;
use quinn::{Endpoint, IdleTimeout, TransportConfig, VarInt};
use request_ids::RequestIds;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};

pub use fixit_protocol::wire::{IDLE_TIMEOUT_MS, KEEP_ALIVE_INTERVAL_MS};

/// Time a new connection has to send its hello, and a new stream its first frame, in ms.
pub const FIRST_FRAME_TIMEOUT_MS: u64 = 10_000;

/// Full request frames one connection may have in flight at once (flow control):
/// bounds the memory a connection can pin on the node.
pub const CONNECTION_WINDOW_FRAMES: u32 = 8;

/// Time `stop` waits for closed connections to be acknowledged by their peers, in ms.
pub const CLOSE_DRAIN_MS: u64 = 1_000;

/// The listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS certificate or key could not be made, read or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// What every connection and stream task of one listener shares.
struct Shared {
    api: Arc<Api>,
    tokens: TokenKey,
    node_id: String,
    /// Largest request frame body, in bytes (`server.frame_bytes_max`).
    frame_bytes_max: usize,
    ids: RequestIds,
    shutdown: watch::Receiver<bool>,
    /// Never sent on: `stop` waits until every clone of `Shared` (so every task) is gone.
    _alive: mpsc::Sender<()>,
}

/// A running QUIC listener. Dropping it closes the endpoint at once; [`stop`]
/// lets requests in flight finish first.
///
/// [`stop`]: QuicServer::stop
pub struct QuicServer {
    /// One quinn endpoint per UDP socket of the listener (`server.quic_endpoints`).
    endpoints: Vec<Endpoint>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    all_tasks_done: mpsc::Receiver<()>,
}

/// Binds `config.quic_listen` (port 0 picks a free port) with
/// `config.quic_endpoints` sockets, loads or makes the TLS certificate, and serves
/// clients of `api` whose tokens `tokens` verifies.
pub async fn start(
    api: Arc<Api>,
    tokens: TokenKey,
    config: &ServerSection,
) -> Result<QuicServer, ServerError> {
    let certified = tls::load_or_create(&config.tls_cert_file, &config.tls_key_file)?;
    let endpoint_config = fixit_net::tls::endpoint_config(&certified.1);
    let mut server_config = quinn::ServerConfig::with_crypto(tls::server_crypto(certified)?);
    server_config.transport_config(Arc::new(server_transport(config)));
    let bind_error = |source| ServerError::Bind {
        addr: config.quic_listen,
        source,
    };
    let sockets =
        fixit_net::socket::bind_udp_group(config.quic_listen, config.quic_endpoints as usize)
            .map_err(bind_error)?;
    let endpoints = sockets
        .into_iter()
        .map(|socket| {
            Endpoint::new(
                endpoint_config.clone(),
                Some(server_config.clone()),
                socket,
                Arc::new(quinn::TokioRuntime),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(bind_error)?;
    let local_addr = endpoints[0].local_addr().map_err(bind_error)?;
    let (shutdown, shutdown_seen) = watch::channel(false);
    let (alive, all_tasks_done) = mpsc::channel(1);
    let node_id = api.node().context().config.node.id.clone();
    let shared = Arc::new(Shared {
        ids: RequestIds::new(&node_id),
        api,
        tokens,
        node_id,
        frame_bytes_max: config.frame_bytes_max as usize,
        shutdown: shutdown_seen,
        _alive: alive,
    });
    let connections = Arc::new(Semaphore::new(config.connections_max as usize));
    for endpoint in &endpoints {
        tokio::spawn(accept_connections(
            endpoint.clone(),
            shared.clone(),
            connections.clone(),
        ));
    }
    tracing::info!(%local_addr, sockets = endpoints.len(), "QUIC client listener started");
    Ok(QuicServer {
        endpoints,
        local_addr,
        shutdown,
        all_tasks_done,
    })
}

/// Transport limits of the listener: streams per connection, flow-control windows
/// sized to the frame maximum, idle timeout; no unidirectional streams or datagrams.
fn server_transport(config: &ServerSection) -> TransportConfig {
    let stream_window = config
        .frame_bytes_max
        .saturating_add(FRAME_HEADER_BYTES as u32);
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(config.streams_per_connection_max))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(stream_window))
        .receive_window(VarInt::from_u32(
            stream_window.saturating_mul(CONNECTION_WINDOW_FRAMES),
        ))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
        .datagram_receive_buffer_size(None);
    transport
}

/// Accepts connections until shutdown; past `connections` permits a new one is
/// refused before its handshake.
async fn accept_connections(endpoint: Endpoint, shared: Arc<Shared>, connections: Arc<Semaphore>) {
    let mut shutdown = shared.shutdown.clone();
    // Bounded by the endpoint's life: `accept` yields `None` once it is closed.
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = shutdown.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(connection::serve(incoming, shared.clone(), permit));
            }
            Err(_) => {
                tracing::info!(remote = %incoming.remote_address(), "connection refused: at connections_max");
                incoming.refuse();
            }
        }
    }
}

impl QuicServer {
    /// Closes every connection of every endpoint.
    fn close_all(&self) {
        for endpoint in &self.endpoints {
            endpoint.close(VarInt::from_u32(wire::CLOSE_SHUTDOWN), b"node stopping");
        }
    }

    /// The bound address (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and streams, gives requests in flight up to
    /// `grace` to finish and push streams their end, then closes every connection.
    pub async fn stop(mut self, grace: Duration) {
        for endpoint in &self.endpoints {
            endpoint.set_server_config(None);
        }
        self.shutdown.send_replace(true);
        if tokio::time::timeout(grace, self.all_tasks_done.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "requests still in flight at the end of the grace time"
            );
        }
        self.close_all();
        let drain = Duration::from_millis(CLOSE_DRAIN_MS);
        let idle = futures::future::join_all(self.endpoints.iter().map(Endpoint::wait_idle));
        let _ = tokio::time::timeout(drain, idle).await;
        tracing::info!(local_addr = %self.local_addr, "QUIC client listener stopped");
    }
}

impl Drop for QuicServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        self.close_all();
    }
}
