//! Geofences on the wire: GeoJSON polygons ([`Geometry`]), the operator's service
//! areas and zones ([`ServiceArea`], [`Zone`]), a provider's work area
//! ([`WorkArea`]), what a zone adds to a job ([`ZoneCharge`]), zone events and the
//! answers of the area commands.
//!
//! A [`Geometry`] is a GeoJSON (RFC 7946) `Polygon` or `MultiPolygon` in JSON and
//! TOML, and a compact enum in binary frames. Positions are `[longitude, latitude]`
//! in degrees; edges are straight lines in longitude/latitude (as RFC 7946 says),
//! and a point on an edge is inside. Rings may be given closed (first position
//! repeated last, as GeoJSON asks) or open; holes follow the outer ring.

use crate::ids::ProviderId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A position: `[longitude, latitude]` in degrees.
pub type Position = [f64; 2];

/// A ring of positions (closed or not).
pub type Ring = Vec<Position>;

/// Most positions one geometry holds (all rings of all polygons).
pub const GEOMETRY_POSITIONS_MAX: usize = 4_096;

/// Most rings (outer rings and holes) one geometry holds.
pub const GEOMETRY_RINGS_MAX: usize = 256;

/// Most positions in one ring.
pub const RING_POSITIONS_MAX: usize = 1_024;

/// Most rings (the outer one and its holes) of one polygon.
pub const POLYGON_RINGS_MAX: usize = 16;

/// Most polygons of one multipolygon.
pub const POLYGONS_MAX: usize = 16;

/// Longest area name, in bytes.
pub const AREA_NAME_BYTES_MAX: usize = 64;

/// Most service areas and zones a node holds.
pub const AREAS_MAX: usize = 20_000;

/// The smallest and largest zone price multiplier, in percent (100 = no change).
pub const MULTIPLIER_PCT_RANGE: std::ops::RangeInclusive<u32> = 100..=1_000;

/// A GeoJSON polygon or multipolygon.
#[derive(Clone, Debug, PartialEq)]
pub enum Geometry {
    /// One polygon: its outer ring, then its holes.
    Polygon(Vec<Ring>),
    /// Several polygons, each its outer ring then its holes.
    MultiPolygon(Vec<Vec<Ring>>),
}

/// The GeoJSON form (human-readable formats).
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", content = "coordinates", deny_unknown_fields)]
enum GeoJson {
    Polygon(Vec<Ring>),
    MultiPolygon(Vec<Vec<Ring>>),
}

/// The compact form (binary frames).
#[derive(Serialize, Deserialize)]
enum Compact {
    Polygon(Vec<Ring>),
    MultiPolygon(Vec<Vec<Ring>>),
}

impl Serialize for Geometry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let human = serializer.is_human_readable();
        match (self.clone(), human) {
            (Geometry::Polygon(rings), true) => GeoJson::Polygon(rings).serialize(serializer),
            (Geometry::MultiPolygon(polygons), true) => {
                GeoJson::MultiPolygon(polygons).serialize(serializer)
            }
            (Geometry::Polygon(rings), false) => Compact::Polygon(rings).serialize(serializer),
            (Geometry::MultiPolygon(polygons), false) => {
                Compact::MultiPolygon(polygons).serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Geometry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Geometry, D::Error> {
        if deserializer.is_human_readable() {
            Ok(match GeoJson::deserialize(deserializer)? {
                GeoJson::Polygon(rings) => Geometry::Polygon(rings),
                GeoJson::MultiPolygon(polygons) => Geometry::MultiPolygon(polygons),
            })
        } else {
            Ok(match Compact::deserialize(deserializer)? {
                Compact::Polygon(rings) => Geometry::Polygon(rings),
                Compact::MultiPolygon(polygons) => Geometry::MultiPolygon(polygons),
            })
        }
    }
}

impl schemars::JsonSchema for Geometry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Geometry".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        geometry_schema()
    }
}

/// The JSON Schema of a [`Geometry`]: a GeoJSON Polygon or MultiPolygon with the
/// node's bounds (ranges of each position, rings of 3 or more positions).
pub fn geometry_schema() -> schemars::Schema {
    let position = serde_json::json!({
        "type": "array",
        "prefixItems": [
            {"type": "number", "minimum": -180, "maximum": 180},
            {"type": "number", "minimum": -90, "maximum": 90}
        ],
        "items": false,
        "minItems": 2,
        "maxItems": 2
    });
    let ring = serde_json::json!({"type": "array", "items": position, "minItems": 3, "maxItems": RING_POSITIONS_MAX});
    let polygon = serde_json::json!({"type": "array", "items": ring, "minItems": 1, "maxItems": POLYGON_RINGS_MAX});
    let value = serde_json::json!({
        "description": "A GeoJSON Polygon or MultiPolygon: positions [longitude, latitude] in degrees; the outer ring first, then holes; rings closed or open; a point on an edge is inside. At most 4096 positions in all.",
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "type": {"const": "Polygon"},
                    "coordinates": polygon
                },
                "required": ["type", "coordinates"],
                "additionalProperties": false
            },
            {
                "type": "object",
                "properties": {
                    "type": {"const": "MultiPolygon"},
                    "coordinates": {"type": "array", "items": polygon, "minItems": 1, "maxItems": POLYGONS_MAX}
                },
                "required": ["type", "coordinates"],
                "additionalProperties": false
            }
        ]
    });
    schemars::Schema::try_from(value).unwrap_or_default()
}

/// Why a geometry, an area or a work area was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AreaError {
    /// A position is not finite or outside [-180, 180] × [-90, 90].
    #[error("position {0:?} is not [longitude in -180..180, latitude in -90..90]")]
    Position(Position),
    /// A ring has fewer than three positions. (A degenerate ring, all on one line,
    /// is accepted: only the points on its edges are inside it.)
    #[error("a ring needs at least 3 positions")]
    Ring,
    /// A geometry holds no polygon.
    #[error("a geometry needs at least one polygon")]
    Empty,
    /// Too many positions, rings or polygons.
    #[error(
        "a geometry holds at most {GEOMETRY_POSITIONS_MAX} positions in {GEOMETRY_RINGS_MAX} rings, {POLYGONS_MAX} polygons of {POLYGON_RINGS_MAX} rings of {RING_POSITIONS_MAX} positions"
    )]
    TooLarge,
    /// The name is empty, too long or not `a-z 0-9 - _`.
    #[error("an area name is 1 to {AREA_NAME_BYTES_MAX} of a-z, 0-9, '-', '_'")]
    Name,
    /// The multiplier is outside [`MULTIPLIER_PCT_RANGE`].
    #[error("multiplier_pct must be 100 to 1000")]
    Multiplier,
    /// A work area's radius is not a finite number of metres above zero (at most
    /// 1,000 km).
    #[error("a work area's radius_m must be above 0 and at most 1000000")]
    Radius,
}

impl Geometry {
    /// The polygons, each its outer ring then its holes.
    pub fn polygons(&self) -> Vec<&[Ring]> {
        match self {
            Geometry::Polygon(rings) => vec![rings.as_slice()],
            Geometry::MultiPolygon(polygons) => polygons.iter().map(Vec::as_slice).collect(),
        }
    }

    /// Checks positions, ring sizes and the node's bounds.
    pub fn validate(&self) -> Result<(), AreaError> {
        let polygons = self.polygons();
        if polygons.is_empty() || polygons.iter().any(|rings| rings.is_empty()) {
            return Err(AreaError::Empty);
        }
        let over = polygons.len() > POLYGONS_MAX
            || polygons.iter().any(|rings| {
                rings.len() > POLYGON_RINGS_MAX
                    || rings.iter().any(|ring| ring.len() > RING_POSITIONS_MAX)
            });
        if over {
            return Err(AreaError::TooLarge);
        }
        let rings: Vec<&Ring> = polygons.iter().flat_map(|rings| rings.iter()).collect();
        let positions: usize = rings.iter().map(|ring| ring.len()).sum();
        if rings.len() > GEOMETRY_RINGS_MAX || positions > GEOMETRY_POSITIONS_MAX {
            return Err(AreaError::TooLarge);
        }
        for ring in rings {
            for &[lon, lat] in ring {
                if !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
                    return Err(AreaError::Position([lon, lat]));
                }
            }
            if ring.len() < 3 {
                return Err(AreaError::Ring);
            }
        }
        Ok(())
    }
}

/// Checks an area's name: 1 to [`AREA_NAME_BYTES_MAX`] of `a-z 0-9 - _`.
pub fn validate_name(name: &str) -> Result<(), AreaError> {
    let ok = (1..=AREA_NAME_BYTES_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AreaError::Name)
    }
}

/// Where a service is offered: bookings of its skills (of every skill, when it
/// names none) must fall inside one of the areas that apply to the skill.
///
/// Which areas apply to a skill: the areas naming it, if there are any; else the
/// areas naming no skill; with neither, the skill is offered everywhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceArea {
    /// The area's name (its key: putting the same name replaces it).
    pub name: String,
    /// The skills it is for; empty: every skill without areas of its own.
    pub skills: Vec<String>,
    /// Where.
    pub geometry: Geometry,
}

/// An operator zone (an airport queue, a surge zone): providers entering and
/// leaving it are events, and bookings inside it cost `multiplier_pct` percent of
/// their price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// The zone's name (its key).
    pub name: String,
    /// Price multiplier in percent, 100 (none) to 1000.
    pub multiplier_pct: u32,
    /// Where.
    pub geometry: Geometry,
}

impl ServiceArea {
    /// Checks the name, the skills and the geometry.
    pub fn validate(&self) -> Result<(), String> {
        validate_name(&self.name).map_err(|e| e.to_string())?;
        if self.skills.len() > 16 {
            return Err("a service area names at most 16 skills".into());
        }
        for skill in &self.skills {
            crate::ids::Skill::new(skill).map_err(|e| e.to_string())?;
        }
        self.geometry.validate().map_err(|e| e.to_string())
    }
}

impl Zone {
    /// Checks the name, the multiplier and the geometry.
    pub fn validate(&self) -> Result<(), String> {
        validate_name(&self.name).map_err(|e| e.to_string())?;
        if !MULTIPLIER_PCT_RANGE.contains(&self.multiplier_pct) {
            return Err(AreaError::Multiplier.to_string());
        }
        self.geometry.validate().map_err(|e| e.to_string())
    }
}

/// Where a provider works: dispatch never offers them a job outside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkArea {
    /// No limit (the default).
    Anywhere,
    /// Within `radius_m` metres (great-circle) of a point.
    Circle {
        /// Latitude of the centre, degrees.
        lat: f64,
        /// Longitude of the centre, degrees.
        lon: f64,
        /// Radius in metres, above 0, at most 1,000 km.
        radius_m: f64,
    },
    /// Inside a polygon or multipolygon.
    Polygon(Geometry),
}

impl WorkArea {
    /// Checks the centre and radius, or the geometry.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            WorkArea::Anywhere => Ok(()),
            WorkArea::Circle { lat, lon, radius_m } => {
                crate::geo::Coord::new(*lat, *lon).map_err(|e| e.to_string())?;
                if radius_m.is_finite() && *radius_m > 0.0 && *radius_m <= 1_000_000.0 {
                    Ok(())
                } else {
                    Err(AreaError::Radius.to_string())
                }
            }
            WorkArea::Polygon(geometry) => geometry.validate().map_err(|e| e.to_string()),
        }
    }
}

/// What a zone did to a job's price: shown in the job and in a quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ZoneCharge {
    /// The zone the job is in.
    pub zone: String,
    /// Its multiplier, in percent.
    pub multiplier_pct: u32,
    /// The price the customer asked for, before the multiplier.
    pub base_price: i64,
}

/// A price with its zone multiplier applied, rounded up to a minor unit; `None`
/// when it overflows.
pub fn apply_multiplier(price: i64, multiplier_pct: u32) -> Option<i64> {
    let scaled = i128::from(price).checked_mul(i128::from(multiplier_pct))?;
    i64::try_from((scaled + 99).div_euclid(100)).ok()
}

/// A provider entered or left a zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ZoneEvent {
    /// Who.
    pub provider: ProviderId,
    /// Which zone.
    pub zone: String,
    /// True when entering, false when leaving.
    pub entered: bool,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// The service areas and zones of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AreaList {
    /// Service areas, by name.
    pub service_areas: Vec<ServiceArea>,
    /// Zones, by name.
    pub zones: Vec<Zone>,
}

/// A change of areas (or of a work area) applied here and on every other node but
/// those listed, which did not answer (send it again: it is idempotent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AreaChange {
    /// The area or provider changed.
    pub name: String,
    /// Whether it existed before (a replace or a removal).
    pub existed: bool,
    /// Nodes that could not be told (down or unreachable).
    pub nodes_missed: Vec<String>,
}

/// What a booking at a point would cost and whether it is served there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Quote {
    /// Whether the skill is offered at the point.
    pub in_service_area: bool,
    /// The price that would be held, after any zone multiplier.
    pub price: i64,
    /// The zone's charge, if the point is in a zone with a multiplier above 100.
    pub zone: Option<ZoneCharge>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Geometry {
        Geometry::Polygon(vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])
    }

    #[test]
    fn a_geometry_is_geojson_in_json_and_compact_in_frames() {
        let json = serde_json::to_value(square()).unwrap();
        assert_eq!(json["type"], "Polygon");
        assert_eq!(json["coordinates"][0][2][0], 1.0);
        assert_eq!(serde_json::from_value::<Geometry>(json).unwrap(), square());
        let bytes = crate::codec::encode(&square()).unwrap();
        assert_eq!(crate::codec::decode::<Geometry>(&bytes).unwrap(), square());
        let bad = serde_json::json!({"type": "Point", "coordinates": [1.0, 2.0]});
        assert!(serde_json::from_value::<Geometry>(bad).is_err());
    }

    #[test]
    fn bad_geometries_are_refused() {
        assert_eq!(square().validate(), Ok(()));
        let line = Geometry::Polygon(vec![vec![[0.0, 0.0], [1.0, 0.0]]]);
        assert_eq!(line.validate(), Err(AreaError::Ring));
        let far = Geometry::Polygon(vec![vec![[0.0, 0.0], [181.0, 0.0], [1.0, 1.0]]]);
        assert!(matches!(far.validate(), Err(AreaError::Position(_))));
        let nan = Geometry::Polygon(vec![vec![[0.0, 0.0], [f64::NAN, 0.0], [1.0, 1.0]]]);
        assert!(matches!(nan.validate(), Err(AreaError::Position(_))));
        assert_eq!(
            Geometry::MultiPolygon(vec![]).validate(),
            Err(AreaError::Empty)
        );
        assert_eq!(validate_name("Ring Road"), Err(AreaError::Name));
    }

    #[test]
    fn multipliers_round_up_and_refuse_overflow() {
        assert_eq!(apply_multiplier(1_000, 150), Some(1_500));
        assert_eq!(apply_multiplier(3, 150), Some(5));
        assert_eq!(apply_multiplier(i64::MAX, 1_000), None);
    }
}
