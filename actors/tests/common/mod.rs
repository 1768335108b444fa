//! Helpers shared by the integration tests: a real node on real sled in a temp dir.

#![allow(dead_code, unreachable_pub)]

use fixit_actors::clock::ManualClock;
use fixit_actors::config::NodeConfig;
use fixit_actors::Node;
use std::sync::Arc;
use std::time::Duration;

/// Start time of the manual clock in tests (2026-01-01).
pub const T0_MS: u64 = 1_767_225_600_000;

/// A node under test with its clock and data dir.
pub struct TestNode {
    pub node: Node,
    pub clock: ManualClock,
    pub config: NodeConfig,
    pub dir: Arc<tempfile::TempDir>,
}

/// Config for tests: the shipped defaults with a data dir in `dir`.
pub fn test_config(dir: &std::path::Path) -> NodeConfig {
    let mut config = NodeConfig::single_node(dir);
    config.validate(std::path::Path::new("test")).unwrap();
    config.passivation.sweep_interval_ms = 3_600_000; // tests sweep explicitly
    config
}

impl TestNode {
    /// A fresh node with default test config, adjusted by `tune`.
    pub async fn start(tune: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config(dir.path());
        tune(&mut config);
        config.validate(std::path::Path::new("test")).unwrap();
        let clock = ManualClock::new(T0_MS);
        let node = Node::start(config.clone(), Arc::new(clock.clone()))
            .await
            .unwrap();
        TestNode {
            node,
            clock,
            config,
            dir,
        }
    }

    /// Stops the node and starts a new one on the same data dir.
    pub async fn restart(self) -> TestNode {
        let TestNode {
            node,
            clock,
            config,
            dir,
        } = self;
        node.shutdown().await.unwrap();
        let node = Node::start(config.clone(), Arc::new(clock.clone()))
            .await
            .unwrap();
        TestNode {
            node,
            clock,
            config,
            dir,
        }
    }
}

/// Polls `check` every 5 ms for up to 10 s; panics with `what` if it never holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never happened: {what}");
}
