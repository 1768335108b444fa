//! SplitMix64: the small seeded generator behind every random choice of the proxy.

/// A SplitMix64 generator (Steele, Lea and Flood): one `u64` of state, good enough
/// statistics for fault injection, and the same sequence for the same seed on every
/// platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijective scramble of `value`.
fn mix(value: u64) -> u64 {
    let mut z = value;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// An independent stream number `stream` of the run seeded with `seed`: each
    /// flow and direction gets its own, so the decisions of one never depend on how
    /// its datagrams interleave with another's.
    pub(crate) fn stream(seed: u64, stream: u64) -> SplitMix64 {
        SplitMix64::new(mix(seed) ^ mix(stream.wrapping_add(GOLDEN_GAMMA)))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// A number in `0..bound` (multiply-shift, no modulo bias worth the name);
    /// 0 when `bound` is 0.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        scale(self.next_u64(), bound)
    }
}

/// Maps 64 random bits onto `0..bound`.
pub(crate) fn scale(bits: u64, bound: u64) -> u64 {
    ((u128::from(bits) * u128::from(bound)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_another_seed_does_not() {
        let take = |mut rng: SplitMix64| (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>();
        assert_eq!(take(SplitMix64::new(42)), take(SplitMix64::new(42)));
        assert_ne!(take(SplitMix64::new(42)), take(SplitMix64::new(43)));
        assert_ne!(
            take(SplitMix64::stream(42, 0)),
            take(SplitMix64::stream(42, 1))
        );
    }

    #[test]
    fn the_first_output_for_seed_zero_is_the_published_one() {
        // Reference value of SplitMix64 seeded with 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 10];
        for _ in 0..1_000 {
            let value = rng.below(10);
            assert!(value < 10);
            seen[value as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(rng.below(0), 0);
    }
}
