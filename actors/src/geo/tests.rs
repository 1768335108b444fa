//! Tests of the geo module: validation, distances, geohash cells, and the index against a
//! brute-force scan that uses the same distance and the same ranking.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Metres per degree of latitude on the sphere of [`EARTH_RADIUS_M`].
const METRES_PER_DEGREE: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

/// Skill names used by the generated data sets.
const SKILL_NAMES: [&str; 5] = ["plumber", "electrician", "locksmith", "painter", "hvac"];

fn skill(number: usize) -> Skill {
    Skill::new(SKILL_NAMES[number % SKILL_NAMES.len()]).expect("a valid skill name")
}

fn coord(lat: f64, lon: f64) -> Coord {
    Coord::new(lat, lon).expect("a valid coordinate")
}

/// SplitMix64: a small seeded generator for reproducible data sets.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high).
    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform in 0..count.
    fn below(&mut self, count: usize) -> usize {
        (self.next_u64() % count as u64) as usize
    }
}

/// The point `north_m` metres north and `east_m` metres east of `centre`, kept on the map:
/// latitudes are clamped to the poles, longitudes wrap across the antimeridian.
fn offset(centre: Coord, north_m: f64, east_m: f64) -> Coord {
    let lat = (centre.lat() + north_m / METRES_PER_DEGREE).clamp(-90.0, 90.0);
    let cos_lat = centre.lat().to_radians().cos().max(1e-6);
    let lon = centre.lon() + east_m / (METRES_PER_DEGREE * cos_lat);
    let wrapped = (lon + 180.0).rem_euclid(360.0) - 180.0;
    coord(lat, wrapped.clamp(-180.0, 180.0))
}

/// The providers of a test, as plain data: what the index should hold.
#[derive(Default)]
struct Model {
    providers: BTreeMap<ProviderId, (Coord, Vec<Skill>)>,
}

impl Model {
    fn upsert(&mut self, index: &mut GeoIndex, provider: ProviderId, at: Coord, skills: &[Skill]) {
        index.upsert(provider, at, skills);
        self.providers.insert(provider, (at, skills.to_vec()));
    }

    fn remove(&mut self, index: &mut GeoIndex, provider: ProviderId) {
        let removed = index.remove(provider);
        assert_eq!(removed, self.providers.remove(&provider).is_some());
    }

    /// The expected answer: every provider's distance, filtered, sorted by [`rank`].
    fn brute_force(&self, query: &Query) -> Vec<Nearby> {
        let mut all: Vec<Nearby> = self
            .providers
            .iter()
            .filter(|(_, (_, skills))| skills.contains(&query.skill))
            .map(|(&provider, &(at, _))| Nearby {
                provider,
                distance_m: haversine_m(query.at, at),
            })
            .filter(|nearby| {
                nearby.distance_m <= query.radius_m && !query.excludes(nearby.provider)
            })
            .collect();
        all.sort_by(rank);
        all.truncate(query.k);
        all
    }

    /// Asserts that the index answers `query` exactly as the brute-force scan does.
    fn check(&self, index: &GeoIndex, query: &Query) {
        let exclude = |provider: ProviderId| query.excludes(provider);
        let found = index
            .nearby(query.at, &query.skill, query.k, query.radius_m, &exclude)
            .expect("a valid query");
        assert_eq!(found, self.brute_force(query), "{query:?}");
    }

    fn check_contents(&self, index: &GeoIndex) {
        assert_eq!(index.len(), self.providers.len());
        assert_eq!(index.is_empty(), self.providers.is_empty());
        for (&provider, &(at, _)) in &self.providers {
            assert!(index.contains(provider));
            assert_eq!(index.position(provider), Some(at));
        }
    }
}

#[derive(Clone, Debug)]
struct Query {
    at: Coord,
    skill: Skill,
    k: usize,
    radius_m: f64,
    /// Providers whose id is a multiple of this are excluded; 0 excludes none.
    exclude_multiples_of: u64,
}

impl Query {
    fn excludes(&self, provider: ProviderId) -> bool {
        self.exclude_multiples_of != 0 && provider.0 % self.exclude_multiples_of == 0
    }
}

/// 1 to 3 distinct skills.
fn random_skills(rng: &mut SplitMix) -> Vec<Skill> {
    let mut skills: Vec<Skill> = (0..1 + rng.below(3)).map(|_| skill(rng.below(8))).collect();
    skills.sort();
    skills.dedup();
    skills
}

/// Where a generated point lies; each kind stresses one part of the search.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// Anywhere on the sphere, uniformly by area.
    Anywhere,
    /// Within half a degree of the antimeridian, sometimes exactly on it.
    Antimeridian,
    /// North of 85° or south of -85°, sometimes exactly on a pole.
    Polar,
    /// Exactly on a corner of a cell of the given precision, near a random centre.
    CellCorner(usize),
}

fn random_place(rng: &mut SplitMix, precision: usize) -> Place {
    match rng.below(4) {
        0 => Place::Anywhere,
        1 => Place::Antimeridian,
        2 => Place::Polar,
        _ => Place::CellCorner(precision),
    }
}

/// A point of a random kind of place.
fn random_placed_point(rng: &mut SplitMix, precision: usize) -> Coord {
    let place = random_place(rng, precision);
    random_point(rng, place)
}

fn random_point(rng: &mut SplitMix, place: Place) -> Coord {
    match place {
        Place::Anywhere => coord(
            rng.between(-1.0, 1.0).asin().to_degrees(),
            rng.between(-180.0, 180.0),
        ),
        Place::Antimeridian => {
            let lon = match rng.below(8) {
                0 => 180.0,
                1 => -180.0,
                2 => rng.between(179.5, 180.0),
                _ => rng.between(-180.0, -179.5),
            };
            coord(rng.between(-60.0, 60.0), lon)
        }
        Place::Polar => {
            let lat = match rng.below(8) {
                0 => 90.0,
                1 => -90.0,
                2 => rng.between(-90.0, -85.0),
                _ => rng.between(85.0, 90.0),
            };
            coord(lat, rng.between(-180.0, 180.0))
        }
        Place::CellCorner(precision) => cell_corner(rng, precision),
    }
}

/// A corner of a cell of `precision`, within a few cells of (48.85, 2.35) or of the
/// antimeridian.
fn cell_corner(rng: &mut SplitMix, precision: usize) -> Coord {
    let grid = Grid::new(precision);
    let height = 180.0 / f64::from(grid.rows());
    let width = 360.0 / f64::from(grid.cols());
    let (lat, lon) = if rng.below(2) == 0 {
        (48.85, 2.35)
    } else {
        (-20.0, 179.99)
    };
    let row = ((lat + 90.0) / height).floor() + rng.below(7) as f64 - 3.0;
    let col = ((lon + 180.0) / width).floor() + rng.below(7) as f64 - 3.0;
    let corner_lat = (-90.0 + row * height).clamp(-90.0, 90.0);
    let corner_lon = (-180.0 + col * width).rem_euclid(360.0) - 180.0;
    coord(corner_lat, corner_lon)
}

/// A radius from 1 m to beyond half the Earth's circumference, uniform in its logarithm.
fn random_radius(rng: &mut SplitMix) -> f64 {
    10f64.powf(rng.between(0.0, 7.5))
}

// ---------------------------------------------------------------------------------------------
// Validation

#[test]
fn coordinates_out_of_range_are_refused_with_typed_errors() {
    for lat in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        90.000_001,
        -90.5,
        1e300,
    ] {
        assert!(
            matches!(Coord::new(lat, 0.0), Err(GeoError::InvalidLatitude(_))),
            "{lat}"
        );
    }
    for lon in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        180.000_001,
        -181.0,
        -1e300,
    ] {
        assert!(
            matches!(Coord::new(0.0, lon), Err(GeoError::InvalidLongitude(_))),
            "{lon}"
        );
    }
    assert_eq!(Coord::new(91.0, 0.0), Err(GeoError::InvalidLatitude(91.0)));
    assert!(GeoError::InvalidLatitude(91.0).to_string().contains("91"));
}

#[test]
fn coordinates_on_the_limits_are_accepted() {
    for (lat, lon) in [
        (90.0, 0.0),
        (-90.0, 0.0),
        (0.0, 180.0),
        (0.0, -180.0),
        (-0.0, -0.0),
    ] {
        assert!(Coord::new(lat, lon).is_ok(), "{lat} {lon}");
    }
}

#[test]
fn longitude_180_is_the_same_meridian_as_minus_180() {
    assert_eq!(coord(10.0, 180.0), coord(10.0, -180.0));
    assert_eq!(coord(10.0, 180.0).lon(), -180.0);
    assert_eq!(haversine_m(coord(10.0, 180.0), coord(10.0, -180.0)), 0.0);
    assert_eq!(
        cell_of(coord(10.0, 180.0), 7),
        cell_of(coord(10.0, -180.0), 7)
    );
}

#[test]
fn precisions_outside_1_to_12_are_refused() {
    for precision in [0, 13, usize::MAX] {
        assert_eq!(
            GeoIndex::new(precision).err(),
            Some(GeoError::InvalidPrecision(precision))
        );
        assert_eq!(
            cell_of(coord(0.0, 0.0), precision),
            Err(GeoError::InvalidPrecision(precision))
        );
    }
    for precision in PRECISION_MIN..=PRECISION_MAX {
        assert_eq!(
            GeoIndex::new(precision).map(|index| index.precision()),
            Ok(precision)
        );
    }
}

#[test]
fn radii_that_are_not_finite_and_positive_are_refused() {
    let mut index = GeoIndex::new(6).expect("a valid precision");
    index.upsert(ProviderId(1), coord(1.0, 1.0), &[skill(0)]);
    for radius in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, -5.0] {
        let result = index.nearby(coord(1.0, 1.0), &skill(0), 3, radius, &|_| false);
        assert!(
            matches!(result, Err(GeoError::InvalidRadius(_))),
            "{radius}"
        );
    }
}

#[test]
fn empty_answers() {
    let mut index = GeoIndex::new(6).expect("a valid precision");
    let at = coord(1.0, 1.0);
    assert_eq!(
        index.nearby(at, &skill(0), 5, 1000.0, &|_| false),
        Ok(vec![])
    );
    index.upsert(ProviderId(1), at, &[skill(0)]);
    assert_eq!(
        index.nearby(at, &skill(0), 0, 1000.0, &|_| false),
        Ok(vec![])
    );
    assert_eq!(
        index.nearby(at, &skill(1), 5, 1000.0, &|_| false),
        Ok(vec![])
    );
    assert_eq!(
        index.nearby(at, &skill(0), 5, 1000.0, &|_| true),
        Ok(vec![])
    );
    let found = index.nearby(at, &skill(0), 5, 1000.0, &|_| false);
    assert_eq!(
        found,
        Ok(vec![Nearby {
            provider: ProviderId(1),
            distance_m: 0.0
        }])
    );
}

// ---------------------------------------------------------------------------------------------
// Distances and cells

#[test]
fn haversine_matches_known_distances() {
    let paris = coord(48.8566, 2.3522);
    let london = coord(51.5074, -0.1278);
    assert!((haversine_m(paris, london) - 343_560.0).abs() < 500.0);
    assert_eq!(haversine_m(paris, paris), 0.0);
    assert_eq!(haversine_m(paris, london), haversine_m(london, paris));
    let half_circumference = std::f64::consts::PI * EARTH_RADIUS_M;
    assert!((haversine_m(coord(0.0, 0.0), coord(0.0, -180.0)) - half_circumference).abs() < 1e-3);
    assert!((haversine_m(coord(90.0, 0.0), coord(-90.0, 0.0)) - half_circumference).abs() < 1e-3);
    let across_antimeridian = haversine_m(coord(0.0, 179.9995), coord(0.0, -179.9995));
    assert!(
        (across_antimeridian - 111.2).abs() < 0.1,
        "{across_antimeridian}"
    );
    assert!(haversine_m(coord(90.0, 0.0), coord(90.0, 120.0)) < 1e-6);
}

#[test]
fn cells_of_the_poles_do_not_wrap() {
    for precision in PRECISION_MIN..=PRECISION_MAX {
        let north = cell_of(coord(90.0, 10.0), precision).expect("a valid precision");
        let bounds = geohash::decode_bbox(&north).expect("a valid geohash");
        assert_eq!(bounds.max().y, 90.0, "{precision} {north}");
        let south = cell_of(coord(-90.0, 10.0), precision).expect("a valid precision");
        let bounds = geohash::decode_bbox(&south).expect("a valid geohash");
        assert_eq!(bounds.min().y, -90.0, "{precision} {south}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn cells_are_geohash_cells(lat in -90.0..90.0f64, lon in -180.0..180.0f64, precision in 1..=12usize) {
        let at = coord(lat, lon);
        let point = geohash::Coord { x: lon, y: lat };
        let expected = geohash::encode(point, precision).expect("a valid coordinate");
        prop_assert_eq!(cell_of(at, precision), Ok(expected.clone()));
        let bounds = geohash::decode_bbox(&expected).expect("a valid geohash");
        prop_assert!(bounds.min().y <= lat && lat <= bounds.max().y);
        prop_assert!(bounds.min().x <= lon && lon <= bounds.max().x);
    }

    #[test]
    fn search_boxes_hold_every_point_within_the_distance(
        lat in -90.0..=90.0f64,
        lon in -180.0..180.0f64,
        precision in 1..=12usize,
        log_distance in 0.0..7.0f64,
        bearing in 0.0..std::f64::consts::TAU,
        fraction in 0.0..=1.0f64,
    ) {
        let grid = Grid::new(precision);
        let centre = coord(lat, lon);
        let distance_m = 10f64.powf(log_distance);
        let target = destination(centre, bearing, distance_m * fraction);
        prop_assume!(haversine_m(centre, target) <= distance_m);
        let search_box = grid.search_box(centre, distance_m);
        prop_assert!(search_box.contains(grid.cell(target), &grid), "{:?} {:?}", target, search_box);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The bounds that let a search skip cells never exceed a real squared chord.
    #[test]
    fn cell_bounds_never_exceed_real_distances(
        lat in -90.0..=90.0f64,
        lon in -180.0..180.0f64,
        precision in 1..=12usize,
        log_distance in -1.0..7.3f64,
        bearing in 0.0..std::f64::consts::TAU,
        box_fraction in 0.0..=1.5f64,
        corner_seed in any::<u64>(),
    ) {
        let grid = Grid::new(precision);
        let mut rng = SplitMix(corner_seed);
        let centre = if corner_seed % 3 == 0 { cell_corner(&mut rng, precision) } else { coord(lat, lon) };
        let distance_m = 10f64.powf(log_distance);
        let target = destination(centre, bearing, distance_m);
        let squared_chord = UnitVector::new(centre).squared_chord(&UnitVector::new(target));
        let bounds = grid::CellDistances::new(&grid, centre);
        let target_cell = grid.cell(target);
        prop_assert!(bounds.lower_bound(target_cell) <= squared_chord, "{:?} {:?}", centre, target);
        let search_box = grid.search_box(centre, distance_m * box_fraction);
        if !search_box.contains(target_cell, &grid) {
            prop_assert!(bounds.outside_bound(&search_box) <= squared_chord, "{:?} {:?}", centre, target);
        }
    }
}

/// The point `distance_m` from `start` along the initial `bearing` (radians from north).
fn destination(start: Coord, bearing: f64, distance_m: f64) -> Coord {
    let angle = distance_m / EARTH_RADIUS_M;
    let lat = start.lat().to_radians();
    let end_lat = (lat.sin() * angle.cos() + lat.cos() * angle.sin() * bearing.cos())
        .clamp(-1.0, 1.0)
        .asin();
    let lon_change =
        (bearing.sin() * angle.sin() * lat.cos()).atan2(angle.cos() - lat.sin() * end_lat.sin());
    let lon = (start.lon() + lon_change.to_degrees() + 180.0).rem_euclid(360.0) - 180.0;
    coord(
        end_lat.to_degrees().clamp(-90.0, 90.0),
        lon.clamp(-180.0, 180.0),
    )
}

// ---------------------------------------------------------------------------------------------
// The index against brute force

#[test]
fn moving_and_reskilling_a_provider_updates_every_answer() {
    let mut index = GeoIndex::new(7).expect("a valid precision");
    let home = coord(48.85, 2.35);
    index.upsert(ProviderId(1), home, &[skill(0), skill(1), skill(0)]);
    index.upsert(ProviderId(2), offset(home, 100.0, 0.0), &[skill(0)]);
    let nearest = |index: &GeoIndex, number| {
        let found = index.nearby(home, &skill(number), 5, 10_000.0, &|_| false);
        found
            .expect("a valid query")
            .iter()
            .map(|nearby| nearby.provider.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(nearest(&index, 0), [1, 2]);
    assert_eq!(nearest(&index, 1), [1]);
    index.upsert(ProviderId(1), offset(home, 0.0, 3_000.0), &[skill(0)]);
    assert_eq!(nearest(&index, 0), [2, 1]);
    assert_eq!(nearest(&index, 1), Vec::<u64>::new());
    index.upsert(ProviderId(1), offset(home, 0.0, 3_001.0), &[skill(0)]);
    assert_eq!(
        index.position(ProviderId(1)),
        Some(offset(home, 0.0, 3_001.0))
    );
    index.upsert(ProviderId(2), offset(home, 0.0, 20_000.0), &[]);
    assert_eq!(nearest(&index, 0), [1]);
    assert!(index.remove(ProviderId(1)));
    assert!(!index.remove(ProviderId(1)));
    assert_eq!(nearest(&index, 0), Vec::<u64>::new());
    assert_eq!(index.len(), 1);
    assert!(index.contains(ProviderId(2)) && !index.contains(ProviderId(1)));
    assert!(index.remove(ProviderId(2)));
    assert!(index.is_empty());
    assert!(index.cells.is_empty());
}

#[test]
fn extreme_queries_match_brute_force() {
    for precision in [1, 2, 6, 12] {
        let mut rng = SplitMix(0xe7_0000 + precision as u64);
        println!("extreme queries seed: {:#x}", rng.0);
        let mut index = GeoIndex::new(precision).expect("a valid precision");
        let mut model = Model::default();
        for id in 0..500 {
            let at = random_placed_point(&mut rng, precision);
            model.upsert(&mut index, ProviderId(id), at, &[skill(rng.below(2))]);
        }
        let places = [
            coord(90.0, 0.0),
            coord(-90.0, 135.0),
            coord(0.0, 180.0),
            coord(45.0, -180.0),
        ];
        for at in places {
            for radius_m in [f64::MIN_POSITIVE, 1e-9, 1.0, 1e5, 2.0e7, 4.0e7, f64::MAX] {
                for k in [1, 7, usize::MAX] {
                    let query = Query {
                        at,
                        skill: skill(0),
                        k,
                        radius_m,
                        exclude_multiples_of: 3,
                    };
                    model.check(&index, &query);
                }
            }
        }
    }
}

#[test]
fn ties_are_broken_by_provider_id() {
    let mut index = GeoIndex::new(5).expect("a valid precision");
    let at = coord(-33.9, 151.2);
    for id in [9, 3, 7, 1, 5] {
        index.upsert(ProviderId(id), at, &[skill(2)]);
    }
    let found = index
        .nearby(at, &skill(2), 3, 1.0, &|_| false)
        .expect("a valid query");
    let ids: Vec<u64> = found.iter().map(|nearby| nearby.provider.0).collect();
    assert_eq!(ids, [1, 3, 5]);
}

#[test]
fn providers_on_cell_corners_are_found_from_every_side() {
    for precision in [3, 5, 7, 9, 12] {
        let mut rng = SplitMix(precision as u64);
        let mut index = GeoIndex::new(precision).expect("a valid precision");
        let mut model = Model::default();
        for id in 0..300 {
            let at = cell_corner(&mut rng, precision);
            model.upsert(&mut index, ProviderId(id), at, &[skill(rng.below(2))]);
        }
        for _ in 0..100 {
            let query = Query {
                at: cell_corner(&mut rng, precision),
                skill: skill(rng.below(2)),
                k: 1 + rng.below(12),
                radius_m: random_radius(&mut rng),
                exclude_multiples_of: rng.below(4) as u64,
            };
            model.check(&index, &query);
        }
    }
}

/// The seed of the shared city data set.
const CITY_SEED: u64 = 0x5eed_c17e;

/// 10,000 providers spread over a 20 km × 20 km city around (48.85, 2.35), indexed at
/// precision 6, built once for all city queries.
fn city() -> &'static (GeoIndex, Model) {
    static CITY: OnceLock<(GeoIndex, Model)> = OnceLock::new();
    CITY.get_or_init(|| {
        println!("city data set seed: {CITY_SEED:#x}");
        let mut rng = SplitMix(CITY_SEED);
        let mut index = GeoIndex::new(6).expect("a valid precision");
        let mut model = Model::default();
        let centre = coord(48.85, 2.35);
        for id in 0..10_000 {
            let at = offset(
                centre,
                rng.between(-10_000.0, 10_000.0),
                rng.between(-10_000.0, 10_000.0),
            );
            let skills = random_skills(&mut rng);
            model.upsert(&mut index, ProviderId(id), at, &skills);
        }
        (index, model)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn city_queries_match_brute_force(
        north_m in -12_000.0..12_000.0f64,
        east_m in -12_000.0..12_000.0f64,
        skill_number in 0..6usize,
        k in 0..40usize,
        log_radius in 1.0..4.7f64,
        exclude_multiples_of in 0..5u64,
    ) {
        let (index, model) = city();
        let query = Query {
            at: offset(coord(48.85, 2.35), north_m, east_m),
            skill: skill(skill_number),
            k,
            radius_m: 10f64.powf(log_radius),
            exclude_multiples_of,
        };
        model.check(index, &query);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// 10,000 providers over the whole world, a quarter each anywhere, on the antimeridian,
    /// near the poles and on cell corners, at a random precision; queries drawn the same way.
    #[test]
    fn world_queries_match_brute_force(seed in any::<u64>(), precision in 1..=12usize) {
        println!("world data set seed: {seed:#x}, precision {precision}");
        let mut rng = SplitMix(seed);
        let mut index = GeoIndex::new(precision).expect("a valid precision");
        let mut model = Model::default();
        for id in 0..10_000 {
            let at = random_placed_point(&mut rng, precision);
            let skills = random_skills(&mut rng);
            model.upsert(&mut index, ProviderId(id), at, &skills);
        }
        for _ in 0..30 {
            let query = Query {
                at: random_placed_point(&mut rng, precision),
                skill: skill(rng.below(4)),
                k: 1 + rng.below(30),
                radius_m: random_radius(&mut rng),
                exclude_multiples_of: rng.below(5) as u64,
            };
            model.check(&index, &query);
        }
    }

    /// Providers move (a little or across cells), change skills and leave, and every answer
    /// still matches brute force.
    #[test]
    fn moves_and_removals_match_brute_force(seed in any::<u64>(), precision in 4..=9usize) {
        println!("moves seed: {seed:#x}, precision {precision}");
        let mut rng = SplitMix(seed);
        let mut index = GeoIndex::new(precision).expect("a valid precision");
        let mut model = Model::default();
        let centre = random_placed_point(&mut rng, precision);
        for step in 0..3_000 {
            let provider = ProviderId(rng.below(400) as u64);
            if rng.below(10) == 0 {
                model.remove(&mut index, provider);
            } else {
                let from = model.providers.get(&provider).map_or(centre, |(at, _)| *at);
                let step_m = 10f64.powf(rng.between(-1.0, 4.0));
                let at = offset(from, rng.between(-step_m, step_m), rng.between(-step_m, step_m));
                let skills = match model.providers.get(&provider) {
                    Some((_, skills)) if rng.below(4) != 0 => skills.clone(),
                    _ => random_skills(&mut rng),
                };
                model.upsert(&mut index, provider, at, &skills);
            }
            if step % 20 == 0 {
                let query = Query {
                    at: offset(centre, rng.between(-5_000.0, 5_000.0), rng.between(-5_000.0, 5_000.0)),
                    skill: skill(rng.below(4)),
                    k: 1 + rng.below(20),
                    radius_m: random_radius(&mut rng),
                    exclude_multiples_of: rng.below(5) as u64,
                };
                model.check(&index, &query);
            }
        }
        model.check_contents(&index);
    }
}
