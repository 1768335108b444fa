//! A cluster on one host, for the demo and the tests: a cluster CA and node
//! certificates in `<dir>/certs`, one data dir per node, free loopback link ports
//! outside the kernel's ephemeral range (a restarted node finds its port free),
//! one shared token secret (a token issued by any node is good on every node), and
//! client listeners on port 0 unless the caller sets them.

use anyhow::Context;
use fixit_actors::config::{ClusterSection, NodeConfig};
use fixit_cluster::backoff::SplitMix64;
use fixit_cluster::ClusterCa;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;

/// Calls in flight to one peer in a local cluster.
pub const LOCAL_CALLS_PER_PEER_MAX: u32 = 256;

/// Longest cross-node call in a local cluster, in ms.
pub const LOCAL_CALL_TIMEOUT_MS: u64 = 2_000;

/// The lowest port handed out as a fixed node port.
const FIXED_PORT_MIN: u16 = 10_000;

/// Candidates tried before giving up on finding free fixed ports.
const FIXED_PORT_TRIES_MAX: usize = 2_000;

/// The kernel's ephemeral port range: where sockets bound to port 0 get their
/// port (Linux default when it cannot be read).
fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|part| part.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// A transport a fixed port is probed for.
#[derive(Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

/// Holds a probed port until every port is picked, so the picks differ.
enum Held {
    Udp { _socket: UdpSocket },
    Tcp { _listener: std::net::TcpListener },
}

fn probe(transport: Transport, addr: SocketAddr) -> Option<Held> {
    match transport {
        Transport::Udp => UdpSocket::bind(addr)
            .ok()
            .map(|socket| Held::Udp { _socket: socket }),
        Transport::Tcp => std::net::TcpListener::bind(addr)
            .ok()
            .map(|listener| Held::Tcp {
                _listener: listener,
            }),
    }
}

/// `count` free loopback ports for nodes that keep them across restarts. They are
/// taken below the kernel's ephemeral range, so a socket bound to port 0 while a
/// node is down (a client, a proxy, another test on the machine) can never take a
/// restarted node's port; the start of the search is random so concurrent runs
/// rarely probe the same ports.
fn fixed_addrs(count: usize, transport: Transport) -> anyhow::Result<Vec<SocketAddr>> {
    let (ephemeral_low, _) = ephemeral_ports();
    let span = u64::from(ephemeral_low.saturating_sub(FIXED_PORT_MIN).max(1));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let mut random = SplitMix64::new(nanos ^ u64::from(std::process::id()).rotate_left(32));
    let mut held = Vec::with_capacity(count);
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..FIXED_PORT_TRIES_MAX {
        if addrs.len() == count {
            return Ok(addrs);
        }
        let port = FIXED_PORT_MIN + (random.next_u64() % span) as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Some(socket) = probe(transport, addr) {
            held.push(socket);
            addrs.push(addr);
        }
    }
    anyhow::ensure!(
        addrs.len() == count,
        "no {count} free ports on loopback between {FIXED_PORT_MIN} and {ephemeral_low}"
    );
    Ok(addrs)
}

/// Free UDP ports on loopback for nodes' link and QUIC listeners, outside the
/// ephemeral range, so a restarted node finds its port free.
pub fn free_link_addrs(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    fixed_addrs(count, Transport::Udp)
}

/// Free TCP ports on loopback for nodes' HTTP listeners, picked the same way.
pub fn free_tcp_addrs(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    fixed_addrs(count, Transport::Tcp)
}

/// Makes the certificates and returns one valid config per node of `regions`
/// (geohash prefix → node name), in node-name order. Every config is
/// [`NodeConfig::single_node`] in `<dir>/<name>` plus the `[cluster]` section.
pub fn local_cluster(
    dir: &Path,
    regions: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<NodeConfig>> {
    let mut names: Vec<&String> = regions.values().collect();
    names.sort();
    names.dedup();
    let certs = dir.join("certs");
    let ca = ClusterCa::create(&certs).context("cluster CA")?;
    for name in &names {
        ca.issue_node(name, &certs)
            .with_context(|| format!("certificate of node {name}"))?;
    }
    let links: BTreeMap<&String, SocketAddr> = names
        .iter()
        .copied()
        .zip(free_link_addrs(names.len())?)
        .collect();
    names
        .iter()
        .map(|name| {
            let mut config = NodeConfig::single_node(&dir.join(name.as_str()));
            config.node.id = (*name).clone();
            config.server.quic_listen = "127.0.0.1:0".parse()?;
            config.server.http_listen = "127.0.0.1:0".parse()?;
            config.auth.secret_file = dir.join("token-secret.hex");
            config.cluster = Some(ClusterSection {
                name: (*name).clone(),
                listen: links[name],
                certs_dir: certs.clone(),
                advertise: None,
                seeds: links
                    .iter()
                    .filter(|(peer, _)| *peer != name)
                    .map(|(peer, addr)| ((*peer).clone(), *addr))
                    .collect(),
                regions: regions.clone(),
                calls_per_peer_max: LOCAL_CALLS_PER_PEER_MAX,
                call_timeout_ms: LOCAL_CALL_TIMEOUT_MS,
                membership: Default::default(),
                replication_factor: fixit_actors::config::default_replication_factor(),
                wallet_buckets: fixit_actors::config::default_wallet_buckets(),
                shard_snapshot_entries: fixit_actors::config::default_shard_snapshot_entries(),
            });
            config
                .validate(Path::new(name.as_str()))
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            Ok(config)
        })
        .collect()
}
