//! The commands, declared once: the [`Request`] enum (what travels on QUIC), the
//! [`Response`] enum and the answers' types, and [`COMMANDS`], one
//! [`CommandSpec`] per request saying how it travels over HTTP, who may send it,
//! which node serves it, what it answers and its CLI verb.
//!
//! Everything that handles commands generically reads this file: the HTTP
//! bridge's routes and handler, the OpenAPI document, authorization, cluster
//! placement, the SDK's HTTP client and typed calls, and the CLI's verbs. Adding
//! a command means its `Request` variant, its `name`, its entry in `COMMANDS`
//! (and its answer, if new) here, its arm in the node's dispatch, and its
//! behaviour in the node.

use crate::area::{AreaChange, AreaList, Quote, ServiceArea, WorkArea, Zone};
use crate::command_spec::{field, Access, CommandSpec, Field, FieldType, Method, Placement};
use crate::geo::Nearby;
use crate::job::Job;
use crate::ledger::{Balance, LedgerEntry, OpOutcome};
use crate::principal::Role;
use crate::provider::Provider;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Declares [`Response`], one variant per answer type, and each answer type's
/// `TryFrom<Response>`, so a typed call can take its answer out of any response.
macro_rules! answers {
    ($( $(#[$doc:meta])* $variant:ident($payload:ty), )*) => {
        /// A successful answer.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum Response {
            $( $(#[$doc])* $variant($payload), )*
        }

        $(
            impl TryFrom<Response> for $payload {
                type Error = Response;

                fn try_from(response: Response) -> Result<$payload, Response> {
                    match response {
                        Response::$variant(answer) => Ok(answer),
                        other => Err(other),
                    }
                }
            }
        )*
    };
}

/// Most ledger entries one history request returns.
pub const HISTORY_LIMIT_MAX: u32 = 1_000;

/// Ledger entries a history page returns when an HTTP client does not say.
pub const HISTORY_LIMIT_DEFAULT: u32 = 100;

/// Every command a client can send. Each variant has its entry in
/// [`COMMANDS`] (HTTP route, access, placement, answer, CLI verb).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Request {
    /// A wallet's balance (owner or admin).
    Balance {
        /// Wallet id (= the principal's id).
        wallet: u64,
    },
    /// A page of a wallet's ledger (owner or admin).
    History {
        /// Wallet id.
        wallet: u64,
        /// First entry.
        from_seq: u64,
        /// Most entries (at most [`HISTORY_LIMIT_MAX`]).
        limit: u32,
    },
    /// Money into a wallet (admin only).
    Deposit {
        /// Wallet id.
        wallet: u64,
        /// Idempotency key.
        key: String,
        /// Minor units.
        amount: i64,
    },
    /// Money out of a wallet (owner or admin).
    Withdraw {
        /// Wallet id.
        wallet: u64,
        /// Idempotency key.
        key: String,
        /// Minor units.
        amount: i64,
    },
    /// A provider goes online with skills.
    ProviderOnline {
        /// Provider id.
        provider: u64,
        /// Skill names.
        skills: Vec<String>,
    },
    /// A provider goes offline.
    ProviderOffline {
        /// Provider id.
        provider: u64,
    },
    /// A provider's position.
    Location {
        /// Provider id.
        provider: u64,
        /// Latitude, degrees.
        lat: f64,
        /// Longitude, degrees.
        lon: f64,
    },
    /// A provider's record.
    ProviderStatus {
        /// Provider id.
        provider: u64,
    },
    /// The offered provider accepts.
    Accept {
        /// Provider id.
        provider: u64,
        /// Job id.
        job: u64,
    },
    /// The offered provider declines.
    Decline {
        /// Provider id.
        provider: u64,
        /// Job id.
        job: u64,
    },
    /// The assigned provider starts work.
    Start {
        /// Provider id.
        provider: u64,
        /// Job id.
        job: u64,
    },
    /// The assigned provider completes; the customer pays.
    Complete {
        /// Provider id.
        provider: u64,
        /// Job id.
        job: u64,
        /// Proof of work (e.g. a photo hash), at most 64 KiB; standard base64 in JSON.
        #[serde(with = "proof_bytes")]
        proof: Vec<u8>,
    },
    /// A customer books a job.
    RequestJob {
        /// Customer id.
        customer: u64,
        /// Idempotency key.
        key: String,
        /// Skill needed.
        skill: String,
        /// Latitude, degrees.
        lat: f64,
        /// Longitude, degrees.
        lon: f64,
        /// Price in minor units, held in escrow.
        price: i64,
    },
    /// A customer cancels before work starts.
    CancelJob {
        /// Customer id.
        customer: u64,
        /// Job id.
        job: u64,
    },
    /// A job's record (its customer, a provider it concerns, or admin).
    JobStatus {
        /// Job id.
        job: u64,
    },
    /// The nearest available providers of a skill around a point (any role). In a
    /// cluster, every node whose regions reach into the circle is asked.
    Nearby(NearbyQuery),
    /// A provider's earnings: payments received into its wallet. (New variants go
    /// last: a variant's position is its number on the wire.)
    Earnings {
        /// Provider id (= its wallet id).
        provider: u64,
    },
    /// Revokes one token by its id, on every node (admin only).
    RevokeToken {
        /// The token's `jti` claim.
        jti: String,
    },
    /// Revokes every token of a principal issued before now, on every node
    /// (admin only).
    RevokeSubject {
        /// `customer`, `provider` or `admin`.
        role: String,
        /// The subject id.
        sub: u64,
    },
    /// Puts a service area, replacing one of the same name, on every node (admin).
    PutServiceArea(ServiceArea),
    /// Puts a zone, replacing one of the same name, on every node (admin).
    PutZone(Zone),
    /// Removes a service area or zone by name on every node (admin).
    RemoveArea {
        /// The area's name.
        name: String,
    },
    /// The service areas and zones in force (any role).
    Areas {},
    /// A provider's work area, on every node (dispatch offers no job outside it).
    SetWorkArea {
        /// Provider id.
        provider: u64,
        /// Where the provider works.
        area: WorkArea,
    },
    /// What a booking would hold at a point, and whether it is served there.
    Quote {
        /// Skill needed.
        skill: String,
        /// Latitude, degrees.
        lat: f64,
        /// Longitude, degrees.
        lon: f64,
        /// Price asked, minor units (before any zone multiplier).
        price: i64,
    },
    /// Replaces node `old` by node `new` in the replicas of every wallet shard
    /// (admin only): a Raft membership change at each shard's leader.
    ReplaceNode {
        /// The node leaving (usually dead).
        old: String,
        /// The node taking its place (running, with an empty data dir).
        new: String,
    },
}

/// A nearby search: the client's request, the HTTP body and one node's leg of a
/// scatter–gather are all this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearbyQuery {
    /// Skill wanted.
    pub skill: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Search radius in metres (at most the node's dispatch radius).
    pub radius_m: f64,
    /// Most providers returned (1 to 100).
    pub limit: u32,
}

impl Request {
    /// A short stable name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Balance { .. } => "balance",
            Request::History { .. } => "history",
            Request::Deposit { .. } => "deposit",
            Request::Withdraw { .. } => "withdraw",
            Request::ProviderOnline { .. } => "provider_online",
            Request::ProviderOffline { .. } => "provider_offline",
            Request::Location { .. } => "location",
            Request::ProviderStatus { .. } => "provider_status",
            Request::Earnings { .. } => "earnings",
            Request::Accept { .. } => "accept",
            Request::Decline { .. } => "decline",
            Request::Start { .. } => "start",
            Request::Complete { .. } => "complete",
            Request::RequestJob { .. } => "request_job",
            Request::CancelJob { .. } => "cancel_job",
            Request::JobStatus { .. } => "job_status",
            Request::Nearby(_) => "nearby",
            Request::RevokeToken { .. } => "revoke_token",
            Request::RevokeSubject { .. } => "revoke_subject",
            Request::PutServiceArea(_) => "put_service_area",
            Request::PutZone(_) => "put_zone",
            Request::RemoveArea { .. } => "remove_area",
            Request::Areas {} => "areas",
            Request::SetWorkArea { .. } => "set_work_area",
            Request::Quote { .. } => "quote",
            Request::ReplaceNode { .. } => "replace_node",
        }
    }
}

answers! {
    /// A balance.
    Balance(Balance),
    /// Ledger entries.
    History(Vec<LedgerEntry>),
    /// The outcome of a ledger operation.
    Op(OpOutcome),
    /// A provider record.
    Provider(Provider),
    /// A job record.
    Job(Job),
    /// Providers near a point.
    Nearby(NearbyAnswer),
    /// A provider's earnings.
    Earnings(Earnings),
    /// A revocation applied.
    Revoked(Revocation),
    /// An area or work area changed.
    AreaChanged(AreaChange),
    /// The service areas and zones.
    Areas(AreaList),
    /// A quote.
    Quote(Quote),
    /// Where a node replacement stands.
    NodeReplaced(Replacement),
}

/// Where the replacement of a node stands, shard by shard. Sending the same
/// replacement again carries on where it stopped (it is idempotent): an
/// operator repeats it until `pending` is empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Replacement {
    /// Shards whose voters now include the new node instead of the old one.
    pub replaced: Vec<String>,
    /// Shards the old node did not replicate: nothing to change.
    pub unchanged: Vec<String>,
    /// Shards not replaced yet, each with what it waits for (the new node
    /// catching up, a leader, ...).
    pub pending: Vec<PendingShard>,
}

/// A shard whose replacement is not done yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PendingShard {
    /// The shard (`w<n>`).
    pub shard: String,
    /// What it waits for.
    pub why: String,
}

/// A revocation's answer: it is in force on this node and every other node but
/// those listed, which did not answer (send it again: it is idempotent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Revocation {
    /// Nodes that could not be told (down or unreachable).
    pub nodes_missed: Vec<String>,
}

/// A provider's earnings, read from its wallet's ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Earnings {
    /// The provider (= its wallet).
    pub provider: u64,
    /// Jobs paid into the wallet (payment entries).
    pub jobs_paid: u64,
    /// Money received for jobs, in minor units (after the platform fee).
    pub earned: i64,
    /// The wallet's balance now.
    pub balance: Balance,
    /// Ledger entries read; `complete` is false if the ledger was longer than the
    /// node reads for one answer.
    pub entries_read: u64,
    /// Whether every entry of the ledger was read.
    pub complete: bool,
}

/// A proof of work as standard padded base64 in human-readable formats (JSON),
/// and as the plain byte sequence in binary ones (bincode frames).
mod proof_bytes {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
    use base64::{alphabet, Engine};

    /// Standard padded base64, taking unused bits after the last symbol as they
    /// come (`vUI4h4t=` and `vUI4h4s=` are both the same five bytes), as the
    /// schema's pattern allows.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &Vec<u8>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            STANDARD.encode(bytes).serialize(serializer)
        } else {
            bytes.serialize(serializer)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            LENIENT.decode(text.as_bytes()).map_err(|error| {
                serde::de::Error::custom(format!("proof must be standard base64: {error}"))
            })
        } else {
            Vec::deserialize(deserializer)
        }
    }
}

/// The answer to a nearby search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NearbyAnswer {
    /// Providers, nearest first.
    pub providers: Vec<Nearby>,
    /// Nodes that should have been asked but did not answer in time: the list may
    /// miss providers of their regions.
    pub unanswered: Vec<String>,
}

use FieldType::{
    Amount, AreaName, Bytes, Count, Key, Latitude, Longitude, NodeName, Price, Radius, RoleName,
    Skill, SkillFilter, Skills, Subject, TokenId, Unsigned,
};

const AREA_NAME: Field = field(
    "name",
    AreaName,
    "The area's name (a-z, 0-9, '-', '_'): putting it again replaces the area.",
);
const GEOMETRY: Field = field(
    "geometry",
    FieldType::Geometry,
    "A GeoJSON Polygon or MultiPolygon ([longitude, latitude] positions; holes after the outer ring).",
);

const WALLET: Field = field(
    "wallet",
    FieldType::Wallet,
    "Wallet id: a customer's is its id, a provider's 2^62 + its id (4611686018427387904 + id).",
);
const PROVIDER: Field = field("provider", Subject, "Provider id.");
const CUSTOMER: Field = field("customer", Subject, "Customer id.");
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

const OWN_WALLET: Access = Access::WalletOwner { field: "wallet" };
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
        answer: "Job",
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
        answer: "Balance",
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
        answer: "History",
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
        answer: "Op",
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
        answer: "Op",
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
        answer: "Provider",
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
        answer: "Provider",
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
        answer: "Provider",
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
        answer: "Provider",
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
        answer: "Earnings",
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
        answer: "Job",
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
        answer: "Job",
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
        answer: "Job",
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
        answer: "Nearby",
    },
    CommandSpec {
        variant: "RevokeToken",
        name: "revoke_token",
        cli: "revoke-token",
        summary: "Revokes one token by its id (`jti`) on every node",
        who: "an admin",
        method: Method::Post,
        path: "/v1/revocations/token",
        fields: &[field("jti", TokenId, "The token's id (its `jti` claim).")],
        access: Access::Admin,
        placement: Placement::Everywhere,
        answer: "Revoked",
    },
    CommandSpec {
        variant: "RevokeSubject",
        name: "revoke_subject",
        cli: "revoke-subject",
        summary: "Revokes every token of a principal issued before now, on every node",
        who: "an admin",
        method: Method::Post,
        path: "/v1/revocations/subject",
        fields: &[
            field("role", RoleName, "customer, provider or admin."),
            field("sub", Subject, "The subject id."),
        ],
        access: Access::Admin,
        placement: Placement::Everywhere,
        answer: "Revoked",
    },
    CommandSpec {
        variant: "PutServiceArea",
        name: "put_service_area",
        cli: "put-service-area",
        summary: "Puts a service area (bookings of its skills must fall inside one) on every node",
        who: "an admin",
        method: Method::Put,
        path: "/v1/areas/service",
        fields: &[
            AREA_NAME,
            field("skills", SkillFilter, "Skills it is for (none: every skill without areas of its own)."),
            GEOMETRY,
        ],
        access: Access::Admin,
        placement: Placement::Everywhere,
        answer: "AreaChanged",
    },
    CommandSpec {
        variant: "PutZone",
        name: "put_zone",
        cli: "put-zone",
        summary: "Puts a zone (entries and exits are events; bookings inside cost its multiplier) on every node",
        who: "an admin",
        method: Method::Put,
        path: "/v1/areas/zone",
        fields: &[
            AREA_NAME,
            field(
                "multiplier_pct",
                Count { min: 100, max: 1_000 },
                "Price multiplier in percent (100: none).",
            ),
            GEOMETRY,
        ],
        access: Access::Admin,
        placement: Placement::Everywhere,
        answer: "AreaChanged",
    },
    CommandSpec {
        variant: "RemoveArea",
        name: "remove_area",
        cli: "remove-area",
        summary: "Removes a service area or zone by name on every node",
        who: "an admin",
        method: Method::Post,
        path: "/v1/areas/remove",
        fields: &[AREA_NAME],
        access: Access::Admin,
        placement: Placement::Everywhere,
        answer: "AreaChanged",
    },
    CommandSpec {
        variant: "Areas",
        name: "areas",
        cli: "areas",
        summary: "The service areas and zones in force",
        who: "any role",
        method: Method::Get,
        path: "/v1/areas",
        fields: &[],
        access: Access::AnyRole,
        placement: Placement::Here,
        answer: "Areas",
    },
    CommandSpec {
        variant: "SetWorkArea",
        name: "set_work_area",
        cli: "work-area",
        summary: "Where the provider works (no job outside it is offered), on every node",
        who: THE_PROVIDER,
        method: Method::Put,
        path: "/v1/providers/{provider}/work-area",
        fields: &[
            PROVIDER,
            field(
                "area",
                FieldType::WorkArea,
                "\"anywhere\", {\"circle\": {\"lat\", \"lon\", \"radius_m\"}} or {\"polygon\": GeoJSON}.",
            ),
        ],
        access: OWN_PROVIDER,
        placement: Placement::Everywhere,
        answer: "AreaChanged",
    },
    CommandSpec {
        variant: "Quote",
        name: "quote",
        cli: "quote",
        summary: "What a booking would hold at a point (with a zone's multiplier) and whether the skill is offered there",
        who: "any role",
        method: Method::Get,
        path: "/v1/quote",
        fields: &[
            SKILL,
            LAT,
            LON,
            field("price", Price, "Price asked, minor units (before any zone multiplier)."),
        ],
        access: Access::AnyRole,
        placement: Placement::Here,
        answer: "Quote",
    },
    CommandSpec {
        variant: "ReplaceNode",
        name: "replace_node",
        cli: "replace-node",
        summary: "Replaces a (dead) node by a new one in every wallet shard's replicas; repeat until nothing is pending",
        who: "an admin",
        method: Method::Post,
        path: "/v1/cluster/replace-node",
        fields: &[
            field("old", NodeName, "The node leaving the shards (usually dead)."),
            field("new", NodeName, "The node taking its place: running, a member, its config naming it in the region map."),
        ],
        access: Access::Admin,
        placement: Placement::Here,
        answer: "NodeReplaced",
    },
];

/// The response of variant `variant` (a [`CommandSpec::answer`]) carrying
/// `payload`, the answer's JSON without the variant's name (as HTTP carries it).
pub fn response_of(variant: &str, payload: Value) -> Result<Response, serde_json::Error> {
    let mut tagged = Map::new();
    tagged.insert(variant.to_owned(), payload);
    serde_json::from_value(Value::Object(tagged))
}

/// The payload of `response`: its JSON without the variant's name.
pub fn payload_of(response: &Response) -> Result<Value, serde_json::Error> {
    match serde_json::to_value(response)? {
        Value::Object(tagged) => Ok(tagged
            .into_iter()
            .next()
            .map(|(_, payload)| payload)
            .unwrap_or(Value::Null)),
        other => Ok(other),
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
    /// The principal's right to send this request, by its command's access rule.
    pub fn authorize(&self, principal: &crate::principal::Principal) -> Result<(), String> {
        self.spec()
            .authorize(principal, |field| self.id_field(field))
    }

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

    /// The customer or provider id the request names, if any (a subject, at
    /// most [`SUBJECT_MAX`](crate::ids::SUBJECT_MAX)).
    pub fn subject_id(&self) -> Option<u64> {
        match self {
            Request::ProviderOnline { provider, .. }
            | Request::ProviderOffline { provider }
            | Request::Location { provider, .. }
            | Request::ProviderStatus { provider }
            | Request::Earnings { provider }
            | Request::Accept { provider, .. }
            | Request::Decline { provider, .. }
            | Request::Start { provider, .. }
            | Request::Complete { provider, .. } => Some(*provider),
            Request::RequestJob { customer, .. } | Request::CancelJob { customer, .. } => {
                Some(*customer)
            }
            Request::RevokeSubject { sub, .. } => Some(*sub),
            Request::SetWorkArea { provider, .. } => Some(*provider),
            Request::Balance { .. }
            | Request::History { .. }
            | Request::Deposit { .. }
            | Request::Withdraw { .. }
            | Request::JobStatus { .. }
            | Request::Nearby(_)
            | Request::RevokeToken { .. }
            | Request::PutServiceArea(_)
            | Request::PutZone(_)
            | Request::RemoveArea { .. }
            | Request::Areas {}
            | Request::Quote { .. }
            | Request::ReplaceNode { .. } => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Principal;

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
            Request::RevokeToken { jti: text() },
            Request::RevokeSubject {
                role: text(),
                sub: 1,
            },
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
            Request::PutServiceArea(ServiceArea {
                name: text(),
                skills: vec![],
                geometry: square(),
            }),
            Request::PutZone(Zone {
                name: text(),
                multiplier_pct: 150,
                geometry: square(),
            }),
            Request::RemoveArea { name: text() },
            Request::Areas {},
            Request::SetWorkArea {
                provider: 1,
                area: WorkArea::Circle {
                    lat: 1.0,
                    lon: 2.0,
                    radius_m: 3.0,
                },
            },
            Request::Quote {
                skill: text(),
                lat: 0.0,
                lon: 0.0,
                price: 1,
            },
            Request::ReplaceNode {
                old: text(),
                new: text(),
            },
        ]
    }

    fn square() -> crate::area::Geometry {
        crate::area::Geometry::Polygon(vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]])
    }

    #[test]
    fn subject_id_names_exactly_the_subject_fields_of_the_table() {
        for request in every_request() {
            let spec = request.spec();
            let declared = spec
                .fields
                .iter()
                .any(|field| field.ty == FieldType::Subject);
            assert_eq!(request.subject_id().is_some(), declared, "{}", spec.name);
        }
    }

    #[test]
    fn only_reads_replaces_and_keyed_commands_are_repeatable() {
        let repeatable: Vec<&str> = every_request()
            .iter()
            .map(Request::spec)
            .filter(|spec| spec.repeatable())
            .map(|spec| spec.name)
            .collect();
        for name in ["balance", "deposit", "withdraw", "location", "request_job"] {
            assert!(repeatable.contains(&name), "{name} is repeatable");
        }
        for name in ["accept", "decline", "start", "complete", "cancel_job"] {
            assert!(!repeatable.contains(&name), "{name} is not repeatable");
        }
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
        let allowed = |who: &Principal, request: Request| request.authorize(who).is_ok();
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
    fn variants_keep_their_wire_numbers() {
        // bincode writes a variant as its position: a new command goes last, or
        // every client built before it would send one command and mean another.
        let number = |request: &Request| crate::codec::encode(request).unwrap()[0];
        let requests = every_request();
        let numbers: Vec<(&str, u8)> = requests
            .iter()
            .map(|request| (request.name(), number(request)))
            .collect();
        let expected = [
            ("balance", 0),
            ("history", 1),
            ("deposit", 2),
            ("withdraw", 3),
            ("provider_online", 4),
            ("provider_offline", 5),
            ("location", 6),
            ("provider_status", 7),
            ("accept", 8),
            ("decline", 9),
            ("start", 10),
            ("complete", 11),
            ("request_job", 12),
            ("cancel_job", 13),
            ("job_status", 14),
            ("nearby", 15),
            ("earnings", 16),
        ];
        for (name, wire) in expected {
            assert!(
                numbers.contains(&(name, wire)),
                "{name} is not {wire}: {numbers:?}"
            );
        }
        let earnings = Response::Earnings(Earnings {
            provider: 1,
            jobs_paid: 0,
            earned: 0,
            balance: crate::ledger::Balance::default(),
            entries_read: 0,
            complete: true,
        });
        assert_eq!(crate::codec::encode(&earnings).unwrap()[0], 6);
    }

    #[test]
    fn answers_wrap_their_payload() {
        let balance = crate::ledger::Balance {
            available: 3,
            held: 1,
        };
        let payload = serde_json::to_value(balance).unwrap();
        assert_eq!(
            response_of("Balance", payload).unwrap(),
            Response::Balance(balance)
        );
        assert_eq!(Balance::try_from(Response::Balance(balance)), Ok(balance));
    }
}
