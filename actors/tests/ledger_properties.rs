//! Property test of the wallet ledger through real actors on real sled: random
//! operations, concurrent retries with reused keys, panics before and after the
//! commit, and whole-node restarts. After every step: conservation, no negative
//! balance, no key applied twice, and every acknowledged operation still present.

mod common;

use common::TestNode;
use fixit_actors::faults::FaultMode;
use fixit_actors::ids::WalletId;
use fixit_actors::ledger::{self, Balance, LedgerOp};
use fixit_actors::store::OpOutcome;
use fixit_actors::wallet_actor::COMMITTED_FAULT_KIND;
use fixit_actors::CoreError;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

const WALLETS: u64 = 3;

#[derive(Clone, Debug)]
enum Step {
    /// One operation.
    Op(u64, u8, LedgerOp),
    /// The same operation sent several times at once (a client retrying).
    Concurrent(u64, u8, LedgerOp, usize),
    /// The wallet panics on receiving it; the client retries.
    PanicBefore(u64, u8, LedgerOp),
    /// The wallet panics after committing, before replying; the client retries.
    PanicAfterCommit(u64, u8, LedgerOp),
    /// Drop the whole actor system and reopen the same sled directory.
    Restart,
}

/// Wallet `n` of the model: 0 stands for the platform's.
fn wallet_of(n: u64) -> WalletId {
    if n == 0 {
        WalletId::PLATFORM
    } else {
        WalletId(n)
    }
}

fn op() -> impl Strategy<Value = LedgerOp> {
    let amount = prop_oneof![8 => 1i64..500, 1 => Just(0i64), 1 => Just(-3i64)];
    (amount, 0u64..=WALLETS, 0i64..60).prop_flat_map(|(amount, payee, fee)| {
        prop_oneof![
            3 => Just(LedgerOp::Deposit { amount }),
            1 => Just(LedgerOp::Withdraw { amount }),
            3 => Just(LedgerOp::Hold { amount }),
            1 => Just(LedgerOp::Release { amount }),
            2 => Just(LedgerOp::Capture { amount, fee, payee: wallet_of(payee) }),
        ]
    })
}

fn step() -> impl Strategy<Value = Step> {
    let wallet = 1..=WALLETS;
    let key = 0u8..10; // a small key space: reuse, same and different content
    prop_oneof![
        10 => (wallet.clone(), key.clone(), op()).prop_map(|(w, k, o)| Step::Op(w, k, o)),
        3 => (wallet.clone(), key.clone(), op(), 2usize..6).prop_map(|(w, k, o, n)| Step::Concurrent(w, k, o, n)),
        2 => (wallet.clone(), key.clone(), op()).prop_map(|(w, k, o)| Step::PanicBefore(w, k, o)),
        2 => (wallet, key, op()).prop_map(|(w, k, o)| Step::PanicAfterCommit(w, k, o)),
        1 => Just(Step::Restart),
    ]
}

/// What the ledger should look like: the pure rules applied to acknowledged work.
#[derive(Default)]
struct Model {
    balances: BTreeMap<WalletId, Balance>,
    applied: HashMap<(u64, String), (LedgerOp, OpOutcome)>,
}

impl Model {
    /// The answer the node must give to `op` under `key` on `wallet`.
    fn expect(
        &self,
        wallet: u64,
        key: &str,
        op: &LedgerOp,
    ) -> Result<Option<OpOutcome>, &'static str> {
        if let Some((seen, outcome)) = self.applied.get(&(wallet, key.to_owned())) {
            return if seen == op {
                Ok(Some(*outcome))
            } else {
                Err("idempotency_conflict")
            };
        }
        let balance = self
            .balances
            .get(&WalletId(wallet))
            .copied()
            .unwrap_or_default();
        let postings = ledger::plan(WalletId(wallet), op, balance).map_err(|e| e.kind())?;
        let mut next = self.balances.clone();
        for posting in &postings {
            let current = next.get(&posting.wallet).copied().unwrap_or_default();
            next.insert(
                posting.wallet,
                ledger::post(current, posting).map_err(|e| e.kind())?,
            );
        }
        Ok(None)
    }

    fn record(&mut self, wallet: u64, key: &str, op: &LedgerOp, outcome: OpOutcome) {
        let postings = ledger::plan(
            WalletId(wallet),
            op,
            self.balances
                .get(&WalletId(wallet))
                .copied()
                .unwrap_or_default(),
        )
        .unwrap();
        for posting in &postings {
            let current = self
                .balances
                .get(&posting.wallet)
                .copied()
                .unwrap_or_default();
            self.balances
                .insert(posting.wallet, ledger::post(current, posting).unwrap());
        }
        assert_eq!(
            outcome.balance,
            self.balances[&WalletId(wallet)],
            "outcome balance"
        );
        self.applied
            .insert((wallet, key.to_owned()), (op.clone(), outcome));
    }
}

fn key_name(key: u8) -> String {
    format!("key-{key}")
}

/// Checks the node's answer against the model and records what it acknowledged.
fn check_answer(
    model: &mut Model,
    wallet: u64,
    key: &str,
    op: &LedgerOp,
    answer: Result<OpOutcome, CoreError>,
) {
    let expected = model.expect(wallet, key, op);
    match (expected, answer) {
        (Ok(Some(first)), Ok(outcome)) => {
            assert_eq!(outcome, first, "a retry returns the first result")
        }
        (Ok(None), Ok(outcome)) => model.record(wallet, key, op, outcome),
        (Err(kind), Err(error)) => assert_eq!(error.kind(), kind, "{error}"),
        (expected, answer) => {
            panic!("{op:?} under {key} on {wallet}: expected {expected:?}, node said {answer:?}")
        }
    }
}

async fn check_invariants(t: &TestNode, model: &Model) {
    let audit = t.node.audit().unwrap();
    assert!(audit.conserved(), "conservation: {audit:?}");
    assert!(
        audit.negative_wallets.is_empty(),
        "negative balance: {audit:?}"
    );
    assert!(
        audit.ledger_mismatches.is_empty(),
        "ledger does not add up: {audit:?}"
    );
    for wallet in (0..=WALLETS).map(wallet_of) {
        let expected = model.balances.get(&wallet).copied().unwrap_or_default();
        let stored = t.node.context().store.balance(wallet).unwrap();
        assert_eq!(stored, expected, "wallet {wallet}");
    }
    for (wallet, key) in model.applied.keys() {
        assert!(
            t.node
                .context()
                .store
                .key_applied(WalletId(*wallet), key)
                .unwrap(),
            "acknowledged {key} on {wallet} lost"
        );
    }
    // No key applied twice: the ledger has exactly one entry per applied operation
    // on its own wallet (plus the credits it made elsewhere).
    let entries: usize =
        futures::future::join_all((0..=WALLETS).map(|w| t.node.history(wallet_of(w), 0, 1_000)))
            .await
            .into_iter()
            .map(|page| page.map(|p| p.len()).unwrap_or(0))
            .sum();
    let expected_entries: usize = model
        .applied
        .values()
        .map(|(op, _)| match op {
            LedgerOp::Capture { fee, payee, .. } if *fee > 0 && *payee != WalletId::PLATFORM => 3,
            LedgerOp::Capture { .. } => 2,
            _ => 1,
        })
        .sum();
    assert_eq!(
        entries, expected_entries,
        "ledger entries vs applied operations"
    );
}

async fn run(steps: Vec<Step>) {
    let mut t = TestNode::start(|_| {}).await;
    let mut model = Model::default();
    for step in steps {
        match step {
            Step::Op(wallet, key, op) => {
                let key = key_name(key);
                let answer = t.node.wallet_op(WalletId(wallet), &key, op.clone()).await;
                check_answer(&mut model, wallet, &key, &op, answer);
            }
            Step::Concurrent(wallet, key, op, copies) => {
                let key = key_name(key);
                let answers = futures::future::join_all(
                    (0..copies).map(|_| t.node.wallet_op(WalletId(wallet), &key, op.clone())),
                )
                .await;
                for answer in answers {
                    check_answer(&mut model, wallet, &key, &op, answer);
                }
            }
            Step::PanicBefore(wallet, key, op) => {
                t.node
                    .faults()
                    .arm("wallet", wallet, FaultMode::PanicTimes(1));
                let key = key_name(key);
                let first = t.node.wallet_op(WalletId(wallet), &key, op.clone()).await;
                assert!(matches!(first, Err(CoreError::Unavailable(_))), "{first:?}");
                let retry = retry_until_served(&t, wallet, &key, &op).await;
                check_answer(&mut model, wallet, &key, &op, retry);
            }
            Step::PanicAfterCommit(wallet, key, op) => {
                t.node
                    .faults()
                    .arm(COMMITTED_FAULT_KIND, wallet, FaultMode::PanicTimes(1));
                let key = key_name(key);
                let first = t.node.wallet_op(WalletId(wallet), &key, op.clone()).await;
                t.node.faults().clear(COMMITTED_FAULT_KIND, wallet);
                if let Ok(outcome) = first {
                    check_answer(&mut model, wallet, &key, &op, Ok(outcome));
                }
                let retry = retry_until_served(&t, wallet, &key, &op).await;
                check_answer(&mut model, wallet, &key, &op, retry);
            }
            Step::Restart => t = t.restart().await,
        }
        check_invariants(&t, &model).await;
    }
    let t = t.restart().await;
    check_invariants(&t, &model).await;
    t.node.shutdown().await.unwrap();
}

async fn retry_until_served(
    t: &TestNode,
    wallet: u64,
    key: &str,
    op: &LedgerOp,
) -> Result<OpOutcome, CoreError> {
    for _ in 0..200 {
        match t.node.wallet_op(WalletId(wallet), key, op.clone()).await {
            Err(error) if error.is_retryable() => {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await
            }
            answer => return answer,
        }
    }
    panic!("{key} on {wallet} never served");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn ledger_survives_retries_panics_and_restarts(steps in proptest::collection::vec(step(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(steps));
    }
}
