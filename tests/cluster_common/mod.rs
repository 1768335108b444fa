//! Helpers of the three-node cluster tests: the region map, ids homed on a given
//! node, positions inside a region, tokens, and a small JSON-over-HTTP client.

#![allow(dead_code)]

use fixit_actors::clock::SystemClock;
use fixit_cluster::home_of_wallet;
use fixit_edge::auth::{Principal, Role, TokenKey};
use fixit_edge::local_cluster::local_cluster;
use fixit_edge::server::RunningNode;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nodes of the test cluster.
pub(crate) const NAMES: [&str; 3] = ["a", "b", "c"];

/// Bound of every wait loop: 300 polls of 100 ms, 30 s in all.
pub(crate) const WAIT_ROUNDS: u32 = 300;
pub(crate) const WAIT_STEP: Duration = Duration::from_millis(100);

/// Three neighbouring geohash-5 cells of central Berlin: u33d (a), u33e (b), u336 (c).
pub(crate) fn regions() -> BTreeMap<String, String> {
    [("u33d", "a"), ("u33e", "b"), ("u336", "c")]
        .into_iter()
        .map(|(prefix, node)| (prefix.to_owned(), node.to_owned()))
        .collect()
}

/// The bounding box of a geohash cell: (south, north, west, east).
pub(crate) fn cell_box(cell: &str) -> (f64, f64, f64, f64) {
    // Decoding by hand keeps the tests free of the geohash crate's API details.
    const ALPHABET: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (mut lat, mut lon) = ((-90.0f64, 90.0f64), (-180.0f64, 180.0f64));
    let mut even = true;
    for byte in cell.bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte).expect("geohash");
        for bit in (0..5).rev() {
            let on = (value >> bit) & 1 == 1;
            let range = if even { &mut lon } else { &mut lat };
            let mid = (range.0 + range.1) / 2.0;
            if on {
                range.0 = mid;
            } else {
                range.1 = mid;
            }
            even = !even;
        }
    }
    (lat.0, lat.1, lon.0, lon.1)
}

/// A position inside `cell`, at fractions (0..1) of its height and width.
pub(crate) fn inside(cell: &str, lat_fraction: f64, lon_fraction: f64) -> (f64, f64) {
    let (south, north, west, east) = cell_box(cell);
    (
        south + (north - south) * lat_fraction,
        west + (east - west) * lon_fraction,
    )
}

/// The first `count` ids from `start` whose wallet is homed on `node`.
pub(crate) fn ids_homed_on(node: &str, start: u64, count: usize) -> Vec<u64> {
    let nodes: Vec<String> = NAMES.iter().map(|name| name.to_string()).collect();
    (start..)
        .filter(|id| home_of_wallet(*id, &nodes) == Some(node))
        .take(count)
        .collect()
}

/// The wallet id of provider `id` (providers' wallets are their own, apart
/// from customers' of the same id).
pub(crate) fn provider_wallet(id: u64) -> u64 {
    fixit_actors::ids::WalletId::from(fixit_actors::ids::ProviderId(id)).0
}

/// The first `count` provider ids from `start` whose wallet is homed on `node`.
pub(crate) fn providers_homed_on(node: &str, start: u64, count: usize) -> Vec<u64> {
    let nodes: Vec<String> = NAMES.iter().map(|name| name.to_string()).collect();
    (start..)
        .filter(|id| home_of_wallet(provider_wallet(*id), &nodes) == Some(node))
        .take(count)
        .collect()
}

/// The platform's wallet id.
pub(crate) const PLATFORM: u64 = fixit_actors::ids::WalletId::PLATFORM.0;

/// The node a wallet is homed on.
pub(crate) fn home_of(id: u64) -> String {
    let nodes: Vec<String> = NAMES.iter().map(|name| name.to_string()).collect();
    home_of_wallet(id, &nodes).expect("a home").to_owned()
}

/// A token for `role`/`sub` signed with the cluster's shared secret.
pub(crate) fn token(secret_file: &Path, role: Role, sub: u64) -> String {
    let key = TokenKey::load_or_create(secret_file).expect("token secret");
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    key.issue(Principal { role, sub }, now_s + 3_600)
}

/// JSON over HTTP to one node.
#[derive(Clone)]
pub(crate) struct Rest {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
}

impl Rest {
    pub(crate) fn new(http_addr: impl std::fmt::Display) -> Rest {
        Rest {
            base: format!("http://{http_addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("HTTP client"),
        }
    }

    /// Sends one request; answers the status and the JSON body (Null if none).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub(crate) async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, token, Some(body))
            .await
    }

    /// Like `send`, but panics unless the status is 200.
    pub(crate) async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, answer) = self.send(method, path, token, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    }

    /// Provider `provider` goes online with one skill and reports a position here.
    pub(crate) async fn provider_at(
        &self,
        provider: u64,
        token: &str,
        skill: &str,
        (lat, lon): (f64, f64),
    ) {
        let online = serde_json::json!({ "skills": [skill] });
        let path = format!("/v1/providers/{provider}/online");
        self.ok(reqwest::Method::POST, &path, token, Some(online))
            .await;
        let here = serde_json::json!({ "lat": lat, "lon": lon });
        let path = format!("/v1/providers/{provider}/location");
        self.ok(reqwest::Method::PUT, &path, token, Some(here))
            .await;
    }

    /// Polls `GET /cluster` until every peer is Up (30 s at most).
    pub(crate) async fn wait_links_up(&self, admin: &str) {
        for _ in 0..WAIT_ROUNDS {
            let (status, view) = self.get("/cluster", admin).await;
            let peers = view["peers"].as_array().cloned().unwrap_or_default();
            if status == 200 && !peers.is_empty() && peers.iter().all(|p| p["state"] == "Up") {
                return;
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
        panic!("{}: peers not all up within 30 s", self.base);
    }

    /// Waits (30 s at most) until this node's links to `peers` are up (others
    /// it knows of may be down).
    pub(crate) async fn wait_links_up_to(&self, admin: &str, peers: &[&str]) {
        for _ in 0..WAIT_ROUNDS {
            let (status, view) = self.get("/cluster", admin).await;
            let known = view["peers"].as_array().cloned().unwrap_or_default();
            let up = |name: &&str| {
                known
                    .iter()
                    .any(|peer| peer["name"] == *name && peer["state"] == "Up")
            };
            if status == 200 && peers.iter().all(up) {
                return;
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
        panic!("{}: links to {peers:?} not up within 30 s", self.base);
    }

    /// The node's outbox backlog from `GET /cluster`.
    pub(crate) async fn outbox(&self, admin: &str) -> u64 {
        let (status, view) = self.get("/cluster", admin).await;
        assert_eq!(status, 200, "{view}");
        view["outbox"]["transfers"].as_u64().expect("outbox count")
    }

    /// Polls a job via this node until `done` holds for its status (30 s at most).
    pub(crate) async fn wait_job(
        &self,
        job: u64,
        token: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        for _ in 0..WAIT_ROUNDS {
            let (status, body) = self.get(&format!("/v1/jobs/{job}"), token).await;
            if status == 200 && done(&body["status"]) {
                return body;
            }
            last = body;
            tokio::time::sleep(WAIT_STEP).await;
        }
        panic!("job {job} never reached the wanted status; last {last}");
    }
}

/// The provider a job is offered to, if it is in the Offered state.
pub(crate) fn offered_to(status: &Value) -> Option<u64> {
    status["Offered"]["provider"].as_u64()
}

/// Three nodes started in this process from `local_cluster` configs over
/// [`regions`], linked and up.
pub(crate) struct Cluster {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) secret: PathBuf,
    pub(crate) nodes: BTreeMap<String, RunningNode>,
    pub(crate) configs: Vec<fixit_actors::config::NodeConfig>,
}

impl Cluster {
    pub(crate) async fn start() -> Cluster {
        Cluster::start_with(|_| {}).await
    }

    /// [`Cluster::start`] with every node's config changed by `change` first.
    pub(crate) async fn start_with(
        change: impl Fn(&mut fixit_actors::config::NodeConfig),
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut configs = local_cluster(dir.path(), &regions()).expect("cluster configs");
        configs.iter_mut().for_each(&change);
        let secret = configs[0].auth.secret_file.clone();
        let mut nodes = BTreeMap::new();
        for config in configs.clone() {
            let name = config.node.id.clone();
            let node = RunningNode::start(config, Arc::new(SystemClock))
                .await
                .expect("node starts");
            nodes.insert(name, node);
        }
        let cluster = Cluster {
            _dir: dir,
            secret,
            nodes,
            configs,
        };
        let admin = cluster.token(Role::Admin, 0);
        for name in NAMES {
            cluster.rest(name).wait_links_up(&admin).await;
        }
        cluster
    }

    /// Stops node `name` (its data dir stays).
    pub(crate) async fn stop_node(&mut self, name: &str) {
        let node = self.nodes.remove(name).expect("a running node");
        node.shutdown().await.expect("the node stops");
    }

    /// Starts node `name` again from its config and data dir.
    pub(crate) async fn restart_node(&mut self, name: &str) {
        let config = self
            .configs
            .iter()
            .find(|config| config.node.id == name)
            .expect("the node's config")
            .clone();
        // The stopped node's QUIC endpoint lets go of its UDP socket once its
        // driver task has seen the last handle dropped, which may be a moment
        // after shutdown returned: wait (bounded) until the link port binds.
        if let Some(cluster) = &config.cluster {
            for _ in 0..WAIT_ROUNDS {
                if std::net::UdpSocket::bind(cluster.listen).is_ok() {
                    break;
                }
                tokio::time::sleep(WAIT_STEP).await;
            }
        }
        let node = RunningNode::start(config, Arc::new(SystemClock))
            .await
            .expect("the node restarts");
        self.nodes.insert(name.to_owned(), node);
    }

    pub(crate) fn rest(&self, name: &str) -> Rest {
        Rest::new(self.nodes[name].http_addr())
    }

    pub(crate) fn token(&self, role: Role, sub: u64) -> String {
        token(&self.secret, role, sub)
    }

    pub(crate) async fn balance(&self, via: &str, wallet: u64) -> (i64, i64) {
        let admin = self.token(Role::Admin, 0);
        let body = self
            .rest(via)
            .ok(Method::GET, &format!("/v1/wallets/{wallet}"), &admin, None)
            .await;
        (
            body["available"].as_i64().expect("available"),
            body["held"].as_i64().expect("held"),
        )
    }

    /// Polls every node's outbox until all are empty (30 s at most).
    pub(crate) async fn drain_outboxes(&self) {
        let admin = self.token(Role::Admin, 0);
        for _ in 0..WAIT_ROUNDS {
            let mut backlog = 0;
            for name in NAMES {
                backlog += self.rest(name).outbox(&admin).await;
            }
            if backlog == 0 {
                return;
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
        panic!("outboxes did not drain within 30 s");
    }

    /// Every node's audit holds, and money is conserved across the cluster.
    pub(crate) fn assert_conserved(&self) {
        let (mut total, mut outside, mut sent, mut received) = (0i128, 0i128, 0i64, 0i64);
        for (name, node) in &self.nodes {
            let audit = node.node().audit().expect("audit");
            assert!(audit.holds(), "node {name}: {audit:?}");
            total += audit.total_balance + audit.outbox_amount;
            outside += i128::from(audit.flows.deposited) - i128::from(audit.flows.withdrawn);
            sent += audit.flows.sent;
            received += audit.flows.received;
            assert_eq!(audit.outbox_transfers, 0, "node {name} outbox");
        }
        assert_eq!(total, outside, "conservation across the cluster");
        assert_eq!(sent, received, "every transfer sent was received once");
    }

    pub(crate) async fn stop(self) {
        for (_, node) in self.nodes {
            node.shutdown().await.expect("node stops");
        }
    }
}
