//! What operators see of membership: each member's status, incarnation and
//! since when, derived from foca's state after every event, with every change
//! counted (a flapping member shows as many changes).

use super::MemberId;
use serde::Serialize;
use std::collections::BTreeMap;

/// A member's status as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Answering probes.
    Alive,
    /// A probe went unanswered; it has `suspect_timeout_ms` to refute. Calls
    /// still go to it (SWIM treats a suspect as alive).
    Suspect,
    /// Declared down by the failure detector: calls needing it fail at once.
    Down,
    /// It said it was stopping (SIGTERM): calls needing it fail at once.
    Left,
}

impl MemberStatus {
    /// The status in one lowercase word (as serialized).
    pub fn label(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Suspect => "suspect",
            MemberStatus::Down => "down",
            MemberStatus::Left => "left",
        }
    }

    /// Whether calls may go to a member in this status.
    pub fn reachable(self) -> bool {
        matches!(self, MemberStatus::Alive | MemberStatus::Suspect)
    }
}

/// One member's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberRow {
    /// Its current identity.
    pub id: MemberId,
    /// Its status.
    pub status: MemberStatus,
    /// Since when it has had this status (or this incarnation), in ms since the
    /// Unix epoch.
    pub since_ms: u64,
}

/// One change of a member's status or incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The member's identity after the change.
    pub id: MemberId,
    /// Its status before (`None`: first seen).
    pub from: Option<MemberStatus>,
    /// Its status now.
    pub to: MemberStatus,
    /// The incarnation changed: a new process under the same name.
    pub new_incarnation: bool,
}

/// Every member this node has heard of (itself excluded).
#[derive(Debug)]
pub struct MemberTable {
    me: String,
    rows: BTreeMap<String, MemberRow>,
    /// Name → the incarnation that said it is stopping.
    leaving: BTreeMap<String, u64>,
    changes: u64,
    downs: u64,
}

impl MemberTable {
    /// An empty table for the node named `me`.
    pub fn new(me: &str) -> MemberTable {
        MemberTable {
            me: me.to_owned(),
            rows: BTreeMap::new(),
            leaving: BTreeMap::new(),
            changes: 0,
            downs: 0,
        }
    }

    /// Takes in foca's whole state at `now_ms` and returns what changed. Seeds not
    /// heard from yet (incarnation 0) and this node are skipped.
    pub fn observe<I>(&mut self, state: I, now_ms: u64) -> Vec<Transition>
    where
        I: IntoIterator<Item = (MemberId, foca::State)>,
    {
        let mut transitions = Vec::new();
        for (id, state) in state {
            if id.name == self.me || id.incarnation == 0 {
                continue;
            }
            let leaving = self.leaving.get(&id.name) == Some(&id.incarnation);
            let status = match state {
                _ if leaving => MemberStatus::Left,
                foca::State::Alive => MemberStatus::Alive,
                foca::State::Suspect => MemberStatus::Suspect,
                foca::State::Down => MemberStatus::Down,
            };
            if let Some(transition) = self.set(id, status, now_ms) {
                transitions.push(transition);
            }
        }
        transitions
    }

    /// Member `name` closed its links saying it is stopping: it is `Left` at once
    /// (before the gossip of its leave arrives).
    pub fn mark_leaving(&mut self, name: &str, now_ms: u64) -> Option<Transition> {
        let id = self.rows.get(name)?.id.clone();
        self.leaving.insert(name.to_owned(), id.incarnation);
        self.set(id, MemberStatus::Left, now_ms)
    }

    fn set(&mut self, id: MemberId, status: MemberStatus, now_ms: u64) -> Option<Transition> {
        let previous = self.rows.get(&id.name);
        let from = previous.map(|row| row.status);
        let new_incarnation = previous.is_some_and(|row| row.id.incarnation != id.incarnation);
        if from == Some(status) && !new_incarnation && previous.is_some_and(|row| row.id == id) {
            return None;
        }
        if from != Some(status) {
            self.changes += 1;
            if status == MemberStatus::Down {
                self.downs += 1;
            }
        }
        if new_incarnation {
            self.leaving.remove(&id.name);
        }
        let since_ms = if from == Some(status) && !new_incarnation {
            previous.map_or(now_ms, |row| row.since_ms)
        } else {
            now_ms
        };
        self.rows.insert(
            id.name.clone(),
            MemberRow {
                id: id.clone(),
                status,
                since_ms,
            },
        );
        Some(Transition {
            id,
            from,
            to: status,
            new_incarnation,
        })
    }

    /// Every member, sorted by name.
    pub fn rows(&self) -> Vec<MemberRow> {
        self.rows.values().cloned().collect()
    }

    /// Status changes so far (first sightings included).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Members declared down so far (a member that left is not counted).
    pub fn downs(&self) -> u64 {
        self.downs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::State;

    fn id(name: &str, incarnation: u64) -> MemberId {
        MemberId {
            name: name.into(),
            addr: "127.0.0.1:7002".parse().unwrap(),
            incarnation,
            rejoins: 0,
        }
    }

    #[test]
    fn statuses_follow_foca_and_a_restart_is_a_new_incarnation() {
        let mut table = MemberTable::new("a");
        let seen = table.observe([(id("a", 9), State::Alive), (id("b", 0), State::Down)], 1);
        assert!(seen.is_empty(), "self and unheard seeds are skipped");
        let up = table.observe([(id("b", 100), State::Alive)], 2);
        assert_eq!(up.len(), 1);
        assert_eq!((up[0].from, up[0].to), (None, MemberStatus::Alive));
        assert!(table.observe([(id("b", 100), State::Alive)], 3).is_empty());
        let suspect = table.observe([(id("b", 100), State::Suspect)], 4);
        assert_eq!(suspect[0].to, MemberStatus::Suspect);
        let down = table.observe([(id("b", 100), State::Down)], 5);
        assert_eq!(down[0].to, MemberStatus::Down);
        assert_eq!(table.rows()[0].since_ms, 5);
        let back = table.observe([(id("b", 200), State::Alive)], 6);
        assert!(back[0].new_incarnation);
        assert_eq!(back[0].to, MemberStatus::Alive);
        assert_eq!(table.changes(), 4);
        assert_eq!(table.downs(), 1);
    }

    #[test]
    fn a_member_that_says_it_stops_is_left_until_a_new_incarnation() {
        let mut table = MemberTable::new("a");
        table.observe([(id("c", 100), State::Alive)], 1);
        assert_eq!(table.mark_leaving("c", 2).unwrap().to, MemberStatus::Left);
        assert!(
            table.mark_leaving("zz", 2).is_none(),
            "unknown names change nothing"
        );
        // The gossip lags: foca still says alive, then down; both stay Left.
        assert!(table.observe([(id("c", 100), State::Alive)], 3).is_empty());
        assert!(table.observe([(id("c", 100), State::Down)], 4).is_empty());
        assert_eq!(table.rows()[0].since_ms, 2);
        let back = table.observe([(id("c", 300), State::Alive)], 5);
        assert_eq!(back[0].to, MemberStatus::Alive);
        assert_eq!(table.changes(), 3);
        assert_eq!(table.downs(), 0);
    }
}
