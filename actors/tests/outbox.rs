//! A capture whose payee lives on another node: the payer's debit and the outgoing
//! transfer commit together; the receiver applies the transfer once per id; both
//! stores' audits balance, and together they conserve money.

use fixit_actors::error::CoreError;
use fixit_actors::ids::WalletId;
use fixit_actors::ledger::{EntryKind, LedgerOp};
use fixit_actors::store::{all_local, Store};

const PAYER: WalletId = WalletId(7);
const PAYEE: WalletId = WalletId(9);

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), 16 << 20).expect("store opens")
}

#[test]
fn a_remote_payee_gets_an_outbox_transfer_applied_once_on_its_node() {
    let (here_dir, there_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (here, there) = (open(&here_dir), open(&there_dir));
    // Seen from `here`: the payee and the platform live on node "b".
    let here_home = |wallet: WalletId| (wallet != PAYER).then(|| "b".to_owned());
    let there_home = |wallet: WalletId| (wallet == PAYER).then(|| "a".to_owned());

    here.apply(
        PAYER,
        "dep",
        &LedgerOp::Deposit { amount: 1_000 },
        1,
        &here_home,
    )
    .unwrap();
    here.apply(
        PAYER,
        "hold",
        &LedgerOp::Hold { amount: 500 },
        2,
        &here_home,
    )
    .unwrap();
    let capture = LedgerOp::Capture {
        amount: 500,
        fee: 50,
        payee: PAYEE,
    };
    let paid = here.apply(PAYER, "cap", &capture, 3, &here_home).unwrap();
    assert_eq!((paid.balance.available, paid.balance.held), (500, 0));
    // A retry of the capture adds no second transfer.
    assert_eq!(
        here.apply(PAYER, "cap", &capture, 4, &here_home).unwrap(),
        paid
    );

    let transfers = here.outbox_transfers(10).unwrap();
    assert_eq!(transfers.len(), 2, "{transfers:?}");
    assert_eq!(here.outbox_transfers_to("b", 10).unwrap(), transfers);
    assert!(here.outbox_transfers_to("c", 10).unwrap().is_empty());
    let payment = transfers.iter().find(|t| !t.fee).expect("payment");
    let fee = transfers.iter().find(|t| t.fee).expect("fee");
    assert_eq!(
        (payment.to_wallet, payment.amount, payment.to_node.as_str()),
        (PAYEE, 450, "b")
    );
    assert_eq!((fee.to_wallet, fee.amount), (WalletId::PLATFORM, 50));
    let audit = here.audit().unwrap();
    assert!(audit.holds(), "{audit:?}");
    assert_eq!(
        (
            audit.flows.sent,
            audit.outbox_transfers,
            audit.outbox_amount
        ),
        (500, 2, 500)
    );

    // The receiver applies each transfer under its id; a redelivery changes nothing.
    for transfer in &transfers {
        let first = there
            .apply(
                transfer.to_wallet,
                &transfer.id,
                &transfer.op(),
                5,
                &there_home,
            )
            .unwrap();
        let again = there
            .apply(
                transfer.to_wallet,
                &transfer.id,
                &transfer.op(),
                6,
                &there_home,
            )
            .unwrap();
        assert_eq!(first, again);
    }
    // The same id with another amount is refused and changes nothing.
    let forged = LedgerOp::TransferIn {
        amount: 451,
        from: PAYER,
        fee: false,
    };
    let refused = there.apply(PAYEE, &payment.id, &forged, 7, &there_home);
    assert!(
        matches!(refused, Err(CoreError::IdempotencyConflict { .. })),
        "{refused:?}"
    );
    assert_eq!(there.balance(PAYEE).unwrap().available, 450);
    assert_eq!(there.balance(WalletId::PLATFORM).unwrap().available, 50);
    let entry = &there.history(PAYEE, 0, 10).unwrap()[0];
    assert_eq!(
        (entry.kind, entry.counterparty),
        (EntryKind::Payment, Some(PAYER))
    );

    for transfer in &transfers {
        assert!(here.remove_transfer(transfer).unwrap());
    }
    let (a, b) = (here.audit().unwrap(), there.audit().unwrap());
    assert!(a.holds() && b.holds(), "{a:?} {b:?}");
    assert_eq!(b.flows.received, 500);
    assert_eq!(
        a.total_balance + b.total_balance,
        i128::from(a.flows.deposited + b.flows.deposited),
        "conserved across both nodes"
    );

    // A node refuses to apply anything to a wallet homed elsewhere.
    let misplaced = here.apply(PAYEE, "x", &LedgerOp::Deposit { amount: 1 }, 8, &here_home);
    assert!(
        matches!(misplaced, Err(CoreError::Unavailable(_))),
        "{misplaced:?}"
    );
    // Outside a cluster, every wallet is local and nothing goes to the outbox.
    let local_dir = tempfile::tempdir().unwrap();
    let local = open(&local_dir);
    local
        .apply(
            PAYER,
            "dep",
            &LedgerOp::Deposit { amount: 10 },
            1,
            &all_local,
        )
        .unwrap();
    local
        .apply(PAYER, "hold", &LedgerOp::Hold { amount: 10 }, 1, &all_local)
        .unwrap();
    local
        .apply(
            PAYER,
            "cap",
            &LedgerOp::Capture {
                amount: 10,
                fee: 1,
                payee: PAYEE,
            },
            1,
            &all_local,
        )
        .unwrap();
    assert!(local.outbox_transfers(10).unwrap().is_empty());
    assert_eq!(local.balance(PAYEE).unwrap().available, 9);
}
