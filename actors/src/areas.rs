//! Geofences of a node: the operator's service areas and zones, indexed so a
//! containment check costs microseconds with thousands of areas, and providers'
//! work areas.
//!
//! Each polygon's bounding box goes into an R-tree (`rstar`); a check asks the
//! tree for the boxes holding the point and runs the exact point-in-polygon test
//! (`geo`, robust predicates) only on those. A point on an edge (of an outer ring
//! or of a hole) is inside: areas are closed sets. Edges are straight lines in
//! longitude/latitude (GeoJSON); areas crossing the antimeridian are not
//! supported (split them in two).

use crate::geo::{haversine_m, Coord};
use crate::ids::ProviderId;
use fixit_protocol::area::{AreaList, Geometry, ServiceArea, WorkArea, Zone, ZoneCharge};
use geo::{Intersects, LineString, MultiPolygon, Point, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::RTree;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// Settings key prefix of a stored service area or zone (then its name).
pub const AREA_PREFIX: &str = "area/";

/// Settings key prefix of a stored work area (then the provider id, 20 digits).
pub const WORK_PREFIX: &str = "work/";

/// A service area or a zone, as stored and as put by a command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoredArea {
    /// A service area.
    Service(ServiceArea),
    /// A zone.
    Zone(Zone),
}

impl StoredArea {
    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            StoredArea::Service(area) => &area.name,
            StoredArea::Zone(zone) => &zone.name,
        }
    }

    /// Its settings key.
    pub fn key(&self) -> String {
        format!("{AREA_PREFIX}{}", self.name())
    }

    /// Checks it.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            StoredArea::Service(area) => area.validate(),
            StoredArea::Zone(zone) => zone.validate(),
        }
    }
}

/// One polygon's bounding box, tagged with its area and its part.
type Boxed = GeomWithData<Rectangle<[f64; 2]>, (usize, usize)>;

/// A geometry compiled for point-in-polygon tests.
#[derive(Clone, Debug)]
pub struct Shape {
    parts: MultiPolygon<f64>,
}

impl Shape {
    /// Compiles a validated geometry (rings are closed here if they were open).
    pub fn new(geometry: &Geometry) -> Shape {
        let ring = |positions: &Vec<[f64; 2]>| -> LineString<f64> {
            positions.iter().map(|&[x, y]| (x, y)).collect()
        };
        let parts = geometry
            .polygons()
            .into_iter()
            .filter_map(|rings| {
                let (outer, holes) = rings.split_first()?;
                Some(Polygon::new(ring(outer), holes.iter().map(ring).collect()))
            })
            .collect();
        Shape {
            parts: MultiPolygon(parts),
        }
    }

    /// Whether `at` is inside or on an edge.
    pub fn contains(&self, at: Coord) -> bool {
        self.parts.intersects(&Point::new(at.lon(), at.lat()))
    }

    /// Whether `at` is inside or on an edge of part `part`.
    fn part_contains(&self, part: usize, at: Coord) -> bool {
        self.parts
            .0
            .get(part)
            .is_some_and(|polygon| polygon.intersects(&Point::new(at.lon(), at.lat())))
    }

    /// The bounding box of each part.
    fn boxes(&self) -> impl Iterator<Item = (usize, Rectangle<[f64; 2]>)> + '_ {
        self.parts
            .0
            .iter()
            .enumerate()
            .filter_map(|(part, polygon)| {
                let points = polygon.exterior().0.iter();
                let (mut low, mut high) = ([f64::MAX; 2], [f64::MIN; 2]);
                for point in points {
                    low = [low[0].min(point.x), low[1].min(point.y)];
                    high = [high[0].max(point.x), high[1].max(point.y)];
                }
                (low[0] <= high[0]).then(|| (part, Rectangle::from_corners(low, high)))
            })
    }
}

/// Areas of one kind in an R-tree of their polygons' boxes.
#[derive(Clone, Debug, Default)]
struct Indexed {
    shapes: Vec<Shape>,
    tree: RTree<Boxed>,
}

impl Indexed {
    fn new<'a>(geometries: impl Iterator<Item = &'a Geometry>) -> Indexed {
        let shapes: Vec<Shape> = geometries.map(Shape::new).collect();
        let boxes = shapes
            .iter()
            .enumerate()
            .flat_map(|(area, shape)| {
                shape
                    .boxes()
                    .map(move |(part, rect)| GeomWithData::new(rect, (area, part)))
            })
            .collect();
        Indexed {
            shapes,
            tree: RTree::bulk_load(boxes),
        }
    }

    /// The areas holding `at`, each once, in index order.
    fn holding(&self, at: Coord) -> BTreeSet<usize> {
        self.tree
            .locate_all_at_point(&[at.lon(), at.lat()])
            .filter(|boxed| {
                let (area, part) = boxed.data;
                self.shapes[area].part_contains(part, at)
            })
            .map(|boxed| boxed.data.0)
            .collect()
    }
}

/// The service areas and zones of a node, indexed.
#[derive(Clone, Debug, Default)]
pub struct Areas {
    service: Vec<ServiceArea>,
    zones: Vec<Zone>,
    service_index: Indexed,
    zone_index: Indexed,
    /// Skills that have areas of their own.
    skills: BTreeSet<String>,
    /// Whether some area names no skill (applies to skills without their own).
    any_for_all: bool,
}

impl Areas {
    /// Indexes `list` (validated areas, each name once).
    pub fn new(list: AreaList) -> Areas {
        let AreaList {
            mut service_areas,
            mut zones,
        } = list;
        service_areas.sort_by(|a, b| a.name.cmp(&b.name));
        zones.sort_by(|a, b| a.name.cmp(&b.name));
        let skills = service_areas
            .iter()
            .flat_map(|area| area.skills.iter().cloned())
            .collect();
        let any_for_all = service_areas.iter().any(|area| area.skills.is_empty());
        Areas {
            service_index: Indexed::new(service_areas.iter().map(|area| &area.geometry)),
            zone_index: Indexed::new(zones.iter().map(|zone| &zone.geometry)),
            service: service_areas,
            zones,
            skills,
            any_for_all,
        }
    }

    /// The areas, by name.
    pub fn list(&self) -> AreaList {
        AreaList {
            service_areas: self.service.clone(),
            zones: self.zones.clone(),
        }
    }

    /// Number of service areas and zones.
    pub fn len(&self) -> usize {
        self.service.len() + self.zones.len()
    }

    /// Whether a service area or zone is named `name`.
    pub fn contains(&self, name: &str) -> bool {
        // Both lists are sorted by name (`Areas::new`).
        let service = self.service.binary_search_by(|a| a.name.as_str().cmp(name));
        let zone = self.zones.binary_search_by(|z| z.name.as_str().cmp(name));
        service.is_ok() || zone.is_ok()
    }

    /// Whether there are no areas at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `skill` is offered at `at`: inside one of the areas that apply to
    /// it (those naming it, else those naming no skill), or anywhere when none
    /// apply.
    pub fn serves(&self, skill: &str, at: Coord) -> bool {
        let own = self.skills.contains(skill);
        if !own && !self.any_for_all {
            return true;
        }
        self.service_index.holding(at).into_iter().any(|index| {
            let skills = &self.service[index].skills;
            if own {
                skills.iter().any(|s| s == skill)
            } else {
                skills.is_empty()
            }
        })
    }

    /// Whether there is any zone.
    pub fn has_zones(&self) -> bool {
        !self.zones.is_empty()
    }

    /// The names of the zones holding `at`, sorted.
    pub fn zones_at(&self, at: Coord) -> BTreeSet<String> {
        self.zone_index
            .holding(at)
            .into_iter()
            .map(|index| self.zones[index].name.clone())
            .collect()
    }

    /// The charge a booking of `price` at `at` gets: the zone with the highest
    /// multiplier holding the point (the first by name among equals), if its
    /// multiplier is above 100.
    pub fn charge(&self, at: Coord, price: i64) -> Option<ZoneCharge> {
        let zone = self
            .zone_index
            .holding(at)
            .into_iter()
            .map(|index| &self.zones[index])
            .filter(|zone| zone.multiplier_pct > 100)
            .max_by(|a, b| {
                a.multiplier_pct
                    .cmp(&b.multiplier_pct)
                    .then_with(|| b.name.cmp(&a.name))
            })?;
        Some(ZoneCharge {
            zone: zone.name.clone(),
            multiplier_pct: zone.multiplier_pct,
            base_price: price,
        })
    }
}

/// `count` service areas for every skill tiling the box `centre ± half` (degrees
/// lat, lon) in a grid of rows × columns with rows the largest divisor of `count`
/// not above its square root, each cell a polygon of `4 × edge_steps` positions
/// (its edges subdivided): every point of the box is in at least one. For
/// benchmarks and load runs with many areas.
pub fn grid_areas(
    centre: (f64, f64),
    half: (f64, f64),
    count: usize,
    edge_steps: usize,
) -> Vec<ServiceArea> {
    let count = count.max(1);
    let rows = (1..=count)
        .take_while(|rows| rows * rows <= count)
        .filter(|rows| count % rows == 0)
        .last()
        .unwrap_or(1);
    let columns = count / rows;
    let steps = edge_steps.max(1);
    let (height, width) = (2.0 * half.0 / rows as f64, 2.0 * half.1 / columns as f64);
    let (south, west) = (centre.0 - half.0, centre.1 - half.1);
    let mut areas = Vec::with_capacity(count);
    for row in 0..rows {
        for column in 0..columns {
            let (s, w) = (south + row as f64 * height, west + column as f64 * width);
            let corners = [
                (w, s),
                (w + width, s),
                (w + width, s + height),
                (w, s + height),
            ];
            let mut ring = Vec::with_capacity(4 * steps + 1);
            for side in 0..4 {
                let (from, to) = (corners[side], corners[(side + 1) % 4]);
                for step in 0..steps {
                    let t = step as f64 / steps as f64;
                    ring.push([from.0 + (to.0 - from.0) * t, from.1 + (to.1 - from.1) * t]);
                }
            }
            ring.push(ring[0]);
            areas.push(ServiceArea {
                name: format!("grid-{row}-{column}"),
                skills: Vec::new(),
                geometry: Geometry::Polygon(vec![ring]),
            });
        }
    }
    areas
}

/// A work area compiled for checks.
#[derive(Clone, Debug)]
pub enum WorkShape {
    /// Within a radius of a point.
    Circle {
        /// The centre.
        centre: Coord,
        /// Metres.
        radius_m: f64,
    },
    /// Inside a polygon.
    Polygon(Shape),
}

impl WorkShape {
    /// The compiled form of a validated work area; `None` for `Anywhere`.
    pub fn new(area: &WorkArea) -> Option<WorkShape> {
        match area {
            WorkArea::Anywhere => None,
            WorkArea::Circle { lat, lon, radius_m } => Some(WorkShape::Circle {
                centre: Coord::new(*lat, *lon).ok()?,
                radius_m: *radius_m,
            }),
            WorkArea::Polygon(geometry) => Some(WorkShape::Polygon(Shape::new(geometry))),
        }
    }

    /// Whether a job at `at` is inside.
    pub fn contains(&self, at: Coord) -> bool {
        match self {
            WorkShape::Circle { centre, radius_m } => haversine_m(*centre, at) <= *radius_m,
            WorkShape::Polygon(shape) => shape.contains(at),
        }
    }
}

/// Providers' work areas (a provider without one works anywhere).
#[derive(Debug, Default)]
pub struct WorkAreas {
    areas: HashMap<ProviderId, (WorkArea, WorkShape)>,
}

impl WorkAreas {
    /// Sets (or, with `Anywhere`, clears) a provider's work area; whether one was set.
    pub fn set(&mut self, provider: ProviderId, area: WorkArea) -> bool {
        match WorkShape::new(&area) {
            Some(shape) => self.areas.insert(provider, (area, shape)).is_some(),
            None => self.areas.remove(&provider).is_some(),
        }
    }

    /// Whether `provider` works at `at`.
    pub fn allows(&self, provider: ProviderId, at: Coord) -> bool {
        self.areas
            .get(&provider)
            .is_none_or(|(_, shape)| shape.contains(at))
    }

    /// A provider's work area.
    pub fn get(&self, provider: ProviderId) -> WorkArea {
        self.areas
            .get(&provider)
            .map_or(WorkArea::Anywhere, |(area, _)| area.clone())
    }

    /// The work areas of the `limit` lowest provider ids that have one; only
    /// those are cloned.
    pub fn first(&self, limit: usize) -> Vec<(ProviderId, WorkArea)> {
        let mut providers: Vec<ProviderId> = self.areas.keys().copied().collect();
        providers.sort_unstable();
        providers
            .into_iter()
            .take(limit)
            .map(|provider| (provider, self.get(provider)))
            .collect()
    }
}

/// Dispatch candidates in `geo`: the `query.limit` best available providers of
/// the skill within the radius, not excluded, whose work area holds the job's
/// position, ranked by [`crate::geo::rank`].
pub fn candidates(
    geo: &crate::geo::GeoIndex,
    work: &WorkAreas,
    query: &crate::cluster_hooks::CandidateQuery,
) -> Result<Vec<crate::geo::Nearby>, crate::geo::GeoError> {
    geo.nearby(
        query.at,
        &query.skill,
        query.limit as usize,
        query.radius_m,
        &|provider| query.exclude.contains(&provider) || !work.allows(provider, query.at),
    )
}

#[cfg(test)]
mod tests;
