//! Placement rules, pure: which node owns a location (longest matching geohash
//! prefix of the configured regions) and which node is a wallet's home
//! (rendezvous hashing over the configured nodes).

use crate::names::is_valid_node_name;
use fixit_actors::geo::{cell_of, Coord, GeoError, PRECISION_MAX};
use std::collections::BTreeMap;

/// The geohash alphabet (base32 without `a`, `i`, `l`, `o`).
pub const GEOHASH_ALPHABET: &str = "0123456789bcdefghjkmnpqrstuvwxyz";

/// Longest region prefix, in characters: a full-precision geohash.
pub const PREFIX_CHARS_MAX: usize = PRECISION_MAX;

/// Why a region map or a position was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlacementError {
    /// A region prefix is not 1–12 geohash characters.
    #[error("invalid region prefix {0:?}: expected 1 to 12 geohash characters")]
    InvalidPrefix(String),
    /// A region names an invalid node.
    #[error("invalid node name {0:?} in the region map")]
    InvalidNodeName(String),
    /// The position is not a valid coordinate.
    #[error(transparent)]
    Geo(#[from] GeoError),
}

/// Whether `text` is 1–12 characters of the geohash alphabet.
pub fn is_geohash(text: &str) -> bool {
    (1..=PREFIX_CHARS_MAX).contains(&text.len())
        && text
            .bytes()
            .all(|b| GEOHASH_ALPHABET.as_bytes().contains(&b))
}

/// The region map: geohash prefix → owning node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Regions {
    owners: BTreeMap<String, String>,
    nodes: Vec<String>,
}

impl Regions {
    /// Validates a map of geohash prefix → node name.
    pub fn new(owners: BTreeMap<String, String>) -> Result<Regions, PlacementError> {
        if let Some(prefix) = owners.keys().find(|prefix| !is_geohash(prefix)) {
            return Err(PlacementError::InvalidPrefix(prefix.clone()));
        }
        if let Some(node) = owners.values().find(|node| !is_valid_node_name(node)) {
            return Err(PlacementError::InvalidNodeName(node.clone()));
        }
        let mut nodes: Vec<String> = owners.values().cloned().collect();
        nodes.sort();
        nodes.dedup();
        Ok(Regions { owners, nodes })
    }

    /// The nodes owning at least one region, sorted, each once.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The owner of the longest configured prefix of `geohash`; `None` when no
    /// prefix matches or `geohash` is not a geohash.
    pub fn owner_of_cell(&self, geohash: &str) -> Option<&str> {
        if !is_geohash(geohash) {
            return None;
        }
        // At most 12 lookups; a geohash is ASCII, so every length is a char boundary.
        (1..=geohash.len())
            .rev()
            .find_map(|len| self.owners.get(&geohash[..len]))
            .map(String::as_str)
    }

    /// Every node owning a region that may hold points within `radius_m` metres of
    /// a position, sorted, each once. Conservative: a region whose bounding box
    /// meets the search circle's latitude/longitude box is included (a node asked
    /// in vain costs one call; a node left out would lose results). Invalid degrees
    /// or a radius that is not finite and positive are errors.
    pub fn owners_near(
        &self,
        lat: f64,
        lon: f64,
        radius_m: f64,
    ) -> Result<Vec<&str>, PlacementError> {
        let at = Coord::new(lat, lon)?;
        if !(radius_m.is_finite() && radius_m > 0.0) {
            return Err(PlacementError::Geo(GeoError::InvalidRadius(radius_m)));
        }
        let reach = SearchBox::around(at.lat(), at.lon(), radius_m);
        let mut owners: Vec<&str> = self
            .owners
            .iter()
            .filter(|(prefix, _)| {
                geohash::decode_bbox(prefix).is_ok_and(|rect| {
                    let (min, max) = (rect.min(), rect.max());
                    reach.meets(min.y, max.y, min.x, max.x)
                })
            })
            .map(|(_, node)| node.as_str())
            .collect();
        owners.sort_unstable();
        owners.dedup();
        Ok(owners)
    }

    /// The owner of the cell holding a position; invalid degrees are an error.
    pub fn owner_of(&self, lat: f64, lon: f64) -> Result<Option<&str>, PlacementError> {
        let cell = cell_of(Coord::new(lat, lon)?, PRECISION_MAX)?;
        Ok(self.owner_of_cell(&cell))
    }
}

/// Mean Earth radius in metres (as the geo index's haversine uses).
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// The latitude/longitude box around a search circle (longitudes may pass ±180).
struct SearchBox {
    lat_min: f64,
    lat_max: f64,
    /// `None` when the circle reaches a pole: every longitude.
    lon_range: Option<(f64, f64)>,
}

impl SearchBox {
    fn around(lat: f64, lon: f64, radius_m: f64) -> SearchBox {
        // A little slack so rounding never drops a region that touches the circle.
        let dlat = (radius_m / EARTH_RADIUS_M).to_degrees() * 1.01 + 1e-9;
        let (lat_min, lat_max) = (lat - dlat, lat + dlat);
        let widest = lat_min.abs().max(lat_max.abs());
        let lon_range = (widest < 89.0).then(|| {
            let dlon = dlat / widest.to_radians().cos();
            (lon - dlon, lon + dlon)
        });
        let lon_range = lon_range.filter(|(low, high)| high - low < 360.0);
        SearchBox {
            lat_min,
            lat_max,
            lon_range,
        }
    }

    /// Whether the box meets the cell `[south, north] x [west, east]`.
    fn meets(&self, south: f64, north: f64, west: f64, east: f64) -> bool {
        if self.lat_max < south || self.lat_min > north {
            return false;
        }
        let Some((low, high)) = self.lon_range else {
            return true;
        };
        [-360.0, 0.0, 360.0]
            .iter()
            .any(|shift| low <= east + shift && high >= west + shift)
    }
}

/// A node's number in the cluster: 16 stable bits of its name, never 0. Job ids
/// carry it, so any node can tell which node holds a job. Two configured names with
/// the same number are refused at start (rename one).
pub fn node_number(name: &str) -> u16 {
    match rendezvous_weight(name, u64::MAX) as u16 {
        0 => 1,
        number => number,
    }
}

/// The home node of a wallet by rendezvous (highest-random-weight) hashing: the
/// node with the highest [`rendezvous_weight`]; ties go to the smaller name.
/// `None` only when `nodes` is empty. Adding a node moves only the wallets that
/// the new node now wins (about 1/n of them).
pub fn home_of_wallet(wallet_id: u64, nodes: &[String]) -> Option<&str> {
    nodes
        .iter()
        .map(|node| (rendezvous_weight(node, wallet_id), node))
        .max_by(|(weight_a, node_a), (weight_b, node_b)| {
            weight_a.cmp(weight_b).then_with(|| node_b.cmp(node_a))
        })
        .map(|(_, node)| node.as_str())
}

/// A stable 64-bit weight of (node, wallet): FNV-1a 64 of `node || wallet_id_be`,
/// then the MurmurHash3 finalizer for avalanche. Fixed constants: the same in
/// every process and Rust version.
pub fn rendezvous_weight(node: &str, wallet_id: u64) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = node.bytes().chain(wallet_id.to_be_bytes());
    let hash = bytes.fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    });
    finalize(hash)
}

/// MurmurHash3's 64-bit finalizer.
fn finalize(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
