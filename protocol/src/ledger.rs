//! What a wallet holds and what its ledger shows: balances, ledger entries and the
//! outcome of a ledger operation, as stored and as answered to clients.

use crate::ids::WalletId;
use serde::{Deserialize, Serialize};

/// A wallet's money, in minor units.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Balance {
    /// Spendable funds.
    pub available: i64,
    /// Funds held in escrow.
    pub held: i64,
}

impl Balance {
    /// Total money in the wallet.
    pub fn total(&self) -> i64 {
        self.available + self.held
    }
}

/// What kind of movement a ledger entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum EntryKind {
    /// Deposit into this wallet.
    Deposit,
    /// Withdrawal from this wallet.
    Withdraw,
    /// Escrow hold.
    Hold,
    /// Escrow release.
    Release,
    /// Escrow paid out from this wallet.
    Capture,
    /// Payment received from a capture.
    Payment,
    /// Platform fee received from a capture.
    Fee,
}

/// One line of a wallet's append-only ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LedgerEntry {
    /// Position in the wallet's ledger, from 0.
    pub seq: u64,
    /// The idempotency key of the operation that made it.
    pub key: String,
    /// What kind of movement.
    pub kind: EntryKind,
    /// Change of `available`.
    pub available_delta: i64,
    /// Change of `held`.
    pub held_delta: i64,
    /// The balance after this entry.
    pub balance_after: Balance,
    /// The other wallet of a capture, if any.
    pub counterparty: Option<WalletId>,
    /// When it was written, in ms since the epoch.
    pub at_ms: u64,
}

/// What a ledger operation answered; stored under its idempotency key and replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OpOutcome {
    /// The (paying) wallet's balance right after the operation.
    pub balance: Balance,
    /// The ledger entry the operation wrote in that wallet.
    pub seq: u64,
}
