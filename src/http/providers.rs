//! Provider endpoints: online, offline, location and the provider's record.

use super::extract::{Caller, EmptyBody, IdPath, JsonBody};
use super::failure::Failure;
use super::state::AppState;
use crate::api::{NearbyQuery, Request};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

/// Body of `POST /v1/providers/{id}/online`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OnlineBody {
    skills: Vec<String>,
}

/// Body of `PUT /v1/providers/{id}/location`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocationBody {
    lat: f64,
    lon: f64,
}

/// `POST /v1/nearby`: the nearest available providers of a skill around a point,
/// from every node whose regions reach into the circle.
pub(crate) async fn nearby(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(query): JsonBody<NearbyQuery>,
) -> Result<Response, Failure> {
    caller.run(&state, Request::Nearby(query)).await
}

/// `GET /v1/providers/{id}`: the provider's record.
pub(crate) async fn status(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(provider): IdPath,
) -> Result<Response, Failure> {
    caller
        .run(&state, Request::ProviderStatus { provider })
        .await
}

/// `POST /v1/providers/{id}/online`: available with skills.
pub(crate) async fn online(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(provider): IdPath,
    JsonBody(body): JsonBody<OnlineBody>,
) -> Result<Response, Failure> {
    let request = Request::ProviderOnline {
        provider,
        skills: body.skills,
    };
    caller.run(&state, request).await
}

/// `POST /v1/providers/{id}/offline`: no more offers.
pub(crate) async fn offline(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(provider): IdPath,
    EmptyBody: EmptyBody,
) -> Result<Response, Failure> {
    caller
        .run(&state, Request::ProviderOffline { provider })
        .await
}

/// `PUT /v1/providers/{id}/location`: the current position.
pub(crate) async fn location(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(provider): IdPath,
    JsonBody(body): JsonBody<LocationBody>,
) -> Result<Response, Failure> {
    let request = Request::Location {
        provider,
        lat: body.lat,
        lon: body.lon,
    };
    caller.run(&state, request).await
}
