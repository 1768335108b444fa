//! What the command table says about a command ([`CommandSpec`]: HTTP method and
//! path, fields, access rule, placement, answer, CLI verb), and the generic code
//! that reads only the spec: authorization by owner and role.
//! The table itself, beside the `Request` enum, is [`crate::commands`].

use crate::principal::{Principal, Role};
use serde_json::Value;

/// An HTTP method a command travels with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Reads; fields that are not in the path go in the query string.
    Get,
    /// Acts; fields that are not in the path go in the JSON body.
    Post,
    /// Replaces (a provider's position); fields as for `Post`.
    Put,
}

/// Who may send a command (admins may send every command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any principal with a valid token.
    AnyRole,
    /// Admins only.
    Admin,
    /// The principal whose subject is the command's `field`; with a role, only a
    /// principal of that role.
    Owner {
        /// The id field naming the owner.
        field: &'static str,
        /// The role the owner must have, if any.
        role: Option<Role>,
    },
    /// The owner of the wallet named by the field: a customer's or a provider's
    /// own wallet ([`WalletId::of`](crate::ids::WalletId::of)); the platform's
    /// wallet is an admin's only.
    WalletOwner {
        /// The wallet id field.
        field: &'static str,
    },
}

/// Longest token id (`jti`) a revocation names, in bytes.
pub const TOKEN_ID_BYTES_MAX: usize = 128;

/// Which node of a cluster serves a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The node the client is connected to.
    Here,
    /// The home node of the wallet named by the field.
    WalletHome(&'static str),
    /// The node holding the job named by the field (from the job id's node number).
    JobHolder(&'static str),
    /// The node owning the region of the command's `lat`/`lon`.
    PositionOwner,
    /// A provider's position: a free provider moves to the node owning it.
    ProviderPosition,
    /// Every node whose regions reach the search circle (scatter–gather).
    NearbyFanOut,
    /// A cluster-wide setting (areas, work areas, revocations): changed here,
    /// then brought to every other member at once (a settings comparison); the
    /// nodes that did not answer are named in the answer and catch up later by
    /// anti-entropy.
    Everywhere,
}

/// The kind of value a field holds, for the OpenAPI schema, the query string and
/// the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// An unsigned 64-bit id or sequence number.
    Unsigned,
    /// An unsigned count in `min..=max`.
    Count {
        /// The smallest accepted value.
        min: u32,
        /// The largest accepted value.
        max: u32,
    },
    /// Money moved by a ledger operation, in minor units (1 to the ledger's maximum).
    Amount,
    /// A price in minor units (at least 1).
    Price,
    /// An idempotency key.
    Key,
    /// A skill name.
    Skill,
    /// A list of skill names.
    Skills,
    /// Latitude in degrees, [-90, 90].
    Latitude,
    /// Longitude in degrees, [-180, 180].
    Longitude,
    /// A search radius in metres, above zero.
    Radius,
    /// Bytes: standard padded base64 in JSON, raw bytes on QUIC.
    Bytes,
    /// A token id (`jti`): 1 to [`TOKEN_ID_BYTES_MAX`] printable ASCII bytes.
    TokenId,
    /// A role name: `customer`, `provider` or `admin`.
    RoleName,
    /// A customer's or provider's id: at most [`SUBJECT_MAX`](crate::ids::SUBJECT_MAX).
    Subject,
    /// A wallet id: at most the platform's ([`WalletId::PLATFORM`](crate::ids::WalletId::PLATFORM)).
    Wallet,
    /// An area's name: 1 to 64 of `a-z 0-9 - _`.
    AreaName,
    /// Skill names, possibly none (a service area for every skill).
    SkillFilter,
    /// A GeoJSON Polygon or MultiPolygon ([`Geometry`](crate::area::Geometry)); JSON text on the CLI.
    Geometry,
    /// A provider's [`WorkArea`](crate::area::WorkArea); JSON text on the CLI.
    WorkArea,
    /// A cluster node's name: one DNS label of 1 to 63 of `a-z 0-9 -`.
    NodeName,
}

impl FieldType {
    /// The JSON value of `text` typed for a field of this kind (a query parameter,
    /// a CLI flag); `None` when the text is not one. A list is comma-separated;
    /// bytes are their base64 text.
    pub fn parse(self, text: &str) -> Option<Value> {
        match self {
            FieldType::Unsigned
            | FieldType::Count { .. }
            | FieldType::Subject
            | FieldType::Wallet => text.parse::<u64>().ok().map(Value::from),
            FieldType::Amount | FieldType::Price => text.parse::<i64>().ok().map(Value::from),
            FieldType::Latitude | FieldType::Longitude | FieldType::Radius => {
                text.parse::<f64>().ok().map(Value::from)
            }
            FieldType::Key
            | FieldType::Skill
            | FieldType::Bytes
            | FieldType::TokenId
            | FieldType::RoleName => Some(Value::from(text)),
            FieldType::AreaName | FieldType::NodeName => Some(Value::from(text)),
            FieldType::Skills | FieldType::SkillFilter => Some(Value::from(
                text.split(',')
                    .filter(|skill| !skill.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            )),
            FieldType::Geometry | FieldType::WorkArea => serde_json::from_str(text).ok(),
        }
    }

    /// Whether the field holds a whole number.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            FieldType::Unsigned
                | FieldType::Count { .. }
                | FieldType::Amount
                | FieldType::Price
                | FieldType::Subject
                | FieldType::Wallet
        )
    }

    /// What [`FieldType::parse`] expects, for an error message.
    pub fn expected(self) -> &'static str {
        match self {
            FieldType::Unsigned
            | FieldType::Count { .. }
            | FieldType::Subject
            | FieldType::Wallet => "an unsigned integer",
            FieldType::Amount | FieldType::Price => "an integer",
            FieldType::Latitude | FieldType::Longitude | FieldType::Radius => "a number",
            FieldType::Key
            | FieldType::Skill
            | FieldType::Bytes
            | FieldType::Skills
            | FieldType::TokenId
            | FieldType::RoleName
            | FieldType::AreaName
            | FieldType::NodeName
            | FieldType::SkillFilter => "text",
            FieldType::Geometry => "a GeoJSON Polygon or MultiPolygon as JSON",
            FieldType::WorkArea => {
                "JSON: \"anywhere\", {\"circle\": {\"lat\": .., \"lon\": .., \"radius_m\": ..}} or {\"polygon\": GeoJSON}"
            }
        }
    }
}

/// One field of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name, as in the `Request` variant and the JSON.
    pub name: &'static str,
    /// What it holds.
    pub ty: FieldType,
    /// One line for the OpenAPI document and `--help`.
    pub doc: &'static str,
    /// The value taken when a query parameter (reads) or a CLI flag is absent.
    pub default: Option<u64>,
}

/// A field without a default.
pub(crate) const fn field(name: &'static str, ty: FieldType, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        doc,
        default: None,
    }
}

/// Everything generic code needs to know about one command.
#[derive(Clone, Copy, Debug)]
pub struct CommandSpec {
    /// The `Request` variant's name.
    pub variant: &'static str,
    /// The short stable name for metrics, logs and the OpenAPI `operationId`.
    pub name: &'static str,
    /// The verb of `fixit client`.
    pub cli: &'static str,
    /// One line for the OpenAPI document and `--help`.
    pub summary: &'static str,
    /// Who may send it, in words (the OpenAPI description).
    pub who: &'static str,
    /// The HTTP method.
    pub method: Method,
    /// The HTTP path; `{field}` segments carry the named id fields.
    pub path: &'static str,
    /// Every field of the variant, in order.
    pub fields: &'static [Field],
    /// Who may send it.
    pub access: Access,
    /// Which node serves it.
    pub placement: Placement,
    /// What it answers: the `Response` variant's name.
    pub answer: &'static str,
}

impl CommandSpec {
    /// Whether sending the command twice does what sending it once does, so a
    /// client may send it again when it cannot know whether the first try
    /// arrived: a read (`GET`), a replace (`PUT`), or a command carrying an
    /// idempotency key.
    pub fn repeatable(&self) -> bool {
        matches!(self.method, Method::Get | Method::Put)
            || self.fields.iter().any(|field| field.name == "key")
    }

    /// Checks the fields' documented ranges that the request's types do not
    /// hold by themselves (counts: `min..=max`); `fields` as [`Request::fields`]
    /// gives them.
    ///
    /// [`Request::fields`]: crate::commands::Request::fields
    pub fn check_bounds(&self, fields: &serde_json::Map<String, Value>) -> Result<(), String> {
        for field in self.fields {
            if let FieldType::Count { min, max } = field.ty {
                let value = fields.get(field.name).and_then(Value::as_u64);
                if value.is_some_and(|value| value < u64::from(min) || value > u64::from(max)) {
                    return Err(format!("{} must be {min} to {max}", field.name));
                }
            }
        }
        Ok(())
    }

    /// Whether the command has a field whose range [`CommandSpec::check_bounds`] checks.
    pub fn has_bounds(&self) -> bool {
        self.fields
            .iter()
            .any(|field| matches!(field.ty, FieldType::Count { .. }))
    }

    /// Whether `field` is carried in the path.
    pub fn in_path(&self, field: &str) -> bool {
        self.path.contains(&format!("{{{field}}}"))
    }

    /// The fields carried outside the path: in the query for `Get`, else the body.
    pub fn rest(&self) -> impl Iterator<Item = &'static Field> + '_ {
        self.fields.iter().filter(|field| !self.in_path(field.name))
    }

    /// The principal's right to send a request of this command, before it runs;
    /// `id_of` gives the request's id fields by name.
    pub fn authorize(
        &self,
        principal: &Principal,
        id_of: impl Fn(&str) -> Option<u64>,
    ) -> Result<(), String> {
        if principal.role == Role::Admin {
            return Ok(());
        }
        match self.access {
            Access::AnyRole => Ok(()),
            Access::Admin => Err("needs the admin role".to_owned()),
            Access::WalletOwner { field } => {
                let mine = crate::ids::WalletId::of(principal).map(|wallet| wallet.0);
                match id_of(field) {
                    Some(id) if Some(id) == mine => Ok(()),
                    _ => Err(format!("this {field} is not yours")),
                }
            }
            Access::Owner { field, role } => {
                if let Some(role) = role.filter(|role| *role != principal.role) {
                    return Err(format!("needs the {role} role"));
                }
                match id_of(field) {
                    Some(id) if id == principal.sub => Ok(()),
                    _ => Err(format!("this {field} is not yours")),
                }
            }
        }
    }
}
