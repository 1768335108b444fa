//! A real node (real sled in a temp dir) behind a real QUIC listener on a loopback
//! port, and clients with tokens of any role.

use fixit_actors::config::NodeConfig;
use fixit_actors::Node;
use fixit_edge::auth::{now_s, Principal, Role, TokenKey};
use fixit_edge::quic::QuicServer;
use fixit_sdk::{Client, ClientError, Connector};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a test waits for a push before calling it missing (a hang guard, not
/// a timing assertion).
pub(crate) const PUSH_WAIT: Duration = Duration::from_secs(30);

/// Token lifetime in tests.
const TOKEN_TTL_S: u64 = 3_600;

pub(crate) struct TestNode {
    pub(crate) config: NodeConfig,
    pub(crate) tokens: TokenKey,
    pub(crate) server: QuicServer,
    pub(crate) addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts a node with the default single-node config, changed by `tune`.
    pub(crate) async fn start(tune: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::single_node(dir.path());
        // Tests assert the answers of particular calls: no shedding because a busy
        // test machine delayed a timer (tests that want it set it again).
        config.limits.overload_lag_ms = 0;
        config.server.quic_listen = "127.0.0.1:0".parse().unwrap();
        tune(&mut config);
        let clock = Arc::new(fixit_actors::clock::SystemClock);
        let node = Arc::new(Node::start(config.clone(), clock).await.unwrap());
        let tokens = TokenKey::load_or_create(&config.auth.secret_file).unwrap();
        let api = Arc::new(
            fixit_edge::api::Api::new(node.clone())
                .with_tokens(tokens.clone())
                .unwrap(),
        );
        let server = fixit_edge::quic::start(api, tokens.clone(), &config.server)
            .await
            .unwrap();
        let addr = server.local_addr();
        TestNode {
            config,
            tokens,
            server,
            addr,
            _dir: dir,
        }
    }

    /// The listener's certificate, which clients pin.
    pub(crate) fn cert(&self) -> &Path {
        &self.config.server.tls_cert_file
    }

    /// A valid token for `role` and subject `sub`.
    pub(crate) fn token(&self, role: Role, sub: u64) -> String {
        self.tokens
            .issue(Principal { role, sub }, now_s() + TOKEN_TTL_S)
    }

    /// A connected client acting as `role` `sub`.
    pub(crate) async fn client(&self, role: Role, sub: u64) -> Client {
        self.try_client(&self.token(role, sub)).await.unwrap()
    }

    /// Connects with `token` as given.
    pub(crate) async fn try_client(&self, token: &str) -> Result<Client, ClientError> {
        Client::connect(self.addr, self.cert(), token).await
    }

    /// A local endpoint trusting this node's certificate.
    pub(crate) fn connector(&self) -> Connector {
        Connector::new(self.cert(), "127.0.0.1:0".parse().unwrap()).unwrap()
    }
}
