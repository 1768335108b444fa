//! Operator endpoints without a token: `/health`, `/ready`, `/metrics`,
//! `/openapi.json`, and the JSON answers for unknown routes and methods.

use super::failure::Failure;
use super::metrics_text;
use super::request_id::RequestId;
use super::state::AppState;
use crate::api::ApiError;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fixit_actors::error::CoreError;

/// Content type of the Prometheus text format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// 200 "ok" while the process serves.
pub(crate) async fn health() -> &'static str {
    "ok"
}

/// 200 while the node's supervision tree runs, else 503.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    if state.api().node().is_running() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: supervision tree stopped",
        )
            .into_response()
    }
}

/// Prometheus text: request metrics and node gauges.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let text = metrics_text::render(state.api(), state.websockets().open());
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response()
}

/// The OpenAPI 3.1 document, with this node's configured bounds.
pub(crate) async fn openapi_document(State(state): State<AppState>) -> Response {
    Json(state.openapi()).into_response()
}

/// 404 for a path no route serves.
pub(crate) async fn no_route(request_id: RequestId, method: Method, uri: Uri) -> Failure {
    let error = CoreError::NotFound(format!("route {method} {}", uri.path()));
    Failure::new(ApiError::Core(error), &request_id)
}

/// 405 for a known path with another method.
pub(crate) async fn method_not_allowed(request_id: RequestId, method: Method, uri: Uri) -> Failure {
    let detail = format!("method {method} is not served on {}", uri.path());
    Failure::bad_request(detail, &request_id).with_status(StatusCode::METHOD_NOT_ALLOWED)
}
