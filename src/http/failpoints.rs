//! `GET/PUT /v1/admin/failpoints`: arm and disarm failpoints at run time and read
//! how many faults fired, for chaos harnesses driving node processes (an admin
//! token always). A build without the `failpoints` feature answers the read with
//! `built: false` and refuses to arm anything.

use super::extract::{Caller, JsonBody};
use super::failure::Failure;
use super::request_id::RequestId;
use super::state::AppState;
use crate::api::ApiError;
use crate::auth::Role;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fixit_actors::failpoints;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Body of `PUT /v1/admin/failpoints`: failpoint name → `fail` actions
/// (`"20%return(panic@b/4)"`), or `"off"` to disarm.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ArmBody {
    failpoints: BTreeMap<String, String>,
}

/// The answer of both: whether the build has failpoints, and faults fired so far
/// in this process by failpoint name.
#[derive(Serialize)]
struct FailpointsView {
    built: bool,
    injected: BTreeMap<String, u64>,
}

fn view() -> Response {
    Json(FailpointsView {
        built: cfg!(feature = "failpoints"),
        injected: failpoints::injected(),
    })
    .into_response()
}

fn admin_only(caller: &Caller, parts: &Parts) -> Result<(), Failure> {
    if caller.principal.role == Role::Admin {
        return Ok(());
    }
    Err(Failure::new(
        ApiError::Forbidden("failpoints need an admin token".into()),
        &RequestId::of(parts),
    ))
}

/// `GET /v1/admin/failpoints`.
pub(crate) async fn read(caller: Caller, parts: Parts) -> Result<Response, Failure> {
    admin_only(&caller, &parts)?;
    Ok(view())
}

/// `PUT /v1/admin/failpoints`: arms (or, with `"off"`, disarms) each named
/// failpoint; an unknown name or bad actions refuse the whole body, arming nothing.
/// Recorded in the audit log either way.
pub(crate) async fn arm(
    State(state): State<AppState>,
    caller: Caller,
    parts: Parts,
    JsonBody(body): JsonBody<ArmBody>,
) -> Result<Response, Failure> {
    admin_only(&caller, &parts)?;
    let armed = arm_all(&body, &parts);
    let fields = body
        .failpoints
        .iter()
        .map(|(name, actions)| (name.clone(), serde_json::Value::from(actions.as_str())))
        .collect();
    let outcome = match &armed {
        Ok(()) => "ok",
        Err(_) => "bad_request",
    };
    let source = super::extract::source_address(&parts);
    state.api().audit(
        &caller.principal,
        source,
        &RequestId::of(&parts).0,
        "arm_failpoints",
        fields,
        outcome,
    );
    armed?;
    Ok(view())
}

/// Arms every failpoint of `body`, or none if any is unknown or malformed.
fn arm_all(body: &ArmBody, parts: &Parts) -> Result<(), Failure> {
    let refuse = |detail: String| Failure::bad_request(detail, &RequestId::of(parts));
    if !cfg!(feature = "failpoints") {
        return Err(refuse(
            "this build has no failpoints (build with --features failpoints)".into(),
        ));
    }
    for (name, actions) in &body.failpoints {
        if actions != "off" {
            failpoints::validate(name, actions).map_err(refuse)?;
        }
    }
    #[cfg(feature = "failpoints")]
    for (name, actions) in &body.failpoints {
        if actions == "off" {
            failpoints::disarm(name);
        } else {
            failpoints::arm(name, actions).map_err(|error| refuse(format!("{name}: {error}")))?;
        }
    }
    Ok(())
}
