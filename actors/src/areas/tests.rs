use super::*;
use fixit_protocol::area::Ring;
use proptest::prelude::*;

/// Coordinates on a grid of 1/1024 degree: midpoints of two grid points are exact,
/// and so are the cross products below, so "on an edge" is decidable exactly.
const GRID: f64 = 1.0 / 1024.0;

/// A corner of geohash cells (of 4 characters, so also a region boundary in a
/// cluster mapping regions by 4-character prefixes): polygons around it cross
/// both.
const CORNER: [f64; 2] = [13.359375, 52.55859375];

fn snap(value: f64) -> f64 {
    (value / GRID).round() * GRID
}

/// A star-shaped ring around `centre`: `radii` at evenly spread angles shifted by
/// `twist` (a simple polygon whatever the radii).
fn star(centre: [f64; 2], radii: &[f64], twist: f64) -> Ring {
    let n = radii.len() as f64;
    radii
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let angle = (i as f64 + twist) * std::f64::consts::TAU / n;
            [
                snap(centre[0] + r * angle.cos()),
                snap(centre[1] + r * angle.sin()),
            ]
        })
        .collect()
}

/// Whether `p` lies on the segment `a`–`b` (exact for grid coordinates).
fn on_segment(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> bool {
    let cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
    cross == 0.0
        && p[0] >= a[0].min(b[0])
        && p[0] <= a[0].max(b[0])
        && p[1] >= a[1].min(b[1])
        && p[1] <= a[1].max(b[1])
}

fn edges(ring: &Ring) -> impl Iterator<Item = ([f64; 2], [f64; 2])> + '_ {
    ring.iter()
        .zip(ring.iter().cycle().skip(1))
        .map(|(a, b)| (*a, *b))
}

/// The classic even–odd ray cast, with points on an edge inside.
fn brute_force(rings: &[Ring], p: [f64; 2]) -> bool {
    if rings
        .iter()
        .any(|ring| edges(ring).any(|(a, b)| on_segment(p, a, b)))
    {
        return true;
    }
    let mut inside = false;
    for ring in rings {
        for (a, b) in edges(ring) {
            if (a[1] > p[1]) != (b[1] > p[1]) {
                let x = a[0] + (p[1] - a[1]) / (b[1] - a[1]) * (b[0] - a[0]);
                if p[0] < x {
                    inside = !inside;
                }
            }
        }
    }
    inside
}

/// A polygon with up to two holes around a point near [`CORNER`].
fn polygon() -> impl Strategy<Value = Vec<Ring>> {
    (
        (-0.05f64..0.05, -0.05f64..0.05),
        prop::collection::vec(0.04f64..0.2, 4..12),
        0.0f64..1.0,
        prop::collection::vec(
            (
                prop::collection::vec(0.002f64..0.008, 3..8),
                0.0f64..1.0,
                (-0.002f64..0.002, -0.002f64..0.002),
            ),
            0..3,
        ),
    )
        .prop_map(|((dx, dy), radii, twist, holes)| {
            let centre = [snap(CORNER[0] + dx), snap(CORNER[1] + dy)];
            let mut rings = vec![star(centre, &radii, twist)];
            // Holes in separate quadrants of the kernel, so they never overlap.
            for (i, (radii, twist, (hx, hy))) in holes.into_iter().enumerate() {
                let side = if i == 0 { -0.012 } else { 0.012 };
                let hole_centre = [centre[0] + side + hx, centre[1] + hy];
                rings.push(star(hole_centre, &radii, twist));
            }
            rings
        })
}

/// Points to test: random ones around the polygon, every vertex, every edge's
/// midpoint.
fn probes(rings: &[Ring], random: &[(f64, f64)]) -> Vec<[f64; 2]> {
    let mut points: Vec<[f64; 2]> = random
        .iter()
        .map(|(x, y)| [snap(CORNER[0] + x), snap(CORNER[1] + y)])
        .collect();
    for ring in rings {
        for (a, b) in edges(ring) {
            points.push(a);
            points.push([(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0]);
        }
    }
    points
}

fn service(name: &str, skills: &[&str], geometry: Geometry) -> ServiceArea {
    ServiceArea {
        name: name.into(),
        skills: skills.iter().map(|s| s.to_string()).collect(),
        geometry,
    }
}

fn coord([lon, lat]: [f64; 2]) -> Coord {
    Coord::new(lat, lon).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn containment_matches_a_brute_force_ray_cast(
        first in polygon(),
        second in polygon(),
        random in prop::collection::vec((-0.3f64..0.3, -0.3f64..0.3), 64),
    ) {
        let areas = Areas::new(AreaList {
            service_areas: vec![service("one", &["plumbing"], Geometry::Polygon(first.clone()))],
            zones: vec![Zone {
                name: "two".into(),
                multiplier_pct: 150,
                geometry: Geometry::MultiPolygon(vec![first.clone(), second.clone()]),
            }],
        });
        for p in probes(&first, &random).into_iter().chain(probes(&second, &[])) {
            let expected = brute_force(&first, p);
            prop_assert_eq!(areas.serves("plumbing", coord(p)), expected, "{:?} in {:?}", p, first);
            let in_zone = expected || brute_force(&second, p);
            prop_assert_eq!(areas.zones_at(coord(p)).contains("two"), in_zone, "{:?}", p);
            prop_assert_eq!(areas.charge(coord(p), 100).is_some(), in_zone);
        }
    }

    #[test]
    fn a_work_polygon_holds_what_the_ray_cast_holds(
        rings in polygon(),
        random in prop::collection::vec((-0.3f64..0.3, -0.3f64..0.3), 32),
    ) {
        let mut work = WorkAreas::default();
        work.set(ProviderId(1), WorkArea::Polygon(Geometry::Polygon(rings.clone())));
        for p in probes(&rings, &random) {
            prop_assert_eq!(work.allows(ProviderId(1), coord(p)), brute_force(&rings, p));
            prop_assert!(work.allows(ProviderId(2), coord(p)), "no work area: anywhere");
        }
    }
}

fn square(x: f64, y: f64, side: f64) -> Geometry {
    Geometry::Polygon(vec![vec![
        [x, y],
        [x + side, y],
        [x + side, y + side],
        [x, y + side],
    ]])
}

#[test]
fn a_skill_with_areas_of_its_own_is_served_only_inside_them() {
    let areas = Areas::new(AreaList {
        service_areas: vec![
            service("city", &[], square(0.0, 0.0, 10.0)),
            service("ring-road", &["plumbing"], square(4.0, 4.0, 2.0)),
        ],
        zones: vec![],
    });
    let at = |lon, lat| Coord::new(lat, lon).unwrap();
    assert!(
        areas.serves("cleaning", at(1.0, 1.0)),
        "the city serves every skill"
    );
    assert!(!areas.serves("cleaning", at(11.0, 1.0)), "outside the city");
    assert!(
        !areas.serves("plumbing", at(1.0, 1.0)),
        "plumbing only in the ring road"
    );
    assert!(areas.serves("plumbing", at(5.0, 5.0)));
    assert!(
        Areas::default().serves("plumbing", at(50.0, 50.0)),
        "no areas: anywhere"
    );
}

#[test]
fn the_zone_with_the_highest_multiplier_charges() {
    let zone = |name: &str, multiplier_pct| Zone {
        name: name.into(),
        multiplier_pct,
        geometry: square(0.0, 0.0, 1.0),
    };
    let areas = Areas::new(AreaList {
        service_areas: vec![],
        zones: vec![zone("queue", 100), zone("surge", 150), zone("storm", 200)],
    });
    let at = Coord::new(0.5, 0.5).unwrap();
    let charge = areas.charge(at, 1_000).unwrap();
    assert_eq!(
        (charge.zone.as_str(), charge.multiplier_pct),
        ("storm", 200)
    );
    assert_eq!(areas.zones_at(at).len(), 3);
    assert!(areas.charge(Coord::new(5.0, 5.0).unwrap(), 1_000).is_none());
}

#[test]
fn a_work_circle_is_measured_on_the_sphere() {
    let mut work = WorkAreas::default();
    let provider = ProviderId(7);
    work.set(
        provider,
        WorkArea::Circle {
            lat: 52.52,
            lon: 13.40,
            radius_m: 1_000.0,
        },
    );
    assert!(
        work.allows(provider, Coord::new(52.525, 13.40).unwrap()),
        "556 m"
    );
    assert!(
        !work.allows(provider, Coord::new(52.53, 13.40).unwrap()),
        "1,112 m"
    );
    assert!(work.set(provider, WorkArea::Anywhere), "cleared");
    assert!(work.allows(provider, Coord::new(0.0, 0.0).unwrap()));
}

/// A work area for the dispatch property: none, a circle or a star polygon.
fn work_area() -> impl Strategy<Value = Option<WorkArea>> {
    prop_oneof![
        Just(None),
        ((-0.05f64..0.05, -0.05f64..0.05), 100.0f64..6_000.0).prop_map(|((dy, dx), radius_m)| {
            Some(WorkArea::Circle {
                lat: CORNER[1] + dy,
                lon: CORNER[0] + dx,
                radius_m,
            })
        }),
        polygon().prop_map(|rings| Some(WorkArea::Polygon(Geometry::Polygon(rings)))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Dispatch never offers a job outside a provider's work area, and offers
    /// exactly the best eligible providers a brute-force scan finds.
    #[test]
    fn candidates_are_the_best_providers_whose_work_area_holds_the_job(
        providers in prop::collection::vec(((-0.05f64..0.05, -0.05f64..0.05), work_area()), 1..40),
        jobs in prop::collection::vec((-0.05f64..0.05, -0.05f64..0.05), 1..6),
        limit in 1u32..10,
        radius_m in 1_000.0f64..8_000.0,
        excluded in prop::collection::vec(0u64..40, 0..5),
    ) {
        let skill = crate::ids::Skill::new("plumbing").unwrap();
        let mut geo = crate::geo::GeoIndex::new(6).unwrap();
        let mut work = WorkAreas::default();
        let mut placed = Vec::new();
        for (i, ((dy, dx), area)) in providers.into_iter().enumerate() {
            let id = ProviderId(i as u64);
            let at = Coord::new(CORNER[1] + dy, CORNER[0] + dx).unwrap();
            geo.upsert(id, at, std::slice::from_ref(&skill));
            if let Some(area) = area {
                work.set(id, area);
            }
            placed.push((id, at));
        }
        let exclude: Vec<ProviderId> = excluded.into_iter().map(ProviderId).collect();
        for (dy, dx) in jobs {
            let at = Coord::new(CORNER[1] + dy, CORNER[0] + dx).unwrap();
            let query = crate::cluster_hooks::CandidateQuery {
                at,
                skill: skill.clone(),
                limit,
                radius_m,
                exclude: exclude.clone(),
            };
            let found: Vec<ProviderId> = candidates(&geo, &work, &query)
                .unwrap()
                .into_iter()
                .map(|near| near.provider)
                .collect();
            for provider in &found {
                prop_assert!(work.allows(*provider, at), "{provider} offered outside its work area");
            }
            let mut eligible: Vec<crate::geo::Nearby> = placed
                .iter()
                .filter(|(id, _)| !exclude.contains(id) && work.allows(*id, at))
                .map(|(id, p)| crate::geo::Nearby { provider: *id, distance_m: haversine_m(at, *p) })
                .filter(|near| near.distance_m <= radius_m)
                .collect();
            eligible.sort_by(crate::geo::rank);
            let expected: Vec<ProviderId> = eligible
                .into_iter()
                .take(limit as usize)
                .map(|near| near.provider)
                .collect();
            prop_assert_eq!(found, expected);
        }
    }
}
