//! JSON schemas of the bridge's bodies, as serde writes and reads them.

use crate::api::ApiError;
use fixit_actors::error::CoreError;
use fixit_protocol::api::Push;
use fixit_protocol::command_spec::{CommandSpec, FieldType, Method};
use fixit_protocol::commands::{Response, COMMANDS};
use schemars::generate::SchemaSettings;
use serde_json::{json, Value};

fn int64() -> Value {
    json!({ "type": "integer", "format": "int64" })
}

fn uint64() -> Value {
    json!({ "type": "integer", "format": "uint64", "minimum": 0, "maximum": u64::MAX })
}

fn nullable(schema: Value) -> Value {
    json!({ "oneOf": [schema, { "type": "null" }] })
}

/// A closed object: every listed property required, no others.
fn object(properties: Value) -> Value {
    let required: Vec<String> = properties
        .as_object()
        .map(|map| map.keys().cloned().collect())
        .unwrap_or_default();
    json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
}

/// Every error kind with its HTTP status.
pub(super) fn error_kinds() -> Vec<(&'static str, u16)> {
    let text = String::new;
    [
        ApiError::BadRequest(text()),
        ApiError::Unauthorized(text()),
        ApiError::Forbidden(text()),
        ApiError::RateLimited { retry_after_ms: 1 },
        ApiError::UnsupportedVersion(0),
        ApiError::Moved { node: text() },
        ApiError::Core(CoreError::Invalid(text())),
        ApiError::Core(CoreError::InsufficientFunds {
            available: 0,
            needed: 0,
        }),
        ApiError::Core(CoreError::IdempotencyConflict { key: text() }),
        ApiError::Core(CoreError::NotFound(text())),
        ApiError::Core(CoreError::Conflict(text())),
        ApiError::Core(CoreError::Busy { retry_after_ms: 1 }),
        ApiError::Core(CoreError::Unavailable(text())),
        ApiError::Core(CoreError::Internal(text())),
    ]
    .iter()
    .map(|error| (error.kind(), error.http_status()))
    .collect()
}

fn error_body() -> Value {
    let kinds = error_kinds();
    let table: Vec<String> = kinds
        .iter()
        .map(|(kind, status)| format!("{kind} ({status})"))
        .collect();
    let names: Vec<&str> = kinds.iter().map(|(kind, _)| *kind).collect();
    let mut schema = object(json!({
        "error": { "type": "string", "enum": names, "description": format!(
            "The kind, with its HTTP status: {}. A body over the size limit is bad_request with 413, one not sent within the body deadline bad_request with 408; an unknown route is not_found with 404; a wrong method is bad_request with 405.",
            table.join(", ")) },
        "message": { "type": "string" },
        "retry_after_ms": nullable(uint64()),
        "request_id": { "type": "string" },
    }));
    schema["description"] = json!("The body of every error answer. Nothing changed unless the kind is unavailable or internal (then retry with the same idempotency key).");
    schema
}

/// The schemas of every answer and push and the records they carry, derived from
/// their serde types (`fixit-protocol` derives `JsonSchema` beside `Serialize`), with
/// references into `#/components/schemas`.
fn domain() -> &'static serde_json::Map<String, Value> {
    static DOMAIN: std::sync::OnceLock<serde_json::Map<String, Value>> = std::sync::OnceLock::new();
    DOMAIN.get_or_init(generate)
}

fn generate() -> serde_json::Map<String, Value> {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = "/components/schemas".into())
        .into_generator();
    generator.subschema_for::<Response>();
    generator.subschema_for::<Push>();
    generator.take_definitions(true)
}

/// The schema of the answer a command's `Response` variant carries over HTTP
/// (the variant's payload).
pub(super) fn answer_schema(variant: &str) -> Value {
    let response = &domain()["Response"];
    response["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|arm| arm["properties"].get(variant).cloned())
        .unwrap_or_else(|| json!({ "description": format!("no answer named {variant}") }))
}

/// The name of a command's body schema.
pub(super) fn body_name(spec: &CommandSpec) -> String {
    format!("{}Body", spec.variant)
}

/// Marks a schema whose `maximum` is a node's configured value (an OpenAPI
/// extension, filled in per node).
pub(super) const BOUND_KEY: &str = "x-fixit-bound";
/// The bound is `dispatch.price_max`.
pub(super) const PRICE_BOUND: &str = "dispatch.price_max";
/// The bound is `dispatch.search_radius_m`.
pub(super) const RADIUS_BOUND: &str = "dispatch.search_radius_m";

/// The schema of one command field.
pub(super) fn field_schema(ty: FieldType) -> Value {
    let skill = json!({ "type": "string", "pattern": "^[a-z0-9_-]{1,32}$" });
    match ty {
        FieldType::Unsigned => uint64(),
        FieldType::Subject => {
            json!({ "type": "integer", "format": "uint64", "minimum": 0, "maximum": fixit_protocol::ids::SUBJECT_MAX })
        }
        FieldType::Wallet => {
            json!({ "type": "integer", "format": "uint64", "minimum": 0, "maximum": fixit_protocol::ids::WalletId::PLATFORM.0, "description": "A customer's wallet is its id, a provider's 2^62 + its id, the platform's 2^63." })
        }
        FieldType::Count { min, max } => {
            json!({ "type": "integer", "minimum": min, "maximum": max })
        }
        FieldType::Amount => {
            json!({ "type": "integer", "format": "int64", "minimum": 1, "maximum": fixit_actors::ledger::AMOUNT_MAX })
        }
        FieldType::Price => {
            json!({ "type": "integer", "format": "int64", "minimum": 1, BOUND_KEY: PRICE_BOUND, "description": "At most the node's dispatch.price_max." })
        }
        FieldType::Key => {
            json!({ "type": "string", "minLength": 1, "maxLength": fixit_actors::ledger::IDEMPOTENCY_KEY_BYTES_MAX, "pattern": "^[\\x21-\\x7e]+$", "description": "Idempotency key: a retry with the same key and content returns the first result; other content is idempotency_conflict." })
        }
        FieldType::TokenId => {
            json!({ "type": "string", "minLength": 1, "maxLength": fixit_protocol::command_spec::TOKEN_ID_BYTES_MAX, "pattern": "^[\\x21-\\x7e]+$" })
        }
        FieldType::RoleName => {
            json!({ "type": "string", "enum": ["customer", "provider", "admin"] })
        }
        FieldType::Skill => skill,
        FieldType::Skills => {
            json!({ "type": "array", "minItems": 1, "maxItems": fixit_actors::provider::SKILLS_MAX, "items": skill })
        }
        FieldType::Latitude => json!({ "type": "number", "minimum": -90, "maximum": 90 }),
        FieldType::Longitude => json!({ "type": "number", "minimum": -180, "maximum": 180 }),
        FieldType::Radius => {
            json!({ "type": "number", "exclusiveMinimum": 0, BOUND_KEY: RADIUS_BOUND, "description": "At most the node's dispatch.search_radius_m." })
        }
        FieldType::Bytes => {
            json!({ "type": "string", "contentEncoding": "base64", "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$", "description": "Standard padded base64." })
        }
        FieldType::AreaName => {
            json!({ "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" })
        }
        FieldType::NodeName => {
            json!({ "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", "description": "A cluster node's name (one DNS label, not all digits)." })
        }
        FieldType::SkillFilter => {
            json!({ "type": "array", "minItems": 0, "maxItems": 16, "items": skill })
        }
        FieldType::Geometry => fixit_protocol::area::geometry_schema().to_value(),
        FieldType::WorkArea => {
            let geometry = fixit_protocol::area::geometry_schema().to_value();
            json!({ "oneOf": [
                { "type": "string", "const": "anywhere" },
                object(json!({ "circle": object(json!({
                    "lat": { "type": "number", "minimum": -90, "maximum": 90 },
                    "lon": { "type": "number", "minimum": -180, "maximum": 180 },
                    "radius_m": { "type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000 }
                })) })),
                object(json!({ "polygon": geometry }))
            ] })
        }
    }
}

/// The body schema of every command that takes one: its fields outside the path.
fn bodies() -> Vec<(String, Value)> {
    COMMANDS
        .iter()
        .filter(|spec| spec.method != Method::Get && spec.rest().next().is_some())
        .map(|spec| {
            let properties: serde_json::Map<String, Value> = spec
                .rest()
                .map(|field| {
                    let mut schema = field_schema(field.ty);
                    if schema.get("description").is_none() {
                        schema["description"] = json!(field.doc);
                    }
                    (field.name.to_owned(), schema)
                })
                .collect();
            (body_name(spec), object(Value::Object(properties)))
        })
        .collect()
}

fn dashboard() -> Value {
    let counts = json!({ "type": "object", "additionalProperties": { "type": "integer" } });
    object(json!({
        "node": { "type": "string" },
        "providers": { "type": "array", "items": object(json!({
            "id": uint64(), "status": { "enum": ["offline", "available", "offered", "busy"] },
            "job": nullable(uint64()), "lat": nullable(json!({ "type": "number" })),
            "lon": nullable(json!({ "type": "number" })), "skills": { "type": "array", "items": { "type": "string" } },
        })) },
        "jobs": { "type": "array", "items": object(json!({
            "id": uint64(), "customer": uint64(), "provider": nullable(uint64()),
            "status": { "enum": ["requested", "offered", "accepted", "in_progress", "completed", "cancelled", "expired"] },
            "skill": { "type": "string" }, "lat": { "type": "number" }, "lon": { "type": "number" },
            "price": int64(), "created_ms": uint64(),
        })) },
        "counters": object(json!({
            "jobs_by_status": counts, "live": counts, "restarts": counts,
            "pushes_sent": uint64(), "pushes_dropped": uint64(), "websockets_open": uint64(),
            "bookings_outside_service_area": uint64(), "offers_across_regions": uint64(),
            "pushes_forwarded": uint64(), "pushes_forward_dropped": uint64(), "zone_events": uint64(),
        })),
        "areas": { "$ref": "#/components/schemas/AreaList" },
        "work_areas": { "type": "array", "items": object(json!({
            "provider": uint64(), "area": field_schema(FieldType::WorkArea),
        })) },
        "cluster": nullable(object(json!({
            "node": { "type": "string" },
            "peers": { "type": "array", "items": peer_view() },
            "traffic": traffic(),
            "outbox": outbox(),
        }))),
    }))
}

/// A node's cross-node traffic counters (`TrafficView`).
fn traffic() -> Value {
    object(json!({
        "forwarded_out": uint64(), "forwarded_in": uint64(), "wallet_calls_out": uint64(),
        "wallet_calls_in": uint64(), "transfers_delivered": uint64(), "transfers_received": uint64(),
        "nearby_fanouts": uint64(), "calls_failed": uint64(), "job_events_lost": uint64(),
        "candidate_fanouts": uint64(),
    }))
}

/// A node's outbox backlog: transfers not yet acknowledged and their sum.
fn outbox() -> Value {
    object(json!({ "transfers": uint64(), "amount": int64() }))
}

fn cluster_status() -> Value {
    let mut schema = object(json!({
        "node": { "type": "string" },
        "cluster": { "type": "boolean" },
        "incarnation": uint64(),
        "membership_changes": uint64(),
        "membership_downs": uint64(),
        "peers": { "type": "array", "items": peer_view() },
        "traffic": traffic(),
        "outbox": outbox(),
    }));
    // A single node answers without its cluster's parts.
    schema["required"] = json!(["node", "cluster", "peers"]);
    schema
}

/// One peer as membership and its link see it (`http::cluster::PeerView`).
fn peer_view() -> Value {
    object(json!({
        "name": { "type": "string" },
        "addr": { "type": "string" },
        "status": { "enum": ["alive", "suspect", "down", "left", "unknown"] },
        "incarnation": nullable(uint64()),
        "since_ms": nullable(uint64()),
        "state": { "enum": ["Idle", "Connecting", "Up", "Down"] },
        "link_down_since_ms": nullable(uint64()),
        "rtt_ms": nullable(uint64()),
        "last_error": nullable(json!({ "type": "string" })),
        "last_error_ms": nullable(uint64()),
    }))
}

/// The answer of the failpoint endpoints, and the body that arms them.
fn failpoints() -> [(&'static str, Value); 2] {
    let counts = json!({ "type": "object", "additionalProperties": uint64() });
    let names: Vec<&str> = fixit_actors::failpoints::CATALOGUE
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let actions = json!({
        "type": "object",
        "propertyNames": { "enum": names },
        "additionalProperties": { "type": "string" },
    });
    [
        (
            "Failpoints",
            object(json!({ "built": { "type": "boolean" }, "injected": counts })),
        ),
        (
            "ArmFailpointsBody",
            object(json!({ "failpoints": actions })),
        ),
    ]
}

/// Every schema by name.
pub(super) fn all() -> Value {
    let mut schemas = serde_json::Map::new();
    schemas.insert("ErrorBody".into(), error_body());
    schemas.insert("Dashboard".into(), dashboard());
    schemas.insert("ClusterStatus".into(), cluster_status());
    schemas.extend(domain().clone());
    for (name, schema) in failpoints() {
        schemas.insert(name.into(), schema);
    }
    for (name, schema) in bodies() {
        schemas.insert(name, schema);
    }
    Value::Object(schemas)
}
