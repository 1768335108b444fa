//! Benchmarks the geo index in a 20 km × 20 km city of 100,000 providers: location updates,
//! k-nearest searches (k = 10 within 5 km) and, for the same searches, a brute-force scan,
//! side by side in one run.
//!
//! `cargo bench -p fixit-actors --bench geo`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fixit_actors::geo::{haversine_m, rank, Coord, GeoIndex, Nearby};
use fixit_actors::ids::{ProviderId, Skill};
use std::time::Duration;

/// Providers in the city.
const PROVIDERS: usize = 100_000;
/// Half the side of the city, in metres.
const CITY_HALF_SIDE_M: f64 = 10_000.0;
/// Centre of the city.
const CITY_CENTRE: (f64, f64) = (48.8566, 2.3522);
/// Skills on offer; each provider offers one to three of them.
const SKILL_NAMES: [&str; 8] = [
    "plumber",
    "electrician",
    "locksmith",
    "painter",
    "hvac",
    "carpenter",
    "roofer",
    "glazier",
];
/// Neighbours wanted by each search.
const K: usize = 10;
/// Radius of each search, in metres.
const RADIUS_M: f64 = 5_000.0;
/// Geohash precision of the index.
const PRECISION: usize = 6;
/// Metres per degree of latitude.
const METRES_PER_DEGREE: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;

/// SplitMix64, seeded, so every run measures the same city.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    fn between(&mut self, low: f64, high: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        low + (high - low) * unit
    }

    /// Uniform in 0..count.
    fn below(&mut self, count: usize) -> usize {
        (self.next_u64() % count as u64) as usize
    }
}

/// The point `north_m` metres north and `east_m` metres east of the city centre.
fn city_point(north_m: f64, east_m: f64) -> Coord {
    let (lat, lon) = CITY_CENTRE;
    let metres_per_lon_degree = METRES_PER_DEGREE * lat.to_radians().cos();
    let point = Coord::new(
        lat + north_m / METRES_PER_DEGREE,
        lon + east_m / metres_per_lon_degree,
    );
    point.expect("city points are valid coordinates")
}

/// A provider of the city: where it is (in metres from the centre) and what it offers.
struct Provider {
    north_m: f64,
    east_m: f64,
    /// Bit `i` set when the provider offers `SKILL_NAMES[i]`.
    skill_bits: u8,
}

/// The city: every provider, and the index holding them.
struct City {
    providers: Vec<Provider>,
    positions: Vec<Coord>,
    index: GeoIndex,
    skills: Vec<Skill>,
    /// The skills of each combination of skill bits, shared as a caller's would be.
    skill_sets: Vec<Vec<Skill>>,
}

fn build_city(rng: &mut SplitMix) -> City {
    let skills: Vec<Skill> = SKILL_NAMES
        .iter()
        .map(|name| Skill::new(name).expect("valid skill names"))
        .collect();
    let skill_sets: Vec<Vec<Skill>> = (0..=u8::MAX).map(|bits| offered(&skills, bits)).collect();
    let mut index = GeoIndex::new(PRECISION).expect("a valid precision");
    let mut providers = Vec::with_capacity(PROVIDERS);
    let mut positions = Vec::with_capacity(PROVIDERS);
    for id in 0..PROVIDERS {
        let mut skill_bits = 0u8;
        for _ in 0..1 + rng.below(3) {
            skill_bits |= 1 << rng.below(SKILL_NAMES.len());
        }
        let provider = Provider {
            north_m: rng.between(-CITY_HALF_SIDE_M, CITY_HALF_SIDE_M),
            east_m: rng.between(-CITY_HALF_SIDE_M, CITY_HALF_SIDE_M),
            skill_bits,
        };
        let at = city_point(provider.north_m, provider.east_m);
        index.upsert(
            ProviderId(id as u64),
            at,
            &skill_sets[usize::from(skill_bits)],
        );
        providers.push(provider);
        positions.push(at);
    }
    City {
        providers,
        positions,
        index,
        skills,
        skill_sets,
    }
}

/// The skills whose bits are set in `bits`.
fn offered(skills: &[Skill], bits: u8) -> Vec<Skill> {
    skills
        .iter()
        .enumerate()
        .filter(|(number, _)| bits & (1 << number) != 0)
        .map(|(_, skill)| skill.clone())
        .collect()
}

/// A location update: a provider moved a few metres to a few hundred metres.
struct Move {
    provider: usize,
    to: Coord,
}

/// `count` moves of random providers, each from where the previous moves left it.
fn random_moves(rng: &mut SplitMix, providers: &mut [Provider], count: usize) -> Vec<Move> {
    (0..count)
        .map(|_| {
            let number = rng.below(providers.len());
            let provider = &mut providers[number];
            let step_m = rng.between(2.0, 300.0);
            let bearing = rng.between(0.0, std::f64::consts::TAU);
            let limit = CITY_HALF_SIDE_M;
            provider.north_m = (provider.north_m + step_m * bearing.cos()).clamp(-limit, limit);
            provider.east_m = (provider.east_m + step_m * bearing.sin()).clamp(-limit, limit);
            Move {
                provider: number,
                to: city_point(provider.north_m, provider.east_m),
            }
        })
        .collect()
}

/// A search: a random point of the city and a random skill.
struct Search {
    at: Coord,
    skill: usize,
}

fn random_searches(rng: &mut SplitMix, count: usize) -> Vec<Search> {
    let half = CITY_HALF_SIDE_M;
    (0..count)
        .map(|_| Search {
            at: city_point(rng.between(-half, half), rng.between(-half, half)),
            skill: rng.below(SKILL_NAMES.len()),
        })
        .collect()
}

/// The same search by scanning every provider.
fn brute_force(city: &City, search: &Search) -> Vec<Nearby> {
    let mut found: Vec<Nearby> = city
        .providers
        .iter()
        .zip(&city.positions)
        .enumerate()
        .filter(|(_, (provider, _))| provider.skill_bits & (1 << search.skill) != 0)
        .map(|(id, (_, &at))| Nearby {
            provider: ProviderId(id as u64),
            distance_m: haversine_m(search.at, at),
        })
        .filter(|nearby| nearby.distance_m <= RADIUS_M)
        .collect();
    found.sort_unstable_by(rank);
    found.truncate(K);
    found
}

fn geo_benchmarks(criterion: &mut Criterion) {
    let mut rng = SplitMix(0x0c17_5eed);
    let mut city = build_city(&mut rng);
    let moves = random_moves(&mut rng, &mut city.providers, 1 << 20);
    let searches = random_searches(&mut rng, 1 << 12);

    let mut group = criterion.benchmark_group("geo");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));

    let mut next_move = 0;
    group.bench_function("location_update", |bencher| {
        bencher.iter(|| {
            let step = &moves[next_move % moves.len()];
            next_move += 1;
            let skills = &city.skill_sets[usize::from(city.providers[step.provider].skill_bits)];
            city.index
                .upsert(ProviderId(step.provider as u64), step.to, skills);
        });
    });
    // The brute-force scan reads `positions`; replay every move so both see the same city.
    replay_moves(&mut city, &moves, next_move);

    let mut next_search = 0;
    group.bench_function(BenchmarkId::new("nearby", "k10_5km"), |bencher| {
        bencher.iter(|| {
            let search = &searches[next_search % searches.len()];
            next_search += 1;
            let skill = &city.skills[search.skill];
            black_box(city.index.nearby(search.at, skill, K, RADIUS_M, &|_| false))
        });
    });
    let mut next_search = 0;
    group.bench_function(BenchmarkId::new("brute_force", "k10_5km"), |bencher| {
        bencher.iter(|| {
            let search = &searches[next_search % searches.len()];
            next_search += 1;
            black_box(brute_force(&city, search))
        });
    });
    group.finish();
    check_agreement(&city, &searches);
}

/// Sets `positions` to where the first `applied` moves (cycling) left each provider.
fn replay_moves(city: &mut City, moves: &[Move], applied: usize) {
    let replayed = applied.min(moves.len());
    let last_cycle_start = applied - replayed;
    for offset in 0..replayed {
        let step = &moves[(last_cycle_start + offset) % moves.len()];
        city.positions[step.provider] = step.to;
    }
}

/// Panics if the index and the brute-force scan disagree, so the figures compare like with like.
fn check_agreement(city: &City, searches: &[Search]) {
    for search in searches.iter().take(200) {
        let skill = &city.skills[search.skill];
        let found = city.index.nearby(search.at, skill, K, RADIUS_M, &|_| false);
        assert_eq!(found.ok(), Some(brute_force(city, search)));
    }
}

criterion_group!(benches, geo_benchmarks);
criterion_main!(benches);
