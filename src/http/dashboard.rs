//! The dashboard: `GET /` serves a self-contained page (no network beyond this
//! server) that polls `GET /v1/dashboard` every second and draws the live map,
//! counters, recent jobs and (in a cluster) the nodes with their links and
//! cross-node traffic.

mod snapshot;

use super::extract::{source_address, Caller};
use super::failure::Failure;
use super::request_id::RequestId;
use super::state::AppState;
use crate::api::ApiError;
use crate::auth::Role;
use axum::extract::State;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fixit_actors::error::CoreError;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The page, embedded in the binary.
const PAGE_HTML: &str = include_str!("dashboard/page.html");

/// Serves the page; it asks for data itself, with the token from `/#token=...`.
/// Its Content-Security-Policy allows its own inline script and style (by hash)
/// and requests to this server, nothing else: no other script runs, even if a
/// client-supplied string (a skill name) got into the page as markup.
pub(crate) async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, content_security_policy()),
        ],
        Html(PAGE_HTML),
    )
        .into_response()
}

/// The page's policy: its one inline `<script>` and `<style>` by SHA-256.
fn content_security_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        format!(
            "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            inline_hash(PAGE_HTML, "script"),
            inline_hash(PAGE_HTML, "style"),
        )
    })
}

/// `'sha256-…'` of the text of the page's first inline `<tag>` element.
fn inline_hash(page: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let text = page
        .split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map_or("", |(text, _)| text);
    let digest = Sha256::digest(text.as_bytes());
    format!("'sha256-{}'", STANDARD.encode(digest))
}

/// Admits a request for an operator view (dashboard data, cluster status): an admin
/// token unless the dashboard is open (demo), and the per-address rate limit.
pub(crate) fn admit_operator_view(
    state: &AppState,
    parts: &Parts,
    what: &str,
) -> Result<(), Failure> {
    let request_id = RequestId::of(parts);
    let fail = |error: ApiError| Failure::new(error, &request_id);
    if !state.dashboard_open() {
        let caller = Caller::authenticate(parts, state, None)?;
        if caller.principal.role != Role::Admin {
            return Err(fail(ApiError::Forbidden(format!(
                "{what} needs an admin token"
            ))));
        }
    }
    state
        .api()
        .admission()
        .admit_address(source_address(parts))
        .map_err(fail)
}

/// The live data: needs an admin token unless the dashboard is open (demo).
pub(crate) async fn data(State(state): State<AppState>, parts: Parts) -> Result<Response, Failure> {
    admit_operator_view(&state, &parts, "the dashboard")?;
    let request_id = RequestId::of(&parts);
    let fail = |error: ApiError| Failure::new(error, &request_id);
    let node = state.api().node().clone();
    let node_id = state.node_id().to_owned();
    let websockets_open = state.websockets().open();
    let cluster = state.cluster().cloned();
    let snapshot = tokio::task::spawn_blocking(move || {
        snapshot::take(&node, node_id, websockets_open, cluster.as_ref())
    })
    .await
    .map_err(|error| fail(ApiError::Core(CoreError::Internal(error.to_string()))))?
    .map_err(|error| fail(ApiError::Core(error)))?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(snapshot)).into_response())
}
