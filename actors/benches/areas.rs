//! Benchmarks geofence checks with 1,000 and 10,000 areas: a booking's
//! service-area check (`Areas::serves`) and its zone charge (`Areas::charge`), at
//! random points of a 10 km × 17 km city tiled by service areas of 32 positions
//! each, with as many overlapping zones of 24 positions; and a brute-force scan of
//! every area for the same check, side by side in one run.
//!
//! `cargo bench -p fixit-actors --bench areas`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fixit_actors::areas::{grid_areas, Areas, Shape};
use fixit_actors::geo::Coord;
use fixit_protocol::area::{AreaList, Geometry, Zone};
use std::time::Duration;

/// The city: centre and half size in degrees (lat, lon).
const CITY: (f64, f64) = (52.52, 13.405);
const CITY_HALF_DEG: (f64, f64) = (0.045, 0.075);

/// Points checked per iteration.
const POINTS: usize = 1_024;

/// SplitMix64, seeded, so every run checks the same points.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn point(&mut self) -> Coord {
        let lat = CITY.0 + (self.unit() * 2.0 - 1.0) * CITY_HALF_DEG.0;
        let lon = CITY.1 + (self.unit() * 2.0 - 1.0) * CITY_HALF_DEG.1;
        Coord::new(lat, lon).expect("in range")
    }
}

/// `count` zones: 24-gons of 150–600 m radius at random points, overlapping freely.
fn zones(count: usize, rng: &mut Rng) -> Vec<Zone> {
    (0..count)
        .map(|i| {
            let centre = rng.point();
            let radius = (150.0 + 450.0 * rng.unit()) / 111_320.0;
            let ring: Vec<[f64; 2]> = (0..24)
                .map(|k| {
                    let angle = k as f64 * std::f64::consts::TAU / 24.0;
                    [
                        centre.lon() + radius * angle.cos() / CITY.0.to_radians().cos(),
                        centre.lat() + radius * angle.sin(),
                    ]
                })
                .collect();
            Zone {
                name: format!("zone-{i}"),
                multiplier_pct: 100 + (i % 5) as u32 * 25,
                geometry: Geometry::Polygon(vec![ring]),
            }
        })
        .collect()
}

fn areas(c: &mut Criterion) {
    let mut group = c.benchmark_group("areas");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    for count in [1_000usize, 10_000] {
        let mut rng = Rng(count as u64);
        let service_areas = grid_areas(CITY, CITY_HALF_DEG, count, 8);
        let list = AreaList {
            service_areas: service_areas.clone(),
            zones: zones(count, &mut rng),
        };
        let index = Areas::new(list);
        let points: Vec<Coord> = (0..POINTS).map(|_| rng.point()).collect();
        assert!(
            points.iter().all(|at| index.serves("plumber", *at)),
            "the grid covers the city"
        );
        group.throughput(Throughput::Elements(POINTS as u64));
        group.bench_with_input(BenchmarkId::new("serves", count), &points, |b, points| {
            b.iter(|| {
                points
                    .iter()
                    .filter(|at| index.serves(black_box("plumber"), **at))
                    .count()
            })
        });
        group.bench_with_input(BenchmarkId::new("charge", count), &points, |b, points| {
            b.iter(|| {
                points
                    .iter()
                    .filter_map(|at| index.charge(*at, black_box(10_000)))
                    .count()
            })
        });
        let shapes: Vec<Shape> = service_areas
            .iter()
            .map(|a| Shape::new(&a.geometry))
            .collect();
        group.throughput(Throughput::Elements(64));
        group.bench_with_input(
            BenchmarkId::new("brute_force_serves", count),
            &points[..64],
            |b, points| {
                b.iter(|| {
                    points
                        .iter()
                        .filter(|at| shapes.iter().any(|shape| shape.contains(**at)))
                        .count()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, areas);
criterion_main!(benches);
