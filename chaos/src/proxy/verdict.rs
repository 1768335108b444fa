//! The fate of one datagram: a pure function of the faults, its direction and the
//! generator, so a seeded run can be replayed decision by decision.

use crate::proxy::faults::{Direction, Faults};
use crate::proxy::rng::{scale, SplitMix64};

/// What the proxy does with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it on now.
    Forward,
    /// Send it on after this many milliseconds (never 0).
    Delay { delay_ms: u64 },
    /// Drop it: random loss.
    DropLoss,
    /// Drop it: its direction is cut.
    DropCut,
}

/// Decides the fate of the next datagram going in `direction`.
///
/// Every call draws exactly two numbers from `rng`, whatever the faults, so the
/// n-th datagram of a stream gets the same draws however the faults changed
/// before it.
pub(crate) fn decide(faults: &Faults, direction: Direction, rng: &mut SplitMix64) -> Verdict {
    let loss_draw = rng.below(100);
    let jitter_bits = rng.next_u64();
    if faults.cut.cuts(direction) {
        return Verdict::DropCut;
    }
    if loss_draw < u64::from(faults.loss_percent) {
        return Verdict::DropLoss;
    }
    match jittered_delay_ms(faults.delay_ms, faults.jitter_ms, jitter_bits) {
        0 => Verdict::Forward,
        delay_ms => Verdict::Delay { delay_ms },
    }
}

/// `delay_ms` plus an offset in `-jitter_ms..=jitter_ms` chosen by `bits`, floored at 0.
fn jittered_delay_ms(delay_ms: u32, jitter_ms: u32, bits: u64) -> u64 {
    let span = 2 * u64::from(jitter_ms) + 1;
    let shifted = u64::from(delay_ms) + scale(bits, span);
    shifted.saturating_sub(u64::from(jitter_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::faults::Cut;
    use proptest::prelude::*;

    fn verdicts(faults: Faults, seed: u64, count: usize) -> Vec<Verdict> {
        let mut rng = SplitMix64::new(seed);
        (0..count)
            .map(|_| decide(&faults, Direction::ToUpstream, &mut rng))
            .collect()
    }

    #[test]
    fn no_faults_forwards_everything_and_full_loss_drops_everything() {
        assert!(verdicts(Faults::NONE, 1, 500)
            .iter()
            .all(|v| *v == Verdict::Forward));
        assert!(verdicts(Faults::loss(100), 1, 500)
            .iter()
            .all(|v| *v == Verdict::DropLoss));
    }

    #[test]
    fn a_cut_wins_over_loss_and_only_in_its_direction() {
        let faults = Faults {
            cut: Cut::FromUpstream,
            ..Faults::loss(100)
        };
        let mut rng = SplitMix64::new(3);
        assert_eq!(
            decide(&faults, Direction::FromUpstream, &mut rng),
            Verdict::DropCut
        );
        assert_eq!(
            decide(&faults, Direction::ToUpstream, &mut rng),
            Verdict::DropLoss
        );
    }

    #[test]
    fn twenty_percent_loss_drops_about_a_fifth_and_replays_exactly() {
        let first = verdicts(Faults::loss(20), 11, 10_000);
        let dropped = first.iter().filter(|v| **v == Verdict::DropLoss).count();
        assert!((1_800..=2_200).contains(&dropped), "dropped {dropped}");
        assert_eq!(first, verdicts(Faults::loss(20), 11, 10_000));
        assert_ne!(first, verdicts(Faults::loss(20), 12, 10_000));
    }

    #[test]
    fn the_draws_do_not_depend_on_earlier_faults() {
        // Same seed, different faults for the first datagrams: the tail still matches.
        let mut calm = SplitMix64::new(5);
        let mut stormy = SplitMix64::new(5);
        for _ in 0..10 {
            decide(&Faults::NONE, Direction::ToUpstream, &mut calm);
            decide(&Faults::loss(100), Direction::ToUpstream, &mut stormy);
        }
        assert_eq!(calm, stormy);
    }

    proptest! {
        #[test]
        fn a_delay_stays_within_its_jitter(
            delay_ms in 0u32..=1_000,
            jitter_ms in 0u32..=1_000,
            bits in any::<u64>(),
        ) {
            let delay = jittered_delay_ms(delay_ms, jitter_ms, bits);
            let low = u64::from(delay_ms.saturating_sub(jitter_ms));
            let high = u64::from(delay_ms) + u64::from(jitter_ms);
            prop_assert!((low..=high).contains(&delay));
        }
    }
}
