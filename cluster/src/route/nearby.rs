//! One node's leg of a nearby search: its own index only.

use fixit_actors::geo::Nearby;
use fixit_actors::Node;
use fixit_protocol::api::{ApiError, NearbyQuery};

/// A nearby search in this node's index only.
pub fn nearby_here(node: &Node, query: &NearbyQuery) -> Result<Vec<Nearby>, ApiError> {
    let NearbyQuery {
        skill,
        lat,
        lon,
        radius_m,
        limit,
    } = query;
    Ok(node.nearby(skill, *lat, *lon, *radius_m, *limit as usize)?)
}
