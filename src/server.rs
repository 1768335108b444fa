//! Node assembly: the actor system on its sled data dir, its cluster links (when
//! configured), the QUIC listener and the HTTP bridge in front of it, and a clean
//! shutdown (stop taking requests, finish in-flight ones, close links, flush, exit)
//! or an abrupt one (the same without waiting for in-flight requests).

use crate::api::Api;
use crate::auth::TokenKey;
use crate::http::HttpServer;
use crate::quic::QuicServer;
use anyhow::Context;
use fixit_actors::clock::SharedClock;
use fixit_actors::cluster_hooks::ClusterHooks;
use fixit_actors::config::{AuthSection, NodeConfig};
use fixit_actors::Node;
use fixit_cluster::route::Hooks;
use fixit_cluster::{ClusterLinks, ClusterRouter};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The node's token key as configured: its own secret (made if missing), the
/// clock leeway, and the external identity provider's keys if one is named.
pub fn token_key(auth: &AuthSection) -> anyhow::Result<TokenKey> {
    let key = TokenKey::load_or_create(&auth.secret_file)?.with_leeway(auth.leeway_s);
    let Some(external) = &auth.external else {
        return Ok(key);
    };
    let provider = crate::auth::External::load(
        &external.jwks_file,
        &external.issuer,
        &external.audience,
        &external.role_claim,
        &external.subject_claim,
    )?;
    Ok(key.with_external(provider))
}

/// A node with its client listeners.
pub struct RunningNode {
    node: Arc<Node>,
    api: Arc<Api>,
    tokens: TokenKey,
    quic: QuicServer,
    http: HttpServer,
    cluster: Option<ClusterLinks>,
    grace: Duration,
}

impl RunningNode {
    /// Starts the node from `config`: storage, actors, token key, cluster links
    /// (if configured), QUIC and HTTP.
    pub async fn start(config: NodeConfig, clock: SharedClock) -> anyhow::Result<RunningNode> {
        let router = match &config.cluster {
            Some(section) => Some(Arc::new(ClusterRouter::new(section, clock.clone())?)),
            None => None,
        };
        let hooks = router
            .clone()
            .map(|router| Arc::new(Hooks(router)) as Arc<dyn ClusterHooks>);
        let node = Arc::new(
            Node::start_in_cluster(config.clone(), clock.clone(), hooks)
                .await
                .with_context(|| format!("starting node {}", config.node.id))?,
        );
        let tokens = token_key(&config.auth)?;
        let api = Arc::new(
            match &router {
                Some(router) => Api::in_cluster(node.clone(), router.clone()),
                None => Api::new(node.clone()),
            }
            .with_tokens(tokens.clone())
            .map_err(|error| anyhow::anyhow!("stored revocations: {error}"))?
            .with_audit(
                crate::audit::AuditLog::open(&config.node.data_dir)
                    .with_context(|| format!("audit log in {}", config.node.data_dir.display()))?,
            ),
        );
        let cluster = match (&config.cluster, router) {
            (Some(section), Some(router)) => {
                let mut links = ClusterLinks::start(section, clock.clone(), router, api.clone())?;
                links
                    .start_shards(section, &config.node.data_dir, clock)
                    .await?;
                Some(links)
            }
            _ => None,
        };
        let quic = crate::quic::start(api.clone(), tokens.clone(), &config.server)
            .await
            .with_context(|| format!("QUIC listener on {}", config.server.quic_listen))?;
        let cluster_status = cluster.as_ref().map(ClusterLinks::status);
        let http = crate::http::start(
            api.clone(),
            tokens.clone(),
            &config.server,
            &config.node.id,
            cluster_status,
        )
        .await
        .with_context(|| format!("HTTP bridge on {}", config.server.http_listen))?;
        tracing::info!(
            node = %config.node.id,
            quic = %quic.local_addr(),
            http = %http.local_addr(),
            data_dir = %config.node.data_dir.display(),
            "serving"
        );
        Ok(RunningNode {
            node,
            api,
            tokens,
            quic,
            http,
            cluster,
            grace: Duration::from_millis(config.server.shutdown_grace_ms),
        })
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The API in front of it.
    pub fn api(&self) -> &Arc<Api> {
        &self.api
    }

    /// The node's token key (to issue tokens in tests and the demo).
    pub fn tokens(&self) -> &TokenKey {
        &self.tokens
    }

    /// Where the QUIC listener is bound.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic.local_addr()
    }

    /// Where the HTTP bridge is bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Where the cluster link endpoint is bound, if the node is in a cluster.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster.as_ref().map(ClusterLinks::local_addr)
    }

    /// Stops taking requests, lets in-flight ones finish (up to the grace time),
    /// closes the cluster links, then stops the actors and flushes storage.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let grace = self.grace;
        self.stop(grace).await?;
        tracing::info!("stopped cleanly");
        Ok(())
    }

    /// Stops the node as abruptly as one process can stop a part of itself (the
    /// demo's `--kill-node-at-s`): the listeners close at once, dropping
    /// in-flight requests instead of finishing them, the cluster links and the
    /// wallet shards stop, then the actors. The data dir stays, so the node can
    /// start again from it. Unlike a crash, storage is flushed and the links
    /// close saying so; a real `kill -9` is `fixit chaos --scenario node-loss`.
    pub async fn kill(self) -> anyhow::Result<()> {
        self.stop(Duration::ZERO).await?;
        tracing::info!("stopped abruptly (no grace)");
        Ok(())
    }

    async fn stop(self, grace: Duration) -> anyhow::Result<()> {
        let RunningNode {
            node,
            api,
            quic,
            http,
            cluster,
            ..
        } = self;
        tokio::join!(http.stop(grace), quic.stop(grace));
        if let Some(cluster) = cluster {
            cluster.stop().await;
        }
        drop(api);
        let node = wait_for_sole_owner(node, grace).await?;
        node.shutdown().await.context("stopping the node")?;
        Ok(())
    }
}

/// Waits until the listeners' tasks have let go of the node.
async fn wait_for_sole_owner(mut node: Arc<Node>, grace: Duration) -> anyhow::Result<Node> {
    let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(1);
    loop {
        match Arc::try_unwrap(node) {
            Ok(node) => return Ok(node),
            Err(shared) if tokio::time::Instant::now() < deadline => {
                node = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => anyhow::bail!("requests still hold the node after the grace time"),
        }
    }
}

/// Runs a node until SIGINT or SIGTERM, then shuts it down cleanly.
pub async fn run_until_signal(config: NodeConfig, clock: SharedClock) -> anyhow::Result<()> {
    let running = RunningNode::start(config, clock).await?;
    wait_for_signal().await?;
    tracing::info!("signal received; shutting down");
    running.shutdown().await
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("SIGINT handler")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("Ctrl-C handler")?;
    Ok(())
}
