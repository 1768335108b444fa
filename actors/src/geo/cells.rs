//! Providers stored per (skill, row, column) cell, in an ordered map: the cells of one row of
//! one skill form one ordered range, and each cell keeps its providers' positions in place so
//! that a search reads them without further lookups.

use super::grid::Cell;
use super::{ProviderId, UnitVector};
use std::collections::BTreeMap;

/// Index of an interned skill name.
pub(super) type SkillIndex = u32;

/// Key of one cell's providers of one skill: (skill, row, column).
pub(super) type CellKey = (SkillIndex, u32, u32);

/// The key of `cell`'s providers of `skill`.
pub(super) fn cell_key(skill: SkillIndex, cell: Cell) -> CellKey {
    (skill, cell.row, cell.col)
}

/// A provider as a cell holds it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Member {
    pub(super) provider: ProviderId,
    pub(super) position: UnitVector,
}

/// Every non-empty cell of every skill.
#[derive(Clone, Debug, Default)]
pub(super) struct CellStore {
    members: BTreeMap<CellKey, Vec<Member>>,
}

impl CellStore {
    /// Whether no cell holds any provider.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds `member` to the cell `key` and returns its place there.
    pub(super) fn attach(&mut self, key: CellKey, member: Member) -> u32 {
        let members = self.members.entry(key).or_default();
        members.push(member);
        place_hint(members.len() - 1)
    }

    /// Takes `provider` out of the cell `key`, looking first at `hint`, dropping the cell if it
    /// empties.
    pub(super) fn detach(&mut self, key: CellKey, provider: ProviderId, hint: u32) {
        let Some(members) = self.members.get_mut(&key) else {
            return;
        };
        if let Some(at) = find_member(members, provider, hint) {
            members.swap_remove(at);
        }
        if members.is_empty() {
            self.members.remove(&key);
        }
    }

    /// Rewrites the position of `member` in the cell `key`, looking first at `hint`, and
    /// returns its place there.
    pub(super) fn refresh(&mut self, key: CellKey, member: Member, hint: u32) -> u32 {
        let Some(members) = self.members.get_mut(&key) else {
            return hint;
        };
        let Some(at) = find_member(members, member.provider, hint) else {
            return hint;
        };
        if let Some(stored) = members.get_mut(at) {
            stored.position = member.position;
        }
        place_hint(at)
    }

    /// The non-empty cells from `start` on, in key order.
    pub(super) fn cells_from(&self, start: CellKey) -> impl Iterator<Item = (CellKey, &[Member])> {
        self.members
            .range(start..)
            .map(|(&key, members)| (key, members.as_slice()))
    }
}

/// Where `provider` is in `members`: at `hint` if it is still there, else wherever it is.
fn find_member(members: &[Member], provider: ProviderId, hint: u32) -> Option<usize> {
    let hinted = hint as usize;
    match members.get(hinted) {
        Some(member) if member.provider == provider => Some(hinted),
        _ => members
            .iter()
            .position(|member| member.provider == provider),
    }
}

/// A place in a cell as a hint; a cell too large for one just gets a wrong hint.
fn place_hint(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}
