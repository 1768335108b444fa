//! `GET /v1/events`: a WebSocket forwarding the caller's pushes as JSON text messages.
//!
//! Memory stays bounded: the API's push channel per socket is bounded and a full one
//! drops pushes upstream (counted as dropped), and a client that does not take a
//! message within [`WEBSOCKET_SEND_TIMEOUT_MS`] is disconnected.

use super::extract::Caller;
use super::failure::Failure;
use super::request_id::RequestId;
use super::state::{AppState, WebSocketSlot};
use crate::api::{ApiError, Push};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use fixit_actors::error::CoreError;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

/// Longest wait for a client to take one message before it is disconnected.
pub(crate) const WEBSOCKET_SEND_TIMEOUT_MS: u64 = 5_000;

/// Largest message accepted from a client (clients only ever send close and ping).
const CLIENT_MESSAGE_BYTES_MAX: usize = 4 * 1024;

/// Retry hint when the server holds its most WebSockets (`server.websockets_max`).
const WEBSOCKETS_FULL_RETRY_AFTER_MS: u64 = 1_000;

/// Close code "going away" (RFC 6455): the server is stopping or the stream ended.
const CLOSE_GOING_AWAY: u16 = 1001;

/// Close code "policy violation" (RFC 6455): the client stopped reading.
const CLOSE_POLICY: u16 = 1008;

/// Query of `GET /v1/events`.
#[derive(Deserialize)]
struct EventsQuery {
    token: Option<String>,
}

/// An authenticated WebSocket upgrade.
pub(crate) struct EventsUpgrade {
    caller: Caller,
    upgrade: WebSocketUpgrade,
}

impl FromRequestParts<AppState> for EventsUpgrade {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Failure> {
        let query_token = Query::<EventsQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|Query(query)| query.token);
        let caller = Caller::authenticate(parts, state, query_token.as_deref())?;
        let upgrade = WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                Failure::bad_request(
                    format!("not a WebSocket upgrade: {}", rejection.body_text()),
                    &RequestId::of(parts),
                )
            })?;
        Ok(EventsUpgrade { caller, upgrade })
    }
}

/// Authenticates, subscribes (so errors are HTTP answers), then upgrades.
pub(crate) async fn open(
    State(state): State<AppState>,
    EventsUpgrade { caller, upgrade }: EventsUpgrade,
) -> Result<Response, Failure> {
    let fail = |error: ApiError| Failure::new(error, &caller.request_id);
    state
        .api()
        .admission()
        .admit_address(caller.source)
        .map_err(fail)?;
    let slot = state.websockets().reserve().ok_or_else(|| {
        fail(ApiError::Core(CoreError::Busy {
            retry_after_ms: WEBSOCKETS_FULL_RETRY_AFTER_MS,
        }))
    })?;
    let pushes = state
        .api()
        .subscribe(&caller.principal)
        .await
        .map_err(fail)?;
    let stopping = state.stopping();
    let principal = caller.principal;
    tracing::info!(role = %principal.role, sub = principal.sub, "push stream opened");
    let span = tracing::info_span!(
        "push_stream",
        request_id = caller.request_id.as_str(),
        role = %principal.role,
        sub = principal.sub,
    );
    // The read buffer is allocated up front per socket (tungstenite's default is
    // 128 KiB): clients only send close and ping, so a small one is plenty.
    Ok(upgrade
        .read_buffer_size(CLIENT_MESSAGE_BYTES_MAX)
        .max_message_size(CLIENT_MESSAGE_BYTES_MAX)
        .on_upgrade(move |socket| forward(socket, pushes, stopping, slot).instrument(span)))
}

/// Why a socket's forwarding ended.
enum End {
    ClientLeft,
    Stopping,
    StreamEnded,
    ClientStalled,
}

async fn forward(
    mut socket: WebSocket,
    mut pushes: mpsc::Receiver<Push>,
    stopping: watch::Receiver<bool>,
    _slot: WebSocketSlot,
) {
    let mut stopped = std::pin::pin!(until_stopping(stopping));
    let end = loop {
        tokio::select! {
            push = pushes.recv() => match push {
                Some(push) => {
                    if !send_push(&mut socket, &push).await {
                        break End::ClientStalled;
                    }
                }
                None => break End::StreamEnded,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break End::ClientLeft,
                Some(Ok(_)) => {}
            },
            () = &mut stopped => break End::Stopping,
        }
    };
    close(socket, end).await;
}

/// Completes when the server begins to stop (or is gone).
async fn until_stopping(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Sends one push; false when the client did not take it in time or is gone.
async fn send_push(socket: &mut WebSocket, push: &Push) -> bool {
    let Ok(text) = serde_json::to_string(push) else {
        tracing::warn!(?push, "push could not be encoded; skipped");
        return true;
    };
    let timeout = Duration::from_millis(WEBSOCKET_SEND_TIMEOUT_MS);
    matches!(
        tokio::time::timeout(timeout, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

async fn close(mut socket: WebSocket, end: End) {
    let timeout = Duration::from_millis(WEBSOCKET_SEND_TIMEOUT_MS);
    let (code, reason) = match end {
        End::ClientLeft => {
            tracing::debug!("push stream closed by the client");
            // Completes the closing handshake (answers the client's close frame).
            let _ = tokio::time::timeout(timeout, futures::SinkExt::close(&mut socket)).await;
            return;
        }
        End::Stopping => (CLOSE_GOING_AWAY, "server stopping"),
        End::StreamEnded => (CLOSE_GOING_AWAY, "push stream ended"),
        End::ClientStalled => (CLOSE_POLICY, "client too slow"),
    };
    tracing::debug!(reason, "closing push stream");
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(timeout, socket.send(Message::Close(Some(frame)))).await;
}
