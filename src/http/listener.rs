//! The bridge's TCP accept loop, bounded: a cap on open connections (total and per
//! source address), a deadline for a request's headers (a new connection's first
//! request, or the next one on an idle keep-alive connection), and a file
//! descriptor budget shared with the WebSockets. At the total cap a new
//! connection displaces the oldest connection with no request in flight (an
//! idle or silent one), so connections that send nothing cannot lock clients
//! out; if every connection is busy, the new one is closed at once.
//!
//! HTTP/1.1 only (hyper's server connection, with upgrades for WebSockets): the
//! bridge's clients are JSON and WebSocket clients, and HTTP/1 is where hyper
//! enforces the header deadline.

use axum::body::Body;
use axum::extract::ConnectInfo;
use fixit_actors::config::ServerSection;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// File descriptors kept out of the HTTP budget: the database's files, the QUIC
/// and cluster sockets, logs, and what the process opens besides.
pub const DESCRIPTORS_RESERVED: u64 = 1_024;

/// Pause after an accept error (e.g. out of descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How the process's descriptors are shared between HTTP connections and
/// WebSockets (QUIC connections share a few UDP sockets and need none each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// The process's descriptor limit, after raising it to the hard limit.
    pub limit: u64,
    /// HTTP connections open at once.
    pub connections: u32,
    /// WebSockets open at once.
    pub websockets: u32,
}

impl DescriptorBudget {
    /// Raises the process's descriptor limit as far as it may go and fits the
    /// configured bounds into it (less [`DESCRIPTORS_RESERVED`]), shrinking both
    /// in proportion when they do not fit.
    pub fn for_server(server: &ServerSection) -> DescriptorBudget {
        let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read or raise the descriptor limit; assuming 1024");
            1_024
        });
        DescriptorBudget::fit(limit, server.http_connections.max, server.websockets_max)
    }

    /// The budget of `connections` and `websockets` within `limit` descriptors.
    pub fn fit(limit: u64, connections: u32, websockets: u32) -> DescriptorBudget {
        let available = limit.saturating_sub(DESCRIPTORS_RESERVED).max(2);
        let wanted = u64::from(connections) + u64::from(websockets);
        if wanted <= available {
            return DescriptorBudget {
                limit,
                connections,
                websockets,
            };
        }
        let share = |part: u32| (u64::from(part) * available / wanted).max(1) as u32;
        DescriptorBudget {
            limit,
            connections: share(connections),
            websockets: share(websockets),
        }
    }
}

/// The connection limits the accept loop applies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    pub(crate) max: u32,
    pub(crate) per_source_max: u32,
    pub(crate) header_timeout: Duration,
}

/// One admitted connection as the gate sees it.
struct Entry {
    source: IpAddr,
    /// Requests being answered on it now.
    busy: Arc<AtomicU32>,
    /// Told when the connection is displaced.
    evict: Arc<Notify>,
}

#[derive(Default)]
struct GateState {
    next_id: u64,
    /// Open connections in the order they were admitted.
    open: BTreeMap<u64, Entry>,
    per_source: HashMap<IpAddr, u32>,
}

/// Admission of connections against the caps.
pub(crate) struct Gate {
    limits: ConnectionLimits,
    state: Mutex<GateState>,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source address has `per_source_max` connections open.
    PerSource,
    /// `max` connections are open and every one is answering a request.
    Full,
}

impl Refusal {
    fn label(&self) -> &'static str {
        match self {
            Refusal::PerSource => "per_source",
            Refusal::Full => "full",
        }
    }
}

/// An admitted connection; dropping it frees its place.
pub(crate) struct Admission {
    gate: Arc<Gate>,
    id: u64,
    source: IpAddr,
    busy: Arc<AtomicU32>,
    evict: Arc<Notify>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        // A displaced connection was taken out of the counts when it was displaced.
        if state.open.remove(&self.id).is_some() {
            state.release_source(self.source);
        }
        metrics::gauge!("fixit_http_connections_open").set(state.open.len() as f64);
    }
}

/// Counts a request in flight on a connection while it lives.
struct Busy(Arc<AtomicU32>);

impl Busy {
    fn start(counter: &Arc<AtomicU32>) -> Busy {
        counter.fetch_add(1, Ordering::AcqRel);
        Busy(counter.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    pub(crate) fn new(limits: ConnectionLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            state: Mutex::new(GateState::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a connection from `source`, displacing the oldest connection with
    /// no request in flight when the total cap is reached.
    pub(crate) fn admit(self: &Arc<Gate>, source: IpAddr) -> Result<Admission, Refusal> {
        let mut state = self.lock();
        let from_source = state.per_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.limits.per_source_max {
            return Err(Refusal::PerSource);
        }
        if state.open.len() >= self.limits.max as usize {
            let idle = state
                .open
                .iter()
                .find(|(_, entry)| entry.busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)
                .ok_or(Refusal::Full)?;
            // Out of the count now; its task closes it and its admission's drop
            // finds it gone.
            if let Some(displaced) = state.open.remove(&idle) {
                displaced.evict.notify_one();
                state.release_source(displaced.source);
                metrics::counter!("fixit_http_connections_displaced_total").increment(1);
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let busy = Arc::new(AtomicU32::new(0));
        let evict = Arc::new(Notify::new());
        state.open.insert(
            id,
            Entry {
                source,
                busy: busy.clone(),
                evict: evict.clone(),
            },
        );
        *state.per_source.entry(source).or_default() += 1;
        metrics::gauge!("fixit_http_connections_open").set(state.open.len() as f64);
        Ok(Admission {
            gate: self.clone(),
            id,
            source,
            busy,
            evict,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().open.len()
    }
}

impl GateState {
    fn release_source(&mut self, source: IpAddr) {
        if let Some(count) = self.per_source.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&source);
            }
        }
    }
}

/// Accepts connections until `stopping`, then lets each finish its request in
/// flight and returns once all have closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    gate: Arc<Gate>,
    stopping: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let stop = stopped(stopping.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match gate.admit(peer.ip()) {
                    Ok(admission) => {
                        let header_timeout = gate.limits.header_timeout;
                        connections.spawn(connection(
                            stream,
                            peer,
                            app.clone(),
                            admission,
                            header_timeout,
                            stopping.clone(),
                        ));
                    }
                    Err(refusal) => {
                        metrics::counter!(
                            "fixit_http_connections_refused_total",
                            "reason" => refusal.label()
                        )
                        .increment(1);
                        drop(stream);
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "HTTP accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Resolves once the bridge is told to stop (or its sender is gone).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Serves one connection until it closes, is displaced, or the bridge stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    admission: Admission,
    header_timeout: Duration,
    stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let busy = admission.busy.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        let busy = Busy::start(&busy);
        async move {
            let answer = app.oneshot(request.map(Body::new)).await;
            drop(busy);
            answer
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let serving = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(serving);
    let evict = admission.evict.clone();
    let stop = stopped(stopping);
    tokio::pin!(stop);
    let mut closing = false;
    loop {
        tokio::select! {
            result = serving.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "HTTP connection ended with an error");
                }
                break;
            }
            () = evict.notified(), if !closing => {
                closing = true;
                serving.as_mut().graceful_shutdown();
            }
            () = &mut stop, if !closing => {
                closing = true;
                serving.as_mut().graceful_shutdown();
            }
        }
    }
    drop(admission);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: u32, per_source_max: u32) -> Arc<Gate> {
        Gate::new(ConnectionLimits {
            max,
            per_source_max,
            header_timeout: Duration::from_secs(1),
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_source_at_its_cap_is_refused_and_others_are_not() {
        let gate = gate(10, 2);
        let _a = gate.admit(ip(2)).unwrap();
        let b = gate.admit(ip(2)).unwrap();
        assert_eq!(gate.admit(ip(2)).err(), Some(Refusal::PerSource));
        let _c = gate.admit(ip(3)).unwrap();
        drop(b);
        let _d = gate.admit(ip(2)).expect("a place freed");
        assert_eq!(gate.open(), 3);
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_is_displaced() {
        let gate = gate(2, 10);
        let first = gate.admit(ip(2)).unwrap();
        let second = gate.admit(ip(3)).unwrap();
        let working = Busy::start(&first.busy);
        let third = gate.admit(ip(4)).expect("displaces the idle one");
        assert_eq!(gate.open(), 2);
        // The second (idle) was displaced, not the first (answering a request).
        let state = gate.lock();
        assert!(state.open.contains_key(&first.id));
        assert!(!state.open.contains_key(&second.id));
        assert!(state.open.contains_key(&third.id));
        assert_eq!(state.per_source.get(&ip(3)), None);
        drop(state);
        drop(second);
        assert_eq!(
            gate.open(),
            2,
            "the displaced one's drop frees nothing twice"
        );
        let _fourth_busy = Busy::start(&third.busy);
        assert_eq!(gate.admit(ip(5)).err(), Some(Refusal::Full));
        drop(working);
    }

    #[test]
    fn the_budget_shrinks_both_shares_to_fit_the_descriptors() {
        let fits = DescriptorBudget::fit(65_536, 8_192, 10_000);
        assert_eq!((fits.connections, fits.websockets), (8_192, 10_000));
        let tight = DescriptorBudget::fit(10_240, 8_192, 10_000);
        assert!(u64::from(tight.connections + tight.websockets) <= 10_240 - DESCRIPTORS_RESERVED);
        assert!(tight.connections > 0 && tight.websockets > 0);
    }
}
