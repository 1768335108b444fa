//! Opening the simulated users' connections. Over QUIC: a few local endpoints per
//! node (one UDP socket each, with the SDK's raised buffers) share the connections,
//! and a refused or failed connect is retried a bounded number of times. Over the
//! HTTP bridge (`--http`): one keep-alive pool per source address shares every
//! user's calls (bounded in flight), and a user's session is its push WebSocket.

use super::client::UserClient;
use super::stats::{Op, Stats};
use super::target::Target;
use fixit_protocol::api::ApiError;
use fixit_protocol::principal::Principal;
use fixit_sdk::{ClientError, Connector, HttpTransport};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Local endpoints (UDP sockets) per node: spreads the packet work of thousands of
/// connections over many endpoint drivers here, and over the node's listener
/// sockets there (its kernel picks a socket by the sender's address and port, so
/// users sharing one local socket all land on the same one of the node's).
const ENDPOINTS_PER_NODE: usize = 64;

/// HTTP requests the generator has in flight at once (`--http`): each needs a TCP
/// connection of its own, and the generator and the node each hold one file
/// descriptor per WebSocket already. Calls past it wait, inside their timing.
pub(crate) const HTTP_INFLIGHT_MAX: usize = 2_048;

/// Tries of one connect before the user is given up.
const CONNECT_TRIES_MAX: u32 = 10;

/// Wait before retrying a connect that failed without a retry hint.
const CONNECT_RETRY_MS: u64 = 250;

/// Longest wait honoured from a retry hint.
const RETRY_AFTER_MAX_MS: u64 = 2_000;

/// How the users reach the nodes.
pub(crate) enum Connectors {
    /// The local QUIC endpoints, per node.
    Quic(Vec<Vec<Connector>>),
    /// One HTTP pool per source address, shared by all nodes.
    Http {
        transports: Vec<HttpTransport>,
        permits: Arc<Semaphore>,
    },
}

impl Connectors {
    /// Endpoints for every node of `target`; on loopback they are bound to
    /// `source_addresses` different addresses 127.0.0.1, 127.0.0.2, ….
    pub(crate) fn new(
        target: &Target,
        source_addresses: u8,
        http: bool,
    ) -> anyhow::Result<Connectors> {
        if http {
            let transports = (0..usize::from(source_addresses.max(1)))
                .map(|index| {
                    let local = bind_address(target.nodes[0].http, index, source_addresses).ip();
                    let local = (!local.is_unspecified()).then_some(local);
                    HttpTransport::new(local)
                })
                .collect::<Result<_, ApiError>>()?;
            let permits = Arc::new(Semaphore::new(HTTP_INFLIGHT_MAX));
            return Ok(Connectors::Http {
                transports,
                permits,
            });
        }
        let mut per_node = Vec::new();
        for node in &target.nodes {
            let endpoints = ENDPOINTS_PER_NODE.max(usize::from(source_addresses));
            let mut connectors = Vec::new();
            for index in 0..endpoints {
                let bind = bind_address(node.quic, index, source_addresses);
                connectors.push(Connector::new(&node.cert, bind).map_err(|error| {
                    anyhow::anyhow!("endpoint {bind} for node {}: {error}", node.name)
                })?);
            }
            per_node.push(connectors);
        }
        Ok(Connectors::Quic(per_node))
    }

    /// Connects user number `user` as `principal` to node `node` (retrying refusals
    /// and failures a bounded number of times); `None` if it never succeeded. Over
    /// HTTP nothing is sent yet: the user's calls share the pool.
    pub(crate) async fn connect(
        &self,
        target: &Target,
        node: usize,
        user: u64,
        principal: Principal,
        stats: &Stats,
    ) -> Option<UserClient> {
        let token = target.token(principal);
        let connectors = match self {
            Connectors::Quic(per_node) => &per_node[node],
            Connectors::Http {
                transports,
                permits,
            } => {
                let transport = &transports[user as usize % transports.len()];
                return Some(UserClient::Http {
                    client: transport.client(target.nodes[node].http, &token),
                    permits: permits.clone(),
                });
            }
        };
        let connector = &connectors[user as usize % connectors.len()];
        let addr = target.nodes[node].quic;
        for _ in 0..CONNECT_TRIES_MAX {
            let started = Instant::now();
            match connector.connect(addr, &token).await {
                Ok(client) => {
                    stats.ok(Op::Connect, started.elapsed());
                    return Some(UserClient::Quic(client));
                }
                Err(ClientError::Refused(error)) => {
                    stats.failed(Op::Connect, error.kind());
                    stats.example(Op::Connect, error.kind(), &error.to_string());
                    // A refusal no retry can cure (e.g. a bad token) ends the tries.
                    error.retry_after_ms()?;
                    pause_for(&error).await;
                }
                Err(error) => {
                    stats.failed(Op::Connect, connect_failure_kind(&error));
                    stats.example(
                        Op::Connect,
                        connect_failure_kind(&error),
                        &error.to_string(),
                    );
                    tokio::time::sleep(Duration::from_millis(CONNECT_RETRY_MS)).await;
                }
            }
        }
        None
    }
}

/// Kind of a connect failure that happened before any answer of the node.
fn connect_failure_kind(error: &ClientError) -> &'static str {
    match error {
        ClientError::Tls(_) => "tls",
        ClientError::Endpoint(_) => "endpoint",
        ClientError::Connect { .. } => "connect_failed",
        ClientError::Refused(_) => "refused",
    }
}

/// Waits as the node asked (bounded), or a short default.
pub(crate) async fn pause_for(error: &ApiError) {
    let wait = error
        .retry_after_ms()
        .unwrap_or(CONNECT_RETRY_MS)
        .min(RETRY_AFTER_MAX_MS);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// Where endpoint `index` binds: a loopback source address of its own when the
/// node is on IPv4 loopback, else any address.
fn bind_address(node: SocketAddr, index: usize, source_addresses: u8) -> SocketAddr {
    match node.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let last = 1 + (index % usize::from(source_addresses.max(1))) as u8;
            SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0))
        }
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_spread_over_source_addresses() {
        let node: SocketAddr = "127.0.0.1:4433".parse().expect("address");
        let sources: Vec<IpAddr> = (0..4).map(|i| bind_address(node, i, 2).ip()).collect();
        let one: IpAddr = "127.0.0.1".parse().expect("ip");
        let two: IpAddr = "127.0.0.2".parse().expect("ip");
        assert_eq!(sources, [one, two, one, two]);
        let remote: SocketAddr = "10.0.0.1:4433".parse().expect("address");
        assert!(bind_address(remote, 3, 2).ip().is_unspecified());
    }
}
