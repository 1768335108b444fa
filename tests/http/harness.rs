//! A real node with its HTTP bridge on 127.0.0.1 (port 0) over sled in a temp dir.

#![allow(dead_code)]

use super::client::Http;
use fixit_actors::config::NodeConfig;
use fixit_edge::api::Api;
use fixit_edge::auth::{now_s, Principal, Role, TokenKey};
use fixit_edge::http::HttpServer;
use std::sync::Arc;
use std::time::Duration;

/// Time given to the server to stop in tests.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// Token lifetime in tests.
const TOKEN_TTL_S: u64 = 3_600;

pub(crate) struct TestNode {
    pub(crate) node: Arc<fixit_actors::Node>,
    pub(crate) tokens: TokenKey,
    pub(crate) server: HttpServer,
    pub(crate) http: Http,
    pub(crate) config: NodeConfig,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts a node whose default single-node config `tweak` may change.
    pub(crate) async fn start(tweak: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = NodeConfig::single_node(dir.path());
        // Tests assert the answers of particular calls: no shedding because a busy
        // test machine delayed a timer (tests that want it set it again).
        config.limits.overload_lag_ms = 0;
        config.server.http_listen = "127.0.0.1:0".parse().expect("address");
        tweak(&mut config);
        let clock = Arc::new(fixit_actors::clock::SystemClock);
        let node = Arc::new(
            fixit_actors::Node::start(config.clone(), clock)
                .await
                .expect("node starts"),
        );
        let tokens = fixit_edge::server::token_key(&config.auth).expect("token key");
        let api = Arc::new(
            Api::new(node.clone())
                .with_tokens(tokens.clone())
                .expect("stored revocations")
                .with_audit(
                    fixit_edge::audit::AuditLog::open(&config.node.data_dir).expect("audit log"),
                ),
        );
        let server =
            fixit_edge::http::start(api, tokens.clone(), &config.server, "test-node", None)
                .await
                .expect("HTTP bridge starts");
        let http = Http {
            addr: server.local_addr(),
        };
        TestNode {
            node,
            tokens,
            server,
            http,
            config,
            _dir: dir,
        }
    }

    /// A valid token for `role` `sub`.
    pub(crate) fn token(&self, role: Role, sub: u64) -> String {
        self.tokens
            .issue(Principal { role, sub }, now_s() + TOKEN_TTL_S)
    }

    pub(crate) fn admin(&self) -> String {
        self.token(Role::Admin, 0)
    }
}
