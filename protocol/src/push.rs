//! What a node pushes to connected apps: job changes for customers, offers for
//! providers.

use crate::geo::Coord;
use crate::ids::{CustomerId, JobId, Skill};
use crate::job::JobStatus;
use serde::{Deserialize, Serialize};

/// Largest proof of work accepted, in bytes.
pub const PROOF_BYTES_MAX: usize = 64 * 1024;

/// A change of a job, sent to its customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobEvent {
    /// The job.
    pub job: JobId,
    /// Its customer.
    pub customer: CustomerId,
    /// Its new status.
    pub status: JobStatus,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// A push to a provider's app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ProviderPush {
    /// A job is offered until the deadline.
    Offer {
        /// The job.
        job: JobId,
        /// The skill asked for.
        skill: Skill,
        /// Where.
        location: Coord,
        /// Price in minor units.
        price: i64,
        /// Accept before this time, ms since the epoch.
        deadline_ms: u64,
    },
    /// The offer was withdrawn (timed out or cancelled).
    OfferEnded {
        /// The job.
        job: JobId,
    },
}
