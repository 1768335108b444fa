//! The OpenAPI 3.1 document of the bridge, built from the route table and, for the
//! commands, from the command table: every route, its parameters, request body,
//! success body and error body.

mod schemas;

use super::routes::{routes, Operation, Route, Verb};
use fixit_actors::config::DispatchSection;
use fixit_protocol::command_spec::{CommandSpec, Method, Placement};
use schemas::{BOUND_KEY, PRICE_BOUND, RADIUS_BOUND};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Access {
    /// No token.
    Open,
    /// A bearer token; the text says whose.
    Token(&'static str),
}

/// What the document says about one operation.
struct Spec {
    summary: &'static str,
    access: Access,
    /// Name of the request body schema, if the operation takes a body.
    body: Option<String>,
    /// The success answer: status, media type and schema.
    success: (u16, &'static str, Value),
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn command(
    summary: &'static str,
    who: &'static str,
    body: Option<&'static str>,
    answer: &str,
) -> Spec {
    Spec {
        summary,
        access: Access::Token(who),
        body: body.map(str::to_owned),
        success: (200, "application/json", schema(answer)),
    }
}

/// A command of the command table: its body schema is `<Variant>Body` when it
/// has fields outside its path and is not a read.
fn of_command(spec: &'static CommandSpec) -> Spec {
    let answer = schemas::answer_schema(spec.answer);
    let takes_body = spec.method != Method::Get && spec.rest().next().is_some();
    Spec {
        summary: spec.summary,
        access: Access::Token(spec.who),
        body: takes_body.then(|| schemas::body_name(spec)),
        success: (200, "application/json", answer),
    }
}

fn open(summary: &'static str, media: &'static str, answer: Value) -> Spec {
    Spec {
        summary,
        access: Access::Open,
        body: None,
        success: (200, media, answer),
    }
}

fn spec(operation: Operation) -> Spec {
    use Operation as O;
    let text = json!({ "type": "string" });
    match operation {
        O::Command(command) => of_command(command),
        O::Events => Spec {
            summary: "WebSocket of pushes: each text message is one Push as JSON. The token may also be given as ?token= (browsers cannot set WebSocket headers). The server closes with 1001 when it stops and 1008 when the client stops reading.",
            access: Access::Token("a customer (job events) or a provider (offers); an admin has none"),
            body: None,
            success: (101, "application/json", schema("Push")),
        },
        O::DashboardData => Spec {
            access: Access::Token("an admin, unless the node's dashboard is open (demo)"),
            ..command("The dashboard's live data", "", None, "Dashboard")
        },
        O::Cluster => Spec {
            access: Access::Token("an admin, unless the node's dashboard is open (demo)"),
            ..command("This node's cluster links: each peer and its link state (single node: cluster false, no peers)", "", None, "ClusterStatus")
        },
        O::Failpoints => Spec {
            access: Access::Token("an admin"),
            ..command("Faults injected so far by failpoint, and whether this build has failpoints (chaos runs)", "", None, "Failpoints")
        },
        O::ArmFailpoints => Spec {
            access: Access::Token("an admin"),
            ..command("Arms failpoints (name → fail actions with return(FAULT[@NODE][/N]), or \"off\"); a build without the failpoints feature refuses", "", Some("ArmFailpointsBody"), "Failpoints")
        },
        O::DashboardPage => open("The dashboard page (self-contained HTML; token in /#token=...)", "text/html", text),
        O::Health => open("200 ok while the process serves", "text/plain", text),
        O::Ready => open("200 while the supervision tree runs, else 503", "text/plain", text),
        O::Metrics => open("Prometheus text: requests, latency, actors, group commit, pushes, websockets", "text/plain", text),
        O::OpenApi => open("This document", "application/json", json!({ "type": "object" })),
    }
}

/// The document with a node's configured bounds: every schema marked
/// `x-fixit-bound` gets its `maximum` from the node's `dispatch` section.
pub(crate) fn document_for(dispatch: &DispatchSection) -> Value {
    let mut document = document().clone();
    set_bounds(&mut document, dispatch);
    document
}

fn set_bounds(value: &mut Value, dispatch: &DispatchSection) {
    match value {
        Value::Object(object) => {
            let maximum = match object.get(BOUND_KEY).and_then(Value::as_str) {
                Some(PRICE_BOUND) => Some(Value::from(dispatch.price_max)),
                Some(RADIUS_BOUND) => Some(Value::from(dispatch.search_radius_m)),
                _ => None,
            };
            if let Some(maximum) = maximum {
                object.insert("maximum".to_owned(), maximum);
            }
            object
                .values_mut()
                .for_each(|inner| set_bounds(inner, dispatch));
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|inner| set_bounds(inner, dispatch)),
        _ => {}
    }
}

/// The document (built once).
pub(crate) fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

fn build() -> Value {
    let mut paths = Map::new();
    for route in routes() {
        let item = paths
            .entry(route.path)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(route.verb.openapi_key().to_owned(), operation(route));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "fixit-edge HTTP bridge",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON endpoints for every command of a fixit-edge node. Money is integer minor units (i64). Every answer has an x-request-id header (the client's, if 1 to 64 printable ASCII characters without spaces, else generated). Every error answer is an ErrorBody; retryable ones also carry Retry-After (seconds, rounded up).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas::all(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": { "Error": error_response() },
        },
    })
}

fn operation(route: &Route) -> Value {
    let spec = spec(route.operation);
    let (status, media, answer) = &spec.success;
    let mut responses = Map::new();
    let description = if *status == 101 {
        "Switching to WebSocket"
    } else {
        "Success"
    };
    responses.insert(
        status.to_string(),
        json!({ "description": description, "content": { *media: { "schema": answer } } }),
    );
    for status in error_statuses(route, spec.access) {
        responses.insert(
            status.to_string(),
            json!({ "$ref": "#/components/responses/Error" }),
        );
    }
    let mut operation = json!({
        "operationId": route.operation.id(),
        "summary": spec.summary,
        "parameters": parameters(route),
        "responses": responses,
    });
    if let Access::Token(who) = spec.access {
        operation["security"] = json!([{ "bearer": [] }]);
        operation["description"] = json!(format!("Token: {who}."));
    }
    if let Some(body) = &spec.body {
        operation["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": schema(body) } },
        });
    }
    operation
}

fn parameters(route: &Route) -> Value {
    let mut parameters = Vec::new();
    if let Operation::Command(spec) = route.operation {
        for field in spec.fields.iter().filter(|field| spec.in_path(field.name)) {
            parameters.push(json!({
                "name": field.name, "in": "path", "required": true,
                "description": field.doc, "schema": schemas::field_schema(field.ty),
            }));
        }
        if spec.method == Method::Get {
            for field in spec.rest() {
                let mut schema = schemas::field_schema(field.ty);
                if let Some(default) = field.default {
                    schema["default"] = json!(default);
                }
                parameters.push(json!({
                    "name": field.name, "in": "query", "required": field.default.is_none(),
                    "description": field.doc, "schema": schema,
                }));
            }
        }
    }
    if let Operation::Events = route.operation {
        parameters.push(json!({ "name": "token", "in": "query", "schema": { "type": "string" }, "description": "Bearer token, when the Authorization header cannot be set." }));
    }
    Value::Array(parameters)
}

/// The error statuses an operation may answer.
fn error_statuses(route: &Route, access: Access) -> Vec<u16> {
    match (access, route.operation) {
        (Access::Open, Operation::Ready) => vec![503],
        (Access::Open, _) => vec![],
        (Access::Token(_), Operation::Command(spec)) => {
            let mut statuses = vec![400, 401, 402, 403, 404, 409, 429, 500, 503];
            if spec.placement == Placement::ProviderPosition {
                statuses.push(421);
            }
            if route.verb != Verb::Get {
                statuses.extend([408, 413]);
            }
            statuses.sort_unstable();
            statuses
        }
        (Access::Token(_), _) => {
            let mut statuses = vec![400, 401, 403, 429, 500, 503];
            if route.verb != Verb::Get {
                statuses.extend([408, 413]);
                statuses.sort_unstable();
            }
            statuses
        }
    }
}

fn error_response() -> Value {
    json!({
        "description": "An error: `error` is the kind (see ErrorBody), `message` the detail.",
        "headers": {
            "Retry-After": { "description": "Seconds to wait, for retryable errors.", "schema": { "type": "integer" } },
            "x-request-id": { "description": "The request's id.", "schema": { "type": "string" } },
        },
        "content": { "application/json": { "schema": schema("ErrorBody") } },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_with_its_bodies_and_errors() {
        let document = document();
        let mut described = 0;
        for route in routes() {
            let operation = &document["paths"][route.path][route.verb.openapi_key()];
            assert!(operation.is_object(), "{route:?} is not described");
            described += 1;
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{route:?} has no responses");
            if let Some(body) =
                operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
            {
                let name = body.trim_start_matches("#/components/schemas/");
                assert!(
                    document["components"]["schemas"][name].is_object(),
                    "{name} missing"
                );
            }
            if operation["security"].is_array() {
                assert!(
                    responses.contains_key("401"),
                    "{route:?} lacks its error body"
                );
            }
        }
        let operations: usize = document["paths"]
            .as_object()
            .expect("paths")
            .values()
            .map(|item| item.as_object().map_or(0, Map::len))
            .sum();
        assert_eq!(
            operations, described,
            "the document describes a route the router lacks"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let document = document();
        let text = document.to_string();
        for piece in text.split("\"$ref\":\"").skip(1) {
            let target = piece.split('"').next().unwrap_or_default();
            let pointer = target.trim_start_matches('#');
            assert!(document.pointer(pointer).is_some(), "dangling {target}");
        }
    }

    #[test]
    fn the_error_body_lists_every_kind_with_its_status() {
        let kinds =
            &document()["components"]["schemas"]["ErrorBody"]["properties"]["error"]["enum"];
        let kinds: Vec<&str> = kinds
            .as_array()
            .expect("enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for (kind, _status) in schemas::error_kinds() {
            assert!(kinds.contains(&kind), "{kind}");
        }
        assert!(kinds.contains(&"rate_limited") && kinds.contains(&"insufficient_funds"));
    }
}
