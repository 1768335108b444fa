//! Job endpoints: book, read, accept, decline, start, complete and cancel.

use super::extract::{Caller, IdPath, JsonBody};
use super::failure::Failure;
use super::state::AppState;
use crate::api::Request;
use axum::extract::State;
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

/// Body of `POST /v1/jobs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BookBody {
    customer: u64,
    key: String,
    skill: String,
    lat: f64,
    lon: f64,
    price: i64,
}

/// Body of accept, decline and start.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProviderBody {
    provider: u64,
}

/// Body of complete: the proof of work in standard, padded base64.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteBody {
    provider: u64,
    proof: String,
}

/// Body of cancel.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerBody {
    customer: u64,
}

/// `POST /v1/jobs`: a customer books; the price is held in escrow.
pub(crate) async fn book(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<BookBody>,
) -> Result<Response, Failure> {
    let request = Request::RequestJob {
        customer: body.customer,
        key: body.key,
        skill: body.skill,
        lat: body.lat,
        lon: body.lon,
        price: body.price,
    };
    caller.run(&state, request).await
}

/// `GET /v1/jobs/{id}`: the job's record.
pub(crate) async fn status(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(job): IdPath,
) -> Result<Response, Failure> {
    caller.run(&state, Request::JobStatus { job }).await
}

/// `POST /v1/jobs/{id}/accept`.
pub(crate) async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(job): IdPath,
    JsonBody(body): JsonBody<ProviderBody>,
) -> Result<Response, Failure> {
    let provider = body.provider;
    caller.run(&state, Request::Accept { provider, job }).await
}

/// `POST /v1/jobs/{id}/decline`.
pub(crate) async fn decline(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(job): IdPath,
    JsonBody(body): JsonBody<ProviderBody>,
) -> Result<Response, Failure> {
    let provider = body.provider;
    caller.run(&state, Request::Decline { provider, job }).await
}

/// `POST /v1/jobs/{id}/start`.
pub(crate) async fn start(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(job): IdPath,
    JsonBody(body): JsonBody<ProviderBody>,
) -> Result<Response, Failure> {
    let provider = body.provider;
    caller.run(&state, Request::Start { provider, job }).await
}

/// `POST /v1/jobs/{id}/complete` with a base64 proof.
pub(crate) async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(job): IdPath,
    JsonBody(body): JsonBody<CompleteBody>,
) -> Result<Response, Failure> {
    let proof = STANDARD.decode(body.proof.as_bytes()).map_err(|error| {
        Failure::bad_request(
            format!("proof must be standard base64: {error}"),
            &caller.request_id,
        )
    })?;
    let request = Request::Complete {
        provider: body.provider,
        job,
        proof,
    };
    caller.run(&state, request).await
}

/// `POST /v1/jobs/{id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(job): IdPath,
    JsonBody(body): JsonBody<CustomerBody>,
) -> Result<Response, Failure> {
    let customer = body.customer;
    caller
        .run(&state, Request::CancelJob { customer, job })
        .await
}
