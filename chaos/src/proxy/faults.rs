//! The faults a proxy applies, changeable while it runs.

use crate::proxy::ProxyError;
use serde::{Deserialize, Serialize};

/// The largest delay, and the largest jitter, a proxy accepts: ten seconds is far
/// beyond any QUIC timeout a scenario would want to provoke.
pub const DELAY_MS_MAX: u32 = 10_000;

/// A direction through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a client towards the upstream address.
    ToUpstream,
    /// From the upstream address back to a client.
    FromUpstream,
}

/// Which directions of the link are cut (a partition when both are).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cut {
    /// Nothing is cut.
    #[default]
    None,
    /// Datagrams from clients to the upstream are dropped.
    ToUpstream,
    /// Datagrams from the upstream to clients are dropped.
    FromUpstream,
    /// Both directions are dropped: a full partition.
    Both,
}

impl Cut {
    /// Whether this cut drops datagrams going in `direction`.
    pub fn cuts(self, direction: Direction) -> bool {
        matches!(
            (self, direction),
            (Cut::Both, _)
                | (Cut::ToUpstream, Direction::ToUpstream)
                | (Cut::FromUpstream, Direction::FromUpstream)
        )
    }
}

/// The faults applied to every datagram, in both directions, from the moment they
/// are set. A datagram that is cut is not also lost or delayed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Faults {
    /// Percentage of datagrams dropped at random, 0 to 100.
    pub loss_percent: u8,
    /// Delay added to each datagram that is not dropped, in milliseconds
    /// (at most [`DELAY_MS_MAX`]).
    pub delay_ms: u32,
    /// Each delay is `delay_ms` plus a uniform offset in `-jitter_ms..=jitter_ms`,
    /// never below zero (at most [`DELAY_MS_MAX`]).
    pub jitter_ms: u32,
    /// Directions that are cut.
    pub cut: Cut,
}

impl Faults {
    /// No fault at all: the proxy forwards everything at once.
    pub const NONE: Faults = Faults {
        loss_percent: 0,
        delay_ms: 0,
        jitter_ms: 0,
        cut: Cut::None,
    };

    /// Only random loss of `loss_percent` percent.
    pub fn loss(loss_percent: u8) -> Faults {
        Faults {
            loss_percent,
            ..Faults::NONE
        }
    }

    /// Only a delay of `delay_ms` with `jitter_ms` of jitter.
    pub fn delay(delay_ms: u32, jitter_ms: u32) -> Faults {
        Faults {
            delay_ms,
            jitter_ms,
            ..Faults::NONE
        }
    }

    /// Checks the ranges: loss at most 100 percent, delay and jitter at most
    /// [`DELAY_MS_MAX`]. Nothing is changed when this fails.
    pub fn validate(&self) -> Result<(), ProxyError> {
        if self.loss_percent > 100 {
            return Err(ProxyError::InvalidFaults {
                reason: format!("loss_percent {} is above 100", self.loss_percent),
            });
        }
        for (name, value) in [("delay_ms", self.delay_ms), ("jitter_ms", self.jitter_ms)] {
            if value > DELAY_MS_MAX {
                return Err(ProxyError::InvalidFaults {
                    reason: format!("{name} {value} is above {DELAY_MS_MAX}"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cut_drops_exactly_its_directions() {
        use Direction::*;
        assert!(!Cut::None.cuts(ToUpstream) && !Cut::None.cuts(FromUpstream));
        assert!(Cut::ToUpstream.cuts(ToUpstream) && !Cut::ToUpstream.cuts(FromUpstream));
        assert!(!Cut::FromUpstream.cuts(ToUpstream) && Cut::FromUpstream.cuts(FromUpstream));
        assert!(Cut::Both.cuts(ToUpstream) && Cut::Both.cuts(FromUpstream));
    }

    #[test]
    fn out_of_range_faults_are_refused() {
        assert!(Faults::loss(100).validate().is_ok());
        assert!(Faults::loss(101).validate().is_err());
        assert!(Faults::delay(DELAY_MS_MAX, DELAY_MS_MAX).validate().is_ok());
        assert!(Faults::delay(DELAY_MS_MAX + 1, 0).validate().is_err());
        assert!(Faults::delay(0, DELAY_MS_MAX + 1).validate().is_err());
    }
}
