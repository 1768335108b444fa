//! One client connection: the handshake, the hello on the first stream, then one
//! task per further stream until the connection or the listener ends.

use super::stream::{self, write_frame};
use super::wire::{
    Hello, HelloReply, Welcome, CLOSE_HELLO_REFUSED, CLOSE_HELLO_TIMEOUT, HELLO_BYTES_MAX,
    REPLY_BYTES_MAX,
};
use super::{Shared, FIRST_FRAME_TIMEOUT_MS};
use crate::api::{ApiError, ErrorBody, PROTOCOL_VERSION};
use crate::auth::{now_s, Principal};
use fixit_actors::codec::read_frame;
use quinn::{Connection, Incoming, RecvStream, SendStream, VarInt};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

/// Time a refused hello's reply gets to reach the client before the close, in ms.
const REFUSAL_DELIVERY_MS: u64 = 2_000;

/// Serves one connection to its end; holds one of the `connections_max` permits.
pub(super) async fn serve(incoming: Incoming, shared: Arc<Shared>, _permit: OwnedSemaphorePermit) {
    let remote = incoming.remote_address();
    let span = tracing::info_span!("connection", %remote);
    let mut shutdown = shared.shutdown.clone();
    let work = async {
        let connection = match incoming.accept() {
            Ok(connecting) => match connecting.await {
                Ok(connection) => connection,
                Err(error) => return tracing::debug!(%error, "handshake failed"),
            },
            Err(error) => return tracing::debug!(%error, "connection not accepted"),
        };
        let source = remote.ip().to_canonical();
        if let Some(principal) = hello(&connection, &shared, source).await {
            accept_streams(&connection, &shared, principal, source).await;
        }
    };
    tokio::select! {
        () = work.instrument(span) => {}
        // Before its hello is done a connection has nothing in flight to wait for.
        _ = shutdown.changed() => {}
    }
}

/// Reads and checks the hello; answers it. `None` when refused (the connection is
/// then closed with [`CLOSE_HELLO_REFUSED`] or [`CLOSE_HELLO_TIMEOUT`]).
async fn hello(connection: &Connection, shared: &Shared, source: IpAddr) -> Option<Principal> {
    let first_frame = Duration::from_millis(FIRST_FRAME_TIMEOUT_MS);
    let (mut send, mut recv) = match tokio::time::timeout(first_frame, connection.accept_bi()).await
    {
        Ok(Ok(streams)) => streams,
        Ok(Err(error)) => {
            tracing::debug!(%error, "connection ended before its hello");
            return None;
        }
        Err(_) => {
            connection.close(VarInt::from_u32(CLOSE_HELLO_TIMEOUT), b"no hello in time");
            return None;
        }
    };
    let checked = check_hello(shared, &mut recv, source).await;
    let request_id = shared.ids.next();
    let reply: HelloReply = match &checked {
        Ok(principal) => Ok(Welcome {
            version: PROTOCOL_VERSION,
            principal: *principal,
            node_id: shared.node_id.clone(),
            frame_bytes_max: shared.frame_bytes_max as u32,
        }),
        Err(error) => Err(ErrorBody::new(error, &request_id)),
    };
    let delivered = write_frame(&mut send, &reply, REPLY_BYTES_MAX).await;
    let _ = send.finish();
    match checked {
        Ok(principal) if delivered => {
            tracing::info!(role = %principal.role, sub = principal.sub, "hello accepted");
            Some(principal)
        }
        Ok(_) => None,
        Err(error) => {
            tracing::info!(%request_id, %error, "hello refused");
            refuse(connection, &send, &error).await;
            None
        }
    }
}

/// The principal of a hello that is readable, of this protocol version, within the
/// source's rate and carries a valid token; otherwise why not.
async fn check_hello(
    shared: &Shared,
    recv: &mut RecvStream,
    source: IpAddr,
) -> Result<Principal, ApiError> {
    let first_frame = Duration::from_millis(FIRST_FRAME_TIMEOUT_MS);
    let hello = match tokio::time::timeout(
        first_frame,
        read_frame::<Hello, _>(recv, HELLO_BYTES_MAX),
    )
    .await
    {
        Ok(Ok(Some(hello))) => hello,
        Ok(Ok(None)) => return Err(ApiError::BadRequest("empty hello stream".into())),
        Ok(Err(error)) => return Err(ApiError::BadRequest(format!("hello: {error}"))),
        Err(_) => return Err(ApiError::BadRequest("no hello in time".into())),
    };
    if hello.version != PROTOCOL_VERSION {
        return Err(ApiError::UnsupportedVersion(hello.version));
    }
    shared.api.admission().admit_address(source)?;
    shared.tokens.verify(&hello.token, now_s())
}

/// Lets the refusal reach the client (bounded wait), then closes the connection.
async fn refuse(connection: &Connection, send: &SendStream, error: &ApiError) {
    let delivery = Duration::from_millis(REFUSAL_DELIVERY_MS);
    let _ = tokio::time::timeout(delivery, send.stopped()).await;
    connection.close(
        VarInt::from_u32(CLOSE_HELLO_REFUSED),
        error.kind().as_bytes(),
    );
}

/// Spawns one task per stream until the connection ends or the listener stops.
/// Concurrency is bounded by the transport's `streams_per_connection_max`.
async fn accept_streams(
    connection: &Connection,
    shared: &Arc<Shared>,
    principal: Principal,
    source: IpAddr,
) {
    let mut shutdown = shared.shutdown.clone();
    // Bounded by the connection's life: `accept_bi` fails once it is closed.
    loop {
        let accepted = tokio::select! {
            accepted = connection.accept_bi() => accepted,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((send, recv)) => {
                let task = stream::serve(send, recv, shared.clone(), principal, source);
                tokio::spawn(task.in_current_span());
            }
            Err(error) => {
                tracing::debug!(%error, "connection ended");
                break;
            }
        }
    }
}
