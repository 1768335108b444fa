//! A node joins its cluster links at start: three nodes in one process, linked
//! over QUIC with mutual TLS, each reporting its peers on `GET /cluster`; a
//! fourth node that names one seed is learnt by all through membership, and a
//! node that stops is shown as left. Also: the shipped cluster configs are valid.

use fixit_actors::clock::SystemClock;
use fixit_actors::config::{ClusterSection, NodeConfig};
use fixit_cluster::ClusterCa;
use fixit_edge::auth::{Principal, Role};
use fixit_edge::server::RunningNode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NAMES: [&str; 3] = ["a", "b", "c"];

/// A node outside the region map, joining through seed `a` alone.
const JOINER: &str = "d";

/// Bound of every wait loop: 200 polls of 100 ms, 20 s in all.
const WAIT_ROUNDS: u32 = 200;
const WAIT_STEP: Duration = Duration::from_millis(100);

/// Free UDP ports on loopback, picked by binding port 0 and letting go (all are
/// held until every one is picked, so they differ).
fn free_link_addrs(count: usize) -> Vec<SocketAddr> {
    let sockets: Vec<UdpSocket> = (0..count)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("free UDP port"))
        .collect();
    sockets
        .iter()
        .map(|socket| socket.local_addr().expect("bound address"))
        .collect()
}

fn cluster_config(dir: &Path, name: &str, links: &BTreeMap<String, SocketAddr>) -> NodeConfig {
    let mut config = NodeConfig::single_node(&dir.join(name));
    config.node.id = name.to_owned();
    config.server.quic_listen = "127.0.0.1:0".parse().expect("address");
    config.server.http_listen = "127.0.0.1:0".parse().expect("address");
    let peers = links
        .iter()
        .filter(|(peer, _)| peer.as_str() != name)
        .map(|(peer, addr)| (peer.clone(), *addr))
        .collect();
    let regions = [("u33d", "a"), ("u33e", "b"), ("u336", "c")]
        .into_iter()
        .map(|(prefix, node)| (prefix.to_owned(), node.to_owned()))
        .collect();
    config.cluster = Some(ClusterSection {
        name: name.to_owned(),
        listen: links[name],
        advertise: None,
        certs_dir: dir.join("certs"),
        seeds: peers,
        regions,
        calls_per_peer_max: 16,
        call_timeout_ms: 2_000,
        membership: Default::default(),
        replication_factor: fixit_actors::config::default_replication_factor(),
        wallet_buckets: fixit_actors::config::default_wallet_buckets(),
        shard_snapshot_entries: fixit_actors::config::default_shard_snapshot_entries(),
    });
    config.validate(Path::new("test")).expect("valid config");
    config
}

fn admin_token(node: &RunningNode) -> String {
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let admin = Principal {
        role: Role::Admin,
        sub: 0,
    };
    node.tokens().issue(admin, now_s + 3_600)
}

async fn get_cluster(
    client: &reqwest::Client,
    node: &RunningNode,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = client.get(format!("http://{}/cluster", node.http_addr()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET /cluster");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// Each peer's `status/link` in a `GET /cluster` answer, e.g. `alive/Up`.
fn states(view: &Value) -> BTreeMap<String, String> {
    view["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|peer| {
            let name = peer["name"].as_str().expect("name").to_owned();
            let status = peer["status"].as_str().expect("status");
            let link = peer["state"].as_str().expect("state");
            (name, format!("{status}/{link}"))
        })
        .collect()
}

/// Polls node's `GET /cluster` until `done` holds; panics after 20 s.
async fn wait_for(
    client: &reqwest::Client,
    node: &RunningNode,
    what: &str,
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Value {
    let token = admin_token(node);
    let mut last = Value::Null;
    for _ in 0..WAIT_ROUNDS {
        let (status, view) = get_cluster(client, node, Some(&token)).await;
        assert_eq!(status, 200, "{view}");
        if done(&states(&view)) {
            return view;
        }
        last = view;
        tokio::time::sleep(WAIT_STEP).await;
    }
    panic!("{what}: not within 20 s; last answer {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_link_up_and_see_a_peer_leave() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    let ca = ClusterCa::create(&certs).expect("cluster CA");
    for name in NAMES.iter().chain([&JOINER]) {
        ca.issue_node(name, &certs).expect("node certificate");
    }
    let links: BTreeMap<String, SocketAddr> = NAMES
        .iter()
        .chain([&JOINER])
        .map(|name| name.to_string())
        .zip(free_link_addrs(NAMES.len() + 1))
        .collect();
    let founders: BTreeMap<String, SocketAddr> = links
        .iter()
        .filter(|(name, _)| name.as_str() != JOINER)
        .map(|(name, addr)| (name.clone(), *addr))
        .collect();
    println!("link addresses {links:?}");
    let mut nodes = Vec::new();
    for name in NAMES {
        let config = cluster_config(dir.path(), name, &founders);
        let node = RunningNode::start(config, Arc::new(SystemClock))
            .await
            .expect("node starts");
        assert_eq!(node.cluster_addr(), Some(links[name]));
        nodes.push(node);
    }
    let client = reqwest::Client::new();
    let node_c = nodes.pop().expect("c");
    let node_a = &nodes[0];

    let (status, _) = get_cluster(&client, node_a, None).await;
    assert_eq!(status, 401, "the cluster status needs a token");

    let view = wait_for(&client, node_a, "a sees b and c up", |states| {
        states.len() == 2 && states.values().all(|state| state == "alive/Up")
    })
    .await;
    assert_eq!(view["node"], "a");
    assert_eq!(view["cluster"], true);
    assert!(
        view["incarnation"].as_u64().is_some_and(|n| n > 0),
        "{view}"
    );
    let c_row = &view["peers"][1];
    assert_eq!(c_row["name"], "c");
    assert_eq!(c_row["addr"], links["c"].to_string());
    assert!(
        c_row["incarnation"].as_u64().is_some_and(|n| n > 0),
        "{c_row}"
    );
    wait_for(&client, &node_c, "c sees a and b up", |states| {
        states.values().all(|state| state == "alive/Up")
    })
    .await;

    // d names only a as its seed, and learns b and c from it; all learn d.
    let mut joiner_config = cluster_config(dir.path(), JOINER, &links);
    if let Some(cluster) = joiner_config.cluster.as_mut() {
        cluster.seeds.retain(|name, _| name == "a");
    }
    let node_d = RunningNode::start(joiner_config, Arc::new(SystemClock))
        .await
        .expect("d starts");
    let everyone = |states: &BTreeMap<String, String>| {
        states.len() == 3 && states.values().all(|state| state == "alive/Up")
    };
    wait_for(&client, &node_d, "d learns a, b and c", everyone).await;
    for node in nodes.iter().chain([&node_c]) {
        wait_for(&client, node, "every node learns d", |states| {
            states
                .get(JOINER)
                .is_some_and(|state| state.starts_with("alive/"))
        })
        .await;
    }

    node_c.shutdown().await.expect("c stops");
    for node in nodes.iter().chain([&node_d]) {
        let view = wait_for(&client, node, "c shown as left, the rest alive", |states| {
            states["c"].starts_with("left/")
                && states
                    .iter()
                    .filter(|(name, _)| name.as_str() != "c")
                    .all(|(_, state)| state == "alive/Up")
        })
        .await;
        println!("after c stopped: {view}");
    }

    node_d.shutdown().await.expect("d stops");
    for node in nodes {
        node.shutdown().await.expect("node stops");
    }
}

/// A node started before its only seed keeps announcing itself, so the two find
/// each other once the seed is up (the seed names no seed at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_only_seed_finds_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    let ca = ClusterCa::create(&certs).expect("cluster CA");
    let names = ["early", "late"];
    for name in names {
        ca.issue_node(name, &certs).expect("node certificate");
    }
    let links: BTreeMap<String, SocketAddr> = names
        .iter()
        .map(|name| name.to_string())
        .zip(free_link_addrs(names.len()))
        .collect();
    let early = RunningNode::start(
        cluster_config(dir.path(), "early", &links),
        Arc::new(SystemClock),
    )
    .await
    .expect("early starts");
    let client = reqwest::Client::new();
    wait_for(&client, &early, "early alone, its seed unknown", |states| {
        states
            .get("late")
            .is_some_and(|state| state.starts_with("unknown/"))
    })
    .await;
    // Longer than a first announce waits for a link to be set up (1 s).
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let mut late_config = cluster_config(dir.path(), "late", &links);
    if let Some(cluster) = late_config.cluster.as_mut() {
        cluster.seeds.clear();
    }
    let late = RunningNode::start(late_config, Arc::new(SystemClock))
        .await
        .expect("late starts");
    wait_for(&client, &late, "late learns early", |states| {
        states.get("early").is_some_and(|state| state == "alive/Up")
    })
    .await;
    wait_for(&client, &early, "early learns late", |states| {
        states.get("late").is_some_and(|state| state == "alive/Up")
    })
    .await;
    late.shutdown().await.expect("late stops");
    early.shutdown().await.expect("early stops");
}

#[tokio::test]
async fn a_single_node_reports_no_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = NodeConfig::single_node(dir.path());
    config.server.quic_listen = "127.0.0.1:0".parse().expect("address");
    config.server.http_listen = "127.0.0.1:0".parse().expect("address");
    config.server.dashboard_open = true;
    let node = RunningNode::start(config, Arc::new(SystemClock))
        .await
        .expect("node starts");
    assert_eq!(node.cluster_addr(), None);
    let (status, view) = get_cluster(&reqwest::Client::new(), &node, None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view,
        serde_json::json!({ "node": "local-1", "cluster": false, "peers": [] })
    );
    node.shutdown().await.expect("node stops");
}

#[test]
fn shipped_cluster_configs_are_valid_and_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let configs: BTreeMap<&str, NodeConfig> = NAMES
        .iter()
        .map(|name| {
            let path = root.join(format!("config/cluster-3/{name}.toml"));
            (*name, NodeConfig::load(&path).expect("valid config"))
        })
        .collect();
    for (name, config) in &configs {
        let cluster = config.cluster.as_ref().expect("a [cluster] section");
        assert_eq!(cluster.name, *name);
        assert_eq!(cluster.certs_dir, Path::new("data/cluster-3/certs"));
        assert_eq!(config.node.data_dir, Path::new("data/cluster-3").join(name));
        let others: Vec<&str> = NAMES.iter().copied().filter(|n| n != name).collect();
        assert_eq!(
            cluster.seeds.keys().map(String::as_str).collect::<Vec<_>>(),
            others
        );
        for (peer, addr) in &cluster.seeds {
            let listen = configs[peer.as_str()].cluster.as_ref().map(|c| c.listen);
            assert_eq!(
                Some(*addr),
                listen,
                "{name} has {peer} at the wrong address"
            );
        }
        assert_eq!(
            cluster.regions,
            configs["a"].cluster.as_ref().expect("a").regions
        );
    }
    let default = NodeConfig::load(&root.join("config/node.toml")).expect("valid default");
    assert_eq!(default, NodeConfig::single_node(&default.node.data_dir));
    assert!(default.cluster.is_none());
}
