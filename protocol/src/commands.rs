//! The command table: for every [`Request`] variant, one [`CommandSpec`] saying how
//! it travels over HTTP (method, path, query and body fields), who may send it,
//! which node serves it, what it answers and what it is called on the command line.
//!
//! Everything that handles commands generically reads this table: the HTTP
//! bridge's routes and handler, the OpenAPI document, authorization, cluster
//! placement, the SDK's HTTP client and the CLI's verbs. Adding a command means a
//! `Request` variant, its entry here, and its behaviour in the node.

use crate::api::{Request, Response};
use crate::principal::{Principal, Role};
use serde_json::{Map, Value};

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
}

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

const fn field(name: &'static str, ty: FieldType, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        doc,
        default: None,
    }
}

/// What a command answers: the [`Response`] variant, also the name of its JSON
/// schema in the OpenAPI document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// [`Response::Balance`].
    Balance,
    /// [`Response::History`].
    History,
    /// [`Response::Op`].
    Op,
    /// [`Response::Provider`].
    Provider,
    /// [`Response::Job`].
    Job,
    /// [`Response::Nearby`].
    Nearby,
    /// [`Response::Earnings`].
    Earnings,
}

impl Answer {
    /// The `Response` variant's name.
    pub fn variant(self) -> &'static str {
        match self {
            Answer::Balance => "Balance",
            Answer::History => "History",
            Answer::Op => "Op",
            Answer::Provider => "Provider",
            Answer::Job => "Job",
            Answer::Nearby => "Nearby",
            Answer::Earnings => "Earnings",
        }
    }

    /// The response carrying `payload` (the answer's JSON without the variant).
    pub fn response_of(self, payload: Value) -> Result<Response, serde_json::Error> {
        let mut tagged = Map::new();
        tagged.insert(self.variant().to_owned(), payload);
        serde_json::from_value(Value::Object(tagged))
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
    /// What it answers.
    pub answer: Answer,
}

impl CommandSpec {
    /// Whether `field` is carried in the path.
    pub fn in_path(&self, field: &str) -> bool {
        self.path.contains(&format!("{{{field}}}"))
    }

    /// The fields carried outside the path: in the query for `Get`, else the body.
    pub fn rest(&self) -> impl Iterator<Item = &'static Field> + '_ {
        self.fields.iter().filter(|field| !self.in_path(field.name))
    }

    /// The principal's right to send `request` (of this command), before it runs.
    pub fn authorize(&self, principal: &Principal, request: &Request) -> Result<(), String> {
        if principal.role == Role::Admin {
            return Ok(());
        }
        match self.access {
            Access::AnyRole => Ok(()),
            Access::Admin => Err("needs the admin role".to_owned()),
            Access::Owner { field, role } => {
                if let Some(role) = role.filter(|role| *role != principal.role) {
                    return Err(format!("needs the {role} role"));
                }
                match request.id_field(field) {
                    Some(id) if id == principal.sub => Ok(()),
                    _ => Err(format!("this {field} is not yours")),
                }
            }
        }
    }
}

/// The command named `name` ([`CommandSpec::name`]).
pub fn command(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|spec| spec.name == name)
}

/// The command whose `fixit client` verb is `verb`.
pub fn command_of_verb(verb: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|spec| spec.cli == verb)
}

impl Request {
    /// This request's entry in [`COMMANDS`].
    pub fn spec(&self) -> &'static CommandSpec {
        let name = self.name();
        // Every variant has an entry: `every_variant_has_one_entry` checks it.
        command(name).unwrap_or(&COMMANDS[0])
    }

    /// The fields of this request by name, as JSON.
    pub fn fields(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(tagged)) => match tagged.into_iter().next() {
                Some((_, Value::Object(fields))) => fields,
                _ => Map::new(),
            },
            _ => Map::new(),
        }
    }

    /// The value of the unsigned id field `name`, if this request has one.
    pub fn id_field(&self, name: &str) -> Option<u64> {
        self.fields().get(name).and_then(Value::as_u64)
    }

    /// The request of command `spec` with `fields`; unknown, missing or mistyped
    /// fields are refused with serde's message.
    pub fn from_fields(
        spec: &CommandSpec,
        fields: Map<String, Value>,
    ) -> Result<Request, serde_json::Error> {
        let mut tagged = Map::new();
        tagged.insert(spec.variant.to_owned(), Value::Object(fields));
        serde_json::from_value(Value::Object(tagged))
    }
}

use FieldType::{
    Amount, Bytes, Count, Key, Latitude, Longitude, Price, Radius, Skill, Skills, Unsigned,
};

const WALLET: Field = field("wallet", Unsigned, "Wallet id (the owner's subject).");
const PROVIDER: Field = field("provider", Unsigned, "Provider id.");
const CUSTOMER: Field = field("customer", Unsigned, "Customer id.");
const JOB: Field = field("job", Unsigned, "Job id.");
const KEY: Field = field(
    "key",
    Key,
    "Idempotency key: a retry with it applies nothing twice.",
);
const AMOUNT: Field = field("amount", Amount, "Minor units.");
const LAT: Field = field("lat", Latitude, "Latitude, degrees in [-90, 90].");
const LON: Field = field("lon", Longitude, "Longitude, degrees in [-180, 180].");
const SKILL: Field = field("skill", Skill, "Skill name (a-z, 0-9, '-', '_').");

const OWN_WALLET: Access = Access::Owner {
    field: "wallet",
    role: None,
};
const OWN_PROVIDER: Access = Access::Owner {
    field: "provider",
    role: Some(Role::Provider),
};
const OWN_CUSTOMER: Access = Access::Owner {
    field: "customer",
    role: Some(Role::Customer),
};
const WALLET_OWNER: &str = "the wallet's owner or an admin";
const THE_PROVIDER: &str = "the provider or an admin";
const THE_CUSTOMER: &str = "the customer or an admin";

/// A command of a provider on one of its jobs (`/v1/jobs/{job}/<what>`).
const fn job_step(
    variant: &'static str,
    name: &'static str,
    summary: &'static str,
    path: &'static str,
) -> CommandSpec {
    CommandSpec {
        variant,
        name,
        cli: name,
        summary,
        who: THE_PROVIDER,
        method: Method::Post,
        path,
        fields: &[PROVIDER, JOB],
        access: OWN_PROVIDER,
        placement: Placement::JobHolder("job"),
        answer: Answer::Job,
    }
}

/// Most providers one nearby search returns.
pub const NEARBY_LIMIT_MAX: u32 = 100;

/// Every command, in the order the OpenAPI document lists them.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        variant: "Balance",
        name: "balance",
        cli: "balance",
        summary: "A wallet's balance",
        who: WALLET_OWNER,
        method: Method::Get,
        path: "/v1/wallets/{wallet}",
        fields: &[WALLET],
        access: OWN_WALLET,
        placement: Placement::WalletHome("wallet"),
        answer: Answer::Balance,
    },
    CommandSpec {
        variant: "History",
        name: "history",
        cli: "history",
        summary: "A page of a wallet's ledger",
        who: WALLET_OWNER,
        method: Method::Get,
        path: "/v1/wallets/{wallet}/history",
        fields: &[
            WALLET,
            Field {
                default: Some(0),
                ..field("from_seq", Unsigned, "First entry.")
            },
            Field {
                default: Some(crate::api::HISTORY_LIMIT_DEFAULT as u64),
                ..field(
                    "limit",
                    Count {
                        min: 0,
                        max: crate::api::HISTORY_LIMIT_MAX,
                    },
                    "Most entries.",
                )
            },
        ],
        access: OWN_WALLET,
        placement: Placement::WalletHome("wallet"),
        answer: Answer::History,
    },
    CommandSpec {
        variant: "Deposit",
        name: "deposit",
        cli: "deposit",
        summary: "Money into a wallet",
        who: "an admin",
        method: Method::Post,
        path: "/v1/wallets/{wallet}/deposit",
        fields: &[WALLET, KEY, AMOUNT],
        access: Access::Admin,
        placement: Placement::WalletHome("wallet"),
        answer: Answer::Op,
    },
    CommandSpec {
        variant: "Withdraw",
        name: "withdraw",
        cli: "withdraw",
        summary: "Money out of a wallet",
        who: WALLET_OWNER,
        method: Method::Post,
        path: "/v1/wallets/{wallet}/withdraw",
        fields: &[WALLET, KEY, AMOUNT],
        access: OWN_WALLET,
        placement: Placement::WalletHome("wallet"),
        answer: Answer::Op,
    },
    CommandSpec {
        variant: "ProviderStatus",
        name: "provider_status",
        cli: "provider",
        summary: "A provider's record",
        who: THE_PROVIDER,
        method: Method::Get,
        path: "/v1/providers/{provider}",
        fields: &[PROVIDER],
        access: OWN_PROVIDER,
        placement: Placement::Here,
        answer: Answer::Provider,
    },
    CommandSpec {
        variant: "ProviderOnline",
        name: "provider_online",
        cli: "online",
        summary: "The provider goes online with skills",
        who: THE_PROVIDER,
        method: Method::Post,
        path: "/v1/providers/{provider}/online",
        fields: &[
            PROVIDER,
            field("skills", Skills, "Skill names (at most 16)."),
        ],
        access: OWN_PROVIDER,
        placement: Placement::Here,
        answer: Answer::Provider,
    },
    CommandSpec {
        variant: "ProviderOffline",
        name: "provider_offline",
        cli: "offline",
        summary: "The provider goes offline (body empty or {})",
        who: THE_PROVIDER,
        method: Method::Post,
        path: "/v1/providers/{provider}/offline",
        fields: &[PROVIDER],
        access: OWN_PROVIDER,
        placement: Placement::Here,
        answer: Answer::Provider,
    },
    CommandSpec {
        variant: "Location",
        name: "location",
        cli: "locate",
        summary: "The provider's position",
        who: THE_PROVIDER,
        method: Method::Put,
        path: "/v1/providers/{provider}/location",
        fields: &[PROVIDER, LAT, LON],
        access: OWN_PROVIDER,
        placement: Placement::ProviderPosition,
        answer: Answer::Provider,
    },
    CommandSpec {
        variant: "Earnings",
        name: "earnings",
        cli: "earnings",
        summary: "A provider's earnings: payments received and jobs paid",
        who: THE_PROVIDER,
        method: Method::Get,
        path: "/v1/providers/{provider}/earnings",
        fields: &[PROVIDER],
        access: OWN_PROVIDER,
        placement: Placement::WalletHome("provider"),
        answer: Answer::Earnings,
    },
    CommandSpec {
        variant: "RequestJob",
        name: "request_job",
        cli: "book",
        summary: "A customer books a job; the price is held in escrow",
        who: THE_CUSTOMER,
        method: Method::Post,
        path: "/v1/jobs",
        fields: &[
            CUSTOMER,
            KEY,
            SKILL,
            LAT,
            LON,
            field("price", Price, "Price in minor units, held in escrow."),
        ],
        access: OWN_CUSTOMER,
        placement: Placement::PositionOwner,
        answer: Answer::Job,
    },
    CommandSpec {
        variant: "JobStatus",
        name: "job_status",
        cli: "job",
        summary: "A job's record (others' jobs answer not_found)",
        who: "its customer, a provider it concerns, or an admin",
        method: Method::Get,
        path: "/v1/jobs/{job}",
        fields: &[JOB],
        access: Access::AnyRole,
        placement: Placement::JobHolder("job"),
        answer: Answer::Job,
    },
    job_step(
        "Accept",
        "accept",
        "The offered provider accepts",
        "/v1/jobs/{job}/accept",
    ),
    job_step(
        "Decline",
        "decline",
        "The offered provider declines; the job cascades",
        "/v1/jobs/{job}/decline",
    ),
    job_step(
        "Start",
        "start",
        "The assigned provider starts work",
        "/v1/jobs/{job}/start",
    ),
    CommandSpec {
        fields: &[
            PROVIDER,
            JOB,
            field(
                "proof",
                Bytes,
                "Proof of work (e.g. a photo hash), at most 64 KiB: standard base64 in JSON.",
            ),
        ],
        ..job_step(
            "Complete",
            "complete",
            "The assigned provider completes; the customer pays",
            "/v1/jobs/{job}/complete",
        )
    },
    CommandSpec {
        variant: "CancelJob",
        name: "cancel_job",
        cli: "cancel",
        summary: "The customer cancels before work starts",
        who: THE_CUSTOMER,
        method: Method::Post,
        path: "/v1/jobs/{job}/cancel",
        fields: &[CUSTOMER, JOB],
        access: OWN_CUSTOMER,
        placement: Placement::JobHolder("job"),
        answer: Answer::Job,
    },
    CommandSpec {
        variant: "Nearby",
        name: "nearby",
        cli: "nearby",
        summary: "The nearest available providers of a skill around a point, from every node whose regions reach into the circle (unanswered nodes are listed)",
        who: "any role",
        method: Method::Post,
        path: "/v1/nearby",
        fields: &[
            SKILL,
            LAT,
            LON,
            Field {
                default: Some(5_000),
                ..field("radius_m", Radius, "Search radius in metres (at most the node's dispatch radius).")
            },
            Field {
                default: Some(10),
                ..field("limit", Count { min: 1, max: NEARBY_LIMIT_MAX }, "Most providers returned.")
            },
        ],
        access: Access::AnyRole,
        placement: Placement::NearbyFanOut,
        answer: Answer::Nearby,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn every_request() -> Vec<Request> {
        let text = String::new;
        vec![
            Request::Balance { wallet: 1 },
            Request::History {
                wallet: 1,
                from_seq: 0,
                limit: 1,
            },
            Request::Deposit {
                wallet: 1,
                key: text(),
                amount: 1,
            },
            Request::Withdraw {
                wallet: 1,
                key: text(),
                amount: 1,
            },
            Request::ProviderOnline {
                provider: 1,
                skills: vec![],
            },
            Request::ProviderOffline { provider: 1 },
            Request::Location {
                provider: 1,
                lat: 0.0,
                lon: 0.0,
            },
            Request::ProviderStatus { provider: 1 },
            Request::Earnings { provider: 1 },
            Request::Accept {
                provider: 1,
                job: 1,
            },
            Request::Decline {
                provider: 1,
                job: 1,
            },
            Request::Start {
                provider: 1,
                job: 1,
            },
            Request::Complete {
                provider: 1,
                job: 1,
                proof: vec![1, 2, 255],
            },
            Request::RequestJob {
                customer: 1,
                key: text(),
                skill: text(),
                lat: 0.0,
                lon: 0.0,
                price: 1,
            },
            Request::CancelJob {
                customer: 1,
                job: 1,
            },
            Request::JobStatus { job: 1 },
            Request::Nearby(crate::api::NearbyQuery {
                skill: text(),
                lat: 0.0,
                lon: 0.0,
                radius_m: 1.0,
                limit: 1,
            }),
        ]
    }

    #[test]
    fn every_variant_has_one_entry_whose_fields_round_trip() {
        let requests = every_request();
        assert_eq!(requests.len(), COMMANDS.len(), "a command lacks its entry");
        for request in requests {
            let spec = request.spec();
            assert_eq!(spec.name, request.name(), "{request:?}");
            let fields = request.fields();
            let names: Vec<&str> = fields.keys().map(String::as_str).collect();
            let mut declared: Vec<&str> = spec.fields.iter().map(|f| f.name).collect();
            declared.sort_unstable();
            let mut names = names;
            names.sort_unstable();
            assert_eq!(names, declared, "{}: fields", spec.name);
            assert_eq!(Request::from_fields(spec, fields).unwrap(), request);
            for name in spec.path.split('{').skip(1) {
                let name = name.split('}').next().unwrap_or_default();
                assert!(spec.fields.iter().any(|f| f.name == name), "{name}");
            }
        }
        let mut names: Vec<&str> = COMMANDS.iter().map(|spec| spec.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len(), "two commands share a name");
    }

    #[test]
    fn access_rules_hold_for_owners_roles_and_admins() {
        let customer = Principal {
            role: Role::Customer,
            sub: 5,
        };
        let provider = Principal {
            role: Role::Provider,
            sub: 9,
        };
        let admin = Principal {
            role: Role::Admin,
            sub: 0,
        };
        let allowed =
            |who: &Principal, request: Request| request.spec().authorize(who, &request).is_ok();
        assert!(allowed(&customer, Request::Balance { wallet: 5 }));
        assert!(!allowed(&customer, Request::Balance { wallet: 6 }));
        let deposit = || Request::Deposit {
            wallet: 5,
            key: "k".into(),
            amount: 1,
        };
        assert!(!allowed(&customer, deposit()));
        assert!(allowed(&admin, deposit()));
        assert!(allowed(
            &provider,
            Request::Accept {
                provider: 9,
                job: 1
            }
        ));
        assert!(!allowed(
            &provider,
            Request::Accept {
                provider: 10,
                job: 1
            }
        ));
        assert!(
            !allowed(
                &customer,
                Request::Accept {
                    provider: 5,
                    job: 1
                }
            ),
            "wrong role"
        );
        assert!(allowed(&provider, Request::Earnings { provider: 9 }));
        assert!(
            !allowed(&customer, Request::Earnings { provider: 5 }),
            "wrong role"
        );
        assert!(allowed(&customer, Request::JobStatus { job: 3 }));
    }

    #[test]
    fn a_proof_is_base64_in_json_and_raw_bytes_in_frames() {
        let request = Request::Complete {
            provider: 1,
            job: 2,
            proof: vec![0, 1, 254, 255],
        };
        assert_eq!(request.fields()["proof"], "AAH+/w==");
        let bytes = crate::codec::encode(&request).unwrap();
        assert_eq!(crate::codec::decode::<Request>(&bytes).unwrap(), request);
        let mut fields = request.fields();
        fields.insert("proof".into(), "%%%".into());
        assert!(Request::from_fields(request.spec(), fields).is_err());
    }

    #[test]
    fn answers_wrap_their_payload() {
        let balance = crate::ledger::Balance {
            available: 3,
            held: 1,
        };
        let payload = serde_json::to_value(balance).unwrap();
        assert_eq!(
            Answer::Balance.response_of(payload).unwrap(),
            Response::Balance(balance)
        );
    }
}
