//! The simulated city (central Berlin) that the demo and the load generator share,
//! and their repeatable randomness: splitmix64 (`fixit_cluster::backoff`), seeded.

use fixit_cluster::backoff::SplitMix64;
use std::collections::BTreeMap;

/// Skills the simulated providers have and customers ask for.
pub const SKILLS: [&str; 3] = ["plumber", "electrician", "cleaner"];

/// Centre of the simulated city (Berlin).
pub const CITY: (f64, f64) = (52.52, 13.405);

/// Half-width of the city box in degrees (~5 km each way).
pub const CITY_HALF_DEG: (f64, f64) = (0.045, 0.075);

/// The three-node regions of the demo and the chaos runs: geohash prefix → node.
/// The city box spans four columns of 5-character cells (west to east) and three
/// rows (the northern one a sliver); each node gets four cells, about a third of
/// the box each: a = the west column and the south-west of the centre, b = the
/// north of the centre (with Mitte), c = the south-east of the centre and the east
/// column.
pub const THREE_NODE_REGIONS: [(&str, &str); 12] = [
    ("u336x", "a"),
    ("u336z", "a"),
    ("u337p", "a"),
    ("u33d8", "a"),
    ("u33db", "b"),
    ("u33dc", "b"),
    ("u33e0", "b"),
    ("u33e1", "b"),
    ("u33d9", "c"),
    ("u33dd", "c"),
    ("u33df", "c"),
    ("u33e4", "c"),
];

/// [`THREE_NODE_REGIONS`] as the region map of `local_cluster::local_cluster`.
pub fn regions() -> BTreeMap<String, String> {
    THREE_NODE_REGIONS
        .iter()
        .map(|(prefix, node)| ((*prefix).to_owned(), (*node).to_owned()))
        .collect()
}

/// Largest step of a provider between two positions, in degrees (~50 m).
const STEP_DEG: (f64, f64) = (0.001, 0.0015);

/// A position moved back inside the city box.
pub fn clamp_to_city((lat, lon): (f64, f64)) -> (f64, f64) {
    (
        lat.clamp(CITY.0 - CITY_HALF_DEG.0, CITY.0 + CITY_HALF_DEG.0),
        lon.clamp(CITY.1 - CITY_HALF_DEG.1, CITY.1 + CITY_HALF_DEG.1),
    )
}

/// A small seeded generator: simulations need repeatable, not strong, randomness.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }

    /// A generator for one simulated user: the run's seed mixed with its number.
    pub fn for_user(seed: u64, user: u64) -> Rng {
        Rng::new(seed ^ user.wrapping_add(1).wrapping_mul(0xA24B_AED4_963E_E407))
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }

    /// An exponentially distributed wait with the given mean (Poisson arrivals).
    pub fn exponential(&mut self, mean_s: f64) -> f64 {
        -(1.0 - self.unit()).ln() * mean_s
    }

    /// A uniform spot in the city box.
    pub fn spot(&mut self) -> (f64, f64) {
        (
            CITY.0 + (self.unit() * 2.0 - 1.0) * CITY_HALF_DEG.0,
            CITY.1 + (self.unit() * 2.0 - 1.0) * CITY_HALF_DEG.1,
        )
    }

    /// A small random step from `at`, kept inside the city box.
    pub fn step(&mut self, at: (f64, f64)) -> (f64, f64) {
        let lat = at.0 + (self.unit() - 0.5) * STEP_DEG.0;
        let lon = at.1 + (self.unit() - 0.5) * STEP_DEG.1;
        clamp_to_city((lat, lon))
    }

    /// A skill, uniformly.
    pub fn skill(&mut self) -> &'static str {
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
