//! The invariant checker against real sled databases in temp dirs: two stores
//! written as two nodes would write them (a capture on node a paying a wallet homed
//! on node b through the outbox), then checked as stopped nodes. The checker must
//! pass them, fail each kind of damage, and leave the dirs byte for byte unchanged.

use fixit_actors::ids::WalletId;
use fixit_actors::ledger::LedgerOp;
use fixit_actors::store::{Store, Transfer};
use fixit_chaos::checker::{check, AckedDeposit, Acknowledged, CheckError, NodeDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const CUSTOMER: WalletId = WalletId(7);
const PROVIDER: WalletId = WalletId(1_000_009);

fn open(dir: &Path) -> Store {
    Store::open(dir, 16 << 20).expect("store opens")
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for item in std::fs::read_dir(&at).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

struct TwoNodes {
    _root: tempfile::TempDir,
    nodes: Vec<NodeDir>,
    acked: Acknowledged,
}

/// Node a: the customer deposits 1,000, holds 400 and pays the provider (homed on
/// b) with a fee of 40 to the platform wallet 0 (homed on b). `deliver` says
/// whether b received the two transfers (and a removed them).
fn two_nodes(deliver: bool) -> TwoNodes {
    let root = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (root.path().join("a"), root.path().join("b"));
    let (a, b) = (open(&a_dir), open(&b_dir));
    let a_home = |wallet: WalletId| (wallet != CUSTOMER).then(|| "b".to_owned());
    let b_home = |wallet: WalletId| (wallet == CUSTOMER).then(|| "a".to_owned());
    let deposit = LedgerOp::Deposit { amount: 1_000 };
    a.apply(CUSTOMER, "dep-1", &deposit, 1, &a_home).unwrap();
    a.apply(
        CUSTOMER,
        "hold-1",
        &LedgerOp::Hold { amount: 400 },
        2,
        &a_home,
    )
    .unwrap();
    let capture = LedgerOp::Capture {
        amount: 400,
        fee: 40,
        payee: PROVIDER,
    };
    a.apply(CUSTOMER, "cap-1", &capture, 3, &a_home).unwrap();
    let transfers: Vec<Transfer> = a.outbox_transfers(10).unwrap();
    assert_eq!(transfers.len(), 2);
    if deliver {
        for transfer in &transfers {
            b.apply(transfer.to_wallet, &transfer.id, &transfer.op(), 4, &b_home)
                .unwrap();
            assert!(a.remove_transfer(transfer).unwrap());
        }
    }
    a.flush().unwrap();
    b.flush().unwrap();
    drop((a, b));
    TwoNodes {
        nodes: vec![
            NodeDir {
                name: "a".into(),
                dir: a_dir,
            },
            NodeDir {
                name: "b".into(),
                dir: b_dir,
            },
        ],
        acked: Acknowledged {
            deposits: vec![AckedDeposit {
                wallet: CUSTOMER.0,
                key: "dep-1".into(),
                amount: 1_000,
            }],
            ..Acknowledged::default()
        },
        _root: root,
    }
}

#[test]
fn a_clean_cluster_passes_and_its_dirs_are_not_touched() {
    for deliver in [true, false] {
        let cluster = two_nodes(deliver);
        let before: Vec<_> = cluster.nodes.iter().map(|n| contents(&n.dir)).collect();
        let outcome = check(&cluster.nodes, &cluster.acked).expect("checks");
        assert!(outcome.holds(), "deliver {deliver}: {outcome:#?}");
        assert_eq!(outcome.acked_lost, 0);
        assert_eq!(outcome.totals.external, 1_000);
        let in_flight = if deliver { (0, 0) } else { (2, 400) };
        assert_eq!(outcome.totals.in_flight, in_flight, "deliver {deliver}");
        let after: Vec<_> = cluster.nodes.iter().map(|n| contents(&n.dir)).collect();
        assert_eq!(before, after, "the checker changed a data dir");
    }
}

#[test]
fn a_transfer_credited_but_not_yet_removed_is_not_counted_twice() {
    let cluster = two_nodes(false);
    let (a, b) = (open(&cluster.nodes[0].dir), open(&cluster.nodes[1].dir));
    let b_home = |wallet: WalletId| (wallet == CUSTOMER).then(|| "a".to_owned());
    let first = a.outbox_transfers(1).unwrap().remove(0);
    b.apply(first.to_wallet, &first.id, &first.op(), 5, &b_home)
        .unwrap();
    drop((a, b));
    let outcome = check(&cluster.nodes, &cluster.acked).expect("checks");
    assert!(outcome.holds(), "{outcome:#?}");
    assert_eq!(outcome.totals.delivered_not_removed, 1);
    assert_eq!(outcome.totals.in_flight.0, 1);
}

#[test]
fn money_credited_twice_or_lost_breaks_the_right_invariants() {
    // The same transfer credited on b under a second id: conservation and the
    // transfer totals break (b's own books still balance: it counted it received).
    let cluster = two_nodes(true);
    let b = open(&cluster.nodes[1].dir);
    let b_home = |wallet: WalletId| (wallet == CUSTOMER).then(|| "a".to_owned());
    let forged = LedgerOp::TransferIn {
        amount: 360,
        from: CUSTOMER,
        fee: false,
    };
    b.apply(PROVIDER, "xfer-7-2-p-again", &forged, 6, &b_home)
        .unwrap();
    drop(b);
    let outcome = check(&cluster.nodes, &cluster.acked).expect("checks");
    assert_eq!(outcome.failed(), ["conservation", "transfers_balanced"]);
    assert!(outcome.invariants["node_ledgers_conserved"]);
}

#[test]
fn an_acknowledged_deposit_missing_is_counted_lost() {
    let mut cluster = two_nodes(true);
    cluster.acked.deposits.push(AckedDeposit {
        wallet: CUSTOMER.0,
        key: "dep-2".into(),
        amount: 50,
    });
    // Right key, wrong amount: also not what was acknowledged.
    cluster.acked.deposits.push(AckedDeposit {
        wallet: CUSTOMER.0,
        key: "dep-1".into(),
        amount: 999,
    });
    let outcome = check(&cluster.nodes, &cluster.acked).expect("checks");
    assert_eq!(outcome.failed(), ["acknowledged_durable"]);
    assert_eq!(outcome.acked_lost, 2);
    assert_eq!(outcome.violations["acknowledged_durable"].len(), 2);
}

#[test]
fn a_dir_that_is_no_database_is_refused_not_judged() {
    let empty = tempfile::tempdir().unwrap();
    let nodes = [NodeDir {
        name: "a".into(),
        dir: empty.path().to_owned(),
    }];
    let error = check(&nodes, &Acknowledged::default()).unwrap_err();
    assert!(matches!(error, CheckError::Invalid(_)), "{error}");
    assert!(
        check(&[], &Acknowledged::default()).is_err(),
        "no node at all"
    );
}

/// The deliberately broken build: with the idempotency look-up skipped, a client's
/// retry applies a deposit twice — and the checker says so.
#[cfg(feature = "failpoints")]
#[test]
fn the_checker_catches_a_build_that_skips_the_idempotency_check() {
    use fixit_actors::failpoints::{self, STORE_IDEMPOTENCY};
    let cluster = two_nodes(true);
    let a = open(&cluster.nodes[0].dir);
    let a_home = |wallet: WalletId| (wallet != CUSTOMER).then(|| "b".to_owned());
    let deposit = LedgerOp::Deposit { amount: 25 };
    failpoints::arm(STORE_IDEMPOTENCY, "return(drop)").unwrap();
    let first = a.apply(CUSTOMER, "dep-retried", &deposit, 7, &a_home);
    let retry = a.apply(CUSTOMER, "dep-retried", &deposit, 8, &a_home);
    failpoints::disarm(STORE_IDEMPOTENCY);
    assert_ne!(first.unwrap().seq, retry.unwrap().seq, "the retry applied");
    drop(a);
    let outcome = check(&cluster.nodes, &cluster.acked).expect("checks");
    assert_eq!(outcome.failed(), ["exactly_once_keys"], "{outcome:#?}");
    assert!(outcome.violations["exactly_once_keys"][0].contains("dep-retried"));
}
