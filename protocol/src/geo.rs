//! Points on the Earth and what a nearby search answers: validated coordinates
//! ([`Coord`]), the errors of refused positions, and [`Nearby`] results with the one
//! [`rank`] order every search uses.

use crate::ids::ProviderId;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Why a position, radius or precision was refused.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum GeoError {
    /// The latitude is not a number in [-90, 90].
    #[error("invalid latitude {0}: expected a number of degrees in [-90, 90]")]
    InvalidLatitude(f64),
    /// The longitude is not a number in [-180, 180].
    #[error("invalid longitude {0}: expected a number of degrees in [-180, 180]")]
    InvalidLongitude(f64),
    /// The search radius is not a finite number of metres above zero.
    #[error("invalid radius {0}: expected a finite number of metres above zero")]
    InvalidRadius(f64),
    /// The geohash precision is outside 1..=12.
    #[error("invalid geohash precision {0}: expected 1 to 12 characters")]
    InvalidPrecision(usize),
}

/// A point on the Earth in degrees: latitude in [-90, 90], longitude in [-180, 180).
///
/// Longitude 180 is accepted and stored as -180, the same meridian.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "CoordFields")]
pub struct Coord {
    #[schemars(range(min = -90, max = 90))]
    lat: f64,
    #[schemars(range(min = -180, max = 180))]
    lon: f64,
}

/// The unchecked fields of a [`Coord`] being deserialized.
#[derive(Deserialize, schemars::JsonSchema)]
struct CoordFields {
    #[schemars(range(min = -90, max = 90))]
    lat: f64,
    #[schemars(range(min = -180, max = 180))]
    lon: f64,
}

impl TryFrom<CoordFields> for Coord {
    type Error = GeoError;

    fn try_from(fields: CoordFields) -> Result<Coord, GeoError> {
        Coord::new(fields.lat, fields.lon)
    }
}

impl Coord {
    /// Validates a latitude and a longitude in degrees.
    pub fn new(lat: f64, lon: f64) -> Result<Coord, GeoError> {
        if !(-90.0..=90.0).contains(&lat) {
            return Err(GeoError::InvalidLatitude(lat));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(GeoError::InvalidLongitude(lon));
        }
        Ok(Coord::from_valid_parts(lat, lon))
    }

    /// Wraps degrees already known to be in range (checked in debug builds), folding
    /// longitude 180 onto -180.
    pub fn from_valid_parts(lat: f64, lon: f64) -> Coord {
        debug_assert!((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon));
        let lon = if lon >= 180.0 { -180.0 } else { lon };
        Coord { lat, lon }
    }

    /// Latitude in degrees, north positive.
    pub fn lat(&self) -> f64 {
        self.lat
    }

    /// Longitude in degrees, east positive, in [-180, 180).
    pub fn lon(&self) -> f64 {
        self.lon
    }
}

/// A provider found by a nearby search, with its distance from the search point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Nearby {
    /// The provider.
    pub provider: ProviderId,
    /// Great-circle distance from the search point, in metres (great-circle, on the mean Earth radius).
    pub distance_m: f64,
}

/// The order of search results, best first: nearer first, then lower provider id.
///
/// Every ranking goes through this one function, so a travel-time model can replace it.
pub fn rank(a: &Nearby, b: &Nearby) -> Ordering {
    a.distance_m
        .total_cmp(&b.distance_m)
        .then_with(|| a.provider.cmp(&b.provider))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn decoded_coordinates_are_validated() {
        let decode =
            |lat: f64, lon: f64| codec::decode::<Coord>(&codec::encode(&(lat, lon)).unwrap());
        assert!(decode(f64::NAN, 0.0).is_err());
        assert!(decode(0.0, 200.0).is_err());
        assert_eq!(decode(1.0, 2.0).unwrap(), Coord::new(1.0, 2.0).unwrap());
        assert_eq!(decode(1.0, 180.0).unwrap().lon(), -180.0);
    }
}
