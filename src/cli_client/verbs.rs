//! The verbs of `fixit client`, one per command, and the request each one sends.
//! Ids of wallets, providers and customers default to the token's own subject.

use crate::api::{NearbyQuery, Request};
use clap::Subcommand;

/// One command to send.
#[derive(Clone, Debug, Subcommand)]
pub enum Verb {
    /// A wallet's balance.
    Balance {
        /// Wallet id (default: the token's subject).
        #[arg(long)]
        wallet: Option<u64>,
    },
    /// A page of a wallet's ledger.
    History {
        /// Wallet id (default: the token's subject).
        #[arg(long)]
        wallet: Option<u64>,
        /// First entry.
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        /// Most entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Money into a wallet (admin token).
    Deposit {
        /// Wallet id.
        #[arg(long)]
        wallet: u64,
        /// Minor units.
        #[arg(long, allow_hyphen_values = true)]
        amount: i64,
        /// Idempotency key: a retry with the same key applies nothing twice.
        #[arg(long)]
        key: String,
    },
    /// Money out of a wallet.
    Withdraw {
        /// Wallet id (default: the token's subject).
        #[arg(long)]
        wallet: Option<u64>,
        /// Minor units.
        #[arg(long, allow_hyphen_values = true)]
        amount: i64,
        /// Idempotency key.
        #[arg(long)]
        key: String,
    },
    /// The provider goes online with skills.
    Online {
        /// A skill (repeat for several).
        #[arg(long = "skill", required = true)]
        skills: Vec<String>,
        /// Provider id (default: the token's subject).
        #[arg(long)]
        provider: Option<u64>,
    },
    /// The provider goes offline.
    Offline {
        /// Provider id (default: the token's subject).
        #[arg(long)]
        provider: Option<u64>,
    },
    /// The provider's position.
    Locate {
        /// Latitude, degrees.
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        /// Longitude, degrees.
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        /// Provider id (default: the token's subject).
        #[arg(long)]
        provider: Option<u64>,
    },
    /// The provider's record.
    Provider {
        /// Provider id (default: the token's subject).
        #[arg(long)]
        provider: Option<u64>,
    },
    /// Accept an offered job.
    Accept {
        /// Job id.
        #[arg(long)]
        job: u64,
        /// Provider id (default: the token's subject).
        #[arg(long)]
        provider: Option<u64>,
    },
    /// Decline an offered job.
    Decline {
        /// Job id.
        #[arg(long)]
        job: u64,
        /// Provider id (default: the token's subject).
        #[arg(long)]
        provider: Option<u64>,
    },
    /// Start work on an accepted job.
    Start {
        /// Job id.
        #[arg(long)]
        job: u64,
        /// Provider id (default: the token's subject).
        #[arg(long)]
        provider: Option<u64>,
    },
    /// Complete a job with a proof of work; the customer pays.
    Complete {
        /// Job id.
        #[arg(long)]
        job: u64,
        /// Proof of work (e.g. a photo hash), sent as its UTF-8 bytes.
        #[arg(long)]
        proof: String,
        /// Provider id (default: the token's subject).
        #[arg(long)]
        provider: Option<u64>,
    },
    /// Book a job: the price is held in escrow and the nearest provider is offered it.
    Book {
        /// Skill needed.
        #[arg(long)]
        skill: String,
        /// Latitude, degrees.
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        /// Longitude, degrees.
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        /// Price in minor units.
        #[arg(long, allow_hyphen_values = true)]
        price: i64,
        /// Idempotency key.
        #[arg(long)]
        key: String,
        /// Customer id (default: the token's subject).
        #[arg(long)]
        customer: Option<u64>,
    },
    /// Cancel a job before work starts.
    Cancel {
        /// Job id.
        #[arg(long)]
        job: u64,
        /// Customer id (default: the token's subject).
        #[arg(long)]
        customer: Option<u64>,
    },
    /// A job's record.
    Job {
        /// Job id.
        #[arg(long)]
        job: u64,
    },
    /// The nearest available providers of a skill around a point (across the
    /// cluster's regions that reach into the circle).
    Nearby {
        /// Skill wanted.
        #[arg(long)]
        skill: String,
        /// Latitude, degrees.
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        /// Longitude, degrees.
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        /// Search radius in metres.
        #[arg(long, default_value_t = 5_000.0)]
        radius_m: f64,
        /// Most providers.
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Print the token's pushes (job events or offers), one JSON line each.
    Watch {
        /// Stop after this many pushes (default: until the stream ends or Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
    },
}

impl Verb {
    /// The request this verb sends, with defaults filled from `me` (the token's
    /// subject); `None` for `watch`, which subscribes instead.
    pub fn request(&self, me: u64) -> Option<Request> {
        let own = |id: &Option<u64>| id.unwrap_or(me);
        let request = match self.clone() {
            Verb::Balance { wallet } => Request::Balance {
                wallet: own(&wallet),
            },
            Verb::History {
                wallet,
                from_seq,
                limit,
            } => Request::History {
                wallet: own(&wallet),
                from_seq,
                limit,
            },
            Verb::Deposit {
                wallet,
                amount,
                key,
            } => Request::Deposit {
                wallet,
                key,
                amount,
            },
            Verb::Withdraw {
                wallet,
                amount,
                key,
            } => Request::Withdraw {
                wallet: own(&wallet),
                key,
                amount,
            },
            Verb::Online { skills, provider } => Request::ProviderOnline {
                provider: own(&provider),
                skills,
            },
            Verb::Offline { provider } => Request::ProviderOffline {
                provider: own(&provider),
            },
            Verb::Locate { lat, lon, provider } => Request::Location {
                provider: own(&provider),
                lat,
                lon,
            },
            Verb::Provider { provider } => Request::ProviderStatus {
                provider: own(&provider),
            },
            Verb::Accept { job, provider } => Request::Accept {
                provider: own(&provider),
                job,
            },
            Verb::Decline { job, provider } => Request::Decline {
                provider: own(&provider),
                job,
            },
            Verb::Start { job, provider } => Request::Start {
                provider: own(&provider),
                job,
            },
            Verb::Complete {
                job,
                proof,
                provider,
            } => Request::Complete {
                provider: own(&provider),
                job,
                proof: proof.into_bytes(),
            },
            Verb::Book {
                skill,
                lat,
                lon,
                price,
                key,
                customer,
            } => Request::RequestJob {
                customer: own(&customer),
                key,
                skill,
                lat,
                lon,
                price,
            },
            Verb::Cancel { job, customer } => Request::CancelJob {
                customer: own(&customer),
                job,
            },
            Verb::Job { job } => Request::JobStatus { job },
            Verb::Nearby {
                skill,
                lat,
                lon,
                radius_m,
                limit,
            } => Request::Nearby(NearbyQuery {
                skill,
                lat,
                lon,
                radius_m,
                limit,
            }),
            Verb::Watch { .. } => return None,
        };
        Some(request)
    }
}
