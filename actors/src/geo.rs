//! Finds the nearest available providers of a skill: validated coordinates, great-circle
//! distances, geohash cells, and a cell-and-skill index for k-nearest searches.
//!
//! The index keeps each provider in the geohash cell of its position, once per skill it
//! offers. A search grows a distance `d` from about one cell until `k` providers lie within
//! `d` (nothing outside the cells it visited can then beat them) or `d` reaches the radius.

mod grid;
#[cfg(test)]
mod tests;

use crate::ids::{ProviderId, Skill};
use grid::{Cell, Grid, SearchBox};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// Mean radius of the Earth in metres (IUGG), used by every distance here.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Shortest geohash a [`GeoIndex`] or [`cell_of`] accepts, in characters.
pub const PRECISION_MIN: usize = 1;

/// Longest geohash a [`GeoIndex`] or [`cell_of`] accepts, in characters.
pub const PRECISION_MAX: usize = 12;

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
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CoordFields")]
pub struct Coord {
    lat: f64,
    lon: f64,
}

/// The unchecked fields of a [`Coord`] being deserialized.
#[derive(Deserialize)]
struct CoordFields {
    lat: f64,
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

    /// Wraps degrees already known to be in range, folding longitude 180 onto -180.
    fn from_valid_parts(lat: f64, lon: f64) -> Coord {
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

/// A coordinate in radians with its latitude's cosine, ready for the haversine formula.
#[derive(Clone, Copy, Debug)]
struct SpherePoint {
    lat_rad: f64,
    lon_rad: f64,
    cos_lat: f64,
}

impl SpherePoint {
    fn new(coord: Coord) -> SpherePoint {
        let lat_rad = coord.lat.to_radians();
        SpherePoint {
            lat_rad,
            lon_rad: coord.lon.to_radians(),
            cos_lat: lat_rad.cos(),
        }
    }

    /// Great-circle distance in metres to `other`, by the haversine formula.
    fn distance_m(&self, other: &SpherePoint) -> f64 {
        let lat_sine = ((other.lat_rad - self.lat_rad) * 0.5).sin();
        let lon_sine = ((other.lon_rad - self.lon_rad) * 0.5).sin();
        let haversine = lat_sine * lat_sine + self.cos_lat * other.cos_lat * lon_sine * lon_sine;
        2.0 * EARTH_RADIUS_M * haversine.sqrt().min(1.0).asin()
    }
}

/// Great-circle distance in metres between `a` and `b` on a sphere of [`EARTH_RADIUS_M`].
///
/// [`GeoIndex::nearby`] reports exactly this value, bit for bit, for `haversine_m(at, provider)`.
pub fn haversine_m(a: Coord, b: Coord) -> f64 {
    SpherePoint::new(a).distance_m(&SpherePoint::new(b))
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

/// A provider found by [`GeoIndex::nearby`], with its distance from the search point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nearby {
    /// The provider.
    pub provider: ProviderId,
    /// Great-circle distance from the search point, in metres ([`haversine_m`]).
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

/// Index of an interned skill name.
type SkillIndex = u32;

/// Key of one cell's providers of one skill: (skill, row, column).
type CellKey = (SkillIndex, u32, u32);

/// Providers of one skill in one cell, keyed by skill, then row, then column.
type CellMap = BTreeMap<CellKey, Vec<Member>>;

/// A provider as stored in a cell: its position is kept there so a search reads it in place.
#[derive(Clone, Copy, Debug)]
struct Member {
    provider: ProviderId,
    point: SpherePoint,
}

/// What the index knows of one provider.
#[derive(Clone, Debug)]
struct Entry {
    coord: Coord,
    cell: Cell,
    /// Interned skills, sorted and without repeats.
    skills: Vec<SkillIndex>,
}

/// Available providers indexed by geohash cell and skill, for k-nearest searches.
#[derive(Clone, Debug)]
pub struct GeoIndex {
    grid: Grid,
    cells: CellMap,
    entries: HashMap<ProviderId, Entry>,
    skill_indices: HashMap<Skill, SkillIndex>,
    /// Reused by [`GeoIndex::upsert`] so that an update does not allocate.
    skill_scratch: Vec<SkillIndex>,
}

impl GeoIndex {
    /// An empty index over geohash cells of `precision` characters (1 to 12; 6 or 7 suits
    /// city-scale searches).
    pub fn new(precision: usize) -> Result<GeoIndex, GeoError> {
        Ok(GeoIndex {
            grid: Grid::new(valid_precision(precision)?),
            cells: CellMap::new(),
            entries: HashMap::new(),
            skill_indices: HashMap::new(),
            skill_scratch: Vec::new(),
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

    /// Places `provider` at `at` offering exactly `skills`, adding it if it is new.
    ///
    /// A move within the same cell with the same skills only rewrites the stored position.
    pub fn upsert(&mut self, provider: ProviderId, at: Coord, skills: &[Skill]) {
        let mut wanted = std::mem::take(&mut self.skill_scratch);
        wanted.clear();
        wanted.extend(skills.iter().map(|skill| self.intern(skill)));
        wanted.sort_unstable();
        wanted.dedup();
        let cell = self.grid.cell(at);
        let member = Member {
            provider,
            point: SpherePoint::new(at),
        };
        match self.entries.get_mut(&provider) {
            Some(entry) if entry.cell == cell && entry.skills == wanted => {
                entry.coord = at;
                refresh_members(&mut self.cells, member, cell, &entry.skills);
            }
            Some(entry) => {
                detach_members(&mut self.cells, provider, entry.cell, &entry.skills);
                attach_members(&mut self.cells, member, cell, &wanted);
                entry.coord = at;
                entry.cell = cell;
                entry.skills.clone_from(&wanted);
            }
            None => {
                attach_members(&mut self.cells, member, cell, &wanted);
                let skills = wanted.clone();
                self.entries.insert(
                    provider,
                    Entry {
                        coord: at,
                        cell,
                        skills,
                    },
                );
            }
        }
        self.skill_scratch = wanted;
    }

    /// Takes `provider` out of the index; false if it was not there.
    pub fn remove(&mut self, provider: ProviderId) -> bool {
        match self.entries.remove(&provider) {
            Some(entry) => {
                detach_members(&mut self.cells, provider, entry.cell, &entry.skills);
                true
            }
            None => false,
        }
    }

    /// The `k` best providers of `skill` within `radius_m` metres (inclusive) of `at`, best
    /// first by [`rank`], leaving out every provider for which `exclude` returns true.
    ///
    /// Fails if `radius_m` is not a finite number above zero.
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
        let Some(&skill_index) = self.skill_indices.get(skill) else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let search = Search {
            index: self,
            skill: skill_index,
            at,
            point: SpherePoint::new(at),
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
        let index = SkillIndex::try_from(self.skill_indices.len()).unwrap_or(SkillIndex::MAX);
        self.skill_indices.insert(skill.clone(), index);
        index
    }
}

/// The key of `cell`'s providers of `skill`.
fn cell_key(skill: SkillIndex, cell: Cell) -> CellKey {
    (skill, cell.row, cell.col)
}

/// Adds `member` to `cell` under each of `skills`.
fn attach_members(cells: &mut CellMap, member: Member, cell: Cell, skills: &[SkillIndex]) {
    for &skill in skills {
        cells.entry(cell_key(skill, cell)).or_default().push(member);
    }
}

/// Takes `provider` out of `cell` under each of `skills`, dropping cells left empty.
fn detach_members(cells: &mut CellMap, provider: ProviderId, cell: Cell, skills: &[SkillIndex]) {
    for &skill in skills {
        let key = cell_key(skill, cell);
        let Some(members) = cells.get_mut(&key) else {
            continue;
        };
        if let Some(slot) = members
            .iter()
            .position(|member| member.provider == provider)
        {
            members.swap_remove(slot);
        }
        if members.is_empty() {
            cells.remove(&key);
        }
    }
}

/// Rewrites the stored position of `member`, which stays in `cell` under each of `skills`.
fn refresh_members(cells: &mut CellMap, member: Member, cell: Cell, skills: &[SkillIndex]) {
    for &skill in skills {
        let Some(members) = cells.get_mut(&cell_key(skill, cell)) else {
            continue;
        };
        if let Some(stored) = members
            .iter_mut()
            .find(|stored| stored.provider == member.provider)
        {
            stored.point = member.point;
        }
    }
}

/// One k-nearest search of one skill around one point.
struct Search<'a> {
    index: &'a GeoIndex,
    skill: SkillIndex,
    at: Coord,
    point: SpherePoint,
    radius_m: f64,
    exclude: &'a dyn Fn(ProviderId) -> bool,
}

impl Search<'_> {
    /// The `k` (at least one) best providers: searches ever wider boxes of cells, each holding
    /// every point within twice the previous distance, until `k` found providers lie within
    /// the current distance or the distance reaches the radius.
    fn run(&self, k: usize) -> Vec<Nearby> {
        let grid = &self.index.grid;
        let mut found = Vec::new();
        let mut visited: Option<SearchBox> = None;
        let mut distance_m = grid.cell_height_m().min(self.radius_m);
        loop {
            let search_box = grid.search_box(self.at, distance_m);
            self.collect(&search_box, visited.as_ref(), &mut found);
            let finished = distance_m >= self.radius_m || search_box.covers_everything(grid);
            let limit_m = if finished { self.radius_m } else { distance_m };
            if finished || count_within(&found, limit_m) >= k {
                return best(found, limit_m, k);
            }
            visited = Some(search_box);
            distance_m = (distance_m * 2.0).min(self.radius_m);
        }
    }

    /// Adds to `found` the wanted providers within the radius from the cells of `search_box`
    /// that are not in `visited`.
    fn collect(
        &self,
        search_box: &SearchBox,
        visited: Option<&SearchBox>,
        found: &mut Vec<Nearby>,
    ) {
        let grid = &self.index.grid;
        let is_new = |cell: Cell| visited.is_none_or(|old| !old.contains(cell, grid));
        self.for_each_cell(search_box, |cell, members| {
            if is_new(cell) {
                self.collect_members(members, found);
            }
        });
    }

    /// Adds to `found` the wanted providers of `members` within the radius.
    fn collect_members(&self, members: &[Member], found: &mut Vec<Nearby>) {
        for member in members {
            let distance_m = self.point.distance_m(&member.point);
            if distance_m <= self.radius_m && !(self.exclude)(member.provider) {
                found.push(Nearby {
                    provider: member.provider,
                    distance_m,
                });
            }
        }
    }

    /// Calls `visit` on every non-empty cell of the searched skill in `search_box`.
    ///
    /// Walks the cell map in key order and, on reaching a cell outside the box's columns, seeks
    /// straight to the next column run, so the cost follows the occupied cells and not the
    /// number of rows or columns in the box.
    fn for_each_cell(&self, search_box: &SearchBox, mut visit: impl FnMut(Cell, &[Member])) {
        let grid = &self.index.grid;
        let runs = search_box.column_runs(grid);
        let end: CellKey = (self.skill, search_box.row_last, runs.last_col());
        let mut start: CellKey = (self.skill, search_box.row_first, runs.first_col());
        'seek: while start <= end {
            for (&(_, row, col), members) in self.index.cells.range(start..=end) {
                let cell = Cell { row, col };
                match next_wanted_cell(cell, runs.as_slice(), runs.first_col()) {
                    None => visit(cell, members),
                    Some(next) if next.row > search_box.row_last => break 'seek,
                    Some(next) => {
                        start = cell_key(self.skill, next);
                        continue 'seek;
                    }
                }
            }
            break;
        }
    }
}

/// `None` if `cell` lies in one of `runs`, else the first cell after it that does.
fn next_wanted_cell(cell: Cell, runs: &[grid::ColumnRun], first_col: u32) -> Option<Cell> {
    for run in runs {
        if cell.col < run.first {
            return Some(Cell {
                row: cell.row,
                col: run.first,
            });
        }
        if cell.col <= run.last {
            return None;
        }
    }
    Some(Cell {
        row: cell.row.saturating_add(1),
        col: first_col,
    })
}

/// How many of `found` lie within `limit_m` metres.
fn count_within(found: &[Nearby], limit_m: f64) -> usize {
    found
        .iter()
        .filter(|nearby| nearby.distance_m <= limit_m)
        .count()
}

/// The `k` (at least one) best of `found` within `limit_m` metres, best first.
fn best(mut found: Vec<Nearby>, limit_m: f64, k: usize) -> Vec<Nearby> {
    found.retain(|nearby| nearby.distance_m <= limit_m);
    if found.len() > k {
        found.select_nth_unstable_by(k - 1, rank);
        found.truncate(k);
    }
    found.sort_unstable_by(rank);
    found
}
