//! How the three demo nodes share the simulated city (`fixit_edge::city`):
//! twelve 5-character geohash cells, four per node.

pub(crate) use fixit_edge::city::{clamp_to_city, Rng};

pub(crate) use fixit_edge::city::regions;

use fixit_edge::city::{CITY, CITY_HALF_DEG};
use fixit_protocol::area::{Geometry, ServiceArea, Zone};

/// A rectangle `half` degrees (lat, lon) around `centre`, as a closed GeoJSON ring.
fn rectangle(centre: (f64, f64), half: (f64, f64)) -> Vec<[f64; 2]> {
    let (lat, lon) = centre;
    vec![
        [lon - half.1, lat - half.0],
        [lon + half.1, lat - half.0],
        [lon + half.1, lat + half.0],
        [lon - half.1, lat + half.0],
        [lon - half.1, lat - half.0],
    ]
}

/// Where every skill is offered: most of the city (bookings near its edge fall
/// outside and are refused), with a park in the middle cut out.
pub(crate) fn service_area() -> ServiceArea {
    ServiceArea {
        name: "berlin".into(),
        skills: Vec::new(),
        geometry: Geometry::Polygon(vec![
            rectangle(CITY, (CITY_HALF_DEG.0 * 0.96, CITY_HALF_DEG.1 * 0.96)),
            rectangle((CITY.0 - 0.004, CITY.1 - 0.02), (0.004, 0.006)),
        ]),
    }
}

/// A surge zone around the main station: bookings inside cost 1.5 times.
pub(crate) fn station_zone() -> Zone {
    Zone {
        name: "hauptbahnhof".into(),
        multiplier_pct: 150,
        geometry: Geometry::Polygon(vec![rectangle((52.525, 13.369), (0.004, 0.006))]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixit_cluster::Regions;
    use fixit_edge::city::{CITY, CITY_HALF_DEG};
    use std::collections::BTreeMap;

    /// Random spots checked; the seed is fixed and printed.
    const SPOTS: u64 = 20_000;
    const SEED: u64 = 0x5EED_C17E;

    #[test]
    fn the_regions_tile_the_city_box_with_a_fair_share_each() {
        println!("seed {SEED:#x}");
        let regions = Regions::new(regions()).expect("valid regions");
        let mut rng = Rng::new(SEED);
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
