//! Containment on real sled: a panicking wallet restarts with its balance while
//! others answer; a crash loop escalates without touching other branches; the
//! notifier and verifier can crash without stopping payments; idle entities
//! passivate and come back; a flooded entity answers Busy and stays consistent.

mod common;

use common::{eventually, TestNode};
use fixit_actors::faults::FaultMode;
use fixit_actors::ids::{CustomerId, ProviderId, WalletId};
use fixit_actors::job::JobStatus;
use fixit_actors::ledger::Balance;
use fixit_actors::root::BranchName;
use fixit_actors::CoreError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_wallet_restarts_with_its_balance_while_100_others_answer() {
    let t = TestNode::start(|_| {}).await;
    for wallet in 1..=101 {
        t.node
            .deposit(WalletId(wallet), "seed", 1_000 + wallet as i64)
            .await
            .unwrap();
    }
    t.node.faults().arm("wallet", 1, FaultMode::PanicTimes(1));

    let panicking = t.node.deposit(WalletId(1), "during-panic", 5);
    let others =
        futures::future::join_all((2..=101).map(|wallet| t.node.balance(WalletId(wallet))));
    let (panicked, others) = tokio::join!(panicking, others);

    assert!(
        matches!(panicked, Err(CoreError::Unavailable(_))),
        "{panicked:?}"
    );
    for (index, balance) in others.into_iter().enumerate() {
        let wallet = index as i64 + 2;
        assert_eq!(
            balance.unwrap().available,
            1_000 + wallet,
            "wallet {wallet}"
        );
    }
    eventually("the wallet restarted", || {
        t.node.stats().restarts_of("wallet") == 1
    })
    .await;
    assert_eq!(
        t.node.balance(WalletId(1)).await.unwrap(),
        Balance {
            available: 1_001,
            held: 0
        },
        "restored from storage; the panicked command applied nothing"
    );
    // The client retries with the same key: applied once.
    t.node
        .deposit(WalletId(1), "during-panic", 5)
        .await
        .unwrap();
    t.node
        .deposit(WalletId(1), "during-panic", 5)
        .await
        .unwrap();
    assert_eq!(t.node.balance(WalletId(1)).await.unwrap().available, 1_006);
    assert!(t.node.audit().unwrap().holds());
    t.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_wallet_escalates_without_touching_providers_or_sessions() {
    let t = TestNode::start(|config| {
        config.supervision.branch_restarts_max = 3;
        config.supervision.branch_restart_window_ms = 600_000;
    })
    .await;
    let provider = ProviderId(500);
    let customer = CustomerId(600);
    t.node
        .provider_online(provider, &["plumber"])
        .await
        .unwrap();
    t.node.update_location(provider, 48.85, 2.35).await.unwrap();
    let mut events = t.node.connect_customer(customer).await.unwrap();
    t.node.deposit(WalletId(7), "seed", 70).await.unwrap();
    let before = t.node.branches().await.unwrap();

    t.node.faults().arm("wallet", 7, FaultMode::PanicAlways);
    let mut attempts = 0;
    while t.node.branches().await.unwrap().get(&BranchName::Wallets)
        == before.get(&BranchName::Wallets)
    {
        attempts += 1;
        assert!(attempts < 200, "the wallets branch never escalated");
        let result = t
            .node
            .deposit(WalletId(7), &format!("try-{attempts}"), 1)
            .await;
        assert!(
            matches!(result, Err(CoreError::Unavailable(_))),
            "{result:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let after = t.node.branches().await.unwrap();
    assert_ne!(
        after[&BranchName::Wallets],
        before[&BranchName::Wallets],
        "wallets branch restarted by the root"
    );
    for untouched in [
        BranchName::Providers,
        BranchName::Jobs,
        BranchName::Sessions,
        BranchName::Services,
    ] {
        assert_eq!(
            after[&untouched], before[&untouched],
            "{untouched:?} branch untouched"
        );
    }
    assert!(t.node.is_running());
    assert!(
        t.node.context().providers.is_live(provider),
        "provider actor kept running"
    );
    assert!(
        t.node.context().sessions.is_live(customer),
        "session actor kept running"
    );
    assert!(
        matches!(
            events.try_recv(),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty)
        ),
        "session channel still open"
    );
    assert_eq!(
        t.node
            .provider(provider)
            .await
            .unwrap()
            .location
            .unwrap()
            .lat(),
        48.85
    );

    t.node.faults().clear("wallet", 7);
    assert_eq!(
        t.node.balance(WalletId(7)).await.unwrap().available,
        70,
        "nothing applied by the failed attempts"
    );
    t.node.deposit(WalletId(7), "after", 1).await.unwrap();
    assert_eq!(t.node.balance(WalletId(7)).await.unwrap().available, 71);
    assert!(t.node.stats().restarts_of("branch") >= 1);
    t.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_and_verifier_crash_loops_never_stop_payments() {
    const PRICE: i64 = 2_000;
    const FEE: i64 = 200;
    const JOBS_MAX: i64 = 200;
    let t = TestNode::start(|config| {
        config.supervision.branch_restarts_max = 3;
    })
    .await;
    let customer = CustomerId(42);
    for id in 1..=3 {
        t.node
            .provider_online(ProviderId(id), &["cleaner"])
            .await
            .unwrap();
        t.node
            .update_location(ProviderId(id), -33.86, 151.20 + id as f64 * 0.001)
            .await
            .unwrap();
    }
    t.node
        .deposit(customer.into(), "seed", JOBS_MAX * PRICE)
        .await
        .unwrap();
    let _events = t.node.connect_customer(customer).await.unwrap();
    let restarts_of = |kind: &'static str| t.node.stats().restarts_of(kind);
    let mut jobs = 0;

    // Phase 1: the notifier panics on every push; jobs are booked and paid until it
    // has crash-looped past its branch's intensity (bounded). How many pushes a
    // dying notifier swallows depends on timing, so count jobs rather than assume.
    t.node.faults().arm("notifier", 0, FaultMode::PanicAlways);
    while restarts_of("notifier") < 4 || restarts_of("branch") < 1 {
        assert!(
            jobs < JOBS_MAX / 2,
            "the notifier never crash-looped: {:?}",
            t.node.stats().restarts()
        );
        run_job(&t, customer, jobs, PRICE).await;
        jobs += 1;
    }
    t.node.faults().clear("notifier", 0);
    eventually("the services are back", || {
        t.node.context().services.running()
    })
    .await;

    // Phase 2: the verifier panics on every proof.
    t.node.faults().arm("verifier", 0, FaultMode::PanicAlways);
    while restarts_of("verifier") < 1 {
        assert!(jobs < JOBS_MAX, "the verifier never crashed");
        run_job(&t, customer, jobs, PRICE).await;
        jobs += 1;
    }
    let paid: i64 = futures::future::join_all((1..=3).map(|id| {
        t.node
            .balance(WalletId::from(fixit_actors::ids::ProviderId(id)))
    }))
    .await
    .into_iter()
    .map(|balance| balance.map(|b| b.available).unwrap_or(0))
    .sum();
    assert_eq!(paid, jobs * (PRICE - FEE));
    assert_eq!(
        t.node.balance(WalletId::PLATFORM).await.unwrap().available,
        jobs * FEE
    );
    assert_eq!(
        t.node.balance(customer.into()).await.unwrap(),
        Balance {
            available: (JOBS_MAX - jobs) * PRICE,
            held: 0
        }
    );
    assert!(t.node.is_running());
    assert!(t.node.audit().unwrap().holds());

    // Once the faults stop, the services come back and do their work.
    t.node.faults().clear("notifier", 0);
    t.node.faults().clear("verifier", 0);
    eventually("the services are back", || {
        t.node.context().services.running()
    })
    .await;
    let verified_before = t
        .node
        .stats()
        .verifications
        .load(std::sync::atomic::Ordering::Relaxed);
    let booked = t
        .node
        .request_job(customer, "after-2", "cleaner", -33.86, 151.20, PRICE)
        .await
        .unwrap();
    let JobStatus::Offered { provider, .. } = booked.status else {
        panic!("not offered: {:?}", booked.status);
    };
    let job = booked.id;
    t.node.accept(provider, job).await.unwrap();
    t.node.start_job(provider, job).await.unwrap();
    t.node
        .complete(provider, job, b"proof".to_vec())
        .await
        .unwrap();
    eventually("the verifier checked the last proof", || {
        t.node
            .stats()
            .verifications
            .load(std::sync::atomic::Ordering::Relaxed)
            > verified_before
    })
    .await;
    t.node.shutdown().await.unwrap();
}

/// Books job `n` for `customer`, and has the offered provider accept, start and complete it.
async fn run_job(t: &TestNode, customer: CustomerId, n: i64, price: i64) {
    let job = t
        .node
        .request_job(
            customer,
            &format!("job-{n}"),
            "cleaner",
            -33.86,
            151.20,
            price,
        )
        .await
        .unwrap();
    let JobStatus::Offered { provider, .. } = job.status else {
        panic!("job {n} not offered: {:?}", job.status);
    };
    t.node.accept(provider, job.id).await.unwrap();
    t.node.start_job(provider, job.id).await.unwrap();
    let done = t
        .node
        .complete(provider, job.id, b"proof".to_vec())
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed { provider });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_entities_passivate_and_come_back_with_their_state() {
    let t = TestNode::start(|config| config.passivation.entity_idle_ms = 60_000).await;
    for wallet in 1..=200 {
        t.node
            .deposit(WalletId(wallet), "seed", wallet as i64)
            .await
            .unwrap();
    }
    t.node
        .provider_online(ProviderId(900), &["plumber"])
        .await
        .unwrap();
    t.node
        .update_location(ProviderId(900), 40.0, -3.7)
        .await
        .unwrap();
    let _connected = t.node.connect_customer(CustomerId(901)).await.unwrap();
    assert_eq!(t.node.live().wallets, 200);

    t.clock.advance_ms(59_999);
    t.node.sweep_idle().await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(t.node.live().wallets, 200, "not idle long enough");

    t.clock.advance_ms(1);
    // An actor stamps its last activity and leaves its gate just after it replies;
    // on a loaded machine that can land after the clock moved, and a sweep that
    // comes first finds it busy. The node sweeps periodically, so sweep again
    // here (up to 200 times, 50 ms apart) rather than assume one sweep sees all.
    let mut stopped = false;
    for _ in 0..200 {
        t.node.sweep_idle().await;
        let live = t.node.live();
        if live.wallets == 0 && live.providers == 0 {
            stopped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(stopped, "idle actors stopped: {:?}", t.node.live());
    assert_eq!(
        t.node.live().sessions,
        1,
        "a session with a connected client stays"
    );

    assert_eq!(t.node.balance(WalletId(150)).await.unwrap().available, 150);
    assert_eq!(t.node.live().wallets, 1, "reactivated on demand");
    t.node.deposit(WalletId(150), "after", 1).await.unwrap();
    assert_eq!(t.node.balance(WalletId(150)).await.unwrap().available, 151);
    let provider = t.node.provider(ProviderId(900)).await.unwrap();
    assert_eq!(provider.location.unwrap().lon(), -3.7);
    t.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_one_wallet_past_its_cap_gets_busy_and_state_stays_consistent() {
    const FLOOD: usize = 100;
    let t = TestNode::start(|config| config.limits.entity_inflight_max = 8).await;
    let wallet = WalletId(3);
    t.node.deposit(wallet, "seed", 1).await.unwrap();
    t.node
        .faults()
        .arm("wallet", 3, FaultMode::StallTimes { ms: 300, times: 1 });

    let keys: Vec<String> = (0..FLOOD).map(|n| format!("flood-{n}")).collect();
    let results =
        futures::future::join_all(keys.iter().map(|key| t.node.deposit(wallet, key, 1))).await;
    let mut busy_keys = Vec::new();
    for (key, result) in keys.iter().zip(&results) {
        match result {
            Ok(_) => {}
            Err(CoreError::Busy { retry_after_ms }) => {
                assert_eq!(*retry_after_ms, t.config.limits.busy_retry_after_ms);
                busy_keys.push(key);
            }
            Err(other) => panic!("{key}: unexpected {other:?}"),
        }
    }
    let accepted = FLOOD - busy_keys.len();
    assert!(!busy_keys.is_empty(), "the flood never hit the cap");
    assert!(accepted <= 8, "more than the cap got in: {accepted}");
    assert_eq!(
        t.node.balance(wallet).await.unwrap().available,
        1 + accepted as i64
    );

    for key in busy_keys {
        t.node.deposit(wallet, key, 1).await.unwrap();
    }
    for key in &keys {
        t.node.deposit(wallet, key, 1).await.unwrap(); // retries of everything: no effect
    }
    assert_eq!(
        t.node.balance(wallet).await.unwrap().available,
        1 + FLOOD as i64
    );
    assert_eq!(
        t.node.history(wallet, 0, 1_000).await.unwrap().len(),
        FLOOD + 1
    );
    assert!(t.node.audit().unwrap().holds());
    t.node.shutdown().await.unwrap();
}
