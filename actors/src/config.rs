//! Node configuration: every limit explicit, units in the names, checked at start.

use fixit_protocol::area::{ServiceArea, Zone};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A configuration file could not be used; says which file, which field and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not valid TOML for a node config (unknown or missing field, wrong type).
    #[error("{file}: {reason}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The parser's reason, which names the field and line.
        reason: String,
    },
    /// A field has a value outside its allowed range.
    #[error("{file}: field `{field}`: {reason}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The dotted field name, e.g. `dispatch.offer_timeout_ms`.
        field: String,
        /// What is wrong with the value.
        reason: String,
    },
}

/// Everything a node needs to know at start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Identity and storage location.
    pub node: NodeSection,
    /// Bounds on work in flight.
    pub limits: LimitsSection,
    /// Restart policy of the supervision tree.
    pub supervision: SupervisionSection,
    /// When idle entities are stopped.
    pub passivation: PassivationSection,
    /// How jobs are offered to providers.
    pub dispatch: DispatchSection,
    /// The platform's fee.
    pub fees: FeesSection,
    /// The geo index.
    pub geo: GeoSection,
    /// Durable writes.
    pub storage: StorageSection,
    /// Client listeners (QUIC and HTTP).
    pub server: ServerSection,
    /// Bearer tokens.
    pub auth: AuthSection,
    /// Per-principal and per-address request rates.
    pub rate_limits: RateLimitsSection,
    /// Links to the other nodes of a cluster; absent on a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSection>,
}

/// Longest node name in a cluster, in characters: one DNS label.
pub const CLUSTER_NAME_CHARS_MAX: usize = 63;

/// Most seeds one node names: each is announced to at start.
pub const CLUSTER_PEERS_MAX: usize = 256;

/// Default [`MembershipSection::probe_interval_ms`].
pub const PROBE_INTERVAL_MS_DEFAULT: u64 = 300;
/// Default [`MembershipSection::probe_timeout_ms`].
pub const PROBE_TIMEOUT_MS_DEFAULT: u64 = 100;
/// Default [`MembershipSection::suspect_timeout_ms`].
pub const SUSPECT_TIMEOUT_MS_DEFAULT: u64 = 700;
/// Default [`MembershipSection::gossip_interval_ms`].
pub const GOSSIP_INTERVAL_MS_DEFAULT: u64 = 100;
/// Default [`MembershipSection::announce_interval_ms`].
pub const ANNOUNCE_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Default [`MembershipSection::datagram_copies`].
pub const DATAGRAM_COPIES_DEFAULT: u32 = 2;

/// Most region prefixes: the table is searched on every placement.
pub const CLUSTER_REGIONS_MAX: usize = 100_000;

/// Links to the other nodes of a cluster (mutual TLS over QUIC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This node's cluster name, as in its certificate: 1–63 of `[a-z0-9-]`.
    pub name: String,
    /// UDP address of the node-link listener.
    pub listen: SocketAddr,
    /// The link address other nodes learn for this one through membership;
    /// default `listen`. Must be a concrete address (not `0.0.0.0` or `::`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<SocketAddr>,
    /// Directory holding `ca-cert.pem`, `<name>-cert.pem` and `<name>-key.pem`.
    pub certs_dir: PathBuf,
    /// Seeds: nodes this one announces itself to at start, name → link address
    /// (this node excluded; the name is checked against the certificate). The
    /// rest of the cluster is learnt from them through membership. A node
    /// reached at a configured address is always reached there, whatever it
    /// advertises (a relay or a fault proxy can sit in between). Files may still
    /// call the table `[cluster.peers]`.
    #[serde(alias = "peers")]
    pub seeds: BTreeMap<String, SocketAddr>,
    /// Geohash prefix → the node that owns that region. The nodes named here are
    /// the cluster's data nodes (wallet homes); a member named nowhere here
    /// serves clients and forwards everything.
    pub regions: BTreeMap<String, String>,
    /// Calls this node may have in flight to one peer; past it, `Busy`.
    pub calls_per_peer_max: u32,
    /// Longest a call to a peer may take, in ms.
    pub call_timeout_ms: u64,
    /// The failure detector's timeouts. Optional in files.
    #[serde(default)]
    pub membership: MembershipSection,
    /// Replicas of each wallet bucket: 1 keeps every wallet on one node (its
    /// home, by rendezvous hashing); 3 (or more) replicates each bucket on that
    /// many data nodes with Raft, so no one node's death blocks or loses money.
    /// Optional in files; default 1.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: u32,
    /// Wallet buckets (shards) when replicated: wallets fall into buckets by a
    /// stable hash of their id, and buckets are what is placed and led. Fixed for
    /// a cluster's life (changing it moves wallets). Optional in files; default 8.
    #[serde(default = "default_wallet_buckets")]
    pub wallet_buckets: u32,
    /// A wallet shard's replica builds a snapshot after this many log entries
    /// (a tenth as many are kept behind it, so a replica a little behind
    /// catches up from the log). Optional in files; default 20000.
    #[serde(default = "default_shard_snapshot_entries")]
    pub shard_snapshot_entries: u64,
}

/// Default log entries between two snapshots of a wallet shard.
pub fn default_shard_snapshot_entries() -> u64 {
    20_000
}

/// Default replicas of a wallet bucket: one (no replication).
pub fn default_replication_factor() -> u32 {
    1
}

/// Default number of wallet buckets.
pub fn default_wallet_buckets() -> u32 {
    8
}

/// Most replicas of a wallet bucket.
pub const REPLICATION_FACTOR_MAX: u32 = 7;

/// Most wallet buckets.
pub const WALLET_BUCKETS_MAX: u32 = 256;

/// The failure detector (SWIM): how often members are probed and how long a
/// suspected member has to refute before it is declared down. A crashed peer is
/// declared down after about `2 × probe_interval_ms + suspect_timeout_ms` at
/// worst in a three-node cluster (each survivor probes it at least every second
/// round).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipSection {
    /// One member is probed per interval, in ms.
    #[serde(default = "probe_interval_ms_default")]
    pub probe_interval_ms: u64,
    /// A direct probe unanswered this long starts indirect probes, in ms; below
    /// `probe_interval_ms / 2`.
    #[serde(default = "probe_timeout_ms_default")]
    pub probe_timeout_ms: u64,
    /// A suspected member that does not refute within this is declared down, in
    /// ms; at least `probe_interval_ms`.
    #[serde(default = "suspect_timeout_ms_default")]
    pub suspect_timeout_ms: u64,
    /// Membership updates are also gossiped to a few members this often, in ms.
    #[serde(default = "gossip_interval_ms_default")]
    pub gossip_interval_ms: u64,
    /// Seeds and down members are announced to this often, so a node that
    /// started alone, or a healed partition, finds the cluster again, in ms.
    #[serde(default = "announce_interval_ms_default")]
    pub announce_interval_ms: u64,
    /// Each membership packet is sent this many times, 1 or 2: the second copy
    /// goes on the other QUIC connection between the two nodes (the one the peer
    /// opened), so it travels in another packet. With 20% of datagrams lost, a
    /// probe and its answer both arrive 64% of the time with one copy and 92%
    /// with two, so a live member is rarely suspected.
    #[serde(default = "datagram_copies_default")]
    pub datagram_copies: u32,
}

fn probe_interval_ms_default() -> u64 {
    PROBE_INTERVAL_MS_DEFAULT
}
fn probe_timeout_ms_default() -> u64 {
    PROBE_TIMEOUT_MS_DEFAULT
}
fn suspect_timeout_ms_default() -> u64 {
    SUSPECT_TIMEOUT_MS_DEFAULT
}
fn gossip_interval_ms_default() -> u64 {
    GOSSIP_INTERVAL_MS_DEFAULT
}
fn announce_interval_ms_default() -> u64 {
    ANNOUNCE_INTERVAL_MS_DEFAULT
}
fn datagram_copies_default() -> u32 {
    DATAGRAM_COPIES_DEFAULT
}

impl Default for MembershipSection {
    fn default() -> MembershipSection {
        MembershipSection {
            probe_interval_ms: PROBE_INTERVAL_MS_DEFAULT,
            probe_timeout_ms: PROBE_TIMEOUT_MS_DEFAULT,
            suspect_timeout_ms: SUSPECT_TIMEOUT_MS_DEFAULT,
            gossip_interval_ms: GOSSIP_INTERVAL_MS_DEFAULT,
            announce_interval_ms: ANNOUNCE_INTERVAL_MS_DEFAULT,
            datagram_copies: DATAGRAM_COPIES_DEFAULT,
        }
    }
}

impl MembershipSection {
    /// Checks the timeouts; the error is `(field, reason)` under `cluster.membership`.
    fn check(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, reason: &str| {
            Err((format!("cluster.membership.{field}"), reason.to_owned()))
        };
        let in_range = |value: u64| (10..=60_000).contains(&value);
        if !in_range(self.probe_interval_ms) {
            return bad("probe_interval_ms", "must be 10 to 60000 ms");
        }
        if self.probe_timeout_ms == 0 || self.probe_timeout_ms * 2 > self.probe_interval_ms {
            return bad(
                "probe_timeout_ms",
                "must be above 0 and at most half of probe_interval_ms",
            );
        }
        if !in_range(self.suspect_timeout_ms) || self.suspect_timeout_ms < self.probe_interval_ms {
            return bad(
                "suspect_timeout_ms",
                "must be 10 to 60000 ms and at least probe_interval_ms",
            );
        }
        if !in_range(self.gossip_interval_ms) {
            return bad("gossip_interval_ms", "must be 10 to 60000 ms");
        }
        if !in_range(self.announce_interval_ms) {
            return bad("announce_interval_ms", "must be 10 to 60000 ms");
        }
        if !(1..=2).contains(&self.datagram_copies) {
            return bad("datagram_copies", "must be 1 or 2");
        }
        Ok(())
    }
}

/// Whether `name` looks like a node name (the cluster crate checks it fully at start).
fn is_plain_node_name(name: &str) -> bool {
    (1..=CLUSTER_NAME_CHARS_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `prefix` is 1–12 geohash characters (base32 without a, i, l, o).
fn is_geohash_prefix(prefix: &str) -> bool {
    (1..=12).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b"0123456789bcdefghjkmnpqrstuvwxyz".contains(&b))
}

impl ClusterSection {
    /// Checks the section; the error is `(field, reason)`.
    fn check(&self, server: &ServerSection) -> Result<(), (String, String)> {
        let bad = |field: &str, reason: String| Err((format!("cluster.{field}"), reason));
        if !is_plain_node_name(&self.name) {
            return bad(
                "name",
                "must be 1 to 63 of [a-z0-9-], no hyphen at either end".into(),
            );
        }
        if self.listen == server.quic_listen || self.listen == server.http_listen {
            return bad(
                "listen",
                "must differ from server.quic_listen and server.http_listen".into(),
            );
        }
        if self.certs_dir.as_os_str().is_empty() {
            return bad("certs_dir", "must not be empty".into());
        }
        if self
            .advertise
            .is_some_and(|addr| addr.ip().is_unspecified() || addr.port() == 0)
        {
            return bad("advertise", "must be a concrete address and port".into());
        }
        if self.advertise.is_none()
            && (self.listen.ip().is_unspecified() || self.listen.port() == 0)
        {
            return bad(
                "advertise",
                "needed when listen is a wildcard address or port 0".into(),
            );
        }
        if self.seeds.len() > CLUSTER_PEERS_MAX {
            return bad("seeds", format!("at most {CLUSTER_PEERS_MAX} seeds"));
        }
        if let Some(name) = self.seeds.keys().find(|name| !is_plain_node_name(name)) {
            return bad("seeds", format!("{name:?} is not 1 to 63 of [a-z0-9-]"));
        }
        if self.seeds.contains_key(&self.name) {
            return bad("seeds", format!("must not list this node ({})", self.name));
        }
        if self.regions.len() > CLUSTER_REGIONS_MAX {
            return bad("regions", format!("at most {CLUSTER_REGIONS_MAX} prefixes"));
        }
        if let Some(prefix) = self.regions.keys().find(|p| !is_geohash_prefix(p)) {
            return bad(
                "regions",
                format!("{prefix:?} is not a 1 to 12 character geohash prefix"),
            );
        }
        if let Some((prefix, node)) = self
            .regions
            .iter()
            .find(|(_, node)| !is_plain_node_name(node))
        {
            return bad(
                "regions",
                format!("{prefix} names {node:?}, not 1 to 63 of [a-z0-9-]"),
            );
        }
        if !(1..=100_000).contains(&self.calls_per_peer_max) {
            return bad("calls_per_peer_max", "must be 1 to 100000".into());
        }
        if !(1..=600_000).contains(&self.call_timeout_ms) {
            return bad("call_timeout_ms", "must be 1 to 600000".into());
        }
        if !(1..=REPLICATION_FACTOR_MAX).contains(&self.replication_factor) {
            return bad(
                "replication_factor",
                format!("must be 1 to {REPLICATION_FACTOR_MAX}"),
            );
        }
        if !(1..=WALLET_BUCKETS_MAX).contains(&self.wallet_buckets) {
            return bad(
                "wallet_buckets",
                format!("must be 1 to {WALLET_BUCKETS_MAX}"),
            );
        }
        if !(10..=10_000_000).contains(&self.shard_snapshot_entries) {
            return bad("shard_snapshot_entries", "must be 10 to 10000000".into());
        }
        self.membership.check()
    }
}

/// Client listeners.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// QUIC listener for the client protocol (ALPN `fixit/1`).
    pub quic_listen: std::net::SocketAddr,
    /// UDP sockets (quinn endpoints) sharing `quic_listen` through `SO_REUSEPORT`;
    /// the kernel spreads connections over them by address, so each socket's
    /// receive loop carries a share of the packets (one socket's loop falls behind
    /// under thousands of connections). A client whose address changes mid-
    /// connection may land on another socket and must reconnect. 1 on systems
    /// without `SO_REUSEPORT`. Optional in files; default
    /// [`QUIC_ENDPOINTS_DEFAULT`].
    #[serde(default = "quic_endpoints_default")]
    pub quic_endpoints: u32,
    /// HTTP bridge listener (JSON, WebSocket, OpenAPI, metrics, dashboard).
    pub http_listen: std::net::SocketAddr,
    /// Largest client frame accepted, in bytes; checked before allocating.
    pub frame_bytes_max: u32,
    /// Client connections at once; more are refused.
    pub connections_max: u32,
    /// Concurrent request streams one QUIC connection may open.
    pub streams_per_connection_max: u32,
    /// Requests in flight across the node before `Busy`.
    pub requests_inflight_max: u32,
    /// Largest HTTP request body, in bytes.
    pub http_body_bytes_max: u32,
    /// WebSockets of pushes (`GET /v1/events`) the HTTP bridge keeps open at once;
    /// more are answered `busy`. Each is one TCP connection (a file descriptor) and
    /// a few KiB of buffers. Optional in files; default [`WEBSOCKETS_MAX_DEFAULT`].
    #[serde(default = "websockets_max_default")]
    pub websockets_max: u32,
    /// Bounds on the HTTP bridge's TCP connections. Optional in files
    /// (`[server.http_connections]`); defaults in [`HttpConnectionsSection`].
    #[serde(default)]
    pub http_connections: HttpConnectionsSection,
    /// Time given to in-flight requests at shutdown.
    pub shutdown_grace_ms: u64,
    /// TLS certificate (PEM) of the QUIC listener; made (self-signed) if missing.
    pub tls_cert_file: PathBuf,
    /// Its private key (PEM); made if missing.
    pub tls_key_file: PathBuf,
    /// Serve the dashboard's live data without a token (demo only); otherwise the
    /// dashboard needs an admin token.
    pub dashboard_open: bool,
}

/// Bounds on the HTTP bridge's TCP connections, so that connections which send
/// nothing, or send slowly, cannot take the bridge's descriptors or lock clients
/// out. With the WebSockets' bound they share the process's descriptor limit
/// (raised to its hard limit at start); when both do not fit, both shrink in
/// proportion and the node says so in its log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConnectionsSection {
    /// TCP connections open at once (a WebSocket, once upgraded, counts against
    /// `websockets_max` instead). At the bound a new connection displaces the
    /// oldest connection with no request in flight, or is closed at once if
    /// every connection is answering one.
    pub max: u32,
    /// TCP connections open at once from one source address; more are closed at once.
    pub per_source_max: u32,
    /// A connection waiting for a request's headers — its first request, or the
    /// next one while idle between requests — longer than this is closed, in ms.
    pub header_timeout_ms: u64,
    /// Reading one request's body longer than this is answered 408, in ms.
    pub body_timeout_ms: u64,
}

impl Default for HttpConnectionsSection {
    fn default() -> HttpConnectionsSection {
        HttpConnectionsSection {
            max: 8_192,
            per_source_max: 512,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
        }
    }
}

/// Default number of UDP sockets of the QUIC listener.
pub const QUIC_ENDPOINTS_DEFAULT: u32 = 8;

fn quic_endpoints_default() -> u32 {
    QUIC_ENDPOINTS_DEFAULT
}

/// Default bound of the HTTP bridge's open WebSockets.
pub const WEBSOCKETS_MAX_DEFAULT: u32 = 10_000;

fn websockets_max_default() -> u32 {
    WEBSOCKETS_MAX_DEFAULT
}

/// Bearer tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// File holding the node's token-signing secret (hex); made if missing.
    pub secret_file: PathBuf,
    /// Longest token lifetime `fixit token issue` grants.
    pub token_ttl_max_s: u64,
    /// Clock leeway on a token's `exp` and `nbf`, in seconds. Optional in
    /// files; default 30.
    #[serde(default = "leeway_s_default")]
    pub leeway_s: u64,
    /// An external identity provider whose JSON Web Tokens are accepted beside
    /// the node's own. Optional (`[auth.external]`).
    #[serde(default)]
    pub external: Option<ExternalAuthSection>,
}

fn leeway_s_default() -> u64 {
    30
}

/// An external identity provider: its public keys and what its tokens must say.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalAuthSection {
    /// Its JSON Web Key Set (public keys, each with `kid` and `alg`), read at start.
    pub jwks_file: PathBuf,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its tokens must carry for this marketplace.
    pub audience: String,
    /// The claim holding the role (`customer`, `provider` or `admin`).
    #[serde(default = "role_claim_default")]
    pub role_claim: String,
    /// The claim holding the numeric subject id (a number or a string of digits).
    #[serde(default = "subject_claim_default")]
    pub subject_claim: String,
}

fn role_claim_default() -> String {
    "role".to_owned()
}

fn subject_claim_default() -> String {
    "sub".to_owned()
}

/// Request rates: a token bucket per principal and per source address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsSection {
    /// Sustained requests per second of one principal.
    pub principal_per_s: u32,
    /// Burst of one principal.
    pub principal_burst: u32,
    /// Sustained requests per second from one source address.
    pub address_per_s: u32,
    /// Burst from one source address.
    pub address_burst: u32,
}

/// Identity and storage location.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's name, unique in a cluster.
    pub id: String,
    /// Directory of the node's sled database; relative paths are relative to the process.
    pub data_dir: PathBuf,
}

/// Bounds on work in flight: past them a command is answered `Busy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Commands queued or running for one entity (wallet, provider, job, session).
    pub entity_inflight_max: u32,
    /// Commands in flight on the whole node.
    pub node_inflight_max: u32,
    /// Retry hint given with `Busy`.
    pub busy_retry_after_ms: u64,
    /// How long a caller waits for an entity's answer before reporting `Unavailable`.
    pub call_timeout_ms: u64,
    /// Events a customer session keeps for a client that reconnects.
    pub session_events_max: u32,
    /// Lateness of the node's runtime (how long a ready task waits for a thread),
    /// in ms, past which requests that start new work are answered `Busy` while
    /// those finishing admitted work are served (0: never shed). Optional in
    /// files; default [`OVERLOAD_LAG_MS_DEFAULT`].
    #[serde(default = "overload_lag_ms_default")]
    pub overload_lag_ms: u64,
}

/// Default shedding threshold: a node whose ready tasks wait this long for a
/// thread is past its capacity, and more work would only lengthen every wait.
pub const OVERLOAD_LAG_MS_DEFAULT: u64 = 100;

/// Largest accepted `limits.overload_lag_ms`.
pub const OVERLOAD_LAG_MS_MAX: u64 = 60_000;

fn overload_lag_ms_default() -> u64 {
    OVERLOAD_LAG_MS_DEFAULT
}

/// Restart policy: one-for-one, N restarts in a window, then escalate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionSection {
    /// Restarts a branch (wallets, providers, jobs, sessions, services) allows in the window.
    pub branch_restarts_max: u32,
    /// The branch's window.
    pub branch_restart_window_ms: u64,
    /// Branch restarts the root allows in its window before the node gives up.
    pub root_restarts_max: u32,
    /// The root's window.
    pub root_restart_window_ms: u64,
}

/// Idle entity actors stop and are reactivated from storage on their next command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassivationSection {
    /// Idle time after which an entity actor stops.
    pub entity_idle_ms: u64,
    /// How often each branch looks for idle entities.
    pub sweep_interval_ms: u64,
}

/// Job dispatch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSection {
    /// Time a provider has to accept an offer.
    pub offer_timeout_ms: u64,
    /// Offers made for one job before it expires.
    pub offer_tries_max: u32,
    /// Furthest distance at which a provider is offered a job.
    pub search_radius_m: f64,
    /// Candidates fetched per search.
    pub candidates_per_search: u32,
    /// How often offer deadlines are checked.
    pub deadline_tick_ms: u64,
    /// Largest job price accepted, in minor units.
    pub price_max: i64,
}

/// The platform's fee.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeesSection {
    /// Fee taken on capture, in basis points (1/100 of a percent).
    pub platform_fee_bps: u32,
}

/// The geo index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoSection {
    /// Geohash precision of the index cells (6 is about 1.2 km by 0.6 km).
    pub cell_precision: usize,
    /// Service areas put at every start (`[[geo.service_areas]]`: name, skills,
    /// a GeoJSON `geometry`); an area of the same name put at run time is
    /// replaced by this one at the next start. Optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_areas: Vec<ServiceArea>,
    /// Zones put at every start (`[[geo.zones]]`: name, multiplier_pct, geometry).
    /// Optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<Zone>,
}

/// Durable writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Acknowledgements one group-commit flush may release at most.
    pub group_commit_batch_max: u32,
    /// Acknowledgements waiting for a flush before commands are answered `Busy`.
    pub group_commit_queue_max: u32,
    /// Least time between the starts of two group-commit flushes while
    /// acknowledgements come concurrently, in ms: under a steady write load at
    /// most one fsync per interval, shared by every acknowledgement queued
    /// meanwhile (0: flush again as soon as one ends). An acknowledgement waits at
    /// most this much longer; a lone one is never held back. Optional in files;
    /// default [`GROUP_COMMIT_MIN_INTERVAL_MS_DEFAULT`].
    #[serde(default = "group_commit_min_interval_ms_default")]
    pub group_commit_min_interval_ms: u64,
    /// sled's page cache size.
    pub cache_bytes: u64,
    /// Longest a provider's stored position lags its reported one, in ms: moves are
    /// soft state, written at most this often (0: every move). Status changes are
    /// written at once. Optional in files; default
    /// [`PROVIDER_POSITION_WRITE_INTERVAL_MS_DEFAULT`].
    #[serde(default = "provider_position_write_interval_ms_default")]
    pub provider_position_write_interval_ms: u64,
}

/// Default least time between group-commit flushes: at most 500 fsyncs a second
/// under load, at most 2 ms added to an acknowledgement.
pub const GROUP_COMMIT_MIN_INTERVAL_MS_DEFAULT: u64 = 2;

/// Largest accepted `storage.group_commit_min_interval_ms`.
pub const GROUP_COMMIT_MIN_INTERVAL_MS_MAX: u64 = 1_000;

fn group_commit_min_interval_ms_default() -> u64 {
    GROUP_COMMIT_MIN_INTERVAL_MS_DEFAULT
}

/// Default lag of a stored provider position: at one update per second a provider
/// is written once per 5 updates, and a restarted one is corrected by its next
/// update anyway.
pub const PROVIDER_POSITION_WRITE_INTERVAL_MS_DEFAULT: u64 = 5_000;

/// Longest allowed lag of a stored provider position (an hour).
pub const PROVIDER_POSITION_WRITE_INTERVAL_MS_MAX: u64 = 3_600_000;

fn provider_position_write_interval_ms_default() -> u64 {
    PROVIDER_POSITION_WRITE_INTERVAL_MS_DEFAULT
}

impl NodeConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_owned(),
            reason: error.to_string(),
        })?;
        NodeConfig::parse(&text, path)
    }

    /// Parses and validates config text; `file` is named in errors.
    pub fn parse(text: &str, file: &Path) -> Result<NodeConfig, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
            file: file.to_owned(),
            reason: error.to_string().trim_end().to_owned(),
        })?;
        config.validate(file)?;
        Ok(config)
    }

    /// The built-in single-node defaults (the same values as `config/node.toml`).
    pub fn single_node(data_dir: &Path) -> NodeConfig {
        NodeConfig {
            node: NodeSection {
                id: "local-1".into(),
                data_dir: data_dir.to_owned(),
            },
            limits: LimitsSection {
                entity_inflight_max: 64,
                node_inflight_max: 20_000,
                busy_retry_after_ms: 50,
                call_timeout_ms: 5_000,
                session_events_max: 64,
                overload_lag_ms: OVERLOAD_LAG_MS_DEFAULT,
            },
            supervision: SupervisionSection {
                branch_restarts_max: 1_000,
                branch_restart_window_ms: 10_000,
                root_restarts_max: 5,
                root_restart_window_ms: 60_000,
            },
            passivation: PassivationSection {
                entity_idle_ms: 300_000,
                sweep_interval_ms: 5_000,
            },
            dispatch: DispatchSection {
                offer_timeout_ms: 15_000,
                offer_tries_max: 5,
                search_radius_m: 10_000.0,
                candidates_per_search: 10,
                deadline_tick_ms: 250,
                price_max: 10_000_000,
            },
            fees: FeesSection {
                platform_fee_bps: 1_000,
            },
            geo: GeoSection {
                cell_precision: 6,
                service_areas: Vec::new(),
                zones: Vec::new(),
            },
            storage: StorageSection {
                group_commit_batch_max: 4_096,
                group_commit_queue_max: 65_536,
                group_commit_min_interval_ms: GROUP_COMMIT_MIN_INTERVAL_MS_DEFAULT,
                cache_bytes: 256 * 1024 * 1024,
                provider_position_write_interval_ms: PROVIDER_POSITION_WRITE_INTERVAL_MS_DEFAULT,
            },
            server: ServerSection {
                quic_listen: "127.0.0.1:4433".parse().expect("literal address"),
                http_listen: "127.0.0.1:8080".parse().expect("literal address"),
                frame_bytes_max: 64 * 1024,
                connections_max: 20_000,
                quic_endpoints: QUIC_ENDPOINTS_DEFAULT,
                streams_per_connection_max: 16,
                requests_inflight_max: 20_000,
                http_body_bytes_max: 64 * 1024,
                websockets_max: WEBSOCKETS_MAX_DEFAULT,
                http_connections: HttpConnectionsSection::default(),
                shutdown_grace_ms: 5_000,
                tls_cert_file: data_dir.join("client-tls-cert.pem"),
                tls_key_file: data_dir.join("client-tls-key.pem"),
                dashboard_open: false,
            },
            auth: AuthSection {
                secret_file: data_dir.join("token-secret.hex"),
                token_ttl_max_s: 30 * 24 * 3600,
                leeway_s: leeway_s_default(),
                external: None,
            },
            rate_limits: RateLimitsSection {
                principal_per_s: 50,
                principal_burst: 100,
                address_per_s: 2_000,
                address_burst: 4_000,
            },
            cluster: None,
        }
    }

    /// Checks every field's range; the error names the first bad field.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: &str| ConfigError::Invalid {
            file: file.to_owned(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        let checks: [(bool, &str, &str); 22] = [
            (
                self.node.id.is_empty() || self.node.id.len() > 64,
                "node.id",
                "must be 1 to 64 bytes",
            ),
            (
                self.node.data_dir.as_os_str().is_empty(),
                "node.data_dir",
                "must not be empty",
            ),
            (
                !(1..=1_000_000).contains(&self.limits.entity_inflight_max),
                "limits.entity_inflight_max",
                "must be 1 to 1000000",
            ),
            (
                !(1..=10_000_000).contains(&self.limits.node_inflight_max),
                "limits.node_inflight_max",
                "must be 1 to 10000000",
            ),
            (
                self.limits.node_inflight_max < self.limits.entity_inflight_max,
                "limits.node_inflight_max",
                "must be at least limits.entity_inflight_max",
            ),
            (
                !(1..=60_000).contains(&self.limits.busy_retry_after_ms),
                "limits.busy_retry_after_ms",
                "must be 1 to 60000",
            ),
            (
                !(1..=600_000).contains(&self.limits.call_timeout_ms),
                "limits.call_timeout_ms",
                "must be 1 to 600000",
            ),
            (
                !(1..=100_000).contains(&self.limits.session_events_max),
                "limits.session_events_max",
                "must be 1 to 100000",
            ),
            (
                self.limits.overload_lag_ms > OVERLOAD_LAG_MS_MAX,
                "limits.overload_lag_ms",
                "must be 0 to 60000",
            ),
            (
                self.supervision.branch_restarts_max == 0,
                "supervision.branch_restarts_max",
                "must be at least 1",
            ),
            (
                self.supervision.branch_restart_window_ms == 0,
                "supervision.branch_restart_window_ms",
                "must be at least 1",
            ),
            (
                self.supervision.root_restarts_max == 0,
                "supervision.root_restarts_max",
                "must be at least 1",
            ),
            (
                self.supervision.root_restart_window_ms == 0,
                "supervision.root_restart_window_ms",
                "must be at least 1",
            ),
            (
                self.passivation.entity_idle_ms == 0,
                "passivation.entity_idle_ms",
                "must be at least 1",
            ),
            (
                !(1..=3_600_000).contains(&self.passivation.sweep_interval_ms),
                "passivation.sweep_interval_ms",
                "must be 1 to 3600000",
            ),
            (
                !(100..=3_600_000).contains(&self.dispatch.offer_timeout_ms),
                "dispatch.offer_timeout_ms",
                "must be 100 to 3600000",
            ),
            (
                !(1..=100).contains(&self.dispatch.offer_tries_max),
                "dispatch.offer_tries_max",
                "must be 1 to 100",
            ),
            (
                !(self.dispatch.search_radius_m > 0.0
                    && self.dispatch.search_radius_m <= 500_000.0),
                "dispatch.search_radius_m",
                "must be above 0 and at most 500000",
            ),
            (
                !(1..=1_000).contains(&self.dispatch.candidates_per_search),
                "dispatch.candidates_per_search",
                "must be 1 to 1000",
            ),
            (
                !(1..=60_000).contains(&self.dispatch.deadline_tick_ms),
                "dispatch.deadline_tick_ms",
                "must be 1 to 60000",
            ),
            (
                !(1..=crate::ledger::AMOUNT_MAX).contains(&self.dispatch.price_max),
                "dispatch.price_max",
                "must be 1 to 10^15 minor units",
            ),
            (
                self.fees.platform_fee_bps > 10_000,
                "fees.platform_fee_bps",
                "must be 0 to 10000 (100%)",
            ),
        ];
        if let Some((_, field, reason)) = checks.iter().find(|(bad, _, _)| *bad) {
            return Err(invalid(field, reason));
        }
        if !(1..=12).contains(&self.geo.cell_precision) {
            return Err(invalid("geo.cell_precision", "must be 1 to 12"));
        }
        if !(1..=1_000_000).contains(&self.storage.group_commit_batch_max) {
            return Err(invalid(
                "storage.group_commit_batch_max",
                "must be 1 to 1000000",
            ));
        }
        if self.storage.group_commit_queue_max < self.storage.group_commit_batch_max {
            return Err(invalid(
                "storage.group_commit_queue_max",
                "must be at least storage.group_commit_batch_max",
            ));
        }
        if self.storage.group_commit_min_interval_ms > GROUP_COMMIT_MIN_INTERVAL_MS_MAX {
            return Err(invalid(
                "storage.group_commit_min_interval_ms",
                "must be 0 to 1000",
            ));
        }
        if self.storage.cache_bytes < 1024 * 1024 {
            return Err(invalid("storage.cache_bytes", "must be at least 1 MiB"));
        }
        if self.storage.provider_position_write_interval_ms
            > PROVIDER_POSITION_WRITE_INTERVAL_MS_MAX
        {
            return Err(invalid(
                "storage.provider_position_write_interval_ms",
                "must be 0 to 3600000",
            ));
        }
        self.validate_areas(file)?;
        self.validate_client_access(file)
    }

    fn validate_areas(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            file: file.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let mut names = std::collections::BTreeSet::new();
        for area in &self.geo.service_areas {
            area.validate()
                .map_err(|why| invalid("geo.service_areas", format!("{}: {why}", area.name)))?;
            if !names.insert(area.name.as_str()) {
                return Err(invalid("geo.service_areas", format!("{} twice", area.name)));
            }
        }
        for zone in &self.geo.zones {
            zone.validate()
                .map_err(|why| invalid("geo.zones", format!("{}: {why}", zone.name)))?;
            if !names.insert(zone.name.as_str()) {
                return Err(invalid("geo.zones", format!("{} twice", zone.name)));
            }
        }
        if names.len() > fixit_protocol::area::AREAS_MAX {
            return Err(invalid(
                "geo",
                format!("at most {} areas", fixit_protocol::area::AREAS_MAX),
            ));
        }
        Ok(())
    }

    fn validate_client_access(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: &str| ConfigError::Invalid {
            file: file.to_owned(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        let server = &self.server;
        let limits = &self.rate_limits;
        let connections = &server.http_connections;
        let external_blank = self.auth.external.as_ref().is_some_and(|external| {
            external.jwks_file.as_os_str().is_empty()
                || external.issuer.is_empty()
                || external.audience.is_empty()
                || external.role_claim.is_empty()
                || external.subject_claim.is_empty()
        });
        let checks: [(bool, &str, &str); 21] = [
            (
                self.auth.leeway_s > 300,
                "auth.leeway_s",
                "must be at most 300",
            ),
            (
                external_blank,
                "auth.external",
                "jwks_file, issuer, audience and the claim names must not be empty",
            ),
            (
                !(1..=1_000_000).contains(&connections.max),
                "server.http_connections.max",
                "must be 1 to 1000000",
            ),
            (
                !(1..=connections.max).contains(&connections.per_source_max),
                "server.http_connections.per_source_max",
                "must be 1 to server.http_connections.max",
            ),
            (
                !(100..=600_000).contains(&connections.header_timeout_ms),
                "server.http_connections.header_timeout_ms",
                "must be 100 to 600000",
            ),
            (
                !(100..=600_000).contains(&connections.body_timeout_ms),
                "server.http_connections.body_timeout_ms",
                "must be 100 to 600000",
            ),
            (
                server.quic_listen == server.http_listen && server.quic_listen.port() != 0,
                "server.http_listen",
                "must differ from server.quic_listen",
            ),
            (
                !(1024..=16 * 1024 * 1024).contains(&server.frame_bytes_max),
                "server.frame_bytes_max",
                "must be 1024 to 16777216",
            ),
            (
                !(1..=1_000_000).contains(&server.connections_max),
                "server.connections_max",
                "must be 1 to 1000000",
            ),
            (
                !(1..=64).contains(&server.quic_endpoints),
                "server.quic_endpoints",
                "must be 1 to 64",
            ),
            (
                !(1..=10_000).contains(&server.streams_per_connection_max),
                "server.streams_per_connection_max",
                "must be 1 to 10000",
            ),
            (
                !(1..=10_000_000).contains(&server.requests_inflight_max),
                "server.requests_inflight_max",
                "must be 1 to 10000000",
            ),
            (
                !(1024..=16 * 1024 * 1024).contains(&server.http_body_bytes_max),
                "server.http_body_bytes_max",
                "must be 1024 to 16777216",
            ),
            (
                !(1..=1_000_000).contains(&server.websockets_max),
                "server.websockets_max",
                "must be 1 to 1000000",
            ),
            (
                server.shutdown_grace_ms > 600_000,
                "server.shutdown_grace_ms",
                "must be at most 600000",
            ),
            (
                server.tls_cert_file.as_os_str().is_empty()
                    || server.tls_key_file.as_os_str().is_empty(),
                "server.tls_cert_file",
                "certificate and key paths must not be empty",
            ),
            (
                self.auth.secret_file.as_os_str().is_empty(),
                "auth.secret_file",
                "must not be empty",
            ),
            (
                !(60..=365 * 24 * 3600).contains(&self.auth.token_ttl_max_s),
                "auth.token_ttl_max_s",
                "must be 60 to 31536000",
            ),
            (
                limits.principal_per_s == 0 || limits.principal_burst == 0,
                "rate_limits.principal_per_s",
                "rate and burst must be at least 1",
            ),
            (
                limits.address_per_s == 0 || limits.address_burst == 0,
                "rate_limits.address_per_s",
                "rate and burst must be at least 1",
            ),
            (
                limits.principal_burst > 1_000_000 || limits.address_burst > 1_000_000,
                "rate_limits.principal_burst",
                "bursts must be at most 1000000",
            ),
        ];
        if let Some((_, field, reason)) = checks.iter().find(|(bad, _, _)| *bad) {
            return Err(invalid(field, reason));
        }
        self.validate_cluster(file)
    }

    fn validate_cluster(&self, file: &Path) -> Result<(), ConfigError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        cluster
            .check(&self.server)
            .map_err(|(field, reason)| ConfigError::Invalid {
                file: file.to_owned(),
                field,
                reason,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_default() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/node.toml");
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn shipped_default_is_valid_and_matches_builtin() {
        let file = Path::new("config/node.toml");
        let parsed = NodeConfig::parse(&shipped_default(), file).unwrap();
        assert_eq!(parsed, NodeConfig::single_node(&parsed.node.data_dir));
        assert_eq!(parsed.server.http_listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn errors_name_file_field_and_reason() {
        let file = Path::new("bad.toml");
        let text = shipped_default().replace("offer_timeout_ms = 15000", "offer_timeout_ms = 5");
        let error = NodeConfig::parse(&text, file).unwrap_err().to_string();
        assert!(error.contains("bad.toml"), "{error}");
        assert!(error.contains("dispatch.offer_timeout_ms"), "{error}");
        assert!(error.contains("must be 100"), "{error}");

        let text = shipped_default().replace("platform_fee_bps = 1000", "platform_fee_bps = 10001");
        let error = NodeConfig::parse(&text, file).unwrap_err().to_string();
        assert!(error.contains("fees.platform_fee_bps"), "{error}");

        let text = shipped_default().replace("search_radius_m = 10000.0", "search_radius_m = nan");
        let error = NodeConfig::parse(&text, file).unwrap_err().to_string();
        assert!(error.contains("dispatch.search_radius_m"), "{error}");
    }

    #[test]
    fn unknown_and_missing_fields_are_refused() {
        let file = Path::new("bad.toml");
        let text = shipped_default().replace("[fees]", "[fees]\nfee_percent = 3");
        let error = NodeConfig::parse(&text, file).unwrap_err().to_string();
        assert!(error.contains("fee_percent"), "{error}");

        let text = shipped_default().replace("cell_precision = 6", "");
        let error = NodeConfig::parse(&text, file).unwrap_err().to_string();
        assert!(error.contains("cell_precision"), "{error}");

        let error = NodeConfig::load(Path::new("/nonexistent/node.toml")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/node.toml"));
    }

    #[test]
    fn the_position_write_interval_is_optional_and_checked() {
        let file = Path::new("node.toml");
        let shipped = shipped_default();
        let line = "provider_position_write_interval_ms = 5000\n";
        assert!(shipped.contains(line), "the shipped default states it");
        let parsed = NodeConfig::parse(&shipped.replace(line, ""), file).unwrap();
        assert_eq!(
            parsed.storage.provider_position_write_interval_ms,
            PROVIDER_POSITION_WRITE_INTERVAL_MS_DEFAULT
        );
        let with = |ms: u64| {
            shipped.replace(
                line,
                &format!("provider_position_write_interval_ms = {ms}\n"),
            )
        };
        let parsed = NodeConfig::parse(&with(0), file).unwrap();
        assert_eq!(parsed.storage.provider_position_write_interval_ms, 0);
        let error = NodeConfig::parse(&with(PROVIDER_POSITION_WRITE_INTERVAL_MS_MAX + 1), file)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("storage.provider_position_write_interval_ms"),
            "{error}"
        );
    }

    #[test]
    fn the_http_connection_bounds_are_optional_and_checked() {
        let file = Path::new("node.toml");
        let shipped = shipped_default();
        let start = shipped.find("[server.http_connections]").expect("shipped");
        let end = start + shipped[start..].find("\n\n").expect("table end");
        let without = format!("{}{}", &shipped[..start], &shipped[end + 2..]);
        let parsed = NodeConfig::parse(&without, file).unwrap();
        assert_eq!(
            parsed.server.http_connections,
            HttpConnectionsSection::default()
        );
        for (line, field) in [
            (
                "per_source_max = 9000\n",
                "server.http_connections.per_source_max",
            ),
            (
                "header_timeout_ms = 10\n",
                "server.http_connections.header_timeout_ms",
            ),
            (
                "body_timeout_ms = 0\n",
                "server.http_connections.body_timeout_ms",
            ),
            ("max = 0\n", "server.http_connections.max"),
        ] {
            let key = line.split(' ').next().unwrap_or_default();
            let table = &shipped[start..end];
            let old = table
                .lines()
                .find(|candidate| candidate.starts_with(&format!("{key} =")))
                .expect("a shipped line");
            let changed = format!(
                "{}{}{}",
                &shipped[..start],
                table.replace(old, line.trim_end()),
                &shipped[end..]
            );
            let error = NodeConfig::parse(&changed, file).unwrap_err().to_string();
            assert!(error.contains(field), "{line}: {error}");
        }
    }

    const CLUSTER: &str = "\n[cluster]\nname = \"a\"\nlisten = \"127.0.0.1:7441\"\ncerts_dir = \"certs\"\ncalls_per_peer_max = 256\ncall_timeout_ms = 5000\n[cluster.peers]\nb = \"127.0.0.1:7442\"\n[cluster.regions]\nu33d = \"a\"\nu33e = \"b\"\n";

    #[test]
    fn the_cluster_section_is_optional_and_checked() {
        let file = Path::new("cluster.toml");
        let parsed = NodeConfig::parse(&(shipped_default() + CLUSTER), file).unwrap();
        let cluster = parsed.cluster.expect("cluster section");
        assert_eq!(cluster.seeds.len(), 1);
        assert_eq!(cluster.regions["u33e"], "b");

        for (from, to, field) in [
            ("name = \"a\"", "name = \"A_1\"", "cluster.name"),
            (
                "b = \"127.0.0.1:7442\"",
                "a = \"127.0.0.1:7442\"",
                "cluster.seeds",
            ),
            ("u33e = \"b\"", "u33e = \"Z\"", "cluster.regions"),
            ("u33e = \"b\"", "u33a = \"b\"", "cluster.regions"),
            (
                "calls_per_peer_max = 256",
                "calls_per_peer_max = 0",
                "cluster.calls_per_peer_max",
            ),
            (
                "call_timeout_ms = 5000",
                "call_timeout_ms = 0",
                "cluster.call_timeout_ms",
            ),
            ("\"127.0.0.1:7441\"", "\"127.0.0.1:8080\"", "cluster.listen"),
            (
                "\"127.0.0.1:7441\"",
                "\"0.0.0.0:7441\"",
                "cluster.advertise",
            ),
            (
                "call_timeout_ms = 5000",
                "call_timeout_ms = 5000\n[cluster.membership]\nprobe_timeout_ms = 200",
                "cluster.membership.probe_timeout_ms",
            ),
            (
                "call_timeout_ms = 5000",
                "call_timeout_ms = 5000\n[cluster.membership]\nsuspect_timeout_ms = 100",
                "cluster.membership.suspect_timeout_ms",
            ),
            (
                "call_timeout_ms = 5000",
                "call_timeout_ms = 5000\n[cluster.membership]\ndatagram_copies = 0",
                "cluster.membership.datagram_copies",
            ),
        ] {
            let text = shipped_default() + &CLUSTER.replace(from, to);
            let error = NodeConfig::parse(&text, file).unwrap_err().to_string();
            assert!(error.contains(field), "{to}: {error}");
        }
        let text = shipped_default() + &CLUSTER.replace("[cluster]", "[cluster]\nseeds = 1");
        let error = NodeConfig::parse(&text, file).unwrap_err().to_string();
        assert!(error.contains("seeds"), "{error}");
    }
}
