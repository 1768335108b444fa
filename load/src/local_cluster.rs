//! A cluster on one host, for the demo and the tests: a cluster CA and node
//! certificates in `<dir>/certs`, one data dir per node, free loopback link ports,
//! one shared token secret (a token issued by any node is good on every node), and
//! client listeners on port 0 unless the caller sets them.

use anyhow::Context;
use fixit_actors::config::{ClusterSection, NodeConfig};
use fixit_cluster::ClusterCa;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;

/// Calls in flight to one peer in a local cluster.
pub const LOCAL_CALLS_PER_PEER_MAX: u32 = 256;

/// Longest cross-node call in a local cluster, in ms.
pub const LOCAL_CALL_TIMEOUT_MS: u64 = 2_000;

/// Free UDP ports on loopback, picked by binding port 0 and letting go (all are
/// held until every one is picked, so they differ).
pub fn free_link_addrs(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let sockets = (0..count)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("picking free UDP ports on loopback")?;
    sockets
        .iter()
        .map(|socket| socket.local_addr().context("bound address"))
        .collect()
}

/// Free TCP ports on loopback, picked the same way.
pub fn free_tcp_addrs(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("picking free TCP ports on loopback")?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().context("bound address"))
        .collect()
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
                peers: links
                    .iter()
                    .filter(|(peer, _)| *peer != name)
                    .map(|(peer, addr)| ((*peer).clone(), *addr))
                    .collect(),
                regions: regions.clone(),
                calls_per_peer_max: LOCAL_CALLS_PER_PEER_MAX,
                call_timeout_ms: LOCAL_CALL_TIMEOUT_MS,
            });
            config
                .validate(Path::new(name.as_str()))
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            Ok(config)
        })
        .collect()
}
