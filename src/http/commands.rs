//! The one handler of every command route: the request is built from the path's
//! ids, the query (reads) or the JSON body (actions), as the command table
//! (`fixit_protocol::commands`) says, and run through the API as the caller.

use super::extract::{body_failure, Caller, QueryParams};
use super::failure::Failure;
use super::request_id::RequestId;
use super::state::AppState;
use crate::api::Request;
use axum::body::Bytes;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRequest, RawPathParams, State};
use axum::response::Response;
use fixit_protocol::command_spec::{CommandSpec, Method};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Serves command `spec`: authenticates, reads its fields, runs it.
pub(crate) async fn serve(
    spec: &'static CommandSpec,
    State(state): State<AppState>,
    caller: Caller,
    path: Result<RawPathParams, RawPathParamsRejection>,
    QueryParams(query): QueryParams<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let id = &caller.request_id;
    let path = path.map_err(|rejection| {
        Failure::bad_request(format!("path: {}", rejection.body_text()), id)
    })?;
    let mut fields = path_fields(&path, id)?;
    if spec.method == Method::Get {
        query_fields(spec, query, &mut fields, id)?;
    } else {
        let body = Bytes::from_request(request, &state)
            .await
            .map_err(|rejection| body_failure(rejection, id))?;
        body_fields(spec, &body, &mut fields, id)?;
    }
    let request = Request::from_fields(spec, fields)
        .map_err(|error| Failure::bad_request(format!("request body: {error}"), id))?;
    caller.run(&state, request).await
}

/// The path's ids, each an unsigned integer.
fn path_fields(path: &RawPathParams, id: &RequestId) -> Result<Map<String, Value>, Failure> {
    let mut fields = Map::new();
    for (name, text) in path {
        let value: u64 = text.parse().map_err(|_| {
            Failure::bad_request(
                format!("path id must be an unsigned integer, not {text:?}"),
                id,
            )
        })?;
        fields.insert(name.to_owned(), Value::from(value));
    }
    Ok(fields)
}

/// A read's fields from the query string: the declared ones, with their defaults;
/// an unknown parameter is refused.
fn query_fields(
    spec: &CommandSpec,
    mut query: HashMap<String, String>,
    fields: &mut Map<String, Value>,
    id: &RequestId,
) -> Result<(), Failure> {
    for field in spec.rest() {
        let value = match (query.remove(field.name), field.default) {
            (Some(text), _) => field.ty.parse(&text).ok_or_else(|| {
                Failure::bad_request(
                    format!("query: {} must be {}", field.name, field.ty.expected()),
                    id,
                )
            })?,
            (None, Some(default)) => Value::from(default),
            (None, None) => continue,
        };
        fields.insert(field.name.to_owned(), value);
    }
    match query.keys().next() {
        Some(unknown) => Err(Failure::bad_request(
            format!("query: unknown parameter {unknown:?}"),
            id,
        )),
        None => Ok(()),
    }
}

/// An action's fields from its JSON body: an object (or, for a command with no
/// fields outside its path, an empty body). A body field may not repeat a path id.
fn body_fields(
    spec: &CommandSpec,
    body: &[u8],
    fields: &mut Map<String, Value>,
    id: &RequestId,
) -> Result<(), Failure> {
    let refuse = |why: String| Failure::bad_request(format!("request body: {why}"), id);
    if spec.rest().next().is_none() && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let parsed: Value = serde_json::from_slice(body).map_err(|error| refuse(error.to_string()))?;
    let Value::Object(object) = parsed else {
        return Err(refuse("expected a JSON object".to_owned()));
    };
    for (name, value) in object {
        if fields.contains_key(&name) {
            return Err(refuse(format!("{name} is given by the path")));
        }
        let integer = spec
            .fields
            .iter()
            .any(|field| field.name == name && field.ty.is_integer());
        let value = if integer { whole_number(value) } else { value };
        fields.insert(name, value);
    }
    Ok(())
}

/// 2^64: whole numbers below it fit an unsigned 64-bit field.
const INTEGER_BOUND: f64 = 18_446_744_073_709_551_616.0;

/// JSON has one number type: `12.0` is the integer 12 (as JSON Schema says), so
/// an integer field takes it, at its double-precision value (`1e19` is
/// 10000000000000000000); `12.5` stays a fraction and is refused by the field's
/// type.
fn whole_number(value: Value) -> Value {
    match value.as_f64() {
        Some(number)
            if !value.is_i64()
                && !value.is_u64()
                && number.fract() == 0.0
                && number.abs() < INTEGER_BOUND =>
        {
            if number >= 0.0 {
                Value::from(number as u64)
            } else {
                Value::from(number as i64)
            }
        }
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::whole_number;
    use serde_json::json;

    #[test]
    fn whole_numbers_written_as_fractions_become_integers_and_fractions_stay() {
        assert_eq!(whole_number(json!(12.0)), json!(12));
        let parsed: serde_json::Value = serde_json::from_str("4016378022212514.0").unwrap();
        assert_eq!(
            whole_number(parsed),
            json!(4_016_378_022_212_514u64),
            "parsed exactly (serde_json's float_roundtrip)"
        );
        assert_eq!(whole_number(json!(-3.0)), json!(-3));
        assert_eq!(
            whole_number(json!(1e19)),
            json!(10_000_000_000_000_000_000u64)
        );
        assert_eq!(whole_number(json!(12)), json!(12));
        assert_eq!(whole_number(json!(12.5)), json!(12.5));
        assert_eq!(
            whole_number(json!(1e20)),
            json!(1e20),
            "beyond u64 stays a float"
        );
        assert_eq!(whole_number(json!("12")), json!("12"));
    }
}
