//! The simulated city (central Berlin), its repeatable randomness, and how the
//! three demo nodes share it: twelve 5-character geohash cells, four per node.

use std::collections::BTreeMap;

/// Skills the simulated providers have and customers ask for.
pub(crate) const SKILLS: [&str; 3] = ["plumber", "electrician", "cleaner"];

/// Centre of the simulated city (Berlin) and its half-width in degrees (~5 km).
pub(crate) const CITY: (f64, f64) = (52.52, 13.405);
pub(crate) const CITY_HALF_DEG: (f64, f64) = (0.045, 0.075);

/// The demo's regions: geohash prefix → node. The city box spans four columns of
/// 5-character cells (west to east) and three rows (the northern one a sliver);
/// each node gets four cells, about a third of the box each:
/// a = the west column and the south-west of the centre, b = the north of the
/// centre (with Mitte), c = the south-east of the centre and the east column.
pub(crate) const DEMO_REGIONS: [(&str, &str); 12] = [
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

/// The region map for `local_cluster`.
pub(crate) fn regions() -> BTreeMap<String, String> {
    DEMO_REGIONS
        .iter()
        .map(|(prefix, node)| ((*prefix).to_owned(), (*node).to_owned()))
        .collect()
}

/// A position moved back inside the city box.
pub(crate) fn clamp_to_city((lat, lon): (f64, f64)) -> (f64, f64) {
    (
        lat.clamp(CITY.0 - CITY_HALF_DEG.0, CITY.0 + CITY_HALF_DEG.0),
        lon.clamp(CITY.1 - CITY_HALF_DEG.1, CITY.1 + CITY_HALF_DEG.1),
    )
}

/// A small seeded generator (splitmix64): the demo needs repeatable, not strong, randomness.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
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

    /// A uniform spot in the city box.
    pub(crate) fn spot(&mut self) -> (f64, f64) {
        (
            CITY.0 + (self.unit() * 2.0 - 1.0) * CITY_HALF_DEG.0,
            CITY.1 + (self.unit() * 2.0 - 1.0) * CITY_HALF_DEG.1,
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
    use fixit_cluster::Regions;

    /// Random spots checked; the seed is fixed and printed.
    const SPOTS: u64 = 20_000;
    const SEED: u64 = 0x5EED_C17E;

    #[test]
    fn the_regions_tile_the_city_box_with_a_fair_share_each() {
        println!("seed {SEED:#x}");
        let regions = Regions::new(regions()).expect("valid regions");
        let mut rng = Rng(SEED);
        let mut share: BTreeMap<&str, u64> = BTreeMap::new();
        let corners = [-1.0, 1.0].into_iter().flat_map(|lat: f64| {
            [-1.0, 1.0].map(|lon: f64| {
                (
                    CITY.0 + lat * CITY_HALF_DEG.0,
                    CITY.1 + lon * CITY_HALF_DEG.1,
                )
            })
        });
        for spot in (0..SPOTS).map(|_| rng.spot()).chain(corners) {
            let owner = regions
                .owner_of(spot.0, spot.1)
                .expect("valid degrees")
                .unwrap_or_else(|| panic!("{spot:?} has no owner"));
            *share.entry(owner).or_default() += 1;
        }
        assert_eq!(share.keys().copied().collect::<Vec<_>>(), ["a", "b", "c"]);
        for (node, spots) in &share {
            let fraction = *spots as f64 / SPOTS as f64;
            assert!(
                (0.25..0.42).contains(&fraction),
                "node {node} owns {fraction:.3} of the city"
            );
        }
    }

    #[test]
    fn clamping_keeps_a_wanderer_in_the_city() {
        let far = clamp_to_city((60.0, -3.0));
        assert_eq!(
            far,
            (CITY.0 + CITY_HALF_DEG.0, CITY.1 - CITY_HALF_DEG.1),
            "north-west corner"
        );
    }
}
