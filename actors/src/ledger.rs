//! Wallet ledger rules as pure functions: which postings an operation makes, and
//! whether a balance may take them. No storage, no actors.

use crate::error::{CoreError, CoreResult};
use crate::ids::WalletId;
use serde::{Deserialize, Serialize};

pub use fixit_protocol::ledger::{Balance, EntryKind, LedgerEntry, OpOutcome};

/// Largest amount one operation may move, in minor units (10^15: far above any
/// real price, far below `i64::MAX`, so sums of a few amounts cannot overflow).
pub const AMOUNT_MAX: i64 = 1_000_000_000_000_000;

/// Longest idempotency key accepted, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;

/// Basis points in one whole (100%).
pub const BPS_PER_WHOLE: i64 = 10_000;

/// An operation on one wallet (the payer, for a capture).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerOp {
    /// Money enters the system (admin only).
    Deposit {
        /// Amount in minor units.
        amount: i64,
    },
    /// Money leaves the system.
    Withdraw {
        /// Amount in minor units.
        amount: i64,
    },
    /// Available money moves into escrow.
    Hold {
        /// Amount in minor units.
        amount: i64,
    },
    /// Escrowed money moves back to available.
    Release {
        /// Amount in minor units.
        amount: i64,
    },
    /// Escrowed money is paid out: `amount - fee` to the payee, `fee` to the platform.
    Capture {
        /// Amount taken from escrow, in minor units.
        amount: i64,
        /// Part of `amount` that goes to the platform.
        fee: i64,
        /// Who is paid.
        payee: WalletId,
    },
    /// Money arrives from a capture on another node (applied by the receiving node
    /// under the transfer's id as idempotency key; never sent by clients).
    TransferIn {
        /// Amount in minor units.
        amount: i64,
        /// The paying wallet, on the sending node.
        from: WalletId,
        /// Whether this is the platform fee of the capture (else the payment).
        fee: bool,
    },
}

impl LedgerOp {
    /// A short name for ledger entries and logs.
    pub fn kind(&self) -> EntryKind {
        match self {
            LedgerOp::Deposit { .. } => EntryKind::Deposit,
            LedgerOp::Withdraw { .. } => EntryKind::Withdraw,
            LedgerOp::Hold { .. } => EntryKind::Hold,
            LedgerOp::Release { .. } => EntryKind::Release,
            LedgerOp::Capture { .. } => EntryKind::Capture,
            LedgerOp::TransferIn { fee: true, .. } => EntryKind::Fee,
            LedgerOp::TransferIn { fee: false, .. } => EntryKind::Payment,
        }
    }

    /// Money this operation brings into (positive) or takes out of (negative) the
    /// node's wallets: deposits, withdrawals and transfers from other nodes.
    pub fn external_flow(&self) -> i64 {
        match self {
            LedgerOp::Deposit { amount } | LedgerOp::TransferIn { amount, .. } => *amount,
            LedgerOp::Withdraw { amount } => -*amount,
            _ => 0,
        }
    }
}

/// A change to one wallet's balance made by an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posting {
    /// The wallet changed.
    pub wallet: WalletId,
    /// What the change is, for the wallet's ledger.
    pub kind: EntryKind,
    /// Change of `available`.
    pub available_delta: i64,
    /// Change of `held`.
    pub held_delta: i64,
}

/// Where a wallet lives: `None` for this node, else the home node's name.
pub type WalletHome<'a> = &'a (dyn Fn(WalletId) -> Option<String> + Sync);

/// One posting of an operation and where it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The posting.
    pub posting: Posting,
    /// The other wallet of the operation, for the ledger entry.
    pub counterparty: Option<WalletId>,
    /// `None`: this node's ledger; else the node a [`Transfer`] goes to.
    pub to_node: Option<String>,
}

/// Where each posting of `op` on `wallet` is written: the payer's own postings
/// here, postings to wallets `home` places on another node as transfers. The
/// payer's own posting comes first (a transfer's id carries the payer's entry), so
/// a remote posting before it is refused as a bug.
pub fn route(
    wallet: WalletId,
    op: &LedgerOp,
    postings: &[Posting],
    home: WalletHome<'_>,
) -> CoreResult<Vec<Route>> {
    let mut payer_seen = false;
    let mut routes = Vec::with_capacity(postings.len());
    for posting in postings {
        let counterparty = match op {
            LedgerOp::TransferIn { from, .. } => Some(*from),
            _ => postings
                .iter()
                .find(|other| other.wallet != posting.wallet)
                .map(|other| other.wallet),
        };
        let to_node = (posting.wallet != wallet)
            .then(|| home(posting.wallet))
            .flatten();
        if to_node.is_some() && !payer_seen {
            return Err(CoreError::Internal(
                "a remote posting came before the payer's own".into(),
            ));
        }
        payer_seen |= posting.wallet == wallet;
        routes.push(Route {
            posting: *posting,
            counterparty,
            to_node,
        });
    }
    Ok(routes)
}

/// Money on its way from a capture here to a wallet homed on another node: written
/// in the capture's transaction, delivered until the receiver acknowledges, then
/// removed. The receiver applies it under [`Transfer::id`] as idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Unique in the cluster: `xfer-<payer>-<payer's ledger seq>-<p|f>`.
    pub id: String,
    /// The receiving wallet's home node.
    pub to_node: String,
    /// The receiving wallet.
    pub to_wallet: WalletId,
    /// The paying wallet (here).
    pub from_wallet: WalletId,
    /// Minor units.
    pub amount: i64,
    /// Whether this is the platform fee of the capture (else the payment).
    pub fee: bool,
    /// When the capture committed, in ms since the epoch.
    pub created_ms: u64,
}

impl Transfer {
    /// The operation the receiving node applies.
    pub fn op(&self) -> LedgerOp {
        LedgerOp::TransferIn {
            amount: self.amount,
            from: self.from_wallet,
            fee: self.fee,
        }
    }
}

/// The transfer of `posting` (to a wallet on node `to_node`) paid by `from` in its
/// ledger entry `paid_seq`.
pub fn transfer(
    from: WalletId,
    paid_seq: u64,
    posting: &Posting,
    to_node: String,
    now_ms: u64,
) -> Transfer {
    let fee = posting.kind == EntryKind::Fee;
    Transfer {
        id: format!(
            "xfer-{}-{}-{}",
            from.0,
            paid_seq,
            if fee { "f" } else { "p" }
        ),
        to_node,
        to_wallet: posting.wallet,
        from_wallet: from,
        amount: posting.available_delta,
        fee,
        created_ms: now_ms,
    }
}

/// Longest key of a ledger operation, in bytes: a client's key
/// ([`IDEMPOTENCY_KEY_BYTES_MAX`]) with the prefix the node adds to the keys it
/// derives from it (a booking's hold is `job-request-{key}`).
pub const LEDGER_KEY_BYTES_MAX: usize = IDEMPOTENCY_KEY_BYTES_MAX + 64;

/// Checks a client's idempotency key: 1 to [`IDEMPOTENCY_KEY_BYTES_MAX`]
/// printable ASCII bytes.
pub fn validate_key(key: &str) -> CoreResult<()> {
    check_key(key, IDEMPOTENCY_KEY_BYTES_MAX)
}

/// Checks the key of a ledger operation, a client's or one the node derived
/// from it: 1 to [`LEDGER_KEY_BYTES_MAX`] printable ASCII bytes.
pub fn validate_ledger_key(key: &str) -> CoreResult<()> {
    check_key(key, LEDGER_KEY_BYTES_MAX)
}

fn check_key(key: &str, max: usize) -> CoreResult<()> {
    if !fixit_protocol::ids::is_printable_ascii(key, max) {
        return Err(CoreError::Invalid(format!(
            "idempotency key must be 1 to {max} printable ASCII bytes"
        )));
    }
    Ok(())
}

/// Checks an amount: 1 to [`AMOUNT_MAX`] minor units.
pub fn validate_amount(amount: i64) -> CoreResult<()> {
    if !(1..=AMOUNT_MAX).contains(&amount) {
        return Err(CoreError::Invalid(format!(
            "amount {amount} is outside 1..={AMOUNT_MAX} minor units"
        )));
    }
    Ok(())
}

/// The platform fee on `amount` at `fee_bps` basis points, rounded down.
pub fn fee_for(amount: i64, fee_bps: u32) -> i64 {
    let fee = i128::from(amount) * i128::from(fee_bps) / i128::from(BPS_PER_WHOLE);
    i64::try_from(fee).unwrap_or(i64::MAX)
}

/// The postings `op` makes on `wallet`, checked against the payer's `balance`.
///
/// The postings of a hold, release or capture sum to zero (money moves, never
/// appears); a deposit or withdrawal moves exactly its amount across the boundary.
pub fn plan(wallet: WalletId, op: &LedgerOp, balance: Balance) -> CoreResult<Vec<Posting>> {
    let one = |kind, available_delta, held_delta| Posting {
        wallet,
        kind,
        available_delta,
        held_delta,
    };
    let postings = match *op {
        LedgerOp::Deposit { amount } => {
            validate_amount(amount)?;
            vec![one(EntryKind::Deposit, amount, 0)]
        }
        LedgerOp::Withdraw { amount } => {
            validate_amount(amount)?;
            require_available(balance, amount)?;
            vec![one(EntryKind::Withdraw, -amount, 0)]
        }
        LedgerOp::Hold { amount } => {
            validate_amount(amount)?;
            require_available(balance, amount)?;
            vec![one(EntryKind::Hold, -amount, amount)]
        }
        LedgerOp::Release { amount } => {
            validate_amount(amount)?;
            require_held(balance, amount)?;
            vec![one(EntryKind::Release, amount, -amount)]
        }
        LedgerOp::Capture { amount, fee, payee } => {
            plan_capture(wallet, amount, fee, payee, balance)?
        }
        LedgerOp::TransferIn { amount, from, fee } => {
            validate_amount(amount)?;
            if from == wallet {
                return Err(CoreError::Invalid("a wallet cannot pay itself".into()));
            }
            let kind = if fee {
                EntryKind::Fee
            } else {
                EntryKind::Payment
            };
            vec![one(kind, amount, 0)]
        }
    };
    debug_assert_eq!(
        postings
            .iter()
            .map(|p| p.available_delta + p.held_delta)
            .sum::<i64>(),
        op.external_flow(),
        "postings must conserve money"
    );
    Ok(postings)
}

fn plan_capture(
    payer: WalletId,
    amount: i64,
    fee: i64,
    payee: WalletId,
    balance: Balance,
) -> CoreResult<Vec<Posting>> {
    validate_amount(amount)?;
    if !(0..=amount).contains(&fee) {
        return Err(CoreError::Invalid(format!(
            "fee {fee} must be between 0 and the amount {amount}"
        )));
    }
    if payee == payer {
        return Err(CoreError::Invalid("a wallet cannot pay itself".into()));
    }
    require_held(balance, amount)?;
    let mut postings = vec![
        Posting {
            wallet: payer,
            kind: EntryKind::Capture,
            available_delta: 0,
            held_delta: -amount,
        },
        Posting {
            wallet: payee,
            kind: EntryKind::Payment,
            available_delta: amount - fee,
            held_delta: 0,
        },
    ];
    if fee > 0 && payee != WalletId::PLATFORM && payer != WalletId::PLATFORM {
        postings.push(Posting {
            wallet: WalletId::PLATFORM,
            kind: EntryKind::Fee,
            available_delta: fee,
            held_delta: 0,
        });
    } else if fee > 0 {
        // The platform is a party: its share of the fee stays with it.
        let platform = postings
            .iter_mut()
            .find(|p| p.wallet == WalletId::PLATFORM)
            .expect("platform is payer or payee here");
        platform.available_delta += fee;
    }
    Ok(postings)
}

fn require_available(balance: Balance, amount: i64) -> CoreResult<()> {
    if balance.available < amount {
        return Err(CoreError::InsufficientFunds {
            available: balance.available,
            needed: amount,
        });
    }
    Ok(())
}

fn require_held(balance: Balance, amount: i64) -> CoreResult<()> {
    if balance.held < amount {
        return Err(CoreError::Conflict(format!(
            "only {} held, {amount} requested",
            balance.held
        )));
    }
    Ok(())
}

/// The balance after a posting; refuses any result that is negative or overflows.
pub fn post(balance: Balance, posting: &Posting) -> CoreResult<Balance> {
    let overflow = || CoreError::Invalid("balance would overflow".into());
    let after = Balance {
        available: balance
            .available
            .checked_add(posting.available_delta)
            .ok_or_else(overflow)?,
        held: balance
            .held
            .checked_add(posting.held_delta)
            .ok_or_else(overflow)?,
    };
    if after.available < 0 || after.held < 0 {
        return Err(CoreError::InsufficientFunds {
            available: balance.available,
            needed: -posting.available_delta,
        });
    }
    after
        .available
        .checked_add(after.held)
        .ok_or_else(overflow)?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn apply_all(
        wallets: &mut std::collections::BTreeMap<WalletId, Balance>,
        wallet: WalletId,
        op: &LedgerOp,
    ) -> CoreResult<()> {
        let balance = wallets.get(&wallet).copied().unwrap_or_default();
        let postings = plan(wallet, op, balance)?;
        let mut next = wallets.clone();
        for posting in &postings {
            let current = next.get(&posting.wallet).copied().unwrap_or_default();
            next.insert(posting.wallet, post(current, posting)?);
        }
        *wallets = next;
        Ok(())
    }

    /// A capture of 1,000 held in wallet 1, paid to wallet 2 with a 10 % fee: the
    /// operation and its postings.
    fn capture_of_1_000_from_1_to_2() -> (LedgerOp, Vec<Posting>) {
        let payer = Balance {
            available: 0,
            held: 1_000,
        };
        let op = LedgerOp::Capture {
            amount: 1_000,
            fee: fee_for(1_000, 1_000),
            payee: WalletId(2),
        };
        let postings = plan(WalletId(1), &op, payer).unwrap();
        (op, postings)
    }

    #[test]
    fn a_capture_routes_remote_postings_to_transfers_named_by_the_payers_entry() {
        let (op, postings) = capture_of_1_000_from_1_to_2();
        let home = |wallet: WalletId| (wallet == WalletId(2)).then(|| "b".to_owned());
        let routes = route(WalletId(1), &op, &postings, &home).unwrap();
        let places: Vec<_> = routes
            .iter()
            .map(|route| (route.posting.wallet, route.to_node.as_deref()))
            .collect();
        assert_eq!(
            places,
            vec![
                (WalletId(1), None),
                (WalletId(2), Some("b")),
                (WalletId::PLATFORM, None)
            ]
        );
        assert_eq!(routes[0].counterparty, Some(WalletId(2)));
        let transfer = transfer(WalletId(1), 7, &routes[1].posting, "b".into(), 99);
        assert_eq!(transfer.id, "xfer-1-7-p");
        assert_eq!((transfer.amount, transfer.fee), (900, false));
        assert_eq!(
            transfer.op(),
            LedgerOp::TransferIn {
                amount: 900,
                from: WalletId(1),
                fee: false
            }
        );
        // A remote posting may never come before the payer's own.
        let reversed: Vec<Posting> = postings.iter().rev().copied().collect();
        let everywhere_else = |wallet: WalletId| (wallet != WalletId(1)).then(|| "b".to_owned());
        assert!(route(WalletId(1), &op, &reversed, &everywhere_else).is_err());
    }

    #[test]
    fn capture_pays_payee_and_platform() {
        let (_, postings) = capture_of_1_000_from_1_to_2();
        let deltas: Vec<_> = postings
            .iter()
            .map(|p| (p.wallet, p.available_delta, p.held_delta))
            .collect();
        assert_eq!(
            deltas,
            vec![
                (WalletId(1), 0, -1_000),
                (WalletId(2), 900, 0),
                (WalletId::PLATFORM, 100, 0)
            ]
        );
    }

    #[test]
    fn bad_amounts_and_keys_are_refused() {
        let zero = Balance::default();
        for amount in [0, -1, i64::MIN, AMOUNT_MAX + 1, i64::MAX] {
            assert!(matches!(
                plan(WalletId(1), &LedgerOp::Deposit { amount }, zero),
                Err(CoreError::Invalid(_))
            ));
        }
        assert!(matches!(
            plan(WalletId(1), &LedgerOp::Hold { amount: 5 }, zero),
            Err(CoreError::InsufficientFunds {
                available: 0,
                needed: 5
            })
        ));
        let full = Balance {
            available: i64::MAX - 1,
            held: 0,
        };
        let deposit = plan(WalletId(1), &LedgerOp::Deposit { amount: 10 }, full).unwrap();
        assert!(post(full, &deposit[0]).is_err());
        assert!(validate_key("").is_err());
        assert!(validate_key("has space").is_err());
        assert!(validate_key(&"k".repeat(IDEMPOTENCY_KEY_BYTES_MAX + 1)).is_err());
        assert!(validate_key("order-42/hold").is_ok());
    }

    fn op_strategy() -> impl Strategy<Value = (u64, LedgerOp)> {
        let amount = prop_oneof![1i64..2_000, Just(AMOUNT_MAX), -5i64..1];
        (0u64..4, amount, 0u64..4, 0i64..200).prop_flat_map(|(wallet, amount, payee, fee)| {
            prop_oneof![
                Just((wallet, LedgerOp::Deposit { amount })),
                Just((wallet, LedgerOp::Withdraw { amount })),
                Just((wallet, LedgerOp::Hold { amount })),
                Just((wallet, LedgerOp::Release { amount })),
                Just((
                    wallet,
                    LedgerOp::Capture {
                        amount,
                        fee,
                        payee: WalletId(payee)
                    }
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_operations_conserve_money_and_stay_non_negative(
            ops in proptest::collection::vec(op_strategy(), 1..200)
        ) {
            let mut wallets = std::collections::BTreeMap::new();
            let mut external = 0i64;
            for (wallet, op) in &ops {
                if apply_all(&mut wallets, WalletId(*wallet), op).is_ok() {
                    external += op.external_flow();
                }
                let total: i64 = wallets.values().map(Balance::total).sum();
                prop_assert_eq!(total, external);
                prop_assert!(wallets.values().all(|b| b.available >= 0 && b.held >= 0));
            }
        }
    }
}
