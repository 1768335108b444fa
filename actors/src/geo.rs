//! Finds the nearest available providers of a skill: validated coordinates, great-circle
//! distances, geohash cells, and a cell-and-skill index for k-nearest searches.
//!
//! The index keeps each provider in the geohash cell of its position, once per skill it
//! offers, in a `BTreeMap` keyed by (skill, row, column) of the grid behind geohashes. A
//! search visits the point's cell and its neighbours, then boxes of cells holding every point
//! within a distance `d` that starts at one cell and doubles, nearest cells first, and stops
//! as soon as `k` providers are certainly nearer than everything not yet visited, so a dense
//! city never scans its whole radius. Results are ranked by [`rank`] and their distances are
//! exactly [`haversine_m`], so a brute-force scan gives the same answer.

mod cells;
mod grid;
mod search;
mod skill_list;
#[cfg(test)]
mod tests;

use crate::ids::{ProviderId, Skill};
use cells::{cell_key, CellStore, Member, SkillIndex};
use grid::{Cell, Grid};
use search::Search;
use skill_list::{SkillList, SkillPlace};
use std::collections::HashMap;

pub use fixit_protocol::geo::{rank, Coord, GeoError, Nearby};

/// Mean radius of the Earth in metres (IUGG), used by every distance here.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Shortest geohash a [`GeoIndex`] or [`cell_of`] accepts, in characters.
pub const PRECISION_MIN: usize = 1;

/// Longest geohash a [`GeoIndex`] or [`cell_of`] accepts, in characters.
pub const PRECISION_MAX: usize = 12;

/// A point as a unit vector from the Earth's centre (x towards 0°E, z towards the north pole).
#[derive(Clone, Copy, Debug, PartialEq)]
struct UnitVector([f64; 3]);

impl UnitVector {
    fn new(coord: Coord) -> UnitVector {
        let (sin_lat, cos_lat) = coord.lat().to_radians().sin_cos();
        let (sin_lon, cos_lon) = coord.lon().to_radians().sin_cos();
        UnitVector([cos_lat * cos_lon, cos_lat * sin_lon, sin_lat])
    }

    /// The squared length of the chord from `self` to `other`.
    fn squared_chord(&self, other: &UnitVector) -> f64 {
        let [x, y, z] = self.0;
        let [other_x, other_y, other_z] = other.0;
        let (dx, dy, dz) = (x - other_x, y - other_y, z - other_z);
        dx * dx + dy * dy + dz * dz
    }
}

/// Great-circle distance in metres along a chord of squared length `squared_chord`.
///
/// A quarter of the squared chord is the haversine of the central angle `θ`, so
/// `θ = 2 asin(chord / 2)`.
fn distance_of_squared_chord(squared_chord: f64) -> f64 {
    2.0 * EARTH_RADIUS_M * (squared_chord.sqrt() * 0.5).min(1.0).asin()
}

/// Great-circle distance in metres between `a` and `b` on a sphere of [`EARTH_RADIUS_M`].
///
/// This is the haversine formula, with the haversine of the central angle taken as a quarter
/// of the squared chord between the points' unit vectors: accurate to nanometres at city
/// scale (like any haversine, less so for nearly antipodal points), and cheap to compare.
/// [`GeoIndex::nearby`] reports exactly this value, bit for bit, for `haversine_m(at, provider)`.
pub fn haversine_m(a: Coord, b: Coord) -> f64 {
    distance_of_squared_chord(UnitVector::new(a).squared_chord(&UnitVector::new(b)))
}

/// The geohash of `precision` characters (1 to 12) of the cell holding `coord`.
///
/// This is `geohash::encode`, except that the north pole falls in the northernmost cells
/// (where `geohash` would wrap it to the southernmost) and longitude 180 in the cells of -180.
pub fn cell_of(coord: Coord, precision: usize) -> Result<String, GeoError> {
    let grid = Grid::new(valid_precision(precision)?);
    encode_cell(&grid, grid.cell(coord))
}

/// The geohash of one cell of `grid`, encoded from the cell's centre.
fn encode_cell(grid: &Grid, cell: Cell) -> Result<String, GeoError> {
    let centre = grid.centre(cell);
    let point = geohash::Coord {
        x: centre.lon(),
        y: centre.lat(),
    };
    // The centre is in range and the precision in 1..=12, so `encode` cannot refuse them.
    geohash::encode(point, grid.precision())
        .map_err(|_| GeoError::InvalidPrecision(grid.precision()))
}

/// `precision` if it is in `PRECISION_MIN..=PRECISION_MAX`.
fn valid_precision(precision: usize) -> Result<usize, GeoError> {
    if (PRECISION_MIN..=PRECISION_MAX).contains(&precision) {
        Ok(precision)
    } else {
        Err(GeoError::InvalidPrecision(precision))
    }
}

/// What the index knows of one provider.
#[derive(Clone, Debug)]
struct Entry {
    coord: Coord,
    cell: Cell,
    /// Interned skills, distinct, in the order they were given.
    skills: SkillList,
}

/// Available providers indexed by geohash cell and skill, for k-nearest searches.
///
/// Each provider sits in the cell of its position once per skill it offers; cells are kept in
/// a `BTreeMap` keyed by (skill, row, column), so the cells of one row of one skill form one
/// ordered range, and each cell stores its providers' positions so a search reads them in
/// place.
#[derive(Clone, Debug)]
pub struct GeoIndex {
    grid: Grid,
    cells: CellStore,
    entries: HashMap<ProviderId, Entry>,
    skill_indices: HashMap<Skill, SkillIndex>,
    skill_names: Vec<Skill>,
}

impl GeoIndex {
    /// An empty index over geohash cells of `precision` characters (1 to 12; 6 or 7 suits
    /// city-scale searches).
    pub fn new(precision: usize) -> Result<GeoIndex, GeoError> {
        Ok(GeoIndex {
            grid: Grid::new(valid_precision(precision)?),
            cells: CellStore::default(),
            entries: HashMap::new(),
            skill_indices: HashMap::new(),
            skill_names: Vec::new(),
        })
    }

    /// Geohash characters of the index's cells.
    pub fn precision(&self) -> usize {
        self.grid.precision()
    }

    /// Number of providers in the index.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index holds no provider.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `provider` is in the index.
    pub fn contains(&self, provider: ProviderId) -> bool {
        self.entries.contains_key(&provider)
    }

    /// Where `provider` was last placed, if it is in the index.
    pub fn position(&self, provider: ProviderId) -> Option<Coord> {
        self.entries.get(&provider).map(|entry| entry.coord)
    }

    /// Places `provider` at `at` offering exactly `skills` (repeats ignored), adding it if it
    /// is new.
    ///
    /// The common update, same skills in the same order, interns nothing and, within the same
    /// cell, only rewrites the stored position: it allocates nothing.
    pub fn upsert(&mut self, provider: ProviderId, at: Coord, skills: &[Skill]) {
        let cell = self.grid.cell(at);
        let member = Member {
            provider,
            position: UnitVector::new(at),
        };
        if let Some(entry) = self.entries.get_mut(&provider) {
            if offers_exactly(&entry.skills, skills, &self.skill_names) {
                relocate(&mut self.cells, entry, cell, member);
                entry.coord = at;
                return;
            }
        }
        self.remove(provider);
        let mut places = SkillList::new();
        for skill in skills {
            let skill = self.intern(skill);
            if !places.contains(skill) {
                let hint = self.cells.attach(cell_key(skill, cell), member);
                places.push(SkillPlace { skill, hint });
            }
        }
        let entry = Entry {
            coord: at,
            cell,
            skills: places,
        };
        self.entries.insert(provider, entry);
    }

    /// Takes `provider` out of the index; false if it was not there.
    pub fn remove(&mut self, provider: ProviderId) -> bool {
        let Some(entry) = self.entries.remove(&provider) else {
            return false;
        };
        for place in entry.skills.as_slice() {
            self.cells
                .detach(cell_key(place.skill, entry.cell), provider, place.hint);
        }
        true
    }

    /// The `k` best providers of `skill` within `radius_m` metres (inclusive) of `at`, best
    /// first by [`rank`], leaving out every provider for which `exclude` returns true.
    ///
    /// Distances are [`haversine_m`]`(at, provider)`. Fails if `radius_m` is not a finite
    /// number above zero.
    pub fn nearby(
        &self,
        at: Coord,
        skill: &Skill,
        k: usize,
        radius_m: f64,
        exclude: &dyn Fn(ProviderId) -> bool,
    ) -> Result<Vec<Nearby>, GeoError> {
        if !(radius_m.is_finite() && radius_m > 0.0) {
            return Err(GeoError::InvalidRadius(radius_m));
        }
        let Some(&skill) = self.skill_indices.get(skill) else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let search = Search {
            grid: &self.grid,
            cells: &self.cells,
            skill,
            at,
            position: UnitVector::new(at),
            radius_m,
            exclude,
        };
        Ok(search.run(k))
    }

    /// The index of `skill`, interning it if it is new.
    fn intern(&mut self, skill: &Skill) -> SkillIndex {
        if let Some(&index) = self.skill_indices.get(skill) {
            return index;
        }
        // Four billion distinct skill names cannot fit in memory first.
        let index = SkillIndex::try_from(self.skill_names.len()).unwrap_or(SkillIndex::MAX);
        self.skill_indices.insert(skill.clone(), index);
        self.skill_names.push(skill.clone());
        index
    }
}

/// Whether `places` are exactly `skills`, in the same order, without interning anything.
fn offers_exactly(places: &SkillList, skills: &[Skill], names: &[Skill]) -> bool {
    let places = places.as_slice();
    places.len() == skills.len()
        && places
            .iter()
            .zip(skills)
            .all(|(place, skill)| names.get(place.skill as usize) == Some(skill))
}

/// Moves the provider of `entry`, keeping its skills, to `member`'s position in `cell`.
fn relocate(cells: &mut CellStore, entry: &mut Entry, cell: Cell, member: Member) {
    let same_cell = entry.cell == cell;
    for place in entry.skills.as_mut_slice() {
        place.hint = if same_cell {
            cells.refresh(cell_key(place.skill, cell), member, place.hint)
        } else {
            cells.detach(
                cell_key(place.skill, entry.cell),
                member.provider,
                place.hint,
            );
            cells.attach(cell_key(place.skill, cell), member)
        };
    }
    entry.cell = cell;
}
