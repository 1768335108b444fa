//! The Rust client of the QUIC protocol (and, in [`HttpClient`], of the HTTP
//! bridge, with the same typed [`Commands`]): connect (TLS pinned to the node's
//! certificate, then the hello), call commands one stream each (concurrent calls
//! share the connection), and receive pushes. Errors come back as [`ApiError`];
//! transport failures as `Core(Unavailable)`.

mod commands;
mod error_body;
mod http;
mod pushes;
pub mod tls;

pub use commands::Commands;
pub use error_body::api_error_from_body;
pub use http::{
    HttpClient, HttpPushStream, HttpTransport, HTTP_ANSWER_TIMEOUT_MS, HTTP_CONNECT_TIMEOUT_MS,
};
pub use pushes::PushStream;

use fixit_net::socket;
use fixit_protocol::api::{ApiError, Request, Response, PROTOCOL_VERSION};
use fixit_protocol::codec::{encode_frame, read_frame};
use fixit_protocol::error::CoreError;
use fixit_protocol::wire::{
    Hello, HelloReply, ReplyFrame, RequestFrame, StreamFrame, SubscribeFrame, SubscribeReply,
    Welcome, CLOSE_DONE, HELLO_BYTES_MAX, REPLY_BYTES_MAX,
};
use fixit_protocol::wire::{IDLE_TIMEOUT_MS, KEEP_ALIVE_INTERVAL_MS, SERVER_NAME};
use quinn::{Connection, Endpoint, EndpointConfig, IdleTimeout, RecvStream, SendStream, VarInt};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tls::TlsError;

/// Time `close` waits for the close to reach the node, in ms.
pub const CLOSE_FLUSH_MS: u64 = 1_000;

/// A client holding several nodes moves to the next one when its node has not
/// answered a call (or a dial) within this long: a node killed outright says
/// nothing until the idle timeout. Longer than a node's own wait for a wallet
/// shard's leader, so a node that is slow because of a failover still answers.
pub const FAILOVER_AFTER: Duration = Duration::from_millis(2_500);

/// A connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The pinned certificate could not be read or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The local UDP endpoint could not be made.
    #[error("local endpoint: {0}")]
    Endpoint(#[from] std::io::Error),
    /// The node could not be reached or the handshake failed (e.g. the node's
    /// certificate is not the pinned one, or the node is at `connections_max`).
    #[error("connect to {addr}: {reason}")]
    Connect {
        /// The node's address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The node refused the hello (`unsupported_version`, `unauthorized`,
    /// `rate_limited`, `bad_request`); it then closed the connection.
    #[error("hello refused: {0}")]
    Refused(ApiError),
}

/// A local QUIC endpoint that trusts one node certificate; it can open many
/// connections (one per token), e.g. for a load generator.
#[derive(Clone)]
pub struct Connector {
    endpoint: Endpoint,
    config: quinn::ClientConfig,
}

impl Connector {
    /// An endpoint bound to `bind` (e.g. `0.0.0.0:0`) trusting exactly the first
    /// certificate of the PEM file `server_cert_pem_path`.
    pub fn new(server_cert_pem_path: &Path, bind: SocketAddr) -> Result<Connector, ClientError> {
        let mut config = quinn::ClientConfig::new(tls::client_crypto(server_cert_pem_path)?);
        config.transport_config(Arc::new(client_transport()));
        let socket = socket::bind_udp(bind)?;
        let runtime = Arc::new(quinn::TokioRuntime);
        let endpoint = Endpoint::new(EndpointConfig::default(), None, socket, runtime)?;
        Ok(Connector { endpoint, config })
    }

    /// Connects to the node at `addr` and says hello with `token`.
    pub async fn connect(&self, addr: SocketAddr, token: &str) -> Result<Client, ClientError> {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            token: token.to_owned(),
        };
        self.connect_with_hello(addr, &hello).await
    }

    /// Connects and sends `hello` as given (tests use it to send a wrong version).
    pub async fn connect_with_hello(
        &self,
        addr: SocketAddr,
        hello: &Hello,
    ) -> Result<Client, ClientError> {
        let current = self.dial(addr, hello).await?;
        Ok(self.client(vec![addr], 0, hello.clone(), current))
    }

    /// Connects to the first of `addrs` that answers (in order) and says hello
    /// with `token`. The client then holds every address: when its node stops
    /// answering, a call that is safe to repeat is sent to the next node (see
    /// [`Client`]). Every node's listener certificate must be in the PEM file
    /// this connector trusts.
    pub async fn connect_any(
        &self,
        addrs: &[SocketAddr],
        token: &str,
    ) -> Result<Client, ClientError> {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            token: token.to_owned(),
        };
        let mut last = None;
        for (at, addr) in addrs.iter().enumerate() {
            match self.dial_within(*addr, &hello).await {
                Ok(current) => {
                    return Ok(self.client(addrs.to_vec(), at, hello, current));
                }
                Err(ClientError::Connect { addr, reason }) => {
                    last = Some(ClientError::Connect { addr, reason });
                }
                Err(refused) => return Err(refused),
            }
        }
        Err(last.unwrap_or(ClientError::Connect {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            reason: "no node address given".into(),
        }))
    }

    fn client(&self, addrs: Vec<SocketAddr>, at: usize, hello: Hello, current: Current) -> Client {
        Client {
            link: Arc::new(Link {
                connector: self.clone(),
                addrs,
                at: AtomicUsize::new(at),
                hello,
                current: RwLock::new(current),
                redialing: tokio::sync::Mutex::new(()),
                redials: AtomicU64::new(0),
                failovers: AtomicU64::new(0),
            }),
        }
    }

    /// [`Connector::dial`] given up after [`FAILOVER_AFTER`].
    async fn dial_within(&self, addr: SocketAddr, hello: &Hello) -> Result<Current, ClientError> {
        tokio::time::timeout(FAILOVER_AFTER, self.dial(addr, hello))
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Connect {
                    addr,
                    reason: "no answer in time".into(),
                })
            })
    }

    /// A new connection to `addr` that said `hello` and was welcomed.
    async fn dial(&self, addr: SocketAddr, hello: &Hello) -> Result<Current, ClientError> {
        let connection = self.connect_without_hello(addr).await?;
        let welcome = say_hello(&connection, hello)
            .await
            .map_err(|error| match error {
                ApiError::Core(CoreError::Unavailable(reason)) => {
                    ClientError::Connect { addr, reason }
                }
                refused => ClientError::Refused(refused),
            })?;
        Ok(Current {
            connection,
            welcome: Arc::new(welcome),
        })
    }

    /// A connection after the TLS handshake, before any hello: the escape hatch for
    /// tests of what a node does with a client that skips or garbles its hello.
    pub async fn connect_without_hello(&self, addr: SocketAddr) -> Result<Connection, ClientError> {
        let failed = |reason: String| ClientError::Connect { addr, reason };
        self.endpoint
            .connect_with(self.config.clone(), addr, SERVER_NAME)
            .map_err(|e| failed(e.to_string()))?
            .await
            .map_err(|e| failed(e.to_string()))
    }
}

/// The client side's transport: keep-alives keep an idle connection open; the node
/// never opens streams toward the client.
fn client_transport() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS)))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))));
    transport
}

/// Sends the hello on the connection's first stream and reads the answer.
async fn say_hello(connection: &Connection, hello: &Hello) -> Result<Welcome, ApiError> {
    let frame = encode_frame(hello, HELLO_BYTES_MAX).map_err(bad_request)?;
    let (send, mut recv) = connection.open_bi().await.map_err(unavailable)?;
    send_frame(send, &frame).await?;
    let reply: HelloReply = read_reply(&mut recv).await?;
    reply.map_err(|body| api_error_from_body(&body))
}

/// A connection to a node, after a successful hello. Cheap to clone; clones share
/// the connection. Each call uses its own stream, so calls may run concurrently
/// (up to the node's `streams_per_connection_max`; more wait for a free stream).
///
/// The client follows a node that restarts on the same address: a call that
/// finds the connection closed (by the node, a reset or the idle timeout) dials
/// again and says the same hello first; a call whose connection is answered by
/// a stateless reset (the node restarted and has no state of it) dials again and
/// is sent once more if it is safe to repeat ([`CommandSpec::repeatable`]: a
/// read, a replace, or a keyed command). Any other call fails with
/// `unavailable` and the next one dials again.
///
/// [`CommandSpec::repeatable`]: fixit_protocol::command_spec::CommandSpec::repeatable
#[derive(Clone)]
pub struct Client {
    link: Arc<Link>,
}

/// What a client needs to dial its node (or another) again, and the
/// connection of now.
struct Link {
    connector: Connector,
    /// Every node the client may use; `at` is the one of now.
    addrs: Vec<SocketAddr>,
    at: AtomicUsize,
    hello: Hello,
    current: RwLock<Current>,
    /// Held while dialing, so concurrent calls dial once.
    redialing: tokio::sync::Mutex<()>,
    redials: AtomicU64,
    failovers: AtomicU64,
}

/// One connection and the welcome it got.
#[derive(Clone)]
struct Current {
    connection: Connection,
    welcome: Arc<Welcome>,
}

impl Link {
    fn current(&self) -> Current {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The connection to use: the current one if it is open, else a new one
    /// (dialed once however many calls ask at the same time).
    async fn open(&self) -> Result<Current, ApiError> {
        let current = self.current();
        match current.connection.close_reason() {
            None => Ok(current),
            Some(quinn::ConnectionError::LocallyClosed) => {
                Err(unavailable("the client closed its connection"))
            }
            Some(_) => self.redial(&current.connection).await,
        }
    }

    /// Replaces `stale` by a new connection unless another call already did.
    async fn redial(&self, stale: &Connection) -> Result<Current, ApiError> {
        let _dialing = self.redialing.lock().await;
        let current = self.current();
        if current.connection.stable_id() != stale.stable_id() {
            return Ok(current);
        }
        let addr = self.addrs[self.at.load(Ordering::Relaxed) % self.addrs.len()];
        let fresh = self
            .connector
            .dial(addr, &self.hello)
            .await
            .map_err(|error| match error {
                ClientError::Refused(refused) => refused,
                other => unavailable(other),
            })?;
        self.install(fresh.clone());
        self.redials.fetch_add(1, Ordering::Relaxed);
        Ok(fresh)
    }

    fn install(&self, fresh: Current) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
    }

    /// Leaves the node of `stale` for the next one of the list that answers
    /// (each tried once, in turn), unless another call already moved on.
    async fn fail_over(&self, stale: &Connection) -> Result<Current, ApiError> {
        let _dialing = self.redialing.lock().await;
        let current = self.current();
        if current.connection.stable_id() != stale.stable_id() {
            return Ok(current);
        }
        stale.close(VarInt::from_u32(CLOSE_DONE), b"failing over");
        let from = self.at.load(Ordering::Relaxed);
        let mut last = unavailable("no other node to fail over to");
        for step in 1..self.addrs.len() {
            let at = (from + step) % self.addrs.len();
            match self
                .connector
                .dial_within(self.addrs[at], &self.hello)
                .await
            {
                Ok(fresh) => {
                    self.at.store(at, Ordering::Relaxed);
                    self.install(fresh.clone());
                    self.failovers.fetch_add(1, Ordering::Relaxed);
                    return Ok(fresh);
                }
                Err(ClientError::Refused(refused)) => return Err(refused),
                Err(other) => last = unavailable(other),
            }
        }
        Err(last)
    }
}

impl Client {
    /// Connects to the node at `addr`, trusting exactly the certificate in
    /// `server_cert_pem_path`, and says hello with `token`.
    pub async fn connect(
        addr: SocketAddr,
        server_cert_pem_path: &Path,
        token: &str,
    ) -> Result<Client, ClientError> {
        let bind: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        Connector::new(server_cert_pem_path, bind)?
            .connect(addr, token)
            .await
    }

    /// What the node said in its welcome (principal, node id, frame maximum) on
    /// the current connection.
    pub fn welcome(&self) -> Arc<Welcome> {
        self.link.current().welcome
    }

    /// How many times this client (and its clones) dialed its node again.
    pub fn redials(&self) -> u64 {
        self.link.redials.load(Ordering::Relaxed)
    }

    /// How many times this client (and its clones) moved to another node.
    pub fn failovers(&self) -> u64 {
        self.link.failovers.load(Ordering::Relaxed)
    }

    /// The node address the client uses now.
    pub fn node_addr(&self) -> SocketAddr {
        self.link.addrs[self.link.at.load(Ordering::Relaxed) % self.link.addrs.len()]
    }

    /// Runs one command; the node makes the request id.
    pub async fn call(&self, request: Request) -> Result<Response, ApiError> {
        self.reply(request, None)
            .await?
            .result
            .map_err(|body| api_error_from_body(&body))
    }

    /// Runs one command under the given request id (1 to 64 printable ASCII bytes).
    pub async fn call_with_id(
        &self,
        request: Request,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        let reply = self.reply(request, Some(request_id)).await?;
        reply.result.map_err(|body| api_error_from_body(&body))
    }

    /// Runs one command and returns the node's reply frame as sent (with the error
    /// body and the request id, e.g. for printing). `Err` only for failures before
    /// a reply: transport (`unavailable`) or a request over the frame maximum.
    pub async fn reply(
        &self,
        request: Request,
        request_id: Option<&str>,
    ) -> Result<ReplyFrame, ApiError> {
        let repeatable = request.spec().repeatable();
        let frame = StreamFrame::Request(RequestFrame {
            request_id: request_id.map(str::to_owned),
            request,
        });
        let several = self.link.addrs.len() > 1;
        let now = self.link.current();
        let current = match now.connection.close_reason() {
            // Its node closed the connection or was lost: go to the next one
            // rather than wait on a node that may be dead.
            Some(reason) if several && reason != quinn::ConnectionError::LocallyClosed => {
                self.link.fail_over(&now.connection).await?
            }
            _ => self.link.open().await?,
        };
        let answer = if several {
            // A node killed outright answers nothing until the idle timeout:
            // a client with somewhere else to go waits only so long.
            tokio::time::timeout(FAILOVER_AFTER, exchange(&current, &frame))
                .await
                .unwrap_or_else(|_| Err(unavailable("the node did not answer in time")))
        } else {
            exchange(&current, &frame).await
        };
        let reset = current.connection.close_reason() == Some(quinn::ConnectionError::Reset);
        // The node answered `unavailable` itself (e.g. it leads a wallet shard
        // but is cut off from the other replicas): another node may serve it.
        let refused_here = matches!(
            &answer,
            Ok(ReplyFrame { result: Err(body), .. }) if body.error == "unavailable"
        );
        match answer {
            Err(ApiError::Core(CoreError::Unavailable(_))) if several && repeatable => {
                let fresh = self.link.fail_over(&current.connection).await?;
                exchange(&fresh, &frame).await
            }
            Ok(_) if refused_here && several && repeatable => {
                let fresh = self.link.fail_over(&current.connection).await?;
                exchange(&fresh, &frame).await
            }
            Err(ApiError::Core(CoreError::Unavailable(_))) if reset && repeatable => {
                let fresh = self.link.redial(&current.connection).await?;
                exchange(&fresh, &frame).await
            }
            answer => answer,
        }
    }

    /// Opens the principal's push stream (job events for a customer, offers for a
    /// provider); returns once the node has subscribed it. A push stream is not
    /// followed across a restart: when it ends, subscribe again.
    pub async fn subscribe(&self) -> Result<PushStream, ApiError> {
        let current = self.link.open().await?;
        let frame = StreamFrame::Subscribe(SubscribeFrame { request_id: None });
        let bytes =
            encode_frame(&frame, current.welcome.frame_bytes_max as usize).map_err(bad_request)?;
        let (send, mut recv) = current.connection.open_bi().await.map_err(unavailable)?;
        send_frame(send, &bytes).await?;
        let reply: SubscribeReply = read_reply(&mut recv).await?;
        reply.result.map_err(|body| api_error_from_body(&body))?;
        Ok(PushStream::new(recv))
    }

    /// Opens a bidirectional stream with nothing sent, on the current connection
    /// (not dialing again): the escape hatch for tests that send malformed frames.
    pub async fn open_raw(&self) -> Result<(SendStream, RecvStream), ApiError> {
        self.connection().open_bi().await.map_err(unavailable)
    }

    /// The current QUIC connection.
    pub fn connection(&self) -> Connection {
        self.link.current().connection
    }

    /// Closes the connection (for every clone) and waits briefly for the node to
    /// hear of it.
    pub async fn close(self) {
        self.connection()
            .close(VarInt::from_u32(CLOSE_DONE), b"done");
        let flush = Duration::from_millis(CLOSE_FLUSH_MS);
        let endpoint = &self.link.connector.endpoint;
        let _ = tokio::time::timeout(flush, endpoint.wait_idle()).await;
    }
}

/// One request and its reply on `current`'s connection.
async fn exchange(current: &Current, frame: &StreamFrame) -> Result<ReplyFrame, ApiError> {
    let bytes =
        encode_frame(frame, current.welcome.frame_bytes_max as usize).map_err(bad_request)?;
    let (send, mut recv) = current.connection.open_bi().await.map_err(unavailable)?;
    send_frame(send, &bytes).await?;
    read_reply(&mut recv).await
}

/// Writes one whole frame and finishes the stream. A stream the node stopped still
/// has its answer to read, so that is not a failure here.
async fn send_frame(mut send: SendStream, frame: &[u8]) -> Result<(), ApiError> {
    match send.write_all(frame).await {
        Ok(()) | Err(quinn::WriteError::Stopped(_)) => {}
        Err(error) => return Err(unavailable(error)),
    }
    let _ = send.finish();
    Ok(())
}

/// Reads the one answer frame of a stream.
async fn read_reply<T: DeserializeOwned>(recv: &mut RecvStream) -> Result<T, ApiError> {
    match read_frame::<T, _>(recv, REPLY_BYTES_MAX).await {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(unavailable("the node closed the stream without answering")),
        Err(error) => Err(unavailable(error)),
    }
}

fn unavailable(error: impl ToString) -> ApiError {
    ApiError::Core(CoreError::Unavailable(error.to_string()))
}

fn bad_request(error: impl ToString) -> ApiError {
    ApiError::BadRequest(error.to_string())
}
