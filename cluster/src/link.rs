//! The QUIC endpoint of a node's cluster links: one quinn endpoint that accepts
//! calls from other nodes (served by the embedder's [`CallHandler`]) and connects
//! to peers for [`Peers`](crate::peers::Peers), both under mutual TLS.

mod limits;
mod serve;

pub(crate) use serve::read_datagrams;

pub use fixit_net::socket::UDP_BUFFER_BYTES;
pub use limits::LinkLimits;

use crate::error::{ClusterError, LinkError};
use crate::tls::{self, NodeIdentity};
use crate::wire::Envelope;
use fixit_actors::clock::SharedClock;
use quinn::{Endpoint, VarInt};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// QUIC application close code: the node is stopping.
pub const CLOSE_STOPPING: u32 = 1;

/// QUIC application close code: the peer's certificate names no node.
pub const CLOSE_NO_NODE_NAME: u32 = 2;

/// QUIC application close code: the connection was replaced by a fresh one (the
/// peer restarted).
pub const CLOSE_REPLACED: u32 = 3;

/// Link events waiting for membership; past it, datagrams are dropped (SWIM
/// takes a lost datagram as a lost probe).
pub const LINK_EVENTS_MAX: usize = 4_096;

/// What the links tell membership.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// A membership datagram from the certified node `from`.
    Datagram {
        /// The node named in the connection's certificate.
        from: Arc<str>,
        /// The datagram.
        bytes: bytes::Bytes,
    },
    /// Node `from` opened a connection to this one (membership datagrams may go
    /// back on it while this node's own link to `from` is not up).
    ConnectedIn {
        /// The node named in the connection's certificate.
        from: Arc<str>,
        /// The connection.
        connection: quinn::Connection,
    },
    /// Node `from` closed a link saying it is stopping.
    Stopping {
        /// The node named in the connection's certificate.
        from: Arc<str>,
    },
}

/// Where link events go: a bounded queue, never waited on.
#[derive(Clone)]
pub(crate) struct LinkEvents {
    sender: tokio::sync::mpsc::Sender<LinkEvent>,
}

impl LinkEvents {
    fn channel() -> (LinkEvents, tokio::sync::mpsc::Receiver<LinkEvent>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(LINK_EVENTS_MAX);
        (LinkEvents { sender }, receiver)
    }

    /// Queues `event`, or drops it (counted in
    /// `fixit_cluster_link_events_dropped_total`) when membership is behind or gone.
    pub(crate) fn report(&self, event: LinkEvent) {
        if self.sender.try_send(event).is_err() {
            metrics::counter!("fixit_cluster_link_events_dropped_total").increment(1);
        }
    }
}

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
    pub(crate) events: LinkEvents,
}

impl Connector {
    /// Tells membership about a link event.
    pub(crate) fn report(&self, event: LinkEvent) {
        self.events.report(event);
    }

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
    events: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<LinkEvent>>>,
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
        let key = fixit_net::tls::read_private_key(&identity.key)?;
        let endpoint = Endpoint::new(
            fixit_net::tls::endpoint_config(&key),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        let local_addr = endpoint.local_addr().map_err(bind_error)?;
        let (events, receiver) = LinkEvents::channel();
        let serving = serve::Serving::new(
            handler,
            identity.name.clone(),
            limits.clone(),
            clock.clone(),
            events.clone(),
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
                events,
            },
            local_addr,
            accept_task: Some(accept_task),
            events: std::sync::Mutex::new(Some(receiver)),
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

    /// The link events, for membership (once).
    pub(crate) fn take_events(&self) -> Option<tokio::sync::mpsc::Receiver<LinkEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take()
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
