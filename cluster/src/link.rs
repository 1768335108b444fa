//! The QUIC endpoint of a node's cluster links: one quinn endpoint that accepts
//! calls from other nodes (served by the embedder's [`CallHandler`]) and connects
//! to peers for [`Peers`](crate::peers::Peers), both under mutual TLS.

mod limits;
mod serve;

pub use fixit_net::socket::UDP_BUFFER_BYTES;
pub use limits::LinkLimits;

use crate::error::{ClusterError, LinkError};
use crate::tls::{self, NodeIdentity};
use crate::wire::Envelope;
use fixit_actors::clock::SharedClock;
use quinn::{Endpoint, EndpointConfig, VarInt};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// QUIC application close code: the node is stopping.
pub const CLOSE_STOPPING: u32 = 1;

/// QUIC application close code: the peer's certificate names no node.
pub const CLOSE_NO_NODE_NAME: u32 = 2;

/// Time `stop` waits for closed connections to be acknowledged, in ms.
pub const CLOSE_DRAIN_MS: u64 = 1_000;

/// Serves the calls that other nodes make to this one.
pub trait CallHandler: Send + Sync + 'static {
    /// Answers one call from node `from` (its verified certificate name) with the
    /// encoded reply, or a typed refusal. The link layer runs this under a tracing
    /// span carrying `request_id` and `from`, and stops waiting at the deadline.
    fn handle(
        &self,
        from: &str,
        envelope: Envelope,
    ) -> impl Future<Output = Result<Vec<u8>, LinkError>> + Send;
}

/// What a node needs to open links to its peers (shared with `Peers`).
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) endpoint: Endpoint,
    pub(crate) client_config: quinn::ClientConfig,
    pub(crate) local_name: String,
    pub(crate) limits: LinkLimits,
    pub(crate) clock: SharedClock,
}

impl Connector {
    /// Connects to node `name` at `addr`, checking its certificate names `name`;
    /// gives up after `connect_timeout_ms`. The error is a reason to show.
    pub(crate) async fn connect(
        &self,
        name: &str,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, String> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, name)
            .map_err(|e| format!("connect: {e}"))?;
        let timeout = Duration::from_millis(self.limits.connect_timeout_ms);
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(format!("handshake: {error}")),
            Err(_) => Err(format!(
                "no handshake within {} ms",
                self.limits.connect_timeout_ms
            )),
        }
    }
}

/// A node's cluster endpoint. Dropping it closes every link at once; [`stop`]
/// also waits (briefly) for the closes to be acknowledged.
///
/// [`stop`]: ClusterEndpoint::stop
pub struct ClusterEndpoint {
    connector: Connector,
    local_addr: SocketAddr,
    accept_task: Option<JoinHandle<()>>,
}

impl ClusterEndpoint {
    /// Binds `listen` (port 0 picks a free port) with UDP buffers of
    /// [`UDP_BUFFER_BYTES`], and serves incoming calls with `handler`. `clock`
    /// judges envelope deadlines. Must be called inside a tokio runtime.
    pub fn bind<H: CallHandler>(
        identity: &NodeIdentity,
        listen: SocketAddr,
        limits: LinkLimits,
        handler: Arc<H>,
        clock: SharedClock,
    ) -> Result<ClusterEndpoint, ClusterError> {
        limits.validate()?;
        let mut server_config = quinn::ServerConfig::with_crypto(tls::server_crypto(identity)?);
        server_config.transport_config(Arc::new(limits.server_transport()));
        let mut client_config = quinn::ClientConfig::new(tls::client_crypto(identity)?);
        client_config.transport_config(Arc::new(limits.client_transport()));
        let bind_error = |source| ClusterError::Bind {
            addr: listen,
            source,
        };
        let socket = fixit_net::socket::bind_udp(listen).map_err(bind_error)?;
        let endpoint = Endpoint::new(
            EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        let local_addr = endpoint.local_addr().map_err(bind_error)?;
        let serving = serve::Serving::new(
            handler,
            identity.name.clone(),
            limits.clone(),
            clock.clone(),
        );
        let accept_task = tokio::spawn(serve::accept_connections(endpoint.clone(), serving));
        tracing::info!(node = %identity.name, %local_addr, "cluster endpoint listening");
        Ok(ClusterEndpoint {
            connector: Connector {
                endpoint,
                client_config,
                local_name: identity.name.clone(),
                limits,
                clock,
            },
            local_addr,
            accept_task: Some(accept_task),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.connector.local_name
    }

    /// The limits in force.
    pub fn limits(&self) -> &LinkLimits {
        &self.connector.limits
    }

    pub(crate) fn connector(&self) -> Connector {
        self.connector.clone()
    }

    /// Closes every link, waits up to [`CLOSE_DRAIN_MS`] for the peers to
    /// acknowledge, and waits for the accept loop to end.
    pub async fn stop(mut self) {
        let endpoint = self.connector.endpoint.clone();
        endpoint.close(VarInt::from_u32(CLOSE_STOPPING), b"node stopping");
        let drain = Duration::from_millis(CLOSE_DRAIN_MS);
        let _ = tokio::time::timeout(drain, endpoint.wait_idle()).await;
        if let Some(task) = self.accept_task.take() {
            let _ = tokio::time::timeout(drain, task).await;
        }
        tracing::info!(local_addr = %self.local_addr, "cluster endpoint stopped");
    }
}

impl Drop for ClusterEndpoint {
    fn drop(&mut self) {
        self.connector
            .endpoint
            .close(VarInt::from_u32(CLOSE_STOPPING), b"node stopping");
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
    }
}
