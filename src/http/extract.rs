//! Extractors whose every rejection is a JSON [`Failure`]: the authenticated caller,
//! a numeric path id, query parameters and a strict JSON body.

use super::failure::Failure;
use super::request_id::RequestId;
use super::state::AppState;
use crate::api::{ApiError, Request, Response};
use crate::auth::{now_s, Principal};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Who sent the request (from a valid bearer token), from where, under which id.
pub(crate) struct Caller {
    pub(crate) principal: Principal,
    pub(crate) source: IpAddr,
    pub(crate) request_id: RequestId,
}

impl Caller {
    /// Runs `request` through the API as this caller; a success is answered with
    /// the response's payload as JSON.
    pub(crate) async fn run(
        &self,
        state: &AppState,
        request: Request,
    ) -> Result<axum::response::Response, Failure> {
        state
            .api()
            .handle(
                &self.principal,
                self.source,
                request,
                self.request_id.as_str(),
            )
            .await
            .map(payload)
            .map_err(|error| Failure::new(error, &self.request_id))
    }

    /// The caller of `parts`, whose token is in the `Authorization` header or, if
    /// `query_token` is given (WebSockets: browsers cannot set their headers), there.
    pub(crate) fn authenticate(
        parts: &Parts,
        state: &AppState,
        query_token: Option<&str>,
    ) -> Result<Caller, Failure> {
        let request_id = RequestId::of(parts);
        let refuse = |why: &str| Failure::new(ApiError::Unauthorized(why.to_owned()), &request_id);
        let token = match (bearer_token(parts), query_token) {
            (Some(Ok(token)), _) => token,
            (Some(Err(why)), _) => return Err(refuse(why)),
            (None, Some(token)) => token,
            (None, None) => return Err(refuse("missing bearer token")),
        };
        let principal = state
            .tokens()
            .verify(token, now_s())
            .map_err(|error| Failure::new(error, &request_id))?;
        Ok(Caller {
            principal,
            source: source_address(parts),
            request_id,
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Failure> {
        Caller::authenticate(parts, state, None)
    }
}

/// The payload of a response, without the variant's name.
fn payload(response: Response) -> axum::response::Response {
    match fixit_protocol::commands::payload_of(&response) {
        Ok(payload) => Json(payload).into_response(),
        Err(error) => {
            tracing::error!(%error, "an answer could not be written as JSON");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, if the header is present.
fn bearer_token(parts: &Parts) -> Option<Result<&str, &'static str>> {
    let value = parts.headers.get(header::AUTHORIZATION)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|text| {
            // The scheme is case-insensitive (RFC 9110).
            let (scheme, token) = text.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or("the Authorization header must be `Bearer <token>`");
    Some(token)
}

/// The peer's address (unspecified when the server runs without connect info).
pub(crate) fn source_address(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Query parameters of type `T` (unknown parameters refused where `T` says so).
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<QueryParams<T>, Failure> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(Failure::bad_request(
                format!("query: {}", rejection.body_text()),
                &RequestId::of(parts),
            )),
        }
    }
}

/// A JSON body of type `T`: malformed JSON, missing or unknown fields and wrong
/// types are `bad_request` (400); a body over the limit is `bad_request` with 413.
/// The `Content-Type` is not checked.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Failure;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Failure> {
        let request_id = body_request_id(&request);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_failure(rejection, &request_id))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| Failure::bad_request(format!("request body: {error}"), &request_id))
    }
}

/// The failure for a body that could not be read (413 when it is over the limit,
/// 408 when it was not all sent within `server.http_connections.body_timeout_ms`).
pub(crate) fn body_failure(rejection: BytesRejection, request_id: &RequestId) -> Failure {
    if timed_out(&rejection) {
        return Failure::bad_request("request body: not sent in time", request_id)
            .with_status(StatusCode::REQUEST_TIMEOUT);
    }
    let failure = Failure::bad_request(
        format!("request body: {}", rejection.body_text()),
        request_id,
    );
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        failure.with_status(StatusCode::PAYLOAD_TOO_LARGE)
    } else {
        failure
    }
}

/// Whether reading the body failed on the body-read deadline.
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

fn body_request_id(request: &axum::extract::Request) -> RequestId {
    RequestId::from_extensions(request.extensions())
}
