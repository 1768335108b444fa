//! A provider's skills, each with the provider's place in that skill's cell when last written:
//! kept inline for the usual handful of skills, so that an update reads no memory beyond the
//! provider's entry to find them.

use super::cells::SkillIndex;

/// Skills kept inline; a provider offering more keeps them on the heap.
const INLINE_SKILLS: usize = 4;

/// One skill of a provider and where the provider was in that skill's cell when last written
/// (a hint: the cell may have been reordered since).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct SkillPlace {
    pub(super) skill: SkillIndex,
    pub(super) hint: u32,
}

/// The distinct skills of a provider, in the order they were given.
#[derive(Clone, Debug)]
pub(super) enum SkillList {
    /// Up to [`INLINE_SKILLS`] skills, the first `len` of `places`.
    Inline {
        len: u8,
        places: [SkillPlace; INLINE_SKILLS],
    },
    /// More skills than fit inline.
    Spilled(Vec<SkillPlace>),
}

impl SkillList {
    /// No skills.
    pub(super) fn new() -> SkillList {
        SkillList::Inline {
            len: 0,
            places: [SkillPlace::default(); INLINE_SKILLS],
        }
    }

    /// Appends `place`.
    pub(super) fn push(&mut self, place: SkillPlace) {
        match self {
            SkillList::Inline { len, places } => {
                if let Some(free) = places.get_mut(usize::from(*len)) {
                    *free = place;
                    *len += 1;
                } else {
                    let mut spilled = places.to_vec();
                    spilled.push(place);
                    *self = SkillList::Spilled(spilled);
                }
            }
            SkillList::Spilled(places) => places.push(place),
        }
    }

    /// The skills, in order.
    pub(super) fn as_slice(&self) -> &[SkillPlace] {
        match self {
            SkillList::Inline { len, places } => places.get(..usize::from(*len)).unwrap_or(places),
            SkillList::Spilled(places) => places,
        }
    }

    /// The skills, in order, for updating their hints.
    pub(super) fn as_mut_slice(&mut self) -> &mut [SkillPlace] {
        match self {
            SkillList::Inline { len, places } => {
                let len = usize::from(*len).min(INLINE_SKILLS);
                &mut places[..len]
            }
            SkillList::Spilled(places) => places,
        }
    }

    /// Whether `skill` is in the list.
    pub(super) fn contains(&self, skill: SkillIndex) -> bool {
        self.as_slice().iter().any(|place| place.skill == skill)
    }
}
