//! The load generator's repeatable randomness (splitmix64, seeded from `--seed`)
//! and the simulated city its users live in (central Berlin, as in the demo and
//! in `config/cluster-3`'s regions).

/// Skills the simulated providers have and customers ask for.
pub(crate) const SKILLS: [&str; 3] = ["plumber", "electrician", "cleaner"];

/// Centre of the simulated city and its half-width in degrees (~5 km each way).
const CITY: (f64, f64) = (52.52, 13.405);
const CITY_HALF_DEG: (f64, f64) = (0.045, 0.075);

/// Largest step of a provider between two positions, in degrees (~50 m).
const STEP_DEG: (f64, f64) = (0.001, 0.0015);

/// A small seeded generator: the load needs repeatable, not strong, randomness.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for one simulated user: the run's seed mixed with its number.
    pub(crate) fn for_user(seed: u64, user: u64) -> Rng {
        Rng(seed ^ user.wrapping_add(1).wrapping_mul(0xA24B_AED4_963E_E407))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (0 when n is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// An exponentially distributed wait with the given mean (Poisson arrivals).
    pub(crate) fn exponential(&mut self, mean_s: f64) -> f64 {
        -(1.0 - self.unit()).ln() * mean_s
    }

    /// A uniform spot in the city box.
    pub(crate) fn spot(&mut self) -> (f64, f64) {
        (
            CITY.0 + (self.unit() * 2.0 - 1.0) * CITY_HALF_DEG.0,
            CITY.1 + (self.unit() * 2.0 - 1.0) * CITY_HALF_DEG.1,
        )
    }

    /// A small random step from `at`, kept inside the city box.
    pub(crate) fn step(&mut self, at: (f64, f64)) -> (f64, f64) {
        let lat = at.0 + (self.unit() - 0.5) * STEP_DEG.0;
        let lon = at.1 + (self.unit() - 0.5) * STEP_DEG.1;
        (
            lat.clamp(CITY.0 - CITY_HALF_DEG.0, CITY.0 + CITY_HALF_DEG.0),
            lon.clamp(CITY.1 - CITY_HALF_DEG.1, CITY.1 + CITY_HALF_DEG.1),
        )
    }

    /// A skill, uniformly.
    pub(crate) fn skill(&mut self) -> &'static str {
        SKILLS[self.below(SKILLS.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_waits_average_their_mean() {
        let seed = 11;
        println!("seed {seed}");
        let mut rng = Rng::for_user(seed, 0);
        let samples = 100_000;
        let total: f64 = (0..samples).map(|_| rng.exponential(0.005)).sum();
        let mean = total / samples as f64;
        assert!((0.0048..0.0052).contains(&mean), "mean {mean}");
    }

    #[test]
    fn steps_stay_in_the_city() {
        let mut rng = Rng::for_user(3, 1);
        let mut at = (CITY.0 + CITY_HALF_DEG.0, CITY.1 + CITY_HALF_DEG.1);
        for _ in 0..10_000 {
            at = rng.step(at);
            assert!((at.0 - CITY.0).abs() <= CITY_HALF_DEG.0 + 1e-12);
            assert!((at.1 - CITY.1).abs() <= CITY_HALF_DEG.1 + 1e-12);
        }
    }
}
