//! The fault proxy: a UDP relay between nodes (QUIC runs over UDP) that drops,
//! delays and cuts datagrams on command, with every random choice drawn from a seed.
//!
//! ```text
//!  client A ──┐                  ┌── flow socket A ──┐
//!             ├─► listen socket ─┤                   ├─► upstream
//!  client B ──┘   (local_addr)   └── flow socket B ──┘
//! ```
//!
//! * **Flows.** Each distinct client source address gets its own socket towards the
//!   upstream, so the upstream sees one peer per client (QUIC's peer-address checks
//!   and connection migration keep working), and the upstream's replies on that
//!   socket go back to that client. At most [`ProxyConfig::flows_max`] flows; when
//!   the table is full the least recently active flow is evicted if its client has
//!   sent nothing for [`ProxyConfig::flow_idle_ms`], otherwise the new client's
//!   datagram is dropped (counted as `dropped_overflow`).
//! * **Faults** ([`Faults`], changed at any time with [`FaultProxy::set`],
//!   [`FaultProxy::partition`], [`FaultProxy::heal`] or a cloned [`FaultControl`]):
//!   each datagram read is, in this order, dropped if its direction is [`Cut`],
//!   dropped with probability `loss_percent`, or delayed by `delay_ms ± jitter_ms`.
//! * **Delays** never block the relay: delayed datagrams wait in one queue task,
//!   sent when due. Jitter therefore **reorders** datagrams (as real networks do);
//!   with no jitter they keep their order. Datagrams forwarded at once can overtake
//!   ones still waiting from an earlier, longer delay. A cut in force when a delay
//!   ends drops the datagram (`dropped_cut`). At most [`ProxyConfig::delayed_max`]
//!   datagrams wait; beyond that they are dropped (`dropped_overflow`).
//! * **Seeded.** Flow number *n* (in order of first datagram) draws from its own
//!   two streams of the seed, one per direction, and every datagram draws the same
//!   amount whatever the faults. So the same seed, the same datagrams per flow and
//!   the same fault changes at the same points give the same decisions, however the
//!   tasks interleave. Which datagrams the operating system itself drops (full
//!   socket buffers) is outside the proxy's control.
//! * **Counters** per direction ([`ProxyCounts`]): `faults_injected` for the chaos
//!   report is losses + cuts + delays.
//! * **Stop.** [`FaultProxy::stop`] ends every task and closes every socket;
//!   dropping the proxy aborts them.

mod control;
mod counters;
mod delay;
mod faults;
mod flows;
mod relay;
mod rng;
mod verdict;

pub use control::FaultControl;
pub use counters::{DirectionCounts, ProxyCounts};
pub use faults::{Cut, Direction, Faults, DELAY_MS_MAX};

use control::Shared;
use delay::DelayQueue;
use relay::{Listener, ListenerParts};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Default [`ProxyConfig::flows_max`]: a chaos cluster has a handful of nodes, each
/// one QUIC endpoint, so a few dozen flows per proxy leave room for restarts.
pub const FLOWS_MAX_DEFAULT: usize = 64;
/// The most flows a proxy may be configured for: each holds a socket, a task and
/// a 64 KiB read buffer.
pub const FLOWS_MAX_LIMIT: usize = 4_096;
/// Default [`ProxyConfig::flow_idle_ms`]: QUIC peers send at least keep-alives or
/// acknowledgements well within this while a connection lives.
pub const FLOW_IDLE_MS_DEFAULT: u64 = 30_000;
/// Default [`ProxyConfig::delayed_max`]: a few seconds of node-to-node traffic.
pub const DELAYED_MAX_DEFAULT: usize = 4_096;
/// The most datagrams a delay queue may be configured to hold (each up to 64 KiB).
pub const DELAYED_MAX_LIMIT: usize = 65_536;

/// Why the proxy refused a request or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Faults out of range (caller's fault); the faults in force did not change.
    #[error("invalid faults, nothing changed: {reason}")]
    InvalidFaults {
        /// Which field is out of range, and its bounds.
        reason: String,
    },
    /// A configuration out of range (caller's fault); nothing was started.
    #[error("invalid fault proxy config: {reason}")]
    InvalidConfig {
        /// Which field is out of range, and its bounds.
        reason: String,
    },
    /// The listening socket could not be bound (address in use, not local, …);
    /// nothing was started.
    #[error("cannot bind the fault proxy to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Where a proxy listens, where it forwards, its seed and its bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The address clients send to (port 0: any free port, see
    /// [`FaultProxy::local_addr`]).
    pub listen: SocketAddr,
    /// The one address every datagram from clients is forwarded to.
    pub upstream: SocketAddr,
    /// The seed of every random choice; log it so a run can be replayed.
    pub seed: u64,
    /// The most client flows at once (1 to [`FLOWS_MAX_LIMIT`]).
    pub flows_max: usize,
    /// How long a flow's client must have been silent before the flow may be
    /// evicted to make room, in milliseconds.
    pub flow_idle_ms: u64,
    /// The most datagrams waiting in the delay queue (1 to [`DELAYED_MAX_LIMIT`]).
    pub delayed_max: usize,
}

impl ProxyConfig {
    /// A proxy to `upstream` with `seed`, listening on a free port of the loopback
    /// address of the upstream's family, with the default bounds.
    pub fn new(upstream: SocketAddr, seed: u64) -> ProxyConfig {
        let loopback = match upstream.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        ProxyConfig {
            listen: SocketAddr::new(loopback, 0),
            upstream,
            seed,
            flows_max: FLOWS_MAX_DEFAULT,
            flow_idle_ms: FLOW_IDLE_MS_DEFAULT,
            delayed_max: DELAYED_MAX_DEFAULT,
        }
    }

    /// Checks the bounds and that the upstream has a port.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let invalid = |reason: String| Err(ProxyError::InvalidConfig { reason });
        if !(1..=FLOWS_MAX_LIMIT).contains(&self.flows_max) {
            return invalid(format!(
                "flows_max {} is not in 1..={FLOWS_MAX_LIMIT}",
                self.flows_max
            ));
        }
        if !(1..=DELAYED_MAX_LIMIT).contains(&self.delayed_max) {
            return invalid(format!(
                "delayed_max {} is not in 1..={DELAYED_MAX_LIMIT}",
                self.delayed_max
            ));
        }
        if self.upstream.port() == 0 {
            return invalid(format!("upstream {} has no port", self.upstream));
        }
        Ok(())
    }
}

/// A running fault proxy (see the [module docs](self)). Stop it with
/// [`FaultProxy::stop`]; dropping it aborts its tasks.
pub struct FaultProxy {
    control: FaultControl,
    config: ProxyConfig,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl FaultProxy {
    /// Binds `config.listen` and starts relaying to `config.upstream` with `faults`.
    /// Must be called within a tokio runtime.
    pub async fn start(config: ProxyConfig, faults: Faults) -> Result<FaultProxy, ProxyError> {
        config.validate()?;
        faults.validate()?;
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = socket.local_addr().map_err(|source| ProxyError::Bind {
            addr: config.listen,
            source,
        })?;
        let shared = Arc::new(Shared::new(faults, config.delayed_max));
        let (delay_queue, delays) = DelayQueue::new(Arc::clone(&shared));
        let listener = Listener::new(ListenerParts {
            shared: Arc::clone(&shared),
            socket: Arc::new(socket),
            upstream: config.upstream,
            seed: config.seed,
            delays,
            flows_max: config.flows_max,
            flow_idle_ms: config.flow_idle_ms,
        });
        let (shutdown, shutdown_signal) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(listener.run(shutdown_signal.clone())),
            tokio::spawn(delay_queue.run(shutdown_signal)),
        ];
        tracing::debug!(
            listen = %local_addr,
            upstream = %config.upstream,
            seed = config.seed,
            ?faults,
            "fault proxy started"
        );
        Ok(FaultProxy {
            control: FaultControl::new(shared),
            config,
            local_addr,
            shutdown,
            tasks,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address datagrams are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.config.upstream
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// A handle to change faults and read counters from other tasks.
    pub fn control(&self) -> FaultControl {
        self.control.clone()
    }

    /// Replaces the faults (see [`FaultControl::set`]).
    pub fn set(&self, faults: Faults) -> Result<(), ProxyError> {
        self.control.set(faults)
    }

    /// The faults in force now.
    pub fn faults(&self) -> Faults {
        self.control.faults()
    }

    /// Cuts both directions (see [`FaultControl::partition`]).
    pub fn partition(&self) {
        self.control.partition();
    }

    /// Removes any cut (see [`FaultControl::heal`]).
    pub fn heal(&self) {
        self.control.heal();
    }

    /// The counters now.
    pub fn counts(&self) -> ProxyCounts {
        self.control.counts()
    }

    /// Stops relaying, waits until every task has ended and every socket is
    /// closed, and returns the final counts. Delayed datagrams still waiting are
    /// discarded (they stay counted in `delayed_waiting`).
    pub async fn stop(mut self) -> ProxyCounts {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            if let Err(error) = task.await {
                tracing::warn!(%error, "fault proxy task ended abnormally");
            }
        }
        let counts = self.counts();
        tracing::debug!(listen = %self.local_addr, ?counts, "fault proxy stopped");
        counts
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
