//! Cluster membership and failure detection: SWIM with suspicion, incarnations
//! and gossip, by the `foca` crate, carried as QUIC datagrams over the nodes'
//! mutual-TLS links.
//!
//! - A member is a [`MemberId`]: its node name (its certificate's name, unique in
//!   the cluster), the link address it advertises, and an **incarnation** chosen
//!   at every start (the start's wall-clock ms), so a restarted node is a new
//!   identity that wins over its old one at once (foca's `Rename`), and a
//!   **rejoin** count raised when a live node finds itself declared down and
//!   comes back under the same incarnation. Only a new incarnation (a new
//!   process) makes the links drop their connection to it.
//! - **Why datagrams**: SWIM is built for an unreliable, unordered transport — a
//!   lost probe must count as lost, not arrive late after retransmission, and
//!   one slow probe must not hold up the next. QUIC datagrams give exactly that
//!   on the links that already exist, authenticated by mutual TLS: a datagram
//!   whose membership header names another sender than the connection's
//!   certificate is dropped.
//! - `table` turns foca's view into what operators see (alive, suspect, down,
//!   left, since when) and counts the changes; the `driver` task owns foca,
//!   its timers and its packets, and makes the links follow membership (see
//!   [`Peers`](crate::Peers)).

mod codec;
mod driver;
mod table;

pub use driver::MembershipView;
pub(crate) use driver::{start, Membership};
pub use table::{MemberRow, MemberStatus, MemberTable, Transition};

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One member's identity as the membership protocol carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberId {
    /// The node's name (the name in its certificate).
    pub name: String,
    /// The link address it advertises.
    pub addr: SocketAddr,
    /// Chosen at every start (the start's ms since the Unix epoch); 0 for a seed
    /// not heard from yet.
    pub incarnation: u64,
    /// Raised by one each time this process rejoins after being declared down.
    pub rejoins: u32,
}

impl foca::Identity for MemberId {
    type Addr = String;

    fn renew(&self) -> Option<MemberId> {
        Some(MemberId {
            rejoins: self.rejoins.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.name.clone()
    }

    fn win_addr_conflict(&self, adversary: &MemberId) -> bool {
        (self.incarnation, self.rejoins) > (adversary.incarnation, adversary.rejoins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn id(name: &str, incarnation: u64) -> MemberId {
        MemberId {
            name: name.into(),
            addr: "127.0.0.1:7000".parse().unwrap(),
            incarnation,
            rejoins: 0,
        }
    }

    #[test]
    fn a_restart_wins_over_the_old_identity_and_renewal_moves_forward() {
        let old = id("b", 1_000);
        let restarted = id("b", 5_000);
        assert_eq!(old.addr(), restarted.addr());
        assert!(restarted.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&restarted));
        let renewed = old.renew().unwrap();
        assert!(renewed.win_addr_conflict(&old));
        assert_eq!(renewed.incarnation, old.incarnation, "the same process");
        assert!(restarted.win_addr_conflict(&renewed));
        assert_eq!(renewed.name, "b");
        assert_ne!(id("c", 1).addr(), old.addr());
    }
}
