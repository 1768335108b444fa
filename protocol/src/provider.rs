//! A provider's record and its state machine: Offline → Available → Offered(job) →
//! Busy(job) → Available.

use crate::error::{CoreError, CoreResult};
use crate::geo::Coord;
use crate::ids::{JobId, ProviderId, Skill};
use serde::{Deserialize, Serialize};

/// Most skills one provider may list.
pub const SKILLS_MAX: usize = 16;

/// Where a provider is in its working day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ProviderStatus {
    /// Not taking work.
    Offline,
    /// Waiting for offers.
    Available,
    /// Holding an offer for a job until the given time (ms since the epoch).
    Offered(JobId, u64),
    /// Working on a job.
    Busy(JobId),
}

/// A provider's stored record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Provider {
    /// Who.
    pub id: ProviderId,
    /// What they do.
    pub skills: Vec<Skill>,
    /// Last reported position.
    pub location: Option<Coord>,
    /// Current status.
    pub status: ProviderStatus,
}

impl Provider {
    /// A provider never seen before: offline, no skills, no location.
    pub fn new(id: ProviderId) -> Provider {
        Provider {
            id,
            skills: Vec::new(),
            location: None,
            status: ProviderStatus::Offline,
        }
    }

    /// True when the provider belongs in the geo index of available providers.
    pub fn searchable(&self) -> bool {
        self.status == ProviderStatus::Available && self.location.is_some()
    }

    /// Goes online with the given skills. Going online again replaces the skills.
    pub fn go_online(&mut self, skills: Vec<Skill>) -> CoreResult<()> {
        if skills.is_empty() || skills.len() > SKILLS_MAX {
            return Err(CoreError::Invalid(format!(
                "a provider lists 1 to {SKILLS_MAX} skills"
            )));
        }
        self.skills = skills;
        self.skills.sort();
        self.skills.dedup();
        if self.status == ProviderStatus::Offline {
            self.status = ProviderStatus::Available;
        }
        Ok(())
    }

    /// Goes offline; returns the job whose offer is thereby declined, if any.
    pub fn go_offline(&mut self) -> CoreResult<Option<JobId>> {
        match self.status {
            ProviderStatus::Busy(job) => Err(CoreError::Conflict(format!(
                "{} is working on {job}: complete it first",
                self.id
            ))),
            ProviderStatus::Offered(job, _) => {
                self.status = ProviderStatus::Offline;
                Ok(Some(job))
            }
            _ => {
                self.status = ProviderStatus::Offline;
                Ok(None)
            }
        }
    }

    /// Records a new position.
    pub fn move_to(&mut self, at: Coord) {
        self.location = Some(at);
    }

    /// Takes an offer valid until `until_ms`; only an available provider can, or one
    /// whose previous offer has lapsed (a job that crashed mid-offer cannot strand it).
    pub fn offer(&mut self, job: JobId, until_ms: u64, now_ms: u64) -> CoreResult<()> {
        match self.status {
            ProviderStatus::Available => {
                self.status = ProviderStatus::Offered(job, until_ms);
                Ok(())
            }
            ProviderStatus::Offered(current, _) if current == job => Ok(()),
            ProviderStatus::Offered(_, lapsed_ms) if lapsed_ms < now_ms => {
                self.status = ProviderStatus::Offered(job, until_ms);
                Ok(())
            }
            other => Err(CoreError::Conflict(format!(
                "{} cannot take an offer while {other:?}",
                self.id
            ))),
        }
    }

    /// The offer for `job` ended without acceptance (declined, timed out,
    /// cancelled). The job's holder says so: a provider that took the job anyway
    /// (an assignment the holder never learnt of, its answer lost between nodes)
    /// is freed too.
    pub fn offer_ended(&mut self, job: JobId) {
        self.job_ended(job);
    }

    /// The provider accepted `job`: Offered(job) → Busy(job).
    pub fn assign(&mut self, job: JobId) -> CoreResult<()> {
        match self.status {
            ProviderStatus::Offered(offered, _) if offered == job => {
                self.status = ProviderStatus::Busy(job);
                Ok(())
            }
            ProviderStatus::Busy(current) if current == job => Ok(()),
            other => Err(CoreError::Conflict(format!(
                "{} cannot accept {job} while {other:?}",
                self.id
            ))),
        }
    }

    /// The job ended (completed or cancelled): Busy(job) → Available.
    pub fn job_ended(&mut self, job: JobId) {
        if matches!(self.status, ProviderStatus::Busy(current) | ProviderStatus::Offered(current, _) if current == job)
        {
            self.status = ProviderStatus::Available;
        }
    }
}
