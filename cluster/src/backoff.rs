//! The reconnect schedule: exponential backoff with jitter, a pure function of the
//! attempt number and a random draw, plus a small seeded generator for the draws.

/// How reconnect delays grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Ceiling of the first retry's delay, in ms.
    pub initial_ms: u64,
    /// Largest delay ever returned, in ms: a down peer is retried at least this often.
    pub max_ms: u64,
}

impl Default for BackoffPolicy {
    fn default() -> BackoffPolicy {
        BackoffPolicy {
            initial_ms: 100,
            max_ms: 10_000,
        }
    }
}

/// Doublings after which the ceiling stops growing (2^20 × initial is past any max).
const DOUBLINGS_MAX: u32 = 20;

/// The ceiling of retry `attempt` (1 = first retry): `initial × 2^(attempt-1)`,
/// capped at `max_ms`.
pub fn ceiling_ms(policy: BackoffPolicy, attempt: u32) -> u64 {
    let doublings = attempt.saturating_sub(1).min(DOUBLINGS_MAX);
    policy
        .initial_ms
        .saturating_mul(1u64 << doublings)
        .min(policy.max_ms)
}

/// The delay before retry `attempt`: "equal jitter", uniformly in
/// `[ceiling/2, ceiling]`, so peers that failed together do not retry together.
pub fn delay_ms(policy: BackoffPolicy, attempt: u32, random: u64) -> u64 {
    let ceiling = ceiling_ms(policy, attempt);
    let half = ceiling / 2;
    let spread = ceiling - half;
    half + random % (spread + 1)
}

/// SplitMix64: a tiny, seedable generator for jitter (not for secrets).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`; the same seed gives the same draws.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next draw.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_stay_within_the_jittered_ceiling(
            initial_ms in 0..10_000u64,
            extra_ms in 0..100_000u64,
            attempt in 0..200u32,
            random in any::<u64>(),
        ) {
            let policy = BackoffPolicy { initial_ms, max_ms: initial_ms + extra_ms };
            let ceiling = ceiling_ms(policy, attempt);
            let delay = delay_ms(policy, attempt, random);
            prop_assert!(ceiling <= policy.max_ms);
            prop_assert!(delay <= ceiling && delay >= ceiling / 2, "{delay} vs {ceiling}");
            prop_assert!(ceiling_ms(policy, attempt + 1) >= ceiling, "ceilings never shrink");
        }
    }

    #[test]
    fn ceilings_double_up_to_the_max_and_draws_repeat_per_seed() {
        let policy = BackoffPolicy {
            initial_ms: 100,
            max_ms: 1_000,
        };
        let ceilings: Vec<u64> = (1..=6).map(|a| ceiling_ms(policy, a)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000]);
        let seed = 42;
        println!("seed {seed}");
        let first: Vec<u64> = (0..4)
            .map({
                let mut rng = SplitMix64::new(seed);
                move |_| rng.next_u64()
            })
            .collect();
        let mut again = SplitMix64::new(seed);
        assert!(first.iter().all(|draw| *draw == again.next_u64()));
    }
}
