//! One simulated user's client, over QUIC or over the HTTP bridge: the same typed
//! [`Commands`] and a push stream either way, so customers and providers do not
//! know which transport carries them.

use fixit_protocol::api::{ApiError, Push, Request, Response};
use fixit_sdk::{Client, Commands, HttpClient, HttpPushStream, PushStream};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A user's connection to one node.
#[derive(Clone)]
pub(crate) enum UserClient {
    /// A QUIC connection (one per user).
    Quic(Client),
    /// Calls over the bridge's shared keep-alive pool; `permits` bounds the
    /// generator's HTTP requests in flight (each needs a TCP connection of its own).
    Http {
        client: HttpClient,
        permits: Arc<Semaphore>,
    },
}

impl Commands for UserClient {
    async fn call(&self, request: Request) -> Result<Response, ApiError> {
        match self {
            UserClient::Quic(client) => Commands::call(client, request).await,
            UserClient::Http { client, permits } => {
                // The semaphore is never closed: a failed acquire cannot happen.
                let _permit = permits.acquire().await.ok();
                client.call(request).await
            }
        }
    }
}

impl UserClient {
    /// Opens the user's push stream (over HTTP, the user's WebSocket).
    pub(crate) async fn subscribe(&self) -> Result<Pushes, ApiError> {
        match self {
            UserClient::Quic(client) => client.subscribe().await.map(Pushes::Quic),
            UserClient::Http { client, .. } => client
                .subscribe()
                .await
                .map(|pushes| Pushes::Http(Box::new(pushes))),
        }
    }

    /// Closes a QUIC connection (bounded wait for the node to hear of it); an HTTP
    /// user's calls hold no connection of their own.
    pub(crate) async fn close(self) {
        if let UserClient::Quic(client) = self {
            client.close().await;
        }
    }
}

/// A user's pushes, in order, until the stream ends.
pub(crate) enum Pushes {
    Quic(PushStream),
    /// Boxed: a WebSocket's state is several times a QUIC stream's.
    Http(Box<HttpPushStream>),
}

impl Pushes {
    /// The next push; `None` once the stream ended.
    pub(crate) async fn next(&mut self) -> Option<Push> {
        match self {
            Pushes::Quic(pushes) => pushes.next().await,
            Pushes::Http(pushes) => pushes.next().await,
        }
    }

    /// Ends the stream: a WebSocket is closed cleanly, a QUIC stream dropped.
    pub(crate) async fn close(self) {
        if let Pushes::Http(pushes) = self {
            pushes.close().await;
        }
    }
}
