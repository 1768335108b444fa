//! One k-nearest search: boxes of cells growing around the search point until the `k` best
//! providers are certain.
//!
//! Distances are compared as squared chords between unit vectors, which order points exactly
//! as [`haversine_m`](super::haversine_m) does; the arc length (an `asin`) is computed only for
//! the few candidates that can be in the answer.

use super::cells::{cell_key, CellStore, Member, SkillIndex};
use super::grid::{Cell, CellDistances, ColumnRun, Grid, SearchBox};
use super::{
    distance_of_squared_chord, rank, Coord, Nearby, ProviderId, UnitVector, EARTH_RADIUS_M,
};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Relative slack on squared chords: far above their rounding error (about 1e-15), far below
/// any distance that matters.
const CHORD_SLACK: f64 = 1e-9;

/// Neighbours room is made for up front; a larger `k` (which comes from clients) grows the
/// room only as candidates are actually found.
const RESERVED_NEIGHBOURS: usize = 64;

/// Room made up front for the new cells of a step: a few rings of neighbours.
const CELLS_CAPACITY: usize = 32;

/// Nearest cells of a step whose memory is fetched together, so that their cache misses
/// overlap.
const CELLS_WARMED: usize = 4;

/// A provider found in a visited cell, with its squared chord from the search point.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    squared_chord: f64,
    provider: ProviderId,
}

/// Squared chords that are certainly within, or possibly within, a distance.
#[derive(Clone, Copy, Debug)]
struct ChordBounds {
    /// A squared chord at most this is certainly within the distance.
    surely_within: f64,
    /// A squared chord above this is certainly beyond the distance.
    maybe_within: f64,
}

impl ChordBounds {
    fn of(distance_m: f64) -> ChordBounds {
        // Close to half the circumference a chord barely changes with distance: there, take
        // every point as possibly within, and a slightly shorter distance as surely within.
        let nearly_antipodal_m = std::f64::consts::PI * EARTH_RADIUS_M * (1.0 - 1e-6);
        let chord = 2.0 * (distance_m.min(nearly_antipodal_m) / (2.0 * EARTH_RADIUS_M)).sin();
        let squared_chord = chord * chord;
        let maybe_within = if distance_m >= nearly_antipodal_m {
            f64::INFINITY
        } else {
            squared_chord * (1.0 + CHORD_SLACK)
        };
        ChordBounds {
            surely_within: squared_chord * (1.0 - CHORD_SLACK),
            maybe_within,
        }
    }
}

/// One k-nearest search of one skill around one point.
pub(super) struct Search<'a> {
    pub(super) grid: &'a Grid,
    pub(super) cells: &'a CellStore,
    pub(super) skill: SkillIndex,
    pub(super) at: Coord,
    pub(super) position: UnitVector,
    pub(super) radius_m: f64,
    pub(super) exclude: &'a dyn Fn(ProviderId) -> bool,
}

impl<'a> Search<'a> {
    /// The `k` (at least one) best providers.
    ///
    /// Visits ever larger boxes of cells: first the search point's cell and its neighbours,
    /// then boxes holding every point within a distance `d` of one cell height, doubling at
    /// each step. Within a box, cells are visited nearest first. It stops as soon as `k` found
    /// providers are nearer than every cell not yet visited and every point outside the box
    /// (they are then certainly the `k` nearest), or once the box holds the whole radius.
    pub(super) fn run(&self, k: usize) -> Vec<Nearby> {
        let within_radius = ChordBounds::of(self.radius_m).maybe_within;
        let cell_distances = CellDistances::new(self.grid, self.at);
        let mut nearest = Nearest::new(k);
        let mut visited: Option<SearchBox> = None;
        let mut distance_m = 0.0;
        loop {
            let search_box = self.grid.search_box(self.at, distance_m);
            let outside = cell_distances.outside_bound(&search_box);
            if visited != Some(search_box) {
                let step = Step {
                    search_box: &search_box,
                    visited: visited.as_ref(),
                    within_radius,
                    outside,
                    cell_distances: &cell_distances,
                };
                if self.collect(&step, &mut nearest) == Collected::Enough {
                    return nearest.best(self.radius_m);
                }
            }
            if outside >= within_radius || nearest.certainly_before(outside) {
                return nearest.best(self.radius_m);
            }
            visited = Some(search_box);
            distance_m = next_distance_m(distance_m, self.grid.cell_height_m(), self.radius_m);
        }
    }

    /// Offers to `nearest` the wanted providers of the cells of the step's box not visited
    /// before, nearest cells first, and stops early once the `k` best are certain.
    fn collect(&self, step: &Step<'_>, nearest: &mut Nearest) -> Collected {
        let mut cells: Vec<(f64, &'a [Member])> = Vec::with_capacity(CELLS_CAPACITY);
        self.for_each_cell(step.search_box, |cell, members| {
            if step.is_new(cell, self.grid) {
                cells.push((step.cell_distances.lower_bound(cell), members));
            }
        });
        cells.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        warm_up(cells.iter().take(CELLS_WARMED).map(|&(_, members)| members));
        for &(lower_bound, members) in &cells {
            // Every provider left is in this cell or a farther one, or outside the box.
            if nearest.certainly_before(lower_bound.min(step.outside)) {
                return Collected::Enough;
            }
            self.collect_cell(members, step.within_radius, nearest);
        }
        Collected::All
    }

    /// Offers to `nearest` the providers of `members` not excluded, with a squared chord up to
    /// `within_radius`.
    fn collect_cell(&self, members: &[Member], within_radius: f64, nearest: &mut Nearest) {
        for member in members {
            let squared_chord = self.position.squared_chord(&member.position);
            let wanted = squared_chord <= within_radius && nearest.wants(squared_chord);
            if wanted && !(self.exclude)(member.provider) {
                nearest.offer(Candidate {
                    squared_chord,
                    provider: member.provider,
                });
            }
        }
    }

    /// Calls `visit` on every non-empty cell of the searched skill in `search_box`.
    ///
    /// Walks the cells in key order, row by row, and on meeting a cell outside the box's
    /// columns seeks straight to the next wanted cell, so the cost follows the occupied cells
    /// of the box, not its number of rows or columns.
    fn for_each_cell(&self, search_box: &SearchBox, mut visit: impl FnMut(Cell, &'a [Member])) {
        let runs = search_box.column_runs(self.grid);
        let last = Cell {
            row: search_box.row_last,
            col: runs.last_col(),
        };
        let end = cell_key(self.skill, last);
        let mut start = cell_key(
            self.skill,
            Cell {
                row: search_box.row_first,
                col: runs.first_col(),
            },
        );
        'seek: loop {
            for (key, members) in self.cells.cells_from(start) {
                if key > end {
                    break 'seek;
                }
                let cell = Cell {
                    row: key.1,
                    col: key.2,
                };
                match next_wanted_cell(cell, runs.as_slice(), runs.first_col()) {
                    None => visit(cell, members),
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

/// Reads one word of every cache line of `cells`, without waiting on each, so that their
/// cache misses overlap instead of being paid one after the other.
fn warm_up<'m>(cells: impl Iterator<Item = &'m [Member]>) {
    let mut seen = 0u64;
    for members in cells {
        for member in members.iter().step_by(2) {
            seen ^= member.provider.0;
        }
    }
    std::hint::black_box(seen);
}

/// What one step of a search is working on.
struct Step<'s> {
    search_box: &'s SearchBox,
    visited: Option<&'s SearchBox>,
    /// Squared chords beyond this are beyond the radius.
    within_radius: f64,
    /// Every point outside the box has a larger squared chord than this.
    outside: f64,
    cell_distances: &'s CellDistances,
}

impl Step<'_> {
    /// Whether `cell` is in this step's box but was not in the previous one.
    fn is_new(&self, cell: Cell, grid: &Grid) -> bool {
        !self.visited.is_some_and(|old| old.contains(cell, grid))
    }
}

/// Whether a step visited all its cells, or stopped once the `k` best were certain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Collected {
    All,
    Enough,
}

/// The distance after `distance_m`: one cell height, then twice the last, up to the radius
/// (and beyond it only if rounding kept the last box from holding the whole radius).
fn next_distance_m(distance_m: f64, cell_height_m: f64, radius_m: f64) -> f64 {
    if distance_m <= 0.0 {
        cell_height_m.min(radius_m)
    } else if distance_m < radius_m {
        (distance_m * 2.0).min(radius_m)
    } else {
        distance_m * 2.0
    }
}

/// `None` if `cell` lies in one of `runs`, else the first cell after it that does (in the
/// next row if need be).
fn next_wanted_cell(cell: Cell, runs: &[ColumnRun], first_col: u32) -> Option<Cell> {
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
    // Rows number at most 2^30, so the next row index never overflows.
    Some(Cell {
        row: cell.row.saturating_add(1),
        col: first_col,
    })
}

/// A squared chord ordered by `f64::total_cmp`, for the heap of the `k` smallest.
#[derive(Clone, Copy, Debug)]
struct Chord(f64);

impl PartialEq for Chord {
    fn eq(&self, other: &Chord) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Chord {}

impl PartialOrd for Chord {
    fn partial_cmp(&self, other: &Chord) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Chord {
    fn cmp(&self, other: &Chord) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The candidates a search has kept: the `k` smallest squared chords offered so far, and every
/// candidate that could still be among the `k` best.
struct Nearest {
    k: usize,
    /// The `k` smallest squared chords offered, largest on top.
    smallest: BinaryHeap<Chord>,
    /// Every offered candidate whose squared chord was, when offered, within rounding of the
    /// `k` smallest; the others have `k` candidates certainly nearer.
    kept: Vec<Candidate>,
    /// The largest squared chord still worth keeping: infinite until `k` are offered, then
    /// the `k`-th smallest plus rounding slack.
    keep_up_to: f64,
}

impl Nearest {
    fn new(k: usize) -> Nearest {
        Nearest {
            k,
            smallest: BinaryHeap::with_capacity(k.min(RESERVED_NEIGHBOURS)),
            kept: Vec::with_capacity(k.min(RESERVED_NEIGHBOURS) * 2),
            keep_up_to: f64::INFINITY,
        }
    }

    /// Whether a candidate with this squared chord could still be among the `k` best.
    fn wants(&self, squared_chord: f64) -> bool {
        squared_chord <= self.keep_up_to
    }

    /// Takes in a candidate.
    fn offer(&mut self, candidate: Candidate) {
        if !self.wants(candidate.squared_chord) {
            return;
        }
        let chord = Chord(candidate.squared_chord);
        if self.smallest.len() < self.k {
            self.smallest.push(chord);
        } else if let Some(mut largest) = self.smallest.peek_mut() {
            if chord < *largest {
                *largest = chord;
            }
        }
        self.kept.push(candidate);
        if self.smallest.len() >= self.k {
            self.keep_up_to = self.kth_squared_chord() * (1.0 + CHORD_SLACK);
        }
    }

    /// The `k`-th smallest squared chord offered; infinite until `k` have been offered.
    fn kth_squared_chord(&self) -> f64 {
        match self.smallest.peek() {
            Some(largest) if self.smallest.len() >= self.k => largest.0,
            _ => f64::INFINITY,
        }
    }

    /// Whether `k` candidates are certainly nearer than any point with a squared chord of at
    /// least `unseen`.
    fn certainly_before(&self, unseen: f64) -> bool {
        self.kth_squared_chord() * (1.0 + 2.0 * CHORD_SLACK) < unseen
    }

    /// The `k` best kept candidates within `radius_m` metres, best first.
    ///
    /// Exact distances are computed only for candidates that can be among the `k` best: when
    /// the `k` smallest chords are all surely within the radius, those within rounding of the
    /// `k`-th; otherwise every one possibly within the radius.
    fn best(self, radius_m: f64) -> Vec<Nearby> {
        let bounds = ChordBounds::of(radius_m);
        let kth = self.kth_squared_chord();
        let cutoff = if kth <= bounds.surely_within {
            kth * (1.0 + CHORD_SLACK)
        } else {
            bounds.maybe_within
        };
        let mut nearby: Vec<Nearby> = self
            .kept
            .iter()
            .filter(|candidate| candidate.squared_chord <= cutoff)
            .map(|candidate| Nearby {
                provider: candidate.provider,
                distance_m: distance_of_squared_chord(candidate.squared_chord),
            })
            .filter(|nearby| nearby.distance_m <= radius_m)
            .collect();
        nearby.sort_unstable_by(rank);
        nearby.truncate(self.k);
        nearby
    }
}
