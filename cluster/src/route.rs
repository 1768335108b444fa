//! Cross-node routing of a node in a cluster: where a request belongs and how it
//! gets there ([`router`], [`forward`]), the commands nodes send each other and
//! their handler ([`commands`], [`peer_api`]), one node's leg of a nearby search
//! ([`nearby`]), outbox delivery ([`outbox`]), and the running links
//! of a node ([`links`]).
//!
//! The local node's API is reached only through the [`LocalApi`] trait, so the API
//! layer (in the binary) knows the router but the router never knows the API layer.

pub mod commands;
pub mod forward;
pub mod links;
pub mod nearby;
pub mod outbox;
pub mod peer_api;
pub mod pushes;
pub mod router;
pub mod settings_sync;

use fixit_actors::Node;
use fixit_protocol::api::{ApiError, Request, Response};
use fixit_protocol::principal::Principal;
use std::future::Future;
use std::sync::Arc;

pub use links::{ClusterLinks, ClusterStatus};
pub use router::{ClusterRouter, Hooks, Traffic, TrafficView};

/// What the cluster needs of the local node's API: serve a request here.
pub trait LocalApi: Send + Sync + 'static {
    /// The node's actors (wallet operations, transfers, the outbox, nearby searches).
    fn node(&self) -> &Arc<Node>;

    /// Serves an admitted and authorized request on this node, never forwarding it.
    fn serve_here(
        &self,
        principal: &Principal,
        request: Request,
    ) -> impl Future<Output = Result<Response, ApiError>> + Send;

    /// Serves a request another node forwarded here: admitted against overload,
    /// authorized again, served here and never forwarded further (nodes that
    /// disagree about placement answer rather than bounce a request between them).
    fn serve_forwarded(
        &self,
        principal: &Principal,
        request: Request,
        request_id: &str,
    ) -> impl Future<Output = Result<Response, ApiError>> + Send;
}
