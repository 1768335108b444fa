//! When a provider's record must be written to storage; the record and its state
//! machine are [`fixit_protocol::provider`], re-exported here.

pub use fixit_protocol::provider::{Provider, ProviderStatus, SKILLS_MAX};

/// What to do with a provider's record after a move (see [`PositionWrites::on_move`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveWrite {
    /// The record did not change.
    Unchanged,
    /// Write the record now (its position is new, or the last write is old enough).
    Now,
    /// Keep the position in memory only; `arm_backstop` asks for one write later
    /// (after the write interval), so the last position of a provider that stops
    /// moving is stored too.
    Later {
        /// Whether a backstop write must be scheduled now.
        arm_backstop: bool,
    },
}

/// When a provider's record goes to storage. Status, skills and a first position
/// are written at once (offers, assignment and searchability depend on them); a
/// later move is soft state, written at most once per write interval. A provider
/// restarted from storage can be up to one interval behind until its next location
/// update, about a second later.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PositionWrites {
    /// When the record was last written (ms since the epoch; 0: not since loading).
    stored_ms: u64,
    /// Whether the position in memory is newer than the stored one.
    unsaved: bool,
    /// When a backstop write was scheduled, while one is.
    backstop_armed_ms: Option<u64>,
}

/// A scheduled backstop write that has not come back after this many write
/// intervals is taken as lost (its retries ran out) and another may be scheduled.
pub const BACKSTOP_LOST_AFTER_INTERVALS: u64 = 4;

impl PositionWrites {
    /// Decides how to store `after`, the record `before` with a new position, at
    /// `now_ms`; moves are written at most every `interval_ms`.
    pub fn on_move(
        &mut self,
        before: &Provider,
        after: &Provider,
        now_ms: u64,
        interval_ms: u64,
    ) -> MoveWrite {
        debug_assert_eq!(
            (before.id, &before.skills, before.status),
            (after.id, &after.skills, after.status),
            "a move changes the position only"
        );
        if before == after {
            return MoveWrite::Unchanged;
        }
        let first_position = before.location.is_none();
        let due = now_ms.saturating_sub(self.stored_ms) >= interval_ms;
        if first_position || due {
            return MoveWrite::Now;
        }
        self.unsaved = true;
        let lost_after_ms = interval_ms.saturating_mul(BACKSTOP_LOST_AFTER_INTERVALS);
        let armed = self
            .backstop_armed_ms
            .is_some_and(|armed_ms| now_ms.saturating_sub(armed_ms) < lost_after_ms);
        if !armed {
            self.backstop_armed_ms = Some(now_ms);
        }
        MoveWrite::Later {
            arm_backstop: !armed,
        }
    }

    /// The whole record was written at `now_ms`.
    pub fn stored(&mut self, now_ms: u64) {
        self.stored_ms = now_ms;
        self.unsaved = false;
    }

    /// The backstop write came due; returns whether the record must be written.
    pub fn backstop_due(&mut self) -> bool {
        self.backstop_armed_ms = None;
        self.unsaved
    }

    /// Whether the position in memory is newer than the stored one.
    pub fn has_unsaved_position(&self) -> bool {
        self.unsaved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Coord;
    use crate::ids::{JobId, ProviderId, Skill};

    #[test]
    fn walks_the_day() {
        let mut provider = Provider::new(ProviderId(1));
        assert!(
            provider.offer(JobId(1), 10, 0).is_err(),
            "offline takes no offers"
        );
        provider
            .go_online(vec![Skill::new("plumber").unwrap()])
            .unwrap();
        assert!(!provider.searchable(), "no location yet");
        provider.move_to(Coord::new(52.5, 13.4).unwrap());
        assert!(provider.searchable());
        provider.offer(JobId(1), 10, 0).unwrap();
        assert!(
            provider.offer(JobId(2), 20, 5).is_err(),
            "one offer at a time"
        );
        assert!(provider.assign(JobId(2)).is_err());
        provider.assign(JobId(1)).unwrap();
        assert!(provider.go_offline().is_err(), "busy cannot leave");
        provider.job_ended(JobId(1));
        assert_eq!(provider.status, ProviderStatus::Available);
        provider.offer(JobId(3), 30, 20).unwrap();
        provider.offer(JobId(4), 50, 31).unwrap();
        assert_eq!(
            provider.status,
            ProviderStatus::Offered(JobId(4), 50),
            "lapsed offer replaced"
        );
        provider.offer_ended(JobId(4));
        provider.offer(JobId(3), 60, 40).unwrap();
        provider.assign(JobId(3)).unwrap();
        provider.offer_ended(JobId(3));
        assert_eq!(
            provider.status,
            ProviderStatus::Available,
            "an assignment the job never learnt of ends with its offer"
        );
        provider.offer(JobId(3), 60, 40).unwrap();
        assert_eq!(provider.go_offline().unwrap(), Some(JobId(3)));
        assert!(provider.go_online(vec![]).is_err());
    }

    fn located(lon: f64) -> Provider {
        let mut provider = Provider::new(ProviderId(7));
        provider
            .go_online(vec![Skill::new("plumber").unwrap()])
            .unwrap();
        provider.move_to(Coord::new(52.5, lon).unwrap());
        provider
    }

    fn moved(from: &Provider, lon: f64) -> Provider {
        let mut to = from.clone();
        to.move_to(Coord::new(52.5, lon).unwrap());
        to
    }

    #[test]
    fn a_first_position_is_written_at_once_and_later_moves_once_per_interval() {
        let interval_ms = 5_000;
        let mut writes = PositionWrites::default();
        let mut online = Provider::new(ProviderId(7));
        online
            .go_online(vec![Skill::new("plumber").unwrap()])
            .unwrap();
        writes.stored(1_000);
        let first = located(13.40);
        assert_eq!(
            writes.on_move(&online, &first, 1_000, interval_ms),
            MoveWrite::Now,
            "the first position makes the provider searchable"
        );
        writes.stored(1_000);
        assert_eq!(
            writes.on_move(&first, &first, 2_000, interval_ms),
            MoveWrite::Unchanged
        );
        let second = moved(&first, 13.41);
        assert_eq!(
            writes.on_move(&first, &second, 2_000, interval_ms),
            MoveWrite::Later { arm_backstop: true }
        );
        assert!(writes.has_unsaved_position());
        let third = moved(&second, 13.42);
        assert_eq!(
            writes.on_move(&second, &third, 3_000, interval_ms),
            MoveWrite::Later {
                arm_backstop: false
            },
            "one backstop at a time"
        );
        let fourth = moved(&third, 13.43);
        assert_eq!(
            writes.on_move(&third, &fourth, 6_000, interval_ms),
            MoveWrite::Now,
            "an interval after the last write"
        );
        writes.stored(6_000);
        assert!(!writes.backstop_due(), "nothing left to write");
        let fifth = moved(&fourth, 13.44);
        assert_eq!(
            writes.on_move(&fourth, &fifth, 7_000, interval_ms),
            MoveWrite::Later { arm_backstop: true }
        );
        assert!(
            writes.backstop_due(),
            "the last move is written by the backstop"
        );
        writes.stored(12_000);
        assert!(!writes.has_unsaved_position());
    }

    #[test]
    fn a_lost_backstop_is_scheduled_again() {
        let interval_ms = 1_000;
        let mut writes = PositionWrites::default();
        let first = located(13.40);
        writes.stored(10_000);
        let second = moved(&first, 13.41);
        assert_eq!(
            writes.on_move(&first, &second, 10_500, interval_ms),
            MoveWrite::Later { arm_backstop: true }
        );
        writes.stored(11_000);
        let third = moved(&second, 13.42);
        let lost_ms = 10_500 + BACKSTOP_LOST_AFTER_INTERVALS * interval_ms;
        assert_eq!(
            writes.on_move(&second, &third, 11_100, interval_ms),
            MoveWrite::Later {
                arm_backstop: false
            }
        );
        writes.stored(lost_ms - 100);
        let fourth = moved(&third, 13.43);
        assert_eq!(
            writes.on_move(&third, &fourth, lost_ms, interval_ms),
            MoveWrite::Later { arm_backstop: true },
            "the first backstop never came back"
        );
    }
}
