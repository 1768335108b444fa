//! The dispatch machine without actors or a runtime: specific cascades step by step.

use fixit_actors::dispatch::{step, DispatchLimits, Effect, Input, Offer};
use fixit_actors::geo::Coord;
use fixit_actors::ids::{CustomerId, JobId, ProviderId, Skill};
use fixit_actors::job::{Job, JobRequest, JobStatus};
use fixit_actors::CoreError;

const CUSTOMER: CustomerId = CustomerId(10);
const STRANGER: CustomerId = CustomerId(11);
const PRICE: i64 = 5_000;
const FEE: i64 = 500;
const T0_MS: u64 = 1_000_000;
const OFFER_TIMEOUT_MS: u64 = 1_000;
const RETRY_DELAY_MS: u64 = 400;

fn limits() -> DispatchLimits {
    DispatchLimits {
        offer_timeout_ms: OFFER_TIMEOUT_MS,
        offer_tries_max: 5,
        rounds_max: 4,
        retry_delay_ms: RETRY_DELAY_MS,
    }
}

fn new_job() -> Job {
    Job {
        id: JobId(7),
        customer: CUSTOMER,
        request: JobRequest {
            skill: Skill::new("plumber").unwrap(),
            location: Coord::new(48.85, 2.35).unwrap(),
            price: PRICE,
        },
        fee: FEE,
        status: JobStatus::Requested,
        tried: Vec::new(),
        offers: 0,
        hold_key: "job-request-k".into(),
        wake_at_ms: Some(T0_MS),
        verified: None,
        created_ms: T0_MS,
    }
}

fn p(id: u64) -> ProviderId {
    ProviderId(id)
}

/// Steps and expects the input to be taken.
fn ok(job: &Job, input: Input, now_ms: u64) -> (Job, Vec<Effect>) {
    step(job, input, now_ms, &limits()).expect("input taken")
}

fn offer_of(effects: &[Effect]) -> Offer {
    match effects.last() {
        Some(Effect::Offer(offer)) => offer.clone(),
        other => panic!("expected an offer last, got {other:?}"),
    }
}

/// A job offered to `a` (found with `rest` behind it) at `now_ms`.
fn offered(candidates: &[u64], now_ms: u64) -> (Job, Offer) {
    let job = new_job();
    let (job, effects) = ok(&job, Input::Dispatch, now_ms);
    assert_eq!(
        effects,
        vec![Effect::Search {
            round: 0,
            exclude: vec![]
        }]
    );
    let providers = candidates.iter().copied().map(p).collect();
    let (job, effects) = ok(
        &job,
        Input::Found {
            round: 0,
            providers,
        },
        now_ms,
    );
    let offer = offer_of(&effects);
    let (job, effects) = ok(&job, Input::OfferTaken(offer.clone()), now_ms);
    assert_eq!(job.status, offered_status(offer.provider, now_ms));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(job.clone()),
            Effect::AnnounceOffer {
                provider: offer.provider,
                deadline_ms: now_ms + OFFER_TIMEOUT_MS
            }
        ]
    );
    (job, offer)
}

fn offered_status(provider: ProviderId, now_ms: u64) -> JobStatus {
    JobStatus::Offered {
        provider,
        deadline_ms: now_ms + OFFER_TIMEOUT_MS,
    }
}

fn release_effect(job: &Job) -> Effect {
    Effect::Release {
        wallet: CUSTOMER.into(),
        key: job.release_key(),
        amount: PRICE,
    }
}

#[test]
fn a_decline_offers_the_job_to_the_next_nearest() {
    let (job, offer) = offered(&[1, 2, 3], T0_MS);
    assert_eq!(offer.provider, p(1), "nearest first");
    assert_eq!(offer.rest, vec![p(2), p(3)]);
    let (job, effects) = ok(&job, Input::Decline { provider: p(1) }, T0_MS + 10);
    assert_eq!(job.status, JobStatus::Requested);
    assert_eq!(
        effects,
        vec![
            Effect::Persist(job.clone()),
            Effect::EndOffer { provider: p(1) },
            Effect::Search {
                round: 0,
                exclude: vec![p(1)]
            },
        ]
    );
    let found = Input::Found {
        round: 0,
        providers: vec![p(2), p(3)],
    };
    let (_, effects) = ok(&job, found, T0_MS + 10);
    assert_eq!(offer_of(&effects).provider, p(2));
}

#[test]
fn a_lapsed_offer_goes_to_the_next_candidate_at_the_deadline_not_before() {
    let (job, _) = offered(&[1, 2], T0_MS);
    let deadline_ms = T0_MS + OFFER_TIMEOUT_MS;
    let (early, effects) = ok(&job, Input::Wake, deadline_ms - 1);
    assert_eq!((early, effects), (job.clone(), vec![]), "not due yet");
    let (job, effects) = ok(&job, Input::Wake, deadline_ms);
    assert_eq!(job.status, JobStatus::Requested);
    assert_eq!(
        effects,
        vec![
            Effect::Persist(job.clone()),
            Effect::EndOffer { provider: p(1) },
            Effect::Search {
                round: 0,
                exclude: vec![p(1)]
            },
        ]
    );
    let found = Input::Found {
        round: 0,
        providers: vec![p(2)],
    };
    let (_, effects) = ok(&job, found, deadline_ms);
    assert_eq!(offer_of(&effects).provider, p(2));
}

#[test]
fn no_candidates_expires_and_releases_until_confirmed_under_one_key() {
    let job = new_job();
    let (job, _) = ok(&job, Input::Dispatch, T0_MS);
    let found = Input::Found {
        round: 0,
        providers: vec![],
    };
    let (job, effects) = ok(&job, found, T0_MS);
    assert_eq!(job.status, JobStatus::Expired);
    assert_eq!(job.wake_at_ms, Some(T0_MS + RETRY_DELAY_MS), "stored first");
    assert_eq!(
        effects,
        vec![Effect::Persist(job.clone()), release_effect(&job)]
    );
    let lost = Input::ReleaseFailed(CoreError::Unavailable("wallet restarting".into()));
    let (job, effects) = ok(&job, lost, T0_MS + 5);
    assert_eq!(job.wake_at_ms, Some(T0_MS + 5 + RETRY_DELAY_MS));
    assert_eq!(effects, vec![Effect::Persist(job.clone())]);
    let retry_ms = T0_MS + 5 + RETRY_DELAY_MS;
    let (job, effects) = ok(&job, Input::Wake, retry_ms);
    assert_eq!(effects, vec![release_effect(&job)], "same key again");
    let (job, effects) = ok(&job, Input::ReleaseConfirmed, retry_ms);
    assert!(!job.release_pending());
    assert_eq!(effects, vec![Effect::Persist(job.clone())]);
    let (_, effects) = ok(&job, Input::Wake, retry_ms + 10 * RETRY_DELAY_MS);
    assert_eq!(effects, vec![], "settled: nothing more");
}

#[test]
fn refused_candidates_cascade_through_the_rounds_then_wait_for_the_timer() {
    let job = new_job();
    let (mut job, _) = ok(&job, Input::Dispatch, T0_MS);
    for round in 0..limits().rounds_max {
        let a = p(u64::from(round) * 2 + 1);
        let b = p(u64::from(round) * 2 + 2);
        let found = Input::Found {
            round,
            providers: vec![a, b],
        };
        let (next, effects) = ok(&job, found, T0_MS);
        let offer = offer_of(&effects);
        assert_eq!((offer.provider, offer.round), (a, round));
        let (next, effects) = ok(&next, Input::OfferRefused(offer), T0_MS);
        let offer = offer_of(&effects);
        assert_eq!((offer.provider, offer.rest.len()), (b, 0));
        let (next, effects) = ok(&next, Input::OfferRefused(offer), T0_MS);
        assert!(next.tried.ends_with(&[a, b]));
        job = next;
        if round + 1 < limits().rounds_max {
            let exclude = job.tried.clone();
            let round = round + 1;
            assert_eq!(effects, vec![Effect::Search { round, exclude }]);
        } else {
            assert_eq!(job.status, JobStatus::Requested);
            assert_eq!(job.wake_at_ms, Some(T0_MS + RETRY_DELAY_MS));
            assert_eq!(effects, vec![Effect::Persist(job.clone())]);
        }
    }
    assert_eq!(job.offers, 0, "no offer was taken");
}

#[test]
fn the_last_try_expires_the_job_instead_of_searching() {
    let mut job = new_job();
    job.offers = limits().offer_tries_max;
    let (job, effects) = ok(&job, Input::Dispatch, T0_MS);
    assert_eq!(job.status, JobStatus::Expired);
    assert_eq!(
        effects,
        vec![Effect::Persist(job.clone()), release_effect(&job)]
    );
}

#[test]
fn accept_start_complete_capture_once_then_verify() {
    let (job, _) = offered(&[4], T0_MS);
    let at_ms = T0_MS + 20;
    let (job, effects) = ok(&job, Input::Accept { provider: p(4) }, at_ms);
    assert_eq!(
        effects,
        vec![Effect::Assign {
            provider: p(4),
            at_ms
        }]
    );
    assert_eq!(
        job.status,
        offered_status(p(4), T0_MS),
        "not before assigned"
    );
    let (job, effects) = ok(
        &job,
        Input::Assigned {
            provider: p(4),
            at_ms,
        },
        at_ms,
    );
    assert_eq!(job.status, JobStatus::Accepted { provider: p(4) });
    assert_eq!(effects, vec![Effect::Persist(job.clone())]);
    let (same, effects) = ok(&job, Input::Accept { provider: p(4) }, at_ms + 1);
    assert_eq!((same, effects), (job.clone(), vec![]), "a retried accept");
    let (job, _) = ok(&job, Input::Start { provider: p(4) }, at_ms);
    let proof = b"photo".to_vec();
    let complete = Input::Complete {
        provider: p(4),
        proof: proof.clone(),
    };
    let (job, effects) = ok(&job, complete, at_ms);
    let capture = Effect::Capture {
        wallet: CUSTOMER.into(),
        key: job.capture_key(),
        amount: PRICE,
        fee: FEE,
        provider: p(4),
        proof: proof.clone(),
    };
    assert_eq!(effects, vec![capture]);
    let busy = CoreError::Busy { retry_after_ms: 5 };
    let refused = step(&job, Input::CaptureFailed(busy.clone()), at_ms, &limits());
    assert_eq!(refused, Err(busy), "the wallet's error, as it was");
    let confirmed = Input::CaptureConfirmed {
        provider: p(4),
        proof: proof.clone(),
    };
    let (job, effects) = ok(&job, confirmed, at_ms);
    assert_eq!(job.status, JobStatus::Completed { provider: p(4) });
    assert_eq!(
        effects,
        vec![
            Effect::Persist(job.clone()),
            Effect::EndJob { provider: p(4) },
            Effect::Verify {
                provider: p(4),
                proof
            },
        ]
    );
}

#[test]
fn refusals_keep_their_typed_errors_and_change_nothing() {
    let (job, _) = offered(&[1], T0_MS);
    let refused = |input| step(&job, input, T0_MS + 1, &limits());
    assert!(matches!(
        refused(Input::Accept { provider: p(2) }),
        Err(CoreError::Conflict(_))
    ));
    assert!(matches!(
        refused(Input::Decline { provider: p(2) }),
        Err(CoreError::Conflict(_))
    ));
    assert!(matches!(
        refused(Input::Cancel { customer: STRANGER }),
        Err(CoreError::NotFound(_))
    ));
    let late = step(
        &job,
        Input::Accept { provider: p(1) },
        T0_MS + OFFER_TIMEOUT_MS,
        &limits(),
    );
    assert!(matches!(late, Err(CoreError::Conflict(message)) if message.contains("expired")));
    let (cancelled, _) = ok(&job, Input::Cancel { customer: CUSTOMER }, T0_MS);
    let wallet_says_no = Input::ReleaseFailed(CoreError::Invalid("no such hold".into()));
    let refused = step(&cancelled, wallet_says_no, T0_MS, &limits());
    assert!(
        matches!(refused, Err(CoreError::Internal(_))),
        "{refused:?}"
    );
}

#[test]
fn cancel_ends_the_offer_and_releases_and_a_retried_cancel_does_nothing() {
    let (job, _) = offered(&[3], T0_MS);
    let (job, effects) = ok(&job, Input::Cancel { customer: CUSTOMER }, T0_MS + 1);
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(
        effects,
        vec![
            Effect::Persist(job.clone()),
            Effect::EndOffer { provider: p(3) },
            release_effect(&job),
        ]
    );
    let (same, effects) = ok(&job, Input::Cancel { customer: CUSTOMER }, T0_MS + 2);
    assert_eq!((same, effects), (job, vec![]));
}
