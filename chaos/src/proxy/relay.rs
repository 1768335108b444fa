//! The relaying tasks: the listener reads clients' datagrams and sends them
//! upstream from one socket per client flow; each flow's reader sends the
//! upstream's replies back to its client. Every datagram goes through
//! [`relay`], which applies the faults.

use crate::proxy::control::Shared;
use crate::proxy::counters::Event;
use crate::proxy::delay::DelaySender;
use crate::proxy::faults::Direction;
use crate::proxy::flows::{Admission, FlowTable};
use crate::proxy::rng::SplitMix64;
use crate::proxy::verdict::{decide, Verdict};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Duration, Instant};

/// The largest UDP payload: a datagram is read whole, never truncated.
const DATAGRAM_BYTES_MAX: usize = 65_535;

/// Pause after a failed read, so a socket that keeps failing cannot spin a core.
const RECV_ERROR_BACKOFF_MS: u64 = 10;

/// Where a datagram goes: the socket it is sent from and the address it is sent to.
#[derive(Clone, Copy)]
pub(crate) struct Route<'a> {
    pub(crate) direction: Direction,
    pub(crate) socket: &'a Arc<UdpSocket>,
    pub(crate) to: SocketAddr,
}

/// Applies the faults in force to one datagram read in `route.direction`: sends
/// it, queues it for later, or drops it; and counts what happened.
pub(crate) async fn relay(
    shared: &Shared,
    delays: &DelaySender,
    rng: &mut SplitMix64,
    route: Route<'_>,
    bytes: &[u8],
) {
    let counters = &shared.counters;
    counters.record(route.direction, Event::Received);
    match decide(&shared.faults(), route.direction, rng) {
        Verdict::Forward => send(shared, route, bytes).await,
        Verdict::Delay { delay_ms } => delays.schedule(route, bytes, delay_ms),
        Verdict::DropLoss => counters.record(route.direction, Event::DroppedLoss),
        Verdict::DropCut => counters.record(route.direction, Event::DroppedCut),
    }
}

/// Sends `bytes` along `route` now, counting it forwarded or failed.
pub(crate) async fn send(shared: &Shared, route: Route<'_>, bytes: &[u8]) {
    let event = match route.socket.send_to(bytes, route.to).await {
        Ok(_) => Event::Forwarded,
        Err(error) => {
            tracing::debug!(to = %route.to, %error, "fault proxy: send failed");
            Event::SendFailed
        }
    };
    shared.counters.record(route.direction, event);
}

async fn back_off_after(error: std::io::Error, socket: &UdpSocket) {
    let local = socket.local_addr().ok();
    tracing::debug!(?local, %error, "fault proxy: read failed");
    tokio::time::sleep(Duration::from_millis(RECV_ERROR_BACKOFF_MS)).await;
}

/// The random streams of flow number `ordinal`: one per direction.
fn flow_streams(seed: u64, ordinal: u64) -> (SplitMix64, SplitMix64) {
    (
        SplitMix64::stream(seed, 2 * ordinal),
        SplitMix64::stream(seed, 2 * ordinal + 1),
    )
}

/// The address a flow's upstream socket binds: the upstream's own loopback
/// address when it is on loopback (so nothing leaves the host), otherwise any
/// address of its family.
fn upstream_side_bind_addr(upstream: SocketAddr) -> SocketAddr {
    let ip = match upstream.ip() {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// One client's flow: its own socket towards the upstream, so the upstream sees
/// one distinct peer per client.
struct Flow {
    socket: Arc<UdpSocket>,
    to_upstream_rng: SplitMix64,
    reader: AbortHandle,
}

/// The listening side of the proxy, with the flow table and the flow readers.
pub(crate) struct Listener {
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    seed: u64,
    delays: DelaySender,
    flows: FlowTable<Flow>,
    readers: JoinSet<()>,
    started: Instant,
}

/// What a [`Listener`] is made of.
pub(crate) struct ListenerParts {
    pub(crate) shared: Arc<Shared>,
    pub(crate) socket: Arc<UdpSocket>,
    pub(crate) upstream: SocketAddr,
    pub(crate) seed: u64,
    pub(crate) delays: DelaySender,
    pub(crate) flows_max: usize,
    pub(crate) flow_idle_ms: u64,
}

impl Listener {
    pub(crate) fn new(parts: ListenerParts) -> Listener {
        Listener {
            shared: parts.shared,
            socket: parts.socket,
            upstream: parts.upstream,
            seed: parts.seed,
            delays: parts.delays,
            flows: FlowTable::new(parts.flows_max, parts.flow_idle_ms),
            readers: JoinSet::new(),
            started: Instant::now(),
        }
    }

    /// Relays until `shutdown` changes, then stops every flow reader.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
        // Ends with the proxy; each turn handles one datagram or one finished reader.
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(_) = self.readers.join_next(), if !self.readers.is_empty() => {}
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((length, client)) => self.on_datagram(client, &buffer[..length]).await,
                    Err(error) => back_off_after(error, &self.socket).await,
                },
            }
        }
        self.readers.shutdown().await;
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn on_datagram(&mut self, client: SocketAddr, bytes: &[u8]) {
        let now_ms = self.now_ms();
        if self.flows.active(client, now_ms).is_none() {
            if let Err(event) = self.open_flow(client, now_ms).await {
                let counters = &self.shared.counters;
                counters.record(Direction::ToUpstream, Event::Received);
                counters.record(Direction::ToUpstream, event);
                return;
            }
        }
        let Some(flow) = self.flows.active(client, now_ms) else {
            return;
        };
        let route = Route {
            direction: Direction::ToUpstream,
            socket: &flow.socket,
            to: self.upstream,
        };
        relay(
            &self.shared,
            &self.delays,
            &mut flow.to_upstream_rng,
            route,
            bytes,
        )
        .await;
    }

    /// Opens the flow of a new client, evicting an idle flow if the table is full;
    /// on failure, the event to count for the datagram that could not go.
    async fn open_flow(&mut self, client: SocketAddr, now_ms: u64) -> Result<(), Event> {
        match self.flows.admission(now_ms) {
            Admission::Room => {}
            Admission::Evict(idle) => {
                if let Some(flow) = self.flows.remove(idle) {
                    flow.reader.abort();
                    self.shared.counters.flow_evicted();
                    tracing::debug!(client = %idle, "fault proxy: evicted an idle flow");
                }
            }
            Admission::Full => {
                tracing::debug!(%client, "fault proxy: flow table full, datagram dropped");
                return Err(Event::DroppedOverflow);
            }
        }
        let bind_addr = upstream_side_bind_addr(self.upstream);
        let socket = match UdpSocket::bind(bind_addr).await {
            Ok(socket) => Arc::new(socket),
            Err(error) => {
                tracing::warn!(%bind_addr, %error, "fault proxy: cannot open a flow socket");
                return Err(Event::SendFailed);
            }
        };
        let ordinal = self.flows.next_ordinal();
        let (to_upstream_rng, from_upstream_rng) = flow_streams(self.seed, ordinal);
        let reader = FlowReader {
            shared: Arc::clone(&self.shared),
            delays: self.delays.clone(),
            upstream_socket: Arc::clone(&socket),
            listen_socket: Arc::clone(&self.socket),
            upstream: self.upstream,
            client,
            rng: from_upstream_rng,
        };
        let reader = self.readers.spawn(reader.run());
        let flow = Flow {
            socket,
            to_upstream_rng,
            reader,
        };
        self.flows.insert(client, flow, now_ms);
        self.shared.counters.flow_opened();
        tracing::debug!(%client, ordinal, flows = self.flows.len(), "fault proxy: opened a flow");
        Ok(())
    }
}

/// Reads one flow's upstream socket and relays the upstream's replies to the client.
struct FlowReader {
    shared: Arc<Shared>,
    delays: DelaySender,
    upstream_socket: Arc<UdpSocket>,
    listen_socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    client: SocketAddr,
    rng: SplitMix64,
}

impl FlowReader {
    /// Runs until aborted (flow evicted or proxy stopped); each turn handles one datagram.
    async fn run(mut self) {
        let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
        loop {
            match self.upstream_socket.recv_from(&mut buffer).await {
                Ok((length, from)) if from == self.upstream => {
                    let route = Route {
                        direction: Direction::FromUpstream,
                        socket: &self.listen_socket,
                        to: self.client,
                    };
                    let bytes = &buffer[..length];
                    relay(&self.shared, &self.delays, &mut self.rng, route, bytes).await;
                }
                Ok((_, stranger)) => {
                    tracing::debug!(%stranger, "fault proxy: ignored a datagram not from upstream");
                }
                Err(error) => back_off_after(error, &self.upstream_socket).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_and_directions_get_distinct_streams() {
        let (mut a_up, mut a_down) = flow_streams(9, 0);
        let (mut b_up, _) = flow_streams(9, 1);
        let first = a_up.next_u64();
        assert_ne!(first, a_down.next_u64());
        assert_ne!(first, b_up.next_u64());
        assert_eq!(flow_streams(9, 0).0.next_u64(), first);
    }

    #[test]
    fn a_loopback_upstream_keeps_flow_sockets_on_loopback() {
        let v4: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let v6: SocketAddr = "[::1]:4000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        assert_eq!(upstream_side_bind_addr(v4), "127.0.0.1:0".parse().unwrap());
        assert_eq!(upstream_side_bind_addr(v6), "[::1]:0".parse().unwrap());
        assert_eq!(
            upstream_side_bind_addr(remote),
            "0.0.0.0:0".parse().unwrap()
        );
    }
}
