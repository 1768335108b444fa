//! The regular latitude/longitude grid behind geohash cells, and the cell ranges a search visits.
//!
//! A geohash of `p` characters holds `5p` bits, longitude first, so it names one cell of a
//! grid with `floor(5p / 2)` latitude bits (rows, south to north) and `ceil(5p / 2)` longitude
//! bits (columns, west to east from -180°).

use super::{Coord, EARTH_RADIUS_M};

/// The bits of an `f64` that hold its significand.
const SIGNIFICAND_MASK: u64 = (1 << 52) - 1;
/// Bits in an `f64` significand.
const SIGNIFICAND_BITS: u32 = 52;

/// One cell of the grid: its row (from the south) and column (from -180°).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cell {
    pub(super) row: u32,
    pub(super) col: u32,
}

/// The geohash grid of one precision.
#[derive(Clone, Copy, Debug)]
pub(super) struct Grid {
    precision: usize,
    lat_bits: u32,
    lon_bits: u32,
}

impl Grid {
    /// The grid of geohashes of `precision` characters; `precision` must be in 1..=12.
    pub(super) fn new(precision: usize) -> Grid {
        let bits = u32::try_from(precision.saturating_mul(5))
            .unwrap_or(60)
            .min(60);
        Grid {
            precision,
            lat_bits: bits / 2,
            lon_bits: bits - bits / 2,
        }
    }

    /// Characters of the geohashes of this grid.
    pub(super) fn precision(&self) -> usize {
        self.precision
    }

    /// Number of rows (latitude bands).
    pub(super) fn rows(&self) -> u32 {
        1 << self.lat_bits
    }

    /// Number of columns (longitude bands).
    pub(super) fn cols(&self) -> u32 {
        1 << self.lon_bits
    }

    /// Height of a cell, in degrees of latitude.
    fn cell_height_deg(&self) -> f64 {
        180.0 / f64::from(self.rows())
    }

    /// Width of a cell, in degrees of longitude.
    fn cell_width_deg(&self) -> f64 {
        360.0 / f64::from(self.cols())
    }

    /// Height of a cell, in metres along a meridian.
    pub(super) fn cell_height_m(&self) -> f64 {
        self.cell_height_deg().to_radians() * EARTH_RADIUS_M
    }

    /// The cell holding `coord`, computed exactly as `geohash::encode` does, except that the
    /// north pole falls in the northernmost row instead of wrapping to the southernmost.
    pub(super) fn cell(&self, coord: Coord) -> Cell {
        let lat_fraction = coord.lat() * (1.0 / 180.0) + 1.5;
        let lon_fraction = coord.lon() * (1.0 / 360.0) + 1.5;
        let row = if lat_fraction >= 2.0 {
            self.rows() - 1
        } else {
            leading_significand_bits(lat_fraction, self.lat_bits)
        };
        // Longitude 180 wraps to column 0, the column of -180.
        let col = if lon_fraction >= 2.0 {
            0
        } else {
            leading_significand_bits(lon_fraction, self.lon_bits)
        };
        Cell { row, col }
    }

    /// The centre of `cell`: a point well inside it, far from any rounding trouble.
    pub(super) fn centre(&self, cell: Cell) -> Coord {
        let lat = -90.0 + (f64::from(cell.row) + 0.5) * self.cell_height_deg();
        let lon = -180.0 + (f64::from(cell.col) + 0.5) * self.cell_width_deg();
        Coord::from_valid_parts(lat, lon)
    }

    /// The cells that hold every point within `distance_m` of `centre`, widened by one cell on
    /// each side so that rounding can never leave a point out (and so that distance 0 gives
    /// the cell of `centre` and its eight neighbours).
    ///
    /// The spherical cap of angular radius `δ` around latitude `φ` spans latitudes `φ ± δ`
    /// and, unless it reaches a pole, longitudes `λ ± asin(sin δ / cos φ)`.
    pub(super) fn search_box(&self, centre: Coord, distance_m: f64) -> SearchBox {
        let angle = distance_m / EARTH_RADIUS_M;
        let angle_deg = angle.to_degrees();
        let south = centre.lat() - angle_deg;
        let north = centre.lat() + angle_deg;
        let rows = f64::from(self.rows());
        let row_first = clamp_index(
            band_of(south + 90.0, 180.0, rows).saturating_sub(1),
            self.rows(),
        );
        let row_last = clamp_index(
            band_of(north + 90.0, 180.0, rows).saturating_add(1),
            self.rows(),
        );
        let columns = if north >= 90.0 || south <= -90.0 {
            ColumnSpan::All
        } else {
            self.column_span(centre, angle)
        };
        SearchBox {
            row_first,
            row_last,
            columns,
        }
    }

    /// The columns of a cap of angular radius `angle` that reaches no pole.
    fn column_span(&self, centre: Coord, angle: f64) -> ColumnSpan {
        let sine_ratio = angle.sin() / centre.lat().to_radians().cos();
        if sine_ratio.is_nan() || sine_ratio >= 1.0 {
            return ColumnSpan::All;
        }
        let half_width_deg = sine_ratio.asin().to_degrees();
        let cols = f64::from(self.cols());
        let first = band_of(centre.lon() - half_width_deg + 180.0, 360.0, cols).saturating_sub(1);
        let last = band_of(centre.lon() + half_width_deg + 180.0, 360.0, cols).saturating_add(1);
        let count = last.saturating_sub(first).saturating_add(1);
        if count >= i64::from(self.cols()) {
            ColumnSpan::All
        } else {
            ColumnSpan::Range { first, count }
        }
    }
}

/// The top `bits` bits of the significand of `fraction`, a number in [1, 2): the index of the
/// band holding it when [1, 2) is cut into `2^bits` equal bands. This is `geohash::encode`'s
/// own arithmetic.
fn leading_significand_bits(fraction: f64, bits: u32) -> u32 {
    if fraction.is_nan() || fraction < 1.0 {
        return 0;
    }
    let band = (fraction.to_bits() & SIGNIFICAND_MASK) >> (SIGNIFICAND_BITS - bits);
    u32::try_from(band).unwrap_or(u32::MAX)
}

/// The (unbounded) index of the band holding `offset` when `span` is cut into `bands` bands.
fn band_of(offset: f64, span: f64, bands: f64) -> i64 {
    // `as` saturates (and maps NaN to 0), so this never wraps.
    (offset / span * bands).floor() as i64
}

/// `index` taken modulo `count`.
fn wrap_index(index: i64, count: u32) -> u32 {
    u32::try_from(index.rem_euclid(i64::from(count))).unwrap_or(0)
}

/// `index` clamped into `0..count`.
fn clamp_index(index: i64, count: u32) -> u32 {
    let last = i64::from(count) - 1;
    u32::try_from(index.clamp(0, last)).unwrap_or(0)
}

/// The columns of a search: all of them, or a run that may cross the antimeridian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ColumnSpan {
    /// Every column.
    All,
    /// `count` consecutive columns from `first`, counted modulo the number of columns, so a
    /// run that crosses the antimeridian is still one run. `count` is below the column count.
    Range { first: i64, count: i64 },
}

/// A run of columns `first..=last` that does not wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ColumnRun {
    pub(super) first: u32,
    pub(super) last: u32,
}

impl ColumnSpan {
    /// Whether `col` is one of these columns, given `cols` columns in all.
    fn contains(&self, col: u32, cols: u32) -> bool {
        match *self {
            ColumnSpan::All => true,
            ColumnSpan::Range { first, count } => {
                (i64::from(col) - first).rem_euclid(i64::from(cols)) < count
            }
        }
    }

    /// These columns as one or two runs that do not wrap, west to east.
    fn runs(&self, cols: u32) -> ColumnRuns {
        let all = ColumnRun {
            first: 0,
            last: cols - 1,
        };
        match *self {
            ColumnSpan::All => ColumnRuns::one(all),
            ColumnSpan::Range { first, count } => {
                let start = first.rem_euclid(i64::from(cols));
                let end = start + count - 1;
                let to_index = |value: i64| u32::try_from(value).unwrap_or(0);
                if end < i64::from(cols) {
                    ColumnRuns::one(ColumnRun {
                        first: to_index(start),
                        last: to_index(end),
                    })
                } else {
                    ColumnRuns::two(
                        ColumnRun {
                            first: 0,
                            last: to_index(end - i64::from(cols)),
                        },
                        ColumnRun {
                            first: to_index(start),
                            last: cols - 1,
                        },
                    )
                }
            }
        }
    }
}

/// One or two column runs, west to east, without allocating.
#[derive(Clone, Copy, Debug)]
pub(super) struct ColumnRuns {
    runs: [ColumnRun; 2],
    len: usize,
}

impl ColumnRuns {
    fn one(run: ColumnRun) -> ColumnRuns {
        ColumnRuns {
            runs: [run, run],
            len: 1,
        }
    }

    fn two(west: ColumnRun, east: ColumnRun) -> ColumnRuns {
        ColumnRuns {
            runs: [west, east],
            len: 2,
        }
    }

    /// The runs, west to east.
    pub(super) fn as_slice(&self) -> &[ColumnRun] {
        self.runs.get(..self.len).unwrap_or(&self.runs)
    }

    /// The westernmost column.
    pub(super) fn first_col(&self) -> u32 {
        self.runs[0].first
    }

    /// The easternmost column.
    pub(super) fn last_col(&self) -> u32 {
        self.as_slice()
            .last()
            .map_or(self.runs[0].last, |run| run.last)
    }
}

/// A block of rows, each searched over the same columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SearchBox {
    pub(super) row_first: u32,
    pub(super) row_last: u32,
    pub(super) columns: ColumnSpan,
}

impl SearchBox {
    /// Whether the box holds `cell`.
    pub(super) fn contains(&self, cell: Cell, grid: &Grid) -> bool {
        (self.row_first..=self.row_last).contains(&cell.row)
            && self.columns.contains(cell.col, grid.cols())
    }

    /// The box's columns as runs that do not wrap.
    pub(super) fn column_runs(&self, grid: &Grid) -> ColumnRuns {
        self.columns.runs(grid.cols())
    }
}

/// Relative slack taken off every bound: far above rounding errors (about 1e-15).
const BOUND_SLACK: f64 = 1e-9;

/// Slack, in degrees, taken off every latitude or longitude gap before bounding a distance:
/// far above rounding errors (about 1e-13°), far below any cell (at least 1.6e-7°).
const GAP_SLACK_DEG: f64 = 1e-10;

/// Lower bounds on the squared chord from one search point to the points of a cell, or to
/// every point outside a search box, from the gaps in latitude and longitude alone.
#[derive(Clone, Copy, Debug)]
pub(super) struct CellDistances {
    cell: Cell,
    /// How far the point is into its cell, from the south edge, as a fraction of its height.
    north_fraction: f64,
    /// How far the point is into its cell, from the west edge, as a fraction of its width.
    east_fraction: f64,
    cell_height_deg: f64,
    cell_width_deg: f64,
    rows: u32,
    cols: u32,
    cos_lat: f64,
    /// Angular distance from the point to the nearer pole.
    pole_angle: f64,
}

impl CellDistances {
    pub(super) fn new(grid: &Grid, point: Coord) -> CellDistances {
        let cell = grid.cell(point);
        let south_edge = -90.0 + f64::from(cell.row) * grid.cell_height_deg();
        let west_edge = -180.0 + f64::from(cell.col) * grid.cell_width_deg();
        let lat = point.lat().to_radians();
        CellDistances {
            cell,
            north_fraction: ((point.lat() - south_edge) / grid.cell_height_deg()).clamp(0.0, 1.0),
            east_fraction: ((point.lon() - west_edge) / grid.cell_width_deg()).clamp(0.0, 1.0),
            cell_height_deg: grid.cell_height_deg(),
            cell_width_deg: grid.cell_width_deg(),
            rows: grid.rows(),
            cols: grid.cols(),
            cos_lat: lat.cos(),
            pole_angle: std::f64::consts::FRAC_PI_2 - lat.abs(),
        }
    }

    /// A squared chord (on the unit sphere) that no point of `cell` is nearer than.
    pub(super) fn lower_bound(&self, cell: Cell) -> f64 {
        let by_latitude = self.latitude_bound(self.row_gap_deg(cell.row));
        let by_longitude = self.longitude_bound(self.col_gap_deg(cell.col));
        by_latitude.max(by_longitude) * (1.0 - BOUND_SLACK)
    }

    /// A squared chord that no point outside `search_box` is nearer than; infinite if the box
    /// is the whole grid.
    pub(super) fn outside_bound(&self, search_box: &SearchBox) -> f64 {
        let mut nearest = f64::INFINITY;
        if let Some(row) = search_box.row_first.checked_sub(1) {
            nearest = nearest.min(self.latitude_bound(self.row_gap_deg(row)));
        }
        if search_box.row_last < self.rows - 1 {
            let row = search_box.row_last + 1;
            nearest = nearest.min(self.latitude_bound(self.row_gap_deg(row)));
        }
        if let ColumnSpan::Range { first, count } = search_box.columns {
            for col in [first - 1, first + count] {
                let col = wrap_index(col, self.cols);
                nearest = nearest.min(self.longitude_bound(self.col_gap_deg(col)));
            }
        }
        nearest * (1.0 - BOUND_SLACK)
    }

    /// A squared chord that no point whose latitude differs by at least `gap_deg` is nearer
    /// than: such a point is at least that angle away.
    fn latitude_bound(&self, gap_deg: f64) -> f64 {
        squared_chord_of_angle_at_least(gap_deg.to_radians())
    }

    /// A squared chord that no point whose longitude differs by at least `gap_deg` is nearer
    /// than: such a point is at least `asin(cos φ sin Δλ)` away, or as far as the nearer pole
    /// once `Δλ` exceeds 90°. Sines are bounded below by `x - x³/6`.
    fn longitude_bound(&self, gap_deg: f64) -> f64 {
        let gap = gap_deg.to_radians();
        if gap >= std::f64::consts::FRAC_PI_2 {
            return squared_chord_of_angle_at_least(self.pole_angle);
        }
        let sine = self.cos_lat * sine_at_least(gap);
        // 2 - 2 cos θ for sin θ = sine, written to avoid cancellation.
        2.0 * sine * sine / (1.0 + (1.0 - sine * sine).max(0.0).sqrt())
    }

    /// Degrees of latitude between the point and the nearest edge of row `row`.
    fn row_gap_deg(&self, row: u32) -> f64 {
        let rows_between = f64::from(row.abs_diff(self.cell.row));
        let gap_cells = match row.cmp(&self.cell.row) {
            std::cmp::Ordering::Equal => 0.0,
            std::cmp::Ordering::Greater => rows_between - self.north_fraction,
            std::cmp::Ordering::Less => rows_between - 1.0 + self.north_fraction,
        };
        (gap_cells * self.cell_height_deg - GAP_SLACK_DEG).max(0.0)
    }

    /// Degrees of longitude between the point and the nearest edge of column `col`, going
    /// east or west, whichever is shorter.
    fn col_gap_deg(&self, col: u32) -> f64 {
        if col == self.cell.col {
            return 0.0;
        }
        let east_steps = if col > self.cell.col {
            col - self.cell.col
        } else {
            self.cols - (self.cell.col - col)
        };
        let west_steps = self.cols - east_steps;
        let east_cells = f64::from(east_steps) - self.east_fraction;
        let west_cells = f64::from(west_steps) - 1.0 + self.east_fraction;
        (east_cells.min(west_cells) * self.cell_width_deg - GAP_SLACK_DEG).max(0.0)
    }
}

/// A lower bound of `sin x` for `x` in [0, π]: `x - x³/6`, and never below zero.
fn sine_at_least(x: f64) -> f64 {
    (x - x * x * x / 6.0).max(0.0)
}

/// A lower bound of the squared chord `4 sin²(θ/2)` of an angle of at least `angle` (at most π).
fn squared_chord_of_angle_at_least(angle: f64) -> f64 {
    let half_chord = sine_at_least(angle.min(std::f64::consts::PI) * 0.5);
    4.0 * half_chord * half_chord
}
